"""The data type (``Events``) and the layer contract (``Source``, ``Layer``, ``chain``).

See DESIGN.md §2-3. ``Events`` is a frozen dataclass registered as a pytree, so a batch
of events passes through ``jit``, ``vmap``, ``scan`` and ``shard_map`` unchanged. Layers
are pairs of pure functions with explicit parameters and explicit PRNG keys.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diffgen.typing import Array, Key, Params

__all__ = ["COMPILER_OPTIONS", "Events", "Layer", "Source", "chain", "is_traced", "jit", "stage_key"]

#: XLA options under which :func:`jit` compiles. ``xla_cpu_copy_insertion_use_region_analysis``
#: lets XLA's CPU copy insertion analyse each branch of a ``cond`` and the body of a
#: ``while`` on its own, so it drops copies of loop-carried buffers that the whole-program
#: analysis keeps; the shower's and the hadronization's loops carry large per-slot arrays.
#: The events are the same bit for bit (tests/test_core.py); the speed of the e⁺e⁻ → hadrons
#: chain is in docs/performance.md (``benchmarks.compare_revisions``). Other backends ignore it.
COMPILER_OPTIONS: dict[str, Any] = {"xla_cpu_copy_insertion_use_region_analysis": True}


def is_traced(x: Any) -> bool:
    """True if ``x`` is an abstract value inside a JAX transformation (``jit``, ``grad`` …)."""
    return isinstance(x, jax.core.Tracer)


def jit(fun: Callable[..., Any], **kwargs: Any) -> Callable[..., Any]:
    """``jax.jit(fun, **kwargs)``, compiled with :data:`COMPILER_OPTIONS` when it is the outermost jit.

    What diffgen's own programs (the CLI, :mod:`diffgen.parallel`, the benchmarks) use to
    compile a simulation: the same numbers as ``jax.jit``, faster on CPU. JAX accepts
    compiler options only on the outermost ``jit``; called inside another transformation
    (``jit``, ``grad``, ``vmap`` …) the function is the plain ``jax.jit(fun, **kwargs)``,
    and the outer program's options apply.

    Args:
      fun: the function to compile.
      **kwargs: any argument of ``jax.jit``; ``compiler_options`` are merged over
        :data:`COMPILER_OPTIONS` (a key given here wins).

    Returns:
      The jitted function; its ``lower`` (ahead-of-time compilation) uses the options.
    """
    options = {**COMPILER_OPTIONS, **(kwargs.pop("compiler_options", None) or {})}
    outermost = jax.jit(fun, compiler_options=options, **kwargs)
    nested = jax.jit(fun, **kwargs)

    @functools.wraps(fun)
    def call(*args: Any, **kw: Any) -> Any:
        if any(is_traced(x) for x in jax.tree.leaves((args, kw))):
            return nested(*args, **kw)
        try:
            return outermost(*args, **kw)
        except ValueError as err:
            # Inside another jit whose arguments did not reach this call (constants only).
            if "compiler_options" not in str(err):
                raise
            return nested(*args, **kw)

    call.lower = outermost.lower  # type: ignore[attr-defined]
    return call


def _is_concrete(x: Any) -> bool:
    return isinstance(x, (np.ndarray, np.generic)) or (isinstance(x, jax.Array) and not is_traced(x))


def _shape_str(shape: Sequence[Any]) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


@dataclasses.dataclass(frozen=True, eq=False)
class Events:
    """A batch of N events, each padded to a fixed capacity of P particles.

    Fields (DESIGN.md §2):

    ==========  ==================  =====================================================
    ``p``       float [N, P, 4]     four-momenta (E, px, py, pz) in GeV
    ``weight``  float [N]           event weight in pb (may be negative); same dtype as p
    ``mask``    bool  [N, P]        True for a real particle, False for padding
    ``pid``     int32 [N, P]        PDG id, 0 for padding
    ``colour``  int32 [N, P, 2]     optional (colour, anti-colour) line tags, LHE
                                    convention (tags ≥ 501, 0 for none); ``None`` if absent
    ``extra``   dict of arrays      optional named per-event arrays with leading axis N
                                    (e.g. log-probabilities of a layer's discrete choices,
                                    overflow flags, alternative weights)
    ==========  ==================  =====================================================

    Constructing an ``Events`` from user data checks shapes and dtypes and, for concrete
    (non-traced) arrays, that momenta and weights are finite; the error names the field and
    the expected shape. Inside ``jit``/``vmap`` only the static shape and dtype checks run,
    and pytree unflattening (what JAX does to outputs) skips validation altogether. NumPy
    inputs are converted to JAX arrays; dtypes are never changed silently (use
    :meth:`from_numpy` for casting).
    """

    p: Array
    weight: Array
    mask: Array
    pid: Array
    colour: Array | None = None
    extra: Mapping[str, Array] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("p", "weight", "mask", "pid", "colour"):
            value = getattr(self, name)
            if isinstance(value, (np.ndarray, np.generic, list, tuple)):
                object.__setattr__(self, name, jnp.asarray(value))
        if not isinstance(self.extra, Mapping):
            raise TypeError(f"Events.extra must be a mapping of name -> array, got {type(self.extra).__name__}")
        extra = {}
        for key, value in self.extra.items():
            if not isinstance(key, str):
                raise TypeError(f"Events.extra keys must be strings, got {key!r}")
            extra[key] = jnp.asarray(value) if isinstance(value, (np.ndarray, np.generic, list, tuple)) else value
        object.__setattr__(self, "extra", extra)
        _validate(self)

    # ------------------------------------------------------------------ shape helpers

    @property
    def n_events(self) -> int:
        """Number of events N (static)."""
        return self.p.shape[0]

    @property
    def capacity(self) -> int:
        """Particle capacity P per event (static)."""
        return self.p.shape[1]

    @property
    def dtype(self) -> np.dtype:
        """Floating dtype of momenta and weights."""
        return self.p.dtype

    def __len__(self) -> int:
        return self.n_events

    def replace(self, **changes: Any) -> Events:
        """A copy with the given fields replaced (validated like a new ``Events``)."""
        return dataclasses.replace(self, **changes)

    def with_extra(self, **arrays: Array) -> Events:
        """A copy with named per-event arrays added to (or replaced in) ``extra``."""
        return self.replace(extra={**self.extra, **arrays})

    def _map_events(self, fn: Callable[[Array], Array]) -> Events:
        """Apply ``fn`` to every field along the event axis, skipping validation."""
        return jax.tree.map(fn, self)

    def take(self, indices: Any) -> Events:
        """Select events by integer indices (or a boolean mask outside ``jit``).

        Args:
          indices: [K] int (or [N] bool) array of event indices.

        Returns:
          ``Events`` with K events.
        """
        indices = jnp.asarray(indices)
        if indices.dtype == jnp.bool_:
            if is_traced(indices):
                raise TypeError("Events.take with a boolean mask needs concrete values; use integer indices under jit")
            indices = jnp.nonzero(indices)[0]
        return self._map_events(lambda x: jnp.take(x, indices, axis=0))

    def __getitem__(self, index: Any) -> Events:
        """Slice along the event axis; an integer keeps the axis (returns one event)."""
        if isinstance(index, (int, np.integer)):
            n = self.n_events
            if not -n <= index < n:
                raise IndexError(f"event index {index} out of range for {n} events")
            index = slice(index % n, index % n + 1)
        if isinstance(index, slice):
            return self._map_events(lambda x: x[index])
        return self.take(index)

    def pad_to(self, capacity: int) -> Events:
        """Raise the particle capacity to ``capacity`` by appending padding slots.

        Args:
          capacity: new P, at least the current capacity (static).

        Returns:
          ``Events`` with ``p`` [N, capacity, 4] etc.; padding is zero momentum, pid 0,
          mask False, colour 0. ``extra`` arrays are left as they are: a layer that keeps
          per-particle bookkeeping of shape [N, P, …] in ``extra`` pads it itself (an [N, R]
          array cannot be told apart from a per-particle one by its shape).
        """
        extra_slots = int(capacity) - self.capacity
        if extra_slots < 0:
            raise ValueError(f"pad_to: capacity must be >= the current capacity {self.capacity}, got {capacity}")
        if extra_slots == 0:
            return self

        def pad(x: Array) -> Array:
            widths = [(0, 0)] * x.ndim
            widths[1] = (0, extra_slots)
            return jnp.pad(x, widths)

        return dataclasses.replace(
            self,
            p=pad(self.p),
            mask=pad(self.mask),
            pid=pad(self.pid),
            colour=None if self.colour is None else pad(self.colour),
        )

    # ------------------------------------------------------------------ physics helpers

    def momentum_sum(self) -> Array:
        """Sum of the real particles' four-momenta per event: [N, 4] GeV."""
        return jnp.sum(jnp.where(self.mask[..., None], self.p, 0.0), axis=1)

    def multiplicity(self) -> Array:
        """Number of real particles per event: [N] int32."""
        return jnp.sum(self.mask, axis=1, dtype=jnp.int32)

    # ------------------------------------------------------------------ conversion

    @staticmethod
    def concatenate(events: Sequence[Events]) -> Events:
        """Concatenate batches along the event axis, padding to the largest capacity.

        Args:
          events: non-empty sequence of ``Events`` with the same dtype, the same ``extra``
            keys and either all or none carrying ``colour``.

        Returns:
          ``Events`` with sum(N_i) events and capacity max(P_i).
        """
        events = list(events)
        if not events:
            raise ValueError("Events.concatenate needs at least one batch, got an empty sequence")
        capacity = max(e.capacity for e in events)
        dtypes = {np.dtype(e.dtype) for e in events}
        if len(dtypes) > 1:
            raise ValueError(f"Events.concatenate: all batches need one dtype, got {sorted(map(str, dtypes))}")
        if len({e.colour is None for e in events}) > 1:
            raise ValueError("Events.concatenate: either every batch has colour or none has")
        keys = {tuple(sorted(e.extra)) for e in events}
        if len(keys) > 1:
            raise ValueError(f"Events.concatenate: extra keys differ between batches: {sorted(keys)}")
        padded = [e.pad_to(capacity) for e in events]
        return jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=0), *padded)

    def to_numpy(self) -> dict[str, np.ndarray]:
        """Host copy as a flat dict of NumPy arrays.

        Returns:
          ``{"p", "weight", "mask", "pid"}`` plus ``"colour"`` if present and
          ``"extra/<name>"`` for each extra array.
        """
        out = {name: np.asarray(getattr(self, name)) for name in ("p", "weight", "mask", "pid")}
        if self.colour is not None:
            out["colour"] = np.asarray(self.colour)
        for key, value in self.extra.items():
            out[f"extra/{key}"] = np.asarray(value)
        return out

    @classmethod
    def from_numpy(cls, data: Mapping[str, Any], dtype: Any = None) -> Events:
        """Build ``Events`` from a dict like the one :meth:`to_numpy` returns.

        Integer ``pid``/``colour`` are cast to int32 (values must fit), ``mask`` to bool
        (values must be 0/1), and ``p``/``weight`` to ``dtype`` (default: ``p``'s own
        floating dtype). Missing ``weight`` defaults to ones, missing ``mask`` to
        ``pid != 0``.

        Args:
          data: mapping with at least ``"p"`` [N, P, 4] and ``"pid"`` [N, P].
          dtype: floating dtype for momenta and weights.

        Returns:
          validated ``Events``.
        """
        missing = {"p", "pid"} - set(data)
        if missing:
            raise ValueError(f"Events.from_numpy: missing required field(s) {sorted(missing)}")
        p = np.asarray(data["p"])
        if dtype is None:
            dtype = p.dtype if np.issubdtype(p.dtype, np.floating) else jnp.result_type(float)
        p = p.astype(dtype)
        pid = _cast_int32("pid", data["pid"])
        weight = np.asarray(data["weight"], dtype=dtype) if "weight" in data else np.ones(p.shape[:1], dtype)
        if "mask" in data:
            mask_raw = np.asarray(data["mask"])
            if mask_raw.dtype != np.bool_:
                if not np.isin(mask_raw, (0, 1)).all():
                    raise ValueError("Events.from_numpy: mask must be boolean or 0/1 integers")
                mask_raw = mask_raw.astype(bool)
            mask = mask_raw
        else:
            mask = pid != 0
        colour = _cast_int32("colour", data["colour"]) if "colour" in data else None
        extra = {k[len("extra/") :]: np.asarray(v) for k, v in data.items() if k.startswith("extra/")}
        return cls(p=p, weight=weight, mask=mask, pid=pid, colour=colour, extra=extra)


def _cast_int32(name: str, value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"Events.from_numpy: {name} must be integer, got dtype {arr.dtype}")
    info = np.iinfo(np.int32)
    if arr.size and (arr.min() < info.min or arr.max() > info.max):
        raise ValueError(f"Events.from_numpy: {name} values do not fit in int32")
    return arr.astype(np.int32)


def _check(condition: bool, field: str, expected: str, got: str) -> None:
    if not condition:
        raise ValueError(f"Events.{field}: expected {expected}, got {got}")


def _validate(ev: Events) -> None:
    """Shape/dtype checks (always) and finiteness checks (concrete arrays only)."""
    for name in ("p", "weight", "mask", "pid"):
        if not hasattr(getattr(ev, name), "shape"):
            raise TypeError(f"Events.{name}: expected an array, got {type(getattr(ev, name)).__name__}")
    p = ev.p
    _check(p.ndim == 3 and p.shape[-1] == 4, "p", "shape [N, P, 4] (E, px, py, pz)", _shape_str(p.shape))
    n, cap = p.shape[0], p.shape[1]
    _check(jnp.issubdtype(p.dtype, jnp.floating), "p", "a floating dtype", str(p.dtype))
    _check(ev.weight.shape == (n,), "weight", f"shape [N] = [{n}]", _shape_str(ev.weight.shape))
    _check(ev.weight.dtype == p.dtype, "weight", f"dtype {p.dtype} (that of p)", str(ev.weight.dtype))
    _check(ev.mask.shape == (n, cap), "mask", f"shape [N, P] = [{n}, {cap}]", _shape_str(ev.mask.shape))
    _check(ev.mask.dtype == jnp.bool_, "mask", "dtype bool", str(ev.mask.dtype))
    _check(ev.pid.shape == (n, cap), "pid", f"shape [N, P] = [{n}, {cap}]", _shape_str(ev.pid.shape))
    _check(ev.pid.dtype == jnp.int32, "pid", "dtype int32", str(ev.pid.dtype))
    if ev.colour is not None:
        c = ev.colour
        _check(hasattr(c, "shape"), "colour", "an array or None", type(c).__name__)
        _check(c.shape == (n, cap, 2), "colour", f"shape [N, P, 2] = [{n}, {cap}, 2]", _shape_str(c.shape))
        _check(c.dtype == jnp.int32, "colour", "dtype int32", str(c.dtype))
    for key, value in ev.extra.items():
        _check(hasattr(value, "shape"), f"extra[{key!r}]", "an array", type(value).__name__)
        _check(
            value.ndim >= 1 and value.shape[0] == n,
            f"extra[{key!r}]",
            f"leading axis N = {n}",
            _shape_str(value.shape),
        )
    for name in ("p", "weight"):
        value = getattr(ev, name)
        if _is_concrete(value) and not bool(np.isfinite(np.asarray(value)).all()):
            bad = int((~np.isfinite(np.asarray(value))).sum())
            raise ValueError(f"Events.{name}: expected finite values, got {bad} NaN/inf entries")


_EVENT_FIELDS = ("p", "weight", "mask", "pid", "colour", "extra")


def _events_flatten(ev: Events):
    return tuple(getattr(ev, k) for k in _EVENT_FIELDS), None


def _events_flatten_with_keys(ev: Events):
    return tuple((jax.tree_util.GetAttrKey(k), getattr(ev, k)) for k in _EVENT_FIELDS), None


def _events_unflatten(_aux: None, children: Sequence[Any]) -> Events:
    # Bypasses __post_init__: JAX rebuilds pytrees with tracers, sentinels or shape
    # structs as leaves, where validation must not (and cannot) run.
    ev = object.__new__(Events)
    for name, value in zip(_EVENT_FIELDS, children, strict=True):
        object.__setattr__(ev, name, value)
    return ev


jax.tree_util.register_pytree_with_keys(
    Events, _events_flatten_with_keys, _events_unflatten, flatten_func=_events_flatten
)

# --------------------------------------------------------------------------- layer contract


class Source(NamedTuple):
    """A generator of events from nothing (the hard process), DESIGN.md §3.

    Attributes:
      init: ``init(key) -> params``, the default parameter pytree.
      sample: ``sample(params, key, n) -> Events`` with ``n`` static.
    """

    init: Callable[[Key], Params]
    sample: Callable[[Params, Key, int], Events]


class Layer(NamedTuple):
    """A map from events to events (shower, hadronization, detector, reweighter), DESIGN.md §3.

    Attributes:
      init: ``init(key) -> params``, the default parameter pytree.
      apply: ``apply(params, key, events) -> Events``; a deterministic layer ``del``s the key.
    """

    init: Callable[[Key], Params]
    apply: Callable[[Params, Key, Events], Events]


def stage_key(key: Key, index: int) -> Key:
    """The key of stage ``index`` of a chain (0 = source): ``jax.random.fold_in(key, index)``."""
    return jax.random.fold_in(key, index)


def chain(source: Source | tuple[str, Source], *stages: tuple[str, Layer]) -> Source:
    """Compose a source and named layers into one simulator.

    Stage ``i`` (the source is stage 0) receives ``fold_in(key, i)`` for both ``init`` and
    ``sample``/``apply``, so appending a stage never changes the random numbers of the
    stages before it.

    Args:
      source: a ``Source``, or ``(name, Source)``; its params are stored under ``name``
        (default ``"source"``).
      *stages: ``(name, Layer)`` pairs applied in order; names must be unique.

    Returns:
      A ``Source`` whose ``init(key)`` returns ``{name: params}`` for every stage and whose
      ``sample(params, key, n)`` runs the whole chain. Being a ``Source``, it can itself
      start another chain.
    """
    if isinstance(source, tuple) and len(source) == 2 and isinstance(source[0], str):
        source_name, source = source
    else:
        source_name = "source"
    if not isinstance(source, Source):
        raise TypeError(f"chain: the first argument must be a Source (or (name, Source)), got {type(source).__name__}")
    names = [source_name]
    layers = []
    for i, stage in enumerate(stages, start=1):
        if not (isinstance(stage, tuple) and len(stage) == 2 and isinstance(stage[0], str)):
            raise TypeError(f"chain: stage {i} must be a (name, Layer) pair, got {stage!r}")
        name, layer = stage
        if not isinstance(layer, Layer):
            raise TypeError(f"chain: stage {name!r} must be a Layer, got {type(layer).__name__}")
        if name in names:
            raise ValueError(f"chain: stage name {name!r} is used twice; names must be unique")
        names.append(name)
        layers.append(layer)

    def init(key: Key) -> dict[str, Params]:
        params = {source_name: source.init(stage_key(key, 0))}
        for i, (name, layer) in enumerate(zip(names[1:], layers, strict=True), start=1):
            params[name] = layer.init(stage_key(key, i))
        return params

    def sample(params: Mapping[str, Params], key: Key, n: int) -> Events:
        missing = [name for name in names if name not in params]
        if missing:
            raise ValueError(f"chain.sample: params lack the stage(s) {missing}; expected keys {names}")
        events = source.sample(params[source_name], stage_key(key, 0), n)
        for i, (name, layer) in enumerate(zip(names[1:], layers, strict=True), start=1):
            events = layer.apply(params[name], stage_key(key, i), events)
        return events

    return Source(init=init, sample=sample)
