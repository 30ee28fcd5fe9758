"""Phase-space generators: uniform random numbers → momenta and the log phase-space weight.

Every map is a pure function of uniform numbers ``u`` (last axis) and of differentiable
kinematic inputs (√s, masses, widths). They return momenta (E, px, py, pz) in GeV and the
log of the weight in the measure ``dΦ_n = (2π)⁴ δ⁴(P − Σp) Π d³p_i/((2π)³ 2E_i)``, so
``mean(exp(log_weight) · f(p))`` estimates ``∫ dΦ_n f``. Process weights are then formed
once as ``flux × |M|² × exp(log_weight)``.

- :func:`rambo` — massless and massive n-body (Kleiss–Stirling–Ellis 1986).
- :func:`two_to_two` — (cos θ, φ) two-body phase space, optionally importance-sampled in cos θ.
- :func:`two_body_decay` — isotropic decay in the parent rest frame, boosted to the lab.
- :func:`breit_wigner` — arctan mapping of an s-channel invariant.
- :func:`resonant_decay` — the decay chain P → 1 + R(→ 2 + 3).
"""

from diffgen.phasespace.maps import (
    COS_THETA_SAMPLINGS,
    breit_wigner,
    breit_wigner_fraction,
    cos_sin_2pi,
    cos_theta_and_jacobian,
    cos_theta_map,
    resonant_decay,
    two_body_decay,
    two_to_two,
)
from diffgen.phasespace.rambo import massless_volume_log, rambo

__all__ = [
    "COS_THETA_SAMPLINGS",
    "breit_wigner",
    "breit_wigner_fraction",
    "cos_sin_2pi",
    "cos_theta_and_jacobian",
    "cos_theta_map",
    "massless_volume_log",
    "rambo",
    "resonant_decay",
    "two_body_decay",
    "two_to_two",
]
