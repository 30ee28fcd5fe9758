"""Detector resolution layers: pulls, gradients with common random numbers, dtype and padding."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffgen as dg
from diffgen import kinematics as kin
from diffgen.detector import calorimeter, efficiency, gaussian_smearing, lep_like, pdg, toy, tracker
from diffgen.testing import assert_compatible, assert_padding_clean, check_layer_grads

M_MU = 0.1056583755


# NumPy kinematics for the checks (eager JAX ops would each be compiled).
def np_pt(p):
    return np.hypot(p[..., 1], p[..., 2])


def np_eta(p):
    return np.arcsinh(p[..., 3] / np.where(np_pt(p) > 0, np_pt(p), 1.0))


def np_dphi(a, b):
    return np.mod(np.arctan2(a[..., 2], a[..., 1]) - np.arctan2(b[..., 2], b[..., 1]) + np.pi, 2 * np.pi) - np.pi


def np_mass(p):
    return np.sqrt(np.maximum(p[..., 0] ** 2 - np.sum(p[..., 1:] ** 2, axis=-1), 0.0))


def make_events(pt, eta, phi, m, pid, weight=None, mask=None, dtype=jnp.float64):
    """Events from [N, P] arrays of pT (GeV), η, φ, mass (GeV) and PDG ids."""
    pt, eta, phi, m = (np.asarray(x, dtype=float) for x in (pt, eta, phi, m))
    pid = np.asarray(pid, dtype=np.int32)
    mask = pid != 0 if mask is None else np.asarray(mask)
    p3 = np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)], axis=-1)
    p = np.concatenate([np.sqrt(np.sum(p3**2, -1) + m**2)[..., None], p3], axis=-1)
    p = np.where(mask[..., None], p, 0.0)
    pid = np.where(mask, pid, 0)
    n = p.shape[0]
    weight = np.ones(n) if weight is None else np.asarray(weight, dtype=float)
    return dg.Events(
        p=jnp.asarray(p, dtype=dtype),
        weight=jnp.asarray(weight, dtype=dtype),
        mask=jnp.asarray(mask),
        pid=jnp.asarray(pid),
    )


def random_particles(rng, n, cap, pid, pt_range, eta_max=2.0, m=0.0, pad_fraction=0.2):
    """[n, cap] particles with log-uniform pT, uniform η and φ; a fraction of padding slots."""
    pt = np.exp(rng.uniform(np.log(pt_range[0]), np.log(pt_range[1]), (n, cap)))
    eta = rng.uniform(-eta_max, eta_max, (n, cap))
    phi = rng.uniform(-np.pi, np.pi, (n, cap))
    ids = np.broadcast_to(np.asarray(pid, dtype=np.int32), (n, cap)).copy()
    mask = rng.uniform(size=(n, cap)) > pad_fraction
    return make_events(pt, eta, phi, np.full((n, cap), m), ids, mask=mask)


def muon_pairs(rng, n, sqrt_s=91.1876, dtype=jnp.float64):
    """Back-to-back μ⁻μ⁺ pairs at √s with dσ/dcosθ ∝ 1 + cos²θ (slot 0 = μ⁻, slot 1 = μ⁺)."""
    cos = []
    while sum(len(c) for c in cos) < n:
        c = rng.uniform(-1, 1, 2 * n)
        cos.append(c[rng.uniform(0, 2, 2 * n) < 1 + c**2])
    cos = np.concatenate(cos)[:n]
    phi = rng.uniform(-np.pi, np.pi, n)
    p = np.sqrt((sqrt_s / 2) ** 2 - M_MU**2)
    sin = np.sqrt(1 - cos**2)
    p3 = p * np.stack([sin * np.cos(phi), sin * np.sin(phi), cos], axis=-1)
    e = np.full(n, sqrt_s / 2)
    mom = np.stack([np.concatenate([e[:, None], p3], -1), np.concatenate([e[:, None], -p3], -1)], axis=1)
    return dg.Events(
        p=jnp.asarray(mom, dtype=dtype),
        weight=jnp.ones(n, dtype=dtype),
        mask=jnp.ones((n, 2), bool),
        pid=jnp.asarray(np.tile([13, -13], (n, 1)), dtype=jnp.int32),
    )


def muon_source(sqrt_s=91.1876):
    """A Source of back-to-back muon pairs in jnp (for chains), isotropic, unit weights."""

    def init(key):
        del key
        return {"sqrt_s": jnp.asarray(sqrt_s)}

    def sample(params, key, n):
        k1, k2 = jax.random.split(key)
        cos = jax.random.uniform(k1, (n,), minval=-1.0, maxval=1.0)
        phi = jax.random.uniform(k2, (n,), minval=-jnp.pi, maxval=jnp.pi)
        e = params["sqrt_s"] / 2
        p = kin.safe_sqrt(e**2 - M_MU**2)
        sin = kin.safe_sqrt(1 - cos**2)
        p3 = p * jnp.stack([sin * jnp.cos(phi), sin * jnp.sin(phi), cos], axis=-1)
        e_col = jnp.broadcast_to(e, (n, 1))
        mom = jnp.stack([jnp.concatenate([e_col, p3], -1), jnp.concatenate([e_col, -p3], -1)], axis=1)
        return dg.Events(
            p=mom,
            weight=jnp.ones(n, dtype=mom.dtype),
            mask=jnp.ones((n, 2), bool),
            pid=jnp.tile(jnp.asarray([13, -13], dtype=jnp.int32), (n, 1)),
        )

    return dg.Source(init=init, sample=sample)


N_PAIRS = 20000
# One jitted apply per layer type, shared by the tests: params are arguments, so a new
# parameter set or seed does not recompile (compilation dominates these tests' run time).
TRACKER = tracker()
TRACKER_APPLY = jax.jit(TRACKER.apply)
CALORIMETER = calorimeter()
CALORIMETER_APPLY = jax.jit(CALORIMETER.apply)


@functools.cache
def lep_stochastic():
    """The stochastic LEP-like detector with its apply jitted once (shared by the tests)."""
    det = lep_like(mode="stochastic")
    return dg.Layer(init=det.init, apply=jax.jit(det.apply))


@functools.cache
def lep_muon_sample():
    """(truth, reco, params, key): N_PAIRS Z → μ⁺μ⁻ pairs through the stochastic LEP-like detector.

    The truth comes from ``diffgen.processes.ee_to_ffbar`` when available, else from
    hand-made back-to-back pairs with the same angular distribution.
    """
    try:
        from diffgen.processes import ee_to_ffbar
    except ImportError:
        truth = muon_pairs(np.random.default_rng(5), N_PAIRS)
    else:
        source = ee_to_ffbar(flavour="mu", sqrt_s=91.1876)
        truth = jax.jit(source.sample, static_argnums=2)(source.init(jax.random.key(0)), jax.random.key(5), N_PAIRS)
    det = lep_stochastic()
    key = jax.random.key(42)
    params = det.init(key)
    return truth, det.apply(params, key, truth), params, key


def dimuon_mass(events):
    return kin.mass(events.momentum_sum())


def assert_standard_normal(pulls, what, n_sigma=4.0):
    """Mean 0 and width 1 within Monte Carlo errors (σ_mean = 1/√n, σ_var ≈ √(2/n))."""
    pulls = np.asarray(pulls)
    n = pulls.size
    assert_compatible(pulls.mean(), 0.0, 1 / np.sqrt(n), n_sigma=n_sigma, what=f"{what} pull mean")
    assert_compatible(pulls.var(), 1.0, np.sqrt(2 / n), n_sigma=n_sigma, what=f"{what} pull variance")


# --------------------------------------------------------------------------- charge table


def test_charge_table_matches_pdg_rule():
    ids = np.array(list(pdg.CHARGES))
    q = np.asarray(pdg.charge3(np.concatenate([ids, -ids])))
    ref = np.array([3 * pdg.CHARGES[i] for i in ids])
    np.testing.assert_array_equal(q, np.concatenate([ref, -ref]))
    np.testing.assert_array_equal(
        np.asarray(pdg.charge3([0, 1, 2, -2, 21, 24, 2101])), [0, -1, 2, -2, 0, 3, 1]
    )  # 2101 = (ud)₀ diquark: +1/3


def test_charge_rule_against_scikit_hep_particle():
    particle = pytest.importorskip("particle")
    ids = np.array([int(p.pdgid) for p in particle.Particle.findall(lambda p: abs(int(p.pdgid)) < 100_000)])
    ids = ids[[particle.Particle.from_pdgid(i).charge is not None for i in ids]]
    ref = np.array([round(3 * particle.Particle.from_pdgid(i).charge) for i in ids])
    got = np.asarray(pdg.charge3(ids))
    bad = ids[got != ref]
    assert bad.size == 0, f"charge differs from scikit-hep particle for {bad[:20]}"


def test_charge_rule_agrees_with_the_hadron_table():
    hadrons = pytest.importorskip("diffgen.hadronization.hadrons")
    ids = np.nonzero(np.asarray(hadrons.TABLE["known"]))[0].astype(np.int32)
    ids = np.concatenate([ids, -ids])
    np.testing.assert_array_equal(np.asarray(pdg.charge3(ids)), np.asarray(hadrons.charge3(jnp.asarray(ids))))


def test_particle_classes():
    pid = jnp.asarray([11, -13, 12, -14, 16, 22, 111, 211, 130, 2112, 0], dtype=jnp.int32)
    np.testing.assert_array_equal(pdg.is_charged(pid), [1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0])
    np.testing.assert_array_equal(pdg.is_invisible(pid), [0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(pdg.is_em_neutral(pid), [0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(pdg.is_hadronic_neutral(pid), [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0])


# --------------------------------------------------------------------------- pulls


@pytest.mark.parametrize(
    ("params", "pt_range"),
    [
        ({"a": 0.005, "b": 6e-4, "sigma_eta": 1e-3, "sigma_phi": 1e-3}, (0.2, 45.0)),  # LEP-like
        ({"a": 0.01, "b": 1e-3, "sigma_eta": 0.01, "sigma_phi": 0.01}, (0.5, 100.0)),  # toy
    ],
)
def test_tracker_pulls(key, params, pt_range):
    rng = np.random.default_rng(1)
    ev = random_particles(rng, 4000, 8, 211, pt_range, m=0.13957)
    out = TRACKER_APPLY({k: jnp.asarray(v) for k, v in params.items()}, key, ev)
    mask = np.asarray(ev.mask)
    p, p_r = np.asarray(ev.p)[mask], np.asarray(out.p)[mask]
    pt, pt_r = np_pt(p), np_pt(p_r)
    sigma = np.hypot(params["a"], params["b"] * pt) * pt
    low = pt < np.sqrt(pt_range[0] * pt_range[1])
    for part, sel in (("low pT", low), ("high pT", ~low)):
        assert_standard_normal((pt_r - pt)[sel] / sigma[sel], f"tracker pT ({part})")
    deta = np_eta(p_r) - np_eta(p)
    dphi = np_dphi(p_r, p)
    assert_standard_normal(deta / params["sigma_eta"], "tracker eta")
    assert_standard_normal(dphi / params["sigma_phi"], "tracker phi")
    # The mass is kept and padding stays clean.
    np.testing.assert_allclose(np_mass(p_r), 0.13957, rtol=1e-6)
    assert_padding_clean(out)


@pytest.mark.parametrize(
    ("params", "e_range", "pid"),
    [
        ({"a": 0.18, "b": 0.009, "c": 0.0}, (0.5, 45.0), 22),  # LEP-like ECAL
        ({"a": 0.85, "b": 0.0, "c": 0.0}, (15.0, 45.0), 2112),  # LEP-like HCAL (Gaussian above ~15 GeV)
        ({"a": 0.5, "b": 0.05, "c": 0.2}, (5.0, 100.0), 130),  # toy (Gaussian above ~5 GeV)
    ],
)
def test_calorimeter_pulls(key, params, e_range, pid):
    rng = np.random.default_rng(2)
    m = 0.939565 if pid == 2112 else (0.497611 if pid == 130 else 0.0)
    ev = random_particles(rng, 4000, 8, pid, e_range, eta_max=1.0, m=m)
    out = CALORIMETER_APPLY({k: jnp.asarray(v) for k, v in params.items()}, key, ev)
    mask = np.asarray(ev.mask)
    e, e_r = np.asarray(ev.p[..., 0])[mask], np.asarray(out.p[..., 0])[mask]
    sigma = np.sqrt(params["a"] ** 2 * e + (params["b"] * e) ** 2 + params["c"] ** 2)
    low = e < np.sqrt(e_range[0] * e_range[1])
    for part, sel in (("low E", low), ("high E", ~low)):
        assert_standard_normal((e_r - e)[sel] / sigma[sel], f"calorimeter E ({part})")
    # Direction kept: the smeared three-momentum is parallel to the true one.
    p, p_r = np.asarray(ev.p)[mask], np.asarray(out.p)[mask]
    cross = (
        np.cross(p[:, 1:], p_r[:, 1:])
        / (np.linalg.norm(p[:, 1:], axis=-1) * np.linalg.norm(p_r[:, 1:], axis=-1))[:, None]
    )
    np.testing.assert_allclose(cross, 0.0, atol=1e-12)
    assert np.asarray(out.mask).sum() == mask.sum()  # no deposit fluctuated below 0 in this range
    assert_padding_clean(out)


def test_calorimeter_leaves_charged_and_tracker_leaves_neutral(key):
    rng = np.random.default_rng(3)
    ev = random_particles(rng, 4000, 8, 211, (1.0, 10.0))  # the pull tests' shapes: no recompilation
    pid = np.where(np.asarray(ev.mask), rng.choice(np.asarray([211, 22, 13, 2112], np.int32), (4000, 8)), 0)
    ev = ev.replace(pid=jnp.asarray(pid, dtype=jnp.int32))
    calo = CALORIMETER_APPLY(CALORIMETER.init(key), key, ev)
    trk = TRACKER_APPLY(TRACKER.init(key), key, ev)
    charged = np.asarray(pdg.is_charged(ev.pid))
    real = np.asarray(ev.mask)
    np.testing.assert_array_equal(np.asarray(calo.p)[charged], np.asarray(ev.p)[charged])
    np.testing.assert_array_equal(np.asarray(trk.p)[~charged], np.asarray(ev.p)[~charged])
    assert np.all(np.any(np.asarray(calo.p) != np.asarray(ev.p), axis=-1)[real & ~charged])
    assert np.all(np.any(np.asarray(trk.p) != np.asarray(ev.p), axis=-1)[real & charged])


def test_gaussian_smearing_pulls(key):
    rng = np.random.default_rng(4)
    ev = random_particles(rng, 4000, 4, 13, (5.0, 50.0), m=M_MU)
    layer = gaussian_smearing(rel=[0.01, 0.02, 0.03, 0.04], abs=[0.1, 0.0, 0.2, 0.0])
    params = layer.init(key)
    out = jax.jit(layer.apply)(params, key, ev)
    mask = np.asarray(ev.mask)
    p, p_r = np.asarray(ev.p)[mask], np.asarray(out.p)[mask]
    sigma = np.hypot(np.asarray(params["abs"]), np.asarray(params["rel"]) * np.abs(p))
    for mu, name in enumerate("E px py pz".split()):
        assert_standard_normal((p_r - p)[:, mu] / sigma[:, mu], f"gaussian {name}")
    assert_padding_clean(out)


def test_dimuon_mass_width_lep_like():
    """e⁺e⁻ → μ⁺μ⁻ at the Z pole: the reconstructed mass peak has the predicted width.

    With σ_i = σ(pT)/pT of muon i, δm/m = ½ Σ_i (δpT_i/pT_i + tanh η_i δη_i) to first order
    (|p| = pT cosh η, m² ≈ 2|p₁||p₂|(1 − cos θ₁₂); φ smearing enters at second order), so
    σ_m = (m/2) √(Σ_i σ_i² + tanh²η_i σ_η²) per event.
    """
    truth, reco, params, _ = lep_muon_sample()
    both = np.asarray(reco.mask).sum(axis=1) == 2
    assert 0.8 < both.mean() < 0.96  # acceptance |cos θ| < 0.95 of 1 + cos²θ times 0.98² efficiency
    p_true, p_reco = np.asarray(truth.p)[both], np.asarray(reco.p)[both]
    m_true, m_reco = np_mass(p_true.sum(axis=1)), np_mass(p_reco.sum(axis=1))
    pt, eta = np_pt(p_true), np_eta(p_true)
    trk = {k: float(v) for k, v in params["tracker"].items()}
    rel = np.hypot(trk["a"], trk["b"] * pt)
    sigma_m = m_true / 2 * np.sqrt(np.sum(rel**2 + (np.tanh(eta) * trk["sigma_eta"]) ** 2, axis=1))
    dm = m_reco - m_true
    assert_standard_normal(dm / sigma_m, "dimuon mass")
    n = dm.size
    predicted_rms = np.sqrt(np.mean(sigma_m**2))
    # Standard error of the sample RMS: sqrt(Var(dm²))/(2 RMS √n).
    rms_error = np.std(dm**2) / (2 * predicted_rms * np.sqrt(n))
    assert_compatible(np.sqrt(np.mean(dm**2)), predicted_rms, rms_error, n_sigma=4, what="dimuon mass RMS (GeV)")
    assert 1.0 < predicted_rms < 2.5  # ≈ 1.3 GeV at 45 GeV per muon


# --------------------------------------------------------------------------- gradients


def _weighted_mean_energy(ev):
    return jnp.average(jnp.sum(jnp.where(ev.mask, ev.p[..., 0], 0.0), axis=1), weights=ev.weight)


def _energy_width(ev):
    return jnp.std(jnp.where(ev.mask, ev.p[..., 0], 0.0))


def _mean_mass(ev):
    return jnp.average(dimuon_mass(ev), weights=ev.weight)


def _mean_pt_eta_phi(ev):
    # sensitive to a, b (pT), σ_η (through E = pT cosh η) and σ_φ (through the pair mass)
    e = jnp.sum(jnp.where(ev.mask, ev.p[..., 0], 0.0), axis=1)
    return jnp.mean(e) + jnp.std(e) + 10.0 * jnp.mean(dimuon_mass(ev))


def test_tracker_grads_common_random_numbers(key):
    rng = np.random.default_rng(6)
    ev = muon_pairs(rng, 2000)
    layer = tracker(a=0.01, b=1e-3, sigma_eta=0.02, sigma_phi=0.02)
    res = check_layer_grads(layer, layer.init(key), key, ev, _mean_pt_eta_phi)
    assert set(res) == {"['a'][0]", "['b'][0]", "['sigma_eta'][0]", "['sigma_phi'][0]"}
    assert all(abs(ad) > 1e-6 for ad, _ in res.values())  # every parameter has an effect


def test_calorimeter_grads_common_random_numbers(key):
    rng = np.random.default_rng(7)
    ev = random_particles(rng, 1000, 6, 22, (1.0, 40.0), eta_max=1.0)
    layer = calorimeter(a=0.2, b=0.02, c=0.1)
    res = check_layer_grads(layer, layer.init(key), key, ev, lambda e: _weighted_mean_energy(e) + _energy_width(e))
    assert len(res) == 3
    assert abs(res["['a'][0]"][0]) > 1e-3  # the width grows with the stochastic term


def test_gaussian_and_lep_like_grads(key):
    rng = np.random.default_rng(8)
    ev = muon_pairs(rng, 1000)
    layer = gaussian_smearing(abs=0.05)
    # a larger step: ⟨m⟩ ≈ 91 GeV while its derivative is 1e-3, so roundoff dominates at 1e-6
    check_layer_grads(layer, layer.init(key), key, ev, _mean_mass, max_elements=4, eps=1e-4)
    det = lep_like()

    def weighted_energy(out):
        w = out.extra["detector_keep_prob"]
        return jnp.mean(jnp.sum(w * out.p[..., 0], axis=1)) + jnp.std(dimuon_mass(out))

    # add a photon along the beam (pT = 0) in slot 2 of every other event and padding in slot 3
    padded = ev.pad_to(4)
    beam = np.zeros((1000, 4))
    beam[::2] = [3.0, 0.0, 0.0, 3.0]
    padded = padded.replace(
        p=padded.p.at[:, 2].set(jnp.asarray(beam)),
        mask=padded.mask.at[::2, 2].set(True),
        pid=padded.pid.at[::2, 2].set(22),
    )
    # σ_φ acts at second order: its derivative (~2e-4) is near the finite-difference roundoff
    # |f|·ε_mach/h ≈ 1e-8, hence atol = 1e-7
    res = check_layer_grads(det, det.init(key), key, padded, weighted_energy, atol=1e-7)  # asserts finite gradients
    for name in ("['tracker']['a'][0]", "['tracker']['b'][0]", "['tracker_acceptance']['eta_max'][0]"):
        assert abs(res[name][0]) > 1e-6


def test_readme_example_gradient(key):
    sim = dg.chain(muon_source(), ("detector", gaussian_smearing()))
    params = sim.init(key)

    def mean_mass(params):
        ev = sim.sample(params, jax.random.key(1), 2000)
        return jnp.average(dimuon_mass(ev), weights=ev.weight)

    grads = jax.jit(jax.grad(mean_mass))(params)
    assert set(grads["detector"]) == {"rel", "abs"}
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))
    assert float(grads["detector"]["rel"][0]) != 0.0
    # d⟨m⟩/d√s ≈ 1: smearing is relative, so ⟨m⟩ scales with √s.
    np.testing.assert_allclose(float(grads["source"]["sqrt_s"]), 1.0, atol=0.01)


def test_stochastic_efficiency_grads_finite_with_padding_and_zero_pt(key):
    ev = make_events(
        [[10.0, 0.0, 5.0, 0.0]], [[0.5, 0.0, -1.0, 0.0]], [[0.1, 0.0, 2.0, 0.0]], [[0.0] * 4], [[13, 22, 2112, 0]]
    )
    # slot 1: a photon along the beam (pT = 0); slot 3: padding
    beam = ev.p.at[0, 1].set(jnp.asarray([3.0, 0.0, 0.0, 3.0]))
    ev = ev.replace(p=beam, mask=ev.mask.at[0, 1].set(True))
    layer = efficiency(
        eta_max=2.0, pt_min=0.5, plateau=0.9, pt_50=1.0, pt_width=0.3, eta_50=1.5, eta_width=0.2, mode="stochastic"
    )

    def f(theta):
        out = layer.apply(theta, key, ev)
        return jnp.sum(out.extra["detector_logprob"]), out

    (_, out), grads = jax.jit(jax.value_and_grad(f, has_aux=True))(layer.init(key))
    assert np.isfinite(np.asarray(out.p)).all()
    assert_padding_clean(out)
    for leaf in jax.tree.leaves(grads):
        assert np.isfinite(np.asarray(leaf)).all()


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_dtype_follows_events(key, dtype):
    rng = np.random.default_rng(9)
    ev = muon_pairs(rng, 100, dtype=dtype)
    for det in (lep_like(), lep_like(mode="stochastic"), gaussian_smearing(), toy(dtype=jnp.float32)):
        out = jax.eval_shape(det.apply, det.init(key), key, ev)  # dtypes without compiling
        assert out.p.dtype == dtype and out.weight.dtype == dtype
        for value in out.extra.values():
            assert value.dtype == dtype


def test_bad_layer_arguments():
    with pytest.raises(ValueError, match="tracker: a must be"):
        tracker(a=-0.1)
    with pytest.raises(ValueError, match="calorimeter: c must be"):
        calorimeter(c=-1.0)
    with pytest.raises(ValueError, match="select must be one of"):
        calorimeter(select="muons")
    with pytest.raises(ValueError, match=r"rel must have 4 entries"):
        gaussian_smearing(rel=[0.1, 0.2])
    with pytest.raises(ValueError, match=r"abs\[1\] must be"):
        gaussian_smearing(abs=[0.0, -1.0, 0.0, 0.0])
