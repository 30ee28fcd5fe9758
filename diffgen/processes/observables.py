"""Hard-process observables: cos θ* of the outgoing fermion and the forward–backward asymmetry."""

from __future__ import annotations

import jax.numpy as jnp

from diffgen import kinematics as kin
from diffgen.core import Events
from diffgen.typing import Array

__all__ = ["afb", "cos_theta_star"]


def cos_theta_star(events: Events, slot: int = 0) -> Array:
    """Cosine of the angle between the particle in ``slot`` and the e⁻ beam (+z).

    For :func:`~diffgen.processes.ee_to_ffbar` events slot 0 is the fermion f (for
    leptons the negative one), so this is the cos θ that defines A_FB.

    Args:
      events: events in the centre-of-mass frame.
      slot: particle slot (static), default 0.

    Returns:
      [N] cos θ (1 for an all-zero momentum).
    """
    if not 0 <= slot < events.capacity:
        raise ValueError(f"cos_theta_star: slot must be in [0, {events.capacity}), got {slot}")
    return kin.cos_theta(events.p[:, slot])


def afb(events: Events, slot: int = 0) -> tuple[Array, Array]:
    """Forward–backward asymmetry ``A_FB = (σ_F − σ_B)/(σ_F + σ_B)`` from weighted events.

    ``A = Σ w sign(cos θ*) / Σ w``; its error is the ratio-estimator standard error
    ``sqrt(Σ w² (sign − A)²) / Σ w``. Differentiable through the weights.

    Args:
      events: weighted events.
      slot: the slot of the fermion whose angle is used (static), default 0.

    Returns:
      ``(afb, error)`` 0-d arrays.
    """
    c = cos_theta_star(events, slot)
    w = events.weight
    sgn = jnp.sign(c)
    total = jnp.sum(w)
    a = jnp.sum(w * sgn) / total
    err = kin.safe_sqrt(jnp.sum(w * w * (sgn - a) ** 2)) / jnp.abs(total)
    return a, err
