"""Strong coupling αs(m_Z) from the ALEPH 1 − T distribution of charged particles at 91.2 GeV.

The model is e⁺e⁻ → q q̄ (``ee_to_qqbar``) → dipole shower (``final_state_shower``) → cluster
hadronization (``hadronize``); 1 − T is computed from the charged final-state particles, like
the measurement (ALEPH, Phys. Rept. 294 (1998) 1, INSPIRE 428072).

The sample is generated **once** at a reference αs_ref; the model histogram at any other αs′ is
the same events with the shower's exact reweighting weights ``reweight(events, αs′)``
(S. Mrenna and P. Skands, arXiv:1605.08352). αs′ enters only the weights, so the binned model
is a smooth, exactly differentiable function of αs′ even with hard bins; its gradient is the
shower's reweighting gradient estimator. Hadronization does not depend on αs, so the shower
weight is the weight of the whole event.

χ² = Σ_k (d_k − m_k(αs))² / (σ_data,k² + σ_MC,k²) over the fit range, where σ_data is the
published total error (statistical and systematic combined, treated as uncorrelated) and
σ_MC the model's Monte Carlo error (from Σ w², evaluated at the previous iterate and then
held fixed). The model is normalised to the data's integral over the fit range (a shape fit
in the 3-jet region; ndf = bins − 2): the toy shower + cluster model puts too few events into
the 2-jet peak (1 − T < 0.04), which would otherwise leak into the fit range through the
overall normalisation. The default range is 0.08 ≤ 1 − T < 0.30. The uncertainty of αs is
from the Hessian of that χ² (errordef 1), cross-checked by a Δχ² = 1 scan.

The model's αs dependence is itself estimated from the sample (the covariance of the weights'
score with each bin), and its noise attenuates the fitted shift from αs_ref (errors in
variables; the fit is pulled towards the reference by ≈ K·Var(score)/(N·I), K bins, I the
information on αs per event in 1 − T; ≈ 1.6·10³/N for the charged 1 − T, docs/demo_alpha_s.md).
The sample must therefore be several times larger than the data's effective event count, and
since the bias is proportional to |αs − αs_ref|, a fit farther than ``NEAR_REFERENCE`` of its σ
from αs_ref triggers a regeneration at the fitted value.

Reweighting is only useful while the weights stay close to 1: the script reports the
effective sample size n_eff/N = (Σw)²/(N Σw²) on a grid of αs′ and the fraction of negative
weights; the *valid range* is where n_eff/N ≥ 0.5. If the fit lands outside it (or too far from
αs_ref, above), the sample is regenerated at the fitted value (at most ``--max-regenerations``
times).

Cross-check (``--scan LOW HIGH POINTS``): the same χ² for samples generated *directly* at each
αs of a grid (no reweighting, no derivative, so no attenuation), with the minimum of a parabola
through the points; written to ``alpha_s_thrust_scan.png`` and the JSON's ``direct_scan``.

Run: ``.venv/bin/python examples/alpha_s_thrust.py [--n-events N] [--scan 0.112 0.16 13] [--out out/]``.
Writes ``alpha_s_thrust.png`` (data vs fit, ratio panel) and ``alpha_s_thrust.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

DATA_NAME = "aleph1996_1minusT_charged_91GeV.csv"
#: Default fit range in 1 − T (docs/demo_alpha_s.md): the toy shower + cluster model does not
#: describe the 2-jet region (model/data ≈ 0.75 at 0.01–0.04) nor its transition to 0.08; above
#: 0.30 the bins hold few events (large MC errors, four-parton configurations).
FIT_RANGE = (0.08, 0.30)
ALPHA_S_REF = 0.118
#: Particle capacities: charged particles kept for the thrust (max seen ≈ 45), hadron capacity.
CHARGED_CAPACITY = 48
HADRON_CAPACITY = 128
#: Reweighting is trusted where the effective sample size is at least this fraction of N.
NEFF_MIN = 0.5
#: A fit is accepted without regeneration when it lies within this many of its σ of the
#: generation αs (the attenuation bias is proportional to the distance; docs/demo_alpha_s.md).
NEAR_REFERENCE = 0.5


def data_path() -> Path:
    """The ALEPH table in ``../shared/data`` next to the repository."""
    return Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / DATA_NAME


def load_data(path: str | Path | None = None) -> dict[str, np.ndarray]:
    """Read the ALEPH 1 − T table.

    Returns:
      ``{"edges": [K+1], "values": [K], "errors": [K]}`` (1/N dN/d(1 − T), total errors).
    """
    from diffgen.plotting import read_data_csv

    path = Path(path) if path is not None else data_path()
    if not path.is_file():
        raise FileNotFoundError(f"ALEPH thrust table not found: {path}")
    pts = read_data_csv(path)
    edges = pts.edges
    if edges is None:
        raise ValueError(f"{path}: the 1 − T bins are not contiguous")
    if np.any(pts.yerr <= 0):
        raise ValueError(f"{path}: errors must be > 0")
    return {"edges": edges, "values": np.asarray(pts.y, float), "errors": np.asarray(pts.yerr, float)}


def fit_mask(edges: np.ndarray, fit_range: tuple[float, float]) -> np.ndarray:
    """[K] bool: bins lying entirely inside ``fit_range``."""
    lo, hi = fit_range
    if not (0.0 <= lo < hi <= 0.5):
        raise ValueError(f"fit_range must satisfy 0 <= low < high <= 0.5, got {fit_range}")
    m = (edges[:-1] >= lo - 1e-12) & (edges[1:] <= hi + 1e-12)
    if m.sum() < 2:
        raise ValueError(f"fit_range {fit_range} contains fewer than 2 bins")
    return m


# --------------------------------------------------------------------------- the model


def make_generator(chunk: int):
    """A compiled ``gen(params, key) -> Events`` of ``chunk`` events: charged particles + shower record.

    The returned Events hold the charged final-state particles only (``CHARGED_CAPACITY``
    slots, compacted to the front), the event weight, and the shower's ``extra`` record
    (needed by :func:`diffgen.shower.reweight`) plus ``tau`` = 1 − T of the charged particles,
    ``n_charged``, ``shower_n_emissions``, the overflow flags ``charged_overflow``,
    ``hadron_overflow``, ``cluster_overflow``, ``shower_overflow`` and ``fission_unfinished``.
    """
    import jax
    import jax.numpy as jnp

    from diffgen import chain
    from diffgen.core import Events
    from diffgen.hadronization import charge3, hadronize
    from diffgen.observables import thrust
    from diffgen.processes import ee_to_qqbar
    from diffgen.shower import final_state_shower

    sim = chain(
        ee_to_qqbar(91.1876),
        ("shower", final_state_shower()),
        ("hadronization", hadronize(capacity=HADRON_CAPACITY)),
    )
    keep = (
        *_RECORD_KEYS,
        "shower_n_emissions",
        "shower_overflow",
        "hadron_overflow",
        "cluster_overflow",
        "fission_unfinished",
    )

    @jax.jit
    def gen(params, key):
        ev = sim.sample(params, key, chunk)
        charged = ev.mask & (charge3(ev.pid) != 0)
        # stable sort puts the charged particles first; the thrust is O(P³), so keep only them
        order = jnp.argsort(~charged, axis=1, stable=True)[:, :CHARGED_CAPACITY]
        mask = jnp.take_along_axis(charged, order, axis=1)
        p = jnp.where(mask[..., None], jnp.take_along_axis(ev.p, order[..., None], axis=1), 0.0)
        pid = jnp.where(mask, jnp.take_along_axis(ev.pid, order, axis=1), 0).astype(jnp.int32)
        n_ch = jnp.sum(charged, axis=1).astype(jnp.int32)
        extra = {k: ev.extra[k] for k in keep}
        out = Events(p=p, weight=ev.weight, mask=mask, pid=pid, extra=extra)
        return out.with_extra(tau=1.0 - thrust(out), n_charged=n_ch, charged_overflow=n_ch > CHARGED_CAPACITY)

    return sim, gen


def generate(alpha_s_ref: float, n_events: int, seed: int, *, chunk: int = 2500, generator=None, progress=None):
    """Generate ``n_events`` (rounded up to whole chunks) at αs(m_Z) = ``alpha_s_ref``.

    Returns:
      (Events of the charged particles with the record, see :func:`make_generator`; the
      ``(sim, gen)`` pair, reusable for another call without recompiling).
    """
    import jax
    import jax.numpy as jnp

    from diffgen.core import Events

    if not (isinstance(n_events, int) and n_events >= 100):
        raise ValueError(f"n_events must be an int >= 100, got {n_events!r}")
    if not (0.05 < alpha_s_ref < 0.25):
        raise ValueError(f"alpha_s_ref must lie in (0.05, 0.25), got {alpha_s_ref}")
    chunk = min(chunk, n_events)
    sim, gen = generator if generator is not None else make_generator(chunk)
    params = sim.init(jax.random.key(0))
    params["shower"]["alpha_s_mz"] = jnp.asarray(alpha_s_ref)
    root = jax.random.key(seed)
    parts = []
    for i in range(math.ceil(n_events / chunk)):
        parts.append(jax.block_until_ready(gen(params, jax.random.fold_in(root, i))))
        if progress is not None:
            progress(i + 1, math.ceil(n_events / chunk))
    return Events.concatenate(parts), (sim, gen)


_RECORD_KEYS = (
    "shower_trial_t",
    "shower_trial_r",
    "shower_trial_accepted",
    "shower_alpha_s_mz",
    "shower_alpha_s_order",
    "shower_record_overflow",
)


def record(events) -> dict:
    """The arrays the αs fit needs, all floating (so they can travel as frozen fit parameters).

    Returns:
      ``{"tau": [N], "weight": [N], "t": [N, R], "r": [N, R], "accepted": [N, R] (0/1),
      "alpha_s": [N], "order": [N], "overflow": [N] (0/1)}``.
    """
    import jax.numpy as jnp

    x = events.extra
    dt = events.weight.dtype
    return {
        "tau": x["tau"].astype(dt),
        "weight": events.weight,
        "t": x["shower_trial_t"].astype(dt),
        "r": x["shower_trial_r"].astype(dt),
        "accepted": x["shower_trial_accepted"].astype(dt),
        "alpha_s": x["shower_alpha_s_mz"].astype(dt),
        "order": x["shower_alpha_s_order"].astype(dt),
        "overflow": jnp.asarray(x["shower_record_overflow"]).astype(dt),
    }


def _record_histogram(rec: dict, alpha_s, edges):
    import jax.numpy as jnp

    from diffgen.core import Events
    from diffgen.inference import hard_histogram
    from diffgen.shower import reweight

    n = rec["tau"].shape[0]
    dt = rec["tau"].dtype
    shower = Events(
        p=jnp.zeros((n, 1, 4), dt),
        weight=rec["weight"],
        mask=jnp.zeros((n, 1), bool),
        pid=jnp.zeros((n, 1), jnp.int32),
        extra={
            "shower_trial_t": rec["t"],
            "shower_trial_r": rec["r"],
            "shower_trial_accepted": rec["accepted"] > 0.5,
            "shower_alpha_s_mz": rec["alpha_s"],
            "shower_alpha_s_order": rec["order"].astype(jnp.int32),
            "shower_record_overflow": rec["overflow"] > 0.5,
        },
    )
    edges = jnp.asarray(edges, dt)
    # an event whose trial record overflowed has no reweighting weight (NaN): it is left out of
    # the model (its count is in the JSON's overflow_counts; none at αs ≤ 0.14 in 40 000 events)
    w = jnp.where(rec["overflow"] > 0.5, 0.0, rec["weight"] * reweight(shower, alpha_s))
    total = jnp.sum(w)
    h, w2 = hard_histogram(rec["tau"], edges, weights=w, return_sumw2=True)
    width = jnp.diff(edges)
    return h / total / width, jnp.sqrt(w2) / total / width


def model_histogram(events, alpha_s, edges):
    """Reweighted, normalised 1/N dN/d(1 − T) and its MC error at αs(m_Z) = ``alpha_s``.

    Normalised to the total weight of *all* events (like the data, whose integral over all
    bins is 1), so a fit range only selects bins. The MC error is √(Σw²) per bin over the
    same normalisation.

    Args:
      events: output of :func:`generate`.
      alpha_s: αs′(m_Z), scalar.
      edges: [K+1] bin edges in 1 − T.

    Returns:
      ([K] density, [K] MC standard error), differentiable in ``alpha_s``.
    """
    return _record_histogram(record(events), alpha_s, edges)


def reweighting_quality(events, grid) -> dict[str, list[float]]:
    """Effective sample size of the αs weights and the fraction of negative weights at each αs′ of ``grid``.

    n_eff/N is ``(Σ W w)² / (Σ W² w²)`` divided by the same for the generated weights W alone
    (the hard process's weights vary by ~10 %), so it is 1 at the reference αs.
    """
    import jax.numpy as jnp

    from diffgen.shower import reweight

    base = np.asarray(events.weight, dtype=np.float64)
    # events without a reweighting weight (record overflow) are left out, as in the model
    base = np.where(np.asarray(events.extra["shower_record_overflow"]), 0.0, base)
    n0 = base.sum() ** 2 / np.sum(base**2)
    n_eff, neg = [], []
    for a in grid:
        w = np.nan_to_num(base * np.asarray(reweight(events, jnp.asarray(float(a))), dtype=np.float64))
        n_eff.append(float(w.sum() ** 2 / np.sum(w * w) / n0))
        neg.append(float(np.mean(w < 0)))
    return {"alpha_s": [float(a) for a in grid], "n_eff_over_n": n_eff, "negative_fraction": neg}


def valid_range(quality: dict[str, list[float]], reference: float) -> tuple[float, float]:
    """The interval around ``reference`` where n_eff/N ≥ ``NEFF_MIN`` (grid resolution)."""
    a = np.asarray(quality["alpha_s"])
    ok = np.asarray(quality["n_eff_over_n"]) >= NEFF_MIN
    i0 = int(np.argmin(np.abs(a - reference)))
    lo = hi = i0
    while lo > 0 and ok[lo - 1]:
        lo -= 1
    while hi < len(a) - 1 and ok[hi + 1]:
        hi += 1
    return float(a[lo]), float(a[hi])


def _normalised(m, theta):
    """The model scaled to the data's integral over the fit range (``sel`` = 1 inside)."""
    import jax.numpy as jnp

    width = jnp.diff(theta["edges"])
    return m * jnp.sum(theta["data"] * theta["sel"] * width) / jnp.sum(m * theta["sel"] * width)


def _loss(theta):
    """χ² of the reweighted model; the sample's record, the data, errors and fit-range mask are frozen leaves."""
    from diffgen.inference import chi2

    m = _normalised(_record_histogram(theta["record"], theta["alpha_s"], theta["edges"])[0], theta)
    # bins outside the fit range are multiplied by 0 ("sel"), so one compiled loss serves any range
    return chi2(m * theta["sel"], theta["data"] * theta["sel"], theta["err"])


_FROZEN = ("record", "edges", "data", "err", "sel")
_CACHE: dict = {}


def _compiled():
    """Optimiser, transform and jitted helpers, created once so that ``fit`` reuses its compilation."""
    if not _CACHE:
        import jax
        import optax

        from diffgen.inference import scaled

        _CACHE["optimizer"] = optax.lbfgs()
        _CACHE["transforms"] = {"alpha_s": scaled(ALPHA_S_REF, 0.01)}
        _CACHE["histogram"] = jax.jit(_record_histogram)
        # lax.map, not vmap: one [N, R] reweighting at a time bounds the memory
        _CACHE["scan"] = jax.jit(lambda th, grid: jax.lax.map(lambda a: _loss({**th, "alpha_s": a}), grid))
    return _CACHE


class ThrustFit:
    """χ² fit of αs(m_Z) to a binned 1 − T distribution by reweighting one generated sample.

    The sample's reweighting record, the data values and errors are frozen leaves of the fitted
    params, so fits to other data or of other samples of the same size reuse one compiled fit,
    Hessian and scan.

    Args:
      events: output of :func:`generate` (charged particles, ``tau``, shower record).
      edges: [K+1] bin edges of the data.
    """

    def __init__(self, events, edges) -> None:
        import jax.numpy as jnp

        self.record = record(events)
        self.edges = np.asarray(edges, dtype=np.float64)
        if self.edges.ndim != 1 or self.edges.size < 3 or not np.all(np.diff(self.edges) > 0):
            raise ValueError("edges must be a 1-d strictly increasing array of at least 3 values")
        self._edges = jnp.asarray(self.edges)
        self.reference = float(np.asarray(self.record["alpha_s"])[0])

    def histogram(self, alpha_s):
        """([K] density, [K] MC error) of the reweighted sample at ``alpha_s``."""
        import jax.numpy as jnp

        h, e = _compiled()["histogram"](self.record, jnp.asarray(float(alpha_s)), self._edges)
        return np.asarray(h), np.asarray(e)

    def _scale(self, m, values, sel) -> float:
        w = np.diff(self.edges)
        return float(np.sum((values * w)[sel]) / np.sum((m * w)[sel]))

    def __call__(self, values, errors, fit_range=FIT_RANGE, *, iterations: int = 2, start=None) -> dict:
        """Fit αs(m_Z) to ``values`` ± ``errors`` (data errors only; the MC error is added here).

        The MC error of the model enters the χ² evaluated at the previous iterate (first: the
        reference αs) and held fixed during each minimisation; ``iterations`` such passes.

        Returns:
          dict with ``alpha_s``, ``alpha_s_err`` (Hessian, errordef 1), ``scan_interval``
          (Δχ² = 1 crossings of a χ² scan), ``chi2``, ``ndf``, ``chi2_data_only`` (χ² with the
          data errors alone), ``model`` and ``model_err`` at the optimum, ``fit_mask``, status.
        """
        import jax.numpy as jnp

        from diffgen.inference import fit, hessian_covariance

        c = _compiled()
        sel = fit_mask(self.edges, fit_range)
        values = np.asarray(values, dtype=np.float64)
        errors = np.asarray(errors, dtype=np.float64)
        k = len(self.edges) - 1
        if values.shape != (k,) or errors.shape != (k,):
            raise ValueError(
                f"values and errors must have the {k} bins of the edges, got {values.shape}, {errors.shape}"
            )
        if not np.all(np.isfinite(values)) or not np.all(errors[sel] > 0):
            raise ValueError("values must be finite and errors > 0 in the fit range")
        a_cur = self.reference if start is None else float(start)
        for _ in range(iterations):
            m, mc_err = self.histogram(a_cur)
            scale = self._scale(m, values, sel)
            # bins outside the range get error 1 (they contribute 0 through "sel")
            err = np.where(sel, np.sqrt(errors**2 + (scale * mc_err) ** 2), 1.0)
            theta = {
                "alpha_s": jnp.asarray(a_cur),
                "record": self.record,
                "edges": self._edges,
                "data": jnp.asarray(values),
                "err": jnp.asarray(err),
                "sel": jnp.asarray(sel, jnp.float64),
            }
            res = fit(
                _loss,
                theta,
                c["optimizer"],
                steps=40,
                tol=1e-10,
                gtol=1e-6,
                frozen=_FROZEN,
                transforms=c["transforms"],
                chunk=8,
            )
            a_cur = float(res.params["alpha_s"])
        cov = hessian_covariance(_loss, res.params, frozen=_FROZEN)
        sigma = cov.error("alpha_s")
        # ±3σ: with small pseudo-data samples the χ² is visibly asymmetric (the reweighted model is
        # non-linear in αs), and a Δχ² = 1 crossing can lie beyond 1.6σ on the flat side
        grid = np.linspace(a_cur - 3.0 * sigma, a_cur + 3.0 * sigma, 25)
        chi = np.asarray(c["scan"](res.params, jnp.asarray(grid)))
        m, m_err = self.histogram(a_cur)
        scale = self._scale(m, values, sel)
        m, m_err = scale * m, scale * m_err
        return {
            "alpha_s": a_cur,
            "alpha_s_err": sigma,
            "scan_interval": _crossings(grid, chi - chi.min(), 1.0),
            "chi2": float(res.loss),
            "ndf": int(sel.sum()) - 2,  # αs and the normalisation in the range
            "normalisation": scale,
            "chi2_data_only": float(np.sum(((m - values)[sel] / errors[sel]) ** 2)),
            "fit_status": res.status,
            "fit_steps": res.n_steps,
            "fit_mask": sel,
            "model": m,
            "model_err": m_err,
            "alpha_s_reference": self.reference,
        }


def direct_chi2(events, values, errors, edges, fit_range=FIT_RANGE) -> dict:
    """χ² of one sample generated *directly* at its own αs (no reweighting) to the data.

    The same χ² as the fit's (data ⊕ model MC error, model normalised to the data within the
    fit range), evaluated at the sample's generation αs with all shower weights 1.

    Args:
      events: output of :func:`generate` (its own αs is the reference of its record).
      values, errors: [K] data density 1/N dN/d(1 − T) and its errors.
      edges: [K+1] bin edges in 1 − T; fit_range: (low, high) in 1 − T.

    Returns:
      dict with ``alpha_s``, ``chi2``, ``ndf`` (fitted bins − 1: only the normalisation is
      adjusted here) and ``model`` [K].
    """
    fitter = ThrustFit(events, edges)
    sel = fit_mask(fitter.edges, fit_range)
    m, mc_err = fitter.histogram(fitter.reference)
    scale = fitter._scale(m, values, sel)
    err2 = errors**2 + (scale * mc_err) ** 2
    chi2 = float(np.sum(((values - scale * m) ** 2 / err2)[sel]))
    return {"alpha_s": fitter.reference, "chi2": chi2, "ndf": int(sel.sum()) - 1, "model": scale * m}


def parabola_minimum(alpha_s, chi2) -> dict:
    """Minimum of the least-squares parabola χ²(αs) = a (αs − α₀)² + χ²₀ through scan points.

    Each point is the χ² of an independent sample, so the points scatter about the parabola by
    their MC noise; the uncertainty of α₀ from that scatter is the least-squares covariance of
    the coefficients scaled by the residual variance (``numpy.polyfit(cov=True)``), propagated
    to α₀ = −b/(2a). σ = 1/√a is the Δχ² = 1 half-width.

    Args:
      alpha_s: [M] scan points (M ≥ 4); chi2: [M] their χ².

    Returns:
      dict with ``alpha_s`` (α₀), ``alpha_s_err`` (σ, Δχ² = 1), ``alpha_s_err_scan_noise``,
      ``chi2_min`` (χ²₀), ``coefficients`` [a, b, c] of a αs² + b αs + c, ``residual_rms``.
    """
    x = np.asarray(alpha_s, dtype=np.float64)
    y = np.asarray(chi2, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or x.size < 4:
        raise ValueError(f"need at least 4 scan points with one χ² each, got {x.shape} and {y.shape}")
    xc = x.mean()
    coef, cov = np.polyfit(x - xc, y, 2, cov=True)
    a, b, c = coef
    if not a > 0:
        raise ValueError(f"the χ² scan has no minimum (curvature {a:.3g} ≤ 0): widen or move the scan")
    x0 = -b / (2 * a)
    # d x0 / d(a, b) = (b / (2a²), −1 / (2a))
    jac = np.array([b / (2 * a * a), -1.0 / (2 * a), 0.0])
    resid = y - np.polyval(coef, x - xc)
    return {
        "alpha_s": float(x0 + xc),
        "alpha_s_err": float(1.0 / np.sqrt(a)),
        "alpha_s_err_scan_noise": float(np.sqrt(jac @ cov @ jac)),
        "chi2_min": float(c - b * b / (4 * a)),
        "coefficients": [float(a), float(b - 2 * a * xc), float(a * xc * xc - b * xc + c)],
        "residual_rms": float(np.sqrt(np.mean(resid**2))),
    }


def direct_scan(
    grid, n_events: int, seed: int, data: dict, fit_range=FIT_RANGE, *, chunk: int = 2500, generator=None, say=print
) -> tuple[dict, tuple]:
    """Cross-check of the reweighting fit: χ² of samples generated directly at each αs of ``grid``.

    No reweighting and no derivative is involved, so the result is free of the slope-noise
    attenuation of the reweighted fit (docs/demo_alpha_s.md); it costs one generation per point.

    Args:
      grid: [M] αs(m_Z) values (M ≥ 4); n_events: events per point; seed: seeds ``seed + i``.
      data: :func:`load_data` output.

    Returns:
      (dict with ``points`` (per point: αs, χ², ndf) and the :func:`parabola_minimum` fields;
      the generator, reusable).
    """
    points = []
    for i, a in enumerate(grid):
        events, generator = generate(float(a), n_events, seed + i, chunk=chunk, generator=generator)
        pt = direct_chi2(events, data["values"], data["errors"], data["edges"], fit_range)
        points.append({k: pt[k] for k in ("alpha_s", "chi2", "ndf")})
        say(f"  direct scan: αs = {pt['alpha_s']:.4f}: χ² = {pt['chi2']:.1f}/{pt['ndf']}")
    par = parabola_minimum([p["alpha_s"] for p in points], [p["chi2"] for p in points])
    return {"points": points, "n_events_per_point": n_events, **par}, generator


EMISSION_BINS = ((0, 1), (1, 2), (2, 3), (3, 4), (4, 6), (6, 1000))


def response(samples: dict) -> dict:
    """Hadron-level response to αs of directly generated (unweighted in αs) samples.

    Args:
      samples: ``{αs: events}`` from :func:`generate`.

    Returns:
      ``{αs: {"tau": (mean, error), "n_charged": (mean, error), "n_emissions": (mean, error),
      "by_emissions": [(low, high, events, ⟨1 − T⟩, ⟨N_ch⟩), ...]}}`` with the events binned in
      the number of shower emissions (:data:`EMISSION_BINS`, ``low ≤ n < high``).
    """
    out = {}
    for a, ev in samples.items():
        x = {k: np.asarray(ev.extra[k], dtype=np.float64) for k in ("tau", "n_charged", "shower_n_emissions")}
        n = len(x["tau"])
        row = {
            k2: (float(v.mean()), float(v.std(ddof=1) / math.sqrt(n)))
            for k2, v in (("tau", x["tau"]), ("n_charged", x["n_charged"]), ("n_emissions", x["shower_n_emissions"]))
        }
        rows = []
        for lo, hi in EMISSION_BINS:
            sel = (x["shower_n_emissions"] >= lo) & (x["shower_n_emissions"] < hi)
            k = int(sel.sum())
            rows.append(
                (
                    lo,
                    hi,
                    k,
                    float(x["tau"][sel].mean()) if k else math.nan,
                    float(x["n_charged"][sel].mean()) if k else math.nan,
                )
            )
        row["by_emissions"] = rows
        out[float(a)] = row
    return out


def print_response(table: dict) -> None:
    """Print :func:`response` as two small tables."""
    print("αs      ⟨1−T⟩ charged     ⟨N_ch⟩          ⟨n_emissions⟩")
    for a, r in table.items():
        t, c, e = r["tau"], r["n_charged"], r["n_emissions"]
        print(f"{a:.4f}  {t[0]:.4f} ± {t[1]:.4f}  {c[0]:6.2f} ± {c[1]:.2f}  {e[0]:.3f} ± {e[1]:.3f}")
    print("by shower emissions: events, ⟨1−T⟩ charged, ⟨N_ch⟩")
    for a, r in table.items():
        cells = "  ".join(
            f"[{lo},{hi if hi < 1000 else '∞'}): {k} {t:.4f} {c:.1f}" for lo, hi, k, t, c in r["by_emissions"]
        )
        print(f"{a:.4f}  {cells}")


def bootstrap_error(fitter: ThrustFit, values, errors, fit_range=FIT_RANGE, *, n_boot: int = 20, seed: int = 0) -> dict:
    """Spread of the fitted αs over bootstrap replicas of the *reference sample* (model fluctuation).

    Each replica multiplies the event weights by Poisson(1) numbers and refits (one pass); the
    shapes do not change, so the compiled fit is reused. This captures the MC fluctuation of
    the model's αs dependence (the reweighting noise in dm/dαs), which the per-bin MC error in
    the χ² does not.

    Returns:
      ``{"alpha_s_std": σ_boot, "alpha_s": [n_boot] replica results}``.
    """
    import copy

    import jax.numpy as jnp

    if not (isinstance(n_boot, int) and n_boot >= 2):
        raise ValueError(f"n_boot must be an int >= 2, got {n_boot!r}")
    rng = np.random.default_rng(seed)
    base = fitter.record["weight"]
    out = []
    for _ in range(n_boot):
        rep = copy.copy(fitter)
        k = jnp.asarray(rng.poisson(1.0, size=base.shape[0]).astype(np.float64))
        rep.record = {**fitter.record, "weight": base * k}
        out.append(rep(values, errors, fit_range, iterations=1)["alpha_s"])
    return {"alpha_s_std": float(np.std(out, ddof=1)), "alpha_s": [float(a) for a in out]}


def _crossings(x: np.ndarray, delta: np.ndarray, level: float) -> list[float]:
    """Where ``delta`` crosses ``level`` left and right of its minimum (linear interpolation; NaN if not)."""
    i0 = int(np.argmin(delta))
    out = []
    for step in (-1, 1):
        val = float("nan")
        i = i0
        while 0 <= i + step < len(x):
            j = i + step
            if delta[j] >= level > delta[i]:
                val = float(x[i] + (level - delta[i]) * (x[j] - x[i]) / (delta[j] - delta[i]))
                break
            i = j
        out.append(val)
    return out


# --------------------------------------------------------------------------- output


def plot(data, result, fit_range, path: Path) -> None:
    """Data vs the fitted model with a ratio panel (model / data), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from diffgen.plotting import save

    e = np.asarray(data["edges"])
    c = 0.5 * (e[:-1] + e[1:])
    y, ye = data["values"], data["errors"]
    m, me = result["model"], result["model_err"]
    fig, (ax, rax) = plt.subplots(2, 1, sharex=True, figsize=(6.4, 6.0), gridspec_kw={"height_ratios": [3, 1]})
    label = (
        f"diffgen shower + clusters, αs(m_Z) = {result['alpha_s']:.4f} ± {result['alpha_s_err']:.4f}\n"
        "(normalised to the data in the fit range)"
    )
    ax.stairs(m, e, color="C0", label=label)
    ax.fill_between(e, np.append(m - me, 0), np.append(m + me, 0), step="post", color="C0", alpha=0.3, lw=0)
    ax.errorbar(c, y, yerr=ye, fmt="o", ms=3, color="k", label="ALEPH 1996, charged particles")
    for a in (ax, rax):
        a.axvspan(e[0], fit_range[0], color="0.92", lw=0, zorder=0)
        a.axvspan(fit_range[1], e[-1], color="0.92", lw=0, zorder=0)
    ax.set_yscale("log")
    ax.set_ylabel("1/N dN/d(1 − T)")
    ax.set_title(
        f"χ²/ndf = {result['chi2']:.1f}/{result['ndf']} in {fit_range[0]} ≤ 1 − T < {fit_range[1]}", fontsize=10
    )
    ax.legend(fontsize=8)
    rax.axhline(1.0, color="k", lw=0.8)
    rax.errorbar(c, np.ones_like(y), yerr=ye / y, fmt="o", ms=3, color="k")
    rax.stairs(m / y, e, color="C0")
    rax.fill_between(
        e, np.append((m - me) / y, 1), np.append((m + me) / y, 1), step="post", color="C0", alpha=0.3, lw=0
    )
    rax.set_ylim(0.5, 1.5)
    rax.set_ylabel("model / data")
    rax.set_xlabel("1 − T (charged particles)")
    rax.set_xlim(e[0], e[-1])
    fig.tight_layout()
    save(fig, path)
    plt.close(fig)


def plot_scan(scan: dict, fit: dict, path: Path) -> None:
    """χ² of the directly generated samples against αs with the fitted parabola, and the
    reweighting fit's result, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from diffgen.plotting import save

    x = np.array([pt["alpha_s"] for pt in scan["points"]])
    y = np.array([pt["chi2"] for pt in scan["points"]])
    xs = np.linspace(x.min(), x.max(), 200)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(x, y, "o", color="k", label=f"direct generation, {scan['n_events_per_point']} events per point")
    ax.plot(
        xs,
        np.polyval(scan["coefficients"], xs),
        color="C0",
        label=f"parabola: αs = {scan['alpha_s']:.4f} ± {scan['alpha_s_err']:.4f} (Δχ² = 1)",
    )
    ax.errorbar(
        [fit["alpha_s"]],
        [scan["chi2_min"]],
        xerr=[fit["alpha_s_err"]],
        fmt="s",
        color="C1",
        label=f"reweighting fit: {fit['alpha_s']:.4f} ± {fit['alpha_s_err']:.4f}",
    )
    ax.set_xlabel("αs(m_Z)")
    ax.set_ylabel("χ² (data ⊕ MC errors)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save(fig, path)
    plt.close(fig)


def write_json(obj, path: Path) -> None:
    """Write ``obj`` as JSON atomically."""
    from diffgen.io import atomic_write

    with atomic_write(path, "w") as fh:
        json.dump(obj, fh, indent=2)
        fh.write("\n")


def run(
    n_events: int,
    out: Path,
    *,
    seed: int = 1,
    alpha_s_ref: float = ALPHA_S_REF,
    fit_range=FIT_RANGE,
    chunk: int = 2500,
    max_regenerations: int = 3,
    data_file=None,
    n_boot: int = 0,
    scan=None,
    scan_events: int | None = None,
    verbose: bool = True,
) -> dict:
    """Generate, fit, plot, write; returns the summary written to ``alpha_s_thrust.json``.

    ``scan = (low, high, points)`` adds the direct-generation cross-check :func:`direct_scan`
    (``scan_events`` events per point, default ``n_events``; seeds from ``seed + 1000``),
    written to the JSON's ``direct_scan`` and ``alpha_s_thrust_scan.png``.
    """
    import jax

    jax.config.update("jax_enable_x64", True)
    say = print if verbose else (lambda *a, **k: None)
    t_start = time.time()
    data = load_data(data_file)
    fit_mask(data["edges"], fit_range)
    generator = None
    history = []
    ref = alpha_s_ref
    for attempt in range(max_regenerations + 1):
        t0 = time.time()
        events, generator = generate(ref, n_events, seed + attempt, chunk=chunk, generator=generator)
        t_gen = time.time() - t0
        say(f"generated {events.n_events} events at αs_ref = {ref:.4f} in {t_gen:.1f} s")
        grid = np.round(np.arange(ref - 0.03, ref + 0.0301, 0.0025), 5)
        quality = reweighting_quality(events, grid)
        lo, hi = valid_range(quality, ref)
        fitter = ThrustFit(events, data["edges"])
        res = fitter(data["values"], data["errors"], fit_range)
        inside = lo <= res["alpha_s"] <= hi
        history.append(
            {
                "alpha_s_reference": ref,
                "alpha_s": res["alpha_s"],
                "alpha_s_err": res["alpha_s_err"],
                "valid_range": [lo, hi],
                "inside_valid_range": inside,
            }
        )
        say(
            f"αs = {res['alpha_s']:.4f} ± {res['alpha_s_err']:.4f}, χ²/ndf = {res['chi2']:.1f}/{res['ndf']}, "
            f"reweighting valid in [{lo:.4f}, {hi:.4f}]"
        )
        # The fit is pulled towards the reference by the noise of the reweighted slope, in proportion
        # to |αs − αs_ref| (docs/demo_alpha_s.md), so only a fit that lands close to its own
        # reference is free of that bias; otherwise regenerate at the fitted value.
        near = abs(res["alpha_s"] - ref) < NEAR_REFERENCE * res["alpha_s_err"]
        history[-1]["near_reference"] = near
        if inside and near:
            break
        ref = float(np.clip(res["alpha_s"], 0.08, 0.16))
    scan_result = None
    if scan is not None:
        low, high, points = scan
        if not (0.05 < low < high < 0.25 and int(points) >= 4):
            raise ValueError(
                f"scan must be (low, high, points) with 0.05 < low < high < 0.25 and points >= 4, got {scan}"
            )
        say(f"direct-generation scan over {int(points)} points in [{low}, {high}]:")
        scan_result, generator = direct_scan(
            np.linspace(low, high, int(points)),
            int(scan_events or n_events),
            seed + 1000,
            data,
            fit_range,
            chunk=chunk,
            generator=generator,
            say=say,
        )
        say(
            f"direct scan: αs = {scan_result['alpha_s']:.4f} ± {scan_result['alpha_s_err']:.4f} (Δχ² = 1) "
            f"± {scan_result['alpha_s_err_scan_noise']:.4f} (scan noise), χ²_min = {scan_result['chi2_min']:.1f}"
        )
    boot = None
    if n_boot:
        boot = bootstrap_error(fitter, data["values"], data["errors"], fit_range, n_boot=n_boot, seed=seed)
        say(f"bootstrap of the reference sample ({n_boot} replicas): σ_boot(αs) = {boot['alpha_s_std']:.4f}")
    flags = {
        k: int(np.sum(np.asarray(events.extra[k])))
        for k in (
            "shower_overflow",
            "shower_record_overflow",
            "cluster_overflow",
            "hadron_overflow",
            "charged_overflow",
            "fission_unfinished",
        )
    }
    sel = res["fit_mask"]
    summary = {
        "alpha_s_mz": res["alpha_s"],
        "alpha_s_mz_err_hessian": res["alpha_s_err"],
        "alpha_s_mz_interval_delta_chi2_1": res["scan_interval"],
        "alpha_s_mz_err_bootstrap_model": None if boot is None else boot["alpha_s_std"],
        "bootstrap_replicas": None if boot is None else boot["alpha_s"],
        "chi2": res["chi2"],
        "ndf": res["ndf"],
        "chi2_per_ndf": res["chi2"] / res["ndf"],
        "chi2_data_errors_only": res["chi2_data_only"],
        "errors_in_chi2": "ALEPH total (stat+syst, uncorrelated) ⊕ model MC statistical error",
        "fit_status": res["fit_status"],
        "fit_range_1_minus_T": list(fit_range),
        "n_bins_fitted": int(sel.sum()),
        "inputs": {
            "data": DATA_NAME,
            "n_events": int(events.n_events),
            "seed": seed,
            "alpha_s_reference": res["alpha_s_reference"],
            "model": "ee_to_qqbar(91.1876) + final_state_shower() (2-loop αs, t0 = 1 GeV²) + hadronize() defaults",
            "observable": "1 - T of charged final-state particles",
            "mean_charged_multiplicity": float(np.mean(np.asarray(events.extra["n_charged"]))),
            "overflow_counts": flags,
        },
        "reweighting": {**quality, "valid_range_neff_ge_0.5": [lo, hi]},
        "iterations": history,
        "bins": {
            "edges": [float(x) for x in data["edges"]],
            "data": [float(x) for x in data["values"]],
            "data_err": [float(x) for x in data["errors"]],
            "model": [float(x) for x in res["model"]],
            "model_mc_err": [float(x) for x in res["model_err"]],
            "fitted": [bool(x) for x in sel],
        },
        "direct_scan": scan_result,
        "time_s": time.time() - t_start,
    }
    out.mkdir(parents=True, exist_ok=True)
    plot(data, res, fit_range, out / "alpha_s_thrust.png")
    if scan_result is not None:
        plot_scan(scan_result, res, out / "alpha_s_thrust_scan.png")
    write_json(summary, out / "alpha_s_thrust.json")
    say(f"wrote {out / 'alpha_s_thrust.png'} and {out / 'alpha_s_thrust.json'} ({summary['time_s']:.0f} s)")
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-events", type=int, default=40_000, help="events generated (default 40000)")
    ap.add_argument("--out", type=Path, default=Path("out"), help="output directory (default out/)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--alpha-s-ref", type=float, default=ALPHA_S_REF, help="generation αs(m_Z) (default 0.118)")
    ap.add_argument("--fit-range", type=float, nargs=2, default=FIT_RANGE, metavar=("LOW", "HIGH"))
    ap.add_argument("--chunk", type=int, default=2500, help="events per compiled generation call")
    ap.add_argument(
        "--max-regenerations",
        type=int,
        default=3,
        help="regenerate at the fitted αs if it lies outside the reweighting range or more than "
        "NEAR_REFERENCE σ from the generation αs (default 3)",
    )
    ap.add_argument("--data", type=Path, default=None, help=f"the ALEPH table (default ../shared/data/{DATA_NAME})")
    ap.add_argument(
        "--bootstrap", type=int, default=0, help="replicas of the reference sample for σ_boot(αs) (default 0: off)"
    )
    ap.add_argument(
        "--scan",
        type=float,
        nargs=3,
        default=None,
        metavar=("LOW", "HIGH", "POINTS"),
        help="cross-check: χ² of samples generated directly at POINTS αs values in [LOW, HIGH], "
        "minimum of a parabola through them (default: off)",
    )
    ap.add_argument("--scan-events", type=int, default=None, help="events per scan point (default --n-events)")
    ap.add_argument(
        "--response",
        type=float,
        nargs="+",
        default=None,
        metavar="ALPHA_S",
        help="only print the hadron-level response (⟨1−T⟩, N_ch, by shower emissions) of samples "
        "generated directly at these αs(m_Z) (--n-events each, seeds --seed, --seed + 1, ...) and exit",
    )
    args = ap.parse_args(argv)
    if args.n_events < 100:
        ap.error(f"--n-events must be >= 100, got {args.n_events}")
    if args.chunk < 1:
        ap.error(f"--chunk must be >= 1, got {args.chunk}")
    if args.scan_events is not None and args.scan_events < 100:
        ap.error(f"--scan-events must be >= 100, got {args.scan_events}")
    if args.response is not None:
        import jax

        jax.config.update("jax_enable_x64", True)
        generator, samples = None, {}
        for i, a in enumerate(args.response):
            samples[a], generator = generate(
                a, args.n_events, args.seed + i, chunk=min(args.chunk, args.n_events), generator=generator
            )
        print_response(response(samples))
        return 0
    try:
        run(
            args.n_events,
            args.out,
            seed=args.seed,
            alpha_s_ref=args.alpha_s_ref,
            fit_range=tuple(args.fit_range),
            chunk=args.chunk,
            max_regenerations=args.max_regenerations,
            data_file=args.data,
            n_boot=args.bootstrap,
            scan=None if args.scan is None else (args.scan[0], args.scan[1], int(args.scan[2])),
            scan_events=args.scan_events,
        )
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
