"""Monte Carlo cross sections and unweighting of weighted events."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from diffgen.core import Events, Source, is_traced
from diffgen.kinematics import safe_sqrt
from diffgen.processes._validation import check_n
from diffgen.typing import Array, Key, Params

__all__ = ["cross_section", "unweight", "weighted_mean_error"]


def weighted_mean_error(weight: Array) -> tuple[Array, Array]:
    """Sample mean of the weights and its standard error ``sqrt(Σ(w − w̄)²/(n(n − 1)))``.

    Args:
      weight: [n] event weights (pb).

    Returns:
      ``(mean, error)``, 0-d arrays; the error is differentiable (0 with gradient 0 for
      constant weights) and 0 for n = 1.
    """
    n = weight.shape[0]
    mean = jnp.mean(weight)
    var = jnp.sum((weight - mean) ** 2) / max(n - 1, 1)
    return mean, safe_sqrt(var / n)


def cross_section(source: Source, params: Params, key: Key, n: int) -> tuple[Array, Array]:
    """Monte Carlo estimate of the total cross section of a source, with its error.

    The weights are formed from random numbers drawn from ``key`` only, so for a fixed key
    the estimate is a smooth function of the params and ``jax.grad`` of it is the exact
    derivative of the sample estimate (common random numbers).

    Args:
      source: any ``Source`` whose weights are in pb (e.g. :func:`ee_to_ffbar`, or a chain).
      params: its parameter pytree.
      key: PRNG key.
      n: number of events (static, ≥ 1).

    Returns:
      ``(sigma_pb, error_pb)``: 0-d arrays, the mean weight and its standard error.

    Example:
      >>> src = ee_to_ffbar("mu")
      >>> sigma, err = jax.jit(cross_section, static_argnums=(0, 3))(src, src.init(key), key, 100_000)
      >>> dsigma = jax.grad(lambda p: cross_section(src, p, key, 100_000)[0])(src.init(key))
    """
    if not isinstance(source, Source):
        raise TypeError(f"cross_section: source must be a Source, got {type(source).__name__}")
    n = check_n("cross_section", n)
    events = source.sample(params, key, n)
    return weighted_mean_error(events.weight)


def unweight(events: Events, key: Key, *, max_weight: Any = None, compact: bool = True) -> tuple[Events, Array]:
    """Hit-or-miss unweighting against the maximum |weight|.

    Event i is kept with probability ``|w_i| / w_max``; kept events get the weight
    ``sign(w_i) · Σ|w|/n`` (so ``mean(weight)`` over the kept events still estimates σ,
    counting negative weights with their sign). The efficiency is ``mean(|w|)/w_max``.
    Unweighting is a discrete choice: it has no useful gradient, so weighted events stay
    the default for differentiable work.

    Args:
      events: weighted events (n events).
      key: PRNG key for the accept/reject decisions.
      max_weight: the reference maximum (pb); default ``max |w|`` of the sample.
        Events with ``|w| > max_weight`` are always kept and carry the overweight
        factor ``|w|/max_weight`` in their weight (recorded, not clipped).
      compact: True (default) returns only the kept events (needs concrete arrays, not
        usable under ``jit``); False keeps all n events and sets the weight of rejected
        ones to 0 (usable under ``jit``).

    Returns:
      ``(events, efficiency)``; the events carry ``extra["unweight_accepted"]`` [n'] bool
      and ``extra["unweight_overweight"]`` [n'] (``max(1, |w|/w_max)``).
    """
    if not isinstance(events, Events):
        raise TypeError(f"unweight: events must be Events, got {type(events).__name__}")
    w = events.weight
    aw = jnp.abs(w)
    w_max = jnp.max(aw) if max_weight is None else jnp.asarray(max_weight, dtype=w.dtype)
    if not is_traced(w_max) and not float(w_max) > 0:
        raise ValueError(f"unweight: the maximum weight must be > 0, got {float(w_max)!r}")
    r = jax.random.uniform(key, w.shape, dtype=w.dtype)
    accept = r * w_max < aw
    sigma_abs = jnp.mean(aw)
    efficiency = sigma_abs / w_max
    over = jnp.maximum(1.0, aw / w_max)
    new_w = jnp.where(accept, jnp.sign(w) * sigma_abs * over, jnp.zeros_like(w))
    out = events.replace(weight=new_w).with_extra(unweight_accepted=accept, unweight_overweight=over)
    if compact:
        if is_traced(accept):
            raise TypeError("unweight: compact=True needs concrete events; use compact=False under jit")
        idx = jnp.nonzero(accept)[0]
        return out.take(idx), efficiency
    return out, efficiency
