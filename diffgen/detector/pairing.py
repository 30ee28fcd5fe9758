"""Gen–reco pairing: detector-level events next to their particle-level truth.

:class:`GenRecoPair` is the structure the unfolding methods consume. It holds, for the
same N events in the same order,

- ``reco``: detector-level ``Events`` (output of a detector layer),
- ``truth``: the particle-level ``Events`` that went into the detector,
- ``pass_gen`` [N] bool: the event passes the particle-level (fiducial) selection,
- ``pass_reco`` [N] bool: the event passes the detector-level selection.

Events with ``pass_reco & ~pass_gen`` are fakes (background to subtract), events with
``pass_gen & ~pass_reco`` are inefficiencies (lost at detector level), events with both
flags are the migration sample. Slot i of ``reco`` is the reconstructed version of slot i
of ``truth`` (or padding if it was lost), so particle-level matching is by slot. Weights:
``truth.weight`` is the generator weight; ``reco.weight`` equals it unless a detector
layer reweights. A registered pytree: it passes through ``jit``/``vmap`` and ``jax.tree``
maps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diffgen.core import Events, Layer, Source, is_traced, stage_key
from diffgen.typing import Array, Key, Params

__all__ = ["GenRecoPair", "PairedSampler", "gen_reco", "paired"]

Selection = Callable[[Events], Array]


@dataclasses.dataclass(frozen=True, eq=False)
class GenRecoPair:
    """Detector-level events, their particle-level truth and per-event selection flags.

    Attributes:
      reco: ``Events`` [N, P_reco] at detector level.
      truth: ``Events`` [N, P_truth] at particle level, same events in the same order.
      pass_gen: [N] bool, particle-level selection passed.
      pass_reco: [N] bool, detector-level selection passed.
    """

    reco: Events
    truth: Events
    pass_gen: Array
    pass_reco: Array

    def __post_init__(self) -> None:
        for name in ("pass_gen", "pass_reco"):
            value = getattr(self, name)
            if isinstance(value, (np.ndarray, np.generic, list, tuple)):
                object.__setattr__(self, name, jnp.asarray(value))
        for name in ("reco", "truth"):
            if not isinstance(getattr(self, name), Events):
                raise TypeError(f"GenRecoPair.{name}: expected Events, got {type(getattr(self, name)).__name__}")
        n = self.truth.n_events
        if self.reco.n_events != n:
            raise ValueError(f"GenRecoPair.reco: expected N = {n} events (as truth), got {self.reco.n_events}")
        for name in ("pass_gen", "pass_reco"):
            value = getattr(self, name)
            if not hasattr(value, "shape") or value.shape != (n,) or value.dtype != jnp.bool_:
                got = f"{getattr(value, 'dtype', type(value).__name__)} {list(getattr(value, 'shape', []))}"
                raise ValueError(f"GenRecoPair.{name}: expected bool array of shape [N] = [{n}], got {got}")

    @property
    def n_events(self) -> int:
        """Number of events N."""
        return self.truth.n_events

    def __len__(self) -> int:
        return self.n_events

    @property
    def weight(self) -> Array:
        """Generator (truth) weights [N], pb."""
        return self.truth.weight

    @property
    def matched(self) -> Array:
        """[N] bool: passes both selections (migration sample)."""
        return self.pass_gen & self.pass_reco

    @property
    def fakes(self) -> Array:
        """[N] bool: passes the detector-level selection only."""
        return self.pass_reco & ~self.pass_gen

    @property
    def misses(self) -> Array:
        """[N] bool: passes the particle-level selection only (inefficiency)."""
        return self.pass_gen & ~self.pass_reco

    def take(self, indices: Any) -> GenRecoPair:
        """Select events by integer indices (or a concrete boolean mask) in all four fields."""
        indices = jnp.asarray(indices)
        if indices.dtype == jnp.bool_:
            if is_traced(indices):
                raise TypeError(
                    "GenRecoPair.take with a boolean mask needs concrete values; use integer indices under jit"
                )
            indices = jnp.nonzero(indices)[0]
        return jax.tree.map(lambda x: jnp.take(x, indices, axis=0), self)

    def __getitem__(self, index: Any) -> GenRecoPair:
        """Slice along the event axis (as :meth:`Events.__getitem__`)."""
        if isinstance(index, slice):
            return jax.tree.map(lambda x: x[index], self)
        if isinstance(index, (int, np.integer)):
            n = self.n_events
            if not -n <= index < n:
                raise IndexError(f"event index {index} out of range for {n} events")
            return self[index % n : index % n + 1]
        return self.take(index)

    def to_numpy(self) -> dict[str, np.ndarray]:
        """Host copy: ``reco/<field>``, ``truth/<field>`` (as ``Events.to_numpy``), ``pass_gen``, ``pass_reco``."""
        out = {f"reco/{k}": v for k, v in self.reco.to_numpy().items()}
        out.update({f"truth/{k}": v for k, v in self.truth.to_numpy().items()})
        out["pass_gen"] = np.asarray(self.pass_gen)
        out["pass_reco"] = np.asarray(self.pass_reco)
        return out

    @classmethod
    def from_numpy(cls, data: Mapping[str, Any], dtype: Any = None) -> GenRecoPair:
        """Inverse of :meth:`to_numpy`."""
        missing = {"pass_gen", "pass_reco"} - set(data)
        if missing:
            raise ValueError(f"GenRecoPair.from_numpy: missing field(s) {sorted(missing)}")
        parts = {}
        for level in ("reco", "truth"):
            prefix = f"{level}/"
            parts[level] = Events.from_numpy(
                {k[len(prefix) :]: v for k, v in data.items() if k.startswith(prefix)}, dtype
            )
        return cls(
            reco=parts["reco"],
            truth=parts["truth"],
            pass_gen=np.asarray(data["pass_gen"], dtype=bool),
            pass_reco=np.asarray(data["pass_reco"], dtype=bool),
        )


_FIELDS = ("reco", "truth", "pass_gen", "pass_reco")


def _flatten_with_keys(pair: GenRecoPair):
    return tuple((jax.tree_util.GetAttrKey(k), getattr(pair, k)) for k in _FIELDS), None


def _flatten(pair: GenRecoPair):
    return tuple(getattr(pair, k) for k in _FIELDS), None


def _unflatten(_aux: None, children: Any) -> GenRecoPair:
    # As for Events: JAX rebuilds pytrees with tracers/sentinels, so skip validation.
    pair = object.__new__(GenRecoPair)
    for name, value in zip(_FIELDS, children, strict=True):
        object.__setattr__(pair, name, value)
    return pair


jax.tree_util.register_pytree_with_keys(GenRecoPair, _flatten_with_keys, _unflatten, flatten_func=_flatten)


def _default_selection(events: Events) -> Array:
    return events.multiplicity() > 0


def gen_reco(
    detector: Layer,
    params: Params,
    key: Key,
    truth: Events,
    *,
    gen_selection: Selection | None = None,
    reco_selection: Selection | None = None,
) -> GenRecoPair:
    """Run a detector on particle-level events and pair the result with the truth.

    Args:
      detector: a detector ``Layer`` (e.g. ``lep_like(mode="stochastic")``).
      params: the detector's params.
      key: PRNG key of the detector.
      truth: particle-level ``Events`` [N, P].
      gen_selection: ``Events -> [N] bool`` applied to ``truth`` (default: at least one
        particle).
      reco_selection: ``Events -> [N] bool`` applied to the detector-level events
        (default: at least one reconstructed particle).

    Returns:
      :class:`GenRecoPair`.
    """
    reco = detector.apply(params, key, truth)
    gen_sel = gen_selection or _default_selection
    reco_sel = reco_selection or _default_selection
    return GenRecoPair(
        reco=reco,
        truth=truth,
        pass_gen=jnp.asarray(gen_sel(truth)).astype(jnp.bool_),
        pass_reco=jnp.asarray(reco_sel(reco)).astype(jnp.bool_),
    )


class PairedSampler(NamedTuple):
    """A source followed by a detector, sampling :class:`GenRecoPair` s.

    Attributes:
      init: ``init(key) -> {"source": params, "detector": params}``.
      sample: ``sample(params, key, n) -> GenRecoPair`` (n static).
    """

    init: Callable[[Key], dict[str, Params]]
    sample: Callable[[Mapping[str, Params], Key, int], GenRecoPair]


def paired(
    source: Source,
    detector: Layer,
    *,
    gen_selection: Selection | None = None,
    reco_selection: Selection | None = None,
) -> PairedSampler:
    """Pair a particle-level source with a detector.

    Keys follow :func:`diffgen.chain` (stage 0 = source, stage 1 = detector), so
    ``paired(src, det).sample(params, key, n).reco`` equals
    ``chain(src, ("detector", det)).sample(params, key, n)``.

    Args:
      source: particle-level ``Source`` (e.g. a ``chain`` up to hadronization).
      detector: detector ``Layer``.
      gen_selection, reco_selection: as in :func:`gen_reco`.

    Returns:
      :class:`PairedSampler`.
    """
    if not isinstance(source, Source):
        raise TypeError(f"paired: source must be a Source, got {type(source).__name__}")
    if not isinstance(detector, Layer):
        raise TypeError(f"paired: detector must be a Layer, got {type(detector).__name__}")

    def init(key: Key) -> dict[str, Params]:
        return {"source": source.init(stage_key(key, 0)), "detector": detector.init(stage_key(key, 1))}

    def sample(params: Mapping[str, Params], key: Key, n: int) -> GenRecoPair:
        truth = source.sample(params["source"], stage_key(key, 0), n)
        return gen_reco(
            detector,
            params["detector"],
            stage_key(key, 1),
            truth,
            gen_selection=gen_selection,
            reco_selection=reco_selection,
        )

    return PairedSampler(init=init, sample=sample)
