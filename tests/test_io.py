"""Event files: LHE (checked with pylhe), HepMC3 (checked with pyhepmc), parquet round trips, atomicity."""

from __future__ import annotations

import json
import math

import numpy as np
import pyhepmc
import pylhe
import pytest

from diffgen import Events
from diffgen import io as dio

SQRT_S = 91.1876


def _events(n: int, *, seed: int = 0, dtype=np.float64, colour: bool = True, cap: int = 4) -> Events:
    """Hand-made events: random massless-ish particles, holes in the mask, colour and alt weights."""
    rng = np.random.default_rng(seed)
    p3 = rng.normal(scale=10.0, size=(n, cap, 3))
    m = rng.uniform(0.0, 1.0, size=(n, cap))
    e = np.sqrt(np.sum(p3**2, axis=-1) + m**2)
    p = np.concatenate([e[..., None], p3], axis=-1).astype(dtype)
    mask = rng.uniform(size=(n, cap)) < 0.7
    mask[:, 0] = True
    pid = np.where(mask, rng.choice([1, -1, 21, 13, -13, 211], size=(n, cap)), 0).astype(np.int32)
    p = np.where(mask[..., None], p, 0.0).astype(dtype)
    data = {
        "p": p,
        "pid": pid,
        "mask": mask,
        "weight": rng.normal(loc=2.0, scale=0.5, size=n).astype(dtype),
        "extra/rwgt/alpha_s_up": rng.uniform(1.0, 3.0, size=n),
        "extra/rwgt/alpha_s_down": rng.uniform(1.0, 3.0, size=n),
    }
    if colour:
        col = rng.integers(501, 510, size=(n, cap, 2)).astype(np.int32)
        col[rng.uniform(size=(n, cap, 2)) < 0.3] = 0
        data["colour"] = np.where(mask[..., None], col, 0).astype(np.int32)
    return Events.from_numpy(data)


def _compact(ev: Events) -> dict[str, list]:
    """Per event: the real particles' (pid, colour pair, p) in slot order."""
    d = ev.to_numpy()
    out = []
    for i in range(ev.n_events):
        m = d["mask"][i]
        col = d["colour"][i][m] if "colour" in d else np.zeros((int(m.sum()), 2), np.int32)
        out.append((d["pid"][i][m].tolist(), col.tolist(), d["p"][i][m].tolist()))
    return out


META = {
    "sqrt_s": SQRT_S,
    "process": "ee_to_test",
    "seed": 7,
    "params": {"source": {"alpha_em": 0.0078, "m_z": 91.1876}},
}


def test_lhe_every_number_read_back_by_pylhe(tmp_path):
    ev = _events(20)
    path = dio.write_lhe(tmp_path / "a.lhe", ev, META)
    d = ev.to_numpy()
    w = d["weight"]
    sigma, err = w.mean(), w.std(ddof=1) / math.sqrt(len(w))
    lhe = pylhe.LHEFile.fromfile(path)
    info = lhe.init.initInfo
    assert (info.beamA, info.beamB) == (11, -11)
    assert info.energyA == info.energyB == SQRT_S / 2
    assert info.weightingStrategy == -4
    (proc,) = lhe.init.procInfo
    assert proc.xSection == pytest.approx(sigma, rel=1e-14)
    assert proc.error == pytest.approx(err, rel=1e-12)
    assert proc.unitWeight == np.max(np.abs(w))
    events = list(lhe.events)
    assert len(events) == ev.n_events
    for i, (lev, (pids, cols, moms)) in enumerate(zip(events, _compact(ev), strict=True)):
        assert lev.eventinfo.nparticles == len(pids) + 2
        assert lev.eventinfo.weight == w[i]
        assert lev.eventinfo.scale == SQRT_S
        assert lev.eventinfo.aqed == 0.0078
        assert lev.weights == {
            "alpha_s_down": d["extra/rwgt/alpha_s_down"][i],
            "alpha_s_up": d["extra/rwgt/alpha_s_up"][i],
        }
        beams, final = lev.particles[:2], lev.particles[2:]
        assert [(b.id, b.status, b.px, b.py, b.pz, b.e) for b in beams] == [
            (11, -1, 0.0, 0.0, SQRT_S / 2, SQRT_S / 2),
            (-11, -1, 0.0, 0.0, -SQRT_S / 2, SQRT_S / 2),
        ]
        for part, pid, col, mom in zip(final, pids, cols, moms, strict=True):
            assert (part.id, part.status, part.mother1, part.mother2) == (pid, 1, 1, 2)
            assert [part.color1, part.color2] == col
            assert [part.e, part.px, part.py, part.pz] == mom  # exact: 17 significant digits
            m2 = mom[0] ** 2 - mom[1] ** 2 - mom[2] ** 2 - mom[3] ** 2
            assert part.m == pytest.approx(math.sqrt(max(m2, 0.0)), rel=1e-12, abs=1e-6)


def test_lhe_own_reader_round_trip_and_metadata(tmp_path):
    ev = _events(15, seed=1)
    path = dio.write_lhe(tmp_path / "a.lhe", ev, META)
    back, meta = dio.read_lhe(path)
    assert _compact(back) == _compact(ev)
    np.testing.assert_array_equal(np.asarray(back.weight), np.asarray(ev.weight))
    for k in ("rwgt/alpha_s_up", "rwgt/alpha_s_down"):
        np.testing.assert_array_equal(np.asarray(back.extra[k]), np.asarray(ev.extra[k]))
    assert meta["n_events"] == 15 and meta["seed"] == 7 and meta["process"] == "ee_to_test"
    assert meta["params"] == META["params"]
    assert meta["cross_section_pb"] == pytest.approx(float(np.mean(np.asarray(ev.weight))), rel=1e-14)
    assert meta["weight_names"] == ["alpha_s_down", "alpha_s_up"]
    # Chunked reading gives the same events.
    chunks = [c for c, _ in dio.iter_lhe(path, chunk_size=4)]
    assert [c.n_events for c in chunks] == [4, 4, 4, 3]
    assert [e for c in chunks for e in _compact(c)] == _compact(ev)


def test_streamed_lhe_equals_one_shot(tmp_path):
    ev = _events(10, seed=2)
    one = dio.write_lhe(tmp_path / "one.lhe", ev, META)
    with dio.open_writer(tmp_path / "many.lhe", metadata=META) as w:
        for a, b in [(0, 3), (3, 4), (4, 10)]:
            w.write(ev[a:b])
    many = (tmp_path / "many.lhe").read_text()
    # The event blocks are identical byte for byte; σ differs only by summation order.
    assert many.split("</init>")[1] == one.read_text().split("</init>")[1]
    meta_one, meta_many = dio.read_lhe(one)[1], dio.read_lhe(tmp_path / "many.lhe")[1]
    assert meta_many["cross_section_pb"] == pytest.approx(meta_one["cross_section_pb"], rel=1e-14)


def test_hepmc3_read_back_by_pyhepmc(tmp_path):
    ev = _events(12, seed=3)
    path = tmp_path / "a.hepmc"
    with dio.open_writer(path, metadata=META) as w:
        w.write(ev[:5])
        w.write(ev[5:])
    d = ev.to_numpy()
    w_all = d["weight"]
    sigma, err = w_all.mean(), w_all.std(ddof=1) / math.sqrt(len(w_all))
    n_read = 0
    with pyhepmc.open(path) as f:
        for i, (hev, (pids, cols, moms)) in enumerate(zip(f, _compact(ev), strict=True)):
            n_read += 1
            assert hev.event_number == i + 1
            assert hev.weight_names == ["nominal", "alpha_s_down", "alpha_s_up"]
            assert list(hev.weights) == [w_all[i], d["extra/rwgt/alpha_s_down"][i], d["extra/rwgt/alpha_s_up"][i]]
            beams = [p for p in hev.particles if p.status == 4]
            assert [(b.pid, b.momentum.pz, b.momentum.e) for b in beams] == [
                (11, SQRT_S / 2, SQRT_S / 2),
                (-11, -SQRT_S / 2, SQRT_S / 2),
            ]
            final = [p for p in hev.particles if p.status == 1]
            assert [p.pid for p in final] == pids
            assert [(v.id, v.status) for v in hev.vertices] == [(-1, 1), (-2, 2)]
            assert beams[0].end_vertex.id == beams[1].end_vertex.id == -1
            for p, mom, col in zip(final, moms, cols, strict=True):
                assert [p.momentum.e, p.momentum.px, p.momentum.py, p.momentum.pz] == mom
                assert [(q.pid, q.status) for q in p.parents] == [(23, 2)]  # the γ*/Z
                flows = [int(str(p.attributes[k])) if k in p.attributes else 0 for k in ("flow1", "flow2")]
                assert flows == col
            if i >= 5:  # the last chunk carries the final cross section
                assert hev.cross_section.xsec() == pytest.approx(sigma, rel=1e-14)
                assert hev.cross_section.xsec_err() == pytest.approx(err, rel=1e-12)
        run_meta = json.loads(str(hev.run_info.attributes["diffgen"]))
    assert n_read == ev.n_events
    assert run_meta["n_events"] == 12 and run_meta["seed"] == 7
    assert run_meta["cross_section_pb"] == pytest.approx(sigma, rel=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_parquet_round_trip_exact(tmp_path, dtype):
    a, b = _events(9, seed=4, dtype=dtype), _events(5, seed=5, dtype=dtype, cap=3)
    b = b.with_extra(**{"rwgt/alpha_s_up": b.extra["rwgt/alpha_s_up"]})
    path = tmp_path / "a.parquet"
    with dio.open_writer(path, metadata=META) as w:
        w.write(a)
        w.write(b)  # smaller capacity: padded
    back, meta = dio.read_events(path)
    ref = Events.concatenate([a, b]).to_numpy()
    got = back.to_numpy()
    assert sorted(got) == sorted(ref)
    for k in ref:
        assert got[k].dtype == ref[k].dtype, k
        np.testing.assert_array_equal(got[k], ref[k], err_msg=k)
    w_all = ref["weight"].astype(np.float64)
    assert meta["n_events"] == 14
    assert meta["cross_section_pb"] == pytest.approx(w_all.mean(), rel=1e-12)
    assert meta["params"] == META["params"] and meta["seed"] == 7 and meta["diffgen_version"]
    assert [c.n_events for c, _ in dio.iter_events(path, chunk_size=6)] == [6, 6, 2]


def test_explicit_cross_section_wins(tmp_path):
    ev = _events(5, seed=6)
    _, meta = dio.read_events(
        dio.write_events(tmp_path / "a.lhe", ev, {**META, "cross_section_pb": 1234.5, "cross_section_error_pb": 6.5})
    )
    assert (meta["cross_section_pb"], meta["cross_section_error_pb"]) == (1234.5, 6.5)
    assert meta["lhe_init"]["processes"][0]["xsec_pb"] == 1234.5


@pytest.mark.parametrize("suffix", [".lhe", ".hepmc", ".parquet"])
def test_failed_write_leaves_no_file(tmp_path, suffix):
    path = tmp_path / f"a{suffix}"
    with pytest.raises(RuntimeError, match="boom"), dio.open_writer(path, metadata=META) as w:
        w.write(_events(3))
        assert not path.exists()  # nothing under the final name while writing
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="sqrt_s"):
        dio.LHEWriter(tmp_path / "a.lhe", {"process": "x"})
    with pytest.raises(ValueError, match="sqrt_s"):
        dio.HepMC3Writer(tmp_path / "a.hepmc", {"sqrt_s": -1.0})
    with pytest.raises(ValueError, match="format must be one of"):
        dio.open_writer(tmp_path / "a.lhe", "root", metadata=META)
    with pytest.raises(ValueError, match="cannot infer the event-file format"):
        dio.open_writer(tmp_path / "a.txt", metadata=META)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        dio.open_writer(tmp_path / "missing" / "a.lhe", metadata=META)
    with pytest.raises(TypeError, match="diffgen.Events"):
        dio.write_lhe(tmp_path / "a.lhe", {"p": 1}, META)
    with pytest.raises(FileNotFoundError):
        dio.read_events(tmp_path / "nope.parquet")
    (tmp_path / "bad.lhe").write_text("<LesHouchesEvents><init>")
    with pytest.raises(ValueError, match="not a valid LHE"):
        dio.read_lhe(tmp_path / "bad.lhe")
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(ValueError, match="not a valid parquet"):
        dio.read_parquet(tmp_path / "bad.parquet")
    w = dio.ParquetWriter(tmp_path / "c.parquet", META)
    w.write(_events(3, cap=3))
    with pytest.raises(ValueError, match="exceeds the file's capacity"):
        w.write(_events(3, cap=5))
    with pytest.raises(ValueError, match="same extra keys"):
        w.write(_events(3, cap=3).replace(extra={}))
    w.abort()
    assert not (tmp_path / "c.parquet").exists()


def _four(p) -> np.ndarray:
    return np.array([p.momentum.e, p.momentum.px, p.momentum.py, p.momentum.pz])


def check_hepmc_vertices(hev, *, atol: float) -> None:
    """Every vertex conserves four-momentum within ``atol`` GeV; beams feed the γ*/Z at rest."""
    for v in hev.vertices:
        assert v.particles_in and v.particles_out
        np.testing.assert_allclose(
            sum(_four(p) for p in v.particles_in), sum(_four(p) for p in v.particles_out), rtol=0, atol=atol
        )
    v1 = hev.vertices[0]
    assert [(p.pid, p.status) for p in v1.particles_in] == [(11, 4), (-11, 4)]
    ((z,),) = [v1.particles_out]
    assert (z.pid, z.status) == (23, 2)
    assert _four(z).tolist() == [SQRT_S, 0.0, 0.0, 0.0] and z.generated_mass == SQRT_S
    assert z.end_vertex.id == -2


def _split(p: np.ndarray, mask: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each real particle [N,P,4] split collinearly into fractions z and 1 − z (exact conservation):
    returns [N,2P,4] momenta and mask with the daughters of slot j in slots 2j, 2j + 1."""
    out = np.stack([p * z[..., None], p * (1 - z[..., None])], axis=2).reshape(p.shape[0], -1, 4)
    return out, np.repeat(mask, 2, axis=1)


def test_hepmc3_writes_the_history_of_every_stage(tmp_path):
    """Hard process → shower-like → hadronization-like stages: vertices, statuses, momenta, colour."""
    rng = np.random.default_rng(11)
    n = 6
    cos, phi = rng.uniform(-1, 1, n), rng.uniform(0, 2 * np.pi, n)
    sin = np.sqrt(1 - cos**2)
    axis = np.stack([sin * np.cos(phi), sin * np.sin(phi), cos], axis=-1) * SQRT_S / 2
    e = np.full((n, 1), SQRT_S / 2)
    p0 = np.stack([np.concatenate([e, axis], -1), np.concatenate([e, -axis], -1)], axis=1)
    m0 = np.ones((n, 2), bool)
    col0 = np.broadcast_to(np.array([[501, 0], [0, 501]], np.int32), (n, 2, 2))
    p1, m1 = _split(p0, m0, rng.uniform(0.2, 0.8, (n, 2)))
    m1[:, 3] = rng.uniform(size=n) < 0.5  # some events keep the antiquark unsplit: re-merge its slots
    p1[:, 2] = np.where(m1[:, 3, None], p1[:, 2], p0[:, 1])
    p1[:, 3] *= m1[:, 3, None]
    pid1 = np.where(m1, np.array([1, 21, -1, 21]), 0).astype(np.int32)
    col1 = np.where(m1[..., None], np.array([[501, 0], [502, 501], [0, 502], [0, 0]]), 0).astype(np.int32)
    p2, m2 = _split(p1, m1, rng.uniform(0.3, 0.7, (n, 4)))
    pid2 = np.where(m2, 211 * np.array([1, -1] * 4), 0).astype(np.int32)
    final = Events.from_numpy({"p": p2, "pid": pid2, "mask": m2, "weight": np.ones(n)})
    history = {
        "history/0-source/p": p0, "history/0-source/pid": np.array([[1, -1]] * n, np.int32),
        "history/0-source/mask": m0, "history/0-source/colour": np.ascontiguousarray(col0),
        "history/1-shower/p": p1, "history/1-shower/pid": pid1, "history/1-shower/mask": m1,
        "history/1-shower/colour": col1,
    }  # fmt: skip
    ev = final.with_extra(**history)
    path = dio.write_events(tmp_path / "h.hepmc", ev, META)
    with pyhepmc.open(path) as f:
        events = list(f)
    assert len(events) == n
    for i, hev in enumerate(events):
        check_hepmc_vertices(hev, atol=1e-12)
        assert [(v.id, v.status) for v in hev.vertices] == [(-1, 1), (-2, 2), (-3, 3), (-4, 4)]
        stages = [(p0[i], m0[i], [1, -1], col0[i], 11), (p1[i], m1[i], pid1[i], col1[i], 12)]
        stages.append((p2[i], m2[i], pid2[i], np.zeros((8, 2), int), 1))
        for v, (p, m, pid, col, status) in zip(hev.vertices[1:], stages, strict=True):
            out = v.particles_out
            assert [q.status for q in out] == [status] * int(m.sum())
            assert [q.pid for q in out] == np.asarray(pid)[m].tolist()
            assert [_four(q).tolist() for q in out] == p[m].tolist()
            flows = [[int(str(q.attributes[k])) if k in q.attributes else 0 for k in ("flow1", "flow2")] for q in out]
            assert flows == col[m].tolist()
        # Every particle of a stage enters the next stage's vertex; the final particles end nowhere.
        assert hev.vertices[2].particles_in == hev.vertices[1].particles_out
        assert hev.vertices[3].particles_in == hev.vertices[2].particles_out
        assert all(q.end_vertex is None for q in hev.vertices[3].particles_out)
        assert len(hev.particles) == 3 + 2 + int(m1[i].sum()) + int(m2[i].sum())
    meta = json.loads(str(events[0].run_info.attributes["diffgen"]))
    assert meta["history"] == ["source", "shower"]


def test_hepmc3_history_keys_are_checked(tmp_path):
    ev = _events(3, colour=False)
    bad = ev.with_extra(**{"history/source/p": np.asarray(ev.p)})
    with pytest.raises(ValueError, match="history/<j>-<name>/<field>"):
        dio.write_events(tmp_path / "a.hepmc", bad, META)
    lacking = ev.with_extra(**{"history/0-source/p": np.asarray(ev.p)})
    with pytest.raises(ValueError, match=r"lacks \['mask', 'pid'\]"):
        dio.write_events(tmp_path / "a.hepmc", lacking, META)
    assert list(tmp_path.iterdir()) == []
