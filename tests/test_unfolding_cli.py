"""Tests of the ``diffgen unfold`` subcommand (small sizes: the algorithm is tested elsewhere)."""

import json

import numpy as np

from diffgen.cli import main
from diffgen.unfolding import gaussian_toy


def _files(tmp_path, n=1500):
    mc = gaussian_toy(1, n, 0.0, 1.0)
    data = gaussian_toy(2, n, 0.3, 1.0)
    np.savez(tmp_path / "mc.npz", gen=mc.gen, reco=mc.reco, pass_gen=mc.pass_gen, pass_reco=mc.pass_reco)
    np.savez(tmp_path / "data.npz", reco=data.observed)
    return mc


def test_unfold_writes_weights_atomically(tmp_path, capsys):
    mc = _files(tmp_path)
    out = tmp_path / "weights.npz"
    code = main(
        [
            "unfold",
            "--mc",
            str(tmp_path / "mc.npz"),
            "--data",
            str(tmp_path / "data.npz"),
            "--out",
            str(out),
            "--iterations",
            "1",
            "--epochs",
            "2",
            "--hidden",
            "32,32",
            "--batch-size",
            "256",
            "--learning-rate",
            "0.003",
        ]
    )
    assert code == 0
    assert "wrote" in capsys.readouterr().out
    with np.load(out) as f:
        w = f["weights"]
        diags = json.loads(str(f["diagnostics"]))
    assert w.shape == (mc.gen.shape[0],) and np.all(np.isfinite(w))
    assert np.all(w[~mc.pass_gen] == 0) and np.all(w[mc.pass_gen] > 0)
    assert [d["step"] for d in diags] == [1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.npz", "mc.npz", "weights.npz"]  # no temp files left


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
