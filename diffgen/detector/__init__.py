"""Differentiable parametric detector: smearing, efficiency and acceptance, gen–reco pairing.

Layers (``diffgen.Layer``): :func:`tracker`, :func:`calorimeter`, :func:`gaussian_smearing`,
:func:`efficiency`, :func:`drop_invisible`; whole detectors from a configuration:
:func:`detector`, :func:`lep_like`, :func:`toy`; detector-level objects :func:`tracks`,
:func:`deposits`; pairing :func:`gen_reco`, :func:`paired` → :class:`GenRecoPair`.
See ``docs/detector.md``.
"""

from diffgen.detector import pdg
from diffgen.detector.config import SHIPPED, DetectorConfig, Section, load_config
from diffgen.detector.detector import deposits, detector, lep_like, toy, tracks
from diffgen.detector.layers import (
    KEEP_PROB,
    LOGPROB,
    SELECTIONS,
    acceptance_weight,
    calorimeter,
    calorimeter_sigma,
    drop_invisible,
    drop_particles,
    efficiency,
    efficiency_curve,
    gaussian_sigma,
    gaussian_smearing,
    keep_probability,
    select_particles,
    sequential,
    tracker,
    tracker_sigma,
)
from diffgen.detector.pairing import GenRecoPair, PairedSampler, gen_reco, paired

__all__ = [
    "KEEP_PROB",
    "LOGPROB",
    "SELECTIONS",
    "SHIPPED",
    "DetectorConfig",
    "GenRecoPair",
    "PairedSampler",
    "Section",
    "acceptance_weight",
    "calorimeter",
    "calorimeter_sigma",
    "deposits",
    "detector",
    "drop_invisible",
    "drop_particles",
    "efficiency",
    "efficiency_curve",
    "gaussian_sigma",
    "gaussian_smearing",
    "gen_reco",
    "keep_probability",
    "lep_like",
    "load_config",
    "paired",
    "pdg",
    "select_particles",
    "sequential",
    "toy",
    "tracker",
    "tracker_sigma",
    "tracks",
]
