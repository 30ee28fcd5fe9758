"""Differentiable final-state parton shower (Catani–Seymour dipoles, leading colour).

See ``docs/shower.md``. Public API: :func:`final_state_shower` (the ``Layer``),
:func:`reweight` (exact αs reweighting), :func:`score_function_term` (score correction of the
pathwise event derivative), :func:`boundary_term` and :func:`boundary_events` (its cut-off
boundary term), :func:`alpha_s` (running coupling).
"""

from diffgen.shower.alphas import alpha_s
from diffgen.shower.layer import (
    BOUNDARY_KEYS,
    DEFAULT_CAPACITY,
    EXTRA_KEYS,
    boundary_events,
    boundary_term,
    final_state_shower,
    reweight,
    score_function_term,
)

__all__ = [
    "BOUNDARY_KEYS",
    "DEFAULT_CAPACITY",
    "EXTRA_KEYS",
    "alpha_s",
    "boundary_events",
    "boundary_term",
    "final_state_shower",
    "reweight",
    "score_function_term",
]
