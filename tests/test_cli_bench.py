"""``diffgen bench`` in a subprocess: the quick hard-process section writes its JSON; a bad option.

``--quick --sections hard_process`` is the smallest run that measures something (e⁺e⁻ → μ⁺μ⁻ at
N = 10⁵ in float64 and float32 against the NumPy baseline of the same physics, ~5 s of CPU).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

from diffgen.config import effective_config_path, load_run_config

DIFFGEN = [sys.executable, "-m", "diffgen.cli", "bench"]


def test_quick_hard_process_bench_writes_results_json(tmp_path):
    """Settings from a run file (--out on the command line), --quiet, the effective configuration."""
    out = tmp_path / "bench.json"
    run = tmp_path / "run.toml"
    run.write_text('[bench]\nquick = true\nsections = ["hard_process"]\npythia = false\nout = "elsewhere.json"\n')
    proc = subprocess.run(
        [*DIFFGEN, "--config", str(run), "--out", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""  # --quiet: the results are only in the file
    # written atomically: no temporary file left; the effective configuration next to the results
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.json", "bench.json.run.toml", "run.toml"]
    effective = load_run_config(effective_config_path(out))["bench"]
    assert effective == {"quick": True, "sections": ["hard_process"], "pythia": False, "out": str(out), "seed": 0}
    results = json.loads(out.read_text())
    assert results["quick"] is True and results["pythia"] is False and "errors" not in results
    assert set(results["section_wall_s"]) == {"hard_process"}
    rows = results["hard_process"]
    n_quick = results["sizes"]["mumu"]
    assert {(r["dtype"], r["baseline"]) for r in rows} >= {
        ("float64", "numpy (same physics)"),
        ("float32", "numpy (same physics)"),
    }
    for r in rows:
        assert r["n"] == n_quick <= 100_000
        assert math.isfinite(r["events_per_s"]) and r["events_per_s"] > 0
        # The ratio to the baseline measured in the same run.
        assert math.isclose(r["ratio"], r["events_per_s"] / r["baseline_events_per_s"], rel_tol=1e-12)
    # Both generators sample the same physics: their cross sections agree with the analytic Born value.
    sigma = results["mumu_sigma_pb"]
    for name in ("diffgen", "numpy"):
        assert abs(sigma[name] - sigma["analytic"]) < 5 * sigma["mc_error"], (name, sigma)
    assert {s["target"] for s in results["summary"]} >= {"ee->mumu float64 events/s", "ee->mumu vs numpy (same run)"}


def test_bad_option_is_one_line_exit_2(tmp_path):
    proc = subprocess.run(
        [*DIFFGEN, "--sections", "hard_process,warp_drive", "--out", str(tmp_path / "b.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    err = proc.stderr.strip()
    assert err.startswith("diffgen bench: error: --sections: unknown section(s) ['warp_drive']; choose from [")
    assert len(err.splitlines()) == 1 and "Traceback" not in err and proc.stdout == ""
    assert list(tmp_path.iterdir()) == []
