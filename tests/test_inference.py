"""Tests of diffgen.inference: soft histograms/cuts, losses, fit, uncertainties, gradient estimators."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.stats
from iminuit import Minuit

from diffgen.inference import (
    bounded,
    chi2,
    classifier_logit,
    classifier_loss,
    energy_distance,
    estimator_variance,
    fit,
    hard_histogram,
    hessian_covariance,
    mmd,
    pathwise_gradient,
    poisson_nll,
    positive,
    profile_scan,
    reweighting_gradient,
    scaled,
    score_function_gradient,
    soft_cut,
    soft_histogram,
    soft_window,
    train_classifier,
)
from diffgen.testing import assert_compatible

# --------------------------------------------------------------------------- soft cuts/histograms


@pytest.mark.parametrize("kernel", ["sigmoid", "gaussian"])
def test_soft_cut_tends_to_hard(kernel):
    x = jnp.linspace(-1.0, 1.0, 401)
    hard = (x > 0.1).astype(x.dtype)
    errs = []
    for h in (1e-1, 1e-2, 1e-3, 1e-5):
        soft = soft_cut(x, 0.1, h, kernel=kernel)
        away = jnp.abs(x - 0.1) > 0.004  # at the threshold itself (a grid point) the soft cut is ½
        errs.append(float(jnp.max(jnp.abs(jnp.where(away, soft - hard, 0.0)))))
    assert errs[-1] < 1e-12
    assert all(a >= b for a, b in itertools.pairwise(errs))
    win = soft_window(x, -0.5, 0.5, 1e-6, kernel=kernel)
    inside = (jnp.abs(x) < 0.5 - 1e-4).astype(x.dtype)
    outside = jnp.abs(x) > 0.5 + 1e-4
    assert float(jnp.max(jnp.abs(jnp.where(outside | (inside > 0), win - inside, 0.0)))) < 1e-12


@pytest.mark.parametrize("kernel", ["sigmoid", "gaussian"])
def test_soft_histogram_converges_to_hard(key, kernel):
    k1, k2 = jax.random.split(key)
    x = jax.random.normal(k1, (4000, 3))
    w = jax.random.uniform(k2, (4000,), minval=0.5, maxval=1.5)
    mask = jnp.arange(3)[None, :] < jnp.asarray([1, 2, 3, 3] * 1000)[:, None]
    x = jnp.where(mask, x, jnp.nan)  # padding may hold garbage
    edges = jnp.linspace(-2.0, 2.0, 9)
    hard, hard_w2 = jax.jit(hard_histogram, static_argnames="return_sumw2")(
        x, edges, weights=w, mask=mask, return_sumw2=True
    )
    soft_jit = jax.jit(soft_histogram, static_argnames=("kernel", "return_sumw2"))
    ref = np.histogram(
        np.asarray(x)[np.asarray(mask)],
        bins=np.asarray(edges),
        weights=np.broadcast_to(np.asarray(w)[:, None], x.shape)[np.asarray(mask)],
    )[0]
    np.testing.assert_allclose(hard, ref, rtol=1e-12)
    prev = np.inf
    for h in (0.2, 0.05, 0.01, 1e-4):
        soft, w2 = soft_jit(x, edges, h, weights=w, mask=mask, kernel=kernel, return_sumw2=True)
        dev = float(jnp.max(jnp.abs(soft - hard)))
        assert np.isfinite(dev) and dev <= prev + 1e-9
        prev = dev
    # at h = 1e-4 only events within ~10h of an edge can differ: expected count ≪ 1 per bin
    assert prev < 2.0
    np.testing.assert_allclose(w2, hard_w2, atol=2.0)
    # the soft histogram has a finite, non-zero gradient in a shift of x; the hard one none
    g = jax.jit(jax.grad(lambda s: soft_histogram(x + s, edges, 0.1, weights=w, mask=mask, kernel=kernel)[3]))(0.0)
    assert np.isfinite(float(g)) and float(g) != 0.0


def test_soft_histogram_bias_is_second_order():
    """Bias (c·h²/2)(f′(e_{k+1}) − f′(e_k)) for a smooth density: exact Gaussian expectation."""
    # Expected soft content for x ~ N(0,1) with the Gaussian kernel: Φ((e_{k+1})/√(1+h²)) − Φ(e_k/√(1+h²))
    edges = np.linspace(-2, 2, 9)
    exact_hard = np.diff(scipy.stats.norm.cdf(edges))
    for h in (0.05, 0.1, 0.2):
        soft_exp = np.diff(scipy.stats.norm.cdf(edges / np.sqrt(1 + h * h)))
        bias = soft_exp - exact_hard
        pdf_prime = -edges * scipy.stats.norm.pdf(edges)
        predicted = 0.5 * h * h * np.diff(pdf_prime)  # the smoothed CDF is F + (h²/2)·f′ + O(h⁴)
        np.testing.assert_allclose(bias, predicted, atol=0.02 * h * h)
    # and our implementation reproduces the exact expectation on a quasi-exact sample (quantiles)
    u = (np.arange(200000) + 0.5) / 200000
    x = jnp.asarray(scipy.stats.norm.ppf(u))
    h = 0.1
    soft = soft_histogram(x, jnp.asarray(edges), h, kernel="gaussian") / 200000
    np.testing.assert_allclose(soft, np.diff(scipy.stats.norm.cdf(edges / np.sqrt(1 + h * h))), atol=2e-5)


def test_soft_histogram_bad_input():
    x = jnp.ones(5)
    with pytest.raises(ValueError, match="bandwidth"):
        soft_histogram(x, jnp.linspace(0, 1, 3), 0.0)
    with pytest.raises(ValueError, match="increasing"):
        soft_histogram(x, jnp.asarray([0.0, 2.0, 1.0]), 0.1)
    with pytest.raises(ValueError, match="edges"):
        soft_histogram(x, jnp.asarray([0.0]), 0.1)
    with pytest.raises(ValueError, match="mask"):
        soft_histogram(x, jnp.linspace(0, 1, 3), 0.1, mask=jnp.ones(4, bool))
    with pytest.raises(TypeError, match="weights"):
        soft_histogram(x, jnp.linspace(0, 1, 3), 0.1, weights=jnp.ones(5, jnp.float32))
    with pytest.raises(ValueError, match="kernel"):
        soft_cut(x, 0.0, 0.1, kernel="box")


# --------------------------------------------------------------------------- losses


def test_poisson_nll_matches_scipy():
    mu = jnp.asarray([0.5, 3.0, 10.0, 2.0])
    n = jnp.asarray([0.0, 4.0, 7.0, 2.0])
    ref = -np.sum(scipy.stats.poisson.logpmf(np.asarray(n), np.asarray(mu)))
    np.testing.assert_allclose(poisson_nll(mu, n), ref, rtol=1e-12)
    # the gradient in μ is 1 − n/μ
    np.testing.assert_allclose(jax.grad(poisson_nll)(mu, n), 1 - n / mu, rtol=1e-12)


def test_chi2_with_covariance():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(4, 4))
    cov = a @ a.T + 0.1 * np.eye(4)
    err = np.asarray([0.1, 0.2, 0.3, 0.4])
    pred, data = rng.normal(size=4), rng.normal(size=4)
    r = data - pred
    np.testing.assert_allclose(chi2(pred, data, err), np.sum((r / err) ** 2), rtol=1e-12)
    v = cov + np.diag(err**2)
    np.testing.assert_allclose(chi2(pred, data, err, covariance=cov), r @ np.linalg.solve(v, r), rtol=1e-10)
    np.testing.assert_allclose(chi2(pred, data, covariance=cov), r @ np.linalg.solve(cov, r), rtol=1e-10)


def test_losses_bad_input():
    with pytest.raises(ValueError, match="mismatched binning"):
        chi2(jnp.ones(3), jnp.ones(4), jnp.ones(4))
    with pytest.raises(ValueError, match="mismatched binning"):
        poisson_nll(jnp.ones(3), jnp.ones(4))
    with pytest.raises(ValueError, match="errors must be finite and > 0"):
        chi2(jnp.ones(3), jnp.ones(3), jnp.asarray([1.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match="empty histogram"):
        poisson_nll(jnp.ones(0), jnp.ones(0))
    with pytest.raises(ValueError, match="observed"):
        poisson_nll(jnp.ones(2), jnp.asarray([1.0, -2.0]))
    with pytest.raises(ValueError, match="positive definite"):
        chi2(jnp.ones(2), jnp.zeros(2), covariance=jnp.asarray([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(ValueError, match="empty"):
        energy_distance(jnp.ones(0), jnp.ones(3))
    with pytest.raises(ValueError, match="bandwidth"):
        mmd(jnp.ones(3), jnp.ones(3), -1.0)


def test_energy_distance_and_mmd(key):
    k1, k2 = jax.random.split(key)
    x = jax.random.normal(k1, (300,))
    y = 0.3 + 1.2 * jax.random.normal(k2, (200,))
    ref = scipy.stats.energy_distance(np.asarray(x), np.asarray(y)) ** 2  # scipy returns the square root
    ed = jax.jit(energy_distance)
    np.testing.assert_allclose(ed(x, y), ref, rtol=1e-10)
    wx = jnp.linspace(0.5, 1.5, 300)
    ref_w = scipy.stats.energy_distance(np.asarray(x), np.asarray(y), np.asarray(wx)) ** 2
    np.testing.assert_allclose(ed(x, y, x_weights=wx), ref_w, rtol=1e-10)
    # MMD² against a direct numpy double sum
    h = 0.7
    xn, yn = np.asarray(x), np.asarray(y)
    k = lambda a, b: np.exp(-((a[:, None] - b[None, :]) ** 2) / (2 * h * h))  # noqa: E731
    ref_mmd = k(xn, xn).mean() + k(yn, yn).mean() - 2 * k(xn, yn).mean()
    np.testing.assert_allclose(jax.jit(mmd)(x, y, h), ref_mmd, rtol=1e-10)
    # finite gradients including coincident points (self-distance on the diagonal)
    g = jax.jit(jax.grad(lambda s: energy_distance(x + s, x)))(0.0)
    assert np.isfinite(float(g))


def test_classifier_loss_separates(key):
    k1, k2, k3, k4 = jax.random.split(key, 4)
    a = jax.random.normal(k1, (1000,))
    b = jax.random.normal(k2, (1000,))
    shifted = 1.0 + jax.random.normal(k3, (1000,))
    p_same = train_classifier(a, b, k4, steps=200)
    p_diff = train_classifier(a, shifted, k4, steps=200)
    div = jax.jit(lambda p, xs, xd: classifier_loss(lambda x: classifier_logit(p, x), xs, xd))
    d_same = div(p_same, a, b)
    d_diff = div(p_diff, a, shifted)
    # JS divergence of N(0,1) vs N(1,1) ≈ 0.1153 (numerical integral); a fitted classifier approaches it
    grid = np.linspace(-8, 9, 20001)
    p, q = scipy.stats.norm.pdf(grid), scipy.stats.norm.pdf(grid, 1.0)
    m = 0.5 * (p + q)
    js = 0.5 * np.trapezoid(p * np.log(p / m) + q * np.log(q / m), grid)
    assert float(d_same) < 0.02
    assert 0.5 * js < float(d_diff) < js + 0.05
    # the divergence decreases when the simulated sample is moved towards the data
    g = jax.jit(jax.grad(lambda s: div(p_diff, a + s, shifted)))(0.0)
    assert float(g) < 0


# --------------------------------------------------------------------------- fit and uncertainties


def _gauss_nll(data):
    def nll(p):
        mu, sigma = p["mu"], p["sigma"]
        return jnp.sum(0.5 * ((data - mu) / sigma) ** 2 + jnp.log(sigma))

    return nll


def test_fit_matches_iminuit(key):
    data = 1.3 + 0.7 * jax.random.normal(key, (400,))
    nll = _gauss_nll(data)
    start = {"mu": jnp.asarray(0.0), "sigma": jnp.asarray(1.0)}
    res = fit(nll, start, optax.adam(0.1), steps=1000, transforms={"sigma": positive()}, tol=1e-13)
    res2 = fit(nll, start, optax.lbfgs(), steps=100, transforms={"sigma": positive()}, tol=1e-13)
    nll_jit = jax.jit(lambda mu, sigma: nll({"mu": mu, "sigma": sigma}))
    m = Minuit(lambda mu, sigma: float(nll_jit(jnp.asarray(mu), jnp.asarray(sigma))), mu=0.0, sigma=1.0)
    m.errordef = Minuit.LIKELIHOOD
    m.limits["sigma"] = (1e-3, None)
    m.migrad()
    m.hesse()
    assert m.valid
    for r, frac in ((res, 2e-2), (res2, 1e-3)):
        assert r.status == "converged", r.message
        # both minimisers find MIGRAD's optimum to a small fraction of the uncertainty
        # (Adam with a constant step hovers within ~1e-2 σ of it, L-BFGS converges)
        assert abs(float(r.params["mu"]) - m.values["mu"]) < frac * m.errors["mu"]
        assert abs(float(r.params["sigma"]) - m.values["sigma"]) < frac * m.errors["sigma"]
    cov = hessian_covariance(nll, res2.params, errordef=0.5)
    np.testing.assert_allclose(cov.error("mu"), m.errors["mu"], rtol=1e-3)
    np.testing.assert_allclose(cov.error("sigma"), m.errors["sigma"], rtol=1e-3)
    # analytic: σ_μ = σ̂/√N
    np.testing.assert_allclose(cov.error("mu"), float(res2.params["sigma"]) / np.sqrt(400), rtol=1e-6)
    assert len(res.history["loss"]) == res.n_steps


def test_fit_frozen_bounded_and_scaled():
    def loss(p):
        return (p["a"] - 3.0) ** 2 + (p["b"]["c"] - 0.2) ** 2 + (p["b"]["d"] + 1.0) ** 2

    start = {"a": jnp.asarray(0.0), "b": {"c": jnp.asarray(0.5), "d": jnp.asarray(0.0)}}
    res = fit(
        loss,
        start,
        optax.adam(0.05),
        steps=2000,
        frozen=["b/d"],
        transforms={"b/c": bounded(0.3, 1.0), "a": scaled(0.0, 2.0)},
    )
    assert float(res.params["b"]["d"]) == 0.0  # frozen
    np.testing.assert_allclose(float(res.params["a"]), 3.0, atol=1e-4)
    assert 0.3 < float(res.params["b"]["c"]) < 0.31  # pushed to, but not across, the bound
    with pytest.raises(ValueError, match="not parameters"):
        fit(loss, start, frozen=["nope"])
    with pytest.raises(ValueError, match="every parameter is frozen"):
        fit(loss, start, frozen=["a", "b"])
    with pytest.raises(ValueError, match="inside"):
        fit(loss, start, transforms={"b/c": bounded(0.6, 1.0)})


def test_fit_nan_guard():
    def loss(p):
        x = p["x"]
        return jnp.where(x > 1.0, jnp.nan, (x - 2.0) ** 2)

    res = fit(loss, {"x": jnp.asarray(0.0)}, optax.sgd(0.3), steps=100)
    assert res.status == "nan" and not res.converged
    assert "rejected" in res.message and "loss is non-finite" in res.message
    assert float(res.params["x"]) <= 1.0 and np.isfinite(res.loss)
    assert np.all(np.isfinite(res.history["loss"]))
    with pytest.raises(FloatingPointError, match="kept the last good params"):
        fit(loss, {"x": jnp.asarray(0.0)}, optax.sgd(0.3), steps=100, on_nan="raise")


def test_fit_bad_input():
    loss = lambda p: p["x"] ** 2  # noqa: E731
    with pytest.raises(ValueError, match="not finite"):
        fit(loss, {"x": jnp.asarray(jnp.nan)})
    with pytest.raises(TypeError, match="floating"):
        fit(loss, {"x": jnp.asarray(1)})
    with pytest.raises(ValueError, match="steps"):
        fit(loss, {"x": jnp.asarray(1.0)}, steps=0)
    with pytest.raises(ValueError, match="random_numbers"):
        fit(loss, {"x": jnp.asarray(1.0)}, random_numbers="sometimes")
    with pytest.raises(ValueError, match="empty"):
        fit(loss, {})
    with pytest.raises(ValueError, match="positive definite"):
        hessian_covariance(lambda p: -(p["x"] ** 2), {"x": jnp.asarray(0.0)})


def test_fit_refreshed_random_numbers(key):
    """SGD on E[(x − θ)²] with x ~ N(2, 1): refreshed samples converge to θ = 2 without sample bias."""

    def loss(p, k):
        x = 2.0 + jax.random.normal(k, (64,))
        return jnp.mean((x - p["t"]) ** 2)

    sched = optax.exponential_decay(0.1, 500, 0.1)
    fixed = fit(loss, {"t": jnp.asarray(0.0)}, optax.sgd(0.1), steps=500, key=key, tol=0.0)
    fresh = fit(loss, {"t": jnp.asarray(0.0)}, optax.sgd(sched), steps=1500, key=key, random_numbers="refresh", tol=0.0)
    # fixed random numbers: the optimum is exactly that sample's mean
    sample_mean = float(jnp.mean(2.0 + jax.random.normal(key, (64,))))
    np.testing.assert_allclose(float(fixed.params["t"]), sample_mean, atol=1e-8)
    # refreshed: the average over many samples; its error is far below one sample's 1/8
    assert abs(float(fresh.params["t"]) - 2.0) < 0.05


def test_profile_scan_matches_hessian():
    c = np.asarray([[0.04, 0.018], [0.018, 0.09]])
    ci = jnp.asarray(np.linalg.inv(c))
    centre = jnp.asarray([1.0, -0.5])

    def chi(p):
        d = jnp.stack([p["a"], p["b"]]) - centre
        return d @ ci @ d + 0.3 * d[0] ** 4  # mildly non-quadratic

    best = fit(chi, {"a": jnp.asarray(0.0), "b": jnp.asarray(0.0)}, optax.lbfgs(), steps=100).params
    cov = hessian_covariance(chi, best)
    np.testing.assert_allclose(cov.matrix, c, rtol=1e-6)
    scan = profile_scan(chi, best, "b", np.linspace(-1.2, 0.2, 29))
    # b enters quadratically → profile interval = ±σ_b exactly
    np.testing.assert_allclose(scan.interval, (-0.5 - 0.3, -0.5 + 0.3), atol=2e-3)
    assert cov.propagate(lambda p: p["a"] + p["b"], best) == pytest.approx(np.sqrt(c.sum()), rel=1e-6)


# --------------------------------------------------------------------------- gradient estimators


def _gauss_sim(p, key, n):
    eps = jax.random.normal(key, (n,))
    return p["mu"] + p["sigma"] * eps


def test_gradient_estimators_analytic(key):
    """E[x²] = μ² + σ² for x ~ N(μ, σ²): ∇ = (2μ, 2σ), by all three estimators."""
    params = {"mu": jnp.asarray(0.8), "sigma": jnp.asarray(1.3)}
    truth = np.asarray([2 * 0.8, 2 * 1.3])  # flattened order: mu, sigma
    n = 20000

    def logp(p, x):
        return -0.5 * ((x - p["mu"]) / p["sigma"]) ** 2 - jnp.log(p["sigma"])

    def with_logp(p, k, n):
        x = jax.lax.stop_gradient(_gauss_sim(p, k, n))
        return x * x, logp(p, x)

    def with_weights(p, k, n):
        x = jax.lax.stop_gradient(_gauss_sim(p, k, n))
        lp = logp(p, x)
        return x * x, jnp.exp(lp - jax.lax.stop_gradient(lp))

    path = pathwise_gradient(lambda p, k, n: _gauss_sim(p, k, n) ** 2, params, key, n)
    score = score_function_gradient(with_logp, params, key, n)
    score_nb = score_function_gradient(with_logp, params, key, n, baseline=False)
    rew = reweighting_gradient(with_weights, params, key, n, normalise=True)
    for est in (path, score, score_nb, rew):
        assert est.names == ["mu", "sigma"]
        assert_compatible(est.mean, truth, est.std_error, n_sigma=4.0, what="gradient estimate")
    # the pathwise estimator has the smallest variance; the baseline reduces the score variance
    assert np.all(path.variance < score.variance)
    assert np.all(score.variance < score_nb.variance)
    # the reported standard error agrees with the spread over independent repeats
    rep = estimator_variance(pathwise_gradient, lambda p, k, n: _gauss_sim(p, k, n) ** 2, params, key, 500, repeats=40)
    ratio = rep["repeat_std"] / np.sqrt(rep["per_event_variance"] / 500)
    assert np.all(np.abs(ratio - 1) < 0.35)  # 40 repeats: relative error of a std ≈ 1/√78 ≈ 0.11


def test_score_function_discrete(key):
    """Bernoulli(p) choices: E[count] = n·p → ∇ = 1 per event; only the score function sees it."""
    params = {"logit": jnp.asarray(0.3)}
    p0 = float(jax.nn.sigmoid(0.3))

    def sim(p, k, n):
        u = jax.random.uniform(k, (n,))
        prob = jax.nn.sigmoid(p["logit"])
        choice = u < jax.lax.stop_gradient(prob)
        value = choice.astype(u.dtype)
        logp = jnp.where(choice, jnp.log(prob), jnp.log1p(-prob))
        return value, logp

    est = score_function_gradient(sim, params, key, 20000)
    assert_compatible(est.mean, [p0 * (1 - p0)], est.std_error, n_sigma=4.0, what="dE/dlogit")
    with pytest.raises(ValueError, match="n must be"):
        score_function_gradient(sim, params, key, 1)
