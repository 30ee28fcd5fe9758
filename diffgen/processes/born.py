"""Born matrix element of e⁺e⁻ → γ*/Z → f f̄ with full γ–Z interference and mass factors.

Chiral couplings ``g_L = T₃ − Q sin²θ_W``, ``g_R = −Q sin²θ_W`` and the propagator ratio
``χ(s) = s / (s − m_Z² + i m_Z Γ_Z) / (sin²θ_W cos²θ_W)`` (fixed width) or with
``i s Γ_Z/m_Z`` (s-dependent width, the LEP definition of m_Z, Γ_Z; D. Bardin et al.,
Phys. Lett. B 206 (1988) 539). For an electron of chirality i and a final fermion with
vector and axial couplings ``v = (g_L + g_R)/2``, ``a = (g_L − g_R)/2``:

    V_i = Q_e Q_f + g_i^e v_f χ,   A_i = g_i^e a_f χ,

and, with the fermion velocity β and θ the angle between the outgoing fermion f and the
incoming e⁻ (+z),

    |M̄|² = N_c (4πα)²/4 · Σ_{i=L,R} [ 2|V_i|² (2 − β² sin²θ) + 2|A_i|² β² (1 + cos²θ)
                                       ± 8 β cos θ Re(V_i A_i*) ]      (+ for i = L)

(vector current ∝ 1 + cos²θ + (1 − β²) sin²θ, axial ∝ β²(1 + cos²θ); e.g. J. Jersák,
E. Laermann, P.M. Zerwas, Phys. Rev. D 25 (1982) 1218; massless limit:
R.K. Ellis, W.J. Stirling, B.R. Webber, "QCD and collider physics", CUP 1996, eqs. 1.2–1.8).
Then ``dσ/dΩ = β |M̄|² / (64π² s)``. The electron is massless and only the s-channel is
included (for f = e the t-channel Bhabha graphs are omitted).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import jax.numpy as jnp

from diffgen.kinematics import safe_sqrt
from diffgen.typing import Array, ArrayLike

__all__ = ["WIDTH_SCHEMES", "born_couplings", "born_me2", "born_me2_beta", "born_sigma_total"]

#: Allowed ``width`` options: fixed width ``i m_Z Γ_Z`` or s-dependent ``i s Γ_Z/m_Z``.
WIDTH_SCHEMES = ("fixed", "running")
_Q_E = -1.0
_T3_E = -0.5


def born_couplings(s: ArrayLike, charge: ArrayLike, t3: ArrayLike, params: Mapping[str, Array], width: str):
    """The helicity coefficients ``(V_L, V_R, A_L, A_R)`` as (real, imaginary) pairs.

    Args:
      s: [...] GeV².
      charge, t3: [...] or scalar final-fermion Q and T₃.
      params: ``m_z``, ``gamma_z``, ``sin2_theta_w``.
      width: ``"fixed"`` or ``"running"`` (static).

    Returns:
      dict with ``|V_i|²``, ``|A_i|²``, ``Re(V_i A_i*)`` for i = L, R, each [...].
    """
    if width not in WIDTH_SCHEMES:
        raise ValueError(f"width must be one of {WIDTH_SCHEMES}, got {width!r}")
    mz, gz, sw2 = params["m_z"], params["gamma_z"], params["sin2_theta_w"]
    mz2 = mz * mz
    w = mz * gz if width == "fixed" else s * gz / mz
    den = (s - mz2) ** 2 + w * w
    norm = 1.0 / (sw2 * (1.0 - sw2))
    re_chi = norm * s * (s - mz2) / den
    im_chi = -norm * s * w / den
    chi2 = re_chi * re_chi + im_chi * im_chi
    qq = _Q_E * charge
    gl_f = t3 - charge * sw2
    gr_f = -charge * sw2
    v_f = 0.5 * (gl_f + gr_f)
    a_f = 0.5 * (gl_f - gr_f)
    out = {}
    for name, g_e in (("L", _T3_E - _Q_E * sw2), ("R", -_Q_E * sw2)):
        gv = g_e * v_f
        ga = g_e * a_f
        out[f"vv_{name}"] = (qq + gv * re_chi) ** 2 + (gv * im_chi) ** 2
        out[f"aa_{name}"] = ga * ga * chi2
        out[f"va_{name}"] = qq * ga * re_chi + gv * ga * chi2
    return out


def born_me2(
    cos_theta: ArrayLike,
    s: ArrayLike,
    mass: ArrayLike,
    charge: ArrayLike,
    t3: ArrayLike,
    colours: ArrayLike,
    params: Mapping[str, Array],
    width: str = "fixed",
) -> Array:
    """Spin-summed and averaged |M|² of e⁺e⁻ → γ*/Z → f f̄ (module docstring).

    Args:
      cos_theta: [...] cosine of the angle between f and the e⁻ beam (+z).
      s: [...] or scalar squared energy, GeV².
      mass, charge, t3, colours: [...] or scalar properties of f (GeV, e, –, N_c).
      params: ``alpha_em``, ``m_z``, ``gamma_z``, ``sin2_theta_w`` (0-d arrays).
      width: ``"fixed"`` or ``"running"`` (static).

    Returns:
      [...] |M̄|², dimensionless; 0 below threshold.
    """
    beta = safe_sqrt(1.0 - 4.0 * mass * mass / s)
    return born_me2_beta(cos_theta, s, beta, charge, t3, colours, params, width)


def born_me2_beta(
    cos_theta: ArrayLike,
    s: ArrayLike,
    beta: ArrayLike,
    charge: ArrayLike,
    t3: ArrayLike,
    colours: ArrayLike,
    params: Mapping[str, Array],
    width: str = "fixed",
) -> Array:
    """:func:`born_me2` with the fermion velocity β given instead of the mass.

    Used for off-shell pairs of unequal masses (β = λ^½(s, m₁², m₂²)/s), where it is a
    toy extension of the equal-mass formula.

    Args:
      cos_theta: [...] cosine of the angle between f and the e⁻ beam (+z).
      s: [...] or scalar squared energy, GeV².
      beta: [...] or scalar velocity in [0, 1].
      charge: [...] or scalar electric charge of f, in units of e.
      t3: [...] or scalar weak isospin T₃ of f.
      colours: [...] or scalar number of colours N_c of f.
      params: ``alpha_em``, ``m_z``, ``gamma_z``, ``sin2_theta_w`` (0-d arrays).
      width: ``"fixed"`` or ``"running"`` (static).

    Returns:
      [...] |M̄|², dimensionless.
    """
    c = jnp.asarray(cos_theta)
    beta2 = beta * beta
    k = born_couplings(s, charge, t3, params, width)
    sin2 = 1.0 - c * c
    vec = 2.0 * (k["vv_L"] + k["vv_R"]) * (2.0 - beta2 * sin2)
    ax = 2.0 * (k["aa_L"] + k["aa_R"]) * beta2 * (1.0 + c * c)
    odd = 8.0 * beta * c * (k["va_L"] - k["va_R"])
    e4 = (4.0 * math.pi * params["alpha_em"]) ** 2
    return (0.25 * e4) * colours * (vec + ax + odd)


def born_sigma_total(
    s: ArrayLike,
    mass: ArrayLike,
    charge: ArrayLike,
    t3: ArrayLike,
    colours: ArrayLike,
    params: Mapping[str, Array],
    width: str = "fixed",
) -> Array:
    """Total Born cross section of e⁺e⁻ → f f̄ in GeV⁻² (the integral of :func:`born_me2`).

    ``σ = N_c πα²β/(8s) Σ_i [ (8/3)(3 − β²)|V_i|² + (16/3) β²|A_i|² ]``.

    Args:
      s: [...] or scalar squared energy, GeV².
      mass: [...] or scalar mass of f, GeV.
      charge: [...] or scalar electric charge of f, in units of e.
      t3: [...] or scalar weak isospin T₃ of f.
      colours: [...] or scalar number of colours N_c of f.
      params: ``alpha_em``, ``m_z``, ``gamma_z``, ``sin2_theta_w`` (0-d arrays).
      width: ``"fixed"`` or ``"running"`` (static).

    Returns:
      [...] σ in GeV⁻² (multiply by ``GEV2_PB`` for pb).
    """
    beta = safe_sqrt(1.0 - 4.0 * mass * mass / s)
    beta2 = beta * beta
    k = born_couplings(s, charge, t3, params, width)
    bracket = (8.0 / 3.0) * (3.0 - beta2) * (k["vv_L"] + k["vv_R"]) + (16.0 / 3.0) * beta2 * (k["aa_L"] + k["aa_R"])
    return colours * math.pi * params["alpha_em"] ** 2 * beta / (8.0 * s) * bracket
