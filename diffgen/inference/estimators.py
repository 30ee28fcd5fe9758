"""Gradient estimators of an expectation ``∇θ E_{x∼p(x|θ)}[f(x, θ)]`` for stochastic simulators.

Three routes (DESIGN.md §4), each returning per-event contributions ``g_i`` whose mean is the
gradient estimate, so that its Monte Carlo variance ``Var(g)/N`` is known:

- **pathwise** (reparameterisation; Kingma, Welling arXiv:1312.6114; Glasserman 2004 §7.2):
  ``x = x(θ, ε)`` with ``ε`` independent of θ, ``g_i = ∇θ f(x(θ, ε_i), θ)``. Lowest variance
  when it applies; needs ``f`` and the map to be differentiable (no discrete choices).
- **score function** (REINFORCE; Williams 1992; Mohamed et al. arXiv:1906.10652 §4):
  ``g_i = (f_i − b_i)·∇θ log p(x_i|θ)`` with the leave-one-out baseline
  ``b_i = (Σ_j f_j − f_i)/(N − 1)``, which keeps the estimator unbiased and removes most of the
  variance coming from the mean of ``f``. Works for discrete choices (accept/reject, emission
  counts), whose log-probabilities a layer stores in ``Events.extra``.
- **reweighting** (through the weights; EventMover / likelihood-ratio reweighting,
  arXiv:2308.16680): samples at fixed random numbers, the parameters enter the event weights
  ``w_i(θ)``; ``g_i = ∇θ[w_i(θ)·f_i(θ)]``, optionally for the self-normalised mean
  ``Σ w f / Σ w``. For discrete choices pass ``w_i = exp(log p_i(θ) − stop_gradient(log p_i(θ)))``
  (value 1, gradient ∇ log p), which with self-normalisation equals the score function with the
  mean as baseline.

``estimator_variance`` runs an estimator on the user's simulator, optionally repeated with
independent keys, and reports the gradient, its standard error and the per-event variance,
so the estimators can be compared at equal cost.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from diffgen.typing import Array, Key, Params

__all__ = [
    "GradientEstimate",
    "estimator_variance",
    "pathwise_gradient",
    "reweighting_gradient",
    "score_function_gradient",
]


@dataclasses.dataclass
class GradientEstimate:
    """A Monte Carlo gradient estimate with its per-event contributions.

    Attributes:
      grad: the estimate, a pytree like params.
      per_event: [N, P] contributions ``g_i`` (flattened params order, see ``names``).
      mean: [P] ``mean_i g_i`` (= ``grad`` flattened).
      std_error: [P] ``std(g)/√N``.
      variance: [P] per-event variance ``Var(g)`` (cost-independent figure of merit).
      names: [P] flattened parameter names.
    """

    grad: Params
    per_event: np.ndarray
    mean: np.ndarray
    std_error: np.ndarray
    variance: np.ndarray
    names: list[str]


def _names(params: Params) -> list[str]:
    from diffgen.inference.fit import _flat_named

    return list(_flat_named(params).keys())


def _check(params: Params, n: int) -> None:
    if not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an int >= 2 (the variance needs two events), got {n!r}")
    for leaf in jax.tree_util.tree_leaves(params):
        arr = np.asarray(leaf)
        if not np.issubdtype(arr.dtype, np.floating):
            raise TypeError(f"params must hold floating arrays, got dtype {arr.dtype}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"params must be finite, got {arr}")


def _per_event(surrogate: Callable[[Params], Array], params: Params, n: int) -> GradientEstimate:
    flat, unravel = ravel_pytree(params)
    jac = jax.jacfwd(lambda x: surrogate(unravel(x)))(flat)  # [N, P]
    if jac.shape != (n, flat.shape[0]):
        raise ValueError(f"the simulator must return per-event values of shape [{n}], got {jac.shape[:-1]}")
    jac = np.asarray(jac, dtype=np.float64)
    mean = jac.mean(axis=0)
    var = jac.var(axis=0, ddof=1)
    return GradientEstimate(
        grad=unravel(jnp.asarray(mean, flat.dtype)),
        per_event=jac,
        mean=mean,
        std_error=np.sqrt(var / n),
        variance=var,
        names=_names(params),
    )


def pathwise_gradient(f: Callable[[Params, Key, int], Array], params: Params, key: Key, n: int) -> GradientEstimate:
    """Pathwise (reparameterisation) estimator of ``∇θ E[f]``.

    Args:
      f: ``f(params, key, n) -> [N]`` per-event values, differentiable in params through the
        sampled momenta/observables (same key → same ε).
      params: parameter pytree. key: PRNG key. n: number of events (static).

    Returns:
      :class:`GradientEstimate`.
    """
    _check(params, n)
    return _per_event(lambda p: f(p, key, n), params, n)


def score_function_gradient(
    f: Callable[[Params, Key, int], tuple[Array, Array]],
    params: Params,
    key: Key,
    n: int,
    *,
    baseline: bool = True,
    include_pathwise: bool = False,
) -> GradientEstimate:
    """Score-function (REINFORCE) estimator with a leave-one-out baseline.

    Args:
      f: ``f(params, key, n) -> (values [N], log_prob [N])``: the observable of each event and
        the log-probability of the event's random choices, evaluated at ``params`` for the
        choices made with ``key`` (the choices themselves must not move with params, as when
        they are drawn by comparing uniforms with probabilities).
      params, key, n: as in :func:`pathwise_gradient`.
      baseline: subtract the leave-one-out mean of ``values`` (unbiased, lower variance).
      include_pathwise: add ``∇θ values`` for observables that also depend on θ smoothly.

    Returns:
      :class:`GradientEstimate`.
    """
    _check(params, n)

    def surrogate(p: Params) -> Array:
        v, logp = f(p, key, n)
        v_fixed = jax.lax.stop_gradient(v)
        b = (jnp.sum(v_fixed) - v_fixed) / (n - 1) if baseline else 0.0
        s = (v_fixed - b) * (logp - jax.lax.stop_gradient(logp))
        return s + (v - v_fixed) if include_pathwise else s

    return _per_event(surrogate, params, n)


def reweighting_gradient(
    f: Callable[[Params, Key, int], tuple[Array, Array]],
    params: Params,
    key: Key,
    n: int,
    *,
    normalise: bool = False,
) -> GradientEstimate:
    """Estimator through the event weights: ``∇θ mean_i[w_i(θ)·f_i(θ)]`` at fixed random numbers.

    Args:
      f: ``f(params, key, n) -> (values [N], weights [N])``.
      params, key, n: as in :func:`pathwise_gradient`.
      normalise: differentiate the self-normalised mean ``Σ w f / Σ w`` instead (per-event
        contributions from its linearisation ``(∇(w_i f_i) − R·∇w_i)/mean(w)``).

    Returns:
      :class:`GradientEstimate`.
    """
    _check(params, n)
    if not normalise:
        return _per_event(lambda p: (lambda v, w: v * w)(*f(p, key, n)), params, n)

    def surrogate(p: Params) -> Array:
        v, w = f(p, key, n)
        wf = jax.lax.stop_gradient(w)
        vf = jax.lax.stop_gradient(v)
        ratio = jnp.sum(wf * vf) / jnp.sum(wf)
        # value-free linearisation: d/dθ of (w v − R w)/mean(w) at fixed R and mean(w)
        return (w * v - ratio * w) / jnp.mean(wf)

    return _per_event(surrogate, params, n)


def estimator_variance(
    estimator: Callable[..., GradientEstimate],
    f: Callable[..., Any],
    params: Params,
    key: Key,
    n: int,
    *,
    repeats: int = 1,
    **kwargs: Any,
) -> dict[str, Any]:
    """Run a gradient estimator on a simulator and report its variance.

    Args:
      estimator: :func:`pathwise_gradient`, :func:`score_function_gradient` or
        :func:`reweighting_gradient`.
      f: the simulator function that estimator expects.
      params, key, n: as for the estimator; repeat ``r`` uses ``fold_in(key, r)``.
      repeats: independent repetitions (≥ 1); with ≥ 2 the spread of the repeated estimates is
        reported too, an independent check of the per-event variance.
      **kwargs: passed to the estimator.

    Returns:
      ``{"names", "grad" [P] (mean of repeats), "std_error" [P] (of that mean),
      "per_event_variance" [P], "repeat_std" [P] (None if repeats = 1)}``.
    """
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an int >= 1, got {repeats!r}")
    runs = [estimator(f, params, jax.random.fold_in(key, r), n, **kwargs) for r in range(repeats)]
    means = np.stack([r.mean for r in runs])
    var = np.mean(np.stack([r.variance for r in runs]), axis=0)
    return {
        "names": runs[0].names,
        "grad": means.mean(axis=0),
        "std_error": np.sqrt(var / (n * repeats)),
        "per_event_variance": var,
        "repeat_std": means.std(axis=0, ddof=1) if repeats > 1 else None,
    }
