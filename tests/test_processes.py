"""Hard processes: Born cross sections and A_FB against closed forms, limits, gradients, events."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate
from scipy.stats import chi2

from diffgen import kinematics as kin
from diffgen.core import Source
from diffgen.processes import (
    afb,
    cross_section,
    ee_to_ffbar,
    ee_to_qqbar,
    ee_to_qqbarg,
    ee_to_ttbar_6f,
    unweight,
)
from diffgen.processes import constants as C
from diffgen.testing import (
    assert_compatible,
    assert_momentum_conserved,
    assert_on_shell,
    assert_padding_clean,
    check_layer_grads,
)

ENERGIES = (20.0, 60.0, 88.0, 91.1876, 95.0, 200.0)


# --------------------------------------------------------------------------- independent closed form


def closed_form_born(rs, q_f, t3_f, n_c, m_f, p, running=False):
    """σ (pb) and A_FB of e⁺e⁻ → f f̄, written in the vector/axial form of
    Ellis–Stirling–Webber eqs. 1.2–1.8 with the standard massive factors β(3 − β²)/2, β³.

    V_f = T₃ − 2Q sin²θ_W, A_f = T₃, κ = 1/(4 sin²θ_W cos²θ_W),
    χ₁ = κ s (s − M²)/D, χ₂ = κ² s²/D, D = (s − M²)² + (MΓ)² (or (sΓ/M)² running).
    """
    s = rs * rs
    mz, gz, sw2, alpha = p["m_z"], p["gamma_z"], p["sin2_theta_w"], p["alpha_em"]
    q_e = -1.0
    v_e, a_e = -0.5 + 2.0 * sw2, -0.5
    v_f, a_f = t3_f - 2.0 * q_f * sw2, t3_f
    kappa = 1.0 / (4.0 * sw2 * (1.0 - sw2))
    width_term = (s * gz / mz) ** 2 if running else (mz * gz) ** 2
    d = (s - mz * mz) ** 2 + width_term
    chi1 = kappa * s * (s - mz * mz) / d
    chi2_ = kappa**2 * s * s / d
    beta = math.sqrt(1.0 - 4.0 * m_f * m_f / s)
    vec = q_f**2 + 2.0 * q_e * q_f * v_e * v_f * chi1 + (v_e**2 + a_e**2) * v_f**2 * chi2_
    ax = (v_e**2 + a_e**2) * a_f**2 * chi2_
    bracket = 0.5 * (3.0 - beta**2) * vec + beta**2 * ax
    sigma = n_c * 4.0 * math.pi * alpha**2 / (3.0 * s) * beta * bracket * 0.389379372e9
    fb = 2.0 * q_e * q_f * a_e * a_f * chi1 + 4.0 * v_e * a_e * v_f * a_f * chi2_
    return sigma, 0.75 * beta * fb / bracket


def _closed(flavour, rs, params, running=False):
    f = C.FERMIONS[flavour]
    p = {k: float(v) for k, v in params.items()}
    return closed_form_born(rs, f.charge, f.t3, f.colours, f.mass, p, running)


def _stats_fn(src, n, chunks):
    """Jitted (params, key) -> (σ, δσ, A_FB, δA_FB) over ``chunks`` batches of n events."""

    @jax.jit
    def run(params, key):
        def one(k):
            ev = src.sample(params, k, n)
            w = ev.weight
            sgn = jnp.sign(ev.p[:, 0, 3])
            return jnp.stack([jnp.sum(w), jnp.sum(w * w), jnp.sum(w * sgn), jnp.sum(w * w * sgn)])

        sums = jnp.sum(jax.lax.map(one, jax.random.split(key, chunks)), axis=0)
        n_tot = n * chunks
        sigma = sums[0] / n_tot
        err = jnp.sqrt((sums[1] / n_tot - sigma**2) / n_tot)
        a = sums[2] / sums[0]
        # ratio-estimator error sqrt(Σw²(sign − A)²)/Σw, with sign² = 1
        a_err = jnp.sqrt(sums[1] - 2.0 * a * sums[3] + a * a * sums[1]) / sums[0]
        return sigma, err, a, a_err

    return run


# --------------------------------------------------------------------------- e+e- -> mu+ mu-


@pytest.mark.slow
def test_mumu_sigma_and_afb_match_closed_form(key):
    src = ee_to_ffbar("mu")
    params = src.init(key)
    n, chunks = 500_000, 8
    run = _stats_fn(src, n, chunks)
    for i, rs in enumerate(ENERGIES):
        p = {**params, "sqrt_s": jnp.asarray(rs)}
        sigma, err, a, a_err = (float(x) for x in run(p, jax.random.fold_in(key, i)))
        ref_sigma, ref_afb = _closed("mu", rs, p)
        assert abs(sigma / ref_sigma - 1.0) < 1e-3, f"√s={rs}: σ {sigma} vs {ref_sigma}"
        assert_compatible(sigma, ref_sigma, err, what=f"σ(μμ) at {rs} GeV")
        assert_compatible(a, ref_afb, a_err, what=f"A_FB(μμ) at {rs} GeV")


def test_running_width_and_flat_sampling_match_closed_form(key):
    n, chunks = 250_000, 2
    for width, sampling in (("running", "born"), ("fixed", "flat")):
        src = ee_to_ffbar("mu", width=width, sampling=sampling)
        params = src.init(key)
        run = _stats_fn(src, n, chunks)
        for i, rs in enumerate((88.0, 91.1876, 95.0)):
            p = {**params, "sqrt_s": jnp.asarray(rs)}
            sigma, err, _, _ = (float(x) for x in run(p, jax.random.fold_in(key, i)))
            ref_sigma, _ = _closed("mu", rs, p, running=width == "running")
            assert_compatible(sigma, ref_sigma, err, what=f"σ(μμ, {width}, {sampling}) at {rs} GeV")


def test_low_energy_limit_point_cross_section(key):
    src = ee_to_ffbar("mu")
    params = {**src.init(key), "alpha_em": jnp.asarray(C.ALPHA_EM_THOMSON)}
    run = _stats_fn(src, 200_000, 1)
    for rs in (3.0, 5.0, 10.0):
        p = {**params, "sqrt_s": jnp.asarray(rs)}
        sigma, err, _, _ = (float(x) for x in run(p, key))
        point = 4.0 * math.pi * C.ALPHA_EM_THOMSON**2 / (3.0 * rs * rs) * C.GEV2_PB
        # corrections are O(s/m_Z²) (γ–Z interference) and O((4m_μ²/s)²) (mass factor)
        bound = rs**2 / C.M_Z**2 + (4 * C.FERMIONS["mu"].mass ** 2 / rs**2) ** 2
        assert abs(sigma / point - 1.0) <= bound + 3 * err / point, f"√s={rs}: σ/σ_pt = {sigma / point}"


def test_r_ratio_below_the_z(key):
    for rs, flavours in ((10.0, "uds"), (20.0, "udscb")):
        had = ee_to_qqbar(rs, flavours=flavours)
        mumu = ee_to_ffbar("mu", rs)
        params = had.init(key)
        ev = jax.jit(had.sample, static_argnums=2)(params, key, 400_000)
        w = np.asarray(ev.weight)
        pid = np.asarray(ev.pid[:, 0])
        sigma_had, err_had = w.mean(), w.std() / math.sqrt(w.size)
        sigma_mumu = _closed("mu", rs, params)[0]
        r = sigma_had / sigma_mumu
        r0 = 3.0 * sum(C.FERMIONS[q].charge ** 2 for q in flavours)
        bound = rs**2 / C.M_Z**2 + max(4 * C.FERMIONS[q].mass ** 2 / rs**2 for q in flavours)
        assert abs(r / r0 - 1.0) < bound + 3 * err_had / sigma_had, f"R = {r} vs 3ΣQ² = {r0}"
        # exact closed form (with masses and Z) per flavour and summed
        refs = {q: _closed(q, rs, params)[0] for q in flavours}
        assert_compatible(sigma_had, sum(refs.values()), err_had, what=f"σ(had) at {rs} GeV")
        for q in flavours:
            wq = np.where(pid == C.FERMIONS[q].pid, w, 0.0)
            assert_compatible(wq.mean(), refs[q], wq.std() / math.sqrt(w.size), what=f"σ({q}) at {rs} GeV")
        # the Born point-like rate of μμ from the source agrees with the closed form too
        sig_mumu_mc, err_mumu = (
            float(x) for x in jax.jit(cross_section, static_argnums=(0, 3))(mumu, mumu.init(key), key, 100_000)
        )
        assert_compatible(sig_mumu_mc, sigma_mumu, err_mumu, what="σ(μμ)")


def test_qcd_correction_factor(key):
    plain = ee_to_ffbar("b", 91.1876)
    corr = ee_to_ffbar("b", 91.1876, qcd_correction=True)
    p = corr.init(key)
    w0 = jax.jit(plain.sample, static_argnums=2)({k: v for k, v in p.items() if k != "alpha_s"}, key, 1000).weight
    w1 = jax.jit(corr.sample, static_argnums=2)(p, key, 1000).weight
    np.testing.assert_allclose(np.asarray(w1), np.asarray(w0) * (1 + C.ALPHA_S_MZ / math.pi), rtol=1e-13)


# --------------------------------------------------------------------------- gradients


def test_grad_of_sigma_and_afb_match_finite_differences(key):
    src = ee_to_ffbar("mu")
    params = src.init(key)
    free = ("m_z", "gamma_z", "sin2_theta_w")
    n = 10_000

    def observables(theta, rs):
        ev = src.sample({**params, **theta, "sqrt_s": rs}, key, n)
        return jnp.stack([jnp.mean(ev.weight), afb(ev)[0]])

    f = jax.jit(observables)
    jac = jax.jit(jax.jacrev(observables))
    for rs in (88.0, 91.1876, 95.0):
        rs = jnp.asarray(rs)
        theta = {k: params[k] for k in free}
        ad = jac(theta, rs)
        for name in free:
            # common random numbers: the same key at θ ± h
            h = 1e-6 * max(1.0, abs(float(theta[name])))
            up = f({**theta, name: theta[name] + h}, rs)
            down = f({**theta, name: theta[name] - h}, rs)
            fd = (np.asarray(up) - np.asarray(down)) / (2 * h)
            got = np.asarray(ad[name])
            assert np.all(got != 0.0), f"d(σ, A_FB)/d{name} vanishes at {float(rs)} GeV"
            np.testing.assert_allclose(got, fd, rtol=1e-5, err_msg=f"d(σ, A_FB)/d{name} at {float(rs)} GeV")


def test_cross_section_grad_and_vmap_over_energy(key):
    src = ee_to_ffbar("mu")
    params = src.init(key)
    energies = jnp.asarray([60.0, 91.1876, 200.0])

    def sigma_at(rs):
        return cross_section(src, {**params, "sqrt_s": rs}, key, 5_000)

    sig_v, err_v = jax.jit(jax.vmap(sigma_at))(energies)
    for i, rs in enumerate(np.asarray(energies)):
        s_i, e_i = sigma_at(jnp.asarray(rs))
        np.testing.assert_allclose([float(sig_v[i]), float(err_v[i])], [float(s_i), float(e_i)], rtol=1e-12)
    g = jax.jit(jax.grad(lambda p: cross_section(src, p, key, 5_000)[0]))(params)
    assert all(np.isfinite(float(v)) for v in g.values())


def _restricted(src, free, key):
    """The source as a function of the params in ``free`` only (the others fixed at init)."""
    fixed = src.init(key)

    def sample(params, k, n):
        return src.sample({**fixed, **params}, k, n)

    return Source(init=lambda k: {name: fixed[name] for name in free}, sample=sample)


def test_qqbarg_and_ttbar_gradients_match_finite_differences(key):
    qqg = _restricted(ee_to_qqbarg(), ("alpha_s", "sin2_theta_w"), key)
    check_layer_grads(qqg, qqg.init(key), key, 2_000, lambda ev: jnp.mean(ev.weight), rtol=1e-5)
    tt = _restricted(ee_to_ttbar_6f(), ("m_t", "gamma_t", "m_w"), key)

    def weighted_top_mass(ev):
        # depends on the params through the weights and, pathwise, through the momenta
        return jnp.mean(ev.weight * kin.mass(ev.p[:, 0] + ev.p[:, 1] + ev.p[:, 2]))

    table = check_layer_grads(tt, tt.init(key), key, 2_000, weighted_top_mass, rtol=1e-5)
    assert all(table[f"['{k}'][0]"][0] != 0.0 for k in ("m_t", "gamma_t", "m_w"))


# --------------------------------------------------------------------------- q qbar g: thrust


def _thrust_density(t):
    """(2π/(C_F α_s)) (1/σ₀) dσ/dT at O(α_s) (De Rújula, Ellis, Floratos, Gaillard, NPB 138 (1978) 387)."""
    return 2 * (3 * t * t - 3 * t + 2) / (t * (1 - t)) * np.log((2 * t - 1) / (1 - t)) - 3 * (3 * t - 2) * (2 - t) / (
        1 - t
    )


@pytest.mark.slow
def test_qqbarg_thrust_distribution_matches_analytic(key):
    y_cut = 0.01
    src = ee_to_qqbarg(91.1876, y_cut=y_cut)
    params = src.init(key)
    n = 400_000
    edges = np.linspace(2.0 / 3.0, 1.0 - y_cut, 13)

    @jax.jit
    def run(params, key):
        ev = src.sample(params, key, n)
        x = ev.extra["x"]
        t = jnp.max(x, axis=1)
        # T computed from the momenta equals max x_i for three massless partons
        e_max = 2.0 * jnp.max(ev.p[:, :, 0], axis=1) / params["sqrt_s"]
        idx = jnp.clip(jnp.searchsorted(jnp.asarray(edges), t) - 1, 0, len(edges) - 2)
        w = ev.weight
        sums = jnp.zeros(len(edges) - 1, w.dtype).at[idx].add(w)
        sq = jnp.zeros(len(edges) - 1, w.dtype).at[idx].add(w * w)
        return sums / n, jnp.sqrt((sq / n - (sums / n) ** 2) / n), jnp.max(jnp.abs(t - e_max)), jnp.mean(w)

    hist, err, dev, total = run(params, key)
    assert float(dev) < 1e-12
    p = {k: float(v) for k, v in params.items()}
    sigma0 = sum(closed_form_born(91.1876, C.FERMIONS[q].charge, C.FERMIONS[q].t3, 3, 0.0, p)[0] for q in "udscb")
    norm = sigma0 * C.CF * p["alpha_s"] / (2 * math.pi)
    expected = np.array([integrate.quad(_thrust_density, a, b)[0] for a, b in itertools.pairwise(edges)])
    expected *= norm
    pulls = (np.asarray(hist) - expected) / np.asarray(err)
    assert np.all(np.abs(pulls) < 4.0), pulls
    assert np.sum(pulls**2) < chi2.ppf(0.999, len(pulls)), pulls
    assert_compatible(float(total), expected.sum(), float(np.sqrt(np.sum(np.asarray(err) ** 2))), what="σ(qqg)")


# --------------------------------------------------------------------------- events and conventions


def test_events_layout_conservation_and_colour(key):
    def gen(src, n):
        return jax.jit(src.sample, static_argnums=2)(src.init(key), key, n)

    ev = gen(ee_to_ffbar("b", 91.1876), 2_000)
    assert ev.p.shape == (2_000, 2, 4) and ev.pid.shape == (2_000, 2)
    np.testing.assert_array_equal(np.asarray(ev.pid[0]), [5, -5])
    np.testing.assert_array_equal(np.asarray(ev.colour[0]), [[501, 0], [0, 501]])
    assert_momentum_conserved(ev, jnp.array([91.1876, 0, 0, 0]), rtol=1e-12)
    assert_on_shell(ev, {5: C.FERMIONS["b"].mass}, rtol=1e-10)
    mu = gen(ee_to_ffbar("mu"), 100)
    assert mu.colour is None
    np.testing.assert_array_equal(np.asarray(mu.pid[0]), [13, -13])

    qq = gen(ee_to_qqbar(), 5_000)
    assert set(np.unique(np.asarray(qq.pid[:, 0]))) == {1, 2, 3, 4, 5}
    np.testing.assert_array_equal(np.asarray(qq.pid[:, 1]), -np.asarray(qq.pid[:, 0]))
    assert np.all(np.asarray(qq.colour) == np.array([[501, 0], [0, 501]]))
    masses = {q.pid: q.mass for q in C.FERMIONS.values()}
    assert_on_shell(qq, masses, rtol=1e-10)
    assert_momentum_conserved(qq, jnp.array([91.1876, 0, 0, 0]), rtol=1e-12)
    assert qq.extra["flavour_log_prob"].shape == (5_000,)

    g = gen(ee_to_qqbarg(), 5_000)
    np.testing.assert_array_equal(np.asarray(g.colour[0]), [[501, 0], [502, 501], [0, 502]])
    assert np.asarray(g.pid[0, 1]) == 21
    assert_momentum_conserved(g, jnp.array([91.1876, 0, 0, 0]), rtol=1e-12)
    assert_on_shell(g, rtol=1e-10)
    x = np.asarray(g.extra["x"])[np.asarray(g.weight) > 0]
    assert np.all(x < 1.0 - 0.01) and np.all(np.abs(x.sum(axis=1) - 2.0) < 1e-12)

    tt_src = ee_to_ttbar_6f(w_plus="ud", w_minus="mu")
    tt = gen(tt_src, 5_000)
    np.testing.assert_array_equal(np.asarray(tt.pid[0]), [5, 2, -1, -5, 13, -14])
    np.testing.assert_array_equal(np.asarray(tt.colour[0, :3]), [[501, 0], [502, 0], [0, 502]])
    keep = np.nonzero(np.asarray(tt.weight) > 0)[0]
    assert keep.size > 0.99 * 5_000
    tt = tt.take(keep)
    assert_momentum_conserved(tt, jnp.array([500.0, 0, 0, 0]), rtol=1e-12)
    assert_on_shell(tt, lambda pid: np.where(np.abs(pid) == 5, C.M_B_POLE, 0.0), rtol=1e-10)
    assert_padding_clean(tt)


def test_ttbar_narrow_width_limit(key):
    src = ee_to_ttbar_6f(500.0)
    params = {**src.init(key), "gamma_t": jnp.asarray(0.0142), "gamma_w": jnp.asarray(0.02085)}
    sigma, err = (float(x) for x in jax.jit(cross_section, static_argnums=(0, 3))(src, params, key, 100_000))
    p = {k: float(v) for k, v in params.items()}
    ref = closed_form_born(500.0, 2 / 3, 0.5, 3, p["m_t"], p)[0] / 81.0
    # off-shell effects are O(Γ/m) ~ 1e-4 at these widths
    assert abs(sigma / ref - 1.0) < 3 * err / ref + 1e-3, (sigma, ref, err)


def test_float32_events(key):
    src = ee_to_ffbar("mu", dtype=jnp.float32)
    p = src.init(key)
    assert all(v.dtype == jnp.float32 for v in p.values())
    ev = jax.jit(src.sample, static_argnums=2)(p, key, 10_000)
    assert ev.p.dtype == jnp.float32 and ev.weight.dtype == jnp.float32
    sig32, err32 = float(jnp.mean(ev.weight)), float(jnp.std(ev.weight)) / 100.0
    src64 = ee_to_ffbar("mu")
    w64 = jax.jit(src64.sample, static_argnums=2)(src64.init(key), key, 10_000).weight
    sig64, err64 = float(jnp.mean(w64)), float(jnp.std(w64)) / 100.0
    # float32 uniforms differ from float64 ones: the two estimates are independent samples
    assert_compatible(sig32, sig64, math.hypot(err32, err64), what="σ float32 vs float64")


def test_unweight(key):
    src = ee_to_ffbar("mu", 200.0, sampling="flat")
    ev = jax.jit(src.sample, static_argnums=2)(src.init(key), key, 100_000)
    w = np.asarray(ev.weight)
    un, eff = unweight(ev, jax.random.fold_in(key, 1))
    np.testing.assert_allclose(float(eff), w.mean() / w.max(), rtol=1e-12)
    n_acc = len(un)
    assert_compatible(n_acc, w.size * float(eff), math.sqrt(w.size * float(eff) * (1 - float(eff))), what="accepted")
    np.testing.assert_allclose(np.asarray(un.weight), w.mean(), rtol=1e-12)
    # unweighted events reproduce the weighted cos θ distribution: <cos θ> = (3/8)... compare moments
    c_w = np.asarray(kin.cos_theta(ev.p[:, 0]))
    c_u = np.asarray(kin.cos_theta(un.p[:, 0]))
    ref = np.sum(w * c_w) / np.sum(w)
    assert_compatible(c_u.mean(), ref, math.sqrt(c_u.var() / n_acc + np.sum(w * w * (c_w - ref) ** 2) / np.sum(w) ** 2))
    full, eff2 = jax.jit(lambda e, k: unweight(e, k, compact=False))(ev, jax.random.fold_in(key, 1))
    assert len(full) == len(ev) and float(eff2) == float(eff)
    assert int(np.sum(np.asarray(full.extra["unweight_accepted"]))) == n_acc


# --------------------------------------------------------------------------- bad input


def test_bad_input(key):
    with pytest.raises(ValueError, match=r"flavour must be one of"):
        ee_to_ffbar("top")
    with pytest.raises(ValueError, match=r"sqrt_s must be above the b pair threshold"):
        ee_to_ffbar("b", 5.0)
    with pytest.raises(ValueError, match=r"width must be one of"):
        ee_to_ffbar("mu", width="complex")
    with pytest.raises(ValueError, match=r"qcd_correction applies to quarks only"):
        ee_to_ffbar("mu", qcd_correction=True)
    src = ee_to_ffbar("mu")
    params = src.init(key)
    for n in (0, -5, 2.5):
        with pytest.raises(ValueError, match=r"n must be a positive integer"):
            src.sample(params, key, n)
    with pytest.raises(ValueError, match=r"params\['gamma_z'\] = -1.0 is outside the allowed range \(0, inf\)"):
        src.sample({**params, "gamma_z": jnp.asarray(-1.0)}, key, 10)
    with pytest.raises(ValueError, match=r"params\['m_z'\] = nan is outside"):
        src.sample({**params, "m_z": jnp.asarray(jnp.nan)}, key, 10)
    with pytest.raises(ValueError, match=r"params\['sqrt_s'\] = 0.1 is outside the allowed range \(0.211"):
        src.sample({**params, "sqrt_s": jnp.asarray(0.1)}, key, 10)
    with pytest.raises(ValueError, match=r"params lack \['alpha_em'\]"):
        src.sample({k: v for k, v in params.items() if k != "alpha_em"}, key, 10)
    with pytest.raises(ValueError, match=r"flavours must be distinct quark names"):
        ee_to_qqbar(flavours="udx")
    with pytest.raises(ValueError, match=r"sqrt_s must be above the heaviest pair threshold"):
        ee_to_qqbar(5.0)
    with pytest.raises(ValueError, match=r"y_cut must be in \(0, 1/3\)"):
        ee_to_qqbarg(y_cut=0.5)
    with pytest.raises(ValueError, match=r"w_plus must be one of"):
        ee_to_ttbar_6f(w_plus="tb")
    with pytest.raises(ValueError, match=r"sqrt_s must be in"):
        ee_to_ttbar_6f(sqrt_s=10.0)
    tt = ee_to_ttbar_6f()
    with pytest.raises(ValueError, match=r"params\['gamma_t'\] = -0.5 is outside"):
        tt.sample({**tt.init(key), "gamma_t": jnp.asarray(-0.5)}, key, 10)
    with pytest.raises(ValueError, match=r"dtype must be float32 or float64"):
        ee_to_ffbar("mu", dtype=jnp.int32)
    with pytest.raises(TypeError, match=r"source must be a Source"):
        cross_section(lambda: None, params, key, 10)
    with pytest.raises(ValueError, match=r"cross_section: n must be a positive integer"):
        cross_section(src, params, key, 0)
