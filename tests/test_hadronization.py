"""Hadronization: cluster formation, reference decay, learned decay models, checkpoints."""

import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from diffgen import Events, Layer
from diffgen.hadronization import (
    charge3,
    decay_clusters,
    form_clusters,
    hadronize,
    meson_pid,
    reference_angles,
    smeared_cos_theta,
    smeared_cos_theta_log_prob,
)
from diffgen.hadronization import learned as L
from diffgen.hadronization.hadrons import DECAYS, HADRON_MASS, TABLE
from diffgen.hadronization.samples import parton_chains, reference_clusters
from diffgen.testing import (
    assert_compatible,
    assert_momentum_conserved,
    assert_on_shell,
    assert_padding_clean,
    check_layer_grads,
)

pytestmark = pytest.mark.filterwarnings("ignore:jax.core.pytype_aval_mappings is deprecated:DeprecationWarning")


# --------------------------------------------------------------------------- hadron table


def test_meson_codes_follow_pdg_numbering():
    # quark, antiquark -> PDG code (PDG review §45): pi+ = u d̄, K0 = d s̄, D0 = c ū, B+ = u b̄.
    cases = {
        (2, 1, 0): 211,
        (1, 2, 0): -211,
        (1, 3, 0): 311,
        (3, 2, 0): -321,
        (4, 2, 0): 421,
        (2, 5, 0): 521,
        (1, 5, 0): 511,
        (4, 5, 0): 541,
        (2, 2, 0): 111,
        (3, 3, 0): 221,
        (2, 1, 1): 213,
        (3, 3, 1): 333,
    }
    for (a, b, v), pid in cases.items():
        assert int(meson_pid(jnp.int32(a), jnp.int32(b), v)) == pid
    # charge = Q(a) − Q(b) in units of e/3 for every table entry
    q = {1: -1, 2: 2, 3: -1, 4: 2, 5: -1}
    for a in range(1, 6):
        for b in range(1, 6):
            for v in (0, 1):
                pid = meson_pid(jnp.int32(a), jnp.int32(b), v)
                assert int(charge3(pid)) == q[a] - q[b]
    assert HADRON_MASS[211] == pytest.approx(0.13957039) and HADRON_MASS[321] == pytest.approx(0.493677)


def test_decay_channels_conserve_charge_and_are_open():
    for parent, channels in DECAYS.items():
        assert sum(c[0] for c in channels) == pytest.approx(1.0)
        for _, d1, d2 in channels:
            qd = int(charge3(jnp.int32(d1))) + (int(charge3(jnp.int32(d2))) if d2 else 0)
            assert qd == int(TABLE["charge3"][parent])
            if d2:
                assert HADRON_MASS[parent] > HADRON_MASS[abs(d1)] + HADRON_MASS[abs(d2)]


# --------------------------------------------------------------------------- reference angles


def test_smeared_cos_theta_matches_truncated_exponential(key):
    n = 40_000
    for sigma in (0.3, 1.5):
        c = np.asarray(smeared_cos_theta(jax.random.uniform(key, (n,), dtype=jnp.float64), jnp.float64(sigma)))
        # E[1 − c] of the truncated exponential on [0, 2]: σ − 2/(e^{2/σ} − 1)
        expected = 1.0 - (sigma - 2.0 / np.expm1(2.0 / sigma))
        assert_compatible(c.mean(), expected, c.std() / np.sqrt(n), n_sigma=4, what=f"<cos θ> at σ={sigma}")
        grid = np.linspace(-1, 1, 20001)
        dens = np.exp(np.asarray(smeared_cos_theta_log_prob(jnp.asarray(grid), jnp.float64(sigma))))
        assert np.trapezoid(dens, grid) == pytest.approx(1.0, rel=1e-6)


# --------------------------------------------------------------------------- the layer


@pytest.fixture(scope="module")
def partons():
    # q g g g g q̄ at the Z pole, padded to capacity 8 so that padding is present.
    return parton_chains(jax.random.key(11), 24, n_gluons=4, sqrt_s=91.2, capacity=8)


@pytest.fixture(scope="module")
def primary(partons):
    layer = hadronize(decay_unstable_hadrons=False, max_clusters=40)
    params = layer.init(jax.random.key(0))
    return jax.jit(layer.apply)(params, jax.random.key(3), partons)


@pytest.fixture(scope="module")
def final(partons):
    layer = hadronize(max_clusters=40)
    params = layer.init(jax.random.key(0))
    return jax.jit(layer.apply)(params, jax.random.key(3), partons)


def _charge(ev):
    return np.sum(np.where(np.asarray(ev.mask), np.asarray(charge3(ev.pid)), 0), axis=1)


def test_primary_hadrons_conserve_momentum_charge_flavour(partons, primary):
    assert_momentum_conserved(primary, partons, rtol=1e-9)
    assert_on_shell(primary, HADRON_MASS, rtol=1e-9)
    assert_padding_clean(primary)
    np.testing.assert_array_equal(_charge(primary), _charge(partons))
    # net quark number of each flavour (strong interactions conserve it): partons vs hadrons
    tab = TABLE["meson"]
    content = {}
    for a in range(1, 6):
        for b in range(1, 6):
            for v in (0, 1):
                content[int(tab[a - 1, b - 1, v])] = (a, b)
    pid_h, mask_h = np.asarray(primary.pid), np.asarray(primary.mask)
    pid_p, mask_p = np.asarray(partons.pid), np.asarray(partons.mask)
    for f in (3, 4, 5):  # s, c, b (light flavours mix in π⁰/ρ⁰)
        net_h = np.zeros(len(pid_h), int)
        for e in range(len(pid_h)):
            for pid in pid_h[e][mask_h[e]]:
                a, b = content[int(pid)]
                net_h[e] += (a == f) - (b == f)
        net_p = np.sum(np.where(mask_p, (pid_p == f).astype(int) - (pid_p == -f).astype(int), 0), axis=1)
        np.testing.assert_array_equal(net_h, net_p)
    for k in ("cluster_overflow", "colour_unmatched", "reshuffle_failed"):
        assert not np.any(np.asarray(primary.extra[k])), k
    assert np.all(np.asarray(primary.extra["n_clusters"]) >= 5)


def test_final_state_is_stable_and_conserving(partons, final):
    assert_momentum_conserved(final, partons, rtol=1e-9)
    assert_on_shell(final, HADRON_MASS, rtol=1e-9)
    assert_padding_clean(final)
    np.testing.assert_array_equal(_charge(final), _charge(partons))
    pids = set(np.abs(np.asarray(final.pid)[np.asarray(final.mask)]).tolist())
    assert pids <= {22, 211, 321, 130}
    assert not np.any(np.asarray(final.extra["hadron_overflow"]))


def test_final_state_conserves_momentum_in_float32(partons):
    """Float32 hadrons add up to the partons to float32 rounding (γ = E/m in the boosts, kinematics.boost).

    With γ = 1/√(1 − β²) the boosts of fast light clusters and hadrons lost energy and
    momentum at the per-mille level in float32.
    """
    partons32 = partons.replace(p=partons.p.astype(jnp.float32), weight=partons.weight.astype(jnp.float32))
    layer = hadronize(max_clusters=40)
    out = jax.jit(layer.apply)(layer.init(jax.random.key(0)), jax.random.key(3), partons32)
    assert out.p.dtype == jnp.float32
    assert_momentum_conserved(out, partons32, rtol=64 * float(np.finfo(np.float32).eps))


def test_bad_input_is_rejected(partons):
    layer = hadronize()
    params = layer.init(jax.random.key(0))
    with pytest.raises(TypeError, match="events.colour is required"):
        layer.apply(params, jax.random.key(0), partons.replace(colour=None))
    bad = np.array(partons.pid)
    bad[0, 1] = 11
    with pytest.raises(ValueError, match=r"events.pid must be a quark .* got \[11\]"):
        layer.apply(params, jax.random.key(0), partons.replace(pid=bad))
    col = np.array(partons.colour)
    col[0, 0, 0] = 999
    with pytest.raises(ValueError, match="events.colour"):
        layer.apply(params, jax.random.key(0), partons.replace(colour=col))
    with pytest.raises(ValueError, match="decay must be"):
        hadronize("herwig")
    with pytest.raises(ValueError, match="n_fission_rounds"):
        hadronize(n_fission_rounds=-1)


def test_cluster_below_threshold_errors_in_decay_clusters(partons):
    params = hadronize().init(jax.random.key(0))
    clusters, _ = form_clusters(params, jax.random.key(1), partons[:2])
    p_q = np.array(clusters.p_q)
    p_qb = np.array(clusters.p_qbar)
    # a (u, d̄) cluster of mass 0.2 GeV < 2 m_π: two collinear-ish massless constituents
    p_q[0, 0] = [0.5, 0.0, 0.1, np.sqrt(0.5**2 - 0.1**2)]
    p_qb[0, 0] = [0.5, 0.0, -0.1, np.sqrt(0.5**2 - 0.1**2)]
    fq = np.array(clusters.flav_q)
    fqb = np.array(clusters.flav_qbar)
    fq[0, 0], fqb[0, 0] = 2, 1
    low = clusters.__class__(
        p_q=jnp.asarray(p_q),
        p_qbar=jnp.asarray(p_qb),
        flav_q=jnp.asarray(fq),
        flav_qbar=jnp.asarray(fqb),
        mask=clusters.mask,
    )
    with pytest.raises(ValueError, match="two-hadron threshold"):
        decay_clusters(params, jax.random.key(2), low)
    fq[0, 0] = 7
    bad = low.__class__(p_q=low.p_q, p_qbar=low.p_qbar, flav_q=jnp.asarray(fq), flav_qbar=low.flav_qbar, mask=low.mask)
    with pytest.raises(ValueError, match="flav_q must be a quark flavour code"):
        decay_clusters(params, jax.random.key(2), bad)


def test_reshuffle_solves_the_mass_shells_and_has_the_implicit_derivative():
    """Light clusters end on their single-hadron shells, the rest keep their masses, the total
    four-momentum is kept; the derivative of the converged root (one differentiable Newton
    step after the loop) agrees with central differences of the whole solve."""
    from diffgen import kinematics as kin
    from diffgen.hadronization.decay import _reshuffle

    rng = np.random.default_rng(4)
    k = 6
    three = rng.normal(0.0, 3.0, (k, 3))
    m = np.array([0.3, 1.5, 0.2, 2.0, 1.2, 0.0])
    p0 = np.concatenate([np.sqrt(m**2 + np.sum(three**2, axis=1))[:, None], three], axis=1)
    light = jnp.asarray([True, False, True, False, False, False])
    mask = jnp.asarray([True, True, True, True, True, False])
    m_single = jnp.asarray([0.13957, 0.0, 0.49368, 0.0, 0.0, 0.0])

    def solve(p):
        return _reshuffle(p, light, m_single, mask)

    new, failed = jax.jit(solve)(jnp.asarray(p0))
    new = np.asarray(new)
    assert not bool(failed)
    np.testing.assert_allclose(new[:5].sum(axis=0), p0[:5].sum(axis=0), rtol=0, atol=1e-10)
    masses = np.asarray(kin.mass(jnp.asarray(new)))
    np.testing.assert_allclose(masses[[0, 2]], np.asarray(m_single)[[0, 2]], rtol=0, atol=1e-9)
    np.testing.assert_allclose(masses[[1, 3, 4]], m[[1, 3, 4]], rtol=0, atol=1e-9)

    def observable(scale):
        # one cluster's momentum rescaled: moves W and every |k_i|, so ξ moves
        p = jnp.asarray(p0).at[1, 1:].multiply(scale)
        p = p.at[1, 0].set(jnp.sqrt(m[1] ** 2 + jnp.sum(p[1, 1:] ** 2)))
        out, _ = solve(p)
        return jnp.sum(out[:, 0] * out[:, 3]) + jnp.sum(out[0, 1:] ** 2)

    grad = float(jax.grad(observable)(1.1))
    h = 1e-5
    fd = (float(observable(1.1 + h)) - float(observable(1.1 - h))) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-6)
    assert abs(grad) > 1e-3


# --------------------------------------------------------------------------- gradients


@pytest.fixture(scope="module")
def gun():
    return reference_clusters(jax.random.key(5), 64)


def _decay_layer(model, base):
    """A Layer whose params are the angle model's only; events are dummies carrying nothing."""

    def apply(params, key, events):
        p, pid, mask, _ = decay_clusters({**base, "decay": params}, key, events.extra["clusters"], model)
        return Events(p=p, weight=jnp.ones(p.shape[0], p.dtype), mask=mask, pid=pid)

    return Layer(init=lambda key: None, apply=apply)


def _observable(ev):
    # smooth: mean over hadrons of E·p_z / (1 GeV²) and p_x²
    w = ev.mask.astype(ev.p.dtype)
    return jnp.sum(w * (ev.p[..., 0] * ev.p[..., 3] + ev.p[..., 1] ** 2)) / jnp.sum(w)


def test_gradients_smearing_weights_and_cluster_momenta(gun):
    base = {"gamma_s": jnp.float64(0.6), "p_vector": jnp.float64(0.5)}
    n = gun.mask.shape[0]
    # The decay layer reads its clusters from extra; p/mask are placeholders of the right shapes.
    ev = Events(
        p=jnp.zeros((n, 1, 4)), weight=jnp.ones(n), mask=jnp.zeros((n, 1), bool), pid=jnp.zeros((n, 1), jnp.int32)
    )
    object.__setattr__(ev, "extra", {"clusters": gun})
    # (c) the reference model's smearing parameter
    res = check_layer_grads(
        _decay_layer(reference_angles(), base), {"smearing": jnp.float64(0.7)}, jax.random.key(1), ev, _observable
    )
    assert abs(res["['smearing'][0]"][0]) > 0
    # (a) network weights (float64 GAN generator), one random direction per weight array
    model = L.angle_model(L.default_config("gan", hidden=16, param_dtype="float64"))
    check_layer_grads(_decay_layer(model, base), model.init(None), jax.random.key(2), ev, _observable, max_elements=0)

    # (b) the incoming cluster momenta, through the reference decay
    def f(p_q):
        c = gun.__class__(p_q=p_q, p_qbar=gun.p_qbar, flav_q=gun.flav_q, flav_qbar=gun.flav_qbar, mask=gun.mask)
        p, pid, mask, _ = decay_clusters({**base, "decay": {"smearing": jnp.float64(0.7)}}, jax.random.key(3), c)
        return _observable(Events(p=p, weight=jnp.ones(p.shape[0]), mask=mask, pid=pid))

    check_grads(f, (gun.p_q,), order=1, modes=("rev",), eps=1e-6, atol=1e-6, rtol=1e-5)


# --------------------------------------------------------------------------- learned models and checkpoints


def test_flow_log_prob_is_normalised_and_matches_samples():
    cfg = L.default_config("flow", hidden=16, param_dtype="float64", seed=3)
    params = L.init_params(cfg)["flow"]
    cond = jnp.broadcast_to(jnp.asarray([0.5, 1.5, 0.3, -0.2, 0.5, 0.0, 0.6, 0.8]), (200 * 200, 8))
    c = jnp.linspace(-1, 1, 201)[:-1] + 0.005
    ph = (jnp.linspace(-1, 1, 201)[:-1] + 0.005) * jnp.pi
    cc, pp = jnp.meshgrid(c, ph, indexing="ij")
    dens = jnp.exp(L.flow_log_prob(cfg, params, cc.ravel(), pp.ravel(), cond))
    integral = float(jnp.sum(dens) * 0.01 * 0.01 * jnp.pi)
    assert integral == pytest.approx(1.0, abs=5e-3)


def test_checkpoint_roundtrip_fresh_process_and_architecture_check(tmp_path):
    cfg = L.default_config("gan", hidden=16)
    params = L.init_params(cfg, seed=4)
    path = tmp_path / "ck.npz"
    L.save_checkpoint(path, cfg, params, step=7)
    loaded = L.load_checkpoint(path, expected=cfg)
    assert loaded["step"] == 7
    cond = jnp.linspace(-1, 1, 64 * 8).reshape(64, 8)
    here = np.asarray(
        jax.jit(lambda p, k, c: L.generator_sample(cfg, p, k, c))(
            loaded["params"]["generator"], jax.random.key(9), cond
        )[0]
    )
    code = textwrap.dedent(f"""
        import jax, jax.numpy as jnp, numpy as np
        jax.config.update("jax_enable_x64", True)
        from diffgen.hadronization import learned as L
        ck = L.load_checkpoint({str(path)!r})
        cfg = ck["config"]
        cond = jnp.linspace(-1, 1, 64 * 8).reshape(64, 8)
        sample = jax.jit(lambda p, k, c: L.generator_sample(cfg, p, k, c))
        out = sample(ck["params"]["generator"], jax.random.key(9), cond)
        np.save({str(tmp_path / "fresh.npy")!r}, np.asarray(out[0]))
    """)
    subprocess.run([sys.executable, "-W", "ignore::DeprecationWarning", "-c", code], check=True, timeout=300)
    fresh = np.load(tmp_path / "fresh.npy")
    assert fresh.dtype == here.dtype and np.array_equal(fresh, here)
    with pytest.raises(ValueError, match="hidden = 16 in the checkpoint, 32 requested"):
        L.load_checkpoint(path, expected=L.default_config("gan", hidden=32))
    with pytest.raises(ValueError, match="model = 'gan' in the checkpoint, 'flow' requested"):
        L.load_checkpoint(path, expected=L.default_config("flow", hidden=16))
