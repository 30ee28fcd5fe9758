"""The light- and heavy-meson table of the reference cluster model.

Mesons are built from a quark of flavour ``a`` and an antiquark of flavour ``b`` (PDG quark
codes d=1, u=2, s=3, c=4, b=5) in one of two multiplets: pseudoscalar (J=0) or vector
(J=1). Masses are PDG 2022 values (R.L. Workman et al., PTEP 2022, 083C01); B_c* is not
measured and uses the lattice/potential-model value 6.331 GeV. The PDG numbering scheme
(Monte Carlo particle numbering, PDG review §45) fixes the codes:
``|pid| = 100·max(a, b) + 10·min(a, b) + (2J + 1)``, positive when the heavier quark is an
up-type quark (u, c) or the heavier antiquark is a down-type antiquark (s̄, b̄).
Flavour-diagonal states are unmixed in this model: uū and dd̄ give π⁰/ρ⁰, ss̄ gives η/φ,
cc̄ gives η_c/J/ψ and bb̄ gives η_b/Υ.

Unstable hadrons decay through at most two two-body (or relabelling) channels with the
branching fractions below (dominant PDG modes, renormalised to the modes kept); anything
without channels is stable. The final state therefore holds γ, π±, K±, K_L and nothing else
(η → 3π and other multi-body modes are not modelled).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from diffgen.typing import Array

__all__ = [
    "CONSTITUENT_MASS",
    "HADRON_MASS",
    "MAX_ABS_PID",
    "charge3",
    "hadron_mass",
    "is_stable",
    "meson_pid",
    "meson_table",
    "quark_charge3",
]

#: Largest |pid| in the table (array lookups are indexed by |pid|).
MAX_ABS_PID = 600

#: PDG masses in GeV by |pid|.
HADRON_MASS: dict[int, float] = {
    22: 0.0,
    111: 0.1349768,
    211: 0.13957039,
    221: 0.547862,
    113: 0.77526,
    213: 0.77511,
    333: 1.019461,
    311: 0.497611,
    310: 0.497611,
    130: 0.497611,
    321: 0.493677,
    313: 0.89555,
    323: 0.89167,
    411: 1.86966,
    421: 1.86484,
    431: 1.96835,
    413: 2.01026,
    423: 2.00685,
    433: 2.1122,
    441: 2.9839,
    443: 3.0969,
    511: 5.27965,
    521: 5.27934,
    531: 5.36688,
    541: 6.27447,
    513: 5.32470,
    523: 5.32471,
    533: 5.4154,
    543: 6.331,
    551: 9.3987,
    553: 9.4603,
}

#: Constituent quark masses (GeV) used by the cluster-fission threshold, Herwig 7 defaults
#: (J. Bellm et al., arXiv:1512.01178): d, u, s, c, b.
CONSTITUENT_MASS = (0.325, 0.325, 0.5, 1.6, 5.0)

_SELF_CONJUGATE = {22, 111, 113, 221, 333, 310, 130, 441, 443, 551, 553}

# Decay channels by |pid| of the particle (pid > 0): [(branching fraction, d1, d2)]; d2 = 0
# marks a relabelling (K⁰ → K_S/K_L mixing). Antiparticles decay to the conjugate channels.
DECAYS: dict[int, list[tuple[float, int, int]]] = {
    111: [(1.0, 22, 22)],
    221: [(1.0, 22, 22)],
    113: [(1.0, 211, -211)],
    213: [(1.0, 211, 111)],
    333: [(0.59, 321, -321), (0.41, 311, -311)],
    311: [(0.5, 310, 0), (0.5, 130, 0)],
    310: [(0.692, 211, -211), (0.308, 111, 111)],
    313: [(2 / 3, 321, -211), (1 / 3, 311, 111)],
    323: [(2 / 3, 311, 211), (1 / 3, 321, 111)],
    411: [(1.0, -311, 211)],
    421: [(1.0, -321, 211)],
    431: [(1.0, 333, 211)],
    413: [(1.0, 421, 211)],
    423: [(1.0, 421, 111)],
    433: [(1.0, 431, 22)],
    441: [(1.0, 213, -213)],
    443: [(0.5, 213, -211), (0.5, -213, 211)],
    511: [(1.0, -411, 213)],
    521: [(1.0, -421, 213)],
    531: [(1.0, -431, 213)],
    541: [(1.0, 443, 211)],
    513: [(1.0, 511, 22)],
    523: [(1.0, 521, 22)],
    533: [(1.0, 531, 22)],
    543: [(1.0, 541, 22)],
    551: [(1.0, 213, -213)],
    553: [(0.5, 213, -211), (0.5, -213, 211)],
}

_QUARK_CHARGE3 = (-1, 2, -1, 2, -1)  # d, u, s, c, b in units of e/3


def _meson_pid_py(a: int, b: int, vector: int) -> int:
    """PDG code of the meson (quark a, antiquark b), multiplet 0 = pseudoscalar, 1 = vector."""
    spin = 3 if vector else 1
    if a == b:
        if a in (1, 2):
            return 113 if vector else 111
        if a == 3:
            return 333 if vector else 221
        return 100 * a + 10 * a + spin
    heavy, light = max(a, b), min(a, b)
    code = 100 * heavy + 10 * light + spin
    heavy_is_quark = a > b
    up_type = heavy in (2, 4)
    positive = heavy_is_quark == up_type
    return code if positive else -code


def _conjugate(pid: int) -> int:
    return pid if abs(pid) in _SELF_CONJUGATE else -pid


def _build() -> dict[str, np.ndarray]:
    n = MAX_ABS_PID
    mass = np.full(n, np.nan)
    known = np.zeros(n, bool)
    for k, m in HADRON_MASS.items():
        mass[k] = m
        known[k] = True
    br = np.zeros((n, 2))
    d1 = np.zeros((n, 2), np.int32)
    d2 = np.zeros((n, 2), np.int32)
    for k, channels in DECAYS.items():
        for j, (b, x, y) in enumerate(channels):
            br[k, j], d1[k, j], d2[k, j] = b, x, y
    table = np.zeros((5, 5, 2), np.int32)
    # Charges follow from the quark content: Q(a) − Q(b) for the meson (a, b̄).
    charge = np.zeros(n, np.int32)
    for a in range(1, 6):
        for b in range(1, 6):
            for v in (0, 1):
                pid = _meson_pid_py(a, b, v)
                table[a - 1, b - 1, v] = pid
                charge[abs(pid)] = np.sign(pid) * (_QUARK_CHARGE3[a - 1] - _QUARK_CHARGE3[b - 1])
    self_conj = np.zeros(n, bool)
    self_conj[list(_SELF_CONJUGATE)] = True
    return {
        "mass": mass,
        "known": known,
        "charge3": charge,
        "br": br,
        "d1": d1,
        "d2": d2,
        "meson": table,
        "self_conjugate": self_conj,
        "stable": br[:, 0] == 0,
    }


TABLE = _build()


def _abs_index(pid: Array) -> Array:
    return jnp.clip(jnp.abs(pid), 0, MAX_ABS_PID - 1)


def meson_table() -> np.ndarray:
    """PDG codes of the mesons: int32 [5, 5, 2] indexed by (quark − 1, antiquark − 1, multiplet)."""
    return TABLE["meson"].copy()


def meson_pid(quark: Array, antiquark: Array, vector: Array) -> Array:
    """PDG code of the meson made of ``quark`` and ``antiquark``.

    Args:
      quark: [...] int, quark flavour 1..5 (d, u, s, c, b).
      antiquark: [...] int, flavour 1..5 of the antiquark (positive code).
      vector: [...] int or bool, 0 pseudoscalar, 1 vector.

    Returns:
      [...] int32 PDG codes.
    """
    table = jnp.asarray(TABLE["meson"])
    return table[quark - 1, antiquark - 1, jnp.asarray(vector, jnp.int32)]


def hadron_mass(pid: Array, dtype=None) -> Array:
    """PDG mass of each hadron in GeV; 0 for pid 0 (padding).

    Args:
      pid: [...] int PDG codes (the sign is ignored).
      dtype: float dtype of the result (default: JAX's default float).

    Returns:
      [...] float masses in GeV.
    """
    mass = np.nan_to_num(TABLE["mass"], nan=0.0)
    table = jnp.asarray(mass, dtype=dtype) if dtype is not None else jnp.asarray(mass)
    return table[_abs_index(pid)]


def charge3(pid: Array) -> Array:
    """Electric charge of hadrons and quarks/gluons in units of e/3: pid [...] int → [...] int32."""
    pid = jnp.asarray(pid)
    a = jnp.abs(pid)
    hadron = jnp.asarray(TABLE["charge3"])[_abs_index(pid)] * jnp.sign(pid)
    quark = jnp.asarray(np.array((0, *_QUARK_CHARGE3), np.int32))[jnp.clip(a, 0, 5)] * jnp.sign(pid)
    return jnp.where((a >= 1) & (a <= 5), quark, jnp.where(a == 21, 0, hadron)).astype(jnp.int32)


def quark_charge3(flavour: Array) -> Array:
    """Quark charge in units of e/3 for flavour codes 1..5: [...] int → [...] int32."""
    return jnp.asarray(np.array(_QUARK_CHARGE3, np.int32))[flavour - 1]


def is_stable(pid: Array) -> Array:
    """True for particles without decay channels in the table: pid [...] → [...] bool."""
    return jnp.asarray(TABLE["stable"])[_abs_index(pid)]


def is_known(pid: Array) -> np.ndarray:
    """True where ``|pid|`` is in the hadron table (host-side check): [...] → [...] bool."""
    a = np.abs(np.asarray(pid))
    return np.where(a < MAX_ABS_PID, TABLE["known"][np.clip(a, 0, MAX_ABS_PID - 1)], False)


def conjugate_pid(pid: Array) -> Array:
    """Antiparticle code: −pid, except for self-conjugate states. pid [...] → [...] int32."""
    pid = jnp.asarray(pid)
    return jnp.where(jnp.asarray(TABLE["self_conjugate"])[_abs_index(pid)], pid, -pid).astype(jnp.int32)
