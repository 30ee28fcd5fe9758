"""Soft (differentiable) cuts and histograms that tend to the hard ones as the bandwidth → 0.

A hard cut ``x > c`` and a hard histogram ``Σ_i w_i·1[e_k ≤ x_i < e_{k+1}]`` have zero
gradient with respect to anything that moves ``x``. Replacing the step function by a smooth
kernel CDF ``K((x − c)/h)`` gives a gradient; as ``h → 0`` the value tends to the hard one.
This is the "binned kernel density estimate" of e.g. Kagan, Heinrich, "Branches of a tree:
taking derivatives of programs with discrete and branching randomness in high energy physics"
(arXiv:2308.16680, §3) and neos (Simpson, Heinrich, arXiv:2203.05570).

Bias–variance trade-off (bandwidth ``h``, density ``f`` of ``x``, kernel variance ``c·h²`` with
``c = π²/3`` for the logistic and ``c = 1`` for the Gaussian kernel): a soft bin content is
the hard one convolved with the kernel at its two edges, so its bias is
``(c·h²/2)·(f′(e_{k+1}) − f′(e_k))`` (second order, symmetric kernel) and, for a distribution
with a discontinuity at an edge, first order ``O(h)``. The gradient of a bin content with
respect to a shift of ``x`` receives contributions only from events within ``~h`` of an edge,
so its Monte Carlo variance grows like ``1/(N·h)``. Choose ``h`` a fraction (≈ 0.1–0.3) of the
bin width: smaller gives less bias and noisier gradients, larger the reverse. The tests check
that the soft histogram converges to the hard one as ``h → 0``.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtr

from diffgen.typing import Array, ArrayLike

__all__ = ["hard_histogram", "soft_cut", "soft_histogram", "soft_window"]

Kernel = Literal["sigmoid", "gaussian"]


def _kernel_cdf(z: Array, kernel: str) -> Array:
    if kernel == "sigmoid":
        return jax.nn.sigmoid(z)
    if kernel == "gaussian":
        return ndtr(z)
    raise ValueError(f"kernel must be 'sigmoid' or 'gaussian', got {kernel!r}")


def _check_bandwidth(bandwidth: ArrayLike, name: str = "bandwidth") -> None:
    if isinstance(bandwidth, (int, float, np.ndarray, np.generic)) or (
        isinstance(bandwidth, jax.Array) and not isinstance(bandwidth, jax.core.Tracer)
    ):
        b = np.asarray(bandwidth)
        if not np.all(np.isfinite(b)) or np.any(b <= 0):
            raise ValueError(f"{name} must be finite and > 0, got {bandwidth}")


def soft_cut(x: ArrayLike, threshold: ArrayLike, bandwidth: ArrayLike, *, kernel: Kernel = "sigmoid") -> Array:
    """Smooth version of the selection ``x > threshold``: ``K((x − threshold)/bandwidth)``.

    Tends to the step function ``1[x > threshold]`` as ``bandwidth → 0`` (value ½ at the
    threshold). Use ``1 − soft_cut`` for ``x < threshold``.

    Args:
      x: values, any shape.
      threshold: cut value, broadcast against ``x``.
      bandwidth: kernel width (same units as ``x``), > 0.
      kernel: ``"sigmoid"`` (logistic CDF) or ``"gaussian"`` (normal CDF).

    Returns:
      selection weights in [0, 1], shape of ``x``.
    """
    _check_bandwidth(bandwidth)
    x = jnp.asarray(x)
    return _kernel_cdf((x - threshold) / bandwidth, kernel)


def soft_window(
    x: ArrayLike, low: ArrayLike, high: ArrayLike, bandwidth: ArrayLike, *, kernel: Kernel = "sigmoid"
) -> Array:
    """Smooth version of ``low < x < high``: ``K((x − low)/h) − K((x − high)/h)``.

    Args:
      x: values, any shape.
      low, high: window edges (``low < high``), broadcast against ``x``.
      bandwidth: kernel width, > 0.
      kernel: ``"sigmoid"`` or ``"gaussian"``.

    Returns:
      selection weights in [0, 1], shape of ``x``.
    """
    _check_bandwidth(bandwidth)
    x = jnp.asarray(x)
    return _kernel_cdf((x - low) / bandwidth, kernel) - _kernel_cdf((x - high) / bandwidth, kernel)


def _prepare(x: ArrayLike, edges: ArrayLike, weights: ArrayLike | None, mask: ArrayLike | None):
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"x must be a floating array, got dtype {x.dtype}")
    edges = jnp.asarray(edges, dtype=x.dtype)
    if edges.ndim != 1 or edges.shape[0] < 2:
        raise ValueError(f"edges must be a 1-d array of at least 2 bin edges, got shape {edges.shape}")
    if not isinstance(edges, jax.core.Tracer):
        e = np.asarray(edges)
        if not np.all(np.isfinite(e)) or not np.all(np.diff(e) > 0):
            raise ValueError("edges must be finite and strictly increasing")
    if weights is None:
        weights = jnp.ones(x.shape, x.dtype)
    else:
        weights = jnp.asarray(weights)
        if weights.dtype != x.dtype:
            raise TypeError(f"weights must have the dtype of x ({x.dtype}), got {weights.dtype}")
        if weights.ndim < x.ndim:
            # per-event weights for a per-particle observable: [N] against [N, P]
            weights = weights.reshape(weights.shape + (1,) * (x.ndim - weights.ndim))
        try:
            weights = jnp.broadcast_to(weights, x.shape)
        except ValueError:
            raise ValueError(f"weights of shape {weights.shape} do not broadcast to x of shape {x.shape}") from None
    if mask is not None:
        mask = jnp.asarray(mask)
        if mask.dtype != jnp.bool_:
            raise TypeError(f"mask must be boolean, got dtype {mask.dtype}")
        if mask.shape != x.shape:
            raise ValueError(f"mask must have the shape of x {x.shape}, got {mask.shape}")
        weights = jnp.where(mask, weights, 0.0)
        # padded entries may hold anything; move them away from every edge so that
        # neither their value nor their gradient can leak into a bin
        x = jnp.where(mask, x, edges[0])
    return x, edges, weights


def soft_histogram(
    x: ArrayLike,
    edges: ArrayLike,
    bandwidth: ArrayLike,
    *,
    weights: ArrayLike | None = None,
    mask: ArrayLike | None = None,
    kernel: Kernel = "sigmoid",
    return_sumw2: bool = False,
) -> Array | tuple[Array, Array]:
    """Differentiable histogram: bin ``k`` gets ``Σ_i w_i·[K((x_i − e_k)/h) − K((x_i − e_{k+1})/h)]``.

    With ``kernel="gaussian"`` this is the binned Gaussian KDE (the KDE integrated over each
    bin); with ``"sigmoid"`` the bin edges are logistic steps. Both tend to the hard
    histogram ``Σ_i w_i·1[e_k ≤ x_i < e_{k+1}]`` as ``h → 0``. Events near the outer edges
    leak partly out of the range, as in the hard histogram.

    Args:
      x: values, any shape (e.g. [N] per event or [N, P] per particle).
      edges: [K+1] strictly increasing bin edges.
      bandwidth: kernel width h > 0 (units of ``x``); see the module docstring for the choice.
      weights: per-entry weights of the shape of ``x``, or per-event [N] for a per-particle
        ``x``; default 1.
      mask: boolean, shape of ``x``; False entries contribute nothing (padding).
      kernel: ``"sigmoid"`` or ``"gaussian"``.
      return_sumw2: also return ``Σ_i w_i²·m_ik`` per bin (the MC variance of the content).

    Returns:
      [K] bin contents (same dtype as ``x``), and [K] sum of squared weights if requested.
    """
    _check_bandwidth(bandwidth)
    x, edges, weights = _prepare(x, edges, weights, mask)
    e = edges.reshape((1,) * x.ndim + edges.shape)
    cdf = _kernel_cdf((x[..., None] - e) / bandwidth, kernel)  # [..., K+1]
    member = cdf[..., :-1] - cdf[..., 1:]  # [..., K]
    flat_m = member.reshape(-1, member.shape[-1])
    flat_w = weights.reshape(-1)
    counts = flat_w @ flat_m
    if return_sumw2:
        return counts, (flat_w * flat_w) @ flat_m
    return counts


def hard_histogram(
    x: ArrayLike,
    edges: ArrayLike,
    *,
    weights: ArrayLike | None = None,
    mask: ArrayLike | None = None,
    return_sumw2: bool = False,
) -> Array | tuple[Array, Array]:
    """The ordinary histogram ``Σ_i w_i·1[e_k ≤ x_i < e_{k+1}]`` (zero gradient in ``x``).

    Same arguments and returns as :func:`soft_histogram` (without the bandwidth).

    Args:
      x: values, any shape (e.g. [N] per event or [N, P] per particle).
      edges: [K+1] strictly increasing bin edges.
      weights: per-entry weights of the shape of ``x``, or per-event [N] for a per-particle
        ``x``; default 1.
      mask: boolean, shape of ``x``; False entries contribute nothing (padding).
      return_sumw2: also return ``Σ_i w_i²`` per bin (the MC variance of the content).

    Returns:
      [K] bin contents (same dtype as ``x``), and [K] sum of squared weights if requested.
    """
    x, edges, weights = _prepare(x, edges, weights, mask)
    e = edges.reshape((1,) * x.ndim + edges.shape)
    member = ((x[..., None] >= e[..., :-1]) & (x[..., None] < e[..., 1:])).astype(x.dtype)
    flat_m = member.reshape(-1, member.shape[-1])
    flat_w = weights.reshape(-1)
    counts = flat_w @ flat_m
    if return_sumw2:
        return counts, (flat_w * flat_w) @ flat_m
    return counts
