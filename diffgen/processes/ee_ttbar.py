"""e⁺e⁻ → t t̄ → b W⁺ b̄ W⁻ → six fermions with Breit–Wigner tops and Ws (toy model).

A decay-chain example built from :mod:`diffgen.phasespace`. The cross section is the
factorised, spin-averaged form

    dσ = dσ_tt̄(s; s_t, s_t̄)/dcos θ · dcos θ · Π_{t, t̄} ρ_t(s_t) ds_t · Π_{W⁺, W⁻} ρ_W(s_W) ds_W
         · Π (dΩ*/4π) · BR(W⁺ → X) BR(W⁻ → Y),

with ``ρ(s) = (1/π) mΓ/((s − m²)² + m²Γ²)`` (normalised Breit–Wigner), the Born
γ*/Z → t t̄ angular distribution of :mod:`diffgen.processes.born` evaluated with the
velocity ``β = λ^½(s, s_t, s_t̄)/s`` of the off-shell pair (a toy extension of the
equal-mass formula), isotropic decays in each rest frame (no spin correlations: "toy
spin-averaged matrix element") and tree-level branching ratios BR(W → ℓν) = 1/9,
BR(W → q q̄′) = 3/9 (N_c = 3, CKM = 1). In the narrow-width limit it integrates to
``σ_tt̄ · BR · BR``. Invariants are generated with the arctan mapping
(:func:`diffgen.phasespace.breit_wigner`), for which ``ρ(s)·ds/du`` is the constant window
probability (:func:`diffgen.phasespace.breit_wigner_fraction`): the weight depends on m_t,
Γ_t, m_W through the windows and the production factor, and the momenta depend on them
pathwise, so ``jax.grad`` of weighted observables with respect to ``m_t``, ``gamma_t``,
``m_w`` (and ``gamma_w``) is available. Reference for the decay-chain factorisation: PDG
"Kinematics", eq. 49.45; for the W branching ratios e.g. ESW "QCD and collider
physics", section 8.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import jax
import jax.numpy as jnp

from diffgen import kinematics as kin
from diffgen.core import Events, Source
from diffgen.phasespace import breit_wigner, breit_wigner_fraction, two_body_decay, two_to_two
from diffgen.processes import constants as C
from diffgen.processes._validation import check_dtype, check_n, check_params
from diffgen.processes.born import WIDTH_SCHEMES, born_me2_beta
from diffgen.typing import Array, Key

__all__ = ["W_DECAYS", "ee_to_ttbar_6f"]

#: W decay channels: name -> ((pids from W⁺), (pids from W⁻), branching ratio, coloured).
W_DECAYS = {
    "e": ((-11, 12), (11, -12), 1.0 / 9.0, False),
    "mu": ((-13, 14), (13, -14), 1.0 / 9.0, False),
    "tau": ((-15, 16), (15, -16), 1.0 / 9.0, False),
    "ud": ((2, -1), (1, -2), 3.0 / 9.0, True),
    "cs": ((4, -3), (3, -4), 3.0 / 9.0, True),
}


def ee_to_ttbar_6f(
    sqrt_s: float = 500.0,
    *,
    w_plus: str = "e",
    w_minus: str = "mu",
    width: str = "fixed",
    w_min: float = 1.0,
    dtype=jnp.float64,
) -> Source:
    """e⁺e⁻ → t t̄ → b W⁺(→ X) b̄ W⁻(→ Y), a ``Source`` (toy model, module docstring).

    Args:
      sqrt_s: default centre-of-mass energy, GeV; above 2(m_b + w_min).
      w_plus, w_minus: W⁺ and W⁻ decay channels, keys of :data:`W_DECAYS`
        (``"e"``, ``"mu"``, ``"tau"``, ``"ud"``, ``"cs"``) (static).
      width: Z propagator width scheme in the production (static).
      w_min: lower bound of the W virtualities √s_W, GeV (static, > 0).
      dtype: float32 or float64.

    Returns:
      ``Source``; params ``{"sqrt_s", "m_t", "gamma_t", "m_w", "gamma_w", "m_z",
      "gamma_z", "sin2_theta_w", "alpha_em"}`` (PDG defaults); events with capacity 6:
      slots ``[b, W⁺ daughter 1, W⁺ daughter 2, b̄, W⁻ daughter 1, W⁻ daughter 2]``
      (e.g. ``[5, −11, 12, −5, 13, −14]``), b-quark mass 4.78 GeV, W daughters massless;
      colour: b (501, 0), b̄ (0, 501) and, for hadronic W decays, (502, 0)/(0, 502) and
      (503, 0)/(0, 503); weight in pb (0 where √s_t + √s_t̄ ≥ √s).
      ``extra["m_t"]``, ``extra["m_tbar"]``, ``extra["m_wp"]``, ``extra["m_wm"]`` [n]: the
      generated virtualities (GeV).
    """
    where = "ee_to_ttbar_6f"
    for name, ch in (("w_plus", w_plus), ("w_minus", w_minus)):
        if ch not in W_DECAYS:
            raise ValueError(f"{where}: {name} must be one of {tuple(W_DECAYS)}, got {ch!r}")
    if width not in WIDTH_SCHEMES:
        raise ValueError(f"{where}: width must be one of {WIDTH_SCHEMES}, got {width!r}")
    check_dtype(where, dtype)
    if not isinstance(w_min, (int, float)) or not 0.0 < float(w_min) < C.M_W:
        raise ValueError(f"{where}: w_min must be in (0, {C.M_W}) GeV, got {w_min!r}")
    w_min = float(w_min)
    m_b = C.M_B_POLE
    threshold = 2.0 * (m_b + w_min)
    if not isinstance(sqrt_s, (int, float)) or not threshold < float(sqrt_s) < math.inf:
        raise ValueError(f"{where}: sqrt_s must be in ({threshold:g}, inf) GeV, got {sqrt_s!r}")
    top = C.FERMIONS["t"]
    inf = math.inf
    ranges = {
        "sqrt_s": (threshold, inf, f"({threshold:g}, inf) GeV"),
        "m_t": (m_b + w_min, inf, f"({m_b + w_min:g}, inf) GeV"),
        "gamma_t": (0.0, inf, "(0, inf) GeV (a width must be positive)"),
        "m_w": (w_min, inf, f"({w_min:g}, inf) GeV"),
        "gamma_w": (0.0, inf, "(0, inf) GeV (a width must be positive)"),
        "m_z": (0.0, inf, "(0, inf) GeV"),
        "gamma_z": (0.0, inf, "(0, inf) GeV (a width must be positive)"),
        "sin2_theta_w": (0.0, 1.0, "(0, 1)"),
        "alpha_em": (0.0, 1.0, "(0, 1)"),
    }
    dec_p, dec_m = W_DECAYS[w_plus], W_DECAYS[w_minus]
    pid_row = [5, dec_p[0][0], dec_p[0][1], -5, dec_m[1][0], dec_m[1][1]]
    col_row = [[501, 0], [0, 0], [0, 0], [0, 501], [0, 0], [0, 0]]
    if dec_p[3]:
        col_row[1], col_row[2] = [502, 0], [0, 502]
    if dec_m[3]:
        col_row[4], col_row[5] = [503, 0], [0, 503]
    br = dec_p[2] * dec_m[2]

    def init(key: Key) -> dict[str, Array]:
        del key
        values = {
            "sqrt_s": float(sqrt_s),
            "m_t": C.M_T,
            "gamma_t": C.GAMMA_T,
            "m_w": C.M_W,
            "gamma_w": C.GAMMA_W,
            "m_z": C.M_Z,
            "gamma_z": C.GAMMA_Z,
            "sin2_theta_w": C.SIN2_THETA_W,
            "alpha_em": C.ALPHA_EM_MZ,
        }
        return {k: jnp.asarray(v, dtype=dtype) for k, v in values.items()}

    def sample(params: Mapping[str, Array], key: Key, n: int) -> Events:
        n = check_n(f"{where}.sample", n)
        check_params(f"{where}.sample", params, ranges)
        rs = params["sqrt_s"]
        dt = rs.dtype
        s = rs * rs
        u = jax.random.uniform(key, (n, 14), dt)
        mt, gt, mw, gw = params["m_t"], params["gamma_t"], params["m_w"], params["gamma_w"]
        s_lo = (m_b + w_min) ** 2
        s_hi = (rs - m_b - w_min) ** 2
        s_t, _ = breit_wigner(u[:, 0], mt, gt, s_lo, s_hi)
        s_tb, _ = breit_wigner(u[:, 1], mt, gt, s_lo, s_hi)
        m_t1, m_t2 = kin.safe_sqrt(s_t), kin.safe_sqrt(s_tb)
        allowed = m_t1 + m_t2 < rs
        tt, log_w_prod = two_to_two(u[:, 2:4], rs, m_t1, m_t2)
        beta = 2.0 * kin.two_body_momentum(rs, m_t1, m_t2) / rs
        c = kin.cos_theta(tt[:, 0])
        me2 = born_me2_beta(c, s, beta, top.charge, top.t3, 3.0, params, width)
        w_prod = (C.GEV2_PB * 0.5) * me2 / s * jnp.exp(log_w_prod)
        s_wp, _ = breit_wigner(u[:, 4], mw, gw, w_min**2, (m_t1 - m_b) ** 2)
        s_wm, _ = breit_wigner(u[:, 5], mw, gw, w_min**2, (m_t2 - m_b) ** 2)
        frac = (
            breit_wigner_fraction(mt, gt, s_lo, s_hi) ** 2
            * breit_wigner_fraction(mw, gw, w_min**2, (m_t1 - m_b) ** 2)
            * breit_wigner_fraction(mw, gw, w_min**2, (m_t2 - m_b) ** 2)
        )
        m_wp, m_wm = kin.safe_sqrt(s_wp), kin.safe_sqrt(s_wm)
        b, wp, _ = two_body_decay(u[:, 6:8], tt[:, 0], m_b, m_wp)
        bb, wm, _ = two_body_decay(u[:, 8:10], tt[:, 1], m_b, m_wm)
        f1, f2, _ = two_body_decay(u[:, 10:12], wp, 0.0, 0.0)
        f3, f4, _ = two_body_decay(u[:, 12:14], wm, 0.0, 0.0)
        p = jnp.stack([b, f1, f2, bb, f3, f4], axis=1)
        weight = jnp.where(allowed, w_prod * frac * br, 0.0)
        return Events(
            p=p,
            weight=weight,
            mask=jnp.ones((n, 6), dtype=bool),
            pid=jnp.broadcast_to(jnp.asarray(pid_row, dtype=jnp.int32), (n, 6)),
            colour=jnp.broadcast_to(jnp.asarray(col_row, dtype=jnp.int32), (n, 6, 2)),
            extra={"m_t": m_t1, "m_tbar": m_t2, "m_wp": m_wp, "m_wm": m_wm},
        )

    return Source(init=init, sample=sample)
