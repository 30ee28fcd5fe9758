"""The benchmark suite's plumbing: the NumPy baseline is the same physics as diffgen,
Pythia settings carry diffgen's parameters, area scripts are found, CLI errors are clean."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import baselines  # noqa: E402
from benchmarks.__main__ import _call_area, _summary  # noqa: E402

PARAMS = {"sqrt_s": 91.1876, "m_z": 91.1876, "gamma_z": 2.4955, "sin2_theta_w": 0.23122, "alpha_em": 1 / 128.952}


def test_numpy_baseline_is_unbiased_and_physical():
    n = 200_000
    p, w = baselines.numpy_mumu(PARAMS, n, np.random.default_rng(5))
    sigma = baselines.numpy_mumu_sigma(PARAMS)
    err = w.std() / math.sqrt(n)
    assert abs(w.mean() - sigma) < 4.0 * err
    m2 = p[..., 0] ** 2 - np.sum(p[..., 1:] ** 2, axis=-1)
    np.testing.assert_allclose(np.sqrt(m2), baselines.M_MU, rtol=1e-6)
    np.testing.assert_allclose(p.sum(axis=1), np.broadcast_to([PARAMS["sqrt_s"], 0, 0, 0], (n, 4)), atol=1e-10)
    # Forward-backward asymmetry at the Z pole, 3/4·A_e·A_μ ≈ 0.016 (small but positive).
    fwd = np.sum(w[p[:, 0, 3] > 0]) - np.sum(w[p[:, 0, 3] < 0])
    afb = fwd / w.sum()
    assert 0.0 < afb < 0.05


def test_numpy_baseline_matches_diffgen_cross_section():
    processes = pytest.importorskip("diffgen.processes")
    mu = processes.constants.FERMIONS["mu"]
    params = {k: jnp.asarray(v) for k, v in PARAMS.items()}
    ours = processes.constants.GEV2_PB * processes.born_sigma_total(
        params["sqrt_s"] ** 2, mu.mass, mu.charge, mu.t3, 1.0, params
    )
    np.testing.assert_allclose(baselines.numpy_mumu_sigma(PARAMS), float(ours), rtol=1e-9)


def test_pythia_settings_carry_our_parameters():
    settings = baselines.pythia_settings("hadrons", PARAMS)
    assert f"23:m0 = {PARAMS['m_z']!r}" in settings
    assert f"23:mWidth = {PARAMS['gamma_z']!r}" in settings
    assert "23:onIfAny = 1 2 3 4 5" in settings and "PDF:lepton = off" in settings
    with pytest.raises(ValueError, match="mode must be one of"):
        baselines.pythia_settings("ttbar", PARAMS)
    # alpha_em fixed at m_Z (order -1), inside the range Pythia accepts
    assert "SigmaProcess:alphaEMorder = -1" in settings
    lo, _ = baselines.PYTHIA_ALPHA_EM_RANGE
    assert baselines.pythia_alpha_em(1 / 128.95) == lo and baselines.pythia_alpha_em(0.0079) == 0.0079
    if not baselines.pythia_available():
        assert baselines.pythia_rate("mumu", PARAMS, 10) is None
        return
    # with the optional extra installed: Pythia's sigma is the same Born sigma (its MC error at
    # 5000 events is about 0.2 %)
    run = baselines.pythia_rate("mumu", PARAMS, 5000)
    assert run["mean_multiplicity"] == 2.0 and run["repeat"] == 1
    best = baselines.pythia_rate("mumu", PARAMS, 500, repeat=3)
    assert best["repeat"] == 3 and best["events_per_s"] > 0
    with pytest.raises(ValueError, match="repeat must be an int >= 1"):
        baselines.pythia_rate("mumu", PARAMS, 10, repeat=0)
    assert 0.0 < run["cores"] < 1.5  # one thread
    np.testing.assert_allclose(run["sigma_pb"], baselines.numpy_mumu_sigma(PARAMS), rtol=0.01)


def test_area_functions_are_called_by_convention():
    assert _call_area(lambda quick: ("q", quick), True) == ("q", True)
    assert _call_area(lambda argv=None: argv, True) == ["--quick"]

    def no_args():
        return list(sys.argv[1:])

    before = list(sys.argv)
    assert _call_area(no_args, True) == ["--quick"]
    assert sys.argv == before  # restored


def test_summary_reports_targets():
    rows = _summary(
        {
            "hard_process": [{"dtype": "float64", "compile_s": 1.0, "events_per_s": 6e6, "ratio": 2.5}],
            "gradient": [{"chain": "x", "grad_over_forward": 4.0}],
        }
    )
    met = {r["target"]: r["met"] for r in rows}
    assert met == {"ee->mumu float64 events/s": True, "ee->mumu vs numpy (same run)": True, "grad/forward x": False}


def test_summary_reports_the_pythia_ratio_and_the_ratio_per_core():
    row = {"stage": "chain: ee->hadrons", "dtype": "float32", "ratio": 4.0, "ratio_per_core": 2.5}
    rows = _summary({"chains": [row]})
    assert [(r["measured"], r["met"]) for r in rows] == [(4.0, False), (2.5, "-")]
    rows = _summary({"chains": [{**row, "ratio_median": 3.5}]})
    assert [(r["measured"], r["met"]) for r in rows] == [(4.0, False), (2.5, "-"), (3.5, "-")]


def test_summary_reports_the_chain_as_concurrent_chunks():
    from benchmarks.__main__ import CHUNKED_CHAIN

    rows = _summary(
        {
            "chains": [
                {"stage": "chain: ee->hadrons", "dtype": "float32", "ratio": 4.0, "ratio_per_core": 2.5},
                {"stage": f"{CHUNKED_CHAIN}, 2 chunks at once", "dtype": "float32", "ratio": 11.0, "ratio_per_core": 6},
                {"stage": "chain: ee->hadrons + detector", "dtype": "float32", "ratio": 3.0, "ratio_per_core": 2.0},
            ]
        }
    )
    targets = [(r["target"], r["met"]) for r in rows if r["met"] != "-"]
    assert targets == [
        ("ee->hadrons vs Pythia 8 (float32)", False),
        ("ee->hadrons as concurrent chunks vs Pythia 8 (float32)", True),
    ]


def test_chunk_measurement_times_sample_chunks():
    import jax
    from test_parallel import toy_mumu

    from benchmarks.__main__ import _measure_chunks, _pythia_row

    src = toy_mumu()
    calls = []
    m = _measure_chunks(src, src.init(None), jax.random.key(0), 401, 2, repeat=2, against=lambda: calls.append(1))
    assert m["n"] == 400  # 2 chunks of 200: the events generated
    assert m["workers"] == 2 and m["best_s"] > 0 and m["peak_bytes"] > 0 and len(m["against_s"]) == 2
    assert calls == [1, 1]
    row = _pythia_row("x", jnp.float64, 400, m, 10)
    assert row["events_per_s"] == 400 / m["best_s"] and row["ratio"] == row["events_per_s"] / (10 / m["against_best_s"])


def test_best_time_counts_the_busy_cores():
    from benchmarks.common import best_time_and_cores

    def spin():  # one Python thread, busy
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 0.05:
            pass

    wall, cores = best_time_and_cores(spin, repeat=2)
    assert wall >= 0.05 and 0.5 < cores < 1.5
    wall, cores = best_time_and_cores(time.sleep, 0.05, repeat=2)
    assert wall >= 0.05 and cores < 0.5  # waiting is not work


def test_alternating_times_interleave_the_calls():
    from benchmarks.common import alternating_times

    calls = []
    times = alternating_times([lambda: calls.append("a"), lambda: calls.append("b")], 3)
    assert calls == ["a", "b"] * 3
    assert [len(t) for t in times] == [3, 3] and all(w >= 0 and c >= 0 for t in times for w, c in t)
    with pytest.raises(ValueError, match="repeat must be an int >= 1"):
        alternating_times([lambda: None], 0)


def test_measure_against_a_baseline_pairs_the_calls():
    from benchmarks.__main__ import _measure

    def baseline():
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 0.01:
            pass

    m = _measure(lambda x: jnp.sin(x) * 2.0, jnp.ones(1000), repeat=3, against=baseline)
    assert len(m["against_s"]) == 3
    assert m["best_s"] == min(t for t, _ in m["against_s"])
    assert m["against_best_s"] == min(t for _, t in m["against_s"]) >= 0.01
    assert 0.5 < m["against_cores"] < 1.5  # the baseline spins one Python thread
    assert "against_s" not in _measure(lambda x: x + 1.0, jnp.ones(3), repeat=2)


def test_cli_rejects_unknown_sections(capsys):
    from diffgen.cli import main

    assert main(["bench", "--sections", "hard_process,warp"]) == 2
    assert "unknown section(s) ['warp']" in capsys.readouterr().err


def test_shower_slot_settings_parse_and_reject_bad_input():
    from benchmarks.shower import parse_slots

    assert parse_slots("128, 512:8,512:4:0.125") == [(128, None, None), (512, 8, None), (512, 4, 0.125)]
    for bad in ("", "x", "0", "512:0", "512:4:1.5", "1:2:3:4"):
        with pytest.raises(SystemExit, match="--slots"):
            parse_slots(bad)


def test_shower_benchmark_rejects_a_repeat_below_one():
    from benchmarks.shower import main

    with pytest.raises(SystemExit, match="--repeat: need an integer >= 1, got 0"):
        main(["--slots", "128", "--repeat", "0"])


def test_hadronization_capacity_script_rejects_bad_sizes(capsys):
    from benchmarks.hadronization_capacity import main

    for bad in (["--n", "0"], ["--events", "-5"], ["--repeat", "0"]):
        with pytest.raises(SystemExit):
            main(bad)
        assert "must be >= 1" in capsys.readouterr().err
    for bad in ("", "rates,speed"):
        with pytest.raises(SystemExit):
            main(["--parts", bad])
        assert "need a comma-separated subset of rates,activity,rounds,tails" in capsys.readouterr().err


def test_round_costs_rejects_bad_list_lengths():
    from benchmarks.hadronization_capacity import round_costs

    for bad in ((16,), (16, 0), (16, 32.0)):
        with pytest.raises(ValueError, match="two or more list lengths >= 1"):
            round_costs(100, 1, bad)


def test_conservation_script_rejects_bad_sizes(capsys):
    from benchmarks.conservation import main

    with pytest.raises(SystemExit):
        main(["--n", "0"])
    assert "must be >= 1" in capsys.readouterr().err


def test_compare_revisions_exports_a_revision_and_rejects_bad_input(tmp_path, capsys):
    import subprocess

    from benchmarks.compare_revisions import export, main
    from diffgen.parallel import default_workers

    if subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    root = export("HEAD", tmp_path / "head")
    assert (root / "diffgen" / "__init__.py").is_file() and (root / "diffgen" / "hadronization").is_dir()
    with pytest.raises(ValueError, match="is not a commit"):
        export("no-such-revision", tmp_path / "x")
    # N = cores + 1 is not a multiple of the cores (on a machine with more than one)
    w = default_workers()
    cores_bad = [(["HEAD", "HEAD", "--stage", "chunks", "--n", str(w + 1)], "multiple of the")] if w > 1 else []
    for bad, message in (
        (["no-such-revision", "HEAD"], "is not a commit"),
        (["HEAD", "HEAD", "--rounds", "0"], "must be >= 1"),
        (["HEAD", "HEAD", "--stage", "detector"], "invalid choice"),
        (["HEAD", "HEAD", "--same-process", "-1"], "must be >= 1 calls"),
        *cores_bad,
    ):
        with pytest.raises(SystemExit):
            main(bad)
        assert message in capsys.readouterr().err


def test_compare_revisions_same_process_runs_each_revision_from_its_export(tmp_path, capsys):
    """Both revisions compiled in one child process: each executable comes from its own export
    (the child raises otherwise); the one-revision child runs the same stage code."""
    import subprocess

    from benchmarks.compare_revisions import export, time_once, time_pair

    if subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    roots = [export("HEAD", tmp_path / name) for name in ("before", "after")]
    seconds = time_pair(roots, "shower", "float32", 64, 3)
    assert len(seconds) == 2 and all(len(s) == 3 and min(s) > 0 for s in seconds)
    # the one-revision child builds the stage with the same code
    assert time_once(roots[0], "shower", "float32", 64, 1)["events_per_s"] > 0
    # a root without the package: the child fails, or imports another diffgen and is caught
    with pytest.raises(RuntimeError, match="failed|not from"):
        time_pair([roots[0], tmp_path / "missing"], "shower", "float32", 64, 1)


def test_chunk_workers_keep_chunks_large_enough():
    from benchmarks.__main__ import _chunk_workers
    from diffgen.hadronization.formation import ACTIVE_ROW_MIN_EVENTS
    from diffgen.parallel import default_workers

    assert _chunk_workers(1000) == 1
    w = _chunk_workers(10_000)
    assert 1 <= w <= default_workers() and 10_000 // w >= ACTIVE_ROW_MIN_EVENTS


def test_core_scaling_rates_and_bad_sizes(capsys):
    """A mode's events/s: all timed events over the time from the common start to the last
    process's end, and one call of every process over the slowest of their best calls."""
    from benchmarks.core_scaling import main, rates

    results = [{"n": 10, "times": [1.0, 2.0], "end": 103.0}, {"n": 10, "times": [2.0, 1.5], "end": 104.0}]
    got = rates(results, 100.0)
    expected = {"processes": 2, "events_per_call": 20, "events_per_s_all_calls": 10.0}
    assert got == {**expected, "events_per_s_best_call": 20 / 1.5}
    with pytest.raises(SystemExit):
        main(["--chunk", "0"])
    assert "must be >= 1" in capsys.readouterr().err
