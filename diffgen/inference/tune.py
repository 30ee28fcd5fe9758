"""Tuning the cluster hadronization to N_ch and x_p distributions by exact reweighting.

Which parameters can be fitted with gradients, and how (``diffgen.hadronization``):

- ``gamma_s`` (strange-pair weight) and ``p_vector`` (vector-meson probability) select
  *discrete* outcomes (flavours, multiplets); they have no pathwise derivative. The probability
  of an event's discrete history is known in closed form, so events generated once at θ₀
  are reweighted to θ by ``w = p(history | θ)/p(history | θ₀)`` (likelihood-ratio
  reweighting, e.g. arXiv:1912.11745 §2; DESIGN §4.3): the predicted histograms are smooth in θ
  and ``jax.grad``/``jax.hessian`` of the χ² are exact for the sample.
- ``decay/smearing`` σ enters pathwise (cos θ = inverse CDF of the truncated exponential), but
  re-running the cluster and unstable decays at every fit step costs seconds per thousand events
  on this machine. Its density ``p(c | σ)`` is known too (``smeared_cos_theta_log_prob``), so it
  is reweighted in the same way — equally exact, since the support [−1, 1] does not depend on σ.
- ``cl_max`` decides cluster fission by a hard comparison ``M > cl_max + m_q + m_q̄``: the
  outcome is a deterministic step function of cl_max (no density to reweight, zero pathwise
  derivative). It is not fitted; it can only be scanned by regenerating.

The exact probability of a cluster's observed decay (h₁, h₂) sums over the 12 choices
(popped flavour d/u/s × two multiplets) that lead to it, including the threshold fallback to the
lightest pseudoscalar pair (whose probability is the total probability of the choices below
threshold) — the layer's ``hadronization_logp`` omits that fallback term, so it is not used here.
The flavour draws of cluster formation (gluon splitting, fission) are counted from the clusters:
each cluster's quark end was either a primary quark of the parton event or one draw.
The rule replicated is that of ``diffgen.hadronization.decay._choose_types``; the tests check that
every cluster's observed outcome is among the enumerated ones and that reweighting reproduces a
direct generation at other parameters.

Reweighting has a cost: the effective sample size ``(Σw)²/Σw²`` falls as θ moves away from θ₀;
:func:`tune` therefore regenerates at the optimum and refits (``iterations``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from diffgen import kinematics as kin
from diffgen.core import Events, jit
from diffgen.hadronization import (
    capacities,
    charge3,
    decay_clusters,
    decay_unstable,
    form_clusters,
    hadron_mass,
    meson_pid,
    reference_angles,
    smeared_cos_theta_log_prob,
)
from diffgen.inference.fit import Covariance, FitResult, bounded, fit, hessian_covariance
from diffgen.typing import Array, Key, Params

__all__ = [
    "TUNED_PARAMETERS",
    "Distribution",
    "TuneResult",
    "TuneSample",
    "generate_sample",
    "information",
    "log_weights",
    "predict",
    "pseudo_data",
    "sample_statistics",
    "tune",
]

#: Parameters fitted by reweighting, with the bounds of their transforms.
TUNED_PARAMETERS = {"gamma_s": (0.02, 3.0), "p_vector": (0.02, 0.98), "smearing": (0.05, 20.0)}

# the 12 decay choices (popped flavour 1..3, multiplet of h1, multiplet of h2)
_CHOICES = np.array([(f, v1, v2) for f in (1, 2, 3) for v1 in (0, 1) for v2 in (0, 1)], np.int32)


@dataclasses.dataclass(frozen=True)
class Distribution:
    """A measured distribution: bin edges [K+1], values [K], total errors [K]; ``kind`` "nch" or "xp".

    ``covariance`` [K, K] (optional) replaces ``diag(errors²)`` in the χ². ``n_events``
    (optional) marks purely statistical data of that many events (pseudo-data of the model):
    the fit then uses the model's per-event covariance divided by ``n_events`` (Pearson-type;
    a covariance estimated from the data themselves biases the fit towards downward
    fluctuations).
    """

    kind: str
    edges: np.ndarray
    values: np.ndarray
    errors: np.ndarray
    covariance: np.ndarray | None = None
    n_events: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("nch", "xp"):
            raise ValueError(f"Distribution.kind must be 'nch' or 'xp', got {self.kind!r}")
        e, v, s = (np.asarray(x, np.float64) for x in (self.edges, self.values, self.errors))
        if e.ndim != 1 or e.size < 2 or np.any(np.diff(e) <= 0):
            raise ValueError(f"Distribution.edges must be 1-d strictly increasing with >= 2 entries, got {e}")
        if v.shape != (e.size - 1,) or s.shape != v.shape:
            raise ValueError(
                f"Distribution: values {v.shape} and errors {s.shape} must have one entry per bin ({e.size - 1})"
            )
        if not (np.all(np.isfinite(v)) and np.all(np.isfinite(s)) and np.all(s > 0)):
            raise ValueError("Distribution.errors must be finite and > 0 and values finite")
        if self.covariance is not None:
            c = np.asarray(self.covariance, np.float64)
            if c.shape != (v.size, v.size) or not np.allclose(c, c.T) or np.any(np.linalg.eigvalsh(c) <= 0):
                raise ValueError(
                    f"Distribution.covariance must be a symmetric positive-definite [{v.size}, {v.size}] matrix"
                )

    def data_covariance(self) -> np.ndarray:
        """[K, K] covariance of the values: ``covariance`` or ``diag(errors²)``."""
        if self.covariance is not None:
            return np.asarray(self.covariance, np.float64)
        return np.diag(np.asarray(self.errors, np.float64) ** 2)


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class TuneSample:
    """Hadron-level events generated once at θ₀ with what reweighting to θ needs (arrays, leading axis N).

    Attributes:
      nch: [N] int32 charged multiplicity. xp: [N, C] x_p = |p|/p_beam of the particles;
      charged: [N, C] bool (real charged particles).
      n_draw, n_strange: [N] formation flavour draws (gluon splittings + fissions) and how many were s.
      match: [N, K, 12] bool, which decay choices give the cluster's observed hadrons (all True
        for single-hadron and padding clusters, so their probability is 1).
      cos: [N, K] decay cos θ; two: [N, K] bool (clusters that decayed to two hadrons).
      theta0: generating {"gamma_s", "p_vector", "smearing"} (0-d arrays).
      flags: [N] bool, some capacity overflowed or the reshuffling failed.
      m: [N, K] cluster masses (GeV); fq, fqb: [N, K] int32 flavours.
    """

    nch: Array
    xp: Array
    charged: Array
    n_draw: Array
    n_strange: Array
    match: Array
    cos: Array
    two: Array
    theta0: dict
    flags: Array


def _outcomes(fq: Array, fqb: Array, m: Array, mask: Array, dtype: Any) -> tuple[Array, Array, Array]:
    """Hadron pair of every cluster for each of the 12 choices: pid1, pid2 [..., 12], light [...]."""
    fq1, fqb1 = jnp.clip(fq, 1, 5), jnp.clip(fqb, 1, 5)
    f, v1, v2 = (jnp.asarray(_CHOICES[:, i]) for i in range(3))
    pid1 = meson_pid(fq1[..., None], f, v1)
    pid2 = meson_pid(f, fqb1[..., None], v2)
    ok = m[..., None] > hadron_mass(pid1, dtype) + hadron_mass(pid2, dtype)
    flav = jnp.arange(1, 4, dtype=jnp.int32)
    c1 = meson_pid(fq1[..., None], flav, 0)
    c2 = meson_pid(flav, fqb1[..., None], 0)
    sums = hadron_mass(c1, dtype) + hadron_mass(c2, dtype)
    best = jnp.argmin(sums, axis=-1)
    fb1 = jnp.take_along_axis(c1, best[..., None], -1)
    fb2 = jnp.take_along_axis(c2, best[..., None], -1)
    light = mask & ~(m > jnp.min(sums, axis=-1))
    return jnp.where(ok, pid1, fb1), jnp.where(ok, pid2, fb2), light


def _generate(theta: Params, key: Key, partons: Events, p_beam: float, max_clusters: int, capacity: int):
    k_form, k_dec, k_unst = jax.random.split(key, 3)
    dtype = partons.dtype
    params = {
        "cl_max": theta["cl_max"],
        "gamma_s": theta["gamma_s"],
        "p_vector": theta["p_vector"],
        "decay": {"smearing": theta["smearing"]},
    }
    clusters, finfo = form_clusters(params, k_form, partons, max_clusters=max_clusters)
    p, pid, mask, dinfo = decay_clusters(params, k_dec, clusters, reference_angles(), on_threshold="reshuffle")
    # observed outcome of every cluster: the primary hadrons in slots 2k, 2k+1
    obs1, obs2 = pid[:, 0::2], pid[:, 1::2]
    m = kin.mass(jnp.where(clusters.mask[..., None], clusters.p_q + clusters.p_qbar, 0.0))
    o1, o2, light = _outcomes(clusters.flav_q, clusters.flav_qbar, m, clusters.mask, dtype)
    fixed = ~clusters.mask | light
    match = ((o1 == obs1[..., None]) & (o2 == obs2[..., None])) | fixed[..., None]
    two = clusters.mask & ~light
    # formation draws: every cluster's quark end is a primary quark or one flavour draw
    n_quarks = jnp.sum(partons.mask & (partons.pid >= 1) & (partons.pid <= 5), axis=1, dtype=jnp.int32)
    n_s_quarks = jnp.sum(partons.mask & (partons.pid == 3), axis=1, dtype=jnp.int32)
    n_draw = clusters.multiplicity().astype(jnp.int32) - n_quarks
    n_strange = jnp.sum(clusters.mask & (clusters.flav_q == 3), axis=1, dtype=jnp.int32) - n_s_quarks
    pad = capacity - p.shape[1]
    p = jnp.pad(p, ((0, 0), (0, pad), (0, 0)))
    pid = jnp.pad(pid, ((0, 0), (0, pad)))
    mask = jnp.pad(mask, ((0, 0), (0, pad)))
    p, pid, mask, overflow = decay_unstable(k_unst, p, pid, mask)
    charged = mask & (charge3(pid) != 0)
    xp = kin.safe_sqrt(jnp.sum(p[..., 1:] ** 2, axis=-1)) / p_beam
    flags = finfo["overflow"] | overflow | dinfo["reshuffle_failed"] | finfo["colour_unmatched"]
    return TuneSample(
        nch=jnp.sum(charged, axis=1, dtype=jnp.int32),
        xp=jnp.where(charged, xp, 0.0),
        charged=charged,
        n_draw=n_draw.astype(jnp.int32),
        n_strange=n_strange.astype(jnp.int32),
        match=match,
        cos=dinfo["angles"][..., 0],
        two=two,
        theta0={k_: jnp.asarray(theta[k_]) for k_ in TUNED_PARAMETERS},
        flags=flags,
    )


_GEN_CACHE: dict = {}


def generate_sample(
    theta: Mapping[str, float], key: Key, partons: Events, *, p_beam: float | None = None, capacity: int | None = None
) -> TuneSample:
    """Hadronize showered partons at ``theta`` (the ``hadronize`` layer's steps and key use) with reweighting info.

    The same keys as ``hadronize().apply`` are used, so the hadrons are those of the layer.

    Args:
      theta: {"cl_max" (GeV), "gamma_s", "p_vector", "smearing"}.
      key: PRNG key.
      partons: showered partons with colour (e.g. ``chain(ee_to_qqbar(), ("shower", final_state_shower()))``).
      p_beam: beam momentum (GeV) for x_p; default half the first event's invariant mass.
      capacity: hadron capacity (default as the layer, :func:`diffgen.hadronization.layer.capacities`).

    Returns:
      :class:`TuneSample`.
    """
    missing = sorted({"cl_max", *TUNED_PARAMETERS} - set(theta))
    if missing:
        raise ValueError(f"generate_sample: theta lacks {missing}")
    for name, v in theta.items():
        if not math.isfinite(float(v)) or float(v) <= 0:
            raise ValueError(f"generate_sample: theta[{name!r}] must be finite and > 0, got {v}")
    if not 0 < float(theta["p_vector"]) < 1:
        raise ValueError(f"generate_sample: theta['p_vector'] must lie in (0, 1), got {theta['p_vector']}")
    k, cap, _ = capacities(partons.capacity, None, None if capacity is None else int(capacity))
    if p_beam is None:
        p_beam = 0.5 * float(kin.mass(partons.momentum_sum()[0]))
    fn = _GEN_CACHE.get((k, cap, float(p_beam)))
    if fn is None:
        fn = jit(lambda th, ky, ev: _generate(th, ky, ev, float(p_beam), k, cap))
        _GEN_CACHE[(k, cap, float(p_beam))] = fn
    th = {name: jnp.asarray(float(v), partons.dtype) for name, v in theta.items()}
    return fn(th, key, partons)


def log_weights(theta: Params, sample: TuneSample) -> Array:
    """log p(history | θ) − log p(history | θ₀) per event [N], differentiable in θ.

    Args:
      theta: {"gamma_s", "p_vector", "smearing"} (0-d arrays).
      sample: :class:`TuneSample` generated at θ₀.

    Returns:
      [N] log-weights.
    """

    def logp(th: Params) -> Array:
        g = jnp.asarray(th["gamma_s"], sample.cos.dtype)
        pv = jnp.asarray(th["p_vector"], sample.cos.dtype)
        sig = jnp.asarray(th["smearing"], sample.cos.dtype)
        dt = sample.cos.dtype
        form = sample.n_strange.astype(dt) * jnp.log(g) - sample.n_draw.astype(dt) * jnp.log(2.0 + g)
        f, v1, v2 = (_CHOICES[:, i] for i in range(3))
        pf = jnp.where(jnp.asarray(f) == 3, g, 1.0) / (2.0 + g)
        nv = jnp.asarray(v1 + v2, sample.cos.dtype)
        pc = pf * pv**nv * (1.0 - pv) ** (2.0 - nv)  # [12]
        pcl = jnp.sum(jnp.where(sample.match, pc, 0.0), axis=-1)  # [N, K]
        dec = jnp.sum(jnp.log(pcl), axis=-1)
        ang = jnp.sum(jnp.where(sample.two, smeared_cos_theta_log_prob(sample.cos, sig), 0.0), axis=-1)
        return form + dec + ang

    return logp(theta) - logp(sample.theta0)


@dataclasses.dataclass(frozen=True)
class _Stats:
    nch_bin: np.ndarray  # [N] int, -1 outside
    xp_counts: np.ndarray  # [N, K] per-event counts per unit x_p


def sample_statistics(sample: TuneSample, nch: Distribution, xp: Distribution) -> dict[str, Array]:
    """Per-event contributions to the two distributions: {"nch": [N, K1] one-hot, "xp": [N, K2] density}.

    Args:
      sample: generated events.
      nch, xp: the measured distributions (their binning is used).

    Returns:
      dict of per-event arrays whose (weighted) mean over events is the prediction.
    """
    n = np.asarray(sample.nch)
    e1 = np.asarray(nch.edges)
    idx = np.searchsorted(e1, n, side="right") - 1
    onehot = (idx[:, None] == np.arange(len(e1) - 1)[None, :]) & (n[:, None] >= e1[0]) & (n[:, None] < e1[-1])
    x = np.asarray(sample.xp)
    c = np.asarray(sample.charged)
    e2 = np.asarray(xp.edges)
    j = np.searchsorted(e2, x, side="right") - 1
    ok = c & (x >= e2[0]) & (x < e2[-1])
    counts = np.zeros((x.shape[0], len(e2) - 1))
    rows = np.broadcast_to(np.arange(x.shape[0])[:, None], x.shape)
    np.add.at(counts, (rows[ok], j[ok]), 1.0)
    dtype = sample.cos.dtype
    return {"nch": jnp.asarray(onehot, dtype), "xp": jnp.asarray(counts / np.diff(e2)[None, :], dtype)}


def predict(
    theta: Params, sample: TuneSample, stats: Mapping[str, Array]
) -> tuple[dict[str, Array], dict[str, Array], Array]:
    """Reweighted predictions and their MC variances at θ.

    Args:
      theta: {"gamma_s", "p_vector", "smearing"}.
      sample: events at θ₀. stats: :func:`sample_statistics`.

    Returns:
      ``(pred, cov, ess)``: {"nch": [K1], "xp": [K2]} weighted means, their MC covariance
      matrices ``Σ w²(c − pred)(c − pred)ᵀ/(Σw)²``, and the effective sample size ``(Σw)²/Σw²``.
    """
    lw = log_weights(theta, sample)
    w = jnp.exp(lw - jax.lax.stop_gradient(jnp.max(lw)))
    sw = jnp.sum(w)
    pred, var = {}, {}
    for name, c in stats.items():
        mu = (w @ c) / sw
        pred[name] = mu
        dev = w[:, None] * (c - mu[None, :])
        var[name] = (dev.T @ dev) / sw**2
    return pred, var, sw**2 / jnp.sum(w * w)


def information(
    theta: Params, sample: TuneSample, stats: Mapping[str, Array], covs: Mapping[str, Any], free: tuple[str, ...]
) -> dict[str, np.ndarray]:
    """Fisher information of the χ² for the free parameters, corrected for the MC noise of the derivatives.

    Near the optimum ``χ²(θ) ≈ χ²_min + Δθᵀ Jᵀ V⁻¹ J Δθ`` (the Gauss–Newton approximation of
    the least-squares Hessian; PDG Review of Particle Physics, "Statistics"), with J = ∂pred/∂θ.
    The reweighted derivative ``Ĵ = Σ ŵᵢ (cᵢ − pred)(sᵢ − s̄)ᵀ`` (ŵ normalised weights,
    sᵢ = ∂ log wᵢ/∂θ, s̄ = Σ ŵᵢ sᵢ) is a sample covariance and carries MC noise, which inflates
    ``Ĵᵀ V⁻¹ Ĵ`` on average by ``Σᵢ dᵢᵀ V⁻¹ dᵢ`` with the influence terms
    ``dᵢ = ŵᵢ((cᵢ − pred)(sᵢ − s̄)ᵀ − Ĵ)``; this term is subtracted. (The full Hessian of the
    reweighted χ² also contains ``Σ r V⁻¹ ∂²pred``, whose MC noise is what the minimiser selects:
    at a weakly constrained parameter it makes the Hessian errors far too small.)

    Args:
      theta: {"gamma_s", "p_vector", "smearing"} (0-d arrays), where to evaluate.
      sample: events at θ₀; stats: :func:`sample_statistics` (only the keys of ``covs`` are used).
      covs: {name: [K, K]} covariance V of (prediction − data) of each distribution.
      free: the parameters.

    Returns:
      {"gauss_newton", "noise", "corrected"}: [P, P] matrices (P = len(free)), in the order of ``free``;
      the covariance of the free parameters is the inverse of ``corrected``.
    """
    th = {k: jnp.asarray(theta[k], sample.cos.dtype) for k in TUNED_PARAMETERS}
    lw, s = _scores(th, _reweighting_part(sample), tuple(free))
    lw, s = np.asarray(lw, np.float64), np.asarray(s, np.float64)  # [N], [N, P]
    w = np.exp(lw - lw.max())
    w /= w.sum()
    s = s - (w @ s)[None, :]
    p = len(free)
    gn, noise = np.zeros((p, p)), np.zeros((p, p))
    for name, v in covs.items():
        c = np.asarray(stats[name], np.float64)
        dev = c - (w @ c)[None, :]
        jac = (w[:, None] * dev).T @ s  # [K, P]
        a = np.linalg.inv(np.asarray(v, np.float64))
        d = w[:, None, None] * (dev[:, :, None] * s[:, None, :] - jac[None])  # [N, K, P]
        gn += jac.T @ a @ jac
        noise += np.einsum("nkp,kl,nlq->pq", d, a, d)
    return {"gauss_newton": gn, "noise": noise, "corrected": gn - noise}


def _reweighting_part(sample: TuneSample) -> TuneSample:
    # only the fields log_weights reads, so that one compiled _scores serves every sample shape
    return dataclasses.replace(sample, nch=None, xp=None, charged=None, flags=None)


@jax.jit(static_argnames="free")
def _scores(th: Params, sample: TuneSample, free: tuple[str, ...]) -> tuple[Array, Array]:
    """Log-weights [N] and their derivatives [N, P] in the ``free`` parameters at ``th``."""

    def lw_free(x: Array) -> Array:
        return log_weights({**th, **{k: x[i] for i, k in enumerate(free)}}, sample)

    x0 = jnp.stack([th[k] for k in free])
    return lw_free(x0), jax.jacfwd(lw_free)(x0)


@dataclasses.dataclass
class TuneResult:
    """Outcome of :func:`tune`.

    Attributes:
      start, values: {name: value} before and after; errors: {name: σ} from the MC-noise
        corrected Gauss–Newton information of :func:`information` (``inf`` if it is not positive
        definite); hessian_errors: {name: σ} from the full Hessian of the reweighted χ² (too small
        for weakly constrained parameters, kept for comparison); information: the matrices of
        :func:`information` at the optimum of the last iteration.
      covariance: :class:`Covariance` (full Hessian); result: last :class:`FitResult`.
      chi2_start, chi2: {"nch", "xp", "total"} χ² at the start and at the optimum (the optimum's
        with a sample generated there); ndf: {"nch", "xp", "total"}.
      pred_start, pred: {"nch", "xp"} predictions; var: their MC variances.
      ess: effective sample size at the optimum of the last iteration; n_events.
      history: per iteration {"theta0", "values", "chi2", "ess"}.
    """

    start: dict[str, float]
    values: dict[str, float]
    errors: dict[str, float]
    hessian_errors: dict[str, float]
    information: dict[str, np.ndarray]
    covariance: Covariance
    result: FitResult
    chi2_start: dict[str, float]
    chi2: dict[str, float]
    ndf: dict[str, int]
    pred_start: dict[str, np.ndarray]
    pred: dict[str, np.ndarray]
    var: dict[str, np.ndarray]
    ess: float
    n_events: int
    history: list


def _total_cov(d: Distribution, var: Any, ess: float) -> np.ndarray:
    """Covariance of (prediction − data): MC covariance plus the data's (see ``Distribution``)."""
    var = np.asarray(var, np.float64)
    if d.n_events is not None:
        # plus one event's worth on the diagonal: the N_ch bins sum to one (a singular
        # covariance) and empty bins have none
        width = np.diff(d.edges) if d.kind == "xp" else np.ones(len(d.values))
        return var * (1.0 + ess / d.n_events) + np.diag((1.0 / (d.n_events * width)) ** 2)
    return d.data_covariance() + var


def _info_errors(info: np.ndarray, free) -> dict[str, float]:
    """σ of each free parameter from an information matrix; ``inf`` where it is not positive definite."""
    lam = np.linalg.eigvalsh(info)
    if not np.all(lam > 0):
        return {k: math.inf for k in free}
    c = np.linalg.inv(info)
    return {k: float(math.sqrt(c[i, i])) for i, k in enumerate(free)}


def _chi2_parts(pred, var, data: Mapping[str, Distribution], ess: float) -> dict[str, float]:
    out = {}
    for name, d in data.items():
        r = np.asarray(pred[name]) - d.values
        out[name] = float(r @ np.linalg.solve(_total_cov(d, var[name], ess), r))
    out["total"] = sum(out.values())
    return out


_LOSS_CACHE: dict = {}


def tune(
    partons: Events,
    data: Mapping[str, Distribution],
    start: Mapping[str, float],
    *,
    key: Key,
    iterations: int = 2,
    steps: int = 100,
    free: tuple[str, ...] = tuple(TUNED_PARAMETERS),
) -> TuneResult:
    """Fit γ_s, p_vector and the decay smearing to measured N_ch / x_p distributions by reweighting.

    Each iteration generates hadrons from ``partons`` at the current θ₀ (one compiled
    generation for all iterations), fits θ by L-BFGS on the reweighted χ²
    ``Σ (pred − data)²/(σ_data² + σ_MC²)`` (σ_MC at θ₀, fixed during the iteration) and uses the
    optimum as the next θ₀. The errors are from the MC-noise corrected Gauss–Newton information
    (:func:`information`) of the last iteration's χ²; infinite where the data do not determine
    the parameters (the full-Hessian errors, too small there, are in ``hessian_errors``).

    Args:
      partons: showered partons (the shower is not refitted and is generated once).
      data: {"nch": Distribution, "xp": Distribution} (either or both).
      start: {"cl_max", "gamma_s", "p_vector", "smearing"} starting values (cl_max fixed).
      key: PRNG key of the hadronization (the same in every iteration: common random numbers).
      iterations: generate-and-fit rounds (≥ 1).
      steps: L-BFGS steps per round.
      free: which of :data:`TUNED_PARAMETERS` to fit (others fixed at ``start``).

    Returns:
      :class:`TuneResult`.
    """
    if not data or any(k not in ("nch", "xp") for k in data):
        raise ValueError(f"tune: data must have keys among 'nch', 'xp', got {sorted(data)}")
    for name, d in data.items():
        if not isinstance(d, Distribution) or d.kind != name:
            raise TypeError(f"tune: data[{name!r}] must be a Distribution of kind {name!r}")
    bad = [f for f in free if f not in TUNED_PARAMETERS]
    if bad or not free:
        raise ValueError(f"tune: free must be a non-empty subset of {list(TUNED_PARAMETERS)}, got {list(free)}")
    if not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"tune: iterations must be an int >= 1, got {iterations!r}")
    dtype = partons.dtype
    theta0 = {k: float(v) for k, v in start.items()}
    history = []
    frozen = ["data"] + [f"theta/{k}" for k in TUNED_PARAMETERS if k not in free]
    transforms = _transforms(tuple(free))
    res = cov = info = None
    pred_start = chi2_start = None
    for it in range(iterations):
        sample = generate_sample(theta0, key, partons)
        stats = _stats_for(sample, data)
        th = {k: jnp.asarray(theta0[k], dtype) for k in TUNED_PARAMETERS}
        pred0, var0, ess0 = predict(th, sample, stats)
        if it == 0:
            pred_start = {k: np.asarray(v) for k, v in pred0.items()}
            chi2_start = _chi2_parts(pred0, var0, data, float(ess0))
        params = {"theta": th, "data": _data_leaves(sample, stats, data, var0, float(ess0))}
        res = fit(_loss, params, _OPT, steps=steps, frozen=frozen, transforms=transforms)
        cov = hessian_covariance(_loss, res.params, errordef=1.0, frozen=frozen)
        covs = {name: _total_cov(d, var0[name], float(ess0)) for name, d in data.items()}
        info = information(res.params["theta"], sample, stats, covs, tuple(free))
        _, _, ess = predict(res.params["theta"], sample, stats)
        values = {k: float(res.params["theta"][k]) for k in TUNED_PARAMETERS}
        history.append(
            {
                "theta0": dict(theta0),
                "values": values,
                "chi2_reweighted": float(res.loss),
                "ess": float(ess),
                "message": res.message,
            }
        )
        theta0 = {**theta0, **values}
    assert res is not None and cov is not None and info is not None
    assert pred_start is not None and chi2_start is not None
    # the optimum's prediction from a sample generated there (no reweighting)
    sample = generate_sample(theta0, key, partons)
    stats = _stats_for(sample, data)
    th = {k: jnp.asarray(theta0[k], dtype) for k in TUNED_PARAMETERS}
    pred, var, ess_final = predict(th, sample, stats)
    return TuneResult(
        start={k: float(start[k]) for k in TUNED_PARAMETERS},
        values={k: theta0[k] for k in TUNED_PARAMETERS},
        errors=_info_errors(info["corrected"], free),
        hessian_errors={k: cov.errors[f"theta/{k}"] for k in free},
        information=info,
        covariance=cov,
        result=res,
        chi2_start=chi2_start,
        chi2=_chi2_parts(pred, var, data, float(ess_final)),
        ndf={
            **{k: len(d.values) for k, d in data.items()},
            "total": sum(len(d.values) for d in data.values()) - len(free),
        },
        pred_start=pred_start,
        pred={k: np.asarray(v) for k, v in pred.items()},
        var={k: np.asarray(v) for k, v in var.items()},
        ess=history[-1]["ess"],
        n_events=int(partons.n_events),
        history=history,
    )


_OPT = optax.lbfgs()
_TRANSFORMS: dict = {}


def _transforms(free: tuple[str, ...]) -> dict:
    # the same Transform objects for every call, so the compiled fit is reused
    if free not in _TRANSFORMS:
        _TRANSFORMS[free] = {f"theta/{k}": bounded(*TUNED_PARAMETERS[k]) for k in free}
    return _TRANSFORMS[free]


def _stats_for(sample: TuneSample, data: Mapping[str, Distribution]) -> dict[str, Array]:
    stats = sample_statistics(sample, data.get("nch") or _dummy("nch"), data.get("xp") or _dummy("xp"))
    return {k: v for k, v in stats.items() if k in data}


def _as_float(sample: TuneSample) -> dict[str, Array]:
    dt = sample.cos.dtype
    return {
        "n_draw": sample.n_draw.astype(dt),
        "n_strange": sample.n_strange.astype(dt),
        "match": sample.match.astype(dt),
        "cos": sample.cos,
        "two": sample.two.astype(dt),
        "theta0": {k: jnp.asarray(v, dt) for k, v in sample.theta0.items()},
    }


def _from_float(d: Mapping[str, Any]) -> TuneSample:
    return TuneSample(
        nch=None, xp=None, charged=None,
        n_draw=d["n_draw"], n_strange=d["n_strange"], match=d["match"] > 0.5, cos=d["cos"],
        two=d["two"] > 0.5, theta0=d["theta0"], flags=None,
    )  # fmt: skip


def _data_leaves(sample, stats, data, var0, ess0) -> dict:
    # everything the loss reads travels as frozen floating leaves: one compiled loss serves
    # every iteration, seed and data set of the same shapes
    dt = sample.cos.dtype
    out = {"events": _as_float(sample), "stats": dict(stats)}
    for name, d in data.items():
        # χ² = rᵀ V⁻¹ r with V = data covariance + MC covariance at θ₀ (fixed in an iteration),
        # through the Cholesky factor of V
        v = _total_cov(d, var0[name], ess0)
        out[name] = {"y": jnp.asarray(d.values, dt), "chol": jnp.asarray(np.linalg.cholesky(v), dt)}
    return out


def _loss(params: Params) -> Array:
    """χ² of the reweighted predictions (everything but θ in frozen leaves)."""
    dat = params["data"]
    pred, _, _ = predict(params["theta"], _from_float(dat["events"]), dat["stats"])
    total = None
    for name in dat["stats"]:
        z = jax.scipy.linalg.solve_triangular(dat[name]["chol"], pred[name] - dat[name]["y"], lower=True)
        term = jnp.sum(z * z)
        total = term if total is None else total + term
    return total


def _dummy(kind: str) -> Distribution:
    return Distribution(kind, np.array([0.0, 1.0]), np.zeros(1), np.ones(1))


def pseudo_data(sample: TuneSample, nch_edges: Any, xp_edges: Any) -> dict[str, Distribution]:
    """Measured-like distributions from a generated sample (unit weights), with statistical errors.

    Args:
      sample: :class:`TuneSample` (e.g. generated at known θ from independent partons).
      nch_edges: [K1+1] N_ch bin edges; xp_edges: [K2+1] x_p bin edges.

    Returns:
      {"nch": P(N_ch) per bin, "xp": (1/N) dN/dx_p}, errors = standard errors of the means
      (an empty bin gets the error of one event, so that it still constrains the model) and
      the covariance of the means (bins are correlated through the events).
    """
    d = {k: _dummy(k) for k in ("nch", "xp")}
    d["nch"] = Distribution(
        "nch", np.asarray(nch_edges, float), np.zeros(len(nch_edges) - 1), np.ones(len(nch_edges) - 1)
    )
    d["xp"] = Distribution("xp", np.asarray(xp_edges, float), np.zeros(len(xp_edges) - 1), np.ones(len(xp_edges) - 1))
    stats = sample_statistics(sample, d["nch"], d["xp"])
    n = stats["nch"].shape[0]
    out = {}
    for name, c in stats.items():
        c = np.asarray(c)
        mean = c.mean(axis=0)
        err = c.std(axis=0, ddof=1) / math.sqrt(n)
        width = np.diff(d[name].edges) if name == "xp" else np.ones_like(mean)
        floor = 1.0 / (n * width)
        err = np.maximum(err, floor)
        # bins are correlated through the events (N_ch bins sum to one): full covariance of the
        # means, regularised by the one-event floor on the diagonal
        cov = np.cov(c, rowvar=False) / n + np.diag(floor**2)
        out[name] = Distribution(name, d[name].edges, mean, err, cov, n_events=n)
    return out
