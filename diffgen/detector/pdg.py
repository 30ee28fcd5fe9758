"""Electric charge and detector class of a particle from its PDG id.

The detector needs one fact per particle: is it seen by the tracker (charged), by the
calorimeters only (neutral), or not at all (neutrinos). Charges follow the PDG Monte Carlo
particle numbering scheme (PDG Review of Particle Physics, "Monte Carlo particle numbering
scheme", R.L. Workman et al., PTEP 2022, 083C01, section 45):

- fundamental particles (|id| < 100) are looked up in :data:`FUNDAMENTAL_CHARGE3`;
- a meson ``n_q2 n_q3 n_J`` (n_q1 = 0) carries the charges of its quark n_q2 and antiquark
  n_q3, with the convention that the heavier quark of a down-type pair (s, b) is the
  antiquark (so K⁺ = 321 = u s̄ and B⁺ = 521 = u b̄);
- a baryon ``n_q1 n_q2 n_q3 n_J`` carries the sum of its three quark charges;
- a negative id is the antiparticle (charge reversed).

This is the rule of HepPID's ``threeCharge``. Charges are returned as integer multiples of
e/3 so that quark charges are exact. The common long-lived particles a detector sees are
listed in :data:`CHARGES` (the documentation table; the tests check the rule against it and
against scikit-hep ``particle``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from diffgen.typing import Array, ArrayLike

__all__ = [
    "CHARGES",
    "EM_NEUTRAL",
    "FUNDAMENTAL_CHARGE3",
    "INVISIBLE",
    "charge",
    "charge3",
    "is_charged",
    "is_em_neutral",
    "is_hadronic_neutral",
    "is_invisible",
    "is_neutral_visible",
]

#: Three times the charge (units of e) of the fundamental particles, index |id| (0 unused).
#: d u s c b t b' t' (1-8), e νe μ νμ τ ντ τ' ντ' (11-18), g γ Z W⁺ h (21-25), W'⁺ (34), H⁺ (37).
FUNDAMENTAL_CHARGE3: dict[int, int] = {
    1: -1, 2: 2, 3: -1, 4: 2, 5: -1, 6: 2, 7: -1, 8: 2,
    11: -3, 12: 0, 13: -3, 14: 0, 15: -3, 16: 0, 17: -3, 18: 0,
    21: 0, 22: 0, 23: 0, 24: 3, 25: 0, 34: 3, 37: 3,
}  # fmt: skip

#: Charge (units of e) of the long-lived particles a detector sees, by PDG id (particles;
#: antiparticles have the opposite charge). Documentation and test reference.
CHARGES: dict[int, int] = {
    11: -1,  # e⁻
    13: -1,  # μ⁻
    12: 0, 14: 0, 16: 0,  # neutrinos (invisible)
    22: 0,  # γ
    111: 0,  # π⁰ (if not decayed: measured by the electromagnetic calorimeter)
    211: 1,  # π⁺
    130: 0,  # K⁰_L
    310: 0,  # K⁰_S
    321: 1,  # K⁺
    2212: 1,  # p
    2112: 0,  # n
    3122: 0,  # Λ
    3222: 1,  # Σ⁺
    3112: -1,  # Σ⁻
    3312: -1,  # Ξ⁻
    3322: 0,  # Ξ⁰
    3334: -1,  # Ω⁻
}  # fmt: skip

#: Neutrinos: they leave the detector unseen.
INVISIBLE: tuple[int, ...] = (12, 14, 16, 18)
#: Neutral particles measured by the electromagnetic calorimeter (γ and undecayed π⁰, η).
EM_NEUTRAL: tuple[int, ...] = (22, 111, 221)

_TABLE = np.zeros(100, dtype=np.int32)
for _id, _q3 in FUNDAMENTAL_CHARGE3.items():
    _TABLE[_id] = _q3


@jax.jit
def charge3(pid: ArrayLike) -> Array:
    """Three times the electric charge (units of e) of particles given by PDG id.

    Args:
      pid: int array of PDG ids, any shape (0 = padding gives 0).

    Returns:
      int32 array of the same shape: 3·Q/e (e.g. −3 for e⁻, 3 for π⁺, 2 for u).
    """
    pid = jnp.asarray(pid, dtype=jnp.int32)
    table = jnp.asarray(_TABLE)
    a = jnp.abs(pid)
    quark = table[:10]
    fundamental = table[jnp.where(a < 100, a, 0)]
    q1 = (a // 1000) % 10
    q2 = (a // 100) % 10
    q3 = (a // 10) % 10
    meson = quark[q2] - quark[q3]
    meson = jnp.where((q2 == 3) | (q2 == 5), -meson, meson)
    baryon = quark[q1] + quark[q2] + quark[q3]
    # Nuclei and other 10-digit codes are out of scope: charge 0 is never used for them
    # because a hadron-level generator does not produce them.
    hadron = jnp.where(q1 == 0, meson, baryon)
    hadron = jnp.where(a >= 1_000_000_000, 0, hadron)
    value = jnp.where(a < 100, fundamental, hadron)
    return jnp.where(pid < 0, -value, value).astype(jnp.int32)


def charge(pid: ArrayLike, dtype=None) -> Array:
    """Electric charge in units of e (``charge3(pid) / 3`` as a float array of ``dtype``)."""
    dtype = jnp.result_type(float) if dtype is None else dtype
    return charge3(pid).astype(dtype) / 3


@jax.jit
def is_invisible(pid: ArrayLike) -> Array:
    """True for neutrinos (|id| in :data:`INVISIBLE`); any shape → bool of the same shape."""
    a = jnp.abs(jnp.asarray(pid, dtype=jnp.int32))
    return jnp.isin(a, jnp.asarray(INVISIBLE, dtype=jnp.int32))


@jax.jit
def is_charged(pid: ArrayLike) -> Array:
    """True for charged particles (seen by the tracker); any shape → bool."""
    return charge3(pid) != 0


@jax.jit
def is_neutral_visible(pid: ArrayLike) -> Array:
    """True for neutral particles other than neutrinos and padding (seen by calorimeters only)."""
    pid = jnp.asarray(pid, dtype=jnp.int32)
    return (pid != 0) & (charge3(pid) == 0) & ~is_invisible(pid)


@jax.jit
def is_em_neutral(pid: ArrayLike) -> Array:
    """True for γ, π⁰, η (measured by the electromagnetic calorimeter); any shape → bool."""
    a = jnp.abs(jnp.asarray(pid, dtype=jnp.int32))
    return jnp.isin(a, jnp.asarray(EM_NEUTRAL, dtype=jnp.int32))


@jax.jit
def is_hadronic_neutral(pid: ArrayLike) -> Array:
    """True for visible neutral hadrons (n, K⁰_L, Λ, …: the hadronic calorimeter); any shape → bool."""
    return is_neutral_visible(pid) & ~is_em_neutral(pid)
