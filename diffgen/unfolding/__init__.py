"""Unfolding: correct measured distributions for detector effects (the inverse model).

- :mod:`~diffgen.unfolding.classifier`: flax NNX classifiers (MLP, DeepSets) trained with
  weighted BCE; the likelihood ratio ``p/(1−p)`` building block.
- :func:`omnifold`: unbinned, multi-dimensional OmniFold (arXiv:1911.09107).
- :func:`ibu`, :func:`response_matrix`: binned iterative Bayesian unfolding (D'Agostini,
  Nucl. Instrum. Meth. A362 (1995) 487).
- :func:`train_flow`, :func:`coverage`: density-based unfolding with a conditional normalizing
  flow (cINN, arXiv:2006.06685) and its calibration check.
- :func:`gaussian_toy`: toy problems with known truth; :func:`mumu_afb_samples`: e⁺e⁻ → μ⁺μ⁻
  MC and pseudo-data through the LEP-like detector.
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
from diffgen.unfolding.ibu import IBUResult, Response, histogram, ibu, ibu_unfold, response_matrix
from diffgen.unfolding.omnifold import (
    OmniFoldResult,
    StepDiagnostics,
    UnfoldingWarning,
    effective_sample_size,
    event_features,
    omnifold,
    omnifold_pairs,
    weighted_mean_std,
)
from diffgen.unfolding.toys import ToySample, gaussian_toy, mumu_afb_samples

# The flow pulls in distrax (and TFP when installed): imported on first use.
_FLOW = ("FlowConfig", "ConditionalFlow", "Coverage", "train_flow", "sample_posterior", "log_prob", "coverage")


def __getattr__(name: str):
    if name in _FLOW:
        from diffgen.unfolding import flow

        return getattr(flow, name)
    raise AttributeError(f"module 'diffgen.unfolding' has no attribute {name!r}")


__all__ = [
    "MLP",
    "IBUResult",
    "Response",
    "histogram",
    "ibu",
    "ibu_unfold",
    "response_matrix",
    "FlowConfig",
    "ConditionalFlow",
    "Coverage",
    "train_flow",
    "sample_posterior",
    "log_prob",
    "coverage",
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
    "mumu_afb_samples",
    "likelihood_ratio",
    "omnifold",
    "omnifold_pairs",
    "train_classifier",
    "weighted_auc",
    "weighted_mean_std",
]
