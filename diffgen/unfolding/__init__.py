"""Unfolding: correct measured distributions for detector effects (the inverse model).

- :mod:`~diffgen.unfolding.classifier`: flax NNX classifiers (MLP, DeepSets) trained with
  weighted BCE; the likelihood ratio ``p/(1−p)`` building block.
- :func:`omnifold`: unbinned, multi-dimensional OmniFold (arXiv:1911.09107).
- :func:`ibu`, :func:`response_matrix`: binned iterative Bayesian unfolding (D'Agostini,
  Nucl. Instrum. Meth. A362 (1995) 487).
- :func:`train_flow`, :func:`coverage`: density-based unfolding with a conditional normalizing
  flow (cINN, arXiv:2006.06685) and its calibration check.
- :func:`gaussian_toy`: toy problems with known truth.
"""

from diffgen.unfolding.classifier import (
    MLP,
    Classifier,
    DeepSets,
    TrainConfig,
    TrainInfo,
    likelihood_ratio,
    train_classifier,
    weighted_auc,
)
from diffgen.unfolding.omnifold import (
    OmniFoldResult,
    StepDiagnostics,
    UnfoldingWarning,
    effective_sample_size,
    event_features,
    omnifold,
    weighted_mean_std,
)
from diffgen.unfolding.toys import ToySample, gaussian_toy

__all__ = [
    "MLP",
    "Classifier",
    "DeepSets",
    "OmniFoldResult",
    "StepDiagnostics",
    "ToySample",
    "TrainConfig",
    "TrainInfo",
    "UnfoldingWarning",
    "effective_sample_size",
    "event_features",
    "gaussian_toy",
    "likelihood_ratio",
    "omnifold",
    "train_classifier",
    "weighted_auc",
    "weighted_mean_std",
]
