"""Tests of the ``diffgen unfold`` subcommand (small sizes: the algorithm is tested elsewhere)."""

import json

import numpy as np
import pytest

from diffgen.cli import main
from diffgen.config import effective_config_path, load_run_config
from diffgen.unfolding import gaussian_toy


def _files(tmp_path, n=1500):
    mc = gaussian_toy(1, n, 0.0, 1.0)
    data = gaussian_toy(2, n, 0.3, 1.0)
    np.savez(tmp_path / "mc.npz", gen=mc.gen, reco=mc.reco, pass_gen=mc.pass_gen, pass_reco=mc.pass_reco)
    np.savez(tmp_path / "data.npz", reco=data.observed)
    return mc


@pytest.mark.parametrize("quiet", [False, True])
def test_unfold_writes_weights_atomically(tmp_path, capsys, quiet):
    """Options from a run file, one overridden on the command line; effective configuration; --quiet."""
    mc = _files(tmp_path)
    out = tmp_path / "weights.npz"
    run = tmp_path / "run.toml"
    run.write_text(
        f'[unfold]\nmc = "{tmp_path / "mc.npz"}"\ndata = "{tmp_path / "data.npz"}"\nout = "{out}"\n'
        'iterations = 1\nepochs = 5\nhidden = "32,32"\nbatch_size = 256\nlearning_rate = 0.003\nseed = 8\n'
    )
    code = main(["unfold", "--config", str(run), "--epochs", "2", *(["--quiet"] if quiet else [])])
    assert code == 0
    captured = capsys.readouterr()
    if quiet:
        assert captured.out == captured.err == ""
    else:
        assert "wrote" in captured.out
    with np.load(out) as f:
        w = f["weights"]
        diags = json.loads(str(f["diagnostics"]))
    assert w.shape == (mc.gen.shape[0],) and np.all(np.isfinite(w))
    assert np.all(w[~mc.pass_gen] == 0) and np.all(w[mc.pass_gen] > 0)
    assert [d["step"] for d in diags] == [1, 2]
    assert max(d["epochs"] for d in diags) <= 2  # --epochs 2 beats the file's 5
    effective = load_run_config(effective_config_path(out))["unfold"]
    assert (effective["epochs"], effective["iterations"], effective["seed"], effective["clip"]) == (2, 1, 8, 100.0)
    # no temporary files left
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "data.npz",
        "mc.npz",
        "run.toml",
        "weights.npz",
        "weights.npz.run.toml",
    ]


def test_unfold_bad_input_exit_code(tmp_path, capsys):
    _files(tmp_path)
    np.savez(tmp_path / "bad.npz", features=np.zeros(3))
    out = tmp_path / "w.npz"
    assert (
        main(["unfold", "--mc", str(tmp_path / "mc.npz"), "--data", str(tmp_path / "bad.npz"), "--out", str(out)]) == 2
    )
    assert "lacks array(s) ['reco']" in capsys.readouterr().err
    np.savez(tmp_path / "zero.npz", reco=np.zeros(10), weights=np.zeros(10))
    assert (
        main(["unfold", "--mc", str(tmp_path / "mc.npz"), "--data", str(tmp_path / "zero.npz"), "--out", str(out)]) == 2
    )
    assert "data_weights: all weights are zero" in capsys.readouterr().err
    assert (
        main(["unfold", "--mc", str(tmp_path / "none.npz"), "--data", str(tmp_path / "zero.npz"), "--out", str(out)])
        == 2
    )
    assert (
        main(
            [
                "unfold",
                "--mc",
                str(tmp_path / "mc.npz"),
                "--data",
                str(tmp_path / "data.npz"),
                "--out",
                str(out),
                "--hidden",
                "a,b",
            ]
        )
        == 2
    )
    assert not out.exists()
