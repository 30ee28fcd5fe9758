"""Scale-out: shard batches across devices, stream sums over N events in chunks, run chunks at once.

Three tools; the first two compose:

* **Sharding** (:func:`event_mesh`, :func:`sample`, :func:`apply`, :func:`cross_section`):
  the event axis of every ``Events`` field is split across the devices of a
  :class:`jax.sharding.Mesh` with a :class:`~jax.sharding.NamedSharding`; XLA's SPMD
  partitioner runs each device on its slice. With ``jax_threefry_partitionable`` (the default
  since JAX 0.5) the random bits of an array depend on the element index, never on the
  device layout, so ``sample(source, params, key, n, mesh=m)`` is bit-for-bit the
  ``source.sample(params, key, n)`` of one device, whatever the number of devices.
  Reductions (cross sections, histograms) use a fixed blocked summation order
  (:func:`ordered_sum`) so they too are identical on 1 or several devices.
* **Streaming** (:func:`stream_sum`, :func:`stream_cross_section`, :func:`stream_histogram`,
  :func:`stream_events`): a sum over N events is computed as a ``lax.scan`` over
  ``N / chunk_size`` chunks; chunk ``i`` is ``source.sample(params, fold_in(key, i),
  chunk_size)``. The chunk body is wrapped in ``jax.checkpoint``, so reverse-mode
  gradients recompute each chunk instead of storing it: memory is that of one chunk, for
  the value and for its gradient, and 10⁹ events are a matter of time, not memory.
* **Concurrent chunks** (:func:`sample_chunks`): the chunks of the stream, each a call of
  one compiled program (:func:`chunk_program`), several calls at once on host threads and
  concatenated: on a CPU the cores stay busier than with one call of the whole batch.

All accept any :class:`~diffgen.core.Source`, including a whole :func:`~diffgen.core.chain`.
Multi-GPU and multi-host use (``jax.distributed.initialize``) is described in
``docs/scaling.md``.
"""

from __future__ import annotations

import collections
import functools
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from diffgen.core import Events, Layer, Source, is_traced, jit
from diffgen.kinematics import safe_sqrt
from diffgen.typing import Array, Key, Params, PyTree

__all__ = [
    "EVENT_AXIS",
    "apply",
    "chunk_program",
    "compiled_memory",
    "cross_section",
    "default_workers",
    "event_mesh",
    "event_sharding",
    "ordered_map",
    "ordered_sum",
    "sample",
    "sample_chunks",
    "shard_events",
    "stream_cross_section",
    "stream_events",
    "stream_histogram",
    "stream_sum",
]

#: Default name of the mesh axis the event axis is split over.
EVENT_AXIS = "events"
#: Default number of summation blocks of :func:`ordered_sum` (must be a multiple of the device count).
DEFAULT_BLOCKS = 8


# --------------------------------------------------------------------------- meshes


def event_mesh(devices: Sequence[jax.Device] | int | None = None, *, axis: str = EVENT_AXIS) -> Mesh:
    """A one-dimensional device mesh whose single axis carries the event index.

    Args:
      devices: the devices to use (a sequence), the number of leading ``jax.devices()`` to
        use (an int), or ``None`` for every device (on several hosts: every device of
        every process, after ``jax.distributed.initialize()``).
      axis: the mesh axis name.

    Returns:
      ``jax.sharding.Mesh`` of shape ``[n_devices]`` with axis ``axis``.
    """
    all_devices = jax.devices()
    if devices is None:
        chosen = list(all_devices)
    elif isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        if not 1 <= int(devices) <= len(all_devices):
            raise ValueError(
                f"event_mesh: devices must be in [1, {len(all_devices)}] (available devices), got {devices}"
            )
        chosen = list(all_devices[: int(devices)])
    else:
        chosen = list(devices)
        if not chosen:
            raise ValueError("event_mesh: devices must be a non-empty sequence of jax devices")
    if not isinstance(axis, str) or not axis:
        raise TypeError(f"event_mesh: axis must be a non-empty string, got {axis!r}")
    return Mesh(np.array(chosen, dtype=object), (axis,))


def event_sharding(mesh: Mesh, axis: str | None = None) -> NamedSharding:
    """The sharding that splits axis 0 (events) over ``axis`` of ``mesh`` and replicates the rest."""
    axis = _mesh_axis(mesh, axis)
    return NamedSharding(mesh, PartitionSpec(axis))


def _mesh_axis(mesh: Mesh, axis: str | None) -> str:
    if not isinstance(mesh, Mesh):
        raise TypeError(
            f"mesh must be a jax.sharding.Mesh (see diffgen.parallel.event_mesh), got {type(mesh).__name__}"
        )
    if axis is None:
        if len(mesh.axis_names) != 1:
            raise ValueError(f"axis: the mesh has axes {mesh.axis_names}; name the one that carries events")
        return mesh.axis_names[0]
    if axis not in mesh.axis_names:
        raise ValueError(f"axis: {axis!r} is not an axis of the mesh, which has {mesh.axis_names}")
    return axis


def _mesh_size(mesh: Mesh | None, axis: str | None) -> int:
    if mesh is None:
        return 1
    name = _mesh_axis(mesh, axis)
    return int(mesh.shape[name])


def _check_n(name: str, n: Any, multiple: int, why: str) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"{name} must be a Python int (static), got {type(n).__name__}")
    n = int(n)
    if n < 1:
        raise ValueError(f"{name} must be >= 1, got {n}")
    if n % multiple:
        raise ValueError(f"{name} must be a multiple of {multiple} ({why}), got {n}")
    return n


def _constrain(tree: PyTree, mesh: Mesh | None, axis: str | None) -> PyTree:
    """Shard axis 0 of every array leaf of ``tree`` over ``mesh`` (a no-op without a mesh)."""
    if mesh is None:
        return tree
    return jax.lax.with_sharding_constraint(tree, event_sharding(mesh, axis))


# --------------------------------------------------------------------------- sharding


def shard_events(events: Events, mesh: Mesh, *, axis: str | None = None) -> Events:
    """Place a batch of events on ``mesh``, split along the event axis.

    Args:
      events: ``Events`` with N a multiple of the mesh size.
      mesh: device mesh (:func:`event_mesh`).
      axis: mesh axis carrying events (default: the mesh's only axis).

    Returns:
      the same ``Events`` with every field sharded along axis 0.
    """
    _check_n("events.n_events", events.n_events, _mesh_size(mesh, axis), "events are split evenly across devices")
    return jax.device_put(events, event_sharding(mesh, axis))


@functools.lru_cache(maxsize=128)
def _sample_fn(source: Source, n: int, mesh: Mesh | None, axis: str | None) -> Callable[[Params, Key], Events]:
    def fn(params: Params, key: Key) -> Events:
        return _constrain(source.sample(params, key, n), mesh, axis)

    return jit(fn)


def sample(
    source: Source, params: Params, key: Key, n: int, *, mesh: Mesh | None = None, axis: str | None = None
) -> Events:
    """``source.sample(params, key, n)`` compiled and, with a mesh, sharded across devices.

    The events are bit-for-bit those of one device for the same key (partitionable
    threefry: random bits depend on the event index only). Works inside ``jit``/``grad``.

    Args:
      source: any ``Source`` (a process or a whole ``chain``).
      params: its parameter pytree.
      key: PRNG key.
      n: number of events (static); a multiple of the mesh size.
      mesh: device mesh, or ``None`` for the default device.
      axis: mesh axis carrying events (default: the mesh's only axis).

    Returns:
      ``Events`` with N = n, every field sharded along the event axis.
    """
    _check_source(source)
    n = _check_n("n", n, _mesh_size(mesh, axis), "events are split evenly across devices")
    return _sample_fn(source, n, mesh, axis)(params, key)


@functools.lru_cache(maxsize=128)
def _apply_fn(layer: Layer, mesh: Mesh | None, axis: str | None) -> Callable[[Params, Key, Events], Events]:
    def fn(params: Params, key: Key, events: Events) -> Events:
        return _constrain(layer.apply(params, key, _constrain(events, mesh, axis)), mesh, axis)

    return jit(fn)


def apply(
    layer: Layer, params: Params, key: Key, events: Events, *, mesh: Mesh | None = None, axis: str | None = None
) -> Events:
    """``layer.apply(params, key, events)`` compiled and, with a mesh, sharded along events.

    Args:
      layer: any ``Layer``.
      params: its parameter pytree.
      key: PRNG key.
      events: input ``Events``; N a multiple of the mesh size.
      mesh: device mesh, or ``None``.
      axis: mesh axis carrying events.

    Returns:
      the output ``Events``, sharded along the event axis.
    """
    if not isinstance(layer, Layer):
        raise TypeError(f"layer must be a diffgen Layer, got {type(layer).__name__}")
    _check_n("events.n_events", events.n_events, _mesh_size(mesh, axis), "events are split evenly across devices")
    return _apply_fn(layer, mesh, axis)(params, key, events)


def ordered_sum(values: PyTree, *, blocks: int = DEFAULT_BLOCKS) -> PyTree:
    """Sum over axis 0 in a fixed order that does not depend on the device layout.

    Axis 0 is cut into ``blocks`` equal blocks; each block is summed pairwise (repeated
    halving with elementwise adds) on the device that holds it, and the block sums are
    added left to right. With the event axis sharded over
    D devices (D dividing ``blocks``) every device sums whole blocks, so the result is the
    same bits as on one device, unlike a plain ``jnp.sum`` whose cross-device
    (all-reduce) order depends on D.

    Args:
      values: pytree of arrays with a common leading axis N (a multiple of ``blocks``).
      blocks: number of blocks (static).

    Returns:
      pytree of the sums, each of shape ``x.shape[1:]``.
    """
    leaves = jax.tree.leaves(values)
    if not leaves:
        return values
    n = leaves[0].shape[0] if leaves[0].ndim else 0
    _check_n("blocks", blocks, 1, "")
    _check_n("ordered_sum: leading axis N", n, blocks, f"blocks = {blocks} equal summation blocks")

    def one(x: Array) -> Array:
        if x.shape[0] != n:
            raise ValueError(f"ordered_sum: every leaf needs leading axis {n}, got shape {x.shape}")
        partial = _pairwise_sum(x.reshape(blocks, n // blocks, *x.shape[1:]))
        total = partial[0]
        for b in range(1, blocks):
            total = total + partial[b]
        return total

    return jax.tree.map(one, values)


def _pairwise_sum(x: Array) -> Array:
    """Sum over axis 1 by repeated halving with elementwise adds.

    XLA lowers a float ``reduce`` with shape- and layout-dependent tiling (its CPU backend
    rewrites long reductions into padded reduce-windows), so a device holding 2 rows may
    add in another order than one holding 8. Elementwise adds of fixed pairs are exact
    IEEE operations wherever they run, hence layout-independent; pairwise summation is
    also more accurate than a running sum (error O(log L) ulp).
    """
    while x.shape[1] > 1:
        length = x.shape[1]
        if length % 2:
            x = jnp.concatenate([x, jnp.zeros_like(x[:, :1])], axis=1)
            length += 1
        x = x[:, : length // 2] + x[:, length // 2 :]
    return x[:, 0]


def _check_blocks(blocks: int, mesh: Mesh | None, axis: str | None) -> int:
    blocks = _check_n("blocks", blocks, 1, "")
    d = _mesh_size(mesh, axis)
    if blocks % d:
        raise ValueError(
            f"blocks must be a multiple of the number of devices {d} (whole blocks per device), got {blocks}"
        )
    return blocks


def _moments(weight: Array, blocks: int) -> tuple[Array, Array]:
    """(Σw, Σw²) over events, in the fixed blocked order."""
    return ordered_sum((weight, weight * weight), blocks=blocks)


def _sigma_and_error(sum_w: Array, sum_w2: Array, n: int) -> tuple[Array, Array]:
    # Standard error of the mean weight: sqrt((<w²> - <w>²) / (n - 1)).
    mean = sum_w / n
    var = jnp.maximum(sum_w2 / n - mean * mean, 0.0)
    return mean, safe_sqrt(var / max(n - 1, 1))


def cross_section(
    source: Source,
    params: Params,
    key: Key,
    n: int,
    *,
    mesh: Mesh | None = None,
    axis: str | None = None,
    blocks: int = DEFAULT_BLOCKS,
) -> tuple[Array, Array]:
    """Monte Carlo cross section ⟨w⟩ and its standard error, optionally sharded.

    Differentiable (through the weights and the momenta). For a given key the result is
    identical on 1 or several devices.

    Args:
      source: a ``Source`` whose weights are in pb.
      params: its parameters.
      key: PRNG key.
      n: number of events (static), a multiple of ``blocks``.
      mesh: device mesh, or ``None``.
      axis: mesh axis carrying events.
      blocks: summation blocks (:func:`ordered_sum`), a multiple of the device count.

    Returns:
      ``(sigma_pb, error_pb)``, 0-d arrays of the weight dtype.
    """
    _check_source(source)
    blocks = _check_blocks(blocks, mesh, axis)
    n = _check_n("n", n, blocks, f"blocks = {blocks} equal summation blocks")
    events = _sample_fn(source, n, mesh, axis)(params, key)
    return _sigma_and_error(*_moments(events.weight, blocks), n)


def compiled_memory(fn: Callable[..., Any], *args: Any) -> dict[str, int]:
    """Memory XLA allocates for ``jax.jit(fn)(*args)``, from the compiled program (not RSS).

    Compiles without running. ``temp`` is the scratch memory (intermediates), ``peak`` the
    sum of arguments, outputs and temporaries, a bound on the live memory of one call.

    Returns:
      dict with ``argument``, ``output``, ``temp``, ``peak`` in bytes.
    """
    stats = jax.jit(fn).lower(*args).compile().memory_analysis()
    if stats is None:  # some backends do not report
        return {"argument": 0, "output": 0, "temp": 0, "peak": 0}
    arg = int(stats.argument_size_in_bytes)
    out = int(stats.output_size_in_bytes)
    temp = int(stats.temp_size_in_bytes)
    return {"argument": arg, "output": out, "temp": temp, "peak": arg + out + temp}


# --------------------------------------------------------------------------- streaming


def _check_source(source: Source) -> None:
    if not isinstance(source, Source):
        raise TypeError(f"source must be a diffgen Source (a process or a chain), got {type(source).__name__}")


def _check_stream(n: int, chunk_size: int, blocks: int, mesh: Mesh | None, axis: str | None) -> tuple[int, int, int]:
    blocks = _check_blocks(blocks, mesh, axis)
    chunk_size = _check_n("chunk_size", chunk_size, blocks, f"blocks = {blocks} equal summation blocks")
    n = _check_n("n", n, chunk_size, "a whole number of chunks")
    return n, chunk_size, blocks


def _chunk_events(source: Source, params: Params, key: Key, index: Array, chunk_size: int) -> Events:
    return source.sample(params, jax.random.fold_in(key, index), chunk_size)


def stream_events(source: Source, params: Params, key: Key, n: int, *, chunk_size: int) -> Events:
    """All N events a stream over ``chunk_size`` chunks sees, materialised at once.

    Chunk ``i`` (``i = 0 … n/chunk_size - 1``) is ``source.sample(params, fold_in(key, i),
    chunk_size)``; the chunks are concatenated in order. For checks and small N only: the
    point of :func:`stream_sum` is to never hold this.

    Returns:
      ``Events`` with N = n.
    """
    _check_source(source)
    n, chunk_size, _ = _check_stream(n, chunk_size, 1, None, None)
    chunks = jax.vmap(lambda i: _chunk_events(source, params, key, i, chunk_size))(jnp.arange(n // chunk_size))
    return jax.tree.map(lambda x: x.reshape(n, *x.shape[2:]), chunks)


@functools.lru_cache(maxsize=128)
def chunk_program(source: Source, chunk_size: int) -> Callable[[Params, Key, Array], Events]:
    """The compiled program :func:`sample_chunks` calls for every chunk (one per source and size).

    Args:
      source: any ``Source``.
      chunk_size: events per chunk (static).

    Returns:
      ``fn(params, key, index) -> Events`` with N = chunk_size: chunk ``index`` (int32 scalar)
      of the stream, ``source.sample(params, fold_in(key, index), chunk_size)``, jitted with
      :func:`diffgen.jit` (its ``lower`` gives the compiled program, e.g. for its memory).
    """
    _check_source(source)
    chunk_size = _check_n("chunk_size", chunk_size, 1, "")
    return jit(lambda params, key, index: _chunk_events(source, params, key, index, chunk_size))


def default_workers() -> int:
    """The CPU cores this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def ordered_map(fn: Callable[[int], Any], count: int, *, workers: int) -> Iterator[Any]:
    """``fn(i)`` for ``i = 0 … count − 1``, computed on up to ``workers`` host threads at once, yielded in order.

    At most ``workers`` results are computed ahead of the one handed out, so a consumer that
    writes each result (``diffgen generate``) holds at most ``workers + 1`` of them. With one
    worker, or one item, everything runs in the calling thread. Closing the iterator early
    (an exception in the consumer) drops the calls not yet started; running ones finish.

    Args:
      fn: the work of item i; it should wait for its arrays (``jax.block_until_ready``), so
        that the computation runs on its thread.
      count: number of items.
      workers: threads (int ≥ 1).

    Returns:
      an iterator over the ``count`` results in item order.
    """
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"workers must be an int >= 1, got {workers!r}")
    if workers == 1 or count <= 1:
        yield from (fn(i) for i in range(count))
        return
    pool = ThreadPoolExecutor(max_workers=min(int(workers), count))
    try:
        pending = collections.deque(pool.submit(fn, i) for i in range(min(int(workers), count)))
        following = len(pending)
        while pending:
            result = pending.popleft().result()
            if following < count:
                pending.append(pool.submit(fn, following))
                following += 1
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def sample_chunks(
    source: Source, params: Params, key: Key, n: int, *, chunk_size: int, workers: int | None = None
) -> Events:
    """The events of :func:`stream_events`, each chunk a compiled call, ``workers`` calls at a time.

    Chunk ``i`` is ``source.sample(params, fold_in(key, i), chunk_size)``, the chunk of the
    streaming functions; the chunks are computed by one compiled program, called from
    ``workers`` host threads at once, and concatenated in chunk order. On a CPU, one call of a
    simulation does not keep every core of XLA's thread pool busy (many of its loop steps are
    too small to split across threads), so independent calls running side by side use the
    cores more fully than one call of the whole batch: the e⁺e⁻ → hadrons chain generates
    more events per second this way (``docs/performance.md``). The events are those of the
    chunks called one after the other, bit for bit, whatever ``workers`` is; they differ from
    ``source.sample(params, key, n)`` (another key per chunk) and agree with
    :func:`stream_events` to rounding (which ``vmap``s the chunks into one program).

    A host-level driver: it cannot be traced (``jit``, ``grad``, ``vmap``); use
    :func:`stream_events` or ``source.sample`` inside transformations, and :func:`stream_sum`
    for gradients.

    Args:
      source: any ``Source`` (a process or a whole ``chain``).
      params: its parameters (concrete arrays).
      key: PRNG key (concrete).
      n: total number of events (static), a multiple of ``chunk_size``.
      chunk_size: events per chunk and per compiled call (static).
      workers: chunks computed at once (host threads); default :func:`default_workers`.

    Returns:
      ``Events`` with N = n, chunk i in rows ``i·chunk_size … (i + 1)·chunk_size − 1``.
    """
    _check_source(source)
    if any(is_traced(x) for x in jax.tree.leaves((params, key))):
        raise TypeError(
            "sample_chunks runs compiled chunks on host threads and cannot be traced by jit, grad or vmap; "
            "inside a transformation use stream_events (same chunks) or source.sample"
        )
    n, chunk_size, _ = _check_stream(n, chunk_size, 1, None, None)
    workers = default_workers() if workers is None else workers
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"sample_chunks: workers must be an int >= 1 or None, got {workers!r}")
    n_chunks = n // chunk_size
    # Traced and compiled here, once (JAX caches it for later calls): in the caller's thread,
    # so under the caller's configuration (x64 and other settings can be thread-local
    # context managers), and no two threads compile the same program.
    compiled = chunk_program(source, chunk_size).lower(params, key, jnp.asarray(0, jnp.int32)).compile()

    def one(i: int) -> Events:
        # Waiting inside the thread keeps the call on it; dispatching every chunk from one
        # thread would queue the calls one after the other.
        return jax.block_until_ready(compiled(params, key, jnp.asarray(i, jnp.int32)))

    chunks = list(ordered_map(one, n_chunks, workers=workers))
    return chunks[0] if n_chunks == 1 else Events.concatenate(chunks)


def stream_sum(
    fn: Callable[[Events], PyTree],
    source: Source,
    params: Params,
    key: Key,
    n: int,
    *,
    chunk_size: int,
    mesh: Mesh | None = None,
    axis: str | None = None,
    blocks: int = DEFAULT_BLOCKS,
    checkpoint: bool = True,
) -> PyTree:
    """Σ over N events of per-event values ``fn(events)``, in chunks of constant memory.

    ``lax.scan`` over chunk indices; chunk ``i`` is ``source.sample(params, fold_in(key, i),
    chunk_size)`` (the events :func:`stream_events` materialises); its values are summed
    with :func:`ordered_sum` and added to the running total in chunk order. With
    ``checkpoint`` the chunk is recomputed in the backward pass (``jax.checkpoint``), so the
    gradient also needs the memory of one chunk only. With a mesh each chunk is sharded
    across devices, with results identical to one device.

    Args:
      fn: ``Events [chunk_size] -> pytree`` of per-event arrays with leading axis
        ``chunk_size`` (e.g. ``lambda ev: ev.weight``). Close over anything it needs
        (it may be traced, e.g. a parameter being differentiated).
      source: any ``Source`` (a process or a whole ``chain``).
      params: its parameters; the result is differentiable with respect to them.
      key: PRNG key.
      n: total number of events (static), a multiple of ``chunk_size``.
      chunk_size: events per chunk (static), a multiple of ``blocks``; sets the memory.
      mesh: device mesh, or ``None``.
      axis: mesh axis carrying events.
      blocks: summation blocks per chunk, a multiple of the device count.
      checkpoint: recompute chunks in the backward pass (constant-memory gradients).

    Returns:
      pytree like ``fn``'s output with the event axis summed away.
    """
    _check_source(source)
    n, chunk_size, blocks = _check_stream(n, chunk_size, blocks, mesh, axis)

    def chunk_sum(params: Params, index: Array) -> PyTree:
        events = _constrain(_chunk_events(source, params, key, index, chunk_size), mesh, axis)
        return ordered_sum(_constrain(fn(events), mesh, axis), blocks=blocks)

    if checkpoint:
        chunk_sum = jax.checkpoint(chunk_sum)

    def step(total: PyTree, index: Array) -> tuple[PyTree, None]:
        return jax.tree.map(jnp.add, total, chunk_sum(params, index)), None

    shapes = jax.eval_shape(chunk_sum, params, jnp.asarray(0, jnp.int32))
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    total, _ = jax.lax.scan(step, zeros, jnp.arange(n // chunk_size, dtype=jnp.int32))
    return total


def stream_cross_section(
    source: Source,
    params: Params,
    key: Key,
    n: int,
    *,
    chunk_size: int,
    mesh: Mesh | None = None,
    axis: str | None = None,
    blocks: int = DEFAULT_BLOCKS,
) -> tuple[Array, Array]:
    """Cross section ⟨w⟩ and standard error over N events streamed in chunks (:func:`stream_sum`).

    Args:
      source: the ``Source`` (or chain) whose event weights (pb) are averaged.
      params: its parameter pytree.
      key: PRNG key; chunk ``i`` uses ``fold_in(key, i)``.
      n: total number of events (static), a multiple of ``chunk_size``.
      chunk_size: events per chunk (static); memory is that of one chunk.
      mesh: optional device mesh to shard each chunk over.
      axis: mesh axis name of the event axis (default ``"events"``).
      blocks: summation blocks of :func:`ordered_sum` (a multiple of the device count).

    Returns:
      ``(sigma_pb, error_pb)``, differentiable with constant memory.
    """
    sums = stream_sum(
        lambda ev: (ev.weight, ev.weight * ev.weight),
        source,
        params,
        key,
        n,
        chunk_size=chunk_size,
        mesh=mesh,
        axis=axis,
        blocks=blocks,
    )
    return _sigma_and_error(*sums, n)


def stream_histogram(
    observable: Callable[[Events], Array],
    edges: Any,
    source: Source,
    params: Params,
    key: Key,
    n: int,
    *,
    chunk_size: int,
    mesh: Mesh | None = None,
    axis: str | None = None,
    blocks: int = DEFAULT_BLOCKS,
) -> dict[str, Array]:
    """Weighted histogram of a per-event observable over N events streamed in chunks.

    Bins are ``[edges[k], edges[k+1])``; values outside ``[edges[0], edges[-1])`` are not
    counted. The bin contents are differentiable through the weights (gradient mode 2 of
    DESIGN.md §4); for gradients through the observable's value use a soft histogram from
    ``diffgen.inference`` inside :func:`stream_sum`.

    Args:
      observable: ``Events -> [chunk_size]`` per-event values.
      edges: [B+1] increasing bin edges (concrete).
      source, params, key, n, chunk_size, mesh, axis, blocks: as for :func:`stream_sum`.

    Returns:
      ``{"sum_w": [B], "sum_w2": [B], "count": [B] int32}``: Σw (pb·N, divide by N for a
      cross section per bin), Σw² (for the error ``sqrt(sum_w2)``) and the raw event counts.
    """
    edges_np = np.asarray(edges)
    if edges_np.ndim != 1 or edges_np.shape[0] < 2:
        raise ValueError(f"edges must be a 1-d array of at least 2 bin edges, got shape {edges_np.shape}")
    if not np.all(np.diff(edges_np) > 0):
        raise ValueError("edges must be strictly increasing")
    n_bins = edges_np.shape[0] - 1

    def per_event(events: Events) -> dict[str, Array]:
        x = observable(events)
        if x.shape != (events.n_events,):
            raise ValueError(f"observable must return one value per event, shape [{events.n_events}], got {x.shape}")
        e = jnp.asarray(edges_np, dtype=x.dtype)
        idx = jnp.searchsorted(e, x, side="right").astype(jnp.int32) - 1
        inside = (idx >= 0) & (idx < n_bins)
        onehot = (idx[:, None] == jnp.arange(n_bins, dtype=jnp.int32)[None, :]) & inside[:, None]
        w = events.weight[:, None]
        zero = jnp.zeros((), events.weight.dtype)
        return {
            "sum_w": jnp.where(onehot, w, zero),
            "sum_w2": jnp.where(onehot, w * w, zero),
            "count": onehot.astype(jnp.int32),
        }

    return stream_sum(per_event, source, params, key, n, chunk_size=chunk_size, mesh=mesh, axis=axis, blocks=blocks)
