"""Detector configurations: shipped TOML files, round trip, rejection of bad input, whole detectors."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffgen as dg
from diffgen.detector import DetectorConfig, deposits, lep_like, load_config, tracks
from diffgen.testing import assert_padding_clean

SHIPPED_DIR = Path(dg.__file__).parent / "data" / "detectors"


def test_shipped_lep_like_numbers():
    cfg = load_config("lep_like")
    assert cfg.name == "LEP-like" and cfg.mode == "soft"
    trk, ecal, hcal = (cfg.sections[k] for k in ("tracker", "ecal", "hcal"))
    assert trk.resolution == {"a": 0.005, "b": 0.0006, "sigma_eta": 0.001, "sigma_phi": 0.001}
    assert ecal.resolution == {"a": 0.18, "b": 0.009, "c": 0.0} and ecal.select == "em_neutral"
    assert hcal.resolution == {"a": 0.85, "b": 0.0, "c": 0.0} and hcal.select == "hadronic_neutral"
    # |cos θ| < 0.95 for tracks, 0.98 for the calorimeters
    assert math.isclose(math.tanh(trk.acceptance["eta_max"]), 0.95, abs_tol=1e-4)
    assert math.isclose(math.tanh(ecal.acceptance["eta_max"]), 0.98, abs_tol=1e-4)
    assert set(load_config("toy").sections) == {"tracker", "ecal"}


def test_round_trip_and_atomic_write(tmp_path):
    for name in ("lep_like", "toy"):
        cfg = load_config(name)
        path = tmp_path / f"{name}.toml"
        cfg.to_toml(path)
        assert DetectorConfig.from_toml(path) == cfg
        assert load_config(path) == cfg
    assert sorted(os.listdir(tmp_path)) == ["lep_like.toml", "toy.toml"]  # no temporary files left
    hard = load_config("toy").replace(slope=math.inf, mode="stochastic")
    hard.to_toml(tmp_path / "hard.toml")
    assert DetectorConfig.from_toml(tmp_path / "hard.toml").slope == math.inf


def _edit(text: str, pattern: str, replacement: str) -> str:
    new, count = re.subn(pattern, replacement, text, count=1, flags=re.MULTILINE)
    assert count == 1, pattern
    return new


@pytest.mark.parametrize(
    ("pattern", "replacement", "error", "message"),
    [
        (r"^mode = .*$", 'mode = "soft"\ncolour = 3', ValueError, "unknown key 'colour'"),
        (r"^sigma_phi = .*$", "sigma_phi = 0.001\nsigma_theta = 0.1", ValueError, "unknown key tracker.'sigma_theta'"),
        (r"^pt_width = .*$", "pt_width = 0.02\netamax = 2.0", ValueError, "unknown key tracker.acceptance.'etamax'"),
        (r"^a = 0.18$", "a = -0.18", ValueError, "ecal.a is a resolution and must be >= 0"),
        (r"^sigma_eta = .*$", "sigma_eta = -1e-3", ValueError, "tracker.sigma_eta is a resolution"),
        (r"^c = 0.0$", "c = -0.1", ValueError, "ecal.c is a resolution"),
        (r"^eta_max = 1.832$", "eta_max = 0.0", ValueError, "tracker.acceptance.eta_max must be > 0"),
        (r"^eta_max = 1.832$", "eta_max = -1.0", ValueError, "tracker.acceptance.eta_max must be > 0"),
        (r"^pt_min = 0.5$", "pt_min = -0.5", ValueError, "hcal.acceptance.pt_min must be >= 0"),
        (r"^plateau = .*$", "plateau = 1.5", ValueError, "tracker.acceptance.plateau is an efficiency"),
        (r"^pt_width = .*$", "", ValueError, "both tracker.acceptance.pt_50 and tracker.acceptance.pt_width"),
        (r"^b = 0.0006$", 'b = "small"', TypeError, "tracker.b must be a number"),
        (r"^mode = .*$", 'mode = "hard"', ValueError, "mode must be 'soft' or 'stochastic'"),
        (r"^slope = .*$", "slope = 0.0", ValueError, "slope must be > 0"),
        (r'^select = "em_neutral"$', 'select = "photons"', ValueError, "ecal.select must be one of"),
        (r"^\[hcal.acceptance\]$", "[hcal.efficiency]", ValueError, "unknown key hcal.'efficiency'"),
        (r"^a = 0.85$", "a = nan", ValueError, "hcal.a must be finite"),
        (r"^name = .*$", "name = [", ValueError, "not valid TOML"),
    ],
)
def test_bad_configuration_names_the_key(tmp_path, pattern, replacement, error, message):
    text = (SHIPPED_DIR / "lep_like.toml").read_text()
    path = tmp_path / "bad.toml"
    path.write_text(_edit(text, pattern, replacement))
    with pytest.raises(error, match=re.escape(message)) as info:
        DetectorConfig.from_toml(path)
    assert "bad.toml" in str(info.value)


def test_missing_tables_and_unknown_names():
    data = load_config("toy").to_dict()
    del data["ecal"]
    with pytest.raises(ValueError, match=r"missing required table \[ecal\]"):
        DetectorConfig.from_dict(data)
    data = load_config("toy").to_dict()
    del data["tracker"]["acceptance"]
    with pytest.raises(ValueError, match=r"missing required table \[tracker.acceptance\]"):
        DetectorConfig.from_dict(data)
    data = load_config("toy").to_dict()
    del data["tracker"]["a"]
    with pytest.raises(ValueError, match="missing required key tracker.a"):
        DetectorConfig.from_dict(data)
    with pytest.raises(ValueError, match="neither a shipped detector"):
        load_config("cms")
    with pytest.raises(ValueError, match="mode must be"):
        lep_like(mode="hard")


def _mixed_events():
    """Two events: μ⁻ ν̄ γ n π⁺ K⁰_L, one particle per class, plus padding."""
    pid = np.array([[13, -14, 22, 2112, 211, 130, 0, 0]] * 2, dtype=np.int32)
    rng = np.random.default_rng(0)
    direction = rng.normal(0, 1, (2, 8, 3))
    direction[:, :, 2] *= 0.3  # central
    # 15-25 GeV: far above the thresholds, where no calorimeter fluctuation (HCAL 85 %/√E) reaches E ≤ 0
    p3 = direction / np.linalg.norm(direction, axis=-1, keepdims=True) * rng.uniform(15, 25, (2, 8, 1))
    m = np.array([0.10566, 0, 0, 0.93957, 0.13957, 0.49761, 0, 0])
    e = np.sqrt(np.sum(p3**2, -1) + m**2)
    p = np.concatenate([e[..., None], p3], -1)
    mask = pid != 0
    p[~mask] = 0
    return dg.Events(p=jnp.asarray(p), weight=jnp.ones(2), mask=jnp.asarray(mask), pid=jnp.asarray(pid))


def test_detector_level_objects(key):
    ev = _mixed_events()
    # LEP-like soft only: a whole-detector compilation costs seconds (the stochastic LEP-like
    # detector's objects are exercised by the pairing tests)
    for det in (lep_like(),):
        out = jax.jit(det.apply)(det.init(key), key, ev)
        assert_padding_clean(out)
        assert not np.any(np.asarray(out.mask)[:, 1])  # the neutrino is invisible
        pid, kept = np.asarray(out.pid), np.asarray(out.mask)
        trk, dep = tracks(out), deposits(out)
        np.testing.assert_array_equal(np.asarray(trk.pid), np.where(np.isin(pid, [13, 211]), pid, 0))
        np.testing.assert_array_equal(np.asarray(dep.pid), np.where(np.isin(pid, [22, 2112, 130]), pid, 0))
        np.testing.assert_array_equal(np.asarray(trk.mask | dep.mask), kept)
        changed = np.any(np.asarray(out.p) != np.asarray(ev.p), axis=-1)
        np.testing.assert_array_equal(changed[kept], True)  # every reconstructed particle is measured
        if "detector_keep_prob" in out.extra:  # soft mode: nothing dropped but the neutrino
            np.testing.assert_array_equal(kept[:, [0, 2, 3, 4, 5]], True)
            keep = np.asarray(out.extra["detector_keep_prob"])
            assert np.all(keep[:, 1] == 0) and np.all((keep >= 0) & (keep <= 1))
        else:
            assert np.all(np.isfinite(np.asarray(out.extra["detector_logprob"])))
