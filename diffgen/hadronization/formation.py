"""Cluster formation: non-perturbative gluon splitting, colour-singlet clusters, cluster fission.

The cluster model (B.R. Webber, Nucl. Phys. B238 (1984) 492; Herwig 7, arXiv:0803.0883 §7
and arXiv:1512.01178) rests on preconfinement: after the shower, colour-connected partons are
close in phase space. Every final gluon is split non-perturbatively into a quark–antiquark
pair, and each colour line then joins a quark to an antiquark into a colour-singlet cluster.

Simplifications of this model (documented in docs/hadronization.md):

- The partons are massless, so the gluon splits collinearly, g(p) → q(z p) q̄((1 − z) p) with
  z ~ U(0, 1) and flavour u, d or s with weights 1 : 1 : γ_s. Four-momentum is conserved
  exactly and every constituent stays massless.
- A colour line from parton i (colour tag c) to parton j (anticolour tag c) forms one cluster
  from the quark end of i and the antiquark end of j. No chain ordering is needed, so the
  construction is one vectorised comparison of colour tags.
- Fission (Herwig's ClMax rule, arXiv:0803.0883 eq. 7.2, with exponent 1): a cluster with
  M > cl_max + m_q + m_q̄ (constituent masses) pops a light pair q′q̄′ and splits into
  (x p_q + y p_q̄) and ((1 − x) p_q + (1 − y) p_q̄): child masses M₁ = M √(xy),
  M₂ = M √((1−x)(1−y)) drawn as in Herwig (eq. 7.3, PSplit = 1), each child moving along its
  own constituent in the cluster rest frame (:func:`fission_fractions`).
  ``n_fission_rounds`` static rounds are applied; a cluster still above the threshold after
  the last round is flagged (``fission_unfinished``).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from diffgen import kinematics as kin
from diffgen.core import Events, is_traced
from diffgen.hadronization.hadrons import CONSTITUENT_MASS
from diffgen.typing import Array, Key, Params
from diffgen.xla_ops import flagged_slots, prefix_sum, threefry2x32

__all__ = [
    "Clusters",
    "append_after",
    "append_after_last",
    "constituent_axis",
    "fission_fractions",
    "form_clusters",
    "on_active_rows",
    "popped_flavour_logits",
    "sample_flavour",
    "slot_sum",
    "to_front",
    "uniform",
    "uniform_block",
    "validate_partons",
]

#: Default cluster capacity K = max(P, this) (see :func:`diffgen.hadronization.layer.capacities`).
DEFAULT_MAX_CLUSTERS = 24

#: A fission or decay round in which at most this fraction of the events of every block has
#: something to do runs on those events only (:func:`on_active_rows`): at 91.2 GeV fewer than
#: a quarter of the events still split a cluster from the fourth fission round on and still
#: decay a hadron from the fifth decay round on (docs/hadronization.md, Performance).
ACTIVE_ROW_FRACTION = 0.25

#: Smaller sets of rows for the later rounds, each a share of the largest set
#: (:func:`active_row_capacities`): a round runs on the smallest set that holds its active
#: events. At 91.2 GeV 3 % of the events still decay a hadron in the sixth decay round, 0.4 %
#: in the seventh, 0.14 % need the long decay list in the second, 1.8 % and 0.5 % still split a
#: cluster in the sixth and seventh fission rounds (``benchmarks.hadronization_capacity``).
ACTIVE_ROW_TIERS = (1 / 4, 1 / 16)

#: Smallest batch for which the rounds on the active events are compiled: their extra
#: branches double the compile time of the layer (≈ 12 s → 25 s), more than a batch of fewer
#: events takes to run (< 0.3 s at ≈ 70 µs per event).
ACTIVE_ROW_MIN_EVENTS = 4096


@dataclasses.dataclass(frozen=True, eq=False)
class Clusters:
    """A batch of colour-singlet clusters, N events × K cluster slots.

    Fields:
      p_q: float [N, K, 4] quark constituent four-momentum (E, px, py, pz), GeV, massless.
      p_qbar: float [N, K, 4] antiquark constituent four-momentum, GeV, massless.
      flav_q: int32 [N, K] quark flavour 1..5 (d, u, s, c, b).
      flav_qbar: int32 [N, K] antiquark flavour 1..5 (the positive code of the antiquark).
      mask: bool [N, K] True for a real cluster.
    """

    p_q: Array
    p_qbar: Array
    flav_q: Array
    flav_qbar: Array
    mask: Array

    @property
    def p(self) -> Array:
        """Cluster four-momenta [N, K, 4] GeV (zero in padding)."""
        return self.p_q + self.p_qbar

    @property
    def mass(self) -> Array:
        """Cluster masses [N, K] GeV."""
        return kin.mass(self.p)

    def axis(self) -> Array:
        """Unit direction of the quark constituent in the cluster rest frame, [N, K, 3]."""
        return constituent_axis(self.p_q, self.p)

    def multiplicity(self) -> Array:
        """Number of clusters per event, [N] int32."""
        return jnp.sum(self.mask, axis=-1, dtype=jnp.int32)


jax.tree_util.register_dataclass(Clusters, data_fields=["p_q", "p_qbar", "flav_q", "flav_qbar", "mask"], meta_fields=[])


def constituent_axis(p_q: Array, p_cluster: Array) -> Array:
    """Direction of a constituent in its cluster's rest frame.

    Args:
      p_q: [..., 4] constituent momentum (lab), GeV.
      p_cluster: [..., 4] cluster momentum (lab), GeV, timelike.

    Returns:
      [..., 3] unit vector (ẑ where undefined, e.g. padding).
    """
    p_rest = kin.boost_to_rest_frame(p_q, p_cluster)
    norm = kin.p_abs(p_rest)
    unit = kin.safe_div(p_rest[..., 1:], norm[..., None])
    z = jnp.zeros_like(unit).at[..., 2].set(1.0)
    return jnp.where((norm > 0)[..., None], unit, z)


def popped_flavour_logits(gamma_s: Array) -> Array:
    """Log-weights of popping d, u, s quarks from the vacuum: log(1, 1, γ_s).

    Args:
      gamma_s: scalar strangeness suppression γ_s ≥ 0 (γ_s = 0 gives log-weight −inf for s).

    Returns:
      [3] unnormalised logits for (d, u, s); differentiable in γ_s.
    """
    gamma_s = jnp.asarray(gamma_s)
    zero = jnp.zeros_like(gamma_s)
    return jnp.stack([zero, zero, kin.safe_log(gamma_s, fill=-jnp.inf)])


def _threefry_key_data(key: Key) -> Array | None:
    """The uint32 [2] data of a Threefry key, or None for another generator."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key) if str(jax.random.key_impl(key)) == "threefry2x32" else None
    if key.dtype == jnp.uint32 and key.shape == (2,) and jax.config.jax_default_prng_impl == "threefry2x32":
        return key
    return None


def uniform_block(
    key: Key,
    shape: tuple[int, ...],
    start: tuple,
    size: tuple[int, ...],
    dtype,
    *,
    axes: tuple[int, ...] | None = None,
    rows: Array | None = None,
) -> Array:
    """A block of ``jax.random.uniform(key, shape, dtype)`` without drawing the rest.

    Returns exactly ``jax.random.uniform(key, shape, dtype)[s₀:s₀+n₀, s₁:s₁+n₁, …]``: with JAX's
    partitionable Threefry (the default) element i of the full array is the hash of the
    counter i (its row-major index), so only the counters of the block are hashed. Other
    generators, dtypes or settings take the full draw and slice it (same numbers, slower).

    Args:
      key: PRNG key.
      shape: static shape of the full draw.
      start: per-axis offsets of the block (ints or int32 scalars, may be traced).
      size: static per-axis block sizes.
      dtype: float32 or float64 (anything else falls back to the full draw).
      axes: optional permutation: return ``jnp.transpose(block, axes)``, generated in that
        layout (no transposing copy).
      rows: optional int [n₀] indices along the first axis, in place of the range
        s₀ … s₀ + n₀ − 1 (``start[0]`` is then ignored): the block of the given rows.

    Returns:
      [*size] (permuted by ``axes``) uniform numbers in [0, 1) of ``dtype``.
    """
    if not len(shape) == len(start) == len(size):
        raise ValueError(f"uniform_block: shape, start and size must have equal lengths, got {shape}, {start}, {size}")
    if rows is not None and jnp.shape(rows) != (size[0],):
        raise ValueError(f"uniform_block: rows must have shape ({size[0]},) = size[0], got {jnp.shape(rows)}")
    dtype = jnp.dtype(dtype)
    data = _threefry_key_data(key)
    total = int(np.prod(shape))
    x64 = jax.config.jax_enable_x64
    if (
        data is None
        or not jax.config.jax_threefry_partitionable
        or dtype not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64))
        or total >= (2**64 if x64 else 2**32)
    ):
        full = jax.random.uniform(key, shape, dtype)
        if rows is not None:
            full, start = full[jnp.asarray(rows)], (0, *start[1:])
        block = jax.lax.dynamic_slice(full, tuple(jnp.asarray(s, jnp.int32) for s in start), size)
        return block if axes is None else jnp.transpose(block, axes)
    axes = tuple(range(len(shape))) if axes is None else tuple(axes)

    def draw(data, starts, rows):
        udt = jnp.uint64 if x64 else jnp.uint32
        strides = np.cumprod((1, *shape[::-1]))[:-1][::-1]
        out_size = tuple(size[a] for a in axes)
        count = jnp.zeros(out_size, udt)
        for out_axis, axis in enumerate(axes):
            if axis == 0 and rows is not None:
                idx = jnp.expand_dims(jnp.asarray(rows).astype(udt), [a for a in range(len(axes)) if a != out_axis])
            else:
                idx = jax.lax.broadcasted_iota(udt, out_size, out_axis) + starts[axis].astype(udt)
            count = count + idx * udt(int(strides[axis]))
        return _uniform_of_counter(data, count, dtype)

    # Through a lax.cond (both branches the same): XLA keeps the numbers in memory. Fused
    # into their consumers it would hash every element again for each use (several per
    # element where the components of one draw are read apart).
    starts = tuple(jnp.asarray(s_) for s_ in start)
    return jax.lax.cond((data[0] & 1) == 1, draw, draw, data, starts, rows)


def _uniform_of_counter(data: Array, count: Array, dtype) -> Array:
    """Element ``count`` (uint32, or uint64 with x64) of a partitionable ``jax.random.uniform``."""
    if jax.config.jax_enable_x64:
        hi = jax.lax.shift_right_logical(count, np.uint64(32)).astype(jnp.uint32)
        lo = (count & np.uint64(0xFFFFFFFF)).astype(jnp.uint32)
    else:
        hi, lo = jnp.zeros(count.shape, jnp.uint32), count
    b1, b2 = threefry2x32(data[0], data[1], hi, lo)
    # jax.random.uniform: the leading mantissa bits of the random word with exponent 0 give
    # a float in [1, 2); minus 1.
    if dtype == jnp.dtype(jnp.float64):
        bits = jax.lax.shift_left(b1.astype(jnp.uint64), np.uint64(32)) | b2.astype(jnp.uint64)
        bits = jax.lax.shift_right_logical(bits, np.uint64(12)) | np.uint64(0x3FF0000000000000)
        return jax.lax.bitcast_convert_type(bits, jnp.float64) - 1.0
    bits = jax.lax.shift_right_logical(b1 ^ b2, np.uint32(9)) | np.uint32(0x3F800000)
    return jax.lax.bitcast_convert_type(bits, jnp.float32) - 1.0


def uniform_at(key: Key, shape: tuple[int, ...], index: tuple, dtype) -> Array:
    """Chosen elements of ``jax.random.uniform(key, shape, dtype)`` without drawing the rest.

    Returns exactly ``jax.random.uniform(key, shape, dtype)[index]`` for integer index arrays
    (one per axis, broadcast together): only the counters of those elements are hashed
    (:func:`uniform_block`; other generators, dtypes or settings take the full draw).

    Args:
      key: PRNG key.
      shape: static shape of the full draw.
      index: ``len(shape)`` int arrays (or ints) of in-range indices, broadcastable together.
      dtype: float32 or float64.

    Returns:
      The uniform numbers in [0, 1) of ``dtype``, with the broadcast shape of ``index``.
    """
    if len(index) != len(shape):
        raise ValueError(f"uniform_at: need one index per axis of shape {shape}, got {len(index)}")
    dtype = jnp.dtype(dtype)
    data = _threefry_key_data(key)
    x64 = jax.config.jax_enable_x64
    if (
        data is None
        or not jax.config.jax_threefry_partitionable
        or dtype not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64))
        or int(np.prod(shape)) >= (2**64 if x64 else 2**32)
    ):
        return jax.random.uniform(key, shape, dtype)[tuple(jnp.asarray(i) for i in index)]
    udt = jnp.uint64 if x64 else jnp.uint32
    strides = np.cumprod((1, *shape[::-1]))[:-1][::-1]

    def draw(data, index):
        count = sum(jnp.asarray(i).astype(udt) * udt(int(s)) for i, s in zip(index, strides, strict=True))
        return _uniform_of_counter(data, jnp.asarray(count, udt), dtype)

    # Through a lax.cond as in uniform_block: kept in memory, not hashed again by each consumer.
    index = tuple(jnp.asarray(i) for i in index)
    return jax.lax.cond((data[0] & 1) == 1, draw, draw, data, index)


def uniform(key: Key, shape: tuple[int, ...], dtype) -> Array:
    """``jax.random.uniform(key, shape, dtype)``, the same numbers, with the hash written out.

    :func:`uniform_block` of the whole shape: JAX's CPU lowering of Threefry runs its rounds
    as a loop over whole arrays, several times slower than one fused elementwise loop.

    Args:
      key: PRNG key.
      shape: static shape of the draw.
      dtype: float32 or float64 (others take ``jax.random.uniform`` itself).

    Returns:
      [*shape] uniform numbers in [0, 1) of ``dtype``.
    """
    return uniform_block(key, shape, (0,) * len(shape), shape, dtype)


def validate_partons(events: Events) -> None:
    """Check the parton-level input of the hadronization (concrete inputs only).

    Raises:
      TypeError: ``events.colour`` missing.
      ValueError: a real particle with a pid other than ±1..±5 or 21, or a colour tag
        without its partner anticolour in the same event.
    """
    if events.colour is None:
        raise TypeError("hadronize: events.colour is required (LHE colour tags of the showered partons), got None")
    if is_traced(events.pid) or is_traced(events.colour):
        return
    pid = np.asarray(events.pid)
    mask = np.asarray(events.mask)
    ok = ((np.abs(pid) >= 1) & (np.abs(pid) <= 5)) | (pid == 21)
    bad = mask & ~ok
    if bad.any():
        values = sorted(set(pid[bad].tolist()))
        raise ValueError(
            f"hadronize: events.pid must be a quark (±1..±5) or gluon (21) for real particles, got {values}"
        )
    col = np.asarray(events.colour)
    is_q, is_qb, is_g = (pid > 0) & (pid <= 5), (pid < 0), pid == 21
    wrong = mask & (
        (is_q & ((col[..., 0] == 0) | (col[..., 1] != 0)))
        | (is_qb & ((col[..., 1] == 0) | (col[..., 0] != 0)))
        | (is_g & ((col[..., 0] == 0) | (col[..., 1] == 0)))
    )
    if wrong.any():
        e, s = np.argwhere(wrong)[0]
        raise ValueError(
            f"hadronize: events.colour must be (c, 0) for quarks, (0, c) for antiquarks and (c, c') for gluons "
            f"(tags >= 501); event {e} slot {s} (pid {pid[e, s]}) has {col[e, s].tolist()}"
        )
    for e in range(pid.shape[0]):
        c = col[e][mask[e]]
        if sorted(c[:, 0][c[:, 0] > 0].tolist()) != sorted(c[:, 1][c[:, 1] > 0].tolist()):
            raise ValueError(f"hadronize: events.colour: event {e} has colour tags without partner anticolour")


def to_front(mask: Array) -> Array:
    """The slot order that moves the occupied slots of each row to the front, in slot order.

    A stable partition by one int32 sort (several times faster than a sort of (mask, index)
    pairs).

    Args:
      mask: [..., C] bool occupied slots.

    Returns:
      int32 [..., C]: the source slot of every slot, occupied ones first (apply with
      ``jnp.take_along_axis(x, order, axis=-1)``).
    """
    cap = mask.shape[-1]
    slot = jnp.arange(cap, dtype=jnp.int32)
    return jnp.sort(jnp.where(mask, slot, cap + slot), axis=-1) % cap


def append_after_last(mask: Array, flags: Array) -> tuple[Array, Array]:
    """Slots for new items of one event whose occupied slots are at the front (:func:`to_front`).

    The k-th flagged item goes to slot n + k, n the number of occupied slots.

    Args:
      mask: [C] bool occupied slots (the first n).
      flags: [M] bool, items to place (in order).

    Returns:
      ``(target, placed)``: [M] int32 slot of each item (C, out of range, if not placed) and
      [M] bool whether it was placed (False when the capacity is exhausted).
    """
    return append_after(jnp.sum(mask, dtype=jnp.int32), flags, mask.shape[0])


def append_after(n: Array, flags: Array, cap: int) -> tuple[Array, Array]:
    """:func:`append_after_last` for an event that keeps the count n of its occupied slots.

    Args:
      n: 0-d int32, the occupied slots are 0 … n − 1.
      flags: [M] bool, items to place (in order).
      cap: static number of slots C.

    Returns:
      ``(target, placed)`` as :func:`append_after_last`.
    """
    target = n + prefix_sum(flags.astype(jnp.int32)) - 1
    placed = flags & (target < cap)
    return jnp.where(placed, target, cap).astype(jnp.int32), placed


def row_blocks(n: int) -> int:
    """The number of equal blocks of whole rows a batch of n rows is worked on in (16, 8, 4, 2 or 1).

    With the batch sharded over devices (:mod:`diffgen.parallel`) the gathers within a block
    stay on its device; at least 256 rows per block keep a block's share of the work close
    to the mean.
    """
    for b in (16, 8, 4, 2):
        if n % b == 0 and n // b >= 256:
            return b
    return 1


def active_row_capacity(n: int, fraction: float | None = None, min_rows: int | None = None) -> int:
    """Rows per block of :func:`on_active_rows` for a batch of ``n`` rows (0: no gain, use all).

    Args:
      n: rows of the batch.
      fraction: the share of each block's rows to provide for (default
        :data:`ACTIVE_ROW_FRACTION`, read at the call; 0 turns the shortcut off).
      min_rows: batches of fewer rows get 0 (default :data:`ACTIVE_ROW_MIN_EVENTS`).

    Returns:
      The static number of active rows a block may hold, or 0 when that is not fewer than
      the block's rows or the batch is smaller than ``min_rows``.
    """
    fraction = ACTIVE_ROW_FRACTION if fraction is None else fraction
    if n < (ACTIVE_ROW_MIN_EVENTS if min_rows is None else min_rows):
        return 0
    m = n // row_blocks(n)
    size = int(np.ceil(m * fraction))
    return size if 0 < size < m else 0


def active_row_capacities(n: int, min_rows: int | None = None) -> tuple[int, ...]:
    """Rows per block of the sets of :func:`on_active_rows` for a batch of ``n`` rows, largest first.

    Args:
      n: rows of the batch.
      min_rows: as in :func:`active_row_capacity`.

    Returns:
      The distinct static sizes :func:`active_row_capacity` gives for ``ACTIVE_ROW_FRACTION``
      times each of :data:`ACTIVE_ROW_TIERS` (read at the call), in decreasing order; empty when
      the shortcut is off.
    """
    big = active_row_capacity(n, min_rows=min_rows)
    if not big:
        return ()
    sizes = {active_row_capacity(n, ACTIVE_ROW_FRACTION * t, min_rows) for t in ACTIVE_ROW_TIERS} | {big}
    return tuple(sorted((s for s in sizes if 0 < s <= big), reverse=True))


def active_rows_tier(active: Array, sizes: tuple[int, ...]) -> Array:
    """Index into ``sizes`` (decreasing) of the smallest set that holds the active rows of every block.

    Args:
      active: [N] bool rows with work to do.
      sizes: rows per block, largest first (:func:`active_row_capacities`).

    Returns:
      0-d int32 in 0 … len(sizes) − 1, or −1 when no set holds them.
    """
    n = active.shape[0]
    b = row_blocks(n)
    most = jnp.max(jnp.sum(active.reshape(b, n // b), axis=1, dtype=jnp.int32))
    return sum((most <= s).astype(jnp.int32) for s in sizes) - 1


def active_rows_fit(active: Array, size: int) -> Array:
    """Whether no block of the batch has more than ``size`` active rows (scalar bool).

    Args:
      active: [N] bool rows with work to do.
      size: rows per block (:func:`active_row_capacity`).

    Returns:
      0-d bool.
    """
    return active_rows_tier(active, (size,)) == 0


def on_active_rows(fn, base, inputs, active: Array, size: int):
    """Apply a row-wise ``fn`` to the active rows of a batch only; the other rows keep ``base``.

    The rows are taken in blocks (16, 8, 4, 2 or 1 blocks of at least 256 rows), from each
    block its first ``size`` active rows: ``fn`` then works on ``blocks × size`` rows instead
    of N. Every row is computed by the same row function from the same inputs, so the result
    is the one of ``fn`` on every row, selected by ``active`` (up to XLA's contraction of
    multiply-adds); the caller makes sure that no block has more than ``size`` active rows
    (:func:`active_rows_fit`).

    Args:
      fn: ``fn(base_rows, input_rows) -> new base rows``, pytrees with the structure of
        ``base`` and ``inputs`` and a leading row axis.
      base: pytree of [N, ...] arrays (the rows' values before and, where not active, after).
      inputs: pytree of [N, ...] arrays passed to ``fn`` with their rows.
      active: [N] bool.
      size: static rows per block (:func:`active_row_capacity`).

    Returns:
      A pytree like ``base``.
    """
    n = active.shape[0]
    b = row_blocks(n)
    m = n // b

    def blocked(x):
        return x.reshape(b, m, *x.shape[1:])

    def block(base_b, inputs_b, active_b):
        rows = flagged_slots(active_b, size)
        take = jnp.minimum(rows, m - 1)
        new = fn(jax.tree.map(lambda x: x[take], base_b), jax.tree.map(lambda x: x[take], inputs_b))
        return jax.tree.map(lambda x, y: x.at[rows].set(y, mode="drop"), base_b, new)

    out = jax.vmap(block)(jax.tree.map(blocked, base), jax.tree.map(blocked, inputs), blocked(active))
    return jax.tree.map(lambda x: x.reshape(n, *x.shape[2:]), out)


def slot_sum(x: Array, k: int | None) -> Array:
    """Sum over the leading (slot) axis, padded with zeros to k slots first: the additions, and
    so the rounding, are those of the sum over all k slots of an event whatever the working width.

    Args:
      x: [W, ...] values of an event's first W slots.
      k: the event's slots K ≥ W, or None (no padding).

    Returns:
      [...] the sum.
    """
    if k is not None and k > x.shape[0]:
        x = jnp.pad(x, ((0, k - x.shape[0]),) + ((0, 0),) * (x.ndim - 1))
    return jnp.sum(x, axis=0)


def sample_flavour(u: Array, logits: Array) -> Array:
    """Inverse-CDF draw of a popped flavour 1..3 (d, u, s).

    Args:
      u: [...] uniform numbers in [0, 1).
      logits: [3] unnormalised log-weights of (d, u, s), e.g. from
        :func:`popped_flavour_logits`.

    Returns:
      [...] int32 flavour codes 1 (d), 2 (u) or 3 (s).
    """
    cdf = jnp.cumsum(jax.nn.softmax(logits))[:-1].astype(u.dtype)
    cdf = cdf.reshape((1,) * u.ndim + (-1,))
    return jnp.sum(u[..., None] >= cdf, axis=-1, dtype=jnp.int32) + 1


def fission_fractions(u1: Array, u2: Array, m: Array, m_q: Array, m_qbar: Array, m_pop: Array) -> tuple[Array, Array]:
    """Momentum fractions of a cluster fission with Herwig's child masses (PSplit = 1).

    The cluster (constituents p_q, p_q̄, mass M) pops q′q̄′ and splits into the children
    ``x p_q + y p_q̄`` (quark q, antiquark q̄′) and ``(1 − x) p_q + (1 − y) p_q̄`` (q′, q̄). Their
    masses M₁ = M √(xy), M₂ = M √((1 − x)(1 − y)) are drawn as in Herwig's cluster fission
    (arXiv:0803.0883 §7.2, eq. 7.3, with exponent PSplit = 1): M₁ = m_q + m_q′ + D a,
    M₂ = m_q̄ + m_q′ + D b, D = M − m_q − m_q̄ − 2 m_q′, (a, b) uniform on the triangle
    a + b ≤ 1 (the uniform draws with M₁ + M₂ ≤ M, by reflection instead of rejection). Each
    child then moves along its own constituent's direction in the cluster rest frame with the
    two-body momentum: x, y = (s ± λ^{1/2}(1, μ₁², μ₂²))/2, s = 1 + μ₁² − μ₂², μ_i = M_i/M.

    Args:
      u1, u2: [...] uniform numbers in [0, 1).
      m: [...] cluster masses M, GeV.
      m_q, m_qbar, m_pop: [...] constituent masses of the quark, the antiquark and the popped
        flavour, GeV (they set the lower ends of M₁, M₂; the constituents stay massless).

    Returns:
      ``(x, y)`` [...] with 0 ≤ y ≤ x ≤ 1 (the quark keeps the larger share); pathwise
      differentiable in ``m``.
    """
    reflect = u1 + u2 > 1.0
    a = jnp.where(reflect, 1.0 - u1, u1)
    b = jnp.where(reflect, 1.0 - u2, u2)
    d = jnp.maximum(m - m_q - m_qbar - 2.0 * m_pop, 0.0)
    mu1 = kin.safe_div(m_q + m_pop + d * a, m)
    mu2 = kin.safe_div(m_qbar + m_pop + d * b, m)
    s = 1.0 + mu1**2 - mu2**2
    root = kin.safe_sqrt(s**2 - 4.0 * mu1**2)
    x = jnp.clip(0.5 * (s + root), 0.0, 1.0)
    y = jnp.clip(0.5 * (s - root), 0.0, 1.0)
    return x, y


def _form_one(params: Params, u_form, p, pid, colour, mask, max_clusters: int, record: bool = False):
    # Clusters of one event before fission; u_form [P, 2] (z, flavour) uniforms.
    n_part = p.shape[0]
    logits = popped_flavour_logits(jnp.asarray(params["gamma_s"], p.dtype))
    log_w = jax.nn.log_softmax(logits)
    is_g = mask & (pid == 21)
    is_q = mask & (pid > 0) & (pid <= 5)
    is_qb = mask & (pid < 0) & (pid >= -5)
    z = u_form[:, 0]
    gflav = sample_flavour(u_form[:, 1], logits)
    logp = jnp.sum(jnp.where(is_g, log_w[gflav - 1], 0.0))
    q_flav = jnp.where(is_q, pid, jnp.where(is_g, gflav, 0))
    qb_flav = jnp.where(is_qb, -pid, jnp.where(is_g, gflav, 0))
    zz = z[:, None]
    p_qend = jnp.where(is_q[:, None], p, jnp.where(is_g[:, None], zz * p, 0.0))
    p_qbend = jnp.where(is_qb[:, None], p, jnp.where(is_g[:, None], (1.0 - zz) * p, 0.0))
    col, anti = colour[:, 0], colour[:, 1]
    has_col = mask & (col > 0)
    has_anti = mask & (anti > 0)
    match = (col[:, None] == anti[None, :]) & has_col[:, None] & has_anti[None, :]
    # the first matching slot (as argmax), by an int32 min: XLA's CPU argmax, a reduction over
    # (value, index) pairs, cost more than the whole colour matching otherwise
    slots_p = jnp.arange(n_part, dtype=jnp.int32)
    first = jnp.min(jnp.where(match, slots_p[None, :], n_part), axis=1)
    matched = first < n_part
    partner = jnp.where(matched, first, 0)
    unmatched = jnp.any(has_col & ~matched) | jnp.any(has_anti & ~jnp.any(match, axis=0))
    cmask = has_col & matched
    cp_q = jnp.where(cmask[:, None], p_qend, 0.0)
    cp_qb = jnp.where(cmask[:, None], p_qbend[partner], 0.0)
    cf_q = jnp.where(cmask, q_flav, 0)
    cf_qb = jnp.where(cmask, qb_flav[partner], 0)
    extra = max_clusters - n_part
    if extra < 0:
        raise ValueError(f"form_clusters: max_clusters must be >= the parton capacity {n_part}, got {max_clusters}")
    cp_q = jnp.pad(cp_q, ((0, extra), (0, 0)))
    cp_qb = jnp.pad(cp_qb, ((0, extra), (0, 0)))
    cf_q = jnp.pad(cf_q, (0, extra)).astype(jnp.int32)
    cf_qb = jnp.pad(cf_qb, (0, extra)).astype(jnp.int32)
    cmask = jnp.pad(cmask, (0, extra))
    hist = {}
    if record:
        slots = jnp.arange(max_clusters, dtype=jnp.int32)
        hist = {
            "parton_p_q": jax.lax.stop_gradient(p_qend),
            "parton_p_qbar": jax.lax.stop_gradient(p_qbend),
            "parton_flavour": jnp.where(is_g, gflav, 0).astype(jnp.int32),
            "cluster_q": jnp.where(cmask, slots, -1),
            "cluster_qbar": jnp.where(cmask, jnp.pad(partner.astype(jnp.int32), (0, extra)), -1),
        }
    return (cp_q, cp_qb, cf_q, cf_qb, cmask, jnp.zeros((), bool), logp), unmatched, hist


def _fission_split(params: Params, cp_q, cp_qb, cf_q, cf_qb, cmask):
    """Cluster masses [..., K] and which clusters are above the fission threshold."""
    cmass = jnp.asarray(np.array((0.0, *CONSTITUENT_MASS)), dtype=cp_q.dtype)
    m = kin.mass(cp_q + cp_qb)
    return m, cmask & (m > jnp.asarray(params["cl_max"], cp_q.dtype) + cmass[cf_q] + cmass[cf_qb])


def _fission_one(params: Params, u, carry, k_sum: int | None = None):
    # One fission round of one event on its first W slots; u [W, 3] uniforms; sums over k_sum
    # slots (slot_sum), so that the log-probability does not depend on the working width.
    cp_q, cp_qb, cf_q, cf_qb, cmask, overflow, logp = carry
    cmass = jnp.asarray(np.array((0.0, *CONSTITUENT_MASS)), dtype=cp_q.dtype)
    logits = popped_flavour_logits(jnp.asarray(params["gamma_s"], cp_q.dtype))
    log_w = jax.nn.log_softmax(logits)
    m, split = _fission_split(params, cp_q, cp_qb, cf_q, cf_qb, cmask)
    f = sample_flavour(u[:, 2], logits)
    x, y = fission_fractions(u[:, 0], u[:, 1], m, cmass[cf_q], cmass[cf_qb], cmass[f])
    x, y = x[:, None], y[:, None]
    # The clusters are at the front of the slots (form_clusters): the k-th split appends its
    # second child after the last cluster, if there is room.
    target, placed = append_after_last(cmask, split)
    overflow = overflow | jnp.any(split & ~placed)
    logp = logp + slot_sum(jnp.where(placed, log_w[f - 1], 0.0), k_sum)
    new_q, new_qb = (1.0 - x) * cp_q, (1.0 - y) * cp_qb
    pl = placed[:, None]
    # Slot d ≥ n (n clusters before the round) receives the second child of the (d − n)-th
    # placed split in slot order (append_after_last): gathered from that split's slot, element-
    # wise, instead of a scatter (a serial loop on XLA's CPU backend).
    k = cmask.shape[0]
    rank = jnp.arange(k, dtype=jnp.int32) - jnp.sum(cmask, dtype=jnp.int32)
    src = jnp.take_along_axis(flagged_slots(placed, k), jnp.clip(rank, 0, k - 1), axis=0, mode="promise_in_bounds")
    child = (rank >= 0) & (src < k)
    src = jnp.minimum(src, k - 1)
    ch = child[:, None]
    cp_q = jnp.where(ch, new_q[src], jnp.where(pl, x * cp_q, cp_q))
    cp_qb = jnp.where(ch, new_qb[src], jnp.where(pl, y * cp_qb, cp_qb))
    cf_q = jnp.where(child, f[src], cf_q)
    cf_qb = jnp.where(child, cf_qb[src], jnp.where(placed, f, cf_qb))
    cmask = cmask | child
    out = (cp_q, cp_qb, cf_q.astype(jnp.int32), cf_qb.astype(jnp.int32), cmask, overflow, logp)
    return out, jnp.where(placed, target, -1).astype(jnp.int32)


def form_clusters(
    params: Params,
    key: Key,
    events: Events,
    *,
    max_clusters: int | None = None,
    n_fission_rounds: int = 8,
    record_history: bool = False,
    working_clusters: int | None = None,
) -> tuple[Clusters, dict[str, Array]]:
    """Colour-singlet clusters from showered partons (see the module docstring).

    Args:
      params: ``{"cl_max": GeV, "gamma_s": strange-pair weight}`` (0-d arrays).
      key: PRNG key (gluon-splitting fractions and flavours, fission).
      events: partons with ``colour`` set: pid ±1..±5 or 21, massless, LHE colour tags.
      max_clusters: static cluster capacity K (default as :func:`diffgen.hadronization.hadronize`).
      n_fission_rounds: static number of fission rounds.
      record_history: also return ``info["history"]`` (static): ``parton_p_q``,
        ``parton_p_qbar`` [N, P, 4] the quark and antiquark ends of every parton (a gluon's
        non-perturbative splitting g → q q̄; zero where absent), ``parton_flavour`` [N, P] int32
        the flavour 1..3 of a gluon's q q̄ pair (0 for quarks), ``cluster_q``/``cluster_qbar``
        [N, K] int32 the parton slots whose quark/antiquark end formed cluster k (−1 for
        clusters made by fission and padding), ``fission_target`` [N, R, K] int32 the slot of
        the second child when cluster k splits in fission round r (−1 otherwise; the first
        child keeps slot k).
      working_clusters: static K_w ≤ K (default K): the fission rounds run on the first K_w
        slots of every event; the few events whose clusters do not fit (more than K_w before
        fission, or a split that finds no free slot among them) are fissioned again from the
        start on all K slots, in the rows of :func:`on_active_rows`, and every event on all K
        when they are not few or the batch is too small for those rows
        (:data:`ACTIVE_ROW_MIN_EVENTS`). The result is the same for every K_w (flavours,
        masks, targets and flags; momenta and log-probabilities to rounding, as XLA contracts
        multiply-adds differently for another width); a K_w that holds the clusters of nearly
        every event saves the work on the empty slots.

    Returns:
      ``(clusters, info)`` with ``info = {"logp": [N] log-probability of the flavour choices,
      "overflow": [N] bool (a fission did not fit into K), "colour_unmatched": [N] bool,
      "fission_unfinished": [N] bool (a cluster is above the fission threshold after the last
      round)}``.
    """
    validate_partons(events)
    if not isinstance(n_fission_rounds, int) or n_fission_rounds < 0:
        raise ValueError(f"form_clusters: n_fission_rounds must be an int >= 0, got {n_fission_rounds!r}")
    if working_clusters is not None and (
        not isinstance(working_clusters, int) or isinstance(working_clusters, bool) or working_clusters < 1
    ):
        raise ValueError(f"form_clusters: working_clusters must be an int >= 1 or None, got {working_clusters!r}")
    k = max(events.capacity, DEFAULT_MAX_CLUSTERS) if max_clusters is None else int(max_clusters)
    k1, k2 = jax.random.split(key)
    n = events.n_events
    dtype = events.dtype
    u_form = uniform(k1, (n, events.capacity, 2), dtype)
    carry, unmatched, hist = jax.vmap(
        lambda a, p, pid, col, m: _form_one(params, a, p, pid, col, m, k, record_history)
    )(u_form, events.p, events.pid, events.colour, events.mask)
    # Clusters to the front of the slots, so that the fission rounds append without searching
    # for free slots.
    front = to_front(carry[4])
    carry = tuple(
        jnp.take_along_axis(x, front[..., None] if x.ndim == 3 else front, axis=1, mode="promise_in_bounds")
        if x.ndim > 1
        else x
        for x in carry
    )
    if record_history:
        hist.update(
            {
                name: jnp.take_along_axis(hist[name], front, axis=1, mode="promise_in_bounds")
                for name in ("cluster_q", "cluster_qbar")
            }
        )
    fission_shape = (n, n_fission_rounds, k, 3)
    split_fn = jax.vmap(lambda c: _fission_split(params, *c[:5])[1])
    round_fn = jax.vmap(lambda u, c: _fission_one(params, u, c, k_sum=k))
    row_sizes = active_row_capacities(n)
    events_idx = jnp.arange(n, dtype=jnp.int32)

    def draw(r, rows, width):
        # Element (event, round, slot, ·) of one draw of fission_shape, for the given events
        # and the first ``width`` slots: the same numbers whatever the working width.
        return uniform_block(k2, fission_shape, (0, r, 0, 0), (rows.shape[0], 1, width, 3), dtype, rows=rows)[:, 0]

    def rounds(carry, width, tiers=row_sizes):
        # Fission rounds of every event on its first ``width`` slots, at the batch level: a round
        # in which no cluster of the batch is above the threshold changes nothing, so it is
        # skipped (lax.switch). Returns the carry and the targets [N, R, width].
        none = jnp.full((n, width), -1, jnp.int32)

        def fission_round(carry, r):
            active = jnp.any(split_fn(carry), axis=-1)

            def skip(c, r):
                del r
                return c, none

            def few(size):
                def fn(c, r):
                    return on_active_rows(
                        lambda base, e: round_fn(draw(r, e, width), base[0]), (c, none), events_idx, active, size
                    )

                return fn

            branches = [skip, lambda c, r: round_fn(draw(r, events_idx, width), c)]
            index = jnp.any(active).astype(jnp.int32)
            if tiers:
                # A round in which few events still split runs on those events only, in the
                # smallest set of rows that holds them.
                branches += [few(s) for s in tiers]
                tier = active_rows_tier(active, tiers)
                index = jnp.where((index == 1) & (tier >= 0), 2 + tier, index)
            return jax.lax.switch(index, branches, carry, r)

        carry, fission = jax.lax.scan(fission_round, carry, jnp.arange(n_fission_rounds, dtype=jnp.int32))
        return carry, jnp.moveaxis(fission, 0, 1)

    def every_round(carry, rows):
        # All rounds of the given events on all K slots (a round without a split changes nothing).
        def body(c, r):
            return round_fn(draw(r, rows, k), c)

        carry, fission = jax.lax.scan(body, carry, jnp.arange(n_fission_rounds, dtype=jnp.int32))
        return carry, jnp.moveaxis(fission, 0, 1)

    kw = k if working_clusters is None else min(working_clusters, k)
    if kw < k and row_sizes:
        # Every event on its first K_w slots (the late rounds on the two largest sets of rows:
        # each set is one more copy of the round to compile, and the smallest gains little on
        # K_w slots); the few events whose clusters do not fit (a split found no free slot, or
        # more than K_w clusters before fission) again from the start on all K, in the smallest
        # set of rows; when they do not fit into it, every event on all K (whole-batch rounds).
        small, targets = rounds(tuple(x[:, :kw] if x.ndim > 1 else x for x in carry), kw, row_sizes[:2])
        base = (
            tuple(jnp.pad(x, ((0, 0), (0, k - kw)) + ((0, 0),) * (x.ndim - 2)) if x.ndim > 1 else x for x in small),
            jnp.pad(targets, ((0, 0), (0, 0), (0, k - kw)), constant_values=-1),
        )
        over = small[5] | jnp.any(carry[4][:, kw:], axis=-1)
        size = row_sizes[-1]

        def redo_few(c):
            return on_active_rows(lambda b, inp: every_round(inp[1], inp[0]), base, (events_idx, c), over, size)

        fits = active_rows_fit(over, size)
        carry, fission = jax.lax.cond(fits, redo_few, lambda c: rounds(c, k, ()), carry)
    else:
        carry, fission = rounds(carry, k)
    cp_q, cp_qb, f_q, f_qb, mask, overflow, logp = carry
    # Clusters still above the fission threshold after the last round decay as they are:
    # flagged, never silent (the fission of Herwig repeats until none is left).
    unfinished = jnp.any(split_fn(carry), axis=-1)
    clusters = Clusters(p_q=cp_q, p_qbar=cp_qb, flav_q=f_q, flav_qbar=f_qb, mask=mask)
    info = {"logp": logp, "overflow": overflow, "colour_unmatched": unmatched, "fission_unfinished": unfinished}
    if record_history:
        hist["fission_target"] = fission.reshape(n, n_fission_rounds, k)
        info["history"] = hist
    return clusters, info
