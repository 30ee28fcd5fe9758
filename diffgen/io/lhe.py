"""Les Houches Event files, version 3 (arXiv:hep-ph/0609017, arXiv:1405.1067 for ``<rwgt>``).

diffgen ``Events`` hold final-state particles in (E, px, py, pz) order. The writer adds the
two incoming beams (e⁻ along +z first, e⁺ along −z, each with energy √s/2, status −1) and
writes every particle as ``IDUP ISTUP MOTHUP1 MOTHUP2 ICOLUP1 ICOLUP2 px py pz E m VTIMUP
SPINUP`` with m = sqrt(max(E² − |p|², 0)). Final-state particles get status 1 and mothers
(1, 2). Momenta and weights are written with 17 significant digits, so float64 values
survive a write/read cycle exactly.

The header carries the run metadata as JSON in ``<diffgen>`` (diffgen version, process,
parameters, seed, cross section, number of events) and, when the events carry alternative
weights (``extra["rwgt/<name>"]``), an ``<initrwgt>`` block naming them; each event then
has a ``<rwgt>`` block with one ``<wgt id="name">`` per alternative weight.

The cross section, its error, the largest weight and the number of events are only known
at the end of a streamed run: they are written as fixed-width fields that :meth:`close`
fills in before the file is renamed into place.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from diffgen.core import Events
from diffgen.io._atomic import AtomicFile
from diffgen.io._base import (
    NUM_WIDTH,
    RESULT_KEYS,
    RWGT_PREFIX,
    EventWriter,
    find_param,
    json_with_slots,
    require_sqrt_s,
    slot_value,
)

__all__ = ["LHEWriter", "iter_lhe", "read_lhe", "write_lhe"]

_ELECTRON = 11


class LHEWriter(EventWriter):
    """Streaming, atomic LHE v3 writer.

    Args:
      path: output file (conventionally ``*.lhe``).
      metadata: run metadata; must contain ``sqrt_s`` (GeV). Recognised keys: ``process``
        (str), ``params`` (nested dict), ``seed`` (int), ``cross_section_pb`` and
        ``cross_section_error_pb`` (else computed from the weights), ``unweighted`` (bool:
        IDWTUP = 3 instead of −4), any other JSON-serialisable entries.

    Example:
      >>> with LHEWriter("out.lhe", {"sqrt_s": 91.1876, "process": "ee_to_mumu"}) as w:
      ...     for chunk in chunks:
      ...         w.write(chunk)
    """

    format = "lhe"

    def __init__(self, path: str | os.PathLike[str], metadata: Mapping[str, Any] | None = None) -> None:
        super().__init__(path, metadata)
        self.sqrt_s = require_sqrt_s(self.metadata, "LHE")
        self._file: AtomicFile | None = None
        self._slots: dict[str, int] = {}
        self._scale = self.sqrt_s
        self._aqed = find_param(self.metadata.get("params"), "alpha_em") or -1.0
        self._aqcd = find_param(self.metadata.get("params"), "alpha_s") or -1.0
        e = self.sqrt_s / 2
        beam = "{pid:d} -1 0 0 0 0 {px:.16e} {py:.16e} {pz:.16e} {e:.16e} {m:.16e} 0. 9.\n"
        self._beams = beam.format(pid=_ELECTRON, px=0.0, py=0.0, pz=e, e=e, m=0.0) + beam.format(
            pid=-_ELECTRON, px=0.0, py=0.0, pz=-e, e=e, m=0.0
        )
        self._particle = "%d 1 1 2 %d %d %.16e %.16e %.16e %.16e %.16e 0. 9.\n"

    def _open(self) -> None:
        self._file = AtomicFile(self.path, "wb")
        f = self._file.file
        head, slots = json_with_slots(self.metadata, indent=1)
        out = bytearray(b'<LesHouchesEvents version="3.0">\n<header>\n<diffgen>\n')
        self._slots = {k: len(out) + v for k, v in slots.items()}
        out += head
        out += b"\n</diffgen>\n"
        names = self.weight_names
        if names:
            out += b'<initrwgt>\n<weightgroup name="diffgen">\n'
            for name in names:
                out += f"<weight id={quoteattr(name)}>{escape(name)}</weight>\n".encode()
            out += b"</weightgroup>\n</initrwgt>\n"
        out += b"</header>\n<init>\n"
        idwtup = 3 if self.metadata.get("unweighted") else -4
        e = self.sqrt_s / 2
        out += f"{_ELECTRON} {-_ELECTRON} {e:.16e} {e:.16e} 0 0 0 0 {idwtup} 1\n".encode()
        for key in ("init_xs", "init_err", "init_xmax"):
            self._slots[key] = len(out)
            out += b" " * NUM_WIDTH + b" "
        out += b"1\n</init>\n"
        f.write(bytes(out))

    def write(self, events: Events) -> None:
        """Append a chunk of events (any N; memory use is that of the chunk)."""
        data = self._check_chunk(events)
        if self._file is None:
            self._open()
        assert self._file is not None
        p = data["p"].astype(np.float64)
        mask = data["mask"]
        e, px, py, pz = p[..., 0], p[..., 1], p[..., 2], p[..., 3]
        m = np.sqrt(np.maximum(e * e - px * px - py * py - pz * pz, 0.0))
        colour = data.get("colour")
        if colour is None:
            colour = np.zeros((*mask.shape, 2), np.int32)
        ints = np.stack([data["pid"], colour[..., 0], colour[..., 1]], axis=-1)[mask].tolist()
        floats = np.stack([px, py, pz, e, m], axis=-1)[mask].tolist()
        counts = mask.sum(axis=1).tolist()
        weights = data["weight"].astype(np.float64).tolist()
        names = self.weight_names
        alt = [data[f"extra/{RWGT_PREFIX}{n}"].astype(np.float64).tolist() for n in names]
        rwgt_fmt = ""
        if names:
            rwgt_fmt = "<rwgt>\n" + "".join(f"<wgt id={quoteattr(n)}> %.16e </wgt>\n" for n in names) + "</rwgt>\n"
        pfmt = self._particle
        head_fmt = "<event>\n%d 1 %.16e %.16e %.16e %.16e\n"
        scale, aqed, aqcd, beams = self._scale, self._aqed, self._aqcd, self._beams
        out: list[str] = []
        j = 0
        for i, k in enumerate(counts):
            out.append(head_fmt % (k + 2, weights[i], scale, aqed, aqcd))
            out.append(beams)
            for r in range(j, j + k):
                a = ints[r]
                out.append(pfmt % (a[0], a[1], a[2], *floats[r]))
            j += k
            if names:
                out.append(rwgt_fmt % tuple(w[i] for w in alt))
            out.append("</event>\n")
        self._file.file.write("".join(out).encode())

    def close(self) -> Path:
        """Fill in σ, δσ, max |w| and N, then publish the file atomically."""
        if self._closed:
            return self.path
        if self._file is None:
            self._open()
        assert self._file is not None
        meta = self._final_metadata()
        f = self._file.file
        f.write(b"</LesHouchesEvents>\n")
        values = {key: slot_value(key, meta[key]) for key in RESULT_KEYS}
        values["init_xs"] = slot_value("init", meta["cross_section_pb"])
        values["init_err"] = slot_value("init", meta["cross_section_error_pb"])
        values["init_xmax"] = slot_value("init", self._max_abs_w)
        for key, offset in self._slots.items():
            f.seek(offset)
            f.write(values[key])
        f.seek(0, os.SEEK_END)
        self._file.commit()
        self._closed = True
        return self.path


def write_lhe(path: str | os.PathLike[str], events: Events, metadata: Mapping[str, Any] | None = None) -> Path:
    """Write one ``Events`` batch to an LHE v3 file atomically (see :class:`LHEWriter`).

    Args:
      path: output file (conventionally ``*.lhe``).
      events: the events; momenta [N, P, 4] in GeV, (E, px, py, pz), weights [N] in pb.
      metadata: run metadata; must contain ``sqrt_s`` (GeV); see :class:`LHEWriter`.

    Returns:
      the path of the written file.
    """
    with LHEWriter(path, metadata) as w:
        w.write(events)
    return w.path


# ---------------------------------------------------------------------------- reading


def _parse_init(text: str) -> dict[str, Any]:
    lines = [ln.split() for ln in text.strip().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines or len(lines[0]) < 10:
        raise ValueError("LHE <init>: expected the beam line IDBMUP1 IDBMUP2 EBMUP1 EBMUP2 ... IDWTUP NPRUP")
    b = lines[0]
    procs = [{"xsec_pb": float(x[0]), "error_pb": float(x[1]), "xmax": float(x[2]), "id": int(x[3])} for x in lines[1:]]
    return {
        "beam_pids": [int(b[0]), int(b[1])],
        "beam_energies": [float(b[2]), float(b[3])],
        "idwtup": int(b[8]),
        "processes": procs,
    }


def _parse_event(
    elem: ET.Element,
) -> tuple[float, list[tuple[int, int, int, float, float, float, float]], dict[str, float]]:
    lines = [ln for ln in (elem.text or "").strip().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise ValueError("LHE <event>: empty event block")
    head = lines[0].split()
    nup, weight = int(head[0]), float(head[2])
    particles = []
    for ln in lines[1 : 1 + nup]:
        x = ln.split()
        if int(x[1]) != 1:  # keep final-state particles only (beams −1, intermediates 2)
            continue
        particles.append((int(x[0]), int(x[4]), int(x[5]), float(x[9]), float(x[6]), float(x[7]), float(x[8])))
    alt: dict[str, float] = {}
    rw = elem.find("rwgt")
    if rw is not None:
        for w in rw.findall("wgt"):
            alt[w.get("id", "")] = float((w.text or "").strip())
    return weight, particles, alt


def _to_events(rows: list[Any], dtype: Any) -> Events:
    n = len(rows)
    cap = max((len(r[1]) for r in rows), default=0)
    p = np.zeros((n, cap, 4), np.float64)
    pid = np.zeros((n, cap), np.int32)
    colour = np.zeros((n, cap, 2), np.int32)
    mask = np.zeros((n, cap), bool)
    weight = np.zeros(n, np.float64)
    names = sorted(rows[0][2]) if rows else []
    alt = {f"extra/{RWGT_PREFIX}{k}": np.zeros(n, np.float64) for k in names}
    for i, (w, parts, aw) in enumerate(rows):
        weight[i] = w
        k = len(parts)
        if k:
            arr = np.asarray(parts, np.float64)
            pid[i, :k] = arr[:, 0]
            colour[i, :k] = arr[:, 1:3]
            p[i, :k] = arr[:, 3:7]
            mask[i, :k] = True
        if sorted(aw) != names:
            raise ValueError(f"LHE event {i}: alternative weights {sorted(aw)} differ from the first event's {names}")
        for k_name, v in aw.items():
            alt[f"extra/{RWGT_PREFIX}{k_name}"][i] = v
    data: dict[str, Any] = {"p": p, "pid": pid, "mask": mask, "weight": weight, **alt}
    if colour.any():
        data["colour"] = colour
    return Events.from_numpy(data, dtype=dtype)


def _lhe_metadata(header: ET.Element | None, init: dict[str, Any] | None) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if header is not None:
        node = header.find("diffgen")
        if node is not None and (node.text or "").strip():
            meta.update(json.loads(node.text))
    if init is not None:
        meta["lhe_init"] = init
        if "sqrt_s" not in meta:
            meta["sqrt_s"] = sum(init["beam_energies"])
        if init["processes"] and "cross_section_pb" not in meta:
            meta["cross_section_pb"] = sum(p["xsec_pb"] for p in init["processes"])
            meta["cross_section_error_pb"] = float(np.sqrt(sum(p["error_pb"] ** 2 for p in init["processes"])))
    return meta


def iter_lhe(
    path: str | os.PathLike[str], chunk_size: int = 100_000, *, dtype: Any = np.float64
) -> Iterator[tuple[Events, dict[str, Any]]]:
    """Read an LHE file in chunks of at most ``chunk_size`` events (constant memory).

    Args:
      path: LHE v1–v3 file (diffgen's or another generator's).
      chunk_size: largest number of events per chunk, >= 1.
      dtype: floating dtype of the returned momenta and weights.

    Yields:
      ``(events, metadata)`` per chunk; ``events`` hold the final-state (status 1)
      particles in (E, px, py, pz) order, alternative weights as ``extra["rwgt/<id>"]``.
    """
    if int(chunk_size) < 1:
        raise ValueError(f"iter_lhe: chunk_size must be >= 1, got {chunk_size}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LHE file {str(path)!r} does not exist")
    header = None
    init = None
    rows: list[Any] = []
    root = None
    try:
        for event, elem in ET.iterparse(path, events=("start", "end")):
            if event == "start":
                if root is None:
                    root = elem
                continue
            if elem.tag == "header":
                header = elem
            elif elem.tag == "init":
                init = _parse_init(elem.text or "")
            elif elem.tag == "event":
                rows.append(_parse_event(elem))
                elem.clear()
                if root is not None:
                    root.clear()  # drop the parsed events from the tree: constant memory
                if len(rows) >= chunk_size:
                    yield _to_events(rows, dtype), _lhe_metadata(header, init)
                    rows = []
    except ET.ParseError as err:
        raise ValueError(f"{str(path)!r} is not a valid LHE (XML) file: {err}") from None
    if rows or init is None:
        if init is None:
            raise ValueError(f"{str(path)!r} is not an LHE file: no <init> block")
        yield _to_events(rows, dtype), _lhe_metadata(header, init)


def read_lhe(path: str | os.PathLike[str], *, dtype: Any = np.float64) -> tuple[Events, dict[str, Any]]:
    """Read a whole LHE file.

    Args:
      path: LHE v1–v3 file (diffgen's or another generator's).
      dtype: floating dtype of the returned momenta and weights.

    Returns:
      ``(events, metadata)``: final-state particles only (status 1) in (E, px, py, pz) order,
      padded to the largest multiplicity; ``colour`` when any particle has a colour tag;
      ``<rwgt>`` weights as ``extra["rwgt/<id>"]``. ``metadata`` is the ``<diffgen>`` header
      (if present) plus ``lhe_init`` (beams, IDWTUP, processes with σ, δσ in pb).
    """
    chunks = list(iter_lhe(path, chunk_size=1 << 62, dtype=dtype))
    return chunks[0]
