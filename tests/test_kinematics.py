"""diffgen.kinematics against scikit-hep vector, property tests, and gradient safety."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import vector
from hypothesis import given
from hypothesis import strategies as st
from jax.test_util import check_grads

from diffgen import kinematics as kin
from diffgen.testing import assert_finite_grads

N_RANDOM = 12_000


def random_momenta(rng, n):
    """Massive, massless, spacelike, backward, zero-pT and boundary four-momenta, [n, 4]."""
    kind = rng.integers(0, 5, size=n)
    p3 = rng.normal(scale=rng.choice([0.1, 10.0, 1000.0], size=(n, 1)), size=(n, 3))
    p3[kind == 3, 2] = -np.abs(p3[kind == 3, 2]) * 5.0  # backward, near the beam
    p3[kind == 4, :2] = 0.0  # zero pT
    pabs = np.linalg.norm(p3, axis=1)
    m = np.abs(rng.normal(scale=50.0, size=n))
    e = np.sqrt(pabs**2 + m**2)
    e[kind == 1] = pabs[kind == 1]  # massless
    e[kind == 2] = pabs[kind == 2] * rng.uniform(0.1, 0.99, size=int(np.sum(kind == 2)))  # spacelike
    return np.concatenate([e[:, None], p3], axis=1)


@pytest.fixture(scope="module")
def momenta():
    rng = np.random.default_rng(1)
    return random_momenta(rng, N_RANDOM)


def as_vector(p):
    return vector.array({"E": p[:, 0], "px": p[:, 1], "py": p[:, 2], "pz": p[:, 3]})


QUADRATIC = {"mass2", "mt2", "p2", "pt2"}

ORACLE = {
    "mass2": lambda v: v.mass2,
    "mass": lambda v: v.mass,
    "pt": lambda v: v.pt,
    "pt2": lambda v: v.pt2,
    "p_abs": lambda v: v.mag,
    "p2": lambda v: v.mag2,
    "eta": lambda v: v.eta,
    "rapidity": lambda v: v.rapidity,
    "phi": lambda v: v.phi,
    "theta": lambda v: v.theta,
    "cos_theta": lambda v: v.costheta,
    "et": lambda v: v.Et,
    "mt": lambda v: v.Mt,
    "mt2": lambda v: v.Mt2,
}


@pytest.mark.parametrize("name", sorted(ORACLE))
def test_single_vector_functions_match_vector(momenta, name):
    with np.errstate(all="ignore"):
        expected = np.asarray(ORACLE[name](as_vector(momenta)), dtype=float)
    got = np.asarray(getattr(kin, name)(jnp.asarray(momenta)))
    defined = np.isfinite(expected)
    assert np.all(np.isfinite(got) | ~defined), f"{name}: non-finite where vector is finite"
    # vector is undefined (NaN) where we document a convention (e.g. E_T at |p| = 0); infinities must agree.
    assert defined.mean() > 0.6
    energy = momenta[:, 0]
    if name in QUADRATIC:
        # E² − |p|² cancels: both implementations carry rounding errors of order ε·E².
        atol = 1e-12 * energy**2
    elif name in ("mass", "mt"):
        # sqrt near zero amplifies that cancellation, so compare the signed square m·|m|.
        got, expected, atol = got * np.abs(got), expected * np.abs(expected), 1e-12 * energy**2
    else:
        atol = 1e-12 * np.maximum(energy, 1.0)
    g, e, a = got[defined], expected[defined], np.broadcast_to(atol, got.shape)[defined]
    bad = np.abs(g - e) > 1e-12 * np.abs(e) + a
    assert not bad.any(), f"{name}: {bad.sum()} mismatches, e.g. {g[bad][:3]} vs {e[bad][:3]}"
    inf = np.isinf(expected)
    np.testing.assert_array_equal(got[inf], expected[inf])


def test_pair_functions_match_vector(momenta):
    a, b = momenta[: N_RANDOM // 2], momenta[N_RANDOM // 2 :]
    va, vb = as_vector(a), as_vector(b)
    ok = (np.hypot(a[:, 1], a[:, 2]) > 0) & (np.hypot(b[:, 1], b[:, 2]) > 0)
    with np.errstate(all="ignore"):
        dphi, deta, dr = va.deltaphi(vb), va.deltaeta(vb), va.deltaR(vb)
        dot = va.dot(vb)
    np.testing.assert_allclose(kin.delta_phi(a, b)[ok], dphi[ok], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(kin.delta_eta(a, b)[ok], deta[ok], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(kin.delta_r(a, b)[ok], dr[ok], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(kin.minkowski_dot(a, b), dot, rtol=1e-12, atol=1e-12 * np.abs(momenta).max() ** 2)


def test_boost_matches_vector(momenta):
    rng = np.random.default_rng(2)
    beta = rng.normal(size=(N_RANDOM, 3))
    beta *= rng.uniform(0, 0.999, size=(N_RANDOM, 1)) / np.linalg.norm(beta, axis=1, keepdims=True)
    v = as_vector(momenta).boost_beta3(vector.array({"x": beta[:, 0], "y": beta[:, 1], "z": beta[:, 2]}))
    expected = np.stack([v.E, v.px, v.py, v.pz], axis=1)
    got = np.asarray(kin.boost(momenta, beta))
    scale = np.abs(expected).max(axis=1, keepdims=True)
    np.testing.assert_allclose(got / scale, expected / scale, rtol=0, atol=1e-12)


def test_from_constructors_match_vector():
    rng = np.random.default_rng(3)
    n = N_RANDOM
    pt_, eta_, phi_, m_ = (
        rng.uniform(0, 100, n),
        rng.normal(0, 3, n),
        rng.uniform(-np.pi, np.pi, n),
        rng.uniform(0, 50, n),
    )
    v = vector.array({"pt": pt_, "eta": eta_, "phi": phi_, "mass": m_})
    got = np.asarray(kin.from_pt_eta_phi_m(pt_, eta_, phi_, m_))
    expected = np.stack([v.E, v.px, v.py, v.pz], axis=1)
    scale = np.abs(expected).max(axis=1, keepdims=True)
    np.testing.assert_allclose(got / scale, expected / scale, rtol=0, atol=1e-12)
    p3 = rng.normal(scale=20, size=(n, 3))
    got = np.asarray(kin.from_p3_m(p3, m_))
    v = vector.array({"px": p3[:, 0], "py": p3[:, 1], "pz": p3[:, 2], "mass": m_})
    np.testing.assert_allclose(got[:, 0], v.E, rtol=1e-12)
    np.testing.assert_array_equal(got[:, 1:], p3)


def test_two_body_momentum_closed_forms():
    # Massless daughters: p* = M/2; one massless: p* = (M² − m²)/(2M).
    assert float(kin.two_body_momentum(91.0, 0.0, 0.0)) == pytest.approx(45.5, rel=1e-15)
    assert float(kin.two_body_momentum(10.0, 4.0, 0.0)) == pytest.approx((100 - 16) / 20, rel=1e-14)
    # Below threshold is 0, not NaN.
    assert float(kin.two_body_momentum(1.0, 0.6, 0.6)) == 0.0
    assert float(kin.lambda_kallen(1.0, 2.0, 3.0)) == 1 + 4 + 9 - 2 * (2 + 3 + 6)


# --------------------------------------------------------------------------- properties

finite = st.floats(-500, 500, allow_nan=False)
p3_strategy = st.tuples(finite, finite, finite)
beta_strategy = st.tuples(st.floats(-0.57, 0.57), st.floats(-0.57, 0.57), st.floats(-0.57, 0.57))


def four_vector(p3, m):
    p3 = np.asarray(p3, dtype=float)
    return np.concatenate([[np.sqrt(p3 @ p3 + m * m)], p3])


@given(p3=p3_strategy, m=st.floats(0, 100), beta=beta_strategy)
def test_boost_round_trip_and_mass_invariance(p3, m, beta):
    p = four_vector(p3, m)
    beta = np.asarray(beta)
    there = kin.boost(p, beta)
    back = np.asarray(kin.boost(there, -beta))
    scale = max(p[0], 1.0)
    np.testing.assert_allclose(back / scale, p / scale, atol=1e-12)
    np.testing.assert_allclose(float(kin.mass2(there)) / scale**2, float(kin.mass2(p)) / scale**2, atol=1e-12)


@given(p3=p3_strategy, m=st.floats(0.1, 100), q3=p3_strategy, mq=st.floats(0, 100))
def test_boost_to_rest_frame(p3, m, q3, mq):
    ref = four_vector(p3, m)
    at_rest = np.asarray(kin.boost_to_rest_frame(ref, ref))
    scale = ref[0]
    np.testing.assert_allclose(at_rest[1:] / scale, 0.0, atol=1e-10)
    np.testing.assert_allclose(at_rest[0], m, rtol=1e-8, atol=1e-10 * scale)
    q = four_vector(q3, mq)
    round_trip = np.asarray(kin.boost_from_rest_frame(kin.boost_to_rest_frame(q, ref), ref))
    qscale = max(q[0], 1.0) * (scale / m) ** 2
    np.testing.assert_allclose(round_trip / qscale, q / qscale, atol=1e-10)


def test_rest_frame_boosts_of_fast_particles_keep_four_momentum_in_float32():
    """A rest-frame pair adding up to (m, 0, 0, 0) is boosted to a total equal to ``ref`` in float32.

    The refs are π⁰-like (m ≈ 0.135 GeV) at up to 45 GeV, γ ≈ 330; m is the float32 mass of
    ``ref`` (:func:`kinematics.mass`, as in a two-body decay). γ = E/m keeps the sum to a few
    roundings of E, where 1/√(1 − β²) was off by a few per mille.
    """
    rng = np.random.default_rng(3)
    m, e = 0.135, np.array([1.0, 5.0, 20.0, 45.0])
    n = rng.normal(size=(4, 3))
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    ref = np.concatenate([e[:, None], np.sqrt(e**2 - m**2)[:, None] * n], axis=1).astype(np.float32)
    m_f32 = np.asarray(kin.mass(jnp.asarray(ref)))
    half = 0.5 * m_f32[:, None]  # photon pair: |k| = E = m/2
    k = rng.normal(size=(4, 3)).astype(np.float32)
    k = half * k / np.linalg.norm(k, axis=1, keepdims=True)
    pair = np.stack([np.concatenate([half, s * k], axis=1) for s in (1, -1)]).astype(np.float32)
    total = np.asarray(kin.boost_from_rest_frame(jnp.asarray(pair), jnp.asarray(ref)[None]), np.float64).sum(axis=0)
    eps = float(np.finfo(np.float32).eps)
    assert np.max(np.abs(total - ref) / e[:, None]) < 8 * eps
    # A zero reference (padding) is the identity, not NaN.
    zero = jnp.zeros((4, 4), jnp.float32)
    np.testing.assert_array_equal(np.asarray(kin.boost_from_rest_frame(jnp.asarray(pair[0]), zero)), pair[0])


@given(p3=p3_strategy, m=st.floats(0, 100), axis=p3_strategy)
def test_rotation_invariance_and_alignment(p3, m, axis):
    axis = np.asarray(axis)
    if np.linalg.norm(axis) < 1e-3:
        axis = np.array([0.0, 0.0, -1.0])  # exercise the anti-parallel branch instead
    p = four_vector(p3, m)
    rotated = np.asarray(kin.rotate_to_z(p, axis))
    scale = max(p[0], 1.0)
    assert float(kin.mass2(rotated)) / scale**2 == pytest.approx(float(kin.mass2(p)) / scale**2, abs=1e-12)
    aligned = np.asarray(kin.rotate_to_z(np.concatenate([[1.0], axis]), axis))
    np.testing.assert_allclose(aligned[1:3] / np.linalg.norm(axis), 0.0, atol=1e-12)
    assert aligned[3] == pytest.approx(np.linalg.norm(axis), rel=1e-12)
    back = np.asarray(kin.rotate_from_z(rotated, axis))
    np.testing.assert_allclose(back / scale, p / scale, atol=1e-12)


# --------------------------------------------------------------------------- gradients

SCALAR_FUNCTIONS = [
    "mass2",
    "mass",
    "p_abs",
    "p2",
    "pt",
    "pt2",
    "eta",
    "rapidity",
    "phi",
    "theta",
    "cos_theta",
    "et",
    "mt",
    "mt2",
]
SPECIAL_POINTS = {
    "massless": np.array([5.0, 3.0, 0.0, 4.0]),
    "zero_pt": np.array([5.0, 0.0, 0.0, 3.0]),
    "massless_along_z": np.array([3.0, 0.0, 0.0, 3.0]),
    "all_zero": np.zeros(4),
}


@pytest.mark.parametrize("point", sorted(SPECIAL_POINTS))
@pytest.mark.parametrize("name", SCALAR_FUNCTIONS)
def test_gradients_finite_at_special_points(name, point):
    fn = getattr(kin, name)
    assert_finite_grads(lambda p: fn(p), jnp.asarray(SPECIAL_POINTS[point]))


@pytest.mark.parametrize("point", sorted(SPECIAL_POINTS))
def test_pair_and_map_gradients_finite_at_special_points(point):
    p = jnp.asarray(SPECIAL_POINTS[point])
    q = jnp.asarray([7.0, 1.0, -2.0, 0.5])
    assert_finite_grads(lambda a, b: kin.delta_phi(a, b), p, q)
    assert_finite_grads(lambda a, b: kin.minkowski_dot(a, b), p, q)
    assert_finite_grads(lambda a: jnp.sum(kin.boost(a, jnp.zeros(3))), p)
    assert_finite_grads(lambda b: jnp.sum(kin.boost(q, b)), jnp.zeros(3))
    assert_finite_grads(lambda a: jnp.sum(kin.rotate_to_z(q, a[1:])), p)
    assert_finite_grads(lambda a: jnp.sum(kin.from_p3_m(a[1:], 0.0)), p)
    assert_finite_grads(lambda a: kin.two_body_momentum(a[0], a[1], a[2]), p)
    assert_finite_grads(lambda a: jnp.sum(kin.from_pt_eta_phi_m(a[1], a[2], a[3], a[0])), p)


GENERIC = jnp.asarray([13.0, 3.0, -2.0, 4.0])
GENERIC2 = jnp.asarray([9.0, -1.0, 2.5, -3.0])


@pytest.mark.parametrize("name", SCALAR_FUNCTIONS)
def test_check_grads_generic_point(name):
    # jitted: each derivative order compiles once instead of every primitive op by op
    check_grads(jax.jit(getattr(kin, name)), (GENERIC,), order=2, modes=("fwd", "rev"))


@pytest.mark.parametrize(
    "fn",
    [
        kin.delta_phi,
        kin.delta_eta,
        kin.delta_r,
        kin.minkowski_dot,
        lambda a, b: kin.boost(a, b[1:] / 20.0),
        kin.boost_to_rest_frame,
        kin.boost_from_rest_frame,
        lambda a, b: kin.rotate_to_z(a, b[1:]),
        lambda a, b: kin.rotate_from_z(a, b[1:]),
        lambda a, b: kin.from_pt_eta_phi_m(a[0], a[1], a[2], b[0]),
        lambda a, b: kin.from_p3_m(a[1:], b[0]),
        lambda a, b: kin.two_body_momentum(a[0], b[1] + 5, b[2] + 3),
        lambda a, b: kin.lambda_kallen(a[0], b[0], a[1]),
    ],
)
def test_check_grads_generic_point_two_arguments(fn):
    check_grads(jax.jit(fn), (GENERIC, GENERIC2), order=2, modes=("fwd", "rev"))


def test_functions_broadcast_over_leading_axes():
    p = jax.ShapeDtypeStruct((2, 3, 4, 4), jnp.float64)
    for name in SCALAR_FUNCTIONS:
        assert jax.eval_shape(getattr(kin, name), p).shape == (2, 3, 4)
    beta = jax.ShapeDtypeStruct((2, 3, 4, 3), jnp.float64)
    assert jax.eval_shape(kin.boost, p, beta).shape == (2, 3, 4, 4)
    assert jax.eval_shape(kin.rotation_to_z, beta).shape == (2, 3, 4, 3, 3)
    assert jax.eval_shape(kin.delta_r, p, p).shape == (2, 3, 4)


def test_jit_and_vmap_agree():
    p = jnp.asarray(random_momenta(np.random.default_rng(5), 64))
    for name in SCALAR_FUNCTIONS:
        fn = getattr(kin, name)
        # Fusion may reorder floating-point operations: agree to rounding of the E² scale.
        np.testing.assert_allclose(jax.jit(fn)(p), jax.vmap(fn)(p), rtol=1e-13, atol=1e-13 * float(p[:, 0].max()) ** 2)
