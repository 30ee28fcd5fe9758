"""Fit of the LEP-like detector's resolution parameters to calibration pseudo-data.

The calibration samples (particle level, generated once per seed):

- ``z_mumu``: e⁺e⁻ → μ⁺μ⁻ at √s = 91.1876 GeV (Born, ``diffgen.processes.ee_to_ffbar``).
  Each muon has |p| = √s/2 exactly, so the reconstructed ``x = |p|/(√s/2) − 1`` measures the
  tracker's σ(pT)/pT = a ⊕ b·pT at pT = (√s/2)/cosh η; the pair is back to back, so
  ``η₁ + η₂`` and the acoplanarity ``Δφ − π`` measure √2 σ_η and √2 σ_φ.
- ``low_mumu``: the same at √s = 10 GeV (|p| = 5 GeV), where the multiple-scattering term
  ``a`` dominates.
- ``gamma_E``: single photons of fixed energy E ("test beam", |η| < 1) for the ECAL
  σ(E)/E = a/√E ⊕ b; ``klong_E``: single K⁰_L of fixed energy for the HCAL a/√E.

Observables are per-block histograms of the relative deviations (soft histograms for the model
and, with the same kernel, for the pseudo-data, so the kernel's smoothing cancels in
expectation), weighted with the soft acceptance (``extra["detector_keep_prob"]``) and the
event weights. The loss is the χ² ``rᵀ V⁻¹ r`` of the residuals ``r_k = d_k − ρ m_k`` with
``ρ = N_data/N_MC`` and ``V = ρ(1 + ρ)·Σ_MC w² m mᵀ`` per histogram (the expected data plus MC
statistical covariance of the residuals, from the MC, including the correlation of neighbouring
soft bins; plus half an event on the diagonal so that empty bins stay regular). V is held fixed
during a fit and recomputed once at the first optimum. With common random numbers (the detector's Gaussian
numbers come from the key alone) the χ² is a smooth deterministic function of the resolution
parameters: pathwise gradients, L-BFGS and the Hessian (docs/detector.md, "Gradient modes").

References: resolution models as in ``diffgen.detector`` (Gluckstern, Nucl. Instrum. Meth. 24
(1963) 381; Fabjan & Gianotti, Rev. Mod. Phys. 75 (2003) 1243); soft histograms, arXiv:2308.16680;
the χ² with MC statistical errors in the covariance, R. Barlow & C. Beeston, Comput. Phys.
Commun. 77 (1993) 219 (its Gaussian limit).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diffgen import kinematics as kin
from diffgen.core import Events
from diffgen.detector import lep_like
from diffgen.detector.layers import KEEP_PROB
from diffgen.inference.fit import Covariance, hessian_covariance, param_names
from diffgen.inference.soft import soft_histogram, soft_window
from diffgen.typing import Array, Key, Params

__all__ = [
    "PSEUDO_DATA_TRUTH",
    "FREE_PARAMETERS",
    "GAMMA_ENERGIES",
    "GUN_EVENTS",
    "KLONG_ENERGIES",
    "ResolutionFit",
    "ResolutionProblem",
    "fit_resolution",
    "resolution_problem",
]

#: The resolution parameters fitted (``"section/name"`` in the LEP-like detector's params).
FREE_PARAMETERS = (
    "tracker/a",
    "tracker/b",
    "tracker/sigma_eta",
    "tracker/sigma_phi",
    "ecal/a",
    "ecal/b",
    "hcal/a",
)
#: The resolution of the demonstration's pseudo-data: the shipped LEP-like values shifted by
#: 8–33 %, so that a fit starting from the shipped values has something to find.
PSEUDO_DATA_TRUTH = {
    "tracker/a": 0.006,
    "tracker/b": 0.00055,
    "tracker/sigma_eta": 0.0012,
    "tracker/sigma_phi": 0.0009,
    "ecal/a": 0.20,
    "ecal/b": 0.012,
    "hcal/a": 0.75,
}
#: Photon test-beam energies (GeV) for the ECAL.
GAMMA_ENERGIES = (1.0, 2.0, 5.0, 10.0, 20.0, 45.0)
#: K⁰_L test-beam energies (GeV) for the HCAL (above ~15 GeV the Gaussian model loses no deposits).
KLONG_ENERGIES = (15.0, 25.0, 45.0)
#: Test-beam particles per energy, in units of the μμ block size n. The ECAL constant term b
#: (σ/E = a/√E ⊕ b, b ≈ 0.012) is 7 % and 14 % of the variance at 20 and 45 GeV and invisible
#: below; with n/2 photons there it was measured to ~25 %, where its χ² is far from parabolic
#: (b enters as b²) and its Hessian error varied by factors from seed to seed, so those two beams
#: are eight times larger (photon guns are the cheapest events of the calibration).
GUN_EVENTS = {
    **{("gamma", e): (4.0 if e >= 20.0 else 0.5) for e in GAMMA_ENERGIES},
    **{("klong", e): 0.5 for e in KLONG_ENERGIES},
}
#: |η| categories of the muon momentum histograms.
ETA_CATEGORIES = ((0.0, 0.6), (0.6, 1.2), (1.2, 1.832))
SQRT_S = {"z_mumu": 91.1876, "low_mumu": 10.0}


@dataclasses.dataclass(frozen=True)
class _Block:
    name: str
    start: int
    stop: int
    kind: str  # "mumu" | "gun"
    scale: float  # |p| (μμ) or E (gun) in GeV


def _gun(key: Key, n: int, energy: float, pid: int, dtype: Any) -> Events:
    """n single particles of fixed energy, isotropic in φ, |cos θ| < 0.76 (|η| < 1)."""
    k1, k2 = jax.random.split(key)
    c = jax.random.uniform(k1, (n,), dtype, -0.76, 0.76)
    phi = jax.random.uniform(k2, (n,), dtype, -math.pi, math.pi)
    s = jnp.sqrt(1.0 - c * c)
    # massless photon; the K⁰_L mass (0.4976 GeV) is kept so the particle is on shell
    m = 0.497611 if pid == 130 else 0.0
    q = math.sqrt(energy**2 - m**2)
    p = jnp.stack([jnp.full((n,), energy, dtype), q * s * jnp.cos(phi), q * s * jnp.sin(phi), q * c], axis=-1)
    return Events(
        p=p[:, None, :],
        weight=jnp.ones((n,), dtype),
        mask=jnp.ones((n, 1), bool),
        pid=jnp.full((n, 1), pid, jnp.int32),
    )


@functools.cache
def _mumu_source(sqrt_s: float, dtype_name: str):
    # one compiled sampler per energy and dtype: every pseudo-experiment draws from the same
    # program (a fresh jit per call recompiled it for each sample, seconds each time)
    from diffgen.processes import ee_to_ffbar

    src = ee_to_ffbar(flavour="mu", sqrt_s=sqrt_s, dtype=jnp.dtype(dtype_name))
    return src, jax.jit(src.sample, static_argnums=2)


def _mumu(key: Key, n: int, sqrt_s: float, dtype: Any) -> Events:
    src, sample = _mumu_source(float(sqrt_s), jnp.dtype(dtype).name)
    ev = sample(src.init(key), key, n)
    # weighted events (pb): normalise to mean 1 per block so that r = N_data/N_MC
    w = ev.weight / jnp.mean(ev.weight)
    return Events(p=ev.p, weight=w, mask=ev.mask, pid=ev.pid)


def calibration_events(key: Key, n: int, *, dtype: Any = jnp.float64) -> tuple[Events, list[_Block]]:
    """The particle-level calibration samples in one ``Events`` (capacity 2) and their layout.

    Args:
      key: PRNG key.
      n: events per μμ block; test beams get ``GUN_EVENTS[kind, E] · n`` particles per energy.
      dtype: float dtype.

    Returns:
      ``(events, blocks)``: events [M, 2] and the contiguous blocks (name, start, stop).
    """
    if not isinstance(n, int) or n < 10:
        raise ValueError(f"calibration_events: n must be an int >= 10, got {n!r}")
    _, blocks = _layout(n)
    keys = jax.random.split(key, len(blocks))
    parts = []
    for k, blk in zip(keys, blocks, strict=True):
        size = blk.stop - blk.start
        if blk.kind == "mumu":
            parts.append(_mumu(k, size, SQRT_S[blk.name], dtype))
        else:
            parts.append(_gun(k, size, blk.scale, 22 if blk.name.startswith("gamma") else 130, dtype))
    return Events.concatenate(parts), blocks


def _nominal_sigma(block: _Block, det: Params) -> float:
    """Nominal relative resolution of a gun block (sets its histogram range)."""
    e = block.scale
    sec = det["ecal"] if block.name.startswith("gamma") else det["hcal"]
    a, b, c = (float(sec[k]) for k in ("a", "b", "c"))
    return math.sqrt((a / math.sqrt(e)) ** 2 + b**2 + (c / e) ** 2)


def _histogram_specs(blocks: Sequence[_Block], det: Params) -> list[tuple[str, _Block, str, np.ndarray]]:
    """(name, block, observable, edges) of every histogram; ranges ±3σ of the nominal resolution."""
    specs = []
    t = det["tracker"]
    a, b = float(t["a"]), float(t["b"])
    for blk in blocks:
        if blk.kind == "mumu":
            for lo, hi in ETA_CATEGORIES:
                pt = blk.scale / math.cosh(lo)  # the widest resolution in the category
                sig = math.sqrt(a**2 + (b * pt) ** 2)
                specs.append((f"{blk.name}_x_eta{lo:g}-{hi:g}", blk, f"x:{lo}:{hi}", np.linspace(-3, 3, 13) * sig))
            if blk.name == "z_mumu":
                s_eta = math.sqrt(2) * float(t["sigma_eta"])
                s_phi = math.sqrt(2) * float(t["sigma_phi"])
                specs.append((f"{blk.name}_eta_sum", blk, "eta_sum", np.linspace(-3, 3, 13) * s_eta))
                specs.append((f"{blk.name}_acoplanarity", blk, "acop", np.linspace(-3, 3, 13) * s_phi))
        else:
            sig = _nominal_sigma(blk, det)
            specs.append((f"{blk.name}_dE", blk, "dE", np.linspace(-3, 3, 13) * sig))
    return specs


def _soft_hist(x: Array, edges: Array, h: float, weights: Array, mask: Array | None = None) -> tuple[Array, Array]:
    """``soft_histogram`` contents [K] and their covariance ``Σ_i w_i²·m_ik·m_il`` [K, K].

    A soft bin membership m_ik ∈ (0, 1) is shared between neighbouring bins, so neighbouring
    contents are correlated and the variance is Σ w² m² (``soft_histogram``'s ``sumw2`` is
    Σ w² m, exact only for hard bins); a diagonal χ² would over-count the information.
    """
    counts = soft_histogram(x, edges, h, weights=weights, mask=mask)
    if weights.ndim < x.ndim:
        weights = jnp.broadcast_to(weights[:, None], x.shape)
    if mask is not None:
        weights = jnp.where(mask, weights, 0.0)
    e = edges.reshape((1,) * x.ndim + edges.shape)
    cdf = jax.nn.sigmoid((x[..., None] - e) / h)  # the sigmoid kernel of soft_histogram
    member = cdf[..., :-1] - cdf[..., 1:]
    wm = (weights[..., None] * member).reshape(-1, member.shape[-1])
    return counts, wm.T @ wm


def _histograms(reco: Events, specs, bandwidth_frac: float) -> tuple[Array, Array]:
    """Concatenated soft histograms (and Σw²) of all specs from detector-level events."""
    kp = reco.extra[KEEP_PROB]
    out, out2 = [], []
    for _, blk, obs, edges in specs:
        sl = slice(blk.start, blk.stop)
        p, w, m, k = reco.p[sl], reco.weight[sl], reco.mask[sl], kp[sl]
        e = jnp.asarray(edges, p.dtype)
        h = bandwidth_frac * float(edges[1] - edges[0])
        if obs.startswith("x:"):
            lo, hi = (float(v) for v in obs.split(":")[1:])
            pabs = kin.safe_sqrt(jnp.sum(p[..., 1:] ** 2, axis=-1))
            x = pabs / blk.scale - 1.0
            eta = jnp.abs(jnp.where(m, kin.eta(p), 0.0))
            ww = w[:, None] * k * soft_window(eta, lo, hi, 0.005)
            hist, s2 = _soft_hist(x, e, h, ww, m)
        elif obs == "eta_sum":
            x = jnp.where(m[:, 0] & m[:, 1], kin.eta(p[:, 0]) + kin.eta(p[:, 1]), 1e3)
            hist, s2 = _soft_hist(x, e, h, w * k[:, 0] * k[:, 1])
        elif obs == "acop":
            d = kin.phi(p[:, 0]) - kin.phi(p[:, 1]) - math.pi
            x = jnp.arctan2(jnp.sin(d), jnp.cos(d))
            x = jnp.where(m[:, 0] & m[:, 1], x, 1e3)
            hist, s2 = _soft_hist(x, e, h, w * k[:, 0] * k[:, 1])
        else:  # dE: relative energy deviation of the single particle
            x = jnp.where(m[:, 0], p[:, 0, 0] / blk.scale - 1.0, 1e3)
            hist, s2 = _soft_hist(x, e, h, w * k[:, 0])
        out.append(hist)
        out2.append(s2)
    return jnp.concatenate(out), jnp.stack(out2)


@dataclasses.dataclass
class ResolutionProblem:
    """A detector-resolution fit set up for repeated use (compiled once).

    Attributes:
      detector: the LEP-like detector ``Layer``.
      nominal: its default params (the shipped configuration).
      n: events per μμ block of the pseudo-data; ``mc_factor``: MC/data size ratio.
      bin_names: [B] histogram name of every bin (concatenated); ``specs``: histogram specs.
      histogram: jitted ``(det_params, key, truth) -> (sumw [B], sumw2 [B])``.
      loss: ``loss(params, key, truth)`` with ``params = {"det": ..., "data": {"d", "chol"}}``
        (``chol`` [H, K, K]: Cholesky factors of the per-histogram covariances).
      frozen: names held fixed in the fit (everything but :data:`FREE_PARAMETERS`, and the data).
    """

    detector: Any
    nominal: Params
    n: int
    mc_factor: int
    specs: list
    bin_names: list[str]
    histogram: Any
    loss: Any
    frozen: list[str]
    bandwidth_frac: float
    dtype: Any


def resolution_problem(
    n: int = 5000, *, mc_factor: int = 4, bandwidth_frac: float = 0.5, dtype: Any = jnp.float64
) -> ResolutionProblem:
    """Set up the resolution fit: detector, histogram layout, χ² loss.

    Args:
      n: events per μμ block of the pseudo-data (test beams: :data:`GUN_EVENTS`), ≥ 10.
      mc_factor: the MC sample is ``mc_factor`` times larger (≥ 1).
      bandwidth_frac: soft-histogram bandwidth in units of the bin width (> 0).
      dtype: float dtype of the events and params.

    Returns:
      :class:`ResolutionProblem`.
    """
    if not isinstance(n, int) or n < 10:
        raise ValueError(f"resolution_problem: n must be an int >= 10, got {n!r}")
    if not isinstance(mc_factor, int) or mc_factor < 1:
        raise ValueError(f"resolution_problem: mc_factor must be an int >= 1, got {mc_factor!r}")
    if not bandwidth_frac > 0:
        raise ValueError(f"resolution_problem: bandwidth_frac must be > 0, got {bandwidth_frac!r}")
    det = lep_like(dtype=dtype)
    nominal = det.init(jax.random.key(0))
    _, blocks = _layout(n)
    specs = _histogram_specs(blocks, nominal)
    bin_names = [name for name, _, _, edges in specs for _ in range(len(edges) - 1)]

    def histogram(det_params: Params, key: Key, truth: Events) -> tuple[Array, Array]:
        reco = det.apply(det_params, key, truth)
        return _histograms(reco, _rescale_specs(specs, truth.n_events, n), bandwidth_frac)

    r = 1.0 / mc_factor

    def loss(params: Params, key: Key, truth: Events) -> Array:
        m, _ = histogram(params["det"], key, truth)
        z = _whiten(params["data"]["d"] - r * m, params["data"]["chol"])
        return jnp.sum(z * z)

    frozen = [nm for nm in param_names(nominal) if nm not in FREE_PARAMETERS]
    return ResolutionProblem(
        detector=det,
        nominal=nominal,
        n=n,
        mc_factor=mc_factor,
        specs=specs,
        bin_names=bin_names,
        histogram=jax.jit(histogram),
        loss=loss,
        frozen=["data"] + [f"det/{nm}" for nm in frozen],
        bandwidth_frac=bandwidth_frac,
        dtype=dtype,
    )


def _whiten(resid: Array, chol: Array) -> Array:
    """L⁻¹ r per histogram (block-diagonal covariance ``L Lᵀ``): resid [H·K], chol [H, K, K] → [H·K]."""
    h, k, _ = chol.shape
    solve = jax.vmap(lambda lo, b: jax.scipy.linalg.solve_triangular(lo, b, lower=True))
    return solve(chol, resid.reshape(h, k)).reshape(-1)


def _layout(n: int) -> tuple[None, list[_Block]]:
    """The calibration blocks for n events per μμ block, in sample order (see :data:`GUN_EVENTS`)."""
    sizes = [(name, "mumu", SQRT_S[name] / 2, n) for name in ("z_mumu", "low_mumu")]
    sizes += [(f"gamma_{e:g}", "gun", e, int(GUN_EVENTS["gamma", e] * n)) for e in GAMMA_ENERGIES]
    sizes += [(f"klong_{e:g}", "gun", e, int(GUN_EVENTS["klong", e] * n)) for e in KLONG_ENERGIES]
    blocks, start = [], 0
    for name, kind, scale, size in sizes:
        blocks.append(_Block(name, start, start + size, kind, scale))
        start += size
    return None, blocks


def _rescale_specs(specs, n_events: int, n: int):
    """The same histograms on a sample whose blocks are k = n_events / total(n) times larger."""
    total = specs_total(n)
    if n_events == total:
        return specs
    k = n_events // total
    if k * total != n_events:
        raise ValueError(f"sample of {n_events} events is not a multiple of the layout's {total}")
    out = []
    for name, blk, obs, edges in specs:
        out.append((name, dataclasses.replace(blk, start=blk.start * k, stop=blk.stop * k), obs, edges))
    return out


def specs_total(n: int) -> int:
    """Number of events of the layout with n events per μμ block."""
    return _layout(n)[1][-1].stop


@dataclasses.dataclass
class ResolutionFit:
    """Outcome of :func:`fit_resolution`.

    Attributes:
      truth: the parameters the pseudo-data were generated with ({name: value}).
      start: starting values. values: fitted values. errors: Hessian errors ({name: σ}).
      gauss_newton_errors: the ``(JᵀJ)⁻¹`` errors. covariance: :class:`Covariance`.
      n_steps: Levenberg–Marquardt steps (both passes). message: convergence message.
      chi2, ndf: χ² at the optimum and bins − free parameters.
      chi2_start: χ² at the start (with the final V).
      data, data_var, model, model_start: [B] histograms (data; the diagonal of V; r·MC at the
        optimum and at the start).
    """

    truth: dict[str, float]
    start: dict[str, float]
    values: dict[str, float]
    errors: dict[str, float]
    gauss_newton_errors: dict[str, float]
    covariance: Covariance
    n_steps: int
    message: str
    chi2: float
    ndf: int
    chi2_start: float
    data: np.ndarray
    data_var: np.ndarray
    model: np.ndarray
    model_start: np.ndarray


def _set(params: Params, values: dict[str, float]) -> Params:
    out = jax.tree.map(lambda x: x, params)
    for name, v in values.items():
        sec, leaf = name.split("/")
        out[sec] = {**out[sec], leaf: jnp.asarray(v, jnp.asarray(out[sec][leaf]).dtype)}
    return out


def _get(params: Params, name: str) -> float:
    sec, leaf = name.split("/")
    return float(params[sec][leaf])


def _with_free(det: Params, x: Array, nominal: Params) -> Params:
    """Detector params with the free parameters set to ``x · nominal`` (x: [K] relative values)."""
    out = {sec: dict(v) for sec, v in det.items()}
    for i, name in enumerate(FREE_PARAMETERS):
        sec, leaf = name.split("/")
        out[sec][leaf] = x[i] * _get(nominal, name)
    return out


_JAC_CACHE: dict = {}


def _compiled(problem: ResolutionProblem):
    """Jitted residuals and their forward-mode Jacobian for ``problem`` (compiled once per problem)."""
    hit = _JAC_CACHE.get(id(problem))
    if hit is not None and hit[0] is problem:
        return hit[1]
    r = 1.0 / problem.mc_factor

    def residuals(x: Array, det: Params, key: Key, truth: Events, d: Array, v: Array) -> Array:
        m, _ = problem.histogram(_with_free(det, x, problem.nominal), key, truth)
        return _whiten(d - r * m, v)

    fns = {
        "residuals": jax.jit(residuals),
        "jacobian": jax.jit(jax.jacfwd(residuals)),
    }
    _JAC_CACHE.clear()
    _JAC_CACHE[id(problem)] = (problem, fns)
    return fns


def fit_resolution(
    problem: ResolutionProblem,
    truth: dict[str, float],
    *,
    seed: int = 0,
    start: dict[str, float] | None = None,
    steps: int = 30,
    hessian: bool = True,
) -> ResolutionFit:
    """Generate pseudo-data at ``truth`` and fit the resolution parameters to it.

    The pseudo-data and the MC use independent particle-level samples and detector random
    numbers derived from ``seed``; the MC sample is ``problem.mc_factor`` times larger. The
    χ² is minimised by Levenberg–Marquardt (Gauss–Newton) steps on the exact forward-mode
    Jacobian (``jax.jacfwd``) of the normalised residuals with common random numbers; V is
    recomputed at the first optimum and the fit repeated. The errors are ``2·H⁻¹`` with the full
    Hessian of the χ² (``hessian_covariance``, ``jax.hessian``) if ``hessian`` is True, else the
    Gauss–Newton approximation ``(JᵀJ)⁻¹`` (H ≈ 2JᵀJ; the two agree when the residuals are
    small against the curvature, see the tests and docs/demonstrations.md).

    Args:
      problem: from :func:`resolution_problem`.
      truth: {name: value} for names in :data:`FREE_PARAMETERS` (others stay nominal).
      seed: seed of this pseudo-experiment (data and MC).
      start: starting values (default: the nominal LEP-like values).
      steps: maximum Levenberg–Marquardt steps per pass.
      hessian: compute the full Hessian for the errors (one more compilation).

    Returns:
      :class:`ResolutionFit`.
    """
    unknown = sorted(set(truth) - set(FREE_PARAMETERS)) + sorted(set(start or {}) - set(FREE_PARAMETERS))
    if unknown:
        raise ValueError(f"fit_resolution: unknown parameters {unknown}; allowed: {list(FREE_PARAMETERS)}")
    for name, v in {**truth, **(start or {})}.items():
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"fit_resolution: {name} must be finite and > 0, got {v}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"fit_resolution: steps must be an int >= 1, got {steps!r}")
    n, dtype = problem.n, problem.dtype
    k_data, k_mc, k_det_data, k_det_mc = jax.random.split(jax.random.key(seed), 4)
    truth_data, _ = calibration_events(k_data, n, dtype=dtype)
    truth_mc = Events.concatenate(
        [calibration_events(k, n, dtype=dtype)[0] for k in jax.random.split(k_mc, problem.mc_factor)]
    )
    truth_mc = _interleave_blocks(truth_mc, problem)
    det_truth = _set(problem.nominal, truth)
    d, _ = problem.histogram(det_truth, k_det_data, truth_data)
    start_vals = {nm: _get(problem.nominal, nm) for nm in FREE_PARAMETERS}
    start_vals.update(start or {})
    det_start = _set(problem.nominal, start_vals)
    r = 1.0 / problem.mc_factor
    fns = _compiled(problem)
    scale = np.array([_get(problem.nominal, nm) for nm in FREE_PARAMETERS])

    def variance(det_params: Params) -> Array:
        # expected variance of d − r·m from the MC (Pearson-type): r·Σw²m² for the data (the MC
        # is 1/r times larger) plus r²·Σw²m² for the MC itself. Data-derived variances (Neyman)
        # bias resolutions low: downward-fluctuating tail bins get too much weight.
        _, m2 = problem.histogram(det_params, k_det_mc, truth_mc)
        cov = r * (1.0 + r) * m2 + 0.5 * r * (1.0 + r) * jnp.eye(m2.shape[-1], dtype=m2.dtype)[None]
        return jnp.linalg.cholesky(cov)

    x = jnp.asarray([start_vals[nm] for nm in FREE_PARAMETERS], dtype) / jnp.asarray(scale, dtype)
    v = variance(det_start)
    n_steps, message = 0, ""
    for _ in range(2):  # V at the start, then at the first optimum
        x, _, n_pass, message = _levenberg_marquardt(fns, x, det_start, k_det_mc, truth_mc, d, v, steps)
        n_steps += n_pass
        v = variance(_with_free(det_start, x, problem.nominal))
    jac = np.asarray(fns["jacobian"](x, det_start, k_det_mc, truth_mc, d, v))
    res_vec = np.asarray(fns["residuals"](x, det_start, k_det_mc, truth_mc, d, v))
    cov_x = np.linalg.inv(jac.T @ jac)
    det_fit = _with_free(det_start, x, problem.nominal)
    if hessian:
        params = {"det": det_fit, "data": {"d": d, "chol": v}, "mc": {"p": truth_mc.p, "w": truth_mc.weight}}
        cov = hessian_covariance(
            _hessian_loss(problem, truth_mc), params, errordef=1.0, frozen=[*problem.frozen, "mc"], key=k_det_mc
        )
        errors = {nm: cov.errors[f"det/{nm}"] for nm in FREE_PARAMETERS}
    else:
        m = cov_x * np.outer(scale, scale)
        sig = np.sqrt(np.diag(m))
        names = [f"det/{nm}" for nm in FREE_PARAMETERS]
        cov = Covariance(
            names=names,
            values=np.asarray(x) * scale,
            matrix=m,
            hessian=2.0 * jac.T @ jac / np.outer(scale, scale),
            errors=dict(zip(names, map(float, sig), strict=True)),
            correlation=m / np.outer(sig, sig),
        )
        errors = {nm: cov.errors[f"det/{nm}"] for nm in FREE_PARAMETERS}
    chi2 = float(res_vec @ res_vec)
    x0 = jnp.asarray([start_vals[nm] for nm in FREE_PARAMETERS], dtype) / jnp.asarray(scale, dtype)
    res0 = np.asarray(fns["residuals"](x0, det_start, k_det_mc, truth_mc, d, v))
    m_fit, _ = problem.histogram(det_fit, k_det_mc, truth_mc)
    m_start, _ = problem.histogram(det_start, k_det_mc, truth_mc)
    gn_errors = dict(zip(FREE_PARAMETERS, map(float, np.sqrt(np.diag(cov_x)) * scale), strict=True))
    return ResolutionFit(
        truth={nm: _get(det_truth, nm) for nm in FREE_PARAMETERS},
        start=start_vals,
        values={nm: _get(det_fit, nm) for nm in FREE_PARAMETERS},
        errors=errors,
        gauss_newton_errors=gn_errors,
        covariance=cov,
        n_steps=n_steps,
        message=message,
        chi2=chi2,
        ndf=len(problem.bin_names) - len(FREE_PARAMETERS),
        chi2_start=float(res0 @ res0),
        data=np.asarray(d),
        data_var=np.sum(np.asarray(v) ** 2, axis=-1).reshape(-1),
        model=r * np.asarray(m_fit),
        model_start=r * np.asarray(m_start),
    )


_HLOSS: dict = {}


def _hessian_loss(problem: ResolutionProblem, truth_mc: Events):
    """χ² over {"det", "data", "mc"} params (MC momenta/weights as frozen leaves), one object per problem."""
    hit = _HLOSS.get(id(problem))
    if hit is not None and hit[0] is problem:
        return hit[1]
    mask, pid = truth_mc.mask, truth_mc.pid  # fixed by the layout

    def loss(params: Params, key: Key) -> Array:
        ev = Events(p=params["mc"]["p"], weight=params["mc"]["w"], mask=mask, pid=pid)
        return problem.loss(params, key, ev)

    _HLOSS.clear()
    _HLOSS[id(problem)] = (problem, loss)
    return loss


def _levenberg_marquardt(fns, x, det, key, truth, d, v, steps: int, tol: float = 1e-8):
    """Minimise |residuals|² over x by Levenberg–Marquardt steps (K. Levenberg 1944; D. Marquardt 1963)."""
    lam = 1e-3
    rv = np.asarray(fns["residuals"](x, det, key, truth, d, v))
    chi2 = float(rv @ rv)
    for it in range(steps):
        j = np.asarray(fns["jacobian"](x, det, key, truth, d, v))
        a = j.T @ j
        g = j.T @ rv
        improved = False
        for _ in range(12):
            step = -np.linalg.solve(a + lam * np.diag(np.diag(a)), g)
            x_new = x + jnp.asarray(step, x.dtype)
            r_new = np.asarray(fns["residuals"](x_new, det, key, truth, d, v))
            c_new = float(r_new @ r_new)
            if np.isfinite(c_new) and c_new <= chi2:
                improved = True
                break
            lam *= 10.0
        if not improved:
            return x, v, it, f"stopped after {it} steps: no decrease of chi2 = {chi2:.6g}"
        lam = max(lam / 10.0, 1e-9)
        done = chi2 - c_new <= tol * (1.0 + chi2)
        x, rv, chi2 = x_new, r_new, c_new
        if done:
            return x, v, it + 1, f"converged after {it + 1} steps; chi2 {chi2:.8g}"
    return x, v, steps, f"stopped after {steps} steps; chi2 {chi2:.8g}"


def _interleave_blocks(ev: Events, problem: ResolutionProblem) -> Events:
    """Reorder k concatenated layouts so that each block's k copies are contiguous."""
    _, blocks = _layout(problem.n)
    total = specs_total(problem.n)
    k = problem.mc_factor
    idx = np.concatenate(
        [(np.arange(b.start, b.stop)[None, :] + total * np.arange(k)[:, None]).reshape(-1) for b in blocks]
    )
    return ev.take(jnp.asarray(idx))
