"""The Z lineshape fit (``diffgen demo``): m_Z, Γ_Z and σ⁰_had from the LEP hadronic cross sections.

What it does:

1. generates weighted e⁺e⁻ → q q̄ (u, d, s, c, b) and e⁺e⁻ → μ⁺μ⁻ Born events across the Z
   (:func:`diffgen.processes.ee_to_qqbar`, :func:`~diffgen.processes.ee_to_ffbar`; running
   width ``i sΓ_Z/m_Z``, the LEP definition of m_Z and Γ_Z; γ exchange and γ–Z interference
   included; (1 + α_s/π) on the quarks);
2. fits ``m_z``, ``gamma_z`` and a normalisation ``norm`` of the hadronic cross section to the
   σ⁰_had column (QED initial-state radiation removed) of the LEP 7-point average table, by
   minimising a χ² through the Monte Carlo estimate σ̂(√s; θ) = mean of the event weights,
   with the same random numbers at every energy and every step (so χ²(θ) is smooth), using
   :func:`diffgen.inference.fit` with optax L-BFGS (or Adam);
3. takes the uncertainties from the inverse Hessian of the χ² (``jax.hessian``) and writes
   the events, plots and a JSON summary.

The χ² covariance (LEP EWWG, Phys. Rept. 427 (2006) 257, hep-ex/0509008, §2.2 for the
treatment of common errors) is ``V = diag(δσ_i²) + diag((σ′_i δE_i)²) + σ′σ′ᵀ δE_c² +
ε_L² σσᵀ``, with the per-point errors δσ_i, the per-point energy errors δE_i and the common
energy error δE_c = 1.7 MeV propagated through the slope σ′ = dσ/d√s of the model (from
``jax.jacfwd``, evaluated at the previous fit and then held fixed: two passes), and the common
relative normalisation error ε_L = 0.07 % of the table.

The pole cross section is derived from the fit as σ⁰_had = σ̂(√s = m_Z) − σ_γ(m_Z), where the
pure-photon term σ_γ = N_c Σ_q Q_q² (4πα²/3s)(1 + α_s/π) is removed analytically (the
γ–Z interference vanishes at √s = m_Z with the running width); its error is propagated with
the Hessian covariance.
"""

from __future__ import annotations

import functools
import io
import math
import os
import time
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from diffgen.inference import chi2, fit, hessian_covariance, scaled
from diffgen.processes import constants as C
from diffgen.processes import cross_section, ee_to_qqbar

__all__ = [
    "LEP_REFERENCE",
    "LineshapeData",
    "load_lep_table",
    "make_model",
    "fit_lineshape",
    "linear_gls_reference",
]

#: The LEP combination (LEP EWWG, Phys. Rept. 427 (2006) 257, Table 2.13), for comparison only.
LEP_REFERENCE = {
    "m_z": (91.1875, 0.0021),
    "gamma_z": (2.4952, 0.0023),
    "sigma0_had_nb": (41.540, 0.037),
}
#: Common √s error (GeV) and common relative normalisation error given with the table.
COMMON_ENERGY_ERROR = 0.0017
COMMON_NORM_ERROR = 0.0007
TABLE_NAME = "lep_hadronic_xsec_7point_average_kafe.csv"
PB_PER_NB = 1000.0


class LineshapeData:
    """The LEP table: energies (GeV), σ⁰_had and errors (nb), energy errors (GeV).

    Attributes:
      sqrt_s, sqrt_s_err, sigma, sigma_err: [K] NumPy arrays.
      source: where the table was read from.
    """

    def __init__(self, sqrt_s, sqrt_s_err, sigma, sigma_err, source: str) -> None:
        self.sqrt_s = np.asarray(sqrt_s, dtype=np.float64)
        self.sqrt_s_err = np.asarray(sqrt_s_err, dtype=np.float64)
        self.sigma = np.asarray(sigma, dtype=np.float64)
        self.sigma_err = np.asarray(sigma_err, dtype=np.float64)
        self.source = source
        k = self.sqrt_s.shape
        if len(k) != 1 or k[0] < 4:
            raise ValueError(f"the lineshape table needs at least 4 energy points, got {k}")
        for name in ("sqrt_s_err", "sigma", "sigma_err"):
            if getattr(self, name).shape != k:
                raise ValueError(f"column {name} has shape {getattr(self, name).shape}, expected {k}")
        if not np.all(np.isfinite(self.sigma)) or not np.all(self.sigma_err > 0) or not np.all(self.sqrt_s_err >= 0):
            raise ValueError("cross sections must be finite with errors > 0 and energy errors >= 0")
        if not np.all(self.sqrt_s > 20.0):
            raise ValueError("energies must be in GeV around the Z (> 20 GeV)")


def load_lep_table(path: str | os.PathLike[str] | None = None) -> LineshapeData:
    """Read the LEP 7-point σ⁰_had table (package copy by default; header lines start with ``#``).

    Args:
      path: CSV with columns ``E_cm_GeV, E_cm_err_GeV, sigma0_had_nb, sigma0_had_err_nb``
        (further columns ignored); default the copy in ``diffgen/data``.

    Returns:
      :class:`LineshapeData`.
    """
    if path is None:
        text = resources.files("diffgen").joinpath("data", TABLE_NAME).read_text()
        source = f"diffgen/data/{TABLE_NAME}"
    else:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"data file {str(path)!r} does not exist")
        text = path.read_text()
        source = str(path)
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise ValueError(f"{source}: no data lines")
    header = [h.strip() for h in lines[0].split(",")]
    need = ["E_cm_GeV", "E_cm_err_GeV", "sigma0_had_nb", "sigma0_had_err_nb"]
    missing = [c for c in need if c not in header]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing}; found {header}")
    table = np.genfromtxt(io.StringIO("\n".join(lines[1:])), delimiter=",", dtype=np.float64, ndmin=2)
    cols = {name: table[:, header.index(name)] for name in need}
    return LineshapeData(
        cols["E_cm_GeV"], cols["E_cm_err_GeV"], cols["sigma0_had_nb"], cols["sigma0_had_err_nb"], source
    )


def make_model(n_events: int, *, dtype=jnp.float64):
    """The Monte Carlo model σ_had(√s; θ) in nb, with common random numbers over energies and steps.

    Args:
      n_events: weighted events per energy (static).
      dtype: float dtype.

    Returns:
      ``(model, source, base)``: ``model(theta, energies, key) -> (sigma [K] nb, mc_error [K] nb)``
      with ``theta = {"m_z", "gamma_z", "norm", …}``; the same ``key`` is used at every energy
      (correlated MC fluctuations largely cancel in the shape, and the normalisation absorbs
      the rest); the hadronic ``Source``; its default params.
    """
    source = ee_to_qqbar(91.1876, width="running", qcd_correction=True, dtype=dtype)
    base = source.init(jax.random.key(0))

    def model(theta: Mapping[str, jax.Array], energies: jax.Array, key: jax.Array):
        def one(e):
            p = {**base, "sqrt_s": e, "m_z": theta["m_z"], "gamma_z": theta["gamma_z"]}
            return cross_section(source, p, key, n_events)

        sig, err = jax.vmap(one)(energies)
        return theta["norm"] * sig / PB_PER_NB, theta["norm"] * err / PB_PER_NB

    return model, source, base


def _photon_only_nb(m_z, base: Mapping[str, Any]):
    """σ(e⁺e⁻ → γ* → hadrons) at √s = m_Z: N_c Σ_q Q_q² (4πα²/3s)(1 + α_s/π) (massless quarks), nb."""
    sum_q2 = sum(C.FERMIONS[q].charge ** 2 for q in "udscb")
    s = m_z * m_z
    return (3.0 * sum_q2 * 4.0 * math.pi * base["alpha_em"] ** 2 / (3.0 * s) * (1.0 + base["alpha_s"] / math.pi)) * (
        C.GEV2_PB / PB_PER_NB
    )


@functools.lru_cache(maxsize=8)
def _problem(n_events: int, dtype_name: str, energies: tuple, errors: tuple, optimizer: str, steps: int):
    """Model, χ² loss, optimiser and transforms, built once per configuration (one compilation).

    The data values ``y`` and the fixed covariance ``V`` travel as frozen leaves of the params,
    so refits (second pass, pseudo-data, other seeds via ``key``) reuse the compiled fit.
    """
    dtype = jnp.dtype(dtype_name)
    model, source, base = make_model(n_events, dtype=dtype)
    e = jnp.asarray(energies, dtype)
    err = jnp.asarray(errors, dtype)

    def loss(th, key):
        return chi2(model(th, e, key)[0], th["y"], err, covariance=th["V"])

    def covariance(th, key, e_err):
        slope = jnp.diag(jax.jacfwd(lambda x: model(th, x, key)[0])(e))  # dσ_i/d√s_i
        pred = model(th, e, key)[0]
        v = jnp.diag((slope * e_err) ** 2)
        v = v + COMMON_ENERGY_ERROR**2 * slope[:, None] * slope[None, :]
        return v + COMMON_NORM_ERROR**2 * pred[:, None] * pred[None, :]

    opt = optax.lbfgs() if optimizer == "lbfgs" else optax.adam(optax.cosine_decay_schedule(0.3, steps))
    # O(1) variables for the optimiser: the parameters move by ~0.01 GeV and ~0.1 %
    transforms = {"m_z": scaled(91.19, 0.01), "gamma_z": scaled(2.5, 0.01), "norm": scaled(1.0, 0.001)}

    def sigma0(th, key):
        sig_peak = model(th, jnp.reshape(th["m_z"], (1,)), key)[0][0]
        return sig_peak - th["norm"] * _photon_only_nb(th["m_z"], base)

    return {
        "model": model,
        "source": source,
        "base": base,
        "loss": loss,
        "covariance": jax.jit(covariance),
        "optimizer": opt,
        "transforms": transforms,
        "sigma0": sigma0,
        "sigma0_grad": jax.jit(jax.grad(sigma0)),
        "sigma0_value": jax.jit(sigma0),
        "model_jit": jax.jit(model),
        "energies": e,
    }


def fit_lineshape(
    data: LineshapeData,
    *,
    n_events: int = 100_000,
    seed: int = 1,
    values: Any = None,
    start: Mapping[str, float] | None = None,
    optimizer: str = "lbfgs",
    steps: int = 200,
    progress: bool = False,
    dtype=jnp.float64,
) -> dict[str, Any]:
    """Fit m_Z, Γ_Z and the hadronic normalisation to a lineshape table (two passes, see module doc).

    Args:
      data: the table (energies, errors; its σ values unless ``values`` is given).
      n_events: weighted events per energy point in the MC estimate.
      seed: random seed of the sample.
      values: optional [K] cross sections (nb) replacing ``data.sigma`` (pseudo-data).
      start: starting values ``{"m_z", "gamma_z", "norm"}`` (default 91.0, 2.6, 1.0: away
        from the answer on purpose).
      optimizer: ``"lbfgs"`` or ``"adam"`` (optax).
      steps: maximum optimiser steps per pass.
      progress: show progress bars.
      dtype: float dtype.

    Returns:
      dict with ``params`` (fitted, floats), ``errors``, ``correlation``, ``names``, ``chi2``,
      ``ndf``, ``sigma0_had_nb`` and ``sigma0_had_err_nb``, ``prediction_nb``, ``V`` (total
      data covariance), the fit results of both passes and timings.
    """
    if not isinstance(n_events, int) or n_events < 100:
        raise ValueError(f"n_events must be an int >= 100, got {n_events!r}")
    if optimizer not in ("lbfgs", "adam"):
        raise ValueError(f"optimizer must be 'lbfgs' or 'adam', got {optimizer!r}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    prob = _problem(n_events, jnp.dtype(dtype).name, tuple(data.sqrt_s), tuple(data.sigma_err), optimizer, steps)
    key = jax.random.key(seed)
    k = data.sqrt_s.shape[0]
    y = data.sigma if values is None else np.asarray(values, dtype=np.float64)
    if y.shape != (k,) or not np.all(np.isfinite(y)):
        raise ValueError(f"values must be [{k}] finite cross sections in nb, got shape {y.shape}")
    start = {"m_z": 91.0, "gamma_z": 2.6, "norm": 1.0, **(start or {})}
    theta = {name: jnp.asarray(float(start[name]), dtype) for name in ("m_z", "gamma_z", "norm")}
    theta["y"] = jnp.asarray(y, dtype)
    theta["V"] = jnp.zeros((k, k), dtype)
    e_err = jnp.asarray(data.sqrt_s_err, dtype)

    t0 = time.perf_counter()
    passes = []
    for i in range(2):
        res = fit(
            prob["loss"],
            theta,
            prob["optimizer"],
            steps=steps,
            key=key,
            frozen=("y", "V"),
            transforms=prob["transforms"],
            tol=1e-12,
            gtol=1e-9,
            progress=progress,
            description=f"χ² fit, pass {i + 1}/2",
            chunk=25,
        )
        if res.status == "nan":
            raise FloatingPointError(f"lineshape fit failed: {res.message}")
        passes.append(res)
        if i == 0:
            # pass 2 minimises with the energy and normalisation errors propagated at pass 1's optimum
            theta = {**res.params, "V": prob["covariance"](res.params, key, e_err)}
        else:
            theta = res.params
    t_fit = time.perf_counter() - t0

    t1 = time.perf_counter()
    cov = hessian_covariance(prob["loss"], theta, errordef=1.0, frozen=("y", "V"), key=key)
    chi2_min = passes[-1].loss
    sigma0_val = float(prob["sigma0_value"](theta, key))
    g = prob["sigma0_grad"](theta, key)
    gvec = np.asarray([float(g[n]) for n in cov.names])
    sigma0_err = float(np.sqrt(gvec @ cov.matrix @ gvec))
    t_hess = time.perf_counter() - t1
    pred, mc_err = prob["model_jit"](theta, prob["energies"], key)
    return {
        "params": {n: float(theta[n]) for n in ("m_z", "gamma_z", "norm")},
        "errors": dict(cov.errors),
        "correlation": cov.correlation,
        "names": cov.names,
        "chi2": chi2_min,
        "ndf": int(k - 3),
        "sigma0_had_nb": sigma0_val,
        "sigma0_had_err_nb": sigma0_err,
        "prediction_nb": np.asarray(pred),
        "mc_error_nb": np.asarray(mc_err),
        "V": np.asarray(theta["V"]) + np.diag(data.sigma_err**2),
        "theta": theta,
        "key": key,
        "problem": prob,
        "passes": passes,
        "time_fit_s": t_fit,
        "time_hessian_s": t_hess,
    }


def linear_gls_reference(
    problem: Mapping[str, Any],
    key: Any,
    truth: Mapping[str, float],
    v_tot: np.ndarray,
    draws: np.ndarray,
    asimov: np.ndarray,
    *,
    n_coverage: int = 100_000,
) -> dict[str, np.ndarray]:
    """The linear generalised-least-squares estimator a closure study of the lineshape fit compares with.

    With pseudo-data ``y`` drawn around the Asimov prediction ``y(θ)`` with covariance ``V`` and the
    model's Monte Carlo sample held fixed, a converged χ² fit equals
    ``θ + (JᵀV⁻¹J)⁻¹JᵀV⁻¹(y − y(θ))`` to first order, with σ = √diag((JᵀV⁻¹J)⁻¹) (J the model's
    Jacobian at the truth); its coverage over many draws is what the fit's would be.

    Args:
      problem: ``fit_lineshape(...)["problem"]`` (needs ``model`` and ``energies``).
      key: the fit's key (the model's common random numbers).
      truth: the true parameters (``m_z``, ``gamma_z``, ``norm``), in this order in the outputs.
      v_tot: [7, 7] covariance of the pseudo-data (nb²).
      draws: [T, 7] pseudo-data cross sections (nb); asimov: [7] the prediction at the truth.
      n_coverage: draws (seeded) for the estimator's 2σ coverage.

    Returns:
      ``{"linear": [T, P] estimates, "sigma": [P], "coverage_2sigma": [P]}``.
    """
    th = {k: jnp.asarray(v) for k, v in truth.items()}
    jac = jax.jacfwd(lambda t: problem["model"](t, problem["energies"], key)[0])(th)
    j = np.stack([np.asarray(jac[k]) for k in truth], axis=1)
    v_inv = np.linalg.inv(v_tot)
    cov_lin = np.linalg.inv(j.T @ v_inv @ j)
    gain = cov_lin @ j.T @ v_inv
    sigma = np.sqrt(np.diag(cov_lin))
    truth_vec = np.asarray(list(truth.values()))
    linear = truth_vec + (gain @ (np.asarray(draws) - asimov).T).T
    z = np.random.default_rng(0).normal(size=(n_coverage, len(asimov)))
    chol = np.linalg.cholesky(v_tot)
    coverage = np.mean(np.abs((gain @ (chol @ z.T)).T / sigma) < 2.0, axis=0)
    return {"linear": linear, "sigma": sigma, "coverage_2sigma": coverage}
