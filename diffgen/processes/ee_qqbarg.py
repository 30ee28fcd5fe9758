"""e⁺e⁻ → γ*/Z → q q̄ g at O(α_s), regulated by a cut on all pair invariants.

With energy fractions ``x_i = 2E_i/√s`` (x₁ quark, x₂ antiquark, x₃ = 2 − x₁ − x₂ gluon)
and massless partons, the orientation-averaged cross section is

    dσ/dx₁dx₂ = σ₀ · C_F α_s/(2π) · (x₁² + x₂²) / ((1 − x₁)(1 − x₂))

(J. Ellis, M.K. Gaillard, G.G. Ross, Nucl. Phys. B 111 (1976) 253; R.K. Ellis,
W.J. Stirling, B.R. Webber, "QCD and collider physics", eq. 3.3), with σ₀ the massless
Born cross section of :mod:`diffgen.processes.born`. The soft and collinear singularities
are regulated by requiring ``y_ij = s_ij/s > y_cut`` for every pair; since
``y_ij = 1 − x_k`` this is ``x_k < 1 − y_cut`` for all k, so the sample is the three-jet
region of the JADE-type pair-mass resolution (the virtual correction is not included).

Sampling: ``y₂₃ = 1 − x₁`` and ``y₁₃ = 1 − x₂`` are drawn log-uniformly in
[y_cut, 1] (Jacobian ``y₂₃ y₁₃ log²(1/y_cut)``, which cancels the denominators), points with
``y₁₃ + y₂₃ > 1 − y_cut`` get weight 0. The event plane is oriented isotropically
(quark direction uniform on the sphere, uniform rotation about it): exact for
orientation-averaged observables (thrust, jet rates), while the true correlation with
the beam axis is not modelled. The weight is linear in α_s, so gradients with respect to
``alpha_s`` and the electroweak params flow through the weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from diffgen import kinematics as kin
from diffgen.core import Events, Source
from diffgen.processes import constants as C
from diffgen.processes._validation import check_dtype, check_n, check_params
from diffgen.processes.born import WIDTH_SCHEMES, born_sigma_total
from diffgen.processes.ee_ffbar import (
    QUARK_FLAVOURS,
    _parse_quark_flavours,
    _ranges,
    default_params,
    flavour_probabilities,
)
from diffgen.typing import Array, Key

__all__ = ["ee_to_qqbarg", "euler_rotation"]


def euler_rotation(cos_theta: Array, phi: Array, psi: Array) -> Array:
    """Rotation matrices ``R_z(φ) R_y(θ) R_z(ψ)``; uniform (Haar) for cos θ, φ, ψ uniform.

    Args:
      cos_theta, phi, psi: [...] angles (cos θ ∈ [−1, 1], φ, ψ in radians).

    Returns:
      [..., 3, 3].
    """
    st = kin.safe_sqrt(1.0 - cos_theta * cos_theta)
    ct = cos_theta
    cp, sp = jnp.cos(phi), jnp.sin(phi)
    cs, ss = jnp.cos(psi), jnp.sin(psi)
    rows = [
        [cp * ct * cs - sp * ss, -cp * ct * ss - sp * cs, cp * st],
        [sp * ct * cs + cp * ss, -sp * ct * ss + cp * cs, sp * st],
        [-st * cs, st * ss, ct],
    ]
    return jnp.stack([jnp.stack(r, axis=-1) for r in rows], axis=-2)


def ee_to_qqbarg(
    sqrt_s: float = 91.1876,
    *,
    flavours: str | Sequence[str] = QUARK_FLAVOURS,
    y_cut: float = 0.01,
    width: str = "fixed",
    dtype=jnp.float64,
) -> Source:
    """e⁺e⁻ → q q̄ g at O(α_s) with a y-cut (module docstring), a ``Source``.

    Args:
      sqrt_s: default centre-of-mass energy, GeV (massless partons: any √s > 0).
      flavours: quark flavours summed (each event one flavour, drawn with fixed
        probabilities ∝ the massless Born σ_q at the default params, weight ``/P_q``).
      y_cut: regulator, every ``s_ij/s > y_cut``; in (0, 1/3) (static).
      width: Z propagator width scheme, ``"fixed"`` or ``"running"`` (static).
      dtype: float32 or float64.

    Returns:
      ``Source``; params ``{"sqrt_s", "m_z", "gamma_z", "sin2_theta_w", "alpha_em",
      "alpha_s"}``; events with capacity 3: slot 0 quark (pid q, colour (501, 0)),
      slot 1 gluon (pid 21, colour (502, 501)), slot 2 antiquark (pid −q, colour
      (0, 502)) — the leading-colour chain q → g → q̄; weight in pb. ``extra``:
      ``"x"`` [n, 3] the energy fractions (x_q, x_g, x_q̄) and ``"flavour_log_prob"`` [n].
      Points outside the cut region have weight 0 (and the symmetric momenta x_i = 2/3).
    """
    where = "ee_to_qqbarg"
    names = _parse_quark_flavours(where, flavours)
    if width not in WIDTH_SCHEMES:
        raise ValueError(f"{where}: width must be one of {WIDTH_SCHEMES}, got {width!r}")
    check_dtype(where, dtype)
    if not isinstance(y_cut, (int, float)) or not 0.0 < float(y_cut) < 1.0 / 3.0:
        raise ValueError(f"{where}: y_cut must be in (0, 1/3), got {y_cut!r}")
    if not isinstance(sqrt_s, (int, float)) or not 0.0 < float(sqrt_s) < math.inf:
        raise ValueError(f"{where}: sqrt_s must be in (0, inf) GeV, got {sqrt_s!r}")
    y_cut = float(y_cut)
    log_inv_ycut = math.log(1.0 / y_cut)
    probs = flavour_probabilities(names, float(sqrt_s), width, massless=True)
    table = np.array([[C.FERMIONS[q].charge, C.FERMIONS[q].t3] for q in names])
    pids = np.array([C.FERMIONS[q].pid for q in names], dtype=np.int32)
    ranges = _ranges(0.0, True)

    def init(key: Key) -> dict[str, Array]:
        del key
        return default_params(float(sqrt_s), qcd=True, dtype=dtype)

    def sample(params: Mapping[str, Array], key: Key, n: int) -> Events:
        n = check_n(f"{where}.sample", n)
        check_params(f"{where}.sample", params, ranges)
        sqrt_s_ = params["sqrt_s"]
        dt = sqrt_s_.dtype
        s = sqrt_s_ * sqrt_s_
        k_flav, k_kin = jax.random.split(key)
        log_p = jnp.log(jnp.asarray(probs, dtype=dt))
        idx = jax.random.categorical(k_flav, log_p, shape=(n,))
        props = jnp.asarray(table, dtype=dt)[idx]
        u = jax.random.uniform(k_kin, (n, 5), dt)
        y23 = jnp.exp(-log_inv_ycut * (1.0 - u[:, 0]))
        y13 = jnp.exp(-log_inv_ycut * (1.0 - u[:, 1]))
        inside = y13 + y23 < 1.0 - y_cut
        third = 1.0 / 3.0
        y23 = jnp.where(inside, y23, third)
        y13 = jnp.where(inside, y13, third)
        x1 = 1.0 - y23
        x2 = 1.0 - y13
        x3 = y13 + y23
        # massless: s_12 = s(1 − x3) = 2E1E2(1 − cos θ12)
        cos12 = 1.0 - 2.0 * (1.0 - x3) / (x1 * x2)
        sin12 = kin.safe_sqrt(1.0 - cos12 * cos12)
        half = 0.5 * sqrt_s_
        e1, e2, e3 = half * x1, half * x2, half * x3
        zero = jnp.zeros_like(e1)
        q3 = jnp.stack([zero, zero, e1], -1)
        qb3 = jnp.stack([e2 * sin12, zero, e2 * cos12], -1)
        g3 = -(q3 + qb3)
        rot = euler_rotation(2.0 * u[:, 2] - 1.0, (2.0 * math.pi) * u[:, 3], (2.0 * math.pi) * u[:, 4])
        mom3 = jnp.einsum("nij,nkj->nki", rot, jnp.stack([q3, g3, qb3], axis=1))
        energies = jnp.stack([e1, e3, e2], axis=1)
        p = jnp.concatenate([energies[..., None], mom3], axis=-1)
        sigma0 = born_sigma_total(s, 0.0, props[:, 0], props[:, 1], 3.0, params, width)
        me = (C.CF / (2.0 * math.pi)) * params["alpha_s"] * (x1 * x1 + x2 * x2) * (log_inv_ycut * log_inv_ycut)
        chosen_log_p = log_p[idx]
        weight = jnp.where(inside, C.GEV2_PB * sigma0 * me * jnp.exp(-chosen_log_p), 0.0)
        pid_q = jnp.asarray(pids)[idx]
        pid = jnp.stack([pid_q, jnp.full_like(pid_q, 21), -pid_q], axis=1)
        col = jnp.broadcast_to(jnp.array([[501, 0], [502, 501], [0, 502]], dtype=jnp.int32), (n, 3, 2))
        return Events(
            p=p,
            weight=weight,
            mask=jnp.ones((n, 3), dtype=bool),
            pid=pid,
            colour=col,
            extra={"x": jnp.stack([x1, x3, x2], axis=1), "flavour_log_prob": chosen_log_p},
        )

    return Source(init=init, sample=sample)
