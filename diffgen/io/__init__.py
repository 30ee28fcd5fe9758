"""Event files: LHE v3, HepMC3 ASCII and parquet — the only place that knows foreign conventions.

diffgen ``Events`` hold final-state particles with momenta in (E, px, py, pz) order. The
LHE and HepMC3 writers add the incoming e⁺e⁻ beams (e⁻ along +z, energies √s/2) and write
(px, py, pz, E, m); the parquet format stores ``Events`` exactly, with the run metadata.

Every writer is a streaming writer: open it with the run metadata, call ``write(events)``
for any number of chunks (memory use is that of one chunk), then ``close()``; the file
appears atomically (temp file + rename) only when closed, so an interrupted run leaves
either a complete file or none. Use them as context managers::

    from diffgen import io
    with io.open_writer("events.lhe", metadata={"sqrt_s": 91.1876, "process": "ee_to_mumu"}) as w:
        for chunk in chunks:
            w.write(chunk)
    events, meta = io.read_events("events.lhe")

Run metadata keys written by diffgen: ``diffgen_version``, ``process``, ``sqrt_s`` (GeV),
``params`` (every parameter value, nested by stage), ``seed``, ``layers``,
``cross_section_pb``, ``cross_section_error_pb``, ``n_events``, ``weight_names``.
Alternative weights travel as ``Events.extra["rwgt/<name>"]`` ([N], pb).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from diffgen.core import Events
from diffgen.io._atomic import AtomicFile, atomic_write, partial_path
from diffgen.io._base import RWGT_PREFIX, EventWriter, alt_weight_names, jsonable, params_to_metadata
from diffgen.io.hepmc import HepMC3Writer, write_hepmc3
from diffgen.io.lhe import LHEWriter, iter_lhe, read_lhe, write_lhe
from diffgen.io.parquet import ParquetWriter, iter_parquet, read_parquet, write_parquet

__all__ = [
    "FORMATS",
    "RWGT_PREFIX",
    "AtomicFile",
    "EventWriter",
    "HepMC3Writer",
    "LHEWriter",
    "ParquetWriter",
    "alt_weight_names",
    "atomic_write",
    "format_from_path",
    "iter_events",
    "iter_lhe",
    "iter_parquet",
    "jsonable",
    "open_writer",
    "params_to_metadata",
    "partial_path",
    "read_events",
    "read_lhe",
    "read_parquet",
    "write_events",
    "write_hepmc3",
    "write_lhe",
    "write_parquet",
]

#: Format name -> (writer class, file suffixes).
FORMATS: dict[str, tuple[type[EventWriter], tuple[str, ...]]] = {
    "lhe": (LHEWriter, (".lhe",)),
    "hepmc3": (HepMC3Writer, (".hepmc", ".hepmc3")),
    "parquet": (ParquetWriter, (".parquet", ".pq")),
}


def format_from_path(path: str | os.PathLike[str], fmt: str | None = None) -> str:
    """The file format: ``fmt`` if given (checked), else inferred from the suffix of ``path``.

    Raises:
      ValueError: unknown format or suffix (the message lists the allowed ones).
    """
    if fmt is not None:
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {sorted(FORMATS)}, got {fmt!r}")
        return fmt
    suffix = Path(path).suffix.lower()
    for name, (_, suffixes) in FORMATS.items():
        if suffix in suffixes:
            return name
    allowed = ", ".join(s for _, sfx in FORMATS.values() for s in sfx)
    raise ValueError(
        f"cannot infer the event-file format from {str(path)!r}: use a suffix {allowed} or give the format"
    )


def open_writer(
    path: str | os.PathLike[str], fmt: str | None = None, *, metadata: Mapping[str, Any] | None = None
) -> EventWriter:
    """A streaming, atomic writer for ``path`` (format from ``fmt`` or the file suffix).

    Args:
      path: output file.
      fmt: ``"lhe"``, ``"hepmc3"`` or ``"parquet"``; default from the suffix.
      metadata: run metadata (LHE/HepMC3 need ``sqrt_s`` in GeV).

    Returns:
      an :class:`EventWriter` (``write(events)``, ``close()``, ``abort()``, context manager).
    """
    cls, _ = FORMATS[format_from_path(path, fmt)]
    return cls(path, metadata)


def write_events(
    path: str | os.PathLike[str], events: Events, metadata: Mapping[str, Any] | None = None, *, fmt: str | None = None
) -> Path:
    """Write one ``Events`` batch to ``path`` atomically in the format of its suffix (or ``fmt``).

    Args:
      path: output file.
      events: the events; momenta [N, P, 4] in GeV, (E, px, py, pz), weights [N] in pb.
      metadata: run metadata (LHE/HepMC3 need ``sqrt_s`` in GeV).
      fmt: ``"lhe"``, ``"hepmc3"`` or ``"parquet"``; default from the suffix.

    Returns:
      the path of the written file.
    """
    with open_writer(path, fmt, metadata=metadata) as w:
        w.write(events)
    return w.path


def iter_events(
    path: str | os.PathLike[str], chunk_size: int = 100_000, *, fmt: str | None = None
) -> Iterator[tuple[Events, dict[str, Any]]]:
    """Read an LHE or parquet file in chunks (constant memory).

    Args:
      path: LHE or parquet file.
      chunk_size: largest number of events per chunk, >= 1.
      fmt: ``"lhe"`` or ``"parquet"``; default from the suffix.

    Yields:
      ``(events, metadata)`` per chunk.
    """
    fmt = format_from_path(path, fmt)
    if fmt == "lhe":
        yield from iter_lhe(path, chunk_size)
    elif fmt == "parquet":
        yield from iter_parquet(path, chunk_size)
    else:
        raise ValueError(f"reading {fmt} files is not supported (diffgen reads lhe and parquet); got {str(path)!r}")


def read_events(path: str | os.PathLike[str], *, fmt: str | None = None) -> tuple[Events, dict[str, Any]]:
    """Read a whole LHE or parquet file.

    Args:
      path: LHE or parquet file.
      fmt: ``"lhe"`` or ``"parquet"``; default from the suffix.

    Returns:
      ``(events, metadata)``: the events and the run metadata dict.
    """
    fmt = format_from_path(path, fmt)
    if fmt == "lhe":
        return read_lhe(path)
    if fmt == "parquet":
        return read_parquet(path)
    raise ValueError(f"reading {fmt} files is not supported (diffgen reads lhe and parquet); got {str(path)!r}")
