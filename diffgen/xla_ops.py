"""Element-wise forms of operations that XLA's CPU backend runs slowly, shared by the layers.

Each function returns the same values as the JAX operation it replaces (tested bit for bit in
tests/test_xla_ops.py) but is written as plain element-wise arithmetic, which XLA fuses into
one loop with its producers and consumers.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from diffgen.typing import Array

__all__ = ["PREFIX_BLOCK", "prefix_sum", "threefry2x32"]

#: Block length of XLA's rewrite of a cumulative sum on CPU (see :func:`prefix_sum`).
PREFIX_BLOCK = 16

_THREEFRY_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def prefix_sum(x: Array) -> Array:
    """Inclusive cumulative sum along the last axis, bit for bit equal to ``jnp.cumsum`` on CPU.

    XLA lowers ``cumsum`` to a reduce-window, which its CPU backend runs as an O(n·16) loop
    per row: the most expensive operation of a shower trial, and of a decay round of the
    hadronization. XLA rewrites it into blocks of 16 (sequential sums within each block, plus
    the exclusive prefix of the block totals, the same recursively); this does the same
    additions in the same order with plain element-wise operations, so floating-point sums
    (the channel choices of the veto algorithm) are unchanged.

    Args:
      x: [..., n] values.

    Returns:
      [..., n] prefix sums.
    """
    n = x.shape[-1]
    if n <= PREFIX_BLOCK:
        parts = [x[..., 0]]
        for k in range(1, n):
            parts.append(parts[-1] + x[..., k])
        return jnp.stack(parts, axis=-1)
    n_blocks = -(-n // PREFIX_BLOCK)
    padded = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, n_blocks * PREFIX_BLOCK - n)])
    within = prefix_sum(padded.reshape(x.shape[:-1] + (n_blocks, PREFIX_BLOCK)))
    totals = prefix_sum(within[..., -1])
    offset = jnp.concatenate([jnp.zeros_like(totals[..., :1]), totals[..., :-1]], axis=-1)
    return (within + offset[..., None]).reshape(x.shape[:-1] + (n_blocks * PREFIX_BLOCK,))[..., :n]


def threefry2x32(k1: Array, k2: Array, x1: Array, x2: Array) -> tuple[Array, Array]:
    """The Threefry-2x32 hash (20 rounds) of the counters (x1, x2) under the key (k1, k2).

    J.K. Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11 (2011); the same
    operations as JAX's ``threefry2x32`` primitive, whose CPU lowering runs the rounds as a
    loop of small kernels over whole arrays.

    Args:
      k1, k2: uint32 key words (broadcast against the counters).
      x1, x2: uint32 counters, same shape.

    Returns:
      ``(y1, y2)``: the two uint32 output words, shape of the counters.
    """
    u32 = np.uint32
    ks = (k1, k2, k1 ^ k2 ^ u32(0x1BD11BDA))
    x1 = x1 + ks[0]
    x2 = x2 + ks[1]
    for i in range(5):
        for r in _THREEFRY_ROTATIONS[i % 2]:
            x1 = x1 + x2
            x2 = jax.lax.shift_left(x2, u32(r)) | jax.lax.shift_right_logical(x2, u32(32 - r))
            x2 = x1 ^ x2
        x1 = x1 + ks[(i + 1) % 3]
        x2 = x2 + ks[(i + 2) % 3] + u32(i + 1)
    return x1, x2
