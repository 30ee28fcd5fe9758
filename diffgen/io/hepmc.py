"""HepMC3 ASCII event files (``Asciiv3``, arXiv:1912.08005).

Each event is written as one vertex: the two incoming beams (e⁻ along +z, e⁺ along −z,
energy √s/2, status 4) enter vertex −1, and every final-state particle (status 1) leaves
it, with momentum (px, py, pz, E) and generated mass m = sqrt(max(E² − |p|², 0)) in GeV,
lengths in mm. Colour tags become the particle attributes ``flow1``/``flow2`` (the
HepMC3 convention). The weight vector is the nominal weight followed by the alternative
weights ``extra["rwgt/<name>"]``, named in the run header (``W`` line).

The run metadata (diffgen version, process, parameters, seed, σ, N) is a run attribute
``diffgen`` holding JSON; its results fields are filled in at close. Every event carries a
``GenCrossSection`` attribute with the running estimate over all events written up to the
end of its chunk (the convention of streaming generators), so the events of the last
chunk carry the final σ ± δσ.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from diffgen.core import Events
from diffgen.io._atomic import AtomicFile
from diffgen.io._base import (
    RESULT_KEYS,
    RWGT_PREFIX,
    EventWriter,
    json_with_slots,
    require_sqrt_s,
    slot_value,
)

__all__ = ["HepMC3Writer", "write_hepmc3"]

_VERSION = "3.02.05"


def _escape(name: str) -> str:
    if any(c in name for c in "|\n\\"):
        raise ValueError(f"HepMC3 weight/tool names may not contain '|', '\\\\' or newlines, got {name!r}")
    return name


class HepMC3Writer(EventWriter):
    """Streaming, atomic HepMC3 ASCII writer.

    Args:
      path: output file (conventionally ``*.hepmc``).
      metadata: run metadata; must contain ``sqrt_s`` (GeV); see :class:`diffgen.io.LHEWriter`.
    """

    format = "hepmc3"

    def __init__(self, path: str | os.PathLike[str], metadata: Mapping[str, Any] | None = None) -> None:
        super().__init__(path, metadata)
        self.sqrt_s = require_sqrt_s(self.metadata, "HepMC3")
        self._file: AtomicFile | None = None
        self._slots: dict[str, int] = {}
        e = self.sqrt_s / 2
        self._beams = (
            f"P 1 0 11 {0.0:.16e} {0.0:.16e} {e:.16e} {e:.16e} {0.0:.16e} 4\n"
            f"P 2 0 -11 {0.0:.16e} {0.0:.16e} {-e:.16e} {e:.16e} {0.0:.16e} 4\n"
            "V -1 0 [1,2]\n"
        )

    def _open(self) -> None:
        from diffgen import __version__

        self._file = AtomicFile(self.path, "wb")
        names = ["nominal", *self.weight_names]
        out = bytearray(f"HepMC::Version {_VERSION}\nHepMC::Asciiv3-START_EVENT_LISTING\n".encode())
        out += ("W " + "\\|".join(_escape(n) for n in names) + "\n").encode()
        process = _escape(str(self.metadata.get("process", "")).replace("\n", " "))
        out += f"T diffgen\\|{__version__}\\|{process}\n".encode()
        head, slots = json_with_slots(self.metadata, indent=None)
        out += b"A diffgen "
        self._slots = {k: len(out) + v for k, v in slots.items()}
        out += head + b"\n"
        self._file.file.write(bytes(out))

    def write(self, events: Events) -> None:
        """Append a chunk of events (any N; memory use is that of the chunk)."""
        data = self._check_chunk(events)
        if self._file is None:
            self._open()
        assert self._file is not None
        sigma, err = self._running_cross_section() if "cross_section_pb" not in self.metadata else self.cross_section()
        p = data["p"].astype(np.float64)
        mask = data["mask"]
        e, px, py, pz = p[..., 0], p[..., 1], p[..., 2], p[..., 3]
        m = np.sqrt(np.maximum(e * e - px * px - py * py - pz * pz, 0.0))
        pids = data["pid"][mask].tolist()
        floats = np.stack([px, py, pz, e, m], axis=-1)[mask].tolist()
        colour = data.get("colour")
        cols = colour[mask].tolist() if colour is not None else None
        counts = mask.sum(axis=1).tolist()
        weights = [data["weight"].astype(np.float64)]
        weights += [data[f"extra/{RWGT_PREFIX}{n}"].astype(np.float64) for n in self.weight_names]
        wlines = np.stack(weights, axis=-1).tolist()
        n_before = self.n_events - len(counts)
        xs_line = f"A 0 GenCrossSection {sigma:.16e} {err:.16e} {self.n_events} {self.n_events}\n"
        pfmt = "P %d -1 %d %.16e %.16e %.16e %.16e %.16e 1\n"
        wfmt = "W" + " %.16e" * len(weights) + "\n"
        beams = self._beams
        out: list[str] = []
        j = 0
        for i, k in enumerate(counts):
            out.append(f"E {n_before + i + 1} 1 {k + 2}\nU GEV MM\n")
            out.append(wfmt % tuple(wlines[i]))
            out.append(xs_line)
            if cols is not None:
                for r in range(j, j + k):
                    c = cols[r]
                    if c[0] or c[1]:
                        out.append(f"A {r - j + 3} flow1 {c[0]}\nA {r - j + 3} flow2 {c[1]}\n")
            out.append(beams)
            for r in range(j, j + k):
                out.append(pfmt % (r - j + 3, pids[r], *floats[r]))
            j += k
        self._file.file.write("".join(out).encode())

    def close(self) -> Path:
        """Fill in the run results and publish the file atomically."""
        if self._closed:
            return self.path
        if self._file is None:
            self._open()
        assert self._file is not None
        meta = self._final_metadata()
        f = self._file.file
        f.write(b"HepMC::Asciiv3-END_EVENT_LISTING\n\n")
        for key in RESULT_KEYS:
            f.seek(self._slots[key])
            f.write(slot_value(key, meta[key]))
        f.seek(0, os.SEEK_END)
        self._file.commit()
        self._closed = True
        return self.path


def write_hepmc3(path: str | os.PathLike[str], events: Events, metadata: Mapping[str, Any] | None = None) -> Path:
    """Write one ``Events`` batch to a HepMC3 ASCII file atomically (see :class:`HepMC3Writer`).

    Args:
      path: output file (conventionally ``*.hepmc``).
      events: the events; momenta [N, P, 4] in GeV, (E, px, py, pz), weights [N] in pb.
      metadata: run metadata; must contain ``sqrt_s`` (GeV).

    Returns:
      the path of the written file.
    """
    with HepMC3Writer(path, metadata) as w:
        w.write(events)
    return w.path
