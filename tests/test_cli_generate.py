"""``diffgen generate``: files read by pylhe/pyhepmc, run files, errors, interrupted runs (subprocesses)."""

from __future__ import annotations

import contextlib
import math
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pyhepmc
import pylhe
import pytest

from diffgen import Events, Layer, chain
from diffgen import io as dio
from diffgen.cli import generate as gen_cli
from diffgen.cli import main
from diffgen.config import effective_config_path, load_run_config
from diffgen.core import stage_key

DIFFGEN = [sys.executable, "-m", "diffgen.cli"]


def _settings(**changes):
    return {**gen_cli.DEFAULTS, **changes}


def _reference(cfg) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The events ``generate`` writes for ``cfg``, made in-process: p [N,P,4], pid [N,P], weight [N]."""
    gen = gen_cli.Generation(cfg)
    chunks = [gen.chunk(i).to_numpy() for i in range(gen.n_chunks)]
    return tuple(np.concatenate([c[k] for c in chunks]) for k in ("p", "pid", "weight"))


def test_generate_lhe_subprocess_read_by_pylhe(tmp_path):
    out = tmp_path / "mumu.lhe"
    n, sqrt_s = 300, 91.0
    proc = subprocess.run(
        [*DIFFGEN, "generate", "--n", str(n), "--sqrt-s", str(sqrt_s), "-o", str(out), "--seed", "5",
         "--chunk-size", "128", "--quiet"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # --quiet
    p, pid, w = _reference(_settings(n=n, sqrt_s=sqrt_s, seed=5, chunk_size=128))
    lhe = pylhe.LHEFile.fromfile(out)
    (proc_info,) = lhe.init.procInfo
    assert lhe.init.initInfo.energyA == lhe.init.initInfo.energyB == sqrt_s / 2
    # σ = mean weight with its MC error; the Born μμ cross section near the Z pole is ≈ 2 nb.
    assert proc_info.xSection == pytest.approx(w.mean(), rel=1e-13)
    assert proc_info.error == pytest.approx(w.std(ddof=1) / math.sqrt(n), rel=1e-9)
    events = list(lhe.events)
    assert len(events) == n
    for i, ev in enumerate(events):
        assert ev.eventinfo.nparticles == 4 and len(ev.particles) == 4
        assert ev.eventinfo.weight == w[i]
        final = ev.particles[2:]
        assert [q.id for q in final] == pid[i].tolist() == [13, -13]
        assert [[q.e, q.px, q.py, q.pz] for q in final] == p[i].tolist()
        for q in final:
            assert q.m == pytest.approx(0.1056583755, rel=1e-6)  # muon mass, PDG
    cfg = load_run_config(effective_config_path(out))["generate"]
    assert cfg["n"] == n and cfg["seed"] == 5 and cfg["format"] == "lhe"
    assert cfg["params"]["source"]["sqrt_s"] == sqrt_s


def test_generate_hepmc3_read_by_pyhepmc(tmp_path):
    out = tmp_path / "mumu.hepmc"
    assert main(["generate", "--n", "50", "-o", str(out), "--seed", "2", "--quiet"]) == 0
    p, pid, w = _reference(_settings(n=50, seed=2))
    with pyhepmc.open(out) as f:
        events = list(f)
    assert len(events) == 50
    for i, ev in enumerate(events):
        final = [q for q in ev.particles if q.status == 1]
        assert [q.pid for q in final] == pid[i].tolist()
        assert [[q.momentum.e, q.momentum.px, q.momentum.py, q.momentum.pz] for q in final] == p[i].tolist()
        assert list(ev.weights) == [w[i]]
        assert ev.cross_section.xsec() == pytest.approx(w.mean(), rel=1e-13)
        # e+e- (status 4) -> gamma*/Z (status 2) -> mu-mu+ (status 1), four-momentum conserved at both vertices.
        _check_vertices(ev, 91.1876, atol=1e-11)
        assert [(v.id, v.status, len(v.particles_in), len(v.particles_out)) for v in ev.vertices] == [
            (-1, 1, 2, 1),
            (-2, 2, 1, 2),
        ]
        assert ev.vertices[1].particles_out == final
        assert len(ev.particles) == 5


def _four(q) -> np.ndarray:
    return np.array([q.momentum.e, q.momentum.px, q.momentum.py, q.momentum.pz])


def _check_vertices(ev, sqrt_s: float, *, atol: float) -> None:
    """Beams (status 4) -> gamma*/Z at rest (status 2) first; four-momentum conserved at every vertex."""
    for v in ev.vertices:
        assert v.particles_in and v.particles_out
        np.testing.assert_allclose(
            sum(_four(q) for q in v.particles_in), sum(_four(q) for q in v.particles_out), rtol=0, atol=atol
        )
    beams, (z,) = ev.vertices[0].particles_in, ev.vertices[0].particles_out
    assert [(b.pid, b.status, b.momentum.pz) for b in beams] == [(11, 4, sqrt_s / 2), (-11, 4, -sqrt_s / 2)]
    assert (z.pid, z.status, z.generated_mass) == (23, 2, sqrt_s)


def _collinear_split() -> Layer:
    """A cheap stand-in for a layer that creates particles: every particle splits collinearly in two
    (fractions z, 1 - z, z uniform), conserving four-momentum; daughters of slot j in 2j, 2j + 1."""

    def apply(params, key, events):
        del params
        z = jax.random.uniform(key, events.mask.shape, dtype=events.dtype)
        p = jnp.stack([events.p * z[..., None], events.p * (1 - z[..., None])], axis=2)
        n, cap = events.mask.shape
        return Events(
            p=p.reshape(n, 2 * cap, 4),
            weight=events.weight,
            mask=jnp.repeat(events.mask, 2, axis=1),
            pid=jnp.where(jnp.repeat(events.mask, 2, axis=1), jnp.int32(111), jnp.int32(0)),
            extra=events.extra,
        )

    return Layer(init=lambda key: {}, apply=apply)


def test_history_recorder_matches_chain_and_makes_conserving_hepmc(tmp_path, key):
    """The per-layer history generate records for HepMC3: same final events as the chain, one vertex per layer."""
    from diffgen.processes import ee_to_ffbar

    source = ee_to_ffbar(flavour="u", sqrt_s=91.1876)  # q qbar with colour, cheap to trace
    stages = [("split1", _collinear_split()), ("split2", _collinear_split())]
    sim = chain(("source", source), *stages)
    params = sim.init(key)
    k = jax.random.fold_in(key, 3)
    plain = sim.sample(params, k, 8)
    recorded = gen_cli._sample_with_history(source, stages)(params, k, 8)
    for name in ("p", "pid", "mask", "weight"):
        np.testing.assert_array_equal(np.asarray(getattr(recorded, name)), np.asarray(getattr(plain, name)))
    hard = source.sample(params["source"], stage_key(k, 0), 8)
    np.testing.assert_array_equal(np.asarray(recorded.extra["history/0-source/p"]), np.asarray(hard.p))
    np.testing.assert_array_equal(np.asarray(recorded.extra["history/0-source/colour"]), np.asarray(hard.colour))
    # The split layer's output has no colour, so only the hard process records one.
    assert sorted(k for k in recorded.extra if k.startswith("history/")) == [
        "history/0-source/colour",
        "history/0-source/mask",
        "history/0-source/p",
        "history/0-source/pid",
        "history/1-split1/mask",
        "history/1-split1/p",
        "history/1-split1/pid",
    ]
    out = dio.write_events(tmp_path / "h.hepmc", recorded, {"sqrt_s": 91.1876})
    with pyhepmc.open(out) as f:
        events = list(f)
    hard_pid = np.asarray(hard.pid).tolist()
    for i, ev in enumerate(events):
        _check_vertices(ev, 91.1876, atol=1e-12)
        assert [(v.status, len(v.particles_in), len(v.particles_out)) for v in ev.vertices] == [
            (1, 2, 1),
            (2, 1, 2),
            (3, 2, 4),
            (4, 4, 8),
        ]
        assert [(q.pid, q.status) for q in ev.vertices[1].particles_out] == [(hard_pid[i][0], 11), (hard_pid[i][1], 11)]
        assert [q.status for q in ev.vertices[2].particles_out] == [12] * 4
        assert [q.status for q in ev.vertices[3].particles_out] == [1] * 8
        assert [int(str(q.attributes["flow1"])) for q in ev.vertices[1].particles_out] == [501, 0]


def test_generate_parquet_config_file_and_reproducible_rerun(tmp_path, capsys):
    run_toml = tmp_path / "run.toml"
    run_toml.write_text(
        '[generate]\nprocess = "ee_to_mumu"\nsqrt_s = 90\nn = 40\nseed = 11\nchunk_size = 16\n'
        f'output = "{tmp_path / "a.parquet"}"\n[generate.params.source]\nm_z = 91.19\n'
    )
    assert main(["generate", "--config", str(run_toml), "--param", "source.gamma_z=2.5"]) == 0
    err = capsys.readouterr().err
    assert "wrote 40 events" in err and "pb" in err
    events, meta = dio.read_events(tmp_path / "a.parquet")
    assert events.n_events == 40 and meta["seed"] == 11 and meta["sqrt_s"] == 90.0
    assert meta["params"]["source"]["m_z"] == 91.19 and meta["params"]["source"]["gamma_z"] == 2.5
    assert meta["cross_section_pb"] == pytest.approx(float(np.mean(np.asarray(events.weight))), rel=1e-13)
    # The effective configuration repeats the run exactly (command-line options override the file).
    eff = effective_config_path(tmp_path / "a.parquet")
    assert main(["generate", "--config", str(eff), "-o", str(tmp_path / "b.parquet"), "-q"]) == 0
    again, _ = dio.read_events(tmp_path / "b.parquet")
    for k, v in events.to_numpy().items():
        np.testing.assert_array_equal(again.to_numpy()[k], v)
    # Chunks computed at once on threads (3 chunks of 16, the last trimmed): the same events.
    argv = ["generate", "--config", str(eff), "-o", str(tmp_path / "c.parquet"), "--workers", "3", "-q"]
    assert main(argv) == 0
    threaded, _ = dio.read_events(tmp_path / "c.parquet")
    for k, v in events.to_numpy().items():
        np.testing.assert_array_equal(threaded.to_numpy()[k], v)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--n", "0"], "n must be >= 1"),
        (["--workers", "0"], "workers must be >= 1"),
        (["--process", "ee_to_nothing"], "unknown process"),
        (["-o", "x.root"], "cannot infer the event-file format"),
        (["--param", "source.m_z"], "STAGE.NAME=VALUE"),
        (["--param", "source.m_w=80"], "no scalar parameter 'm_w'"),
        (["--config", "missing.toml"], "does not exist"),
        (["-o", "no/such/dir/x.lhe"], "does not exist"),
        (["--alpha-s-variations", "0.12"], "needs the shower layer"),
        (["--layers", "shower,jets"], "unknown layer(s) ['jets']"),
    ],
)
def test_generate_user_errors_are_one_line(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(["generate", "--n", "5", "-q", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not any(tmp_path.glob("*.lhe")) and not any(tmp_path.glob("*.parquet"))


def test_run_file_unknown_key(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[generate]\nn_events = 10\n")
    assert main(["generate", "--config", str(bad)]) == 2
    assert "unknown key(s) ['n_events']" in capsys.readouterr().err
    bad.write_text("[generat]\nn = 10\n")
    assert main(["generate", "--config", str(bad)]) == 2
    assert "unknown top-level key(s) ['generat']" in capsys.readouterr().err
    bad.write_text("[generate]\nn = 'ten'\n")
    assert main(["generate", "--config", str(bad)]) == 2
    assert "n must be int" in capsys.readouterr().err


def _wait_until_writing(proc: subprocess.Popen, partial, deadline: float) -> None:
    """Poll until ``partial`` (the run's temporary output file) holds at least one chunk's bytes.

    The observable event, not a fixed sleep: the file only grows past the header while the
    first chunk is being written, and the SIGTERM handler is installed before the file is
    opened. The deadline only bounds a run that never gets there (then the test fails with
    the run's stderr instead of signalling a process that is still importing JAX).
    """
    while True:
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"the run ended (exit {proc.returncode}) before writing events:\n{err}")
        with contextlib.suppress(FileNotFoundError):
            if partial.stat().st_size >= _FIRST_CHUNK_BYTES:
                return
        if time.monotonic() > deadline:
            pytest.fail(f"no events written to {partial.name} within the deadline")
        time.sleep(0.02)


#: Bytes after which the temporary LHE file certainly holds events (the header is ~3 kB; one
#: chunk of 2000 μμ events is ~1.4 MB, flushed in 8 kB blocks as it is written).
_FIRST_CHUNK_BYTES = 64 * 1024


def test_killed_runs_leave_no_complete_looking_file(tmp_path):
    """SIGTERM (clean abort, exit 130) and SIGKILL (no clean-up at all) mid-way through writing."""
    # 10^7 events: the runs are certainly still writing when signalled (they never finish).
    argv = [*DIFFGEN, "generate", "--n", "10000000", "--chunk-size", "2000", "-o", "big.lhe", "--quiet"]
    runs = {}
    try:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            d = tmp_path / sig.name
            d.mkdir()
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=d)
            runs[sig] = (d, proc)
        # Generous bound for starting Python + JAX and compiling on a loaded machine; normally ~5 s.
        deadline = time.monotonic() + 120
        for sig, (d, proc) in runs.items():
            # The temporary name is .<name>.partial-<pid of the writing process> (diffgen.io.partial_path).
            _wait_until_writing(proc, d / f".big.lhe.partial-{proc.pid}", deadline)
            proc.send_signal(sig)
        # SIGTERM is handled between two chunks (each takes well under a second).
        results = {sig: proc.communicate(timeout=120) for sig, (_, proc) in runs.items()}
    finally:
        for _, proc in runs.values():
            if proc.poll() is None:
                proc.kill()
            proc.communicate()  # reaps the process and closes its pipes
    for sig, (d, proc) in runs.items():
        assert not (d / "big.lhe").exists()
        assert not effective_config_path(d / "big.lhe").exists()
        if sig == signal.SIGTERM:
            assert proc.returncode == 130, results[sig][1]
            # The last line: an interrupt raised where Python ignores exceptions (a GC callback)
            # prints "Exception ignored" above it, and the run still stops at the next chunk.
            assert results[sig][1].strip().splitlines()[-1] == "diffgen generate: interrupted"
            assert list(d.iterdir()) == []  # the temporary file is removed too
        else:
            assert proc.returncode == -signal.SIGKILL
            # Only the hidden temporary file can remain; no reader takes it for a finished output:
            # it is not under the output name and lacks the closing tag.
            (left,) = d.iterdir()
            assert left.name == f".big.lhe.partial-{proc.pid}"
            with open(left, "rb") as f:
                f.seek(max(left.stat().st_size - 4096, 0))
                assert b"</LesHouchesEvents>" not in f.read()


def test_help_documents_units_and_defaults(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["generate", "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for phrase in ("GeV", "(default: 91.1876)", "(default: 10000)", "(default: events.parquet)", "--seed", "--quiet"):
        assert phrase in text


def test_generate_float32_parquet_keeps_dtype(tmp_path):
    out = tmp_path / "f32.parquet"
    assert main(["generate", "--n", "64", "--dtype", "float32", "-o", str(out), "-q"]) == 0
    events, meta = dio.read_events(out)
    assert events.dtype == np.float32 and meta["dtype"] == "float32"
    assert meta["params"]["source"]["m_z"] == pytest.approx(91.1876, rel=1e-6)
    w = np.asarray(events.weight, np.float64)
    assert meta["cross_section_pb"] == pytest.approx(w.mean(), rel=1e-12)
