"""Running strong coupling αs(t) at one and two loops from αs(m_Z), n_f = 5.

The formulas are those of the tutorial shower of S. Höche, "Introduction to parton-shower
event generators", arXiv:1411.4085, section 3 (class ``AlphaS``): with
``b0 = β0/(2π)``, ``β0 = 11/6 C_A − 2/3 T_R n_f`` and ``b1 = β1/(2π)²``,
``β1 = 17/6 C_A² − (5/3 C_A + C_F) T_R n_f``, and ``w = 1 + b0 αs(m_Z) log(t/m_Z²)``:

* one loop:  ``αs(t) = αs(m_Z)/w``
* two loops: ``αs(t) = αs(m_Z)/w · (1 − b1/b0 · αs(m_Z) log(w)/w)``

``t`` is the squared renormalisation scale in GeV² (the shower evaluates αs at t = p_T²).
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from diffgen.kinematics import safe_log
from diffgen.typing import Array, ArrayLike

__all__ = ["CA", "CF", "MZ", "NF", "TR", "alpha_s", "beta0", "beta1", "dlog_alpha_s"]

CA = 3.0
CF = 4.0 / 3.0
TR = 0.5
NF = 5
MZ = 91.1876


def beta0(nf: int = NF) -> float:
    """β0/(2π) with β0 = 11/6 C_A − 2/3 T_R n_f (arXiv:1411.4085, eq. 3.3 normalisation).

    Args:
      nf: number of active quark flavours n_f.

    Returns:
      b0 = β0/(2π).
    """
    return (11.0 / 6.0 * CA - 2.0 / 3.0 * TR * nf) / (2.0 * math.pi)


def beta1(nf: int = NF) -> float:
    """β1/(2π)² with β1 = 17/6 C_A² − (5/3 C_A + C_F) T_R n_f (arXiv:1411.4085).

    Args:
      nf: number of active quark flavours n_f.

    Returns:
      b1 = β1/(2π)².
    """
    return (17.0 / 6.0 * CA**2 - (5.0 / 3.0 * CA + CF) * TR * nf) / (2.0 * math.pi) ** 2


def alpha_s(t: ArrayLike, alpha_s_mz: ArrayLike, *, order: int = 2, mz: float = MZ) -> Array:
    """Running coupling αs(t) from αs(m_Z) at one (``order=1``) or two (``order=2``) loops.

    Args:
      t: [...] squared scale in GeV² (> Λ², i.e. w > 0; checked by the caller).
      alpha_s_mz: αs(m_Z), broadcast-compatible with ``t``.
      order: 0 (fixed coupling αs(m_Z)), 1 or 2 (static).
      mz: reference scale m_Z in GeV.

    Returns:
      [...] αs(t), dtype of ``t``.
    """
    if order not in (0, 1, 2):
        raise ValueError(f"alpha_s: order must be 0 (fixed), 1 or 2, got {order!r}")
    t = jnp.asarray(t)
    a = jnp.asarray(alpha_s_mz)
    if order == 0:
        return jnp.broadcast_to(a, jnp.broadcast_shapes(t.shape, a.shape)).astype(jnp.result_type(t, a))
    w = 1.0 + beta0() * a * safe_log(t / mz**2)
    one_loop = a / w
    if order == 1:
        return one_loop
    return one_loop * (1.0 - beta1() / beta0() * a * safe_log(w) / w)


def dlog_alpha_s(t: ArrayLike, alpha_s_mz: ArrayLike, *, order: int = 2, mz: float = MZ) -> Array:
    """∂ log αs(t)/∂ αs(m_Z) (analytic derivative of :func:`alpha_s`).

    Args:
      t: [...] squared scale in GeV²; alpha_s_mz: αs(m_Z); order: 1 or 2; mz: m_Z in GeV.

    Returns:
      [...] derivative, 1/αs(m_Z) units.
    """
    if order not in (0, 1, 2):
        raise ValueError(f"dlog_alpha_s: order must be 0 (fixed), 1 or 2, got {order!r}")
    t = jnp.asarray(t)
    a = jnp.asarray(alpha_s_mz)
    if order == 0:
        return jnp.broadcast_to(1.0 / a, jnp.broadcast_shapes(t.shape, a.shape)).astype(jnp.result_type(t, a))
    b0 = beta0()
    ell = safe_log(t / mz**2)
    w = 1.0 + b0 * a * ell
    d_one = 1.0 / a - b0 * ell / w
    if order == 1:
        return d_one
    c = beta1() / b0
    lw = safe_log(w)
    h = 1.0 - c * a * lw / w
    dh = -c * lw / w - c * a * (1.0 - lw) / w**2 * b0 * ell
    return d_one + dh / h
