"""Columnar event files (Apache Parquet via pyarrow) with the full run metadata.

One row per event. Columns (P = particle capacity, fixed for a file):

==============================  ==============================  =====================================
``weight``                      float                           event weight, pb
``E``, ``px``, ``py``, ``pz``   fixed_size_list<float, P>       four-momentum components, GeV
``mask``                        fixed_size_list<bool, P>        real particle (True) or padding
``pid``                         fixed_size_list<int32, P>       PDG id (0 for padding)
``colour``, ``anticolour``      fixed_size_list<int32, P>       LHE colour tags (only if present)
``extra/<name>``                scalar or fixed_size_list       ``Events.extra`` arrays, flattened;
                                                                their shapes are in the metadata
==============================  ==============================  =====================================

The float dtype of ``p``/``weight`` is kept (float32 or float64), so :func:`read_parquet`
returns exactly the ``Events`` that were written, padding included. The schema metadata
key ``diffgen`` holds JSON: diffgen version, process, every parameter value, seed,
cross section and error (pb), number of events, the ``extra`` shapes — so a file documents
how it was made. The cross section and N are added when the streamed file is closed.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from diffgen.core import Events
from diffgen.io._atomic import partial_path
from diffgen.io._base import EventWriter

__all__ = ["ParquetWriter", "iter_parquet", "read_parquet", "write_parquet"]

_META_KEY = b"diffgen"
_COMPONENTS = ("E", "px", "py", "pz")


def _fixed(values: np.ndarray, width: int) -> pa.Array:
    flat = pa.array(np.ascontiguousarray(values).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, width)


class ParquetWriter(EventWriter):
    """Streaming, atomic parquet writer (see the module docstring for the layout).

    Args:
      path: output file (conventionally ``*.parquet``).
      metadata: run metadata (any JSON-serialisable dict; ``sqrt_s`` is optional here).
      compression: parquet codec (default ``"zstd"``).

    Each :meth:`write` appends one row group; the capacity P of later chunks may be smaller
    (they are padded) but not larger than that of the first chunk.
    """

    format = "parquet"

    def __init__(
        self, path: str | os.PathLike[str], metadata: Mapping[str, Any] | None = None, *, compression: str = "zstd"
    ) -> None:
        super().__init__(path, metadata)
        self.tmp_path = partial_path(self.path)
        self.compression = compression
        self._writer: pq.ParquetWriter | None = None
        self._capacity = 0
        self._dtype: np.dtype | None = None
        self._has_colour = False

    def _table(self, data: dict[str, np.ndarray]) -> pa.Table:
        p = data["p"]
        n, cap = data["mask"].shape
        if cap < self._capacity:
            pad = self._capacity - cap
            data = {**data}
            data["p"] = np.pad(p, ((0, 0), (0, pad), (0, 0)))
            data["mask"] = np.pad(data["mask"], ((0, 0), (0, pad)))
            data["pid"] = np.pad(data["pid"], ((0, 0), (0, pad)))
            if "colour" in data:
                data["colour"] = np.pad(data["colour"], ((0, 0), (0, pad), (0, 0)))
            p, cap = data["p"], self._capacity
        cols: dict[str, pa.Array] = {"weight": pa.array(data["weight"])}
        for i, name in enumerate(_COMPONENTS):
            cols[name] = _fixed(p[..., i], cap)
        cols["mask"] = _fixed(data["mask"], cap)
        cols["pid"] = _fixed(data["pid"], cap)
        if "colour" in data:
            cols["colour"] = _fixed(data["colour"][..., 0], cap)
            cols["anticolour"] = _fixed(data["colour"][..., 1], cap)
        for key, value in data.items():
            if key.startswith("extra/"):
                width = int(np.prod(value.shape[1:], dtype=np.int64))
                cols[key] = pa.array(value) if value.ndim == 1 else _fixed(value, width)
        del n
        return pa.table(cols)

    def write(self, events: Events) -> None:
        """Append a chunk of events as one row group."""
        data = self._check_chunk(events)
        if self._writer is None:
            self._capacity = data["mask"].shape[1]
            self._dtype = data["p"].dtype
            self._has_colour = "colour" in data
            self.metadata["extra_shapes"] = {
                k[len("extra/") :]: list(v.shape[1:]) for k, v in data.items() if k.startswith("extra/")
            }
            self.metadata["dtype"] = str(self._dtype)
            self.metadata["capacity"] = self._capacity
        if data["mask"].shape[1] > self._capacity:
            raise ValueError(
                f"ParquetWriter.write: chunk capacity {data['mask'].shape[1]} exceeds the file's capacity "
                f"{self._capacity} (set by the first chunk)"
            )
        if data["p"].dtype != self._dtype:
            raise ValueError(
                f"ParquetWriter.write: chunk dtype {data['p'].dtype} differs from the file's {self._dtype}"
            )
        if ("colour" in data) != self._has_colour:
            raise ValueError("ParquetWriter.write: either every chunk has colour or none has")
        table = self._table(data)
        if self._writer is None:
            # The run metadata goes into the file footer at close (it includes σ and N).
            self._writer = pq.ParquetWriter(self.tmp_path, table.schema, compression=self.compression)
        self._writer.write_table(table)

    def close(self) -> Path:
        """Write the final metadata (σ, N) into the footer and publish the file atomically."""
        if self._closed:
            return self.path
        if self._writer is None:
            raise ValueError(f"ParquetWriter: no events were written to {str(self.path)!r}; nothing to close")
        meta = self._final_metadata()
        self._writer.add_key_value_metadata({_META_KEY: json.dumps(meta)})
        self._writer.close()
        with open(self.tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(self.tmp_path, self.path)
        self._closed = True
        return self.path

    def abort(self) -> None:
        """Discard the temporary file; no output appears."""
        self._closed = True
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp_path)


def write_parquet(path: str | os.PathLike[str], events: Events, metadata: Mapping[str, Any] | None = None) -> Path:
    """Write one ``Events`` batch to a parquet file atomically (see :class:`ParquetWriter`).

    Args:
      path: output file (conventionally ``*.parquet``).
      events: the events, stored exactly (dtype, padding, colour, extra).
      metadata: run metadata (any JSON-serialisable dict).

    Returns:
      the path of the written file.
    """
    with ParquetWriter(path, metadata) as w:
        w.write(events)
    return w.path


def _metadata(file_meta: pq.FileMetaData) -> dict[str, Any]:
    raw = (file_meta.metadata or {}).get(_META_KEY)
    return json.loads(raw) if raw else {}


def _fixed_to_numpy(col: pa.ChunkedArray | pa.Array, n: int) -> np.ndarray:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if isinstance(arr.type, pa.FixedSizeListType):
        return arr.flatten().to_numpy(zero_copy_only=False).reshape(n, arr.type.list_size)
    return arr.to_numpy(zero_copy_only=False)


def _table_to_events(table: pa.Table, meta: Mapping[str, Any]) -> Events:
    names = set(table.column_names)
    required = {"weight", "mask", "pid", *_COMPONENTS}
    if not required <= names:
        raise ValueError(f"parquet file lacks the diffgen column(s) {sorted(required - names)}")
    n = table.num_rows
    p = np.stack([_fixed_to_numpy(table[c], n) for c in _COMPONENTS], axis=-1)
    if n == 0:
        p = p.reshape(0, int(meta.get("capacity", 0)), 4)
    data: dict[str, Any] = {
        "p": p,
        "weight": _fixed_to_numpy(table["weight"], n),
        "mask": _fixed_to_numpy(table["mask"], n).reshape(p.shape[:2]),
        "pid": _fixed_to_numpy(table["pid"], n).reshape(p.shape[:2]),
    }
    if "colour" in names:
        data["colour"] = np.stack(
            [_fixed_to_numpy(table["colour"], n), _fixed_to_numpy(table["anticolour"], n)], axis=-1
        ).reshape(*p.shape[:2], 2)
    shapes = meta.get("extra_shapes", {})
    for col in table.column_names:
        if col.startswith("extra/"):
            name = col[len("extra/") :]
            data[col] = _fixed_to_numpy(table[col], n).reshape(n, *shapes.get(name, []))
    return Events.from_numpy(data)


def iter_parquet(path: str | os.PathLike[str], chunk_size: int = 100_000) -> Iterator[tuple[Events, dict[str, Any]]]:
    """Read a diffgen parquet file in chunks of at most ``chunk_size`` events (constant memory).

    Args:
      path: parquet file written by diffgen.
      chunk_size: largest number of events per chunk, >= 1.

    Yields:
      ``(events, metadata)`` per chunk.
    """
    if int(chunk_size) < 1:
        raise ValueError(f"iter_parquet: chunk_size must be >= 1, got {chunk_size}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"parquet file {str(path)!r} does not exist")
    try:
        pf = pq.ParquetFile(path)
    except pa.ArrowInvalid as err:
        raise ValueError(f"{str(path)!r} is not a valid parquet file: {err}") from None
    meta = _metadata(pf.metadata)
    for batch in pf.iter_batches(batch_size=int(chunk_size)):
        yield _table_to_events(pa.Table.from_batches([batch]), meta), meta


def read_parquet(path: str | os.PathLike[str]) -> tuple[Events, dict[str, Any]]:
    """Read a whole diffgen parquet file.

    Args:
      path: parquet file written by diffgen.

    Returns:
      ``(events, metadata)``: exactly the ``Events`` written (dtype, padding, colour, extra)
      and the run metadata dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"parquet file {str(path)!r} does not exist")
    try:
        pf = pq.ParquetFile(path)
        table = pf.read()
    except pa.ArrowInvalid as err:
        raise ValueError(f"{str(path)!r} is not a valid parquet file: {err}") from None
    meta = _metadata(pf.metadata)
    return _table_to_events(table, meta), meta
