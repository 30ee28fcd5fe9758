"""Electroweak and QCD input parameters, fermion quantum numbers and unit conversion.

Values from the Review of Particle Physics, S. Navas et al. (Particle Data Group),
Phys. Rev. D 110 (2024) 030001 ("PDG" below):

- m_Z = 91.1876 GeV, Γ_Z = 2.4952 GeV (Z boson listing; these are the LEP values, defined
  with the s-dependent width in the propagator).
- sin²θ_eff^lept = 0.23153 ("Electroweak model and constraints on new physics", LEP/SLD
  average): the effective mixing angle makes the tree-level Born formula reproduce the
  measured Z-pole asymmetries.
- α(m_Z²)⁻¹ = 128.952 (same review, on-shell running coupling at the Z including
  Δα_had⁽⁵⁾); at low energy the Thomson value α⁻¹ = 137.035999 applies.
- α_s(m_Z) = 0.1180 (QCD review, world average).
- m_t = 172.57 GeV (direct measurements), Γ_t = 1.42 GeV, m_W = 80.3692 GeV,
  Γ_W = 2.085 GeV (quark and gauge-boson listings).
- Lepton masses: m_e = 0.51099895 MeV, m_μ = 105.6583755 MeV, m_τ = 1776.86 MeV.
- Quark masses used as kinematic masses (threshold factors only): the MS-bar values
  m_u = 2.16 MeV, m_d = 4.70 MeV, m_s = 93.5 MeV at 2 GeV, m̄_c(m̄_c) = 1.273 GeV,
  m̄_b(m̄_b) = 4.183 GeV; m_b = 4.78 GeV (pole) for the top decay.
- (ħc)² = 0.389379372 GeV² mb = 3.89379372e8 GeV² pb (physical constants table).
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "ALPHA_EM_MZ",
    "ALPHA_EM_THOMSON",
    "ALPHA_S_MZ",
    "CF",
    "FERMIONS",
    "GAMMA_T",
    "GAMMA_W",
    "GAMMA_Z",
    "GEV2_PB",
    "M_B_POLE",
    "M_T",
    "M_W",
    "M_Z",
    "SIN2_THETA_W",
    "Fermion",
]

M_Z = 91.1876
GAMMA_Z = 2.4952
SIN2_THETA_W = 0.23153
ALPHA_EM_MZ = 1.0 / 128.952
ALPHA_EM_THOMSON = 1.0 / 137.035999
ALPHA_S_MZ = 0.1180
M_T = 172.57
GAMMA_T = 1.42
M_W = 80.3692
GAMMA_W = 2.085
M_B_POLE = 4.78
GEV2_PB = 3.89379372e8
#: Colour factor C_F = (N_c² − 1)/(2N_c) for SU(3).
CF = 4.0 / 3.0


class Fermion(NamedTuple):
    """Quantum numbers of a fermion species.

    Attributes:
      pid: PDG id of the particle (the antiparticle is −pid).
      charge: electric charge Q in units of e.
      t3: third component of weak isospin of the left-handed field.
      colours: N_c (1 for leptons, 3 for quarks).
      mass: kinematic mass, GeV.
    """

    pid: int
    charge: float
    t3: float
    colours: int
    mass: float


FERMIONS: dict[str, Fermion] = {
    "e": Fermion(11, -1.0, -0.5, 1, 0.51099895e-3),
    "mu": Fermion(13, -1.0, -0.5, 1, 0.1056583755),
    "tau": Fermion(15, -1.0, -0.5, 1, 1.77686),
    "d": Fermion(1, -1.0 / 3.0, -0.5, 3, 4.70e-3),
    "u": Fermion(2, 2.0 / 3.0, 0.5, 3, 2.16e-3),
    "s": Fermion(3, -1.0 / 3.0, -0.5, 3, 93.5e-3),
    "c": Fermion(4, 2.0 / 3.0, 0.5, 3, 1.273),
    "b": Fermion(5, -1.0 / 3.0, -0.5, 3, 4.183),
    "t": Fermion(6, 2.0 / 3.0, 0.5, 3, M_T),
}
