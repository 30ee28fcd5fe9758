"""diffgen.plotting: weighted histograms and their MC errors, CSV data, figures, and `diffgen plot`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from diffgen import Events, plotting
from diffgen import io as dio
from diffgen.cli import main
from diffgen.config import effective_config_path, load_run_config

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def test_histogram_values_and_mc_errors():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, 1000)
    w = rng.uniform(0.5, 1.5, 1000)
    h = plotting.histogram(x, w, bins=4, range=(-1, 1), norm="sum")
    idx = np.digitize(x, [-0.5, 0.0, 0.5])
    np.testing.assert_allclose(h.values(), [w[idx == i].sum() for i in range(4)], rtol=1e-12)
    np.testing.assert_allclose(h.variances(), [(w[idx == i] ** 2).sum() for i in range(4)], rtol=1e-12)
    # dσ/dx: Σw / (N Δx) integrates to σ = mean(w); errors scale alike.
    hx = plotting.histogram(x, w, bins=4, range=(-1, 1), norm="xsec")
    assert np.sum(hx.values() * 0.5) == pytest.approx(w.mean(), rel=1e-12)
    np.testing.assert_allclose(np.sqrt(hx.variances()), np.sqrt(h.variances()) / (1000 * 0.5), rtol=1e-12)
    hd = plotting.histogram(x, w, bins=[-1.0, -0.2, 1.0], norm="density")
    hf = plotting.histogram(x, w, bins=[-1.0, -0.2, 1.0], norm="fraction")
    assert hf.values().sum() == pytest.approx(1.0, rel=1e-12)
    np.testing.assert_allclose(hf.values(), hd.values() * np.diff([-1.0, -0.2, 1.0]), rtol=1e-12)
    # The last bin is closed, as in numpy.histogram.
    assert plotting.histogram([0.0, 1.0, 1.0], bins=2, range=(0, 1), norm="sum").values().tolist() == [1.0, 2.0]
    assert np.sum(hd.values() * np.diff([-1.0, -0.2, 1.0])) == pytest.approx(1.0, rel=1e-12)


def test_histogram_bad_inputs():
    with pytest.raises(ValueError, match="norm must be one of"):
        plotting.histogram([0.1], bins=2, range=(0, 1), norm="area")
    with pytest.raises(ValueError, match="strictly increasing"):
        plotting.histogram([0.1], bins=[0.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="high > low"):
        plotting.histogram([0.1], bins=3, range=(1, 0))
    with pytest.raises(ValueError, match="unknown observable"):
        plotting.compute_observable("sphericityy", {"weight": np.ones(1)})


def test_read_data_csv_shared_files():
    thrust = plotting.read_data_csv(DATA / "aleph1996_1minusT_charged_91GeV.csv")
    assert thrust.y_name == "inv_N_dN_d1mT" and thrust.label == "ALEPH"
    assert (thrust.x[0], thrust.y[0], thrust.yerr[0], thrust.xlow[0], thrust.xhigh[0]) == (
        0.0025,
        1.017,
        0.1794,
        0,
        0.005,
    )
    assert thrust.edges is not None and thrust.edges[-1] == thrust.xhigh[-1]
    # The normalised distribution integrates to one over the listed bins (file header).
    assert np.sum(thrust.y * (thrust.xhigh - thrust.xlow)) == pytest.approx(1.0, abs=5e-3)
    lep = plotting.read_data_csv(DATA / "lep_hadronic_xsec_7point_average_kafe.csv")
    assert lep.x_name == "E_cm_GeV" and lep.y_name == "sigma0_had_nb" and lep.xlow is None
    assert (lep.x[3], lep.xerr[3], lep.y[3], lep.yerr[3]) == (91.238, 0.003, 41.364, 0.010)
    nch = plotting.read_data_csv(DATA / "aleph1996_nch_distribution_91GeV.csv", label="ALEPH N_ch")
    assert nch.y_name == "P_Nch" and nch.label == "ALEPH N_ch" and len(nch.x) == nch.edges.size - 1


def test_read_data_csv_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        plotting.read_data_csv(tmp_path / "none.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("# header\na,b\n1,x\n")
    with pytest.raises(ValueError, match="no error column|not numeric|no numeric"):
        plotting.read_data_csv(bad)
    with pytest.raises(ValueError, match="no column 'c'"):
        plotting.read_data_csv(DATA / "aleph1996_1minusT_charged_91GeV.csv", y="c")


def _mumu_like(n: int, seed: int) -> Events:
    """Back-to-back μ⁻μ⁺ at √s = 91.2 GeV with 1 + cos²θ, weights 2 ± 0.5 pb."""
    rng = np.random.default_rng(seed)
    c = rng.uniform(-1, 1, n)
    phi = rng.uniform(0, 2 * np.pi, n)
    e = 45.6
    s = np.sqrt(1 - c**2)
    p = np.stack([np.full(n, e), e * s * np.cos(phi), e * s * np.sin(phi), e * c], axis=-1)
    mom = np.stack([p, p * np.array([1, -1, -1, -1])], axis=1)
    return Events.from_numpy(
        {"p": mom, "pid": np.tile([13, -13], (n, 1)), "weight": (1 + c**2) * rng.uniform(1.5, 2.5, n)}
    )


def test_histogram_from_files_streams_and_matches_in_memory(tmp_path):
    ev = _mumu_like(500, 1)
    path = tmp_path / "a.parquet"
    dio.write_events(path, ev, {"sqrt_s": 2 * 45.6, "process": "toy"})
    h, meta = plotting.histogram_from_files(path, "cos_theta", bins=10, norm="xsec", chunk_size=64)
    d = ev.to_numpy()
    ref = plotting.histogram(d["p"][:, 0, 3] / 45.6, d["weight"], bins=10, range=(-1, 1), norm="xsec")
    np.testing.assert_allclose(h.values(), ref.values(), rtol=1e-12)
    np.testing.assert_allclose(h.variances(), ref.variances(), rtol=1e-12)
    assert meta["process"] == "toy"
    # Per-particle observable: one entry per particle, N = number of events for dσ/dx;
    # x_p = 2|p|/√s = 1/2 with the √s = 4 × 45.6 GeV of this file's metadata.
    dio.write_events(path, ev, {"sqrt_s": 4 * 45.6, "process": "toy"})
    hx, _ = plotting.histogram_from_files(path, "xp", bins=5, norm="xsec")
    assert hx.values()[2] > 0 and np.count_nonzero(hx.values()) == 1
    assert np.sum(hx.values() * 0.2) == pytest.approx(2 * d["weight"].mean(), rel=1e-12)


def test_plot_figure_with_data_ratio_logy(tmp_path):
    data = plotting.read_data_csv(DATA / "aleph1996_1minusT_charged_91GeV.csv")
    rng = np.random.default_rng(2)
    x = rng.beta(1.3, 12, 5000)
    h = plotting.histogram(x, None, bins=data.edges, norm="density")
    fig = plotting.plot_histograms({"toy": h}, data=data, ratio=True, logy=True, logx=False, ylabel="1/σ dσ/d(1-T)")
    assert len(fig.axes) == 2 and fig.axes[0].get_yscale() == "log"
    assert plotting.save(fig, tmp_path / "f.png").read_bytes().startswith(b"\x89PNG")
    with pytest.raises(ValueError, match=r"\.png or \.pdf"):
        plotting.save(fig, tmp_path / "f.jpg")


def test_plot_cli(tmp_path, capsys):
    a, b = tmp_path / "a.parquet", tmp_path / "b.lhe"
    dio.write_events(a, _mumu_like(300, 3), {"sqrt_s": 91.2, "process": "toy"})
    dio.write_events(b, _mumu_like(300, 4), {"sqrt_s": 91.2, "process": "toy"})
    out = tmp_path / "p.pdf"
    argv = [
        "plot",
        str(a),
        str(b),
        "--observable",
        "cos_theta",
        "--bins",
        "8",
        "--labels",
        "A,B",
        "--logy",
        "-o",
        str(out),
    ]
    assert main(argv) == 0
    assert out.read_bytes().startswith(b"%PDF")
    assert "wrote" in capsys.readouterr().err
    cfg = load_run_config(effective_config_path(out))["plot"]
    assert cfg["labels"] == ["A", "B"] and cfg["range"] == [-1.0, 1.0] and cfg["logy"] is True
    # A run file: the data's binning is used when no bins are given.
    run = tmp_path / "run.toml"
    csv = DATA / "aleph1996_1minusT_charged_91GeV.csv"
    run.write_text(f'[plot]\nfiles = ["{a}"]\nobservable = "mass"\ndata = "{csv}"\noutput = "{tmp_path / "q.png"}"\n')
    assert main(["plot", "--config", str(run), "-q"]) == 0
    assert (tmp_path / "q.png").read_bytes().startswith(b"\x89PNG")
    assert load_run_config(effective_config_path(tmp_path / "q.png"))["plot"]["edges"][:2] == [0.0, 0.005]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nope.lhe"], "does not exist"),
        ([], "give at least one event file or --data"),
        (["A", "--labels", "x,y"], "label(s) for 1 file(s)"),
        (["A", "-o", "p.jpg"], ".png or .pdf"),
        (["A", "--observable", "nonsense"], "unknown observable"),
        (["A", "--range", "1", "0"], "HIGH > LOW"),
        (["A", "--edges", "0,x"], "--edges: expected comma-separated numbers"),
    ],
)
def test_plot_cli_errors(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    dio.write_events(tmp_path / "A.parquet", _mumu_like(10, 5), {"sqrt_s": 91.2})
    argv = [str(tmp_path / "A.parquet") if x == "A" else x for x in argv]
    assert main(["plot", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
