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

__all__ = [
    "PREFIX_BLOCK",
    "SELECT_MAX_WORDS",
    "flagged_slots",
    "packed_flags",
    "prefix_sum",
    "select_bit",
    "select_flagged",
    "threefry2x32",
]

#: Block length of XLA's rewrite of a cumulative sum on CPU (see :func:`prefix_sum`).
PREFIX_BLOCK = 16

#: Longest row (in 32-bit words) for which :func:`flagged_slots` selects bits; the word search
#: is unrolled, so longer rows use ``jnp.nonzero``.
SELECT_MAX_WORDS = 32

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


def flagged_slots(flags: Array, size: int) -> Array:
    """The slots of the first ``size`` set flags along the last axis, as ``jnp.nonzero(size=)`` per row.

    ``jnp.nonzero`` (like the scatter of every slot to its rank among the flagged ones) writes
    one update per slot, which XLA's CPU backend runs as a serial loop, after a prefix sum
    over the slots. Here the flags are packed into 32-bit words and the k-th set bit is
    selected with population counts: the word from the counts of the words before it, the
    bit within the word by halving (the broadword *select* of S. Vigna, "Broadword
    implementation of rank/select queries", WEA 2008, LNCS 5038, p. 154). Everything is
    element-wise on [..., size] entries and fuses into one loop, under ``vmap`` too. Rows of
    more than :data:`SELECT_MAX_WORDS` words (the word search costs one step per word) use
    ``jnp.nonzero``.

    Args:
      flags: [..., n] bool.
      size: static length M ≥ 0 of the list.

    Returns:
      int32 [..., M]: the slot of the k-th set flag of each row in slot order (k = 0 … M − 1),
      n where the row has k flags or fewer.
    """
    if not isinstance(size, int) or size < 0:
        raise ValueError(f"flagged_slots: size must be an int >= 0, got {size!r}")
    n = flags.shape[-1]
    batch = flags.shape[:-1]
    if n == 0 or size == 0:
        return jnp.full(batch + (size,), n, jnp.int32)
    n_words = -(-n // 32)
    if n_words > SELECT_MAX_WORDS:
        rows = jax.vmap(lambda f: jnp.nonzero(f, size=size, fill_value=n)[0])(flags.reshape(-1, n))
        return rows.reshape(batch + (size,)).astype(jnp.int32)
    words, counts = packed_flags(flags)
    k = jnp.arange(size, dtype=jnp.int32).reshape((1,) * len(batch) + (size,))
    pos, total = select_flagged(words[..., None, :], counts[..., None, :], k)
    return jnp.where(k < total, pos, n).astype(jnp.int32)


def packed_flags(flags: Array) -> tuple[Array, Array]:
    """Flags packed into 32-bit words (slot 32j + i is bit i of word j), with their set-bit counts.

    Args:
      flags: [..., n] bool.

    Returns:
      ``(words, counts)``: uint32 [..., ⌈n/32⌉] and int32 [..., ⌈n/32⌉].
    """
    n = flags.shape[-1]
    n_words = -(-n // 32)
    batch = flags.shape[:-1]
    bits = jnp.pad(flags.astype(bool), [(0, 0)] * len(batch) + [(0, 32 * n_words - n)])
    bits = bits.reshape(batch + (n_words, 32))
    shifts = jnp.arange(32, dtype=jnp.uint32)
    words = jnp.sum(jnp.where(bits, jnp.uint32(1) << shifts, jnp.uint32(0)), axis=-1, dtype=jnp.uint32)
    return words, jax.lax.population_count(words).astype(jnp.int32)


def select_flagged(words: Array, counts: Array, k: Array) -> tuple[Array, Array]:
    """The slot of the k-th set flag (k ≥ 0) of packed flags (:func:`packed_flags`).

    The word from the counts of the words before it (one step per word), the bit within it by
    :func:`select_bit`; element-wise.

    Args:
      words: uint32 [..., n_words], broadcastable against k along the leading axes.
      counts: int32 [..., n_words], their set bits.
      k: int32 [...] ranks.

    Returns:
      ``(slot, total)``: int32 [...] the slot (meaningless where k ≥ total) and the set flags
      in all the words.
    """
    n_words = words.shape[-1]
    zeros = jnp.zeros(jnp.broadcast_shapes(words.shape[:-1], k.shape), jnp.int32)
    # The word that holds the k-th set bit, and k's rank within it.
    word = words[..., 0] + jnp.zeros(zeros.shape, jnp.uint32)
    rank = k + zeros
    first = zeros
    before = jnp.zeros(counts.shape[:-1], jnp.int32)
    for j in range(1, n_words):
        before = before + counts[..., j - 1]
        later = k >= before
        word = jnp.where(later, words[..., j], word)
        rank = jnp.where(later, k - before, rank)
        first = jnp.where(later, 32 * j, first)
    return first + select_bit(word, rank), before + counts[..., n_words - 1]


def select_bit(word: Array, rank: Array) -> Array:
    """The position (0–31) of the set bit of rank ``rank`` (from bit 0 up) in each uint32 word.

    By halving: keep the low half if it holds more than ``rank`` set bits, else go to the high
    half (the broadword *select* of S. Vigna, "Broadword implementation of rank/select
    queries", WEA 2008, LNCS 5038, p. 154); element-wise.

    Args:
      word: uint32 [...].
      rank: int32 [...], 0 ≤ rank < population count of the word (else meaningless).

    Returns:
      int32 [...] bit positions.
    """
    pos = jnp.zeros(jnp.broadcast_shapes(jnp.shape(word), jnp.shape(rank)), jnp.int32)
    for half in (16, 8, 4, 2, 1):
        low = jax.lax.population_count(word & jnp.uint32((1 << half) - 1)).astype(jnp.int32)
        up = rank >= low
        rank = jnp.where(up, rank - low, rank)
        word = jnp.where(up, word >> jnp.uint32(half), word)
        pos = jnp.where(up, pos + half, pos)
    return pos


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
