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

from collections.abc import Mapping
from typing import Any

import jax

from diffgen.core import Events, Layer
from diffgen.detector import pdg
from diffgen.detector.config import DetectorConfig, load_config
from diffgen.detector.layers import (
    _apply_efficiency,
    _selector,
    _smear_calorimeter,
    _smear_tracker,
    calorimeter,
    drop_invisible,
    drop_particles,
    efficiency,
    tracker,
)
from diffgen.typing import Key, Params

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
    invisible = drop_invisible()
    sections = list(config.sections.items())
    # The factories validate the numbers and provide the default params.
    acceptances = [
        efficiency(**sec.acceptance, mode=config.mode, slope=config.slope, select=sec.select, dtype=dtype)
        for _, sec in sections
    ]
    smearings = [
        (tracker if sec.kind == "tracker" else calorimeter)(**sec.resolution, select=sec.select, dtype=dtype)
        for _, sec in sections
    ]
    selectors = [_selector(sec.select, "detector") for _, sec in sections]
    stochastic = config.mode == "stochastic"
    slope_value = float(config.slope)

    def init(key: Key) -> dict[str, Params]:
        params: dict[str, Params] = {"invisible": invisible.init(key)}
        for (name, _), acc, smear in zip(sections, acceptances, smearings, strict=True):
            params[f"{name}_acceptance"] = acc.init(key)
            params[name] = smear.init(key)
        return params

    def apply(params: Mapping[str, Params], key: Key, events: Events) -> Events:
        events = invisible.apply(params["invisible"], key, events)
        n, cap = events.mask.shape
        key_u, key_z = jax.random.split(key)
        # One draw for all subsystems (a leading axis per subsystem): random-number generation
        # dominates the compile time, and one call compiles once.
        z = jax.random.normal(key_z, (len(sections), n, cap, 3), events.dtype)
        u = jax.random.uniform(key_u, (len(sections), n, cap), events.dtype) if stochastic else None
        for i, (name, _) in enumerate(sections):
            u_i = None if u is None else u[i]
            events = _apply_efficiency(params[f"{name}_acceptance"], u_i, events, selectors[i], slope_value)
        for i, (name, sec) in enumerate(sections):
            if sec.kind == "tracker":
                events = _smear_tracker(params[name], z[i], events, selectors[i])
            else:
                events = _smear_calorimeter(params[name], z[i, ..., 0], events, selectors[i])
        return events

    return Layer(init=init, apply=apply)


def lep_like(*, mode: str | None = None, slope: float | None = None, dtype: Any = None) -> Layer:
    """The shipped LEP-like detector (ALEPH numbers; ``diffgen/data/detectors/lep_like.toml``).

    Args:
      mode: override the configuration's acceptance mode (``"soft"``/``"stochastic"``;
        default: the one in the file).
      slope: override the slope of the acceptance edges (``math.inf`` = hard cut;
        default: the one in the file).
      dtype: dtype of the default parameters (default: JAX's default float).

    Returns:
      ``Layer`` as described in :func:`detector`.
    """
    return detector("lep_like", mode=mode, slope=slope, dtype=dtype)


def toy(*, mode: str | None = None, slope: float | None = None, dtype: Any = None) -> Layer:
    """The shipped generic toy detector (``diffgen/data/detectors/toy.toml``).

    Args:
      mode: override the configuration's acceptance mode (``"soft"``/``"stochastic"``;
        default: the one in the file).
      slope: override the slope of the acceptance edges (``math.inf`` = hard cut;
        default: the one in the file).
      dtype: dtype of the default parameters (default: JAX's default float).

    Returns:
      ``Layer`` as described in :func:`detector`.
    """
    return detector("toy", mode=mode, slope=slope, dtype=dtype)


def tracks(events: Events) -> Events:
    """The charged tracks of detector-level events (neutral slots become padding)."""
    return drop_particles(events, events.mask & ~pdg.is_charged(events.pid))


def deposits(events: Events) -> Events:
    """The calorimeter deposits (visible neutrals) of detector-level events (others become padding)."""
    return drop_particles(events, events.mask & ~pdg.is_neutral_visible(events.pid))
