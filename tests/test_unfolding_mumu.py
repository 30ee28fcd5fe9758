"""OmniFold on the generator itself: e⁺e⁻ → μ⁺μ⁻ at the Z pole through the LEP-like detector.

The simulation is generated at the default sin²θ_W, the "data" at sin²θ_W = 0.20 (A_FB ≈ 0.11
instead of ≈ 0.02 at Born level, A_FB = ¾ A_e A_μ, arXiv:hep-ex/0509008). The
unfolded cos θ* distribution and A_FB of the μ⁻ must agree with the data truth within the
bootstrap errors (data and simulation resampled) combined with the truth sample's own error,
while the simulation's truth (the prior) must be incompatible with it, so the test can fail.

Fiducial region |cos θ*| < 0.9 at both levels (inside the tracker acceptance, |cos θ| < 0.95):
outside the acceptance nothing is reconstructed and nothing can be unfolded (as for IBU).
Within it the detector loses events (inefficiency); OmniFold's efficiency correction recovers
them. The angular resolution (≈ 1 mrad) makes migrations small.
"""

import jax
import numpy as np
import pytest

from diffgen.testing import assert_compatible
from diffgen.unfolding import TrainConfig, mumu_afb_samples, omnifold

N = 20_000  # events per sample: A_FB errors ≈ 0.01, prior–truth difference ≈ 0.09
COS_MAX = 0.9
DATA_SIN2 = 0.20
EDGES = np.linspace(-COS_MAX, COS_MAX, 7)
CONFIG = TrainConfig(hidden=(16, 16), epochs=12, batch_size=256, learning_rate=3e-3, lr_decay=0.75, patience=3)


def _afb(c, w):
    return np.sum(w * np.sign(c), axis=-1) / np.sum(w, axis=-1)


def _shape(c, w):
    h = np.histogram(c, EDGES, weights=w)[0]
    return h / h.sum()


@pytest.fixture(scope="module")
def samples():
    return mumu_afb_samples(N, data_sin2_theta_w=DATA_SIN2, cos_max=COS_MAX)


@pytest.mark.slow
def test_omnifold_unfolds_mumu_cos_theta_and_afb(samples):
    mc, data = samples
    # Events outside the fiducial region at both levels play no part in the unfolding.
    keep = mc["pass_gen"] | mc["pass_reco"]
    mc = {k: v[keep] for k, v in mc.items()}
    # The sample has inefficiencies inside the fiducial region (what the unfolding corrects).
    assert 0.02 < np.mean(mc["pass_gen"] & ~mc["pass_reco"]) < 0.5
    d_obs = data["pass_reco"]
    res = omnifold(
        mc["gen"],
        mc["reco"],
        data["reco"][d_obs],
        key=jax.random.key(3),
        mc_weights=mc["weight"],
        data_weights=data["weight"][d_obs],
        pass_gen=mc["pass_gen"],
        pass_reco=mc["pass_reco"],
        iterations=2,
        n_bootstrap=8,
        bootstrap_mc=True,
        config=CONFIG,
    )
    pg = mc["pass_gen"]
    gen = np.where(pg, mc["gen"], 0.0)
    t_sel = data["pass_gen"]
    t, tw = data["gen"][t_sel], data["weight"][t_sel]

    # A_FB: bootstrap error ⊕ the truth sample's ratio-estimator error.
    value, boot = res.statistic(lambda w: _afb(gen[pg], w[pg]))
    truth = _afb(t, tw)
    truth_err = np.sqrt(np.sum(tw**2 * (np.sign(t) - truth) ** 2)) / np.sum(tw)
    sigma = float(np.hypot(boot, truth_err))
    assert_compatible(value, truth, sigma, n_sigma=3.0, what="unfolded A_FB")
    prior = _afb(mc["gen"][pg], mc["weight"][pg])
    assert abs(prior - truth) > 5 * sigma, (prior, truth, sigma)

    # Normalised cos θ* shape in 6 bins: each bin within 3σ; the prior is far off (χ²).
    unf, boot_h = res.statistic(lambda w: _shape(gen[pg], w[pg]))
    tru = _shape(t, tw)
    tru_err = np.sqrt(np.histogram(t, EDGES, weights=tw**2)[0]) / np.sum(tw)
    sig_h = np.hypot(boot_h, tru_err)
    assert_compatible(unf, tru, sig_h, n_sigma=3.0, what="unfolded cos θ* shape")
    chi2_prior = np.sum(((_shape(mc["gen"][pg], mc["weight"][pg]) - tru) / sig_h) ** 2)
    assert chi2_prior > 30.0, chi2_prior  # χ²(5 dof) > 30: p < 2e-5
    assert np.all(np.isfinite(res.weights)) and np.all(res.weights[~pg] == 0)
