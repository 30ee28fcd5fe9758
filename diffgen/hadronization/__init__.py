"""Hadronization: cluster formation, a reference cluster decay, and learned cluster decays.

- :func:`form_clusters` / :class:`Clusters` — gluon splitting, colour-singlet clusters, fission.
- :func:`decay_clusters`, :func:`reference_angles`, :class:`AngleModel` — cluster → hadrons.
- :func:`hadronize` — the ``Layer`` to put after the shower.
- :mod:`diffgen.hadronization.learned` — conditional GAN generator and distrax flow angle models,
  checkpoints; :mod:`diffgen.hadronization.train` — their training;
  :mod:`diffgen.hadronization.metrics` — Wasserstein metrics; :mod:`diffgen.hadronization.fit`
  — hadron-level fit with a DeepSets discriminator.

See docs/hadronization.md.
"""

from diffgen.hadronization.decay import (
    AngleModel,
    decay_clusters,
    decay_unstable,
    reference_angles,
    smeared_cos_theta,
    smeared_cos_theta_log_prob,
    two_body_decay,
)
from diffgen.hadronization.formation import Clusters, constituent_axis, form_clusters
from diffgen.hadronization.hadrons import charge3, hadron_mass, is_stable, meson_pid
from diffgen.hadronization.layer import DEFAULT_PARAMS, capacities, hadronize

__all__ = [
    "AngleModel",
    "Clusters",
    "DEFAULT_PARAMS",
    "capacities",
    "charge3",
    "constituent_axis",
    "decay_clusters",
    "decay_unstable",
    "form_clusters",
    "hadron_mass",
    "hadronize",
    "is_stable",
    "meson_pid",
    "reference_angles",
    "smeared_cos_theta",
    "smeared_cos_theta_log_prob",
    "two_body_decay",
]
