"""Whole detectors built from a :class:`DetectorConfig`, and their detector-level objects.

A detector layer turns particle-level events into energy-flow style reconstructed particles:

1. neutrinos are removed (:func:`drop_invisible`);
2. each subsystem's acceptance × efficiency acts on the *true* kinematics of the particles
   it measures (soft weights or stochastic drops, see :func:`efficiency`);
3. charged particles are smeared by the tracker (pT, η, φ), visible neutrals by their
   calorimeter (energy; γ/π⁰/η in the ECAL, neutral hadrons in the HCAL for LEP-like).

The output is one ``Events`` with the same capacity: slot i holds the reconstructed
version of particle-level slot i (or padding if it was not reconstructed), with the true
PDG id kept (ideal particle identification). :func:`tracks` and :func:`deposits` split it
into charged tracks and calorimeter deposits.
"""

from __future__ import annotations

from typing import Any

from diffgen.core import Events, Layer
from diffgen.detector import pdg
from diffgen.detector.config import DetectorConfig, load_config
from diffgen.detector.layers import calorimeter, drop_invisible, drop_particles, efficiency, sequential, tracker

__all__ = ["deposits", "detector", "lep_like", "toy", "tracks"]


def detector(
    config: DetectorConfig | str,
    *,
    mode: str | None = None,
    slope: float | None = None,
    dtype: Any = None,
) -> Layer:
    """A parametric detector layer from a configuration.

    Args:
      config: a :class:`DetectorConfig`, a shipped name (``"lep_like"``, ``"toy"``) or a
        path to a TOML file.
      mode: override the configuration's acceptance mode (``"soft"``/``"stochastic"``).
      slope: override the slope of the acceptance edges (``math.inf`` = hard cut).
      dtype: dtype of the default parameters (default: JAX's default float).

    Returns:
      ``Layer`` whose params are ``{"invisible": {}, "<section>_acceptance": {...},
      "<section>": {...}}`` for the sections ``tracker``, ``ecal`` (and ``hcal``):
      acceptance params ``eta_max, pt_min (GeV), plateau[, pt_50, pt_width, eta_50,
      eta_width]``, tracker params ``a, b (GeV⁻¹), sigma_eta, sigma_phi (rad)``,
      calorimeter params ``a (GeV^½), b, c (GeV)``. Capacity unchanged; in soft mode the
      output has ``extra["detector_keep_prob"]`` [N, P], in stochastic mode
      ``extra["detector_logprob"]`` [N].
    """
    if not isinstance(config, DetectorConfig):
        config = load_config(config)
    if mode is not None or slope is not None:
        changes: dict[str, Any] = {}
        if mode is not None:
            changes["mode"] = mode
        if slope is not None:
            changes["slope"] = slope
        config = config.replace(**changes)
    stages: list[tuple[str, Layer]] = [("invisible", drop_invisible())]
    for name, section in config.sections.items():
        stages.append(
            (
                f"{name}_acceptance",
                efficiency(
                    **section.acceptance, mode=config.mode, slope=config.slope, select=section.select, dtype=dtype
                ),
            )
        )
    for name, section in config.sections.items():
        if section.kind == "tracker":
            stages.append((name, tracker(**section.resolution, select=section.select, dtype=dtype)))
        else:
            stages.append((name, calorimeter(**section.resolution, select=section.select, dtype=dtype)))
    return sequential(*stages)


def lep_like(*, mode: str | None = None, slope: float | None = None, dtype: Any = None) -> Layer:
    """The shipped LEP-like detector (ALEPH numbers; ``diffgen/data/detectors/lep_like.toml``)."""
    return detector("lep_like", mode=mode, slope=slope, dtype=dtype)


def toy(*, mode: str | None = None, slope: float | None = None, dtype: Any = None) -> Layer:
    """The shipped generic toy detector (``diffgen/data/detectors/toy.toml``)."""
    return detector("toy", mode=mode, slope=slope, dtype=dtype)


def tracks(events: Events) -> Events:
    """The charged tracks of detector-level events (neutral slots become padding)."""
    return drop_particles(events, events.mask & ~pdg.is_charged(events.pid))


def deposits(events: Events) -> Events:
    """The calorimeter deposits (visible neutrals) of detector-level events (others become padding)."""
    return drop_particles(events, events.mask & ~pdg.is_neutral_visible(events.pid))
