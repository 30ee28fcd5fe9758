"""αs(m_Z) from thrust (examples/alpha_s_thrust.py) at reduced size: closure on pseudo-data, inputs, bad input.

One compiled generator (shower + hadronization + charged thrust) makes the reference sample
(αs = 0.118) and two pseudo-data samples generated directly at other αs; the fits reweight
the reference sample only. The reference is six times the pseudo-data: the reweighted model's
αs-slope is estimated from the reference, and its noise attenuates the fitted shift from the
reference (errors in variables, docs/demo_alpha_s.md), a bias that falls as 1/N_ref.
"""

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("alpha_s_thrust", ROOT / "examples" / "alpha_s_thrust.py")
demo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(demo)

CHUNK = 1000  # events per compiled generator call: one chunk shape for all samples
N_REF = 6 * CHUNK  # reference sample (reweighted by the fits)
N_DATA = CHUNK  # each pseudo-data sample
REF = 0.118
TRUE_LOW, TRUE_HIGH = 0.104, 0.128  # pseudo-data αs, at the two ends of the reweighting range of REF

CLOSURE_RANGE = (0.02, 0.3)

needs_data = pytest.mark.skipif(not demo.data_path().is_file(), reason="../shared/data not available")


def _pseudo_data(events, edges):
    """Normalised 1/N dN/d(1 − T) of a directly generated sample and its MC error."""
    h, err = demo.model_histogram(events, events.extra["shower_alpha_s_mz"][0], edges)
    return np.asarray(h), np.asarray(err)


@pytest.fixture(scope="module")
def samples():
    gen = demo.make_generator(CHUNK)
    ref, gen = demo.generate(REF, N_REF, 1, chunk=CHUNK, generator=gen)
    low, _ = demo.generate(TRUE_LOW, N_DATA, 2, chunk=CHUNK, generator=gen)
    high, _ = demo.generate(TRUE_HIGH, N_DATA, 3, chunk=CHUNK, generator=gen)
    return ref, low, high


@needs_data
def test_aleph_table():
    data = demo.load_data()
    assert data["edges"].shape == (22,) and data["values"].shape == (21,)
    # the header states the distribution is normalised: ∫ over the bins = 1.000
    integral = np.sum(data["values"] * np.diff(data["edges"]))
    err = math.sqrt(np.sum((data["errors"] * np.diff(data["edges"])) ** 2))
    assert abs(integral - 1.0) < 3 * err
    assert demo.fit_mask(data["edges"], demo.FIT_RANGE).sum() >= 8


def test_closure_and_response(samples):
    ref, low, high = samples
    x = ref.extra
    assert not any(bool(np.any(np.asarray(x[k]))) for k in ("shower_record_overflow", "charged_overflow"))
    edges = np.array([0.0, 0.02, 0.04, 0.05, 0.06, 0.08, 0.1, 0.12, 0.14, 0.16, 0.18, 0.2, 0.25, 0.3, 0.4])
    fitter = demo.ThrustFit(ref, edges)
    results = {}
    for true, ev in ((TRUE_LOW, low), (TRUE_HIGH, high)):
        y, y_err = _pseudo_data(ev, edges)
        # the model is exact for its own pseudo-data, so the test fits the whole 3-jet range
        r = fitter(y, y_err, CLOSURE_RANGE)
        assert r["fit_status"] == "converged"
        # closure: within 2σ of the reported (Hessian) error, which holds data and model MC errors
        assert abs(r["alpha_s"] - true) < 2 * r["alpha_s_err"], (true, r["alpha_s"], r["alpha_s_err"])
        # the Δχ² = 1 crossings bracket the optimum, and the Hessian σ (the curvature at the optimum)
        # lies between the two half-widths (the χ² is asymmetric: the reweighted model is non-linear)
        lo, hi = r["scan_interval"]
        assert lo < r["alpha_s"] < hi
        half = sorted((r["alpha_s"] - lo, hi - r["alpha_s"]))
        assert 0.9 * half[0] < r["alpha_s_err"] < 1.1 * half[1], (half, r["alpha_s_err"])
        # a fit of the model to its own pseudo-data: χ² ~ χ²(ndf), below its 99.9 % quantile
        assert r["chi2"] < r["ndf"] + 4.5 * math.sqrt(2 * r["ndf"]) + 3
        results[true] = r
    # the fitted αs follows the pseudo-data αs: the difference is the true one within 3σ (independent fits)
    a, b = results[TRUE_LOW], results[TRUE_HIGH]
    diff, sd = b["alpha_s"] - a["alpha_s"], math.hypot(a["alpha_s_err"], b["alpha_s_err"])
    assert diff > 0
    assert abs(diff - (TRUE_HIGH - TRUE_LOW)) < 3 * sd


def test_response_table(samples):
    """``response`` bins the direct samples in shower emissions; every event lands in one bin."""
    ref, low, _ = samples
    table = demo.response({REF: ref, TRUE_LOW: low})
    for a, ev in ((REF, ref), (TRUE_LOW, low)):
        r = table[a]
        assert sum(k for _, _, k, _, _ in r["by_emissions"]) == ev.n_events
        assert r["tau"][0] == pytest.approx(float(np.mean(np.asarray(ev.extra["tau"]))))
        assert r["n_emissions"][0] == pytest.approx(float(np.mean(np.asarray(ev.extra["shower_n_emissions"]))))
    # the fewer emissions at lower αs: a shift the size of the parton-level one (≈ 0.75 per Δαs = 0.014)
    # is ~15σ at 1000 events, so the sign is a safe check
    assert table[TRUE_LOW]["n_emissions"][0] < table[REF]["n_emissions"][0]


def test_reweighting_range(samples):
    ref = samples[0]
    q = demo.reweighting_quality(ref, [0.10, REF, 0.13, 0.15])
    assert q["n_eff_over_n"][1] == pytest.approx(1.0)  # weight 1 at the generating αs
    assert q["negative_fraction"][1] == 0.0
    lo, hi = demo.valid_range(q, REF)
    assert lo <= REF <= hi
    assert q["n_eff_over_n"][3] < demo.NEFF_MIN  # far above the reference the weights degrade


@needs_data
def test_bad_input(samples, tmp_path):
    ref = samples[0]
    data = demo.load_data()
    fitter = demo.ThrustFit(ref, data["edges"])
    with pytest.raises(ValueError, match="bins"):
        fitter(data["values"][:-1], data["errors"][:-1])
    with pytest.raises(ValueError, match="errors > 0"):
        fitter(data["values"], -data["errors"])
    with pytest.raises(ValueError, match="fit_range"):
        fitter(data["values"], data["errors"], (0.3, 0.1))
    with pytest.raises(ValueError, match="fewer than 2 bins"):
        fitter(data["values"], data["errors"], (0.1, 0.11))
    with pytest.raises(ValueError, match="n_events"):
        demo.generate(REF, 10, 1)
    with pytest.raises(FileNotFoundError):
        demo.load_data(tmp_path / "missing.csv")
    with pytest.raises(SystemExit):
        demo.main(["--n-events", "10", "--out", str(tmp_path)])


@needs_data
def test_outputs(samples, tmp_path):
    """The plot and the JSON (written atomically) from a fit of part of the reference sample to ALEPH."""
    # 2 000 events suffice to exercise the fit, bootstrap and output; the whole reference would
    # triple the cost of this test for no added check
    ref = samples[0].take(np.arange(2 * CHUNK))
    data = demo.load_data()
    fitter = demo.ThrustFit(ref, data["edges"])
    r = fitter(data["values"], data["errors"], demo.FIT_RANGE)
    # bootstrap of the reference sample: the compiled fit is reused; replicas differ and are finite
    b = demo.bootstrap_error(fitter, data["values"], data["errors"], demo.FIT_RANGE, n_boot=2)
    assert np.all(np.isfinite(b["alpha_s"])) and b["alpha_s_std"] > 0
    with pytest.raises(ValueError, match="n_boot"):
        demo.bootstrap_error(fitter, data["values"], data["errors"], n_boot=1)
    demo.plot(data, r, demo.FIT_RANGE, tmp_path / "a.png")
    demo.write_json({"alpha_s_mz": r["alpha_s"]}, tmp_path / "a.json")
    xs = np.linspace(0.11, 0.13, 5)
    scan = {"points": [{"alpha_s": x, "chi2": 5 + ((x - 0.12) / 0.004) ** 2} for x in xs], "n_events_per_point": 100}
    scan.update(demo.parabola_minimum(xs, [pt["chi2"] for pt in scan["points"]]))
    demo.plot_scan(scan, r, tmp_path / "s.png")
    assert (tmp_path / "a.png").stat().st_size > 10_000
    assert (tmp_path / "s.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "a.json").read_text())["alpha_s_mz"] == r["alpha_s"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.png", "s.png"]
    assert 0.09 < r["alpha_s"] < 0.15


def test_parabola_minimum():
    """Exact on a parabola; its scan-noise error covers the truth as often as it should; bad scans raise."""
    x = np.linspace(0.11, 0.14, 9)
    a0, sigma, chi0 = 0.1262, 0.004, 7.5
    exact = demo.parabola_minimum(x, chi0 + ((x - a0) / sigma) ** 2)
    assert exact["alpha_s"] == pytest.approx(a0, abs=1e-12)
    assert exact["alpha_s_err"] == pytest.approx(sigma, rel=1e-9)
    assert exact["chi2_min"] == pytest.approx(chi0, abs=1e-8)
    assert exact["alpha_s_err_scan_noise"] < 1e-9
    assert np.polyval(exact["coefficients"], a0) == pytest.approx(chi0, abs=1e-8)
    # points with Gaussian noise of sd 1.5: the least-squares error is a t-like pull (6 dof), so
    # |pull| < 2 holds in ≈ 91 % of scans; 400 scans give ± 1.4 % binomial sd
    rng = np.random.default_rng(5)
    pulls = np.array(
        [
            (r["alpha_s"] - a0) / r["alpha_s_err_scan_noise"]
            for r in (
                demo.parabola_minimum(x, chi0 + ((x - a0) / sigma) ** 2 + rng.normal(0, 1.5, x.size))
                for _ in range(400)
            )
        ]
    )
    assert 0.85 < np.mean(np.abs(pulls) < 2) < 0.97
    with pytest.raises(ValueError, match="no minimum"):
        demo.parabola_minimum(x, -((x - a0) ** 2))
    with pytest.raises(ValueError, match="at least 4"):
        demo.parabola_minimum(x[:3], x[:3])


def test_direct_chi2(samples):
    """The direct-generation χ² equals the fit's χ² formula evaluated by hand at the sample's own αs."""
    ref, low, _ = samples
    edges = np.array([0.0, 0.02, 0.04, 0.05, 0.06, 0.08, 0.1, 0.12, 0.14, 0.16, 0.18, 0.2, 0.25, 0.3, 0.4])
    values, errors = _pseudo_data(low, edges)
    got = demo.direct_chi2(ref, values, errors, edges, CLOSURE_RANGE)
    m, me = (np.asarray(v) for v in demo.model_histogram(ref, REF, edges))
    sel = (edges[:-1] >= CLOSURE_RANGE[0] - 1e-12) & (edges[1:] <= CLOSURE_RANGE[1] + 1e-12)
    w = np.diff(edges)
    c = np.sum((values * w)[sel]) / np.sum((m * w)[sel])
    chi2 = np.sum(((values - c * m) ** 2 / (errors**2 + (c * me) ** 2))[sel])
    assert got["alpha_s"] == pytest.approx(REF)
    assert got["ndf"] == int(sel.sum()) - 1
    assert got["chi2"] == pytest.approx(chi2, rel=1e-10)
    np.testing.assert_allclose(got["model"][sel], (c * m)[sel], rtol=1e-10)


def test_record_overflow_is_left_out(samples):
    """An event whose shower trial record overflowed (no reweighting weight) is left out of the
    model and of the reweighting quality, instead of turning every bin into NaN."""
    import jax.numpy as jnp

    ref = samples[0].take(np.arange(CHUNK))
    flag = np.zeros(CHUNK, bool)
    flag[[3, 17]] = True
    flagged = ref.with_extra(shower_record_overflow=jnp.asarray(flag))
    kept = ref.take(np.flatnonzero(~flag))
    edges = np.array([0.0, 0.02, 0.05, 0.1, 0.2, 0.4])
    for a in (REF, 0.125):
        h_flag, e_flag = demo.model_histogram(flagged, a, edges)
        h_kept, e_kept = demo.model_histogram(kept, a, edges)
        assert np.all(np.isfinite(h_flag))
        np.testing.assert_allclose(h_flag, h_kept, rtol=1e-12)
        np.testing.assert_allclose(e_flag, e_kept, rtol=1e-12)
    q = demo.reweighting_quality(flagged, [0.11, REF, 0.125])
    assert np.all(np.isfinite(q["n_eff_over_n"])) and q["n_eff_over_n"][1] == pytest.approx(1.0)
