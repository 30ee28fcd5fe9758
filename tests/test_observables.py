"""Event shapes on hand-computed 2-, 3- and 4-parton events and against slow references."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffgen import observables as obs
from diffgen.core import Events
from diffgen.testing import assert_finite_grads

CAP = 8
N_EV = 8  # every test uses batches of 8 events, so each observable compiles once


def make_events(momenta_list, dtype=jnp.float64):
    """Events from a list of [k, 3] three-momenta (massless), padded to CAP."""
    momenta_list = list(momenta_list)
    momenta_list += [momenta_list[-1]] * (-len(momenta_list) % N_EV)
    n = len(momenta_list)
    p = np.zeros((n, CAP, 4))
    mask = np.zeros((n, CAP), bool)
    for i, p3 in enumerate(momenta_list):
        p3 = np.asarray(p3, float)
        k = len(p3)
        p[i, :k, 1:] = p3
        p[i, :k, 0] = np.linalg.norm(p3, axis=1)
        mask[i, :k] = True
    pid = np.where(mask, 21, 0).astype(np.int32)
    return Events(p=jnp.asarray(p, dtype), weight=jnp.ones(n, dtype), mask=jnp.asarray(mask), pid=jnp.asarray(pid))


def three_parton(x1, x2, rng):
    """Massless 3-parton momenta with energy fractions x1, x2 at √s = 2, random orientation."""
    x3 = 2.0 - x1 - x2
    e = np.array([x1, x2, x3])
    c12 = 1.0 - 2.0 * (1.0 - x3) / (x1 * x2)
    p1 = x1 * np.array([0.0, 0.0, 1.0])
    p2 = x2 * np.array([math.sqrt(max(0.0, 1 - c12**2)), 0.0, c12])
    p3 = -p1 - p2
    assert abs(np.linalg.norm(p3) - e[2]) < 1e-12
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return np.stack([p1, p2, p3]) @ q.T


MERCEDES = [[1.0, 0.0, 0.0], [-0.5, math.sqrt(3) / 2, 0.0], [-0.5, -math.sqrt(3) / 2, 0.0]]
CROSS4 = [[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, -1.0]]
DIJET = [[0.3, -0.4, 1.2], [-0.3, 0.4, -1.2]]


def test_hand_computed_values():
    ev = make_events([DIJET, MERCEDES, CROSS4])
    t = np.asarray(obs.thrust(ev))[:3]
    np.testing.assert_allclose(t, [1.0, 2.0 / 3.0, 1.0 / math.sqrt(2.0)], rtol=1e-12)
    np.testing.assert_allclose(np.asarray(obs.c_parameter(ev))[:3], [0.0, 0.75, 0.75], atol=1e-12)
    np.testing.assert_allclose(np.asarray(obs.sphericity(ev))[:3], [0.0, 0.75, 0.75], atol=1e-12)
    np.testing.assert_allclose(np.asarray(obs.heavy_jet_mass(ev))[:3], [0.0, 1.0 / 3.0, 1.0 / 8.0], atol=1e-12)
    bt, bw = (np.asarray(b)[:3] for b in obs.jet_broadening(ev))
    np.testing.assert_allclose(bt, [0.0, math.sqrt(3) / 6, math.sqrt(2) / 4], atol=1e-12)
    np.testing.assert_allclose(bw, [0.0, math.sqrt(3) / 6, math.sqrt(2) / 8], atol=1e-12)
    np.testing.assert_allclose(np.asarray(obs.durham_y23(ev))[:3], [0.0, 1.0 / 3.0, 1.0 / 8.0], atol=1e-12)
    np.testing.assert_array_equal(np.asarray(obs.multiplicity(ev))[:3], [2, 3, 4])
    axis = np.asarray(obs.thrust_axis(ev))
    np.testing.assert_allclose(np.abs(axis[0]), np.abs(DIJET[0]) / np.linalg.norm(DIJET[0]), rtol=1e-12)


def test_three_parton_formulas():
    """T = max x_i, ρ_H = 1 − T, C = 6(1−x1)(1−x2)(1−x3)/(x1 x2 x3) for massless 3-parton events."""
    rng = np.random.default_rng(1)
    xs = []
    while len(xs) < N_EV:
        x1, x2 = rng.uniform(0.3, 1.0, 2)
        if 2 - x1 - x2 < 1.0 and 2 - x1 - x2 > 0.05:
            xs.append((x1, x2))
    ev = make_events([three_parton(x1, x2, rng) for x1, x2 in xs])
    x = np.array([[x1, x2, 2 - x1 - x2] for x1, x2 in xs])
    t_exp = x.max(1)
    np.testing.assert_allclose(np.asarray(obs.thrust(ev)), t_exp, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(obs.heavy_jet_mass(ev)), 1.0 - t_exp, atol=1e-10)
    c_exp = 6 * np.prod(1 - x, axis=1) / np.prod(x, axis=1)
    np.testing.assert_allclose(np.asarray(obs.c_parameter(ev)), c_exp, rtol=1e-10)


# ----------------------------------------------------------------------------- slow references


def ref_thrust(p3):
    best, axis = 0.0, None
    for signs in itertools.product((1.0, -1.0), repeat=len(p3)):
        v = np.sum(np.asarray(signs)[:, None] * p3, axis=0)
        if np.linalg.norm(v) > best:
            best, axis = np.linalg.norm(v), v
    return best / np.sum(np.linalg.norm(p3, axis=1)), axis / np.linalg.norm(axis)


def ref_shapes(p3):
    t, n = ref_thrust(p3)
    e = np.linalg.norm(p3, axis=1)
    up = p3 @ n >= 0
    p4 = np.concatenate([e[:, None], p3], axis=1)

    def m2(v):
        return v[0] ** 2 - v[1:] @ v[1:]

    rho = max(m2(p4[up].sum(0)), m2(p4[~up].sum(0))) / e.sum() ** 2
    kt = np.linalg.norm(np.cross(p3, n), axis=1)
    b1, b2 = kt[up].sum() / (2 * e.sum()), kt[~up].sum() / (2 * e.sum())
    theta = sum(np.outer(p, p) / np.linalg.norm(p) for p in p3) / e.sum()
    lam = np.linalg.eigvalsh(theta)
    c = 3 * (lam[0] * lam[1] + lam[1] * lam[2] + lam[2] * lam[0])
    s_t = sum(np.outer(p, p) for p in p3) / np.sum(e**2)
    sph = 1.5 * (1 - np.linalg.eigvalsh(s_t)[-1])
    # Durham, E-scheme, y23 = largest merged y on the way to two jets
    jets = [v.copy() for v in p4]
    ymax = 0.0
    while len(jets) > 2:
        best = None
        for i, j in itertools.combinations(range(len(jets)), 2):
            a, b = jets[i], jets[j]
            cos = a[1:] @ b[1:] / (np.linalg.norm(a[1:]) * np.linalg.norm(b[1:]))
            y = 2 * min(a[0] ** 2, b[0] ** 2) * (1 - cos) / e.sum() ** 2
            if best is None or y < best[0]:
                best = (y, i, j)
        y, i, j = best
        ymax = max(ymax, y)
        jets[i] = jets[i] + jets[j]
        del jets[j]
    return t, rho, b1 + b2, max(b1, b2), c, sph, ymax


def test_against_slow_reference():
    rng = np.random.default_rng(7)
    events = [rng.normal(size=(k, 3)) * rng.uniform(0.5, 10.0, size=(k, 1)) for k in (4, 5, 6, 7, 8, 5, 6, 7)]
    ev = make_events(events)
    got = np.stack(
        [
            np.asarray(obs.thrust(ev)),
            np.asarray(obs.heavy_jet_mass(ev)),
            np.asarray(obs.total_broadening(ev)),
            np.asarray(obs.wide_broadening(ev)),
            np.asarray(obs.c_parameter(ev)),
            np.asarray(obs.sphericity(ev)),
            np.asarray(obs.durham_y23(ev)),
        ],
        axis=1,
    )
    ref = np.array([ref_shapes(p3) for p3 in events])
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12)


def test_float32_and_gradients_with_padding():
    ev = make_events([MERCEDES, CROSS4, [[0.2, 0.9, -0.3], [0.5, -0.1, 0.4], [-0.7, -0.8, -0.1]]])
    ev32 = Events.from_numpy(ev.to_numpy(), dtype=jnp.float32)
    assert obs.thrust(ev32).dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(obs.thrust(ev32)), np.asarray(obs.thrust(ev)), rtol=1e-5)
    fns = (obs.thrust, obs.c_parameter, obs.heavy_jet_mass, obs.total_broadening, obs.durham_y23, obs.sphericity)

    def total(p):
        e = ev.replace(p=p)
        return sum(jnp.sum(fn(e)) for fn in fns)

    assert_finite_grads(total, ev.p)


def test_thrust_gradient_matches_finite_difference():
    rng = np.random.default_rng(3)
    ev = make_events([rng.normal(size=(5, 3)) for _ in range(N_EV)])

    def f(p):
        return obs.thrust(ev.replace(p=p))[0]

    g = np.asarray(jax.grad(f)(ev.p))
    d = np.zeros(ev.p.shape)
    d[0, 1, 2] = 1.0
    h = 1e-6
    fd = (float(f(ev.p + h * d)) - float(f(ev.p - h * d))) / (2 * h)
    np.testing.assert_allclose(g[0, 1, 2], fd, rtol=1e-6)


def test_bad_input():
    with pytest.raises(TypeError, match="expected Events"):
        obs.thrust(np.zeros((1, 2, 4)))
    ev = make_events([DIJET])
    with pytest.raises(ValueError, match="njets must be an integer >= 1"):
        obs.durham_ymerge(ev, 0)
