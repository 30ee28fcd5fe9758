"""RAMBO: flat n-body phase space, massless and massive.

R. Kleiss, W.J. Stirling, S.D. Ellis, "A new Monte Carlo treatment of multiparticle phase
space at high energies", Comput. Phys. Commun. 40 (1986) 359 (KSE below).

Phase-space measure (the convention of every generator in :mod:`diffgen.phasespace`)::

    dΦ_n(P; p_1..p_n) = (2π)⁴ δ⁴(P − Σp_i) Π_i d³p_i / ((2π)³ 2E_i)

so that the massless volume is ``Φ_n = (2π)^(4−3n) (π/2)^(n−1) s^(n−2) / ((n−1)! (n−2)!)``
(KSE eq. 4.4 times the (2π)^(4−3n) normalisation).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax import lax

from diffgen.kinematics import safe_sqrt
from diffgen.typing import Array, ArrayLike

__all__ = ["massless_volume_log", "rambo"]


def massless_volume_log(n: int, s: ArrayLike) -> Array:
    """Log of the massless n-body phase-space volume ``Φ_n(s)`` (KSE eq. 4.4).

    Args:
      n: number of particles, ``n ≥ 2`` (static).
      s: [...] squared centre-of-mass energy, GeV².

    Returns:
      [...] ``log Φ_n`` with Φ_n in GeV^(2n−4).
    """
    if not isinstance(n, int) or n < 2:
        raise ValueError(f"massless_volume_log: n must be an integer >= 2, got {n!r}")
    const = (4 - 3 * n) * math.log(2 * math.pi) + (n - 1) * math.log(math.pi / 2)
    const -= math.lgamma(n) + math.lgamma(n - 1)
    return const + (n - 2) * jnp.log(jnp.asarray(s))


def _conformal(q0: Array, q3: Array, b: Array, gamma: Array, a: Array, x: Array) -> tuple[Array, Array]:
    """KSE eq. 3.2: boost by b⃗ (γ = sqrt(1 + b²), a = 1/(1 + γ)) and scale by x."""
    bq = jnp.sum(b[..., None, :] * q3, axis=-1)
    e = x[..., None] * (gamma[..., None] * q0 + bq)
    p3 = x[..., None, None] * (q3 + b[..., None, :] * q0[..., None] + (a[..., None] * bq)[..., None] * b[..., None, :])
    return e, p3


def rambo(
    u: ArrayLike, sqrt_s: ArrayLike, masses: ArrayLike | None = None, *, newton_steps: int = 8
) -> tuple[Array, Array]:
    """Map uniform random numbers to n-body momenta in the centre-of-mass frame (RAMBO).

    Massless momenta follow KSE section 3 (isotropic momenta with energies from
    ``−log(u₃u₄)``, then a conformal transformation so that they sum to (√s, 0, 0, 0)); the
    weight is the constant massless volume. Massive momenta (KSE section 4) rescale the
    three-momenta by ξ, found from ``Σ sqrt(m_i² + ξ²|p_i|²) = √s`` with ``newton_steps``
    Newton iterations started at ``ξ₀ = sqrt(1 − (Σm/√s)²)``; the weight gains the factor
    ``ξ^(2n−3) Π(|k_i|/E_i) √s / Σ(|k_i|²/E_i)`` (KSE eq. 4.11). The Newton iterations
    run without gradient and a final Newton step carries it, which is the implicit-function
    derivative ``dξ/dθ = −∂_θ f / ∂_ξ f`` (exact at convergence).

    Args:
      u: [..., 4n] uniform numbers in [0, 1), n ≥ 2; for particle i the four numbers
        ``u[..., 4i:4i+4]`` give cos θ, φ and the energy.
      sqrt_s: [...] or scalar centre-of-mass energy, GeV.
      masses: ``None`` (massless) or [n] / [..., n] masses in GeV with Σm < √s.
      newton_steps: number of Newton iterations for ξ (static).

    Returns:
      ``(p, log_weight)``: p [..., n, 4] (E, px, py, pz) in GeV summing to (√s, 0, 0, 0);
      log_weight [...] the log of the phase-space weight (GeV^(2n−4)), so that
      ``mean(exp(log_weight) · f(p))`` estimates ``∫ dΦ_n f``.
    """
    u = jnp.asarray(u)
    if u.ndim < 1 or u.shape[-1] % 4 != 0 or u.shape[-1] < 8:
        raise ValueError(f"rambo: u must have shape [..., 4n] with n >= 2, got {tuple(u.shape)}")
    n = u.shape[-1] // 4
    dtype = u.dtype
    sqrt_s = jnp.asarray(sqrt_s, dtype=dtype)
    u = u.reshape(u.shape[:-1] + (n, 4))
    c = 2.0 * u[..., 0] - 1.0
    ph = (2.0 * math.pi) * u[..., 1]
    # 1 − u lies in (0, 1], so the logarithm is finite for every output of jax.random.uniform.
    q0 = -(jnp.log1p(-u[..., 2]) + jnp.log1p(-u[..., 3]))
    sin_t = safe_sqrt(1.0 - c * c)
    q = jnp.stack([q0, q0 * sin_t * jnp.cos(ph), q0 * sin_t * jnp.sin(ph), q0 * c], axis=-1)
    big_q = jnp.sum(q, axis=-2)
    m_q = jnp.sqrt(big_q[..., 0] ** 2 - jnp.sum(big_q[..., 1:] ** 2, axis=-1))
    b = -big_q[..., 1:] / m_q[..., None]
    gamma = big_q[..., 0] / m_q
    a = 1.0 / (1.0 + gamma)
    x = sqrt_s / m_q
    e, p3 = _conformal(q0, q[..., 1:], b, gamma, a, x)
    # Nearly collinear q's make M small and the transformation ill-conditioned; a second
    # pass with the (tiny) residual boost restores Σp = (√s, 0⃗) to rounding precision.
    tot_e = jnp.sum(e, axis=-1)
    tot_p = jnp.sum(p3, axis=-2)
    m_p = jnp.sqrt(tot_e**2 - jnp.sum(tot_p**2, axis=-1))
    gamma2 = tot_e / m_p
    e, p3 = _conformal(e, p3, -tot_p / m_p[..., None], gamma2, 1.0 / (1.0 + gamma2), sqrt_s / m_p)
    log_w = massless_volume_log(n, sqrt_s**2) * jnp.ones(u.shape[:-2], dtype)
    if masses is None:
        return jnp.concatenate([e[..., None], p3], axis=-1), log_w

    m = jnp.broadcast_to(jnp.asarray(masses, dtype=dtype), e.shape)
    m2 = m * m
    e2 = e * e

    def f_and_df(xi: Array) -> tuple[Array, Array]:
        ek = jnp.sqrt(m2 + (xi * xi)[..., None] * e2)
        return jnp.sum(ek, axis=-1) - sqrt_s, xi * jnp.sum(e2 / ek, axis=-1)

    def newton(_: int, xi: Array) -> Array:
        f, df = f_and_df(xi)
        return xi - f / df

    m_sum = jnp.sum(m, axis=-1)
    xi0 = safe_sqrt(1.0 - (m_sum / sqrt_s) ** 2)
    xi_star = lax.stop_gradient(lax.fori_loop(0, newton_steps, newton, lax.stop_gradient(xi0)))
    f, df = f_and_df(xi_star)
    xi = xi_star - f / lax.stop_gradient(df)
    k3 = xi[..., None, None] * p3
    k_abs = xi[..., None] * e
    ek = jnp.sqrt(m2 + k_abs * k_abs)
    log_w = (
        log_w
        + (2 * n - 3) * jnp.log(xi)
        + jnp.sum(jnp.log(k_abs / ek), axis=-1)
        + jnp.log(sqrt_s)
        - jnp.log(jnp.sum(k_abs * k_abs / ek, axis=-1))
    )
    return jnp.concatenate([ek[..., None], k3], axis=-1), log_w
