"""Acceptance × efficiency: soft → hard convergence, stochastic drops, score-function gradients."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

import diffgen as dg
from diffgen.detector import KEEP_PROB, LOGPROB, efficiency
from diffgen.testing import assert_compatible, assert_padding_clean

N_EVENTS, CAPACITY = 20000, 8


def particles(seed=0):
    """[N, 8] π⁺ with exponential pT (mean 1.5 GeV), uniform |η| < 3, random padding; numpy pT, η too."""
    rng = np.random.default_rng(seed)
    pt = rng.exponential(1.5, (N_EVENTS, CAPACITY))
    eta = rng.uniform(-3, 3, (N_EVENTS, CAPACITY))
    phi = rng.uniform(-np.pi, np.pi, (N_EVENTS, CAPACITY))
    mask = rng.uniform(size=(N_EVENTS, CAPACITY)) < 0.8
    p3 = np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)], -1)
    e = np.sqrt(np.sum(p3**2, -1) + 0.13957**2)
    p = np.where(mask[..., None], np.concatenate([e[..., None], p3], -1), 0.0)
    ev = dg.Events(
        p=jnp.asarray(p),
        weight=jnp.asarray(rng.uniform(0.5, 1.5, N_EVENTS)),
        mask=jnp.asarray(mask),
        pid=jnp.asarray(np.where(mask, 211, 0), dtype=jnp.int32),
    )
    return ev, pt, eta, mask


def test_soft_acceptance_converges_to_hard_cut(key):
    ev, pt, eta, mask = particles()
    inside = mask & (np.abs(eta) < 2.0) & (pt > 0.5)
    hard = inside.sum() / mask.sum()
    fraction_diff, l1 = [], []
    for slope in (3.0, 30.0, 1e4, math.inf):
        layer = efficiency(eta_max=2.0, pt_min=0.5, slope=slope)
        out = jax.jit(layer.apply)(layer.init(key), key, ev)
        keep = np.asarray(out.extra[KEEP_PROB])
        assert np.all(keep[~mask] == 0)
        fraction_diff.append(abs(keep.sum() / mask.sum() - hard))
        l1.append(np.abs(keep - inside)[mask].mean())  # per-particle distance: no cancellations
    assert l1[0] > l1[1] > l1[2] > 0
    assert fraction_diff[2] < 1e-3, f"fraction passing at slope 1e4 differs from the hard cut by {fraction_diff[2]}"
    assert fraction_diff[3] == 0 and l1[3] == 0  # slope = inf is the hard cut


def test_stochastic_mode_drops_with_the_keep_probability(key):
    ev, _, _, mask = particles(1)
    kwargs = dict(eta_max=2.0, pt_min=0.5, plateau=0.9, pt_50=1.0, pt_width=0.3, eta_50=1.5, eta_width=0.2, slope=10.0)
    soft, stoch = efficiency(**kwargs), efficiency(**kwargs, mode="stochastic")
    params = soft.init(key)
    prob = np.asarray(jax.jit(soft.apply)(params, key, ev).extra[KEEP_PROB])
    out = jax.jit(stoch.apply)(params, key, ev)
    kept = np.asarray(out.mask)
    assert not np.any(kept & ~mask)
    assert_padding_clean(out)
    # Kept fraction vs mean probability, binomial error.
    p_real = prob[mask]
    error = np.sqrt(np.sum(p_real * (1 - p_real))) / p_real.size
    assert_compatible(kept.sum() / mask.sum(), p_real.mean(), error, n_sigma=4, what="kept fraction")
    # The log-probability of the decisions, recomputed from the keep probabilities.
    logp = np.sum(np.where(mask, np.where(kept, np.log(np.where(kept, prob, 1)), np.log1p(-prob)), 0.0), axis=1)
    np.testing.assert_allclose(np.asarray(out.extra[LOGPROB]), logp, rtol=1e-9, atol=1e-9)


def test_score_function_gradient_matches_soft_and_finite_differences(key):
    """∇E[Σ_n w_n C_n]: soft mode (exact expectation) vs score function vs finite differences."""
    ev, _, _, _ = particles(2)
    kwargs = dict(eta_max=2.0, pt_min=0.5, plateau=0.9, pt_50=1.0, pt_width=0.3, slope=5.0)
    soft, stoch = efficiency(**kwargs), efficiency(**kwargs, mode="stochastic")
    theta = soft.init(key)
    w = ev.weight

    def expected_count(th):
        return jnp.mean(w * jnp.sum(soft.apply(th, key, ev).extra[KEEP_PROB], axis=1))

    grad_soft = jax.jit(jax.grad(expected_count))(theta)
    f = jax.jit(expected_count)
    out = jax.jit(stoch.apply)(theta, key, ev)
    count = np.asarray(w) * np.asarray(out.multiplicity())
    # Per-event ∇θ log p (forward mode: one pass per parameter, N outputs).
    dlogp = jax.jit(jax.jacfwd(lambda th: stoch.apply(th, key, ev).extra[LOGPROB]))(theta)
    for name in theta:
        h = 1e-5 * max(1.0, abs(float(theta[name])))
        up = {**theta, name: theta[name] + h}
        down = {**theta, name: theta[name] - h}
        fd = (float(f(up)) - float(f(down))) / (2 * h)
        np.testing.assert_allclose(float(grad_soft[name]), fd, rtol=1e-6, atol=1e-9, err_msg=name)
        terms = (count - count.mean()) * np.asarray(dlogp[name])
        score, error = terms.mean(), terms.std() / np.sqrt(terms.size)
        assert_compatible(score, float(grad_soft[name]), error, n_sigma=4, what=f"score-function d/d{name}")
        assert abs(float(grad_soft[name])) > 3 * error  # the comparison has power
