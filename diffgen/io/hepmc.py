"""HepMC3 ASCII event files (``Asciiv3``, arXiv:1912.08005), with the event history.

Every event records the e⁺e⁻ annihilation diffgen's processes share, then the stages that
made the final state, one vertex per stage:

=======  ===========================================================================
vertex   incoming → outgoing
=======  ===========================================================================
−1       e⁻ (pid 11, along +z) and e⁺ (pid −11, along −z), energy √s/2, status 4
         → γ*/Z (pid 23, status 2, p = (0, 0, 0, √s), generated mass √s)
−2       γ*/Z → the hard-process final state
−3 …     the particles of one stage → those of the next (one vertex per later layer)
=======  ===========================================================================

Vertex status: 1 for the annihilation, 2 for the hard process, 2 + i for the vertex of the
i-th layer after it (``diffgen generate``: shower, hadronization, detector in that order of
those present). Particle status: 4 beams, 2 the γ*/Z, 1 the particles of the ``Events``
(the last stage), and 11 + j for the particles of history stage j that a later layer
evolved (11 = hard-process partons or leptons, 12 = the output of the first layer, …).

The intermediate stages come from ``Events.extra`` entries ``history/<j>-<name>/p``
[N, P_j, 4] (E, px, py, pz) GeV, ``…/pid`` [N, P_j], ``…/mask`` [N, P_j] and optionally
``…/colour`` [N, P_j, 2], with j = 0, 1, … in chain order; ``diffgen generate`` records
them for HepMC3 output. Without them (plain ``Events``) the event is beams → γ*/Z → final
state. A layer is one vertex: diffgen's shower and hadronization do not record which
emission or which cluster a particle came from (no per-particle mother index), so
per-emission shower vertices, cluster vertices and the decays of unstable hadrons are not
written. Momentum is conserved at every vertex to rounding, except at the detector vertex
(smearing and efficiencies change the momenta) and where a layer flags a failure in its
``extra`` keys (e.g. ``reshuffle_failed``).

Momenta are (px, py, pz, E) with generated mass m = sqrt(max(E² − |p|², 0)) in GeV,
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

__all__ = ["HISTORY_PREFIX", "HepMC3Writer", "history_stages", "write_hepmc3"]

_VERSION = "3.02.05"

#: ``Events.extra`` keys starting with this prefix hold the particles of an intermediate
#: stage: ``history/<j>-<name>/{p,pid,mask[,colour]}`` (see the module docstring).
HISTORY_PREFIX = "history/"

_FIELDS = ("p", "pid", "mask", "colour")


def history_stages(keys: Any) -> list[str]:
    """The history stages ``"<j>-<name>"`` named by ``extra`` keys, in chain order (by j).

    Args:
      keys: ``Events.extra`` keys (or ``to_numpy`` keys with the ``extra/`` prefix removed).

    Returns:
      the stage labels, ordered by their index j.

    Raises:
      ValueError: a history key does not look like ``history/<j>-<name>/<field>`` or a stage
        lacks ``p``, ``pid`` or ``mask``.
    """
    stages: dict[str, set[str]] = {}
    for key in keys:
        if not key.startswith(HISTORY_PREFIX):
            continue
        label, _, field = key[len(HISTORY_PREFIX) :].rpartition("/")
        index, dash, _ = label.partition("-")
        if not (index.isdigit() and dash and field in _FIELDS):
            raise ValueError(
                f"Events.extra[{key!r}]: history keys must look like history/<j>-<name>/<field> with "
                f"field in {list(_FIELDS)}"
            )
        stages.setdefault(label, set()).add(field)
    for label, fields in stages.items():
        missing = sorted({"p", "pid", "mask"} - fields)
        if missing:
            raise ValueError(f"Events.extra: history stage {label!r} lacks {missing}")
    return sorted(stages, key=lambda label: int(label.partition("-")[0]))


def _escape(name: str) -> str:
    if any(c in name for c in "|\n\\"):
        raise ValueError(f"HepMC3 weight/tool names may not contain '|', '\\\\' or newlines, got {name!r}")
    return name


def _level(p: np.ndarray, pid: np.ndarray, mask: np.ndarray, colour: np.ndarray | None) -> tuple[list, ...]:
    """One stage's particles as flat Python lists: (px, py, pz, E, m) rows, pids, colours, counts."""
    p = p.astype(np.float64)
    mask = mask.astype(bool)
    e, px, py, pz = p[..., 0], p[..., 1], p[..., 2], p[..., 3]
    m = np.sqrt(np.maximum(e * e - px * px - py * py - pz * pz, 0.0))
    floats = np.stack([px, py, pz, e, m], axis=-1)[mask].tolist()
    cols = colour[mask].tolist() if colour is not None else None
    return floats, pid[mask].tolist(), cols, mask.sum(axis=1).tolist()


class HepMC3Writer(EventWriter):
    """Streaming, atomic HepMC3 ASCII writer (beams → γ*/Z → recorded stages → final state).

    Args:
      path: output file (conventionally ``*.hepmc``).
      metadata: run metadata; must contain ``sqrt_s`` (GeV); see :class:`diffgen.io.LHEWriter`.
        The writer adds ``history`` (the names of the intermediate stages it writes).
    """

    format = "hepmc3"

    def __init__(self, path: str | os.PathLike[str], metadata: Mapping[str, Any] | None = None) -> None:
        super().__init__(path, metadata)
        self.sqrt_s = require_sqrt_s(self.metadata, "HepMC3")
        self._file: AtomicFile | None = None
        self._slots: dict[str, int] = {}
        self._stages: list[str] | None = None
        e, rs, zero = self.sqrt_s / 2, self.sqrt_s, 0.0
        # The e+e- annihilation into gamma*/Z at rest: exactly the sum of the beams.
        self._head = (
            f"P 1 0 11 {zero:.16e} {zero:.16e} {e:.16e} {e:.16e} {zero:.16e} 4\n"
            f"P 2 0 -11 {zero:.16e} {zero:.16e} {-e:.16e} {e:.16e} {zero:.16e} 4\n"
            "V -1 1 [1,2]\n"
            f"P 3 -1 23 {zero:.16e} {zero:.16e} {zero:.16e} {rs:.16e} {rs:.16e} 2\n"
            "V -2 2 [3]\n"
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
        """Append a chunk of events (any N; memory use is that of the chunk).

        Intermediate stages are taken from the ``history/…`` entries of ``events.extra``
        (module docstring); every chunk must carry the same ones.
        """
        stages = history_stages(events.extra)
        data = self._check_chunk(events)
        if self._stages is None:
            self._stages = stages
            self.metadata["history"] = [label.partition("-")[2] for label in stages]
        if self._file is None:
            self._open()
        assert self._file is not None
        sigma, err = self._running_cross_section() if "cross_section_pb" not in self.metadata else self.cross_section()
        levels = [_level(*(data.get(f"extra/{HISTORY_PREFIX}{label}/{f}") for f in _FIELDS)) for label in stages]
        levels.append(_level(data["p"], data["pid"], data["mask"], data.get("colour")))
        last = len(levels) - 1
        weights = [data["weight"].astype(np.float64)]
        weights += [data[f"extra/{RWGT_PREFIX}{n}"].astype(np.float64) for n in self.weight_names]
        wlines = np.stack(weights, axis=-1).tolist()
        n_events = len(wlines)
        n_before = self.n_events - n_events
        xs_line = f"A 0 GenCrossSection {sigma:.16e} {err:.16e} {self.n_events} {self.n_events}\n"
        pfmt = "P %d %d %d %.16e %.16e %.16e %.16e %.16e %d\n"
        wfmt = "W" + " %.16e" * len(weights) + "\n"
        head = self._head
        out: list[str] = []
        starts = [0] * len(levels)  # row of each level's first particle of the current event
        for i in range(n_events):
            counts = [lv[3][i] for lv in levels]
            out.append(f"E {n_before + i + 1} {2 + last} {3 + sum(counts)}\nU GEV MM\n")
            out.append(wfmt % tuple(wlines[i]))
            out.append(xs_line)
            body: list[str] = []
            first = 4  # particle id of the level's first particle
            for lev, ((floats, pids, cols, _), k) in enumerate(zip(levels, counts, strict=True)):
                j = starts[lev]
                if lev > 0:
                    incoming = ",".join(map(str, range(first - counts[lev - 1], first)))
                    body.append(f"V {-2 - lev} {2 + lev} [{incoming}]\n")
                status = 1 if lev == last else 11 + lev
                for r in range(k):
                    body.append(pfmt % (first + r, -2 - lev, pids[j + r], *floats[j + r], status))
                    if cols is not None:
                        c = cols[j + r]
                        if c[0] or c[1]:
                            out.append(f"A {first + r} flow1 {c[0]}\nA {first + r} flow2 {c[1]}\n")
                starts[lev] = j + k
                first += k
            out.append(head)
            out.extend(body)
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
