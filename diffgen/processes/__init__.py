"""Hard processes: Born matrix elements as ``Source`` factories, cross sections, unweighting.

- :func:`ee_to_ffbar` — e⁺e⁻ → γ*/Z → f f̄ for one flavour (e, μ, τ, d, u, s, c, b).
- :func:`ee_to_qqbar` — e⁺e⁻ → γ*/Z → q q̄ summed over flavours (the shower's input).
- :func:`ee_to_qqbarg` — e⁺e⁻ → q q̄ g at O(α_s) with a y-cut.
- :func:`ee_to_ttbar_6f` — e⁺e⁻ → t t̄ → b W⁺ b̄ W⁻ → six fermions (toy, Breit–Wigner t, W).
- :func:`cross_section`, :func:`unweight`, :func:`afb`, :func:`cos_theta_star`.
"""

from diffgen.processes import constants
from diffgen.processes.born import born_me2, born_sigma_total
from diffgen.processes.ee_ffbar import ee_to_ffbar, ee_to_qqbar
from diffgen.processes.ee_qqbarg import ee_to_qqbarg
from diffgen.processes.ee_ttbar import W_DECAYS, ee_to_ttbar_6f
from diffgen.processes.observables import afb, cos_theta_star
from diffgen.processes.xsec import cross_section, unweight, weighted_mean_error

__all__ = [
    "W_DECAYS",
    "afb",
    "born_me2",
    "born_sigma_total",
    "constants",
    "cos_theta_star",
    "cross_section",
    "ee_to_ffbar",
    "ee_to_qqbar",
    "ee_to_qqbarg",
    "ee_to_ttbar_6f",
    "unweight",
    "weighted_mean_error",
]
