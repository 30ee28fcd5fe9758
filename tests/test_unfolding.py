"""Tests of diffgen.unfolding: classifier ratios, OmniFold, IBU and the conditional flow.

Statistical tolerances come from bootstrap replicas (OmniFold, IBU) or binomial errors
(coverage); sizes are reduced from the 10⁵-event benchmark so that training stays cheap.
"""

import dataclasses
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffgen.core import Events
from diffgen.testing import assert_compatible
from diffgen.unfolding import (
    DeepSets,
    TrainConfig,
    UnfoldingWarning,
    gaussian_toy,
    likelihood_ratio,
    omnifold,
    omnifold_pairs,
    train_classifier,
    weighted_auc,
    weighted_mean_std,
)
from diffgen.unfolding.ibu import histogram, ibu, ibu_unfold, response_matrix

# Small networks and few epochs: 2 shared cores. Warm starts carry training across iterations.
FAST = TrainConfig(hidden=(32, 32), epochs=10, batch_size=256, patience=3, learning_rate=3e-3)
# Step 2 compares one sample with two weightings (no label noise): train it longer, so that the
# push factors follow the pulled weights instead of lagging behind the previous iteration.
FAST2 = dataclasses.replace(FAST, epochs=20, patience=5)


def _moments(values, weights):
    mean, std = weighted_mean_std(values, weights)
    return np.concatenate([np.atleast_1d(mean), np.atleast_1d(std)])


# ----------------------------------------------------------------------------- classifier


def test_classifier_ratio_reweights_gaussians():
    """Weighting sample 0 by the learned p₁/p₀ reproduces sample 1's mean and std (arXiv:1911.09107 eq. 3)."""
    rng = np.random.default_rng(1)
    n = 6000
    x0, x1 = rng.normal(0.0, 1.0, n), rng.normal(0.4, 0.8, n)
    clf, info = train_classifier(x0, x1, key=jax.random.key(0), config=FAST, n_members=2)
    assert info.auc.shape == (2,) and np.all(info.auc > 0.55)
    w = np.asarray(likelihood_ratio(clf, x0))
    mean, std = weighted_mean_std(x0, w)
    n_eff = w.sum() ** 2 / np.sum(w**2)
    # Standard errors of the reweighted sample (effective size) and of sample 1, combined.
    assert_compatible(mean, x1.mean(), np.hypot(std / np.sqrt(n_eff), x1.std() / np.sqrt(n)), what="mean")
    assert_compatible(std, x1.std(), np.hypot(std / np.sqrt(2 * n_eff), x1.std() / np.sqrt(2 * n)), what="std")


def test_classifier_clipping_and_members():
    rng = np.random.default_rng(2)
    x0, x1 = rng.normal(-3.0, 1.0, 2000), rng.normal(3.0, 1.0, 2000)
    cfg = TrainConfig(hidden=(32, 32), epochs=3, batch_size=512, clip=1.5)
    clf, _ = train_classifier(x0, x1, key=jax.random.key(1), config=cfg, n_members=3)
    x = np.array([-3.0, -0.1, 0.0, 0.1, 3.0])
    r, clipped = clf.ratio(x)
    logit = np.asarray(clf.logits(x))
    assert r.shape == (3, 5) and logit.shape == (3, 5)
    np.testing.assert_allclose(r, np.exp(np.clip(logit, -np.log(1.5), np.log(1.5))), rtol=1e-6)
    np.testing.assert_array_equal(clipped, np.abs(logit) > np.log(1.5))
    assert np.asarray(clipped)[:, 0].any() and np.asarray(clipped)[:, -1].any()
    # The three members differ (own initialisations), the ensemble mean is their average.
    assert np.ptp(logit[:, -1]) > 0
    np.testing.assert_allclose(likelihood_ratio(clf, x), np.mean(r, axis=0), rtol=1e-6)


def test_weighted_auc_matches_pairwise_count():
    rng = np.random.default_rng(3)
    s = np.round(rng.normal(size=300), 1)  # ties on purpose
    y = rng.random(300) < 0.4
    w = rng.uniform(0.2, 2.0, 300)
    s1, w1, s0, w0 = s[y], w[y], s[~y], w[~y]
    gt = (s1[:, None] > s0[None, :]) + 0.5 * (s1[:, None] == s0[None, :])
    expected = np.sum(w1[:, None] * w0[None, :] * gt) / (w1.sum() * w0.sum())
    assert weighted_auc(s, y.astype(int), w) == pytest.approx(expected, rel=1e-12)


def test_deepsets_is_permutation_invariant_and_ignores_padding():
    from flax import nnx

    rng = np.random.default_rng(4)
    model = DeepSets(3, phi=(8, 8), rho=(8,), rngs=nnx.Rngs(params=0), dtype=jnp.float64)
    x = rng.normal(size=(5, 4, 3))
    mask = np.array([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1], [0, 1, 1, 0], [1, 1, 0, 1]], bool)
    out = model(jnp.asarray(x), jnp.asarray(mask))
    perm = np.array([2, 0, 3, 1])
    out_perm = model(jnp.asarray(x[:, perm]), jnp.asarray(mask[:, perm]))
    np.testing.assert_allclose(out_perm, out, rtol=1e-12)
    junk = np.where(mask[..., None], x, 1e3)  # padding content must not matter
    np.testing.assert_allclose(model(jnp.asarray(junk), jnp.asarray(mask)), out, rtol=1e-12)
    wide = np.concatenate([x, rng.normal(size=(5, 2, 3))], axis=1)
    wide_mask = np.concatenate([mask, np.zeros((5, 2), bool)], axis=1)
    np.testing.assert_allclose(model(jnp.asarray(wide), jnp.asarray(wide_mask)), out, rtol=1e-12)


def test_deepsets_classifier_learns_multiplicity():
    """Particle sets differing only in multiplicity: the set classifier separates them."""
    rng = np.random.default_rng(5)
    n, cap = 2000, 6
    x = rng.normal(size=(2 * n, cap, 2))
    mult = np.concatenate([rng.integers(1, 4, n), rng.integers(3, 7, n)])
    mask = np.arange(cap)[None, :] < mult[:, None]
    cfg = TrainConfig(phi=(16,), rho=(16,), epochs=6, batch_size=256, learning_rate=5e-3)
    _, info = train_classifier((x[:n], mask[:n]), (x[n:], mask[n:]), key=jax.random.key(2), config=cfg)
    # Multiplicities 1-3 vs 3-6 overlap only at 3 (prob 1/3 · 1/4): AUC ≈ 1 − ½·(1/12) ≈ 0.96.
    assert info.auc[0] > 0.9


# ----------------------------------------------------------------------------- Gaussian toy


@pytest.fixture(scope="module")
def toy():
    n = 12000
    return gaussian_toy(11, n, 0.0, 1.0), gaussian_toy(12, n, 0.2, 0.8**2)


@pytest.mark.slow
def test_omnifold_gaussian_toy_with_inefficiency_and_fakes(toy):
    """MC N(0,1) → data N(0.2, 0.8), σ_smear 0.5, 10 % inefficiency, 10 % fakes: mean/std within 2σ."""
    mc, data = toy
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnfoldingWarning)
        res = omnifold(
            mc.gen,
            mc.reco,
            data.observed,
            key=jax.random.key(3),
            pass_gen=mc.pass_gen,
            pass_reco=mc.pass_reco,
            iterations=6,
            n_bootstrap=6,
            config=FAST,
            config_step2=FAST2,
        )
    gen = np.where(mc.pass_gen, mc.gen[:, 0], 0.0)
    value, boot = res.statistic(lambda w: _moments(gen, w))
    truth = data.truth[:, 0]
    n_t = truth.shape[0]
    ref = np.array([truth.mean(), truth.std()])
    # Bootstrap error of the unfolded moments, combined with the statistical error of the
    # data truth sample itself (the two are different estimates of the same population).
    sigma = np.hypot(boot, np.array([truth.std() / np.sqrt(n_t), truth.std() / np.sqrt(2 * n_t)]))
    assert_compatible(value, ref, sigma, n_sigma=2.0, what="unfolded (mean, std)")
    # The prior is far away: the test has power.
    prior = _moments(gen, np.where(mc.pass_gen, 1.0, 0.0))
    assert np.all(np.abs(prior - ref) > 4 * sigma)
    # Diagnostics after every step; weights are finite, fakes carry no particle-level weight.
    assert [(d.iteration, d.step) for d in res.diagnostics] == [(i, s) for i in range(1, 7) for s in (1, 2)]
    for d in res.diagnostics:
        assert 0.5 < d.ess_fraction <= 1.0 and d.fraction_clipped == 0.0 and 0.4 < d.auc < 0.7
        assert len(d.largest) == 5 and d.largest[0] >= 1.0
    assert np.all(res.weights[~mc.pass_gen] == 0) and np.all(np.isfinite(res.weights))
    assert len(res.history) == 6 and res.history[0]["push"].shape == (7, mc.gen.shape[0])
    # Inefficient events keep ω = ν in step 1 (documented treatment).
    miss = mc.pass_gen & ~mc.pass_reco
    np.testing.assert_array_equal(res.history[-1]["pull"][:, miss], res.history[-2]["push"][:, miss])


def test_ibu_gaussian_toy_agrees_in_bins(toy):
    mc_small, data = toy
    mc = gaussian_toy(13, 48000, 0.0, 1.0)  # IBU is cheap: a larger MC for the response
    gen_edges, reco_edges = np.linspace(-3, 3, 13), np.linspace(-4, 4, 33)
    resp = response_matrix(
        mc.gen[:, 0], mc.reco[:, 0], gen_edges, reco_edges, pass_gen=mc.pass_gen, pass_reco=mc.pass_reco, overflow=False
    )
    np.testing.assert_allclose(resp.efficiency, 0.9, atol=5 * np.sqrt(0.09 / resp.truth.min()))
    res = ibu_unfold(data.observed[:, 0], resp, iterations=4, n_bootstrap=40, seed=1, overflow=False)
    truth = histogram(data.truth[:, 0], gen_edges, overflow=False)
    sigma = np.sqrt(res.error**2 + np.maximum(truth, 1.0))
    assert_compatible(res.counts, truth, sigma, n_sigma=3.0, what="IBU bins")
    assert res.history.shape == (4, 12)
    del mc_small


def test_ibu_exact_cases_and_gradient():
    """Diagonal response: IBU returns counts/ε in one iteration; the result is differentiable."""
    edges = np.linspace(0, 4, 5)
    gen = np.repeat([0.5, 1.5, 2.5, 3.5], [10, 20, 30, 40])
    passed = np.ones(100, bool)
    passed[:5] = False  # ε = 0.5 in bin 0
    resp = response_matrix(gen, gen, edges, edges, pass_reco=passed)
    counts = jnp.asarray([7.0, 3.0, 5.0, 11.0])
    out, _ = ibu(counts, resp, iterations=1)
    np.testing.assert_allclose(out, [14.0, 3.0, 5.0, 11.0], rtol=1e-12)
    grad = jax.grad(lambda c: ibu(c, resp, iterations=3)[0][0])(counts)
    assert np.all(np.isfinite(grad))


@pytest.mark.slow
def test_flow_posterior_coverage(toy):
    from diffgen.unfolding.flow import FlowConfig, coverage, train_flow

    mc, _ = toy
    both = mc.pass_gen & mc.pass_reco
    gen, reco = mc.gen[both], mc.reco[both]
    n_test = 2000  # binomial σ of the coverage: ≤ 1.1 % ≪ the 5 % tolerance
    cfg = FlowConfig(layers=1, bins=6, hidden=(16, 16), epochs=10, batch_size=512)
    flow = train_flow(gen[n_test : n_test + 6000], reco[n_test : n_test + 6000], key=jax.random.key(4), config=cfg)
    cov = coverage(flow, gen[:n_test], reco[:n_test], key=jax.random.key(5), n_samples=100)
    np.testing.assert_array_less(np.abs(cov.observed - cov.levels[:, None]), 0.05)
    assert cov.quantiles.shape == (n_test, 1)


# ----------------------------------------------------------------------------- multi-D toy


@pytest.mark.slow
def test_omnifold_three_correlated_observables():
    """Three correlated observables: OmniFold recovers marginals and correlations; 1-D IBU cannot."""
    corr_mc = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    sd = np.array([0.9, 0.8, 1.0])
    corr_data = np.array([[1.0, 0.6, -0.4], [0.6, 1.0, -0.2], [-0.4, -0.2, 1.0]])
    mc = gaussian_toy(21, 12000, [0.0, 0.0, 0.0], corr_mc, fake_fraction=0.0, efficiency=1.0)
    data = gaussian_toy(22, 12000, [0.2, -0.1, 0.1], corr_data * np.outer(sd, sd), fake_fraction=0.0, efficiency=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnfoldingWarning)
        # The MC is wider than the data in some directions: there the true ratio is < 1/100 and
        # gets clipped (a few % of the MC events), which is expected, not a pathology.
        res = omnifold(
            mc.gen,
            mc.reco,
            data.observed,
            key=jax.random.key(6),
            iterations=6,
            n_bootstrap=5,
            config=FAST,
            max_clipped=0.05,
        )
    iu = np.triu_indices(3, 1)

    def stats(w):
        mean, std = weighted_mean_std(mc.gen, w)
        z = (mc.gen - mean) / std
        c = (w[:, None, None] * z[:, :, None] * z[:, None, :]).sum(0) / w.sum()
        return np.concatenate([mean, std, c[iu]])

    value, boot = res.statistic(stats)
    t = data.truth
    ref = np.concatenate([t.mean(0), t.std(0), np.corrcoef(t, rowvar=False)[iu]])
    n = t.shape[0]
    r = ref[6:]
    stat = np.concatenate([t.std(0) / np.sqrt(n), t.std(0) / np.sqrt(2 * n), (1 - r**2) / np.sqrt(n)])
    sigma = np.hypot(boot, stat)
    assert_compatible(value, ref, sigma, n_sigma=3.0, what="(means, stds, correlations)")

    # 1-D IBU per observable, applied as per-event bin weights: marginals move, correlations stay.
    edges = np.linspace(-3.5, 3.5, 15)
    w_ibu = np.ones(mc.gen.shape[0])
    for k in range(3):
        resp = response_matrix(mc.gen[:, k], mc.reco[:, k], edges, edges)
        unf = ibu_unfold(data.observed[:, k], resp, iterations=4, n_bootstrap=0).counts
        factor = np.divide(unf, resp.truth, out=np.ones_like(unf), where=resp.truth > 0)
        w_ibu *= factor[np.clip(np.searchsorted(edges, mc.gen[:, k], side="right") - 1, 0, 13)]
    corr_ibu = stats(w_ibu)[6:]
    assert np.all(np.abs(corr_ibu - r) > 5 * sigma[6:])


# ----------------------------------------------------------------------------- weights


@pytest.mark.slow
def test_weighted_mc_equals_unweighted():
    """Non-uniform, partly negative MC weights give the result of the unweighted sample."""
    rng = np.random.default_rng(31)
    n = 16000
    wide = gaussian_toy(32, n, 0.0, 1.3**2)
    t = wide.gen[:, 0]
    ok = wide.pass_gen
    base = np.where(ok, np.exp(-0.5 * t**2 + 0.5 * (t / 1.3) ** 2) * 1.3, 1.0)  # N(0,1)/N(0,1.3²)
    sign = np.where(rng.random(t.shape[0]) < 1 / 6, -1.0, 1.0)
    w = np.where(ok, base, 1.0) * 1.5 * sign  # E[1.5·sign] = 1
    keep = rng.random(t.shape[0]) < np.abs(w) / np.abs(w).max()
    data = gaussian_toy(33, 12000, 0.2, 0.8**2)
    common = dict(iterations=3, n_bootstrap=4, config=FAST)
    res_w = omnifold(
        wide.gen,
        wide.reco,
        data.observed,
        key=jax.random.key(7),
        mc_weights=w,
        pass_gen=wide.pass_gen,
        pass_reco=wide.pass_reco,
        **common,
    )
    res_u = omnifold(
        wide.gen[keep],
        wide.reco[keep],
        data.observed,
        key=jax.random.key(8),
        mc_weights=np.sign(w[keep]),
        pass_gen=wide.pass_gen[keep],
        pass_reco=wide.pass_reco[keep],
        **common,
    )
    g = np.where(ok, t, 0.0)
    vw, sw = res_w.statistic(lambda x: _moments(g, x))
    vu, su = res_u.statistic(lambda x: _moments(g[keep], x))
    assert_compatible(vw, vu, np.hypot(sw, su), n_sigma=3.0, what="weighted vs unweighted (mean, std)")
    assert np.all(res_w.weights[ok & (w < 0)] < 0)  # negative weights stay negative


# ----------------------------------------------------------------------------- bad input


def _ok():
    rng = np.random.default_rng(0)
    return rng.normal(size=50), rng.normal(size=50), rng.normal(size=40)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda a: a.update(mc_reco=a["mc_reco"][:49]), "same number of events"),
        (lambda a: a.update(data=np.zeros((0,))), "data"),
        (lambda a: a.update(mc_weights=np.zeros(50)), "mc_weights: all weights are zero"),
        (lambda a: a.update(data_weights=np.zeros(40)), "data_weights: all weights are zero"),
        (lambda a: a.update(mc_weights=np.ones(49)), "mc_weights: expected shape"),
        (lambda a: a.update(mc_weights=np.full(50, np.nan)), "mc_weights: weights must be finite"),
        (lambda a: a["data"].__setitem__(3, np.nan), "data: features must be finite"),
        (lambda a: a["mc_gen"].__setitem__(0, np.inf), "mc_gen: features must be finite"),
        (lambda a: a.update(pass_gen=np.ones(50, int)), "pass_gen: expected a bool array"),
        (lambda a: a.update(pass_reco=np.zeros(50, bool)), "no MC event passes reconstruction"),
        (lambda a: a.update(pass_reco=np.arange(50) > 0, pass_gen=np.arange(50) > 0), "neither pass_gen nor pass_reco"),
        (lambda a: a.update(iterations=0), "iterations must be an integer >= 1"),
        (lambda a: a.update(n_bootstrap=1), "n_bootstrap must be 0 or"),
        (lambda a: a.update(missing_reco="drop"), "missing_reco must be 'learn' or 'push'"),
    ],
)
def test_omnifold_bad_input(change, match):
    gen, reco, data = _ok()
    args = {"mc_gen": gen, "mc_reco": reco, "data": data}
    change(args)
    kwargs = {k: args.pop(k) for k in list(args) if k not in ("mc_gen", "mc_reco", "data")}
    with pytest.raises((ValueError, TypeError), match=match):
        omnifold(args["mc_gen"], args["mc_reco"], args["data"], key=jax.random.key(0), **kwargs)


def test_nan_features_of_missing_levels_are_allowed_but_not_in_used_rows():
    gen, reco, data = _ok()
    reco[:5] = np.nan
    pass_reco = np.ones(50, bool)
    with pytest.raises(ValueError, match="mc_reco: features must be finite"):
        omnifold(gen, reco, data, key=jax.random.key(0), pass_reco=pass_reco, iterations=1)


def test_events_weights_are_used_not_replaced():
    """Events inputs bring their own weights: all-zero generator weights are an error, not 1."""
    n = 30
    p = np.zeros((n, 1, 4))
    p[:, 0, 0] = 1.0 + np.arange(n)
    ev = Events(p=p, weight=np.zeros(n), mask=np.ones((n, 1), bool), pid=np.full((n, 1), 13, np.int32))
    data = Events(p=p, weight=np.ones(n), mask=np.ones((n, 1), bool), pid=np.full((n, 1), 13, np.int32))
    energy = lambda e: e.p[:, 0, 0]  # noqa: E731
    with pytest.raises(ValueError, match="mc_weights: all weights are zero"):
        omnifold(ev, ev, data, key=jax.random.key(0), observables=energy)


def test_ibu_and_classifier_bad_input():
    with pytest.raises(ValueError, match="gen_edges"):
        response_matrix(np.zeros(3), np.zeros(3), [1.0, 0.0], [0.0, 1.0])
    with pytest.raises(ValueError, match="same length"):
        response_matrix(np.zeros(3), np.zeros(4), [0.0, 1.0], [0.0, 1.0])
    resp = response_matrix(np.zeros(3) + 0.5, np.zeros(3) + 0.5, [0.0, 1.0], [0.0, 1.0])
    with pytest.raises(ValueError, match="data is empty"):
        ibu_unfold(np.zeros(0), resp)
    with pytest.raises(ValueError, match="NaN"):
        ibu_unfold(np.array([0.5, np.nan]), resp)
    with pytest.raises(ValueError, match="x1: features must be finite"):
        train_classifier(np.zeros(5), np.array([0.0, np.nan]), key=jax.random.key(0))
    with pytest.raises(ValueError, match="w0: all weights are zero"):
        train_classifier(np.zeros(5), np.ones(5), w0=np.zeros(5), key=jax.random.key(0))
    with pytest.raises(ValueError, match="TrainConfig.clip"):
        TrainConfig(clip=1.0)


def test_omnifold_pairs_uses_events_flags_and_weights():
    """GenRecoPair input: observables at both levels, the pair's flags and generator weights."""
    from diffgen.detector import GenRecoPair

    toy = gaussian_toy(41, 1500, 0.0, 1.0)
    n = toy.gen.shape[0]

    def events(values, weight):
        p = np.zeros((n, 1, 4))
        p[:, 0, 0] = np.nan_to_num(values[:, 0], nan=0.0) + 10.0  # energy carries the feature
        return Events(p=p, weight=weight, mask=np.ones((n, 1), bool), pid=np.full((n, 1), 13, np.int32))

    w = np.random.default_rng(42).uniform(0.5, 1.5, n)
    pair = GenRecoPair(
        reco=events(toy.reco, w), truth=events(toy.gen, w), pass_gen=toy.pass_gen, pass_reco=toy.pass_reco
    )
    data = gaussian_toy(43, 1500, 0.3, 1.0)
    m = data.gen.shape[0]
    p = np.zeros((m, 1, 4))
    p[:, 0, 0] = np.nan_to_num(data.reco[:, 0]) + 10.0
    data_pair = GenRecoPair(
        reco=Events(p=p, weight=np.ones(m), mask=np.ones((m, 1), bool), pid=np.full((m, 1), 13, np.int32)),
        truth=Events(p=p, weight=np.ones(m), mask=np.ones((m, 1), bool), pid=np.full((m, 1), 13, np.int32)),
        pass_gen=data.pass_gen,
        pass_reco=data.pass_reco,
    )
    res = omnifold_pairs(
        pair, data_pair, observables=lambda e: e.p[:, 0, 0], key=jax.random.key(9), iterations=1, config=FAST
    )
    np.testing.assert_array_equal(res.pass_gen, toy.pass_gen)
    assert np.all(res.weights[~toy.pass_gen] == 0)
    # Push factors multiply the generator weights (not 1): weights / push = w on pass_gen.
    ok = toy.pass_gen
    scale = res.weights[ok] / (w[ok] * res.push[ok])
    np.testing.assert_allclose(scale, scale[0], rtol=1e-9)


def test_on_step_reports_every_classifier_step():
    gen, reco, data = _ok()
    calls = []
    omnifold(
        gen,
        reco,
        data,
        key=jax.random.key(0),
        iterations=2,
        config=TrainConfig(epochs=1),
        on_step=lambda it, step: calls.append((it, step)),
    )
    assert calls == [(1, 1), (1, 2), (2, 1), (2, 2)]
