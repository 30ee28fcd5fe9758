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
state. Momentum is conserved at every vertex to rounding, except at the detector vertex
(smearing and efficiencies change the momenta) and where a layer flags a failure in its
``extra`` keys (e.g. ``reshuffle_failed``).

Detailed history. When the shower or the hadronization ran with ``record_history=True``
(``diffgen generate`` does so for HepMC3 output), their single vertex is replaced by the
history they recorded (``extra["shower_history/…"]`` and ``extra["hadronization_history/…"]``;
see :func:`diffgen.shower.final_state_shower` and :func:`diffgen.hadronization.hadronize`),
every vertex with the layer's vertex status:

* shower: a vertex mapping the input partons onto the massless partons the shower starts
  from (only if they differ), then one vertex per accepted emission, emitter + spectator →
  emitter′ + spectator′ + new parton (momentum conserved by the spectator recoil,
  arXiv:hep-ph/9605323 eq. 5.3);
* hadronization: g → q q̄ for every gluon; quark end + antiquark end → cluster (PDG 81, the
  code Herwig writes for clusters); cluster → cluster + cluster for each fission; all
  clusters → reshuffled clusters in events where the threshold rule moved momentum between
  them; cluster → primary hadrons; unstable hadron → daughters for each recorded decay.

Particles made and used up inside a layer have status 2 (HepMC3 convention, arXiv:1912.08005:
1 undecayed final-state particle, 2 decayed or intermediate particle, 4 beam, 11–200 generator
specific); the layer's output particles keep the stage status (11 + j, or 1). The records of a
layer are used for the transition into the stage of that name (``shower``, ``hadronization``);
the last transition belongs to ``metadata["layers"][-1]`` if given, else to the one recorded
layer that names no stage. An event whose cluster record is incomplete (record overflow,
unmatched colour) gets the single hadronization vertex. Not recorded: the t and W
resonances of ``ee_to_ttbar_6f``.

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

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

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

__all__ = [
    "CLUSTER_PID",
    "HADRONIZATION_PREFIX",
    "HISTORY_PREFIX",
    "SHOWER_PREFIX",
    "HepMC3Writer",
    "history_stages",
    "write_hepmc3",
]

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


# ------------------------------------------------------------------ the detailed history

#: ``Events.extra`` prefixes of the per-emission shower record and the cluster history
#: (``final_state_shower(record_history=True)``, ``hadronize(record_history=True)``).
SHOWER_PREFIX = "shower_history/"
HADRONIZATION_PREFIX = "hadronization_history/"

_DETAIL = {"shower": SHOWER_PREFIX, "hadronization": HADRONIZATION_PREFIX}

#: PDG code of a cluster (the code Herwig writes for its clusters).
CLUSTER_PID = 81


class _Graph:
    """One event's particles and vertices in creation order (a vertex after its incoming
    particles, a particle after its production vertex), formatted at the end."""

    def __init__(self) -> None:
        # ["P", id, production vertex, pdg, (px, py, pz, E, m), colour] or ["V", id, status, incoming ids]
        self.items: list[list[Any]] = []
        self.n_particles = 0
        self.n_vertices = 0
        self.status: dict[int, int] = {}

    def particle(self, pid: int, p: Any, status: int, colour: Any, vertex: int) -> int:
        e, px, py, pz = (float(x) for x in p)
        m = math.sqrt(max(e * e - px * px - py * py - pz * pz, 0.0))
        self.n_particles += 1
        self.items.append(["P", self.n_particles, vertex, int(pid), (px, py, pz, e, m), colour])
        self.status[self.n_particles] = status
        return self.n_particles

    def vertex(self, status: int, incoming: list[int]) -> int:
        self.n_vertices += 1
        self.items.append(["V", -self.n_vertices, status, incoming])
        return -self.n_vertices

    def lines(self) -> list[str]:
        """The event body: the colour-flow attributes (which the reader expects before the
        particles), then particles and vertices in creation order."""
        attributes, body = [], []
        for item in self.items:
            if item[0] == "V":
                body.append(f"V {item[1]} {item[2]} [{','.join(map(str, item[3]))}]\n")
                continue
            _, pid_, vertex, pdg, floats, colour = item
            body.append(_PFMT % (pid_, vertex, pdg, *floats, self.status[pid_]))
            if colour is not None and (colour[0] or colour[1]):
                attributes.append(f"A {pid_} flow1 {int(colour[0])}\nA {pid_} flow2 {int(colour[1])}\n")
        return attributes + body


_PFMT = "P %d %d %d %.16e %.16e %.16e %.16e %.16e %d\n"


def _assign_layers(stages: list[str], records: set[str], metadata: Mapping[str, Any]) -> dict[int, str]:
    """Which transition (level t−1 → t, t = 1 … len(stages)) each recorded layer made.

    Level t < len(stages) is the stage ``t-<name>``, made by the layer ``name``; the last level
    (the ``Events`` themselves) is made by ``metadata["layers"][-1]`` if given, else by the one
    recorded layer that names no stage.
    """
    m = len(stages)
    names = {t: stages[t].partition("-")[2] for t in range(1, m)}
    layers = metadata.get("layers")
    if m >= 1:
        if layers:
            names[m] = str(list(layers)[-1])
        else:
            unnamed = [r for r in records if r not in names.values()]
            if len(unnamed) > 1:
                raise ValueError(
                    f"Events.extra: the records of {sorted(unnamed)} cannot all belong to the last layer; record the "
                    "particles entering every layer (history/<j>-<name>/…) or set metadata['layers']"
                )
            if unnamed:
                names[m] = unnamed[0]
    return {t: name for t, name in names.items() if name in records}


def _rows(data: Mapping[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    n = len(prefix) + len("extra/")
    return {k[n:]: v for k, v in data.items() if k.startswith("extra/" + prefix)}


class _Level(NamedTuple):
    p: np.ndarray  # [N, P, 4] float64
    pid: np.ndarray
    mask: np.ndarray
    colour: np.ndarray | None


def _shower_vertices(g: _Graph, ids: dict[int, int], lin: Any, lout: Any, rec: Mapping[str, np.ndarray], vstatus: int):
    """Per-emission vertices of one event (module docstring); returns slot → particle id of
    the shower's output partons."""
    in_slots = sorted(ids)
    start = rec["p_start"]
    if any(not np.array_equal(start[s], lin.p[s]) for s in in_slots):
        # The shower starts from massless partons with the same total four-momentum.
        v = g.vertex(vstatus, [ids[s] for s in in_slots])
        for s in in_slots:
            ids[s] = g.particle(lin.pid[s], start[s], 2, _col(lin, s), v)
    n_em = int(np.sum(rec["emitter"] >= 0))
    out_slots = np.flatnonzero(lout.mask).tolist()
    nxt = {s: (lout.p[s], lout.pid[s], _col(lout, s)) for s in out_slots}
    after = []
    for k in reversed(range(n_em)):
        a, b, j = int(rec["emitter"][k]), int(rec["spectator"][k]), int(rec["emitted"][k])
        after.append((k, a, b, [(a, *nxt[a]), (b, *nxt[b]), (j, *nxt.pop(j))]))
        nxt[a] = (rec["p_emitter"][k], rec["pid_emitter"][k], tuple(rec["colour_emitter"][k]))
        nxt[b] = (rec["p_spectator"][k], rec["pid_spectator"][k], tuple(rec["colour_spectator"][k]))
    for _, a, b, outs in reversed(after):
        v = g.vertex(vstatus, [ids[a], ids[b]])
        for s, p, pid, col in outs:
            ids[s] = g.particle(pid, p, 2, col, v)
    return ids


def _col(level: Any, s: int) -> tuple[int, int] | None:
    return None if level.colour is None else (int(level.colour[s][0]), int(level.colour[s][1]))


def _cluster_history_ok(lin: Any, lout: Any, rec: Mapping[str, np.ndarray]) -> bool:
    """Whether one event's cluster history is complete and consistent (else one vertex is written)."""
    if bool(rec["record_overflow"]):
        return False
    partons = np.flatnonzero(lin.mask)
    cq, cqb = rec["cluster_q"], rec["cluster_qbar"]
    q_used = np.bincount(cq[cq >= 0], minlength=len(lin.mask))
    qb_used = np.bincount(cqb[cqb >= 0], minlength=len(lin.mask))
    for s in partons.tolist():
        pid = int(lin.pid[s])
        has_q, has_qb = pid == 21 or pid > 0, pid == 21 or pid < 0
        if q_used[s] != int(has_q) or qb_used[s] != int(has_qb):
            return False
    cmask = rec["cluster_mask"]
    hc = rec["hadron_cluster"][lout.mask]
    if np.any(hc < 0) or np.any(~cmask[hc]):
        return False
    dm = rec["decayed_mask"]
    parents = rec["hadron_parent"][lout.mask]
    parents = parents[parents >= 0]
    return bool(np.all(parents < len(dm)) and np.all(dm[parents]))


def _cluster_vertices(
    g: _Graph, ids: dict[int, int], lin: Any, lout: Any, rec: Mapping[str, np.ndarray], vstatus: int, status_out: int
):
    """Gluon splittings, cluster formation and fission, reshuffling, cluster decays and the
    decays of unstable hadrons of one event (module docstring); returns slot → particle id
    of the output hadrons."""
    q_end: dict[int, int] = {}
    qb_end: dict[int, int] = {}
    for s in sorted(ids):
        pid = int(lin.pid[s])
        if pid == 21:
            v = g.vertex(vstatus, [ids[s]])
            f = int(rec["parton_flavour"][s])
            col = _col(lin, s) or (0, 0)
            q_end[s] = g.particle(f, rec["parton_p_q"][s], 2, (col[0], 0), v)
            qb_end[s] = g.particle(-f, rec["parton_p_qbar"][s], 2, (0, col[1]), v)
        elif pid > 0:
            q_end[s] = ids[s]
        else:
            qb_end[s] = ids[s]
    # Undo the fission rounds from the last: the parent of (k, t) is their sum in slot k.
    cmask = rec["cluster_mask"]
    formed = rec["cluster_p_formed"]
    node_p: list[np.ndarray] = []
    children: dict[int, tuple[int, int]] = {}
    top: dict[int, int] = {}
    leaf: dict[int, int] = {}
    for k in np.flatnonzero(cmask).tolist():
        node_p.append(formed[k])
        top[k] = leaf[k] = len(node_p) - 1
    targets = rec["fission_target"]
    for r in reversed(range(targets.shape[0])):
        for k in np.flatnonzero(targets[r] >= 0).tolist():
            t = int(targets[r][k])
            node_p.append(node_p[top[k]] + node_p[top[t]])
            children[len(node_p) - 1] = (top[k], top.pop(t))
            top[k] = len(node_p) - 1
    particle_of: dict[int, int] = {}

    def grow(node: int, vertex: int) -> None:
        particle_of[node] = g.particle(CLUSTER_PID, node_p[node], 2, None, vertex)
        if node in children:
            v = g.vertex(vstatus, [particle_of[node]])
            for child in children[node]:
                grow(child, v)

    for k, node in top.items():
        v = g.vertex(vstatus, [q_end[int(rec["cluster_q"][k])], qb_end[int(rec["cluster_qbar"][k])]])
        grow(node, v)
    clusters = {k: particle_of[node] for k, node in leaf.items()}
    decaying = rec["cluster_p"]
    if any(not np.array_equal(decaying[k], formed[k]) for k in clusters):
        # The threshold rule's reshuffling: momentum exchanged among all clusters of the event.
        v = g.vertex(vstatus, list(clusters.values()))
        clusters = {k: g.particle(CLUSTER_PID, decaying[k], 2, None, v) for k in clusters}
    # Decay products: final hadrons and recorded decayed hadrons, by parent (−1: the cluster's).
    dm = rec["decayed_mask"]
    out_slots = np.flatnonzero(lout.mask).tolist()
    kids: dict[tuple[str, int], list[tuple[str, int]]] = {}
    for s in out_slots:
        parent = int(rec["hadron_parent"][s])
        key = ("d", parent) if parent >= 0 else ("c", int(rec["hadron_cluster"][s]))
        kids.setdefault(key, []).append(("h", s))
    for d in np.flatnonzero(dm).tolist():
        parent = int(rec["decayed_parent"][d])
        key = ("d", parent) if parent >= 0 else ("c", int(rec["decayed_cluster"][d]))
        kids.setdefault(key, []).append(("d", d))
    out: dict[int, int] = {}

    def emit(item: tuple[str, int], vertex: int) -> None:
        kind, i = item
        if kind == "h":
            out[i] = g.particle(lout.pid[i], lout.p[i], status_out, None, vertex)
            return
        pid = g.particle(rec["decayed_pid"][i], rec["decayed_p"][i], 2, None, vertex)
        v = g.vertex(vstatus, [pid])
        for child in kids.get(("d", i), []):
            emit(child, v)

    for k, cid in clusters.items():
        v = g.vertex(vstatus, [cid])
        for child in kids.get(("c", k), []):
            emit(child, v)
    return out


def _detailed_event(
    levels: list[_Level], i: int, layers: dict[int, str], records: dict[str, dict[str, np.ndarray]], head: _Graph
) -> _Graph:
    """The graph of event ``i``: beams, γ*/Z, the hard process and every later layer, with the
    recorded layers written vertex by vertex."""
    g = head
    last = len(levels) - 1

    def row(level: _Level) -> _Level:
        return _Level(level.p[i], level.pid[i], level.mask[i], None if level.colour is None else level.colour[i])

    lin = row(levels[0])
    ids = {
        s: g.particle(lin.pid[s], lin.p[s], 1 if last == 0 else 11, _col(lin, s), -2)
        for s in np.flatnonzero(lin.mask).tolist()
    }
    for t in range(1, last + 1):
        lout = row(levels[t])
        vstatus, status_out = 2 + t, 1 if t == last else 11 + t
        name = layers.get(t)
        rec = {k: v[i] for k, v in records[name].items()} if name else None
        if name == "shower":
            ids = _shower_vertices(g, ids, lin, lout, rec, vstatus)
            for pid_ in ids.values():
                g.status[pid_] = status_out
        elif name == "hadronization" and _cluster_history_ok(lin, lout, rec):
            ids = _cluster_vertices(g, ids, lin, lout, rec, vstatus, status_out)
        else:
            v = g.vertex(vstatus, [ids[s] for s in sorted(ids)])
            ids = {
                s: g.particle(lout.pid[s], lout.p[s], status_out, _col(lout, s), v)
                for s in np.flatnonzero(lout.mask).tolist()
            }
        lin = lout
    return g


_REQUIRED = {
    "shower": ("p_start", "emitter", "spectator", "emitted", "p_emitter", "p_spectator", "pid_emitter",
               "pid_spectator", "colour_emitter", "colour_spectator"),
    "hadronization": ("parton_p_q", "parton_p_qbar", "parton_flavour", "cluster_q", "cluster_qbar",
                      "fission_target", "cluster_p_formed", "cluster_p", "cluster_mask", "hadron_cluster",
                      "hadron_parent", "decayed_p", "decayed_pid", "decayed_parent", "decayed_cluster",
                      "decayed_mask", "record_overflow"),
}  # fmt: skip


def _check_record(name: str, rec: Mapping[str, np.ndarray], lin: _Level, lout: _Level) -> None:
    """Raise ``ValueError`` if a layer's record lacks keys or does not fit its particles."""
    prefix = _DETAIL[name]
    missing = [prefix + k for k in _REQUIRED[name] if k not in rec]
    if missing:
        raise ValueError(f"Events.extra: the {name} history lacks {missing}")
    if name == "shower":
        want = {"p_start": lout.p.shape, "emitter": lout.pid.shape}
    else:
        want = {"parton_p_q": lin.p.shape, "hadron_cluster": lout.pid.shape}
    for key, shape in want.items():
        if rec[key].shape != shape:
            raise ValueError(
                f"Events.extra[{prefix + key!r}]: shape {list(rec[key].shape)} does not match the particles of "
                f"the {name} layer ({list(shape)}); is the record from another layer?"
            )


def _head_graph(sqrt_s: float) -> _Graph:
    """Beams → γ*/Z (vertex −1) → vertex −2, as in the per-layer history."""
    g = _Graph()
    e = sqrt_s / 2
    b1 = g.particle(11, (e, 0.0, 0.0, e), 4, None, 0)
    b2 = g.particle(-11, (e, 0.0, 0.0, -e), 4, None, 0)
    z = g.particle(23, (sqrt_s, 0.0, 0.0, 0.0), 2, None, g.vertex(1, [b1, b2]))
    g.vertex(2, [z])
    return g


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
        records = {name: _rows(data, prefix) for name, prefix in _DETAIL.items()}
        records = {name: rec for name, rec in records.items() if rec}
        layers = _assign_layers(stages, set(records), self.metadata) if records else {}
        if self._stages is None:
            self._stages = stages
            self.metadata["history"] = [label.partition("-")[2] for label in stages]
            self.metadata["history_detail"] = sorted(layers.values())
        if self._file is None:
            self._open()
        assert self._file is not None
        sigma, err = self._running_cross_section() if "cross_section_pb" not in self.metadata else self.cross_section()
        if layers:
            self._write_detailed(data, stages, layers, records, sigma, err)
            return
        levels = [_level(*(data.get(f"extra/{HISTORY_PREFIX}{label}/{f}") for f in _FIELDS)) for label in stages]
        levels.append(_level(data["p"], data["pid"], data["mask"], data.get("colour")))
        last = len(levels) - 1
        wlines, wfmt, xs_line = self._weight_lines(data, sigma, err)
        n_events = len(wlines)
        n_before = self.n_events - n_events
        pfmt = "P %d %d %d %.16e %.16e %.16e %.16e %.16e %d\n"
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

    def _weight_lines(self, data: Mapping[str, np.ndarray], sigma: float, err: float) -> tuple[list, str, str]:
        """Per-event weight rows (nominal first, then the named alternatives), the ``W`` line format
        and the cross-section attribute line of a chunk."""
        weights = [data["weight"].astype(np.float64)]
        weights += [data[f"extra/{RWGT_PREFIX}{n}"].astype(np.float64) for n in self.weight_names]
        wfmt = "W" + " %.16e" * len(weights) + "\n"
        xs_line = f"A 0 GenCrossSection {sigma:.16e} {err:.16e} {self.n_events} {self.n_events}\n"
        return np.stack(weights, axis=-1).tolist(), wfmt, xs_line

    def _write_detailed(
        self,
        data: Mapping[str, np.ndarray],
        stages: list[str],
        layers: dict[int, str],
        records: dict[str, dict[str, np.ndarray]],
        sigma: float,
        err: float,
    ) -> None:
        """Write a chunk with the recorded layers vertex by vertex (module docstring)."""
        assert self._file is not None
        fields = [[data.get(f"extra/{HISTORY_PREFIX}{label}/{f}") for f in _FIELDS] for label in stages]
        fields.append([data["p"], data["pid"], data["mask"], data.get("colour")])
        levels = [_Level(p.astype(np.float64), pid, mask.astype(bool), colour) for p, pid, mask, colour in fields]
        for t, name in layers.items():
            _check_record(name, records[name], levels[t - 1], levels[t])
        wlines, wfmt, xs_line = self._weight_lines(data, sigma, err)
        n_events = len(wlines)
        n_before = self.n_events - n_events
        out: list[str] = []
        for i in range(n_events):
            g = _detailed_event(levels, i, layers, records, _head_graph(self.sqrt_s))
            out.append(f"E {n_before + i + 1} {g.n_vertices} {g.n_particles}\nU GEV MM\n")
            out.append(wfmt % tuple(wlines[i]))
            out.append(xs_line)
            out.extend(g.lines())
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
