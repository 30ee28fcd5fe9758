"""The Z-lineshape demo at reduced size, the packaged LEP table, and the lineshape fit's closure."""

import json
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from diffgen.cli import main as cli_main
from diffgen.lineshape import fit_lineshape, linear_gls_reference, load_lep_table

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "lep_hadronic_xsec_7point_average_kafe.csv"


def test_packaged_table_is_the_shared_one(tmp_path):
    data = load_lep_table()
    assert data.sqrt_s.shape == (7,)
    assert data.source.startswith("diffgen/data/")
    if SHARED.is_file():
        packaged = (Path(__file__).resolve().parents[1] / "diffgen" / "data" / SHARED.name).read_text()
        assert packaged == SHARED.read_text()  # header kept, values identical
    bad = tmp_path / "bad.csv"
    bad.write_text("# header\nE_cm_GeV,sigma0_had_nb\n91.2,41.0\n")
    with pytest.raises(ValueError, match="missing column"):
        load_lep_table(bad)
    with pytest.raises(FileNotFoundError):
        load_lep_table(tmp_path / "nope.csv")


def _diffgen(*argv: str) -> subprocess.CompletedProcess:
    """Run the console script the way a user does (a fresh process)."""
    cmd = [sys.executable, "-c", "import sys; from diffgen.cli import main; sys.exit(main())", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900)


def test_demo_reduced_size(tmp_path):
    proc = _diffgen("demo", "--quick", "--out", str(tmp_path), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "m_Z" in proc.stdout and "Traceback" not in proc.stderr
    for name in ("sigma_had.png", "cos_theta_mumu.png", "afb_mumu.png", "events_z_peak.npz", "summary.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert not list(tmp_path.glob("*.part")) and not list(tmp_path.glob(".*"))  # atomic writes leave nothing
    s = json.loads((tmp_path / "summary.json").read_text())
    f = s["fit"]
    assert f["status"] == ["converged", "converged"]
    # the fit lands within 3 of its own σ of the LEP m_Z and Γ_Z (the demo's acceptance)
    assert s["within_3_sigma"] == {"m_z": True, "gamma_z": True}
    # Hessian errors: the 7 points constrain m_Z and Γ_Z at the LEP level (1–4 MeV)
    assert 0.001 < f["m_z_err_GeV"] < 0.004 and 0.001 < f["gamma_z_err_GeV"] < 0.004
    # χ² of 4 degrees of freedom: below the 99.9 % quantile (18.5)
    assert 0 < f["chi2"] < 18.5
    # A_FB(μμ) at the pole ≈ 3/4·A_e·A_μ ≈ 0.017 (small, positive; MC error from the file)
    mu = s["mumu"]
    assert abs(mu["afb_peak"] - 0.0163) < 4 * mu["afb_peak_err"] + 0.003
    npz = np.load(tmp_path / "events_z_peak.npz")
    meta = json.loads(str(npz["metadata"]))
    assert meta["params"]["m_z"] == pytest.approx(f["m_z_GeV"])
    assert npz["mumu/p"].shape == (1000, 2, 4) and npz["hadrons/pid"].shape == (1000, 2)
    assert np.all(np.abs(npz["mumu/pid"][:, 0]) == 13)
    # the effective configuration is written next to the outputs
    assert (tmp_path / "summary.json.run.toml").is_file()


def test_demo_cli_bad_input(tmp_path, capsys):
    assert cli_main(["demo", "--events", "10", "--out", str(tmp_path)]) == 2
    assert "--events must be >= 100" in capsys.readouterr().err


@pytest.mark.slow
def test_lineshape_closure_20_seeds():
    """Pseudo-data at known parameters: ≥ 90 % of fits within 2σ, Hessian σ vs seed spread within 30 %."""
    data = load_lep_table()
    n = 3000  # MC events per energy of the model (common random numbers, seed 1)
    truth = {"m_z": 91.1875, "gamma_z": 2.4952, "norm": 1.0}
    first = fit_lineshape(data, n_events=n, seed=1)
    prob, key = first["problem"], first["key"]
    th = {k: jnp.asarray(v) for k, v in truth.items()}
    asimov = np.asarray(prob["model_jit"](th, prob["energies"], key)[0])
    v_sys = np.asarray(prob["covariance"](th, key, jnp.asarray(data.sqrt_s_err)))
    v_tot = v_sys + np.diag(data.sigma_err**2)
    chol = np.linalg.cholesky(v_tot)
    rng = np.random.default_rng(2026)
    fitted, errors, draws = [], [], []
    for _ in range(20):
        y = asimov + chol @ rng.normal(size=7)
        r = fit_lineshape(data, n_events=n, seed=1, values=y)
        assert all(p.status == "converged" for p in r["passes"])
        fitted.append([r["params"][k] for k in truth])
        errors.append([r["errors"][k] for k in truth])
        draws.append(y)
    fitted, errors = np.asarray(fitted), np.asarray(errors)
    truth_vec = np.asarray(list(truth.values()))
    pulls = (fitted - truth_vec) / errors
    inside = np.sum(np.abs(pulls) < 2.0, axis=0)
    # Pseudo-data and model share the MC sample (common random numbers), so the only randomness
    # is the Gaussian draw with the covariance V of the fit. Each fit then equals the linear
    # generalised-least-squares estimate θ + (JᵀV⁻¹J)⁻¹JᵀV⁻¹(y − y(θ)) (converged, no bias,
    # model linear over a few σ), and its Hessian σ equals √diag((JᵀV⁻¹J)⁻¹):
    ref = linear_gls_reference(prob, key, truth, v_tot, np.asarray(draws), asimov)
    linear, sigma_lin, cover = ref["linear"], ref["sigma"], ref["coverage_2sigma"]
    assert np.all(np.abs(fitted - linear) < 0.05 * errors), (fitted - linear) / errors
    assert np.allclose(errors, sigma_lin, rtol=0.03)
    # That estimator covers 95.45 % over many draws (checked with 10⁵ draws, 5 binomial σ) ...
    assert np.all(np.abs(cover - 0.9545) < 5 * np.sqrt(0.9545 * 0.0455 / 100_000)), cover
    # ... so a count below 19/20 is a property of these 20 draws: for m_Z they give 17/20 (the
    # linear estimate gives the same pulls; probability of ≤ 17 is 6 %). Γ_Z and norm: 20/20.
    assert np.all(inside[1:] >= 18), f"fits within 2σ per parameter (of 20): {inside}"
    tail = scipy.stats.binom.cdf(inside[0], 20, 0.9545)
    assert tail > 0.01, f"m_Z within 2σ in {inside[0]}/20 (binomial tail {tail:.3g})"
    spread = fitted.std(axis=0, ddof=1)
    ratio = spread / errors.mean(axis=0)
    assert np.all(np.abs(ratio - 1.0) < 0.3), f"seed spread / Hessian σ = {ratio}"


def test_fit_cli(tmp_path):
    """`diffgen fit DATA.csv --config RUN.toml` in a fresh process (the demo's --quick size, so the
    persistent compilation cache of the test run serves both)."""
    run = tmp_path / "run.toml"
    run.write_text(f'[fit]\nevents = 5000\noutput = "{tmp_path / "fit"}"\n[fit.start]\nm_z = 91.1\n')
    data = Path(__file__).resolve().parents[1] / "diffgen" / "data" / "lep_hadronic_xsec_7point_average_kafe.csv"
    proc = _diffgen("fit", str(data), "--config", str(run), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "fit" / "fit.json").read_text())
    assert abs(result["params"]["m_z"] - 91.1875) < 3 * result["errors"]["m_z"]
    assert (tmp_path / "fit" / "fit.json.run.toml").is_file()
    bad = tmp_path / "bad.toml"
    bad.write_text("[fit]\nevents = 10\n")
    proc = _diffgen("fit", str(data), "--config", str(bad))
    assert proc.returncode == 2 and "events must be >= 100" in proc.stderr and "Traceback" not in proc.stderr
