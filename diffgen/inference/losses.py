"""Losses comparing a simulation with data: binned Poisson NLL, χ², energy distance, MMD, classifier.

Binned losses take histograms (e.g. from :func:`diffgen.inference.soft_histogram`); unbinned
ones take weighted samples. All are differentiable in the prediction, so ``jax.grad`` reaches
the simulator's parameters through it. Input checks (shapes, empty histograms, negative errors)
run on concrete values and raise ``ValueError`` naming the argument.

Conventions for uncertainties (:func:`diffgen.inference.hessian_covariance`): the NLL has
``errordef = 0.5``, the χ² ``errordef = 1`` (as in MINUIT, F. James, M. Roos, Comput. Phys.
Commun. 10 (1975) 343).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from diffgen.kinematics import safe_log, safe_sqrt
from diffgen.typing import Array, ArrayLike, Key, Params

__all__ = [
    "chi2",
    "classifier_logit",
    "classifier_loss",
    "energy_distance",
    "mmd",
    "poisson_nll",
    "train_classifier",
]


def _concrete(x: ArrayLike) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _check_binned(prediction: Array, data: Array, names: tuple[str, str]) -> None:
    if prediction.ndim != 1 or data.ndim != 1:
        raise ValueError(
            f"{names[0]} and {names[1]} must be 1-d histograms, got shapes {prediction.shape} and {data.shape}"
        )
    if prediction.shape != data.shape:
        raise ValueError(
            f"mismatched binning: {names[0]} has {prediction.shape[0]} bins, {names[1]} has {data.shape[0]}"
        )
    if prediction.shape[0] == 0:
        raise ValueError(f"empty histogram: {names[0]} and {names[1]} have no bins")


def poisson_nll(expected: ArrayLike, observed: ArrayLike) -> Array:
    """Binned Poisson negative log-likelihood ``Σ_k [μ_k − n_k·log μ_k + log Γ(n_k + 1)]``.

    Baker, Cousins, Nucl. Instrum. Meth. 221 (1984) 437. ``errordef = 0.5``.

    Args:
      expected: [K] predicted counts μ_k ≥ 0 (e.g. σ·L·soft-histogram fraction).
      observed: [K] observed counts n_k ≥ 0 (need not be integer, e.g. for Asimov data).

    Returns:
      scalar NLL (dtype of ``expected``). Bins with μ_k = 0 and n_k = 0 contribute 0; μ_k = 0
      with n_k > 0 gives +inf.
    """
    mu = jnp.asarray(expected)
    n = jnp.asarray(observed, dtype=mu.dtype)
    _check_binned(mu, n, ("expected", "observed"))
    if _concrete(n) and (np.any(np.asarray(n) < 0) or not np.all(np.isfinite(np.asarray(n)))):
        raise ValueError("observed counts must be finite and >= 0")
    if _concrete(mu) and np.any(np.asarray(mu) < 0):
        raise ValueError("expected counts must be >= 0")
    n_log_mu = jnp.where(n > 0, n * safe_log(mu, fill=-jnp.inf), 0.0)
    return jnp.sum(mu - n_log_mu + jax.lax.lgamma(n + 1.0))


def chi2(
    prediction: ArrayLike,
    data: ArrayLike,
    errors: ArrayLike | None = None,
    *,
    covariance: ArrayLike | None = None,
) -> Array:
    """χ² = rᵀ V⁻¹ r with residuals r = data − prediction and V = diag(errors²) + covariance.

    Args:
      prediction: [K] model values.
      data: [K] measured values.
      errors: [K] uncorrelated standard errors (> 0), or None if ``covariance`` is given.
      covariance: optional [K, K] symmetric positive-definite covariance (e.g. correlated
        normalisation or energy-scale errors), added to ``diag(errors²)``.

    Returns:
      scalar χ² (``errordef = 1``).
    """
    pred = jnp.asarray(prediction)
    y = jnp.asarray(data, dtype=pred.dtype)
    _check_binned(pred, y, ("prediction", "data"))
    k = pred.shape[0]
    if errors is None and covariance is None:
        raise ValueError("chi2 needs errors or a covariance (or both)")
    r = y - pred
    v = jnp.zeros((k, k), pred.dtype)
    if errors is not None:
        err = jnp.asarray(errors, dtype=pred.dtype)
        if err.shape != (k,):
            raise ValueError(f"errors must have shape [{k}] like the data, got {err.shape}")
        if _concrete(err) and (np.any(np.asarray(err) <= 0) or not np.all(np.isfinite(np.asarray(err)))):
            raise ValueError("errors must be finite and > 0 (negative or zero errors are not allowed)")
        if covariance is None:
            return jnp.sum((r / err) ** 2)
        v = v + jnp.diag(err * err)
    cov = jnp.asarray(covariance, dtype=pred.dtype)
    if cov.shape != (k, k):
        raise ValueError(f"covariance must have shape [{k}, {k}], got {cov.shape}")
    total = v + cov
    if _concrete(total):
        c = np.asarray(total)
        if not np.allclose(c, c.T, rtol=1e-10, atol=0.0):
            raise ValueError("covariance must be symmetric")
        if not np.all(np.linalg.eigvalsh(c) > 0):
            raise ValueError("covariance (plus diag(errors²)) must be positive definite")
    chol = jnp.linalg.cholesky(total)
    z = jax.scipy.linalg.solve_triangular(chol, r, lower=True)
    return jnp.sum(z * z)


def _prepare_samples(x: ArrayLike, w: ArrayLike | None, name: str) -> tuple[Array, Array]:
    x = jnp.asarray(x)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape [N] or [N, D], got {x.shape}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    if w is None:
        w = jnp.ones(x.shape[:1], x.dtype)
    w = jnp.asarray(w)
    if w.shape != x.shape[:1]:
        raise ValueError(f"weights of {name} must have shape [{x.shape[0]}], got {w.shape}")
    total = jnp.sum(w)
    if _concrete(total) and not float(total) > 0:
        raise ValueError(f"weights of {name} must have a positive sum")
    return x, w / total


def _pairwise_distance(a: Array, b: Array) -> Array:
    d2 = jnp.sum((a[:, None, :] - b[None, :, :]) ** 2, axis=-1)
    return safe_sqrt(d2)  # finite gradient at coincident points (the diagonal)


def energy_distance(
    x: ArrayLike, y: ArrayLike, *, x_weights: ArrayLike | None = None, y_weights: ArrayLike | None = None
) -> Array:
    """Weighted energy distance ``2E|X − Y| − E|X − X′| − E|Y − Y′|`` between two samples.

    Székely, Rizzo, J. Stat. Plan. Inference 143 (2013) 1249. Zero iff the distributions
    agree; unbinned, so no binning choice. Memory O(N·M): subsample large sets.

    Args:
      x: [N] or [N, D] sample (e.g. simulated observables, differentiable).
      y: [M] or [M, D] sample (e.g. data).
      x_weights, y_weights: optional [N], [M] event weights (normalised internally).

    Returns:
      scalar (V-statistic form, ≥ 0).
    """
    x, wx = _prepare_samples(x, x_weights, "x")
    y, wy = _prepare_samples(y, y_weights, "y")
    y = y.astype(x.dtype)
    wy = wy.astype(x.dtype)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dimension D, got {x.shape[1]} and {y.shape[1]}")
    exy = wx @ _pairwise_distance(x, y) @ wy
    exx = wx @ _pairwise_distance(x, x) @ wx
    eyy = wy @ _pairwise_distance(y, y) @ wy
    return 2.0 * exy - exx - eyy


def mmd(
    x: ArrayLike,
    y: ArrayLike,
    bandwidth: ArrayLike,
    *,
    x_weights: ArrayLike | None = None,
    y_weights: ArrayLike | None = None,
) -> Array:
    """Squared maximum mean discrepancy with a Gaussian kernel ``exp(−|a − b|²/(2h²))``.

    Gretton et al., JMLR 13 (2012) 723 (arXiv:0805.2368), V-statistic with weights.

    Args:
      x: [N] or [N, D] sample; y: [M] or [M, D] sample.
      bandwidth: kernel width h > 0 (scalar, or a list of widths summed as a multi-scale kernel).
      x_weights, y_weights: optional event weights.

    Returns:
      scalar MMD² ≥ 0.
    """
    x, wx = _prepare_samples(x, x_weights, "x")
    y, wy = _prepare_samples(y, y_weights, "y")
    y = y.astype(x.dtype)
    wy = wy.astype(x.dtype)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dimension D, got {x.shape[1]} and {y.shape[1]}")
    h = jnp.atleast_1d(jnp.asarray(bandwidth, dtype=x.dtype))
    if _concrete(h) and (np.any(np.asarray(h) <= 0) or not np.all(np.isfinite(np.asarray(h)))):
        raise ValueError(f"bandwidth must be finite and > 0, got {bandwidth}")

    def kernel(a: Array, b: Array) -> Array:
        d2 = jnp.sum((a[:, None, :] - b[None, :, :]) ** 2, axis=-1)
        return jnp.sum(jnp.exp(-d2[..., None] / (2.0 * h * h)[None, None, :]), axis=-1)

    return wx @ kernel(x, x) @ wx + wy @ kernel(y, y) @ wy - 2.0 * (wx @ kernel(x, y) @ wy)


# --------------------------------------------------------------------------- classifier loss
# A small multilayer perceptron in plain JAX: the learned likelihood ratio
# r(x) = p_data(x)/p_sim(x) ≈ D(x)/(1 − D(x)) (Cranmer, Pavez, Louppe, arXiv:1506.02169).


def _mlp_init(key: Key, dim: int, hidden: int, dtype) -> Params:
    k1, k2, k3 = jax.random.split(key, 3)
    return {
        "w1": jax.random.normal(k1, (dim, hidden), dtype) / np.sqrt(dim),
        "b1": jnp.zeros((hidden,), dtype),
        "w2": jax.random.normal(k2, (hidden, hidden), dtype) / np.sqrt(hidden),
        "b2": jnp.zeros((hidden,), dtype),
        "w3": jax.random.normal(k3, (hidden, 1), dtype) / np.sqrt(hidden),
        "b3": jnp.zeros((1,), dtype),
    }


def classifier_logit(params: Params, x: ArrayLike) -> Array:
    """Logit of the classifier trained by :func:`train_classifier`.

    Args:
      params: network parameters returned by :func:`train_classifier`.
      x: [N] or [N, D] inputs, standardised as in training.

    Returns:
      [N] logits (data vs simulation).
    """
    x = jnp.asarray(x)
    if x.ndim == 1:
        x = x[:, None]
    h = jnp.tanh(x @ params["w1"] + params["b1"][None, :])
    h = jnp.tanh(h @ params["w2"] + params["b2"][None, :])
    return (h @ params["w3"])[:, 0] + params["b3"][0]


def _bce(params: Params, x_sim, w_sim, x_data, w_data) -> Array:
    # data labelled 1, simulation 0; weights normalised so both classes carry equal total weight
    ls = optax.sigmoid_binary_cross_entropy(classifier_logit(params, x_sim), jnp.zeros(x_sim.shape[:1], x_sim.dtype))
    ld = optax.sigmoid_binary_cross_entropy(classifier_logit(params, x_data), jnp.ones(x_data.shape[:1], x_data.dtype))
    return 0.5 * (w_sim @ ls + w_data @ ld)


def train_classifier(
    x_sim: ArrayLike,
    x_data: ArrayLike,
    key: Key,
    *,
    sim_weights: ArrayLike | None = None,
    data_weights: ArrayLike | None = None,
    hidden: int = 32,
    steps: int = 500,
    learning_rate: float = 1e-2,
) -> Params:
    """Train a small MLP (2 tanh layers) to separate data (label 1) from simulation (label 0).

    Full-batch Adam on the weighted binary cross-entropy; inputs should be standardised by the
    caller. Returns the network params for :func:`classifier_logit` / :func:`classifier_loss`.
    This is a minimal stand-alone classifier; the unfolding package's classifier can be used
    in its place (any ``logit(x)`` function works with :func:`classifier_loss`).

    Args:
      x_sim: [N] or [N, D] simulated sample; x_data: [M] or [M, D] data sample.
      key: PRNG key for the initialisation.
      sim_weights, data_weights: optional event weights.
      hidden: hidden-layer width; steps: Adam steps; learning_rate: Adam step size.

    Returns:
      the trained params pytree.
    """
    if steps < 1 or hidden < 1:
        raise ValueError(f"steps and hidden must be >= 1, got steps={steps}, hidden={hidden}")
    xs, ws = _prepare_samples(x_sim, sim_weights, "x_sim")
    xd, wd = _prepare_samples(x_data, data_weights, "x_data")
    xd, wd = xd.astype(xs.dtype), wd.astype(xs.dtype)
    return _train(key, xs, ws, xd, wd, hidden=hidden, steps=steps, learning_rate=learning_rate)


@functools.partial(jax.jit, static_argnames=("hidden", "steps", "learning_rate"))
def _train(key, xs, ws, xd, wd, *, hidden: int, steps: int, learning_rate: float) -> Params:
    params = _mlp_init(key, xs.shape[1], hidden, xs.dtype)
    opt = optax.adam(learning_rate)

    def step(carry, _):
        p, s = carry
        g = jax.grad(_bce)(p, xs, ws, xd, wd)
        with jax.numpy_dtype_promotion("standard"):  # optax's int32 step count meets floats
            u, s = opt.update(g, s, p)
        return (optax.apply_updates(p, u), s), None

    with jax.numpy_dtype_promotion("standard"):
        state = opt.init(params)
    (params, _), _ = jax.lax.scan(step, (params, state), None, length=steps)
    return params


def classifier_loss(
    logit: Callable[[Array], Array],
    x_sim: ArrayLike,
    x_data: ArrayLike,
    *,
    sim_weights: ArrayLike | None = None,
    data_weights: ArrayLike | None = None,
) -> Array:
    """Classifier-based divergence ``log 2 − BCE``: 0 when the classifier cannot tell the samples apart.

    With the classifier held fixed (trained at the current parameters, e.g. refreshed every few
    steps), the gradient with respect to the simulator flows through ``x_sim`` (pathwise) and
    ``sim_weights`` (through the weights). At the optimal classifier this is the Jensen–Shannon
    divergence (Goodfellow et al., arXiv:1406.2661).

    Args:
      logit: ``x [N, D] -> [N]`` logits (data = 1), e.g. ``partial(classifier_logit, params)``.
      x_sim: [N] or [N, D]; x_data: [M] or [M, D].
      sim_weights, data_weights: optional event weights.

    Returns:
      scalar divergence estimate.
    """
    xs, ws = _prepare_samples(x_sim, sim_weights, "x_sim")
    xd, wd = _prepare_samples(x_data, data_weights, "x_data")
    xd, wd = xd.astype(xs.dtype), wd.astype(xs.dtype)
    ls = optax.sigmoid_binary_cross_entropy(logit(xs), jnp.zeros(xs.shape[:1], xs.dtype))
    ld = optax.sigmoid_binary_cross_entropy(logit(xd), jnp.ones(xd.shape[:1], xd.dtype))
    return np.log(2.0) - 0.5 * (ws @ ls + wd @ ld)
