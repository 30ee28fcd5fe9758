"""Shared pieces of the event-file writers: run metadata, chunk checks, cross-section sums."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from diffgen.core import Events
from diffgen.io._atomic import _check_target

__all__ = ["RWGT_PREFIX", "EventWriter", "alt_weight_names", "jsonable", "params_to_metadata"]

#: ``Events.extra`` keys starting with this prefix are alternative event weights [N] in pb
#: (e.g. ``extra["rwgt/alpha_s_up"]``); the writers store them as named weights
#: (LHE ``<rwgt>``, HepMC3 weight vector, parquet column).
RWGT_PREFIX = "rwgt/"


def alt_weight_names(events: Events) -> list[str]:
    """Names (without the ``rwgt/`` prefix) of the alternative weights an ``Events`` carries.

    Args:
      events: the events; alternative weights are ``extra`` entries whose key starts with ``rwgt/``.

    Returns:
      the names, sorted.
    """
    return sorted(k[len(RWGT_PREFIX) :] for k in events.extra if k.startswith(RWGT_PREFIX))


def jsonable(value: Any) -> Any:
    """``value`` with arrays and NumPy/JAX scalars turned into Python numbers and lists (for JSON/TOML)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (str, bool, int, float)) or value is None:
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        arr = np.asarray(value)
        return arr.item() if arr.ndim == 0 else arr.tolist()
    raise TypeError(f"metadata value of type {type(value).__name__} is not serialisable: {value!r}")


def params_to_metadata(params: Any) -> Any:
    """A params pytree (dict of jnp scalars/arrays) as nested dicts of Python floats/lists."""
    return jsonable(params)


class EventWriter:
    """Base class of the streaming event writers (LHE, HepMC3, parquet).

    A writer is opened on a path, receives ``Events`` chunks through :meth:`write` in any
    number (memory use is that of one chunk) and publishes the file atomically in
    :meth:`close`; :meth:`abort`, or leaving a ``with`` block by an exception, leaves no
    file. The writer sums the weights it sees: unless ``metadata`` sets
    ``cross_section_pb`` (and ``cross_section_error_pb``) before closing, the file records
    σ = Σw/N and its Monte Carlo error sqrt((Σw² − (Σw)²/N) / (N (N − 1))) in pb.

    Attributes:
      path: the final file name.
      metadata: the run metadata dict (may be updated until :meth:`close`).
      n_events: number of events written so far.
    """

    format: str = ""

    def __init__(self, path: str | os.PathLike[str], metadata: Mapping[str, Any] | None = None) -> None:
        from diffgen import __version__

        if metadata is not None and not isinstance(metadata, Mapping):
            raise TypeError(f"metadata must be a mapping (dict), got {type(metadata).__name__}")
        self.path = Path(path)
        _check_target(self.path)
        self.metadata: dict[str, Any] = {"diffgen_version": __version__, **jsonable(dict(metadata or {}))}
        self.n_events = 0
        self._sum_w = 0.0
        self._sum_w2 = 0.0
        self._max_abs_w = 0.0
        self._weight_names: list[str] | None = None
        self._extra_keys: list[str] | None = None
        self._closed = False

    # ------------------------------------------------------------------ bookkeeping

    def _check_chunk(self, events: Events) -> dict[str, np.ndarray]:
        if self._closed:
            raise ValueError(f"{type(self).__name__}: {str(self.path)!r} is already closed")
        if not isinstance(events, Events):
            raise TypeError(f"{type(self).__name__}.write: events must be diffgen.Events, got {type(events).__name__}")
        names = alt_weight_names(events)
        keys = sorted(events.extra)
        if self._weight_names is None:
            self._weight_names = names
            self._extra_keys = keys
            self.metadata["weight_names"] = names
        elif keys != self._extra_keys:
            raise ValueError(
                f"{type(self).__name__}.write: every chunk needs the same extra keys; "
                f"first chunk had {self._extra_keys}, this one {keys}"
            )
        for name in names:
            shape = events.extra[RWGT_PREFIX + name].shape
            if shape != (events.n_events,):
                raise ValueError(
                    f"Events.extra[{RWGT_PREFIX + name!r}]: expected shape [N] = [{events.n_events}], got {list(shape)}"
                )
        data = events.to_numpy()
        w = data["weight"].astype(np.float64)
        self.n_events += int(w.shape[0])
        self._sum_w += float(np.sum(w))
        self._sum_w2 += float(np.sum(w * w))
        if w.size:
            self._max_abs_w = max(self._max_abs_w, float(np.max(np.abs(w))))
        return data

    @property
    def weight_names(self) -> list[str]:
        """Names of the alternative weights seen in the first chunk (without prefix)."""
        return list(self._weight_names or [])

    def cross_section(self) -> tuple[float, float]:
        """(σ, δσ) in pb: from ``metadata`` if set there, else from the weights written so far."""
        if "cross_section_pb" in self.metadata:
            return float(self.metadata["cross_section_pb"]), float(self.metadata.get("cross_section_error_pb", 0.0))
        return self._running_cross_section()

    def _running_cross_section(self) -> tuple[float, float]:
        n = self.n_events
        if n == 0:
            return 0.0, 0.0
        mean = self._sum_w / n
        if n == 1:
            return mean, 0.0
        var = max(self._sum_w2 - self._sum_w * self._sum_w / n, 0.0) / (n * (n - 1))
        return mean, math.sqrt(var)

    def _final_metadata(self) -> dict[str, Any]:
        sigma, err = self.cross_section()
        self.metadata.update(
            n_events=self.n_events,
            cross_section_pb=sigma,
            cross_section_error_pb=err,
            weight_names=self.weight_names,
        )
        return self.metadata

    # ------------------------------------------------------------------ interface

    def write(self, events: Events) -> None:  # pragma: no cover - abstract
        """Append a chunk of events."""
        raise NotImplementedError

    def close(self) -> Path:  # pragma: no cover - abstract
        """Finish the file and publish it atomically under :attr:`path`; returns the path."""
        raise NotImplementedError

    def abort(self) -> None:
        """Discard everything written; no file appears.

        This default serves writers that stream into an :class:`~diffgen.io._atomic.AtomicFile`
        held as ``self._file`` (LHE, HepMC3); others override it.
        """
        self._closed = True
        atomic = getattr(self, "_file", None)
        if atomic is not None:
            atomic.abort()

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


#: Width of the fixed-width number fields filled in when a streamed file is closed.
NUM_WIDTH = 25
INT_WIDTH = 20
RESULT_KEYS = ("n_events", "cross_section_pb", "cross_section_error_pb")


def json_with_slots(meta: Mapping[str, Any], *, indent: int | None) -> tuple[bytes, dict[str, int]]:
    """``meta`` as JSON with blank fixed-width fields for the results known only at the end.

    Returns the encoded JSON and the byte offset (within it) of the field of each key in
    :data:`RESULT_KEYS`; JSON allows whitespace around numbers, so writing the right-aligned
    value into the blank field later keeps the document valid.
    """
    meta = dict(meta)
    for key in RESULT_KEYS:
        meta[key] = f"@{key}@"
    text = json.dumps(meta, indent=indent, sort_keys=True, separators=(",", ": ") if indent else (", ", ": "))
    parts = text.split('"@')
    out = bytearray(parts[0].encode())
    slots = {}
    for part in parts[1:]:
        key, rest = part.split('@"', 1)
        slots[key] = len(out)
        out += b" " * (INT_WIDTH if key == "n_events" else NUM_WIDTH) + rest.encode()
    return bytes(out), slots


def slot_value(key: str, value: float | int) -> bytes:
    """The fixed-width text of a result value for :func:`json_with_slots` fields."""
    if key == "n_events":
        return str(int(value)).rjust(INT_WIDTH).encode()
    return f"{float(value):.16e}".rjust(NUM_WIDTH).encode()


def require_sqrt_s(metadata: Mapping[str, Any], fmt: str) -> float:
    """√s in GeV from the metadata (needed for the beam particles of LHE/HepMC3)."""
    if "sqrt_s" not in metadata:
        raise ValueError(f"{fmt} writer: metadata must give 'sqrt_s' (GeV) for the e+e- beams")
    sqrt_s = float(metadata["sqrt_s"])
    if not (math.isfinite(sqrt_s) and sqrt_s > 0):
        raise ValueError(f"{fmt} writer: metadata 'sqrt_s' must be a positive number of GeV, got {sqrt_s!r}")
    return sqrt_s


def find_param(params: Any, name: str) -> float | None:
    """The first scalar called ``name`` anywhere in a nested params dict (or None)."""
    if isinstance(params, Mapping):
        if name in params and isinstance(params[name], (int, float)):
            return float(params[name])
        for v in params.values():
            found = find_param(v, name)
            if found is not None:
                return found
    return None
