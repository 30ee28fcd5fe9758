"""Gen–reco pairing: the structure unfolding consumes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_detector import lep_muon_sample, lep_stochastic, muon_pairs, muon_source

import diffgen as dg
from diffgen import kinematics as kin
from diffgen.detector import GenRecoPair, gaussian_smearing, gen_reco, lep_like, paired


def _fiducial(events):
    """Both muons with |η| < 1.5 at particle level."""
    return jnp.sum(events.mask & (jnp.abs(kin.eta(events.p)) < 1.5), axis=1) == 2


def _two_muons(events):
    return events.multiplicity() == 2


@pytest.fixture(scope="module")
def muon_pair():
    """Z → μ⁺μ⁻ through the stochastic LEP-like detector, paired (the compiled detector is shared)."""
    truth, _, params, key = lep_muon_sample()
    return gen_reco(lep_stochastic(), params, key, truth, gen_selection=_fiducial, reco_selection=_two_muons)


def test_flags_fakes_and_misses(muon_pair):
    pair, truth = muon_pair, muon_pair.truth
    n = len(truth)
    assert isinstance(pair, GenRecoPair) and len(pair) == n
    np.testing.assert_array_equal(np.asarray(pair.pass_reco), np.asarray(pair.reco.multiplicity() == 2))
    np.testing.assert_array_equal(np.asarray(pair.pass_gen), np.asarray(_fiducial(truth)))
    # fakes: outside |η| < 1.5 but inside the tracker acceptance |η| < 1.83; misses: 2 % inefficiency per track
    n_fake, n_miss, n_match = (int(np.sum(np.asarray(x))) for x in (pair.fakes, pair.misses, pair.matched))
    assert n_fake > 0.02 * n and n_miss > 0.01 * n and n_match > 0.6 * n
    assert n_fake + n_miss + n_match + int(np.sum(~np.asarray(pair.pass_gen | pair.pass_reco))) == n
    # slot i of reco is slot i of truth
    both = np.asarray(pair.matched)
    dphi = np.asarray(kin.delta_phi(pair.reco.p, pair.truth.p))[both]
    assert np.max(np.abs(dphi)) < 0.01
    np.testing.assert_array_equal(np.asarray(pair.weight), np.asarray(truth.weight))


def test_pytree_slicing_and_numpy_round_trip(muon_pair):
    pair = muon_pair[:20]
    leaves = jax.tree.leaves(pair)
    assert len(leaves) == len(jax.tree.leaves(pair.reco)) + len(jax.tree.leaves(pair.truth)) + 2
    same = jax.jit(lambda x: x)(pair)
    np.testing.assert_array_equal(np.asarray(same.reco.p), np.asarray(pair.reco.p))
    assert len(pair[3:7]) == 4 and len(pair[5]) == 1 and len(pair.take(jnp.asarray([0, 2]))) == 2
    sub = pair.take(np.asarray(pair.pass_reco))
    assert len(sub) == int(np.sum(np.asarray(pair.pass_reco)))
    data = pair.to_numpy()
    assert {"pass_gen", "pass_reco", "reco/p", "truth/p", "reco/extra/detector_logprob"} <= set(data)
    back = GenRecoPair.from_numpy(data)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(pair), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_paired_sampler_matches_chain(key):
    src, det = muon_source(), gaussian_smearing()
    sampler = paired(src, det)
    params = sampler.init(key)
    pair = jax.jit(sampler.sample, static_argnums=2)(params, key, 50)
    reco = jax.jit(dg.chain(src, ("detector", det)).sample, static_argnums=2)(params, key, 50)
    np.testing.assert_array_equal(np.asarray(pair.reco.p), np.asarray(reco.p))
    assert bool(jnp.all(pair.pass_gen)) and bool(jnp.all(pair.pass_reco))


def test_validation(key):
    truth = muon_pairs(np.random.default_rng(2), 4)
    ok = jnp.ones(4, bool)
    with pytest.raises(ValueError, match=r"GenRecoPair.pass_gen: expected bool array of shape \[N\] = \[4\]"):
        GenRecoPair(reco=truth, truth=truth, pass_gen=jnp.ones(3, bool), pass_reco=ok)
    with pytest.raises(ValueError, match="GenRecoPair.pass_reco"):
        GenRecoPair(reco=truth, truth=truth, pass_gen=ok, pass_reco=jnp.ones(4))
    with pytest.raises(ValueError, match="GenRecoPair.reco: expected N = 4"):
        GenRecoPair(reco=truth[:2], truth=truth, pass_gen=ok, pass_reco=ok)
    with pytest.raises(TypeError, match="GenRecoPair.truth: expected Events"):
        GenRecoPair(reco=truth, truth=np.zeros(4), pass_gen=ok, pass_reco=ok)
    with pytest.raises(ValueError, match="missing field"):
        GenRecoPair.from_numpy({"reco/p": np.zeros((1, 1, 4))})
    with pytest.raises(TypeError, match="paired: source must be a Source"):
        paired(lep_like(), lep_like())
