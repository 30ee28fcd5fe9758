"""Final-state dipole shower: invariants, colour flow, Sudakov, O(αs) thrust, αs gradients."""

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

from diffgen import observables as obs
from diffgen.core import Events
from diffgen.processes import ee_to_qqbar
from diffgen.shower import (
    BOUNDARY_KEYS,
    boundary_events,
    boundary_term,
    final_state_shower,
    reweight,
    score_function_term,
)
from diffgen.shower.alphas import CF
from diffgen.testing import assert_compatible, assert_momentum_conserved, assert_on_shell, assert_padding_clean

SQRT_S = 91.2
N_MAIN = 6000  # events per direct sample (statistical tests)
SHOWER = final_state_shower()
FIXED = final_state_shower(alpha_s_order=0)
BOUNDARY = final_state_shower(boundary_trials=8)
_apply = jax.jit(SHOWER.apply)
_apply_fixed = jax.jit(FIXED.apply)


def params(alpha, t0=1.0):
    return {"alpha_s_mz": jnp.asarray(alpha), "t0": jnp.asarray(t0)}


def qqbar(n, seed=0, dtype=jnp.float64):
    """Back-to-back massless d d̄ at √s = 91.2 GeV, isotropic, colour (501, 0)/(0, 501)."""
    rng = np.random.default_rng(seed)
    c = rng.uniform(-1, 1, n)
    ph = rng.uniform(0, 2 * np.pi, n)
    s = np.sqrt(1 - c * c)
    d = np.stack([s * np.cos(ph), s * np.sin(ph), c], 1)
    e = SQRT_S / 2
    p = np.zeros((n, 2, 4))
    p[:, :, 0] = e
    p[:, 0, 1:] = e * d
    p[:, 1, 1:] = -e * d
    col = np.zeros((n, 2, 2), np.int32)
    col[:, 0, 0] = 501
    col[:, 1, 1] = 501
    return Events(
        p=jnp.asarray(p, dtype),
        weight=jnp.ones(n, dtype),
        mask=jnp.ones((n, 2), bool),
        pid=jnp.asarray(np.tile([1, -1], (n, 1)).astype(np.int32)),
        colour=jnp.asarray(col),
    )


@pytest.fixture(scope="module")
def hard():
    src = ee_to_qqbar(SQRT_S)
    return jax.jit(src.sample, static_argnums=2)(src.init(jax.random.key(0)), jax.random.key(1), N_MAIN)


@pytest.fixture(scope="module")
def samples(hard):
    """Direct samples at αs(m_Z) = 0.108, 0.118, 0.128 (independent keys)."""
    return {a: _apply(params(a), jax.random.key(int(a * 1000)), hard) for a in (0.108, 0.118, 0.128)}


def check_colour_chains(ev):
    pid, col, mask = (np.asarray(x) for x in (ev.pid, ev.colour, ev.mask))
    for i in range(len(pid)):
        m = mask[i]
        c, a, f = col[i][m, 0], col[i][m, 1], pid[i][m]
        quark, anti, glu = (f > 0) & (f <= 5), (f < 0) & (f >= -5), f == 21
        assert np.all(quark | anti | glu), f"event {i}: unexpected pid {f}"
        assert np.all(c[quark] >= 501) and np.all(a[quark] == 0), f"event {i}: bad quark colour"
        assert np.all(a[anti] >= 501) and np.all(c[anti] == 0), f"event {i}: bad antiquark colour"
        assert np.all(c[glu] >= 501) and np.all(a[glu] >= 501) and np.all(c[glu] != a[glu]), f"event {i}: gluon"
        tags = c[c > 0]
        assert len(set(tags.tolist())) == len(tags) and sorted(tags.tolist()) == sorted(a[a > 0].tolist())
        # every chain runs from a quark through gluons to an antiquark; no parton left over
        by_anti = {int(t): k for k, t in enumerate(a) if t > 0}
        seen = set()
        for start in np.flatnonzero(quark):
            k = int(start)
            while True:
                seen.add(k)
                if anti[k]:
                    break
                k = by_anti[int(c[k])]
                assert k not in seen, f"event {i}: colour loop"
        assert len(seen) == len(f), f"event {i}: partons outside the quark-antiquark chains"


def test_invariants_and_colour(samples, hard):
    ev = samples[0.118]
    x = ev.extra
    assert ev.capacity == 24 and ev.colour is not None
    assert not bool(jnp.any(x["shower_overflow"])), "capacity 24 overflowed at 91.2 GeV"
    assert not bool(jnp.any(x["shower_record_overflow"]))
    assert_momentum_conserved(ev, hard, rtol=1e-9)
    assert_on_shell(ev, rtol=1e-10)
    assert_padding_clean(ev)
    np.testing.assert_array_equal(np.asarray(ev.multiplicity()), 2 + np.asarray(x["shower_n_emissions"]))
    np.testing.assert_array_equal(np.asarray(ev.weight), np.asarray(hard.weight))
    check_colour_chains(ev[:2000])
    assert 4.0 < float(jnp.mean(ev.multiplicity())) < 7.0


def test_reweight_identity_and_score(samples):
    ev = samples[0.118]
    np.testing.assert_allclose(np.asarray(reweight(ev, 0.118)), 1.0, rtol=1e-12)
    g = jax.jacfwd(lambda a: reweight(ev[:50], a))(jnp.asarray(0.118))
    np.testing.assert_allclose(np.asarray(g), np.asarray(ev.extra["shower_score_alpha_s"][:50]), rtol=1e-8, atol=1e-8)


def test_bad_input(hard):
    ev = qqbar(4)
    p = params(0.118)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="colour tags"):
        SHOWER.apply(p, key, ev.replace(colour=None))
    with pytest.raises(ValueError, match="no q q̄ pair"):
        SHOWER.apply(p, key, ev.replace(pid=jnp.asarray(np.tile([1, 21], (4, 1)).astype(np.int32))))
    with pytest.raises(ValueError, match="non-partons"):
        SHOWER.apply(p, key, ev.replace(pid=jnp.asarray(np.tile([13, -13], (4, 1)).astype(np.int32))))
    with pytest.raises(ValueError, match="exceeds the shower capacity"):
        final_state_shower(capacity=2).apply(p, key, ev.pad_to(3))
    with pytest.raises(ValueError, match="t0 must be a positive"):
        SHOWER.apply(params(0.118, -1.0), key, ev)
    with pytest.raises(ValueError, match="alpha_s_mz must lie in"):
        SHOWER.apply(params(0.9), key, ev)
    with pytest.raises(ValueError, match="Landau pole|must lie in \\(0, 1\\]"):
        SHOWER.apply(params(0.118, 0.01), key, ev)
    with pytest.raises(ValueError, match=r"αs\(t0\) must lie in \(0, 1\]"):
        SHOWER.apply(params(0.118, 0.05), key, ev)  # αs(0.05 GeV²) = 1.5: below the perturbative range
    with pytest.raises(ValueError, match="capacity must be an integer >= 2"):
        final_state_shower(capacity=1)
    with pytest.raises(ValueError, match="alpha_s_order"):
        final_state_shower(alpha_s_order=3)
    with pytest.raises(ValueError, match="lack the shower record"):
        reweight(ev, 0.12)


# ----------------------------------------------------------------------------- physics


def kernel_integral(kappa):
    """∫dz (1 − y) P_qq(z, y) over y = κ/(z(1 − z)) < 1 (arXiv:1411.4085 eq. 3.12), per C_F."""
    if kappa >= 0.25:
        return 0.0
    r = math.sqrt(1 - 4 * kappa)
    zm, zp = (1 - r) / 2, (1 + r) / 2

    def f(z):
        y = kappa / (z * (1 - z))
        return (1 - y) * (2 / (1 - z * (1 - y)) - (1 + z))

    return integrate.quad(f, zm, zp, epsabs=1e-11, epsrel=1e-10, limit=200)[0]


@pytest.mark.slow
def test_first_emission_sudakov():
    """Fixed αs, first emission (always q → q g): P(t₁ < t) = Δ(t) = exp(−2 αs/(2π) C_F ∫dt'/t' K)."""
    alpha, n = 0.118, N_MAIN
    ev = _apply_fixed(params(alpha), jax.random.key(5), qqbar(n, seed=5))
    t_rec = np.asarray(ev.extra["shower_trial_t"])
    acc = np.asarray(ev.extra["shower_trial_accepted"])
    has = acc.any(1)
    t1 = np.where(has, t_rec[np.arange(n), np.argmax(acc, 1)], 0.0)
    s = SQRT_S**2

    def log_sudakov(t):
        val = integrate.quad(lambda lt: kernel_integral(math.exp(lt) / s), math.log(t), math.log(s), limit=200)[0]
        return -2 * alpha / (2 * math.pi) * CF * val

    edges = np.array([1.0, 10.0, 60.0, 200.0, 600.0, s / 4])
    cdf = np.array([math.exp(log_sudakov(t)) for t in edges])  # P(t1 < t)
    prob = np.diff(cdf)
    frac = np.array([np.mean((t1 >= lo) & (t1 < hi)) for lo, hi in itertools.pairwise(edges)])
    sigma = np.sqrt(prob * (1 - prob) / n)
    assert_compatible(frac, prob, sigma, n_sigma=4, what="first-emission t spectrum")
    assert_compatible(np.mean(~has), cdf[0], math.sqrt(cdf[0] * (1 - cdf[0]) / n), n_sigma=4, what="no emission")


def thrust_me(t):
    """(1/σ) dσ/dT at O(αs) per C_F αs/(2π) (De Rújula et al., Nucl. Phys. B 138 (1978) 387)."""
    return 2 * (3 * t * t - 3 * t + 2) / (t * (1 - t)) * math.log((2 * t - 1) / (1 - t)) - 3 * (3 * t - 2) * (2 - t) / (
        1 - t
    )


@pytest.mark.slow
def test_three_jet_thrust_vs_matrix_element():
    """At αs = 0.02 (fixed) the shower's 1 − T > 0.1 spectrum is the O(αs) matrix element.

    The two CS dipoles of q q̄ add up to the exact q q̄ g matrix element, so deviations are
    O(αs²) (Sudakov factor ≈ 0.98 at 1 − T = 0.1), below the statistical error of ≈ 6 %.
    """
    alpha, n = 0.02, 30000
    # batches of N_MAIN events: the same compiled shower and thrust as the other tests
    tau = np.concatenate(
        [
            1.0 - np.asarray(obs.thrust(_apply_fixed(params(alpha), jax.random.key(9 + k), qqbar(N_MAIN, seed=9 + k))))
            for k in range(n // N_MAIN)
        ]
    )
    edges = np.array([0.1, 0.15, 0.22, 1.0 / 3.0])
    pred = np.array(
        [
            CF * alpha / (2 * math.pi) * integrate.quad(thrust_me, 1 - hi, 1 - lo)[0]
            for lo, hi in itertools.pairwise(edges)
        ]
    )
    frac = np.array([np.mean((tau >= lo) & (tau < hi)) for lo, hi in itertools.pairwise(edges)])
    assert_compatible(frac, pred, np.sqrt(pred / n), n_sigma=3.5, what="3-jet thrust spectrum")
    assert_compatible(frac.sum(), pred.sum(), math.sqrt(pred.sum() / n), n_sigma=3, what="3-jet rate")


def hist_compare(values_direct, values_ref, weights, edges, what):
    n_d, n_r = len(values_direct), len(values_ref)
    for lo, hi in itertools.pairwise(edges):
        in_d = (values_direct >= lo) & (values_direct < hi)
        in_r = ((values_ref >= lo) & (values_ref < hi)) * weights
        f_d, f_r = in_d.mean(), in_r.mean()
        sig = math.sqrt(f_d * (1 - f_d) / n_d + in_r.var() / n_r)
        assert_compatible(f_r, f_d, sig, n_sigma=4, what=f"{what} [{lo:.3g}, {hi:.3g})")


@pytest.mark.slow
def test_reweighting_reproduces_direct_samples(samples):
    ref = samples[0.118]
    shapes = {
        a: (
            1 - np.asarray(obs.thrust(e)),
            np.log10(np.maximum(np.asarray(obs.durham_y23(e)), 1e-8)),
            np.asarray(e.multiplicity()),
        )
        for a, e in samples.items()
    }
    for a in (0.108, 0.128):
        w = np.asarray(reweight(ref, a))
        assert np.all(np.isfinite(w))
        assert_compatible(w.mean(), 1.0, w.std() / math.sqrt(len(w)), n_sigma=4, what="mean weight")
        hist_compare(shapes[a][0], shapes[0.118][0], w, np.array([0.0, 0.02, 0.05, 0.1, 0.2, 0.5]), "1-T")
        hist_compare(shapes[a][1], shapes[0.118][1], w, np.array([-9.0, -3.0, -2.0, -1.5, -1.0, 0.0]), "log10 y23")
        hist_compare(shapes[a][2], shapes[0.118][2], w, np.array([2, 3, 4, 5, 6, 7, 9, 30]), "multiplicity")


@pytest.mark.slow
def test_alpha_s_derivative_estimators(samples, hard):
    """d⟨O⟩/dαs and d⟨O⟩/dt0: reweighting, and the event derivative (pathwise + score of the held
    decisions + cut-off boundary term), vs finite differences and each other."""
    tau = {a: 1 - np.asarray(obs.thrust(e)) for a, e in samples.items()}
    n = len(tau[0.118])
    fd = (tau[0.128].mean() - tau[0.108].mean()) / 0.02
    fd_err = math.sqrt(tau[0.128].var() / n + tau[0.108].var() / n) / 0.02

    score = np.asarray(samples[0.118].extra["shower_score_alpha_s"])
    contrib = score * (tau[0.118] - tau[0.118].mean())
    rw, rw_err = contrib.mean(), contrib.std() / math.sqrt(n)
    assert_compatible(rw, fd, math.hypot(rw_err, fd_err), n_sigma=3, what="reweighting derivative")

    # event derivatives on 1 500 events, in αs and t0 at once (forward mode, two directions)
    n_ev = 1500
    sub = hard[:n_ev]
    key = jax.random.key(77)
    observables = {"tau": lambda e: 1 - obs.thrust(e), "n": lambda e: e.multiplicity().astype(e.dtype)}

    def per_event(a, t0):
        ev = BOUNDARY.apply(params(a, t0), key, sub)
        out = {}
        for name, fn in observables.items():
            o = fn(ev)
            with_score = score_function_term(o, ev)
            out[name] = (o, with_score, with_score + boundary_term(fn, ev))
        x = ev.extra
        out["record"] = (x["shower_score_alpha_s"], x["shower_boundary_u"], x["shower_boundary_r"])
        return out

    def with_values(theta):
        out = per_event(theta[0], theta[1])
        return out, out

    jac, values = jax.jit(jax.jacfwd(with_values, has_aux=True))(jnp.asarray([0.118, 1.0]))
    d_alpha, d_t0 = (jax.tree.map(lambda x, k=k: x[..., k], jac) for k in (0, 1))
    (d_path, d_score, d_total) = (np.asarray(x) for x in d_alpha["tau"])

    def mean_err(x):
        return x.mean(), x.std() / math.sqrt(len(x))

    # 1 − T: the full event-derivative estimator vs the finite difference of independent samples
    ev_est, ev_err = mean_err(d_total)
    assert_compatible(ev_est, fd, math.hypot(ev_err, fd_err), n_sigma=3, what="event-derivative estimator")

    # multiplicity (no pathwise part): score + boundary vs the exact reweighting estimator on the
    # same events; without the boundary term the estimate is off by ~20σ
    mult = np.asarray(values["n"][0])
    rw_n = np.asarray(values["record"][0]) * (mult - mult.mean())
    _, score_n, total_n = (np.asarray(x) for x in d_alpha["n"])
    diff, diff_err = mean_err(total_n - rw_n)
    assert abs(diff) < 3 * diff_err, ("multiplicity: event derivative - reweighting", diff, diff_err)
    biased, biased_err = mean_err(score_n - rw_n)
    assert abs(biased) > 8 * biased_err, "the boundary term should matter for the multiplicity"

    # t0 (no reweighting estimator): vs central differences with common random numbers
    h = 0.05
    crn = (
        np.asarray(_apply(params(0.118, 1.0 + h), key, sub).multiplicity())
        - np.asarray(_apply(params(0.118, 1.0 - h), key, sub).multiplicity())
    ) / (2 * h)
    diff_t, diff_t_err = mean_err(np.asarray(d_t0["n"][2]) - crn)
    assert abs(diff_t) < 3 * diff_t_err, ("d<n>/dt0: event derivative - CRN differences", diff_t, diff_t_err)
    assert mean_err(crn)[0] < -3 * mean_err(crn)[1]  # a higher cut-off gives fewer partons

    # truncation to the last B trials: the oldest row's share of the boundary term is small
    u, r = (np.asarray(x) for x in values["record"][1:])
    flux = np.asarray(d_alpha["record"][1])
    oldest = np.argmin(np.where(u > 0, u, np.inf), axis=1)
    share = np.take_along_axis(-flux * r, oldest[:, None], 1).sum() / np.sum(-flux * r)
    assert 0 <= share < 0.02, share
    print(
        f"\nd<1-T>/dalpha_s: FD {fd:.4f} ± {fd_err:.4f}; reweighting {rw:.4f} ± {rw_err:.4f}; "
        f"event derivative {ev_est:.4f} ± {ev_err:.4f} (pathwise {d_path.mean():.4f}, + score "
        f"{d_score.mean():.4f}); d<n>/dalpha_s - reweighting {diff:.2f} ± {diff_err:.2f} "
        f"(without boundary {biased:.1f}); d<n>/dt0 - CRN {diff_t:.3f} ± {diff_t_err:.3f}; oldest row {share:.4f}"
    )


def test_boundary_record_and_bad_input():
    """boundary_trials leaves the shower unchanged; its record is consistent; clear errors."""
    ev = qqbar(64, seed=5)
    key = jax.random.key(3)
    plain = _apply(params(0.118), key, ev)
    rec = jax.jit(BOUNDARY.apply)(params(0.118), key, ev)
    for a, b in ((plain.pid, rec.pid), (plain.colour, rec.colour), (plain.mask, rec.mask)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for name in ("shower_n_trials", "shower_n_emissions", "shower_trial_accepted"):
        np.testing.assert_array_equal(np.asarray(plain.extra[name]), np.asarray(rec.extra[name]))
    # momenta to rounding: the two programs may contract multiply-adds differently
    np.testing.assert_allclose(np.asarray(rec.p), np.asarray(plain.p), rtol=0, atol=1e-9)
    x = {k: np.asarray(v) for k, v in rec.extra.items()}
    assert set(BOUNDARY_KEYS) <= set(x)
    u, r, n = x["shower_boundary_u"], x["shower_boundary_r"], x["shower_boundary_n"]
    assert u.shape == (64, 8) and np.all((u >= 0) & (u <= 1)) and np.all((r >= 0) & (r <= 1))
    # the last trial of an event (row (trials − 1) mod B) starts from the final partons
    last = (x["shower_n_trials"] - 1) % 8
    rows = np.arange(64)
    np.testing.assert_array_equal(n[rows, last], np.asarray(rec.multiplicity()))
    np.testing.assert_array_equal(x["shower_boundary_p_before"][rows, last], np.asarray(rec.p))
    before, after = boundary_events(rec)
    assert before.n_events == after.n_events == 64 * 8
    used = np.asarray(r.reshape(-1) > 0)
    # the branching at t0 conserves four-momentum and keeps partons massless
    assert_momentum_conserved(after.take(np.flatnonzero(used)), before.take(np.flatnonzero(used)).momentum_sum())
    assert_on_shell(after.take(np.flatnonzero(used)), rtol=1e-9)
    surrogate = boundary_term(lambda e: 1 - obs.thrust(e), rec)
    assert surrogate.shape == (64,) and np.all(np.asarray(surrogate) == 0)
    with pytest.raises(ValueError, match="boundary record"):
        boundary_term(lambda e: 1 - obs.thrust(e), plain)
    with pytest.raises(ValueError, match="observable must map"):
        boundary_term(lambda e: jnp.zeros(3), rec)
    with pytest.raises(TypeError, match="must be Events"):
        boundary_events({"p": 1})
    with pytest.raises(ValueError, match="boundary_trials"):
        final_state_shower(boundary_trials=-1)


def test_grad_matches_jvp_and_common_random_numbers():
    """jax.grad (the transposed custom JVP) = central differences with the same key."""
    ev = qqbar(16, seed=3)

    def f(a, t0):
        out = SHOWER.apply({"alpha_s_mz": a, "t0": t0}, jax.random.key(11), ev)
        return jnp.mean(jnp.sum(out.p[..., 0] * jnp.abs(out.p[..., 3]), axis=1))

    a0, t0 = jnp.asarray(0.118), jnp.asarray(1.0)
    ga, gt = jax.jit(jax.grad(f, argnums=(0, 1)))(a0, t0)
    h = 1e-7
    fj = jax.jit(f)
    fd_a = (float(fj(a0 + h, t0)) - float(fj(a0 - h, t0))) / (2 * h)
    fd_t = (float(fj(a0, t0 + h)) - float(fj(a0, t0 - h))) / (2 * h)
    np.testing.assert_allclose(float(ga), fd_a, rtol=1e-5)
    np.testing.assert_allclose(float(gt), fd_t, rtol=1e-5, atol=1e-6 * abs(fd_a))


def test_state_keeps_the_channel_sums_of_its_overestimates():
    """ShowerState.cum and .gsum, kept from emission to emission, are those of the final g."""
    from diffgen.shower.dipole import shower_one_event

    ev = qqbar(64, seed=3)
    p = jnp.pad(ev.p, ((0, 0), (0, 22), (0, 0)))
    pid = jnp.pad(ev.pid, ((0, 0), (0, 22)))
    col = jnp.pad(ev.colour, ((0, 0), (0, 22), (0, 0)))
    mask = jnp.pad(ev.mask, ((0, 0), (0, 22)))
    keys = jax.random.split(jax.random.key(11), 64)
    alpha, t0 = jnp.asarray(0.118), jnp.asarray(1.0)
    run = jax.jit(
        jax.vmap(
            lambda *a: shower_one_event(*a, alpha, t0, order=2, max_records=256, max_trials=1000),
        )
    )
    st = run(p, pid, col, mask, keys)
    assert int(jnp.sum(st.n_emissions > 0)) > 48  # most sums were updated by emissions
    g = np.asarray(st.g).reshape(64, -1)
    np.testing.assert_array_equal(np.asarray(st.cum), np.asarray(jnp.cumsum(jnp.asarray(g), axis=-1)))
    np.testing.assert_allclose(np.asarray(st.gsum), g.sum(-1), rtol=1e-12)
    # The emissions updated the overestimate of every dipole end they changed (and only those):
    # g equals the overestimates of the final partons computed from scratch.
    from diffgen.shower.alphas import alpha_s
    from diffgen.shower.dipole import _all_overestimates

    assert int(jnp.sum((st.pid != 21) & (st.pid != 0))) > 2 * 64  # g → q q̄ splittings among them
    fresh = jax.vmap(lambda q, f, m: _all_overestimates(q, f, m, t0, alpha_s(t0, alpha, order=2)))(
        st.p, st.pid, st.partner
    )
    np.testing.assert_allclose(g, np.asarray(fresh).reshape(64, -1), rtol=1e-12, atol=0)


def test_initial_state_pads_to_the_capacity():
    """The state of P input slots padded to C equals the state of inputs padded to C, bit for bit."""
    from diffgen.shower.dipole import initial_state

    # a showered sample: up to 12 partons with gluons and g → q q̄ splittings, in 12 of 24 slots
    ev = _apply(params(0.118), jax.random.key(5), qqbar(64, seed=4))
    n_in = int(jnp.max(ev.multiplicity()))
    assert 3 < n_in <= 12
    p, pid, col, mask = ev.p[:, :12], ev.pid[:, :12], ev.colour[:, :12], ev.mask[:, :12]
    t0, amax = jnp.asarray(1.0), jnp.asarray(0.5)

    def pad(x, fill=0):
        return jnp.pad(x, ((0, 0), (0, 12)) + ((0, 0),) * (x.ndim - 2), constant_values=fill)

    for history, boundary in ((False, 0), (True, 3)):
        a = jax.vmap(
            functools.partial(
                initial_state, t0=t0, amax=amax, max_records=40, record_history=history, boundary=boundary, capacity=24
            )
        )(p, pid, col, mask)
        b = jax.vmap(
            functools.partial(
                initial_state, t0=t0, amax=amax, max_records=40, record_history=history, boundary=boundary
            )
        )(pad(p), pad(pid), pad(col), pad(mask))
        assert a.p.shape == (64, 24, 4) and a.partner.shape == (64, 24, 2)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    with pytest.raises(ValueError, match="capacity must be an int >= the 12 input slots"):
        initial_state(p[0], pid[0], col[0], mask[0], t0, amax, 40, capacity=8)
