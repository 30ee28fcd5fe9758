"""Relativistic kinematics on four-momenta.

Every function broadcasts over leading axes; the last axis of a four-momentum holds
the components in Minkowski order **(E, px, py, pz)**, in GeV, metric (+, -, -, -).

All functions are NaN-safe in value *and* gradient at massless, zero-pT and padded
(all-zero) momenta: every ``sqrt``, division, ``log`` and ``arctan2`` that can meet a
zero uses the double-``where`` trick (the unsafe branch is evaluated on a harmless
substitute, so its NaN never reaches the gradient). The conventions at those points
are documented per function and follow scikit-hep ``vector`` where it defines one.

Names follow scikit-hep ``vector`` (``pt``, ``eta``, ``phi``, ``mass``, ``rapidity``,
``delta_r``); formulas are the standard ones, e.g. PDG Review of Particle Physics,
"Kinematics" (R.L. Workman et al., PTEP 2022, 083C01), sections 49.1-49.6.
"""

from __future__ import annotations

import jax.numpy as jnp

from diffgen.typing import Array, ArrayLike

__all__ = [
    "beta3",
    "boost",
    "boost_from_rest_frame",
    "boost_to_rest_frame",
    "cos_theta",
    "delta_eta",
    "delta_phi",
    "delta_r",
    "et",
    "eta",
    "from_p3_m",
    "from_pt_eta_phi_m",
    "lambda_kallen",
    "mass",
    "mass2",
    "minkowski_dot",
    "mt",
    "mt2",
    "p2",
    "p_abs",
    "phi",
    "pt",
    "pt2",
    "rapidity",
    "rotate",
    "rotate_from_z",
    "rotate_to_z",
    "rotation_to_z",
    "safe_div",
    "safe_log",
    "safe_sqrt",
    "theta",
    "two_body_momentum",
]


# --------------------------------------------------------------------------- safe maths


def safe_sqrt(x: ArrayLike) -> Array:
    """Square root that is 0 with gradient 0 for ``x <= 0`` (double-``where``).

    Args:
      x: any shape.

    Returns:
      ``sqrt(max(x, 0))`` with a finite gradient everywhere.
    """
    x = jnp.asarray(x)
    positive = x > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


def safe_div(num: ArrayLike, den: ArrayLike, fill: ArrayLike = 0.0) -> Array:
    """``num / den`` where ``den != 0``, else ``fill``; finite gradient everywhere.

    Args:
      num, den: broadcast-compatible arrays.
      fill: value where ``den == 0``.
    """
    den = jnp.asarray(den)
    nonzero = den != 0
    return jnp.where(nonzero, num / jnp.where(nonzero, den, 1.0), fill)


def safe_log(x: ArrayLike, fill: ArrayLike = 0.0) -> Array:
    """``log(x)`` for ``x > 0``, else ``fill``; finite gradient everywhere."""
    x = jnp.asarray(x)
    positive = x > 0
    return jnp.where(positive, jnp.log(jnp.where(positive, x, 1.0)), fill)


def _safe_arctan2(y: Array, x: Array) -> Array:
    """``arctan2(y, x)``, 0 with gradient 0 at the origin."""
    origin = (x == 0) & (y == 0)
    return jnp.where(origin, 0.0, jnp.arctan2(jnp.where(origin, 0.0, y), jnp.where(origin, 1.0, x)))


# --------------------------------------------------------------------------- invariants


def _dot3(a: Array, b: Array) -> Array:
    """Euclidean product of the last axes (size 3) of a and b, written out.

    Component sums are written as explicit adds throughout this module rather than
    ``jnp.sum(..., axis=-1)``: XLA's CPU backend hands such small reductions to a library
    kernel that cannot fuse with their producers and consumers: the boosts and rotations of
    a batch then write and read their intermediate arrays instead of running in one loop.
    """
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]


def minkowski_dot(a: ArrayLike, b: ArrayLike) -> Array:
    """Minkowski product ``a·b = a⁰b⁰ − a⃗·b⃗`` (metric +,−,−,−).

    Args:
      a, b: [..., 4] four-vectors (E, px, py, pz), broadcast-compatible.

    Returns:
      [...] GeV².
    """
    a = jnp.asarray(a)
    b = jnp.asarray(b)
    return a[..., 0] * b[..., 0] - a[..., 1] * b[..., 1] - a[..., 2] * b[..., 2] - a[..., 3] * b[..., 3]


def mass2(p: ArrayLike) -> Array:
    """Invariant mass squared ``m² = E² − |p⃗|²``.

    Args:
      p: [..., 4] (E, px, py, pz) in GeV.

    Returns:
      [...] GeV²; negative for spacelike vectors.
    """
    return minkowski_dot(p, p)


def mass(p: ArrayLike) -> Array:
    """Invariant mass, signed: ``sign(m²)·sqrt(|m²|)`` (negative for spacelike vectors).

    The sign convention for spacelike vectors is scikit-hep ``vector``'s ``tau``.

    Args:
      p: [..., 4] (E, px, py, pz) in GeV.

    Returns:
      [...] GeV; gradient 0 (finite) at ``m² = 0``.
    """
    m2 = mass2(p)
    return jnp.sign(m2) * safe_sqrt(jnp.abs(m2))


def p2(p: ArrayLike) -> Array:
    """Squared three-momentum ``|p⃗|²``; p: [..., 4] → [...] GeV²."""
    p = jnp.asarray(p)
    return p[..., 1] ** 2 + p[..., 2] ** 2 + p[..., 3] ** 2


def p_abs(p: ArrayLike) -> Array:
    """Magnitude of the three-momentum ``|p⃗|``; p: [..., 4] → [...] GeV."""
    return safe_sqrt(p2(p))


def pt2(p: ArrayLike) -> Array:
    """Squared transverse momentum ``px² + py²``; p: [..., 4] → [...] GeV²."""
    p = jnp.asarray(p)
    return p[..., 1] ** 2 + p[..., 2] ** 2


def pt(p: ArrayLike) -> Array:
    """Transverse momentum ``sqrt(px² + py²)`` (beam along z); p: [..., 4] → [...] GeV."""
    return safe_sqrt(pt2(p))


def phi(p: ArrayLike) -> Array:
    """Azimuth ``arctan2(py, px)`` in (−π, π]; 0 at zero pT.

    Args:
      p: [..., 4] (E, px, py, pz).

    Returns:
      [...] radians.
    """
    p = jnp.asarray(p)
    return _safe_arctan2(p[..., 2], p[..., 1])


def theta(p: ArrayLike) -> Array:
    """Polar angle to the +z axis, in [0, π]; 0 for an all-zero three-momentum.

    Args:
      p: [..., 4] (E, px, py, pz).

    Returns:
      [...] radians.
    """
    p = jnp.asarray(p)
    return _safe_arctan2(pt(p), p[..., 3])


def cos_theta(p: ArrayLike) -> Array:
    """Cosine of the polar angle ``pz/|p⃗|``; 1 for an all-zero three-momentum.

    Args:
      p: [..., 4] (E, px, py, pz).

    Returns:
      [...] dimensionless.
    """
    p = jnp.asarray(p)
    return safe_div(p[..., 3], p_abs(p), fill=1.0)


def eta(p: ArrayLike) -> Array:
    """Pseudorapidity ``η = arcsinh(pz/pT)``.

    At zero pT the value is ``±inf`` (sign of pz, as in scikit-hep ``vector``) and 0 for
    pz = 0 too; the gradient there is 0, not NaN.

    Args:
      p: [..., 4] (E, px, py, pz).

    Returns:
      [...] dimensionless.
    """
    p = jnp.asarray(p)
    transverse = pt(p)
    nonzero = transverse > 0
    value = jnp.arcsinh(p[..., 3] / jnp.where(nonzero, transverse, 1.0))
    edge = jnp.where(p[..., 3] > 0, jnp.inf, jnp.where(p[..., 3] < 0, -jnp.inf, 0.0))
    return jnp.where(nonzero, value, edge)


def rapidity(p: ArrayLike) -> Array:
    """Rapidity ``y = ½ log((E + pz)/(E − pz))``.

    ``±inf`` where ``E = ±pz`` (massless along the beam), 0 for an all-zero vector, NaN
    only for unphysical vectors with ``|pz| > E``. Gradients are finite in all these cases.

    Args:
      p: [..., 4] (E, px, py, pz).

    Returns:
      [...] dimensionless.
    """
    p = jnp.asarray(p)
    e, pz = p[..., 0], p[..., 3]
    plus, minus = e + pz, e - pz
    ok = (plus > 0) & (minus > 0)
    value = 0.5 * jnp.log(jnp.where(ok, plus, 1.0) / jnp.where(ok, minus, 1.0))
    edge = jnp.where((plus == 0) & (minus == 0), 0.0, jnp.where(minus == 0, jnp.inf, -jnp.inf))
    spacelike = (plus < 0) | (minus < 0)
    return jnp.where(ok, value, jnp.where(spacelike, jnp.nan, edge))


def delta_phi(a: ArrayLike, b: ArrayLike) -> Array:
    """Azimuthal difference ``φ_a − φ_b`` wrapped into [−π, π).

    Args:
      a, b: [..., 4] four-momenta, broadcast-compatible.

    Returns:
      [...] radians.
    """
    return jnp.mod(phi(a) - phi(b) + jnp.pi, 2 * jnp.pi) - jnp.pi


def delta_eta(a: ArrayLike, b: ArrayLike) -> Array:
    """Pseudorapidity difference ``η_a − η_b``; a, b: [..., 4] → [...]."""
    return eta(a) - eta(b)


def delta_r(a: ArrayLike, b: ArrayLike) -> Array:
    """Angular distance ``ΔR = sqrt(Δη² + Δφ²)``.

    Args:
      a, b: [..., 4] four-momenta, broadcast-compatible, with non-zero pT (ΔR is
        undefined along the beam; it is ``inf`` there).

    Returns:
      [...] dimensionless.
    """
    deta = delta_eta(a, b)
    dphi = delta_phi(a, b)
    finite = jnp.isfinite(deta)
    return jnp.where(finite, safe_sqrt(jnp.where(finite, deta, 0.0) ** 2 + dphi**2), jnp.inf)


def et(p: ArrayLike) -> Array:
    """Transverse energy ``E_T = E·pT/|p⃗|`` (= E sin θ); 0 for zero three-momentum.

    Args:
      p: [..., 4] (E, px, py, pz).

    Returns:
      [...] GeV.
    """
    p = jnp.asarray(p)
    return p[..., 0] * safe_div(pt(p), p_abs(p))


def mt2(p: ArrayLike) -> Array:
    """Transverse mass squared ``m_T² = E² − pz² = m² + pT²``; p: [..., 4] → [...] GeV²."""
    p = jnp.asarray(p)
    return p[..., 0] ** 2 - p[..., 3] ** 2


def mt(p: ArrayLike) -> Array:
    """Transverse mass ``m_T = sqrt(E² − pz²)``, signed like :func:`mass` when ``E² < pz²``.

    Args:
      p: [..., 4] (E, px, py, pz).

    Returns:
      [...] GeV.
    """
    m2 = mt2(p)
    return jnp.sign(m2) * safe_sqrt(jnp.abs(m2))


# --------------------------------------------------------------------------- Lorentz maps


def beta3(p: ArrayLike) -> Array:
    """Velocity ``β⃗ = p⃗/E`` of a four-momentum; zero where E = 0.

    Args:
      p: [..., 4] (E, px, py, pz).

    Returns:
      [..., 3] dimensionless.
    """
    p = jnp.asarray(p)
    return safe_div(p[..., 1:], p[..., :1])


def boost(p: ArrayLike, beta: ArrayLike, gamma: ArrayLike | None = None) -> Array:
    """Lorentz boost of ``p`` into the frame moving with velocity ``−β⃗``.

    A particle at rest, boosted by ``β⃗``, moves with velocity ``β⃗`` afterwards (the
    convention of scikit-hep ``vector``'s ``boost_beta3``):
    ``E' = γ(E + β⃗·p⃗)``, ``p⃗' = p⃗ + [γ²/(1+γ) (β⃗·p⃗) + γE] β⃗``, using
    ``(γ − 1)/β² = γ²/(1 + γ)`` so that β⃗ = 0 needs no special case (PDG Kinematics, eq. 49.14).

    Args:
      p: [..., 4] (E, px, py, pz).
      beta: [..., 3] velocity, |β| < 1, broadcast-compatible with ``p[..., 1:]``.
      gamma: optional [...] Lorentz factor of ``beta`` (default 1/√(1 − β²)). For a fast
        particle 1 − β² keeps only a few bits in float32 (at γ = 300, γ is off by a few per
        mille); a caller that knows γ = E/m passes it.

    Returns:
      [..., 4] boosted four-momenta.
    """
    p = jnp.asarray(p)
    beta = jnp.asarray(beta)
    b2 = _dot3(beta, beta)
    gamma = 1.0 / jnp.sqrt(1.0 - b2) if gamma is None else jnp.asarray(gamma)
    bp = _dot3(beta, p[..., 1:])
    e = p[..., 0]
    e_new = gamma * (e + bp)
    coef = gamma * gamma / (1.0 + gamma) * bp + gamma * e
    p3_new = p[..., 1:] + coef[..., None] * beta
    return jnp.concatenate([e_new[..., None], p3_new], axis=-1)


def boost_to_rest_frame(p: ArrayLike, ref: ArrayLike) -> Array:
    """Boost ``p`` into the rest frame of the timelike four-momentum ``ref``.

    Args:
      p: [..., 4] momenta to transform.
      ref: [..., 4] reference momentum with m² > 0, broadcast-compatible.

    Returns:
      [..., 4]; ``boost_to_rest_frame(ref, ref)`` is ``(m_ref, 0, 0, 0)``.
    """
    return boost(p, -beta3(ref), _gamma(ref))


def boost_from_rest_frame(p: ArrayLike, ref: ArrayLike) -> Array:
    """Inverse of :func:`boost_to_rest_frame`: from the rest frame of ``ref`` to the lab.

    Args:
      p: [..., 4] momenta given in the rest frame of ``ref``.
      ref: [..., 4] reference momentum (lab frame) with m² > 0.

    Returns:
      [..., 4] lab-frame momenta; momenta that add up to ``(m_ref, 0, 0, 0)`` add up to
      ``ref`` to rounding, in float32 too (γ = E/m, :func:`boost`).
    """
    return boost(p, beta3(ref), _gamma(ref))


def _gamma(ref: ArrayLike) -> Array:
    """Lorentz factor E/m of [..., 4] timelike momenta with E > 0; 1/√(1 − β²) for the others (E = 0: 1).

    E/m with the m of :func:`mass` makes the boost of a rest-frame pair with E₁ + E₂ = m give
    back ``ref``'s energy and momentum to rounding: 1/√(1 − β²) loses most of its bits in
    float32 for γ of a few hundred (a 45 GeV π⁰).
    """
    ref = jnp.asarray(ref)
    m2 = mass2(ref)
    timelike = (m2 > 0.0) & (ref[..., 0] > 0.0)
    beta = beta3(ref)
    slow = 1.0 / jnp.sqrt(1.0 - _dot3(beta, beta))
    return jnp.where(timelike, ref[..., 0] / jnp.sqrt(jnp.where(timelike, m2, 1.0)), slow)


def rotation_to_z(axis: ArrayLike) -> Array:
    """Rotation matrix R with ``R @ n̂ = ẑ`` for the direction ``n̂ = axis/|axis|``.

    Rodrigues' formula with ``v = n̂ × ẑ``, ``c = n̂·ẑ``: ``R = 1 + [v]× + [v]×²/(1 + c)``.
    It loses precision as ``c → −1``, so a direction in the lower hemisphere is first
    turned by π about x (``F = diag(1, −1, −1)``) and ``R = R(F n̂)·F``. A zero axis gives
    the identity.

    Args:
      axis: [..., 3] direction (need not be normalised).

    Returns:
      [..., 3, 3] rotation matrices.
    """
    axis = jnp.asarray(axis)
    norm = safe_sqrt(_dot3(axis, axis))
    n = safe_div(axis, norm[..., None])
    n = jnp.where((norm > 0)[..., None], n, jnp.array([0.0, 0.0, 1.0], dtype=axis.dtype))
    lower = n[..., 2] < 0
    flip_diag = jnp.array([1.0, -1.0, -1.0], dtype=axis.dtype)
    n = jnp.where(lower[..., None], n * jnp.broadcast_to(flip_diag, n.shape), n)
    nx, ny, nz = n[..., 0], n[..., 1], n[..., 2]
    # v = n × z = (ny, −nx, 0); with k = 1/(1 + c), 1 + [v]× + k[v]×² written out
    # ([v]×² = v vᵀ − |v|² 1), so that no small matrix product is left to XLA.
    k = 1.0 / (1.0 + nz)
    one = jnp.ones_like(nx)
    rows = (
        (one - k * nx * nx, -k * nx * ny, -nx),
        (-k * nx * ny, one - k * ny * ny, -ny),
        (nx, ny, one - k * (nx * nx + ny * ny)),
    )
    # R(F n)·F multiplies the columns 2 and 3 by −1.
    sign = jnp.where(lower, -one, one)
    return jnp.stack([jnp.stack([r[0], sign * r[1], sign * r[2]], -1) for r in rows], -2)


def rotate(p: ArrayLike, matrix: ArrayLike) -> Array:
    """Apply a 3×3 rotation to the spatial part of four-momenta.

    Args:
      p: [..., 4] (E, px, py, pz).
      matrix: [..., 3, 3], broadcast-compatible with ``p``'s leading axes.

    Returns:
      [..., 4] rotated momenta (E unchanged).
    """
    p = jnp.asarray(p)
    matrix = jnp.asarray(matrix)
    p3 = p[..., 1:]
    rows = [_dot3(matrix[..., i, :], p3) for i in range(3)]
    shape = jnp.broadcast_shapes(p[..., 0].shape, rows[0].shape)
    return jnp.stack([jnp.broadcast_to(x, shape) for x in (p[..., 0], *rows)], axis=-1)


def rotate_to_z(p: ArrayLike, axis: ArrayLike) -> Array:
    """Rotate ``p`` so that the direction ``axis`` becomes +z (see :func:`rotation_to_z`).

    Args:
      p: [..., 4] momenta.
      axis: [..., 3] direction, broadcast-compatible.

    Returns:
      [..., 4] rotated momenta.
    """
    return rotate(p, rotation_to_z(axis))


def rotate_from_z(p: ArrayLike, axis: ArrayLike) -> Array:
    """Inverse of :func:`rotate_to_z`: rotate +z onto the direction ``axis``.

    Args:
      p: [..., 4] momenta.
      axis: [..., 3] direction.

    Returns:
      [..., 4] rotated momenta.
    """
    return rotate(p, jnp.swapaxes(rotation_to_z(axis), -1, -2))


# --------------------------------------------------------------------------- constructors


def from_pt_eta_phi_m(pt: ArrayLike, eta: ArrayLike, phi: ArrayLike, m: ArrayLike) -> Array:
    """Four-momentum from (pT, η, φ, m).

    Args:
      pt: [...] GeV; eta: [...]; phi: [...] radians; m: [...] GeV (broadcast-compatible).

    Returns:
      [..., 4] (E, px, py, pz) with ``pz = pT sinh η`` and ``E = sqrt(|p⃗|² + m²)``.
    """
    pt, eta, phi, m = jnp.broadcast_arrays(*(jnp.asarray(x) for x in (pt, eta, phi, m)))
    px = pt * jnp.cos(phi)
    py = pt * jnp.sin(phi)
    pz = pt * jnp.sinh(eta)
    e = safe_sqrt(px**2 + py**2 + pz**2 + m**2)
    return jnp.stack([e, px, py, pz], axis=-1)


def from_p3_m(p3: ArrayLike, m: ArrayLike) -> Array:
    """Four-momentum from a three-momentum and a mass.

    Args:
      p3: [..., 3] (px, py, pz) GeV.
      m: [...] GeV, broadcast-compatible with ``p3[..., 0]``.

    Returns:
      [..., 4] (E, px, py, pz) with ``E = sqrt(|p⃗|² + m²)``.
    """
    p3 = jnp.asarray(p3)
    m = jnp.asarray(m)
    e = safe_sqrt(_dot3(p3, p3) + m**2)
    shape = jnp.broadcast_shapes(e.shape, p3.shape[:-1])
    return jnp.concatenate([jnp.broadcast_to(e, shape)[..., None], jnp.broadcast_to(p3, shape + (3,))], axis=-1)


def lambda_kallen(a: ArrayLike, b: ArrayLike, c: ArrayLike) -> Array:
    """Källén triangle function ``λ(a, b, c) = a² + b² + c² − 2ab − 2ac − 2bc``.

    Args:
      a, b, c: broadcast-compatible arrays (typically squared masses, GeV²).

    Returns:
      λ, GeV⁴ for squared-mass arguments.
    """
    a, b, c = jnp.asarray(a), jnp.asarray(b), jnp.asarray(c)
    return a * a + b * b + c * c - 2.0 * (a * b + a * c + b * c)


def two_body_momentum(m: ArrayLike, m1: ArrayLike, m2: ArrayLike) -> Array:
    """Momentum of either daughter in the rest frame of a two-body decay M → m1 m2.

    ``|p*| = sqrt(λ(M², m1², m2²)) / (2M)`` (PDG Kinematics, eq. 49.17); 0 (gradient
    finite) at or below threshold and for M = 0.

    Args:
      m, m1, m2: [...] masses in GeV, broadcast-compatible.

    Returns:
      [...] GeV.
    """
    m = jnp.asarray(m)
    lam = lambda_kallen(m**2, jnp.asarray(m1) ** 2, jnp.asarray(m2) ** 2)
    return safe_div(safe_sqrt(lam), 2.0 * m)
