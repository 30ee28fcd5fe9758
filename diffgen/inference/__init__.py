"""Inference: soft cuts and histograms, losses, optax fits with uncertainties, gradient estimators.

See ``docs/inference.md``. Typical use::

    from diffgen.inference import chi2, fit, hessian_covariance, soft_histogram

    res = fit(lambda p: chi2(model(p), data, errors), params, optax.lbfgs(), steps=200)
    cov = hessian_covariance(lambda p: chi2(model(p), data, errors), res.params, errordef=1.0)
"""

from diffgen.inference.estimators import (
    GradientEstimate,
    estimator_variance,
    pathwise_gradient,
    reweighting_gradient,
    score_function_gradient,
)
from diffgen.inference.fit import (
    Covariance,
    FitResult,
    ProfileScan,
    Transform,
    bounded,
    fit,
    hessian_covariance,
    param_names,
    positive,
    profile_scan,
    scaled,
)
from diffgen.inference.losses import (
    chi2,
    classifier_logit,
    classifier_loss,
    energy_distance,
    mmd,
    poisson_nll,
    train_classifier,
)
from diffgen.inference.soft import hard_histogram, soft_cut, soft_histogram, soft_window

__all__ = [
    "Covariance",
    "FitResult",
    "GradientEstimate",
    "ProfileScan",
    "Transform",
    "bounded",
    "chi2",
    "classifier_logit",
    "classifier_loss",
    "energy_distance",
    "estimator_variance",
    "fit",
    "hard_histogram",
    "hessian_covariance",
    "mmd",
    "param_names",
    "pathwise_gradient",
    "poisson_nll",
    "positive",
    "profile_scan",
    "reweighting_gradient",
    "scaled",
    "score_function_gradient",
    "soft_cut",
    "soft_histogram",
    "soft_window",
    "train_classifier",
]
