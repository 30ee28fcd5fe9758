"""HepMC3 event history: per-emission shower vertices, clusters, fission and hadron decays (read by pyhepmc)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pyhepmc
import pytest

from diffgen import io as dio
from diffgen.cli import generate as gen_cli
from diffgen.core import Events, Layer
from diffgen.hadronization import hadronize
from diffgen.hadronization.layer import HISTORY_KEYS as HAD_KEYS
from diffgen.processes import ee_to_qqbar
from diffgen.shower import final_state_shower
from diffgen.shower.layer import HISTORY_KEYS as SHOWER_KEYS

SQRT_S = 91.1876
N = 6
SHOWER_CONFIG = {"capacity": 16}
HAD_CONFIG = {"n_fission_rounds": 2, "n_decay_rounds": 3}
META = {"sqrt_s": SQRT_S, "process": "ee_to_qqbar", "layers": ["shower", "hadronization"]}


def _recording(on: Layer, off: Layer, plain: dict) -> Layer:
    """The layer ``on`` (with records); each call also runs ``off`` (without) on the same params,
    key and events and keeps its output in ``plain``. Both run in one compiled program: with
    and without the record path, the same computation must give the same bits."""
    both = jax.jit(lambda params, key, events: (on.apply(params, key, events), off.apply(params, key, events)))

    def apply(params, key, events):
        out, plain["events"] = both(params, key, events)
        return out

    return Layer(init=on.init, apply=apply)


class _Source:
    """A source whose ``sample`` is jitted (``_sample_with_history`` calls ``source.sample``)."""

    def __init__(self, source):
        self.sample = jax.jit(source.sample, static_argnums=2)


def _stage(events: Events, label: str) -> Events:
    """The particles of a recorded stage ``history/<label>/…`` as ``Events``."""
    x = events.extra
    return Events(
        p=x[f"history/{label}/p"],
        weight=events.weight,
        mask=x[f"history/{label}/mask"],
        pid=x[f"history/{label}/pid"],
        colour=x[f"history/{label}/colour"],
    )


@pytest.fixture(scope="module")
def sample():
    """``diffgen generate``'s HepMC3 recording (the particles entering each layer, the layers with
    their history records) and the same layers without records on the same inputs (float64)."""
    key = jax.random.key(7)
    source = ee_to_qqbar(SQRT_S)
    # Smaller than generate's defaults to keep compilation short; generate's wiring is checked
    # by test_generate_builds_recording_layers.
    plain_shower, plain_had = {}, {}
    shower = _recording(
        final_state_shower(**SHOWER_CONFIG, record_history=True), final_state_shower(**SHOWER_CONFIG), plain_shower
    )
    had = _recording(hadronize(**HAD_CONFIG, record_history=True), hadronize(**HAD_CONFIG), plain_had)
    stages = [("shower", shower), ("hadronization", had)]
    params = {"source": source.init(key), "shower": shower.init(key), "hadronization": had.init(key)}
    events = gen_cli._sample_with_history(_Source(source), stages)(params, jax.random.fold_in(key, 1), N)
    return {
        "events": events,
        "showered": _stage(events, "1-shower"),
        "shower_off": plain_shower["events"],
        "had_off": plain_had["events"],
    }


def _equal(a, b, err_msg: str) -> None:
    """Integers and flags bit for bit; floats to rounding (float64: the program with records may
    contract multiply-adds differently, a few ulps, never a different decision)."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape, err_msg
    if np.issubdtype(a.dtype, np.floating):
        scale = float(np.max(np.abs(a))) if a.size else 1.0
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * scale, err_msg=err_msg)
    else:
        np.testing.assert_array_equal(a, b, err_msg=err_msg)


def _same(a: Events, b: Events, *, ignore_prefix: str) -> None:
    for name in ("p", "weight", "mask", "pid"):
        _equal(getattr(a, name), getattr(b, name), name)
    if a.colour is not None or b.colour is not None:
        np.testing.assert_array_equal(np.asarray(a.colour), np.asarray(b.colour))
    # a may carry the previous layer's keys (the partons given to b were built without them)
    assert {k for k in a.extra if k.startswith(ignore_prefix)}.isdisjoint(b.extra)
    assert set(b.extra) <= set(a.extra)
    for k in b.extra:
        _equal(a.extra[k], b.extra[k], k)


def _four(p) -> np.ndarray:
    return np.array([p.momentum.e, p.momentum.px, p.momentum.py, p.momentum.pz])


def test_records_leave_the_events_bit_identical(sample):
    """record_history=True adds keys only: pids, colours, masks and flags are bit-identical, momenta,
    weights and every other float equal to rounding."""
    events = sample["events"]
    showered, off = sample["showered"], sample["shower_off"]
    for name in ("p", "mask", "pid", "colour"):
        _equal(getattr(showered, name), getattr(off, name), name)
    _equal(events.weight, off.weight, "weight")
    # The shower's keys reach the final events through the hadronization, which keeps its input's extra.
    hadrons = events.replace(extra={k: v for k, v in events.extra.items() if not k.startswith("history/")})
    assert {k for k in hadrons.extra if k.startswith("shower_history/")} == set(SHOWER_KEYS)
    assert {k for k in hadrons.extra if k.startswith("hadronization_history/")} == set(HAD_KEYS)
    for k in off.extra:
        _equal(hadrons.extra[k], off.extra[k], k)
    _same(hadrons, sample["had_off"], ignore_prefix="hadronization_history/")
    # Emission records: one row per accepted emission, padding -1 after.
    x = {k: np.asarray(v) for k, v in hadrons.extra.items()}
    n_em = x["shower_n_emissions"]
    rows = np.arange(x["shower_history/emitter"].shape[1])[None, :]
    for name in ("emitter", "spectator", "emitted"):
        assert np.array_equal(x[f"shower_history/{name}"] >= 0, rows < n_em[:, None])


def _walk_to_hard_process(particle) -> list:
    """Ancestors of a particle along first incoming particles, up to the γ*/Z."""
    chain = []
    while particle.production_vertex is not None and particle.production_vertex.particles_in:
        vertex = particle.production_vertex
        # Prefer the cluster/parton line over a spectator: the first incoming particle.
        particle = vertex.particles_in[0]
        chain.append(particle)
    return chain


def test_hepmc3_detailed_history(sample, tmp_path):
    """Every vertex conserves four-momentum; status-1 particles are the final state, once; the
    emission, cluster and decay vertices are consistent with the layers' records."""
    events = sample["events"]
    path = dio.write_events(tmp_path / "h.hepmc", events, META)
    with pyhepmc.open(path) as f:
        read = list(f)
    assert len(read) == N
    data = events.to_numpy()
    x = {k[len("extra/") :]: v for k, v in data.items() if k.startswith("extra/")}
    worst = 0.0
    for i, hev in enumerate(read):
        for v in hev.vertices:
            assert v.particles_in and v.particles_out, v.id
            assert all(q.end_vertex == v for q in v.particles_in)
            assert all(q.production_vertex == v for q in v.particles_out)
            p_in = sum(_four(q) for q in v.particles_in)
            p_out = sum(_four(q) for q in v.particles_out)
            rel = np.max(np.abs(p_in - p_out)) / p_in[0]
            worst = max(worst, rel)
            assert rel < 1e-9, (i, v.id, rel)
        # Status 1 = the final state, each particle once and nothing else.
        final = [q for q in hev.particles if q.status == 1]
        assert all(q.end_vertex is None for q in final)
        assert all(q.end_vertex is not None for q in hev.particles if q.status != 1)
        got = sorted((q.pid, *_four(q).tolist()) for q in final)
        m = data["mask"][i]
        want = sorted(zip(data["pid"][i][m].tolist(), *data["p"][i][m].T.tolist(), strict=True))
        assert got == [tuple(w) for w in want]
        # Shower: one 2 -> 3 vertex per accepted emission, all of vertex status 3 (the first layer).
        shower = [v for v in hev.vertices if v.status == 3]
        branchings = [v for v in shower if (len(v.particles_in), len(v.particles_out)) == (2, 3)]
        assert len(branchings) == int(x["shower_n_emissions"][i])
        assert len(shower) - len(branchings) <= 1  # the massless start, if the input was massive
        # Hadronization: every gluon of the shower's output splits into q qbar.
        gluons = [q for q in hev.particles if q.status == 12 and q.pid == 21]
        assert len(gluons) == int(np.sum(x["history/1-shower/pid"][i] == 21))
        for g in gluons:
            q, qbar = g.end_vertex.particles_out
            assert q.pid == -qbar.pid and 1 <= q.pid <= 3 and g.end_vertex.particles_in == [g]
        # Clusters (pid 81, status 2) and unstable-hadron decays.
        clusters = [q for q in hev.particles if q.pid == dio.hepmc.CLUSTER_PID]
        assert clusters and all(q.status == 2 for q in clusters)
        decaying = [q for q in clusters if all(c.pid != 81 for c in q.end_vertex.particles_out)]
        assert len(decaying) == int(x["n_clusters"][i])
        formed = [q for q in clusters if all(abs(a.pid) <= 5 for a in q.production_vertex.particles_in)]
        assert len(formed) == int(np.sum(x["hadronization_history/cluster_q"][i] >= 0))
        n_fission = int(np.sum(x["hadronization_history/fission_target"][i] >= 0))
        assert (
            sum(
                1
                for q in clusters
                if len(q.end_vertex.particles_in) == 1 and [c.pid for c in q.end_vertex.particles_out] == [81, 81]
            )
            == n_fission
        )
        n_decays = int(np.sum(x["hadronization_history/decayed_mask"][i]))
        hadron_decays = [
            v for v in hev.vertices if len(v.particles_in) == 1 and v.particles_in[0].pid not in (81, 21, 23)
        ]
        assert len(hadron_decays) == n_decays
        # Every final hadron descends from a cluster and, through the shower, a hard-process quark.
        for q in final:
            chain = _walk_to_hard_process(q)
            assert any(a.pid == 81 for a in chain)
            assert chain[-3].status == 11 and 1 <= abs(chain[-3].pid) <= 5
            assert (chain[-2].pid, chain[-2].status, chain[-1].status) == (23, 2, 4)
    assert worst < 1e-9


def test_hepmc3_without_records_keeps_one_vertex_per_layer(sample, tmp_path):
    """Without the shower/hadronization records the writer falls back to one vertex per layer."""
    events = sample["events"]
    plain = events.replace(
        extra={k: v for k, v in events.extra.items() if not k.startswith(("shower_history/", "hadronization_history/"))}
    )
    path = dio.write_events(tmp_path / "p.hepmc", plain, META)
    with pyhepmc.open(path) as f:
        read = list(f)
    for hev in read:
        assert [v.status for v in hev.vertices] == [1, 2, 3, 4]


def test_hepmc3_bad_records_are_errors(sample, tmp_path):
    events = sample["events"]
    lacking = events.replace(extra={k: v for k, v in events.extra.items() if k != "shower_history/emitted"})
    with pytest.raises(ValueError, match=r"shower history lacks \['shower_history/emitted'\]"):
        dio.write_events(tmp_path / "a.hepmc", lacking, META)
    wrong = events.with_extra(**{"hadronization_history/parton_p_q": np.zeros((N, 3, 4))})
    with pytest.raises(ValueError, match="parton_p_q.*does not match"):
        dio.write_events(tmp_path / "b.hepmc", wrong, META)
    with pytest.raises(TypeError, match="record_history must be a bool"):
        final_state_shower(record_history=1)
    with pytest.raises(TypeError, match="record_history must be a bool"):
        hadronize(record_history="yes")
    assert list(tmp_path.iterdir()) == []


def test_generate_builds_recording_layers():
    """``diffgen generate`` builds the shower and hadronization with their records (traced, not compiled)."""
    key = jax.random.key(0)
    p = jnp.zeros((2, 2, 4))
    pid = jnp.tile(jnp.asarray([1, -1], jnp.int32), (2, 1))
    colour = jnp.tile(jnp.asarray([[501, 0], [0, 501]], jnp.int32), (2, 1, 1))
    partons = Events(p=p, weight=jnp.ones(2), mask=jnp.ones((2, 2), bool), pid=pid, colour=colour)
    for name, keys in (("shower", SHOWER_KEYS), ("hadronization", HAD_KEYS)):
        prefix = keys[0].partition("/")[0] + "/"
        layer = gen_cli.build_layer(name, "smearing", jnp.float64, record_history=True)
        out = jax.eval_shape(lambda prm, e, layer=layer: layer.apply(prm, key, e), layer.init(key), partons)
        assert {k for k in out.extra if k.startswith(prefix)} == set(keys), name


def test_hepmc3_incomplete_cluster_record_falls_back_per_event(sample, tmp_path):
    """An event whose decay record overflowed gets one hadronization vertex; the others keep the detail."""
    events = sample["events"]
    flag = np.zeros(N, bool)
    flag[0] = True
    path = dio.write_events(
        tmp_path / "f.hepmc", events.with_extra(**{"hadronization_history/record_overflow": flag}), META
    )
    with pyhepmc.open(path) as f:
        read = list(f)
    n_partons = np.asarray(events.extra["history/1-shower/mask"]).sum(axis=1)
    n_hadrons = np.asarray(events.mask).sum(axis=1)
    for i, hev in enumerate(read):
        had = [v for v in hev.vertices if v.status == 4]
        if i == 0:
            assert [(len(v.particles_in), len(v.particles_out)) for v in had] == [(n_partons[0], n_hadrons[0])]
            assert all(q.status == 12 for q in had[0].particles_in)
        else:
            assert len(had) > 1 and any(q.pid == dio.hepmc.CLUSTER_PID for q in hev.particles)


def test_hepmc3_detailed_history_in_front_of_a_detector(sample, tmp_path):
    """With a layer after the hadronization the hadrons are status 13 and enter its single vertex."""
    events = sample["events"]
    hadrons = {f"history/2-hadronization/{f}": getattr(events, f) for f in ("p", "pid", "mask")}
    detected = events.replace(p=events.p * 1.01).with_extra(**hadrons)
    path = dio.write_events(tmp_path / "d.hepmc", detected, {**META, "layers": ["shower", "hadronization", "detector"]})
    with pyhepmc.open(path) as f:
        read = list(f)
    for i, hev in enumerate(read):
        (det,) = [v for v in hev.vertices if v.status == 5]
        assert sorted(q.id for q in det.particles_in) == sorted(q.id for q in hev.particles if q.status == 13)
        assert len(det.particles_in) == len(det.particles_out) == int(np.asarray(events.mask[i]).sum())
        assert all(q.status == 1 for q in det.particles_out)
        assert sum(1 for v in hev.vertices if v.status == 3 and len(v.particles_out) == 3) == int(
            events.extra["shower_n_emissions"][i]
        )
