"""``diffgen train-hadronization`` in a subprocess at a tiny size: outputs, exit codes, a bad option."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from diffgen.config import effective_config_path, load_run_config

DIFFGEN = [sys.executable, "-m", "diffgen.cli", "train-hadronization"]
#: The smallest meaningful run: 2 optimizer steps of a tiny GAN on 200 reference clusters. Its cost is
#: making the reference samples (independent of their size), not the training. Seed 9 is overridden by
#: --seed 4 on the command line.
TINY_TOML = """[train-hadronization]
model = "gan"
n_train = 200
n_val = 200
steps = 2
batch = 32
hidden = 8
depth = 1
val_every = 2
ckpt_every = 1
seed = 9
"""


# ~45 s of CPU, nearly all of it making the three reference samples (eager, in
# diffgen.hadronization.train.make_dataset), whatever their size.
@pytest.mark.slow
def test_tiny_training_run_writes_checkpoint_metrics_and_plot(tmp_path):
    """Settings from a run file, the seed overridden on the command line (--quiet: test_cli_common.py)."""
    out = tmp_path / "run"
    (tmp_path / "run.toml").write_text(TINY_TOML + f'out = "{out}"\n')
    argv = ["--config", str(tmp_path / "run.toml"), "--seed", "4", "--no-progress"]
    proc = subprocess.run([*DIFFGEN, *argv], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    names = ["checkpoint.npz", "comparison.png", "metrics.json", "metrics.json.run.toml"]
    assert sorted(p.name for p in out.iterdir()) == names
    effective = load_run_config(effective_config_path(out / "metrics.json"))["train-hadronization"]
    assert (effective["seed"], effective["steps"], effective["hidden"], effective["resume"]) == (4, 2, 8, True)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["step"] == 2
    train = metrics["config"]["train"]
    assert (train["model"], train["steps"], train["n_train"], train["batch"], train["seed"]) == ("gan", 2, 200, 32, 4)
    assert metrics["config"]["hidden"] == 8 and metrics["config"]["depth"] == 1
    # Wasserstein distances to the reference: finite and >= 0, for the model and the reference-vs-reference baseline.
    for block in ("metrics", "baseline"):
        values = np.array(list(metrics[block].values()))
        assert "sliced_w1" in metrics[block] and np.all(np.isfinite(values)) and np.all(values >= 0)
    # stdout: the validation line of step 2, the metrics as JSON, the checkpoint path.
    lines = proc.stdout.splitlines()
    assert [ln.split(":")[0] for ln in lines if ln.startswith("step ")] == ["step 2"]
    assert lines[-1] == f"checkpoint: {out / 'checkpoint.npz'}"
    printed = json.loads("\n".join(lines[lines.index("{") : -1]))
    assert printed["metrics"] == metrics["metrics"]
    assert printed["baseline_reference_vs_reference"] == metrics["baseline"]
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from diffgen.hadronization.learned import load_checkpoint

    state = load_checkpoint(out / "checkpoint.npz")
    assert int(state["step"]) == 2


def test_bad_option_is_one_line_exit_2(tmp_path):
    out = tmp_path / "never"
    proc = subprocess.run([*DIFFGEN, "--steps", "0", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "diffgen train-hadronization: error: steps must be >= 1, got 0"
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert not out.exists()
