"""Phase-space generators: volumes, Jacobians, conservation laws, gradients."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

from diffgen import kinematics as kin
from diffgen.core import Events
from diffgen.phasespace import (
    breit_wigner,
    breit_wigner_fraction,
    cos_sin_2pi,
    cos_theta_map,
    maps,
    rambo,
    resonant_decay,
    two_body_decay,
    two_to_two,
)
from diffgen.testing import assert_compatible, assert_momentum_conserved, assert_on_shell

N_BIG = 1_000_000


def _analytic_massless_volume(n, s):
    """Φ_n = (2π)^(4−3n) (π/2)^(n−1) s^(n−2) / ((n−1)!(n−2)!), written out independently."""
    return (
        (2 * math.pi) ** (4 - 3 * n)
        * (math.pi / 2) ** (n - 1)
        * s ** (n - 2)
        / (math.factorial(n - 1) * math.factorial(n - 2))
    )


def _phi2(s, m1, m2):
    """Two-body volume λ^½(s, m1², m2²)/(8π s)."""
    lam = (s - (m1 + m2) ** 2) * (s - (m1 - m2) ** 2)
    return math.sqrt(max(lam, 0.0)) / (8 * math.pi * s)


def _phi3(rs, m1, m2, m3):
    """Three-body volume by the recursion ∫ ds/(2π) Φ₂(s_tot; m1, √s) Φ₂(s; m2, m3) (scipy quad)."""
    s_tot = rs * rs

    def integrand(s):
        return _phi2(s_tot, m1, math.sqrt(s)) * _phi2(s, m2, m3) / (2 * math.pi)

    val, _ = integrate.quad(integrand, (m2 + m3) ** 2, (rs - m1) ** 2, epsabs=0, epsrel=1e-11, limit=200)
    return val


def _uniform(key, shape):
    return jax.random.uniform(key, shape, jnp.float64)


def _events(p):
    n, k = p.shape[:2]
    return Events(p=p, weight=jnp.ones(n, p.dtype), mask=jnp.ones((n, k), bool), pid=jnp.ones((n, k), jnp.int32))


rambo_jit = jax.jit(rambo, static_argnames=("newton_steps",))


def _mean_and_error(x):
    """Sample mean and its standard error (inside jit)."""
    return jnp.mean(x), jnp.std(x) / math.sqrt(x.shape[0])


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6])
def test_rambo_massless_volume_and_energy_spectrum(n, key):
    rs = 91.0
    n_points = 200_000

    @jax.jit
    def run(k):
        p, log_w = rambo(_uniform(k, (n_points, 4 * n)), rs)
        w = jnp.exp(log_w)
        x = 2.0 * p[:, 0, 0] / rs
        c = kin.cos_theta(p[:, -1])
        return jnp.mean(w), jnp.max(w) - jnp.min(w), _mean_and_error(x * x), _mean_and_error(c * c), x

    w_mean, w_spread, x2, c2, x = run(key)
    expected = _analytic_massless_volume(n, rs**2)
    # massless RAMBO has a constant weight: the MC error is zero, the estimate exact
    np.testing.assert_allclose(float(w_mean), expected, rtol=1e-12)
    assert float(w_spread) <= 1e-12 * expected
    if n == 2:
        # back-to-back massless pair: x = 1 up to the rounding of the conformal map
        np.testing.assert_allclose(np.asarray(x), 1.0, rtol=1e-9)
    else:
        # x = 2E/√s of one particle follows Beta(2, n − 2): E[x²] = 6/(n(n+1))
        assert_compatible(x2[0], 6.0 / (n * (n + 1)), x2[1], what=f"<x²> n={n}")
    assert_compatible(c2[0], 1.0 / 3.0, c2[1], what="<cos²θ> (isotropy)")


def _volume_stats(log_w):
    w = jnp.exp(log_w)
    return jnp.mean(w), jnp.std(w) / math.sqrt(w.shape[0])


@pytest.mark.parametrize("masses", [(10.0, 30.0), (0.0, 45.0), (40.0, 40.0)])
def test_massive_two_body_volume(masses, key):
    rs = 91.0
    expected = _phi2(rs**2, *masses)

    @jax.jit
    def run(k):
        u = _uniform(k, (N_BIG, 8))
        out = [_volume_stats(rambo(u, rs, jnp.asarray(masses))[1])]
        for sampling in ("flat", "born"):
            out.append(_volume_stats(two_to_two(u[:, :2], rs, masses[0], masses[1], sampling=sampling)[1]))
        return out

    for what, (mean, err) in zip(("RAMBO", "two_to_two flat", "two_to_two born"), run(key), strict=True):
        # constant weights (RAMBO, flat) have zero MC error: allow the rounding of a mean of 10⁶ numbers
        assert_compatible(mean, expected, max(float(err), 1e-12 * expected), what=f"{what} Φ₂")


def test_massive_three_body_volume_rambo_and_decay_chain(key):
    rs, m = 100.0, (5.0, 20.0, 30.0)
    expected = _phi3(rs, *m)
    parent = jnp.array([rs, 0.0, 0.0, 0.0])

    @jax.jit
    def run(k):
        k1, k2 = jax.random.split(k)
        ram = _volume_stats(rambo(_uniform(k1, (N_BIG, 12)), rs, jnp.asarray(m))[1])
        chain = _volume_stats(resonant_decay(_uniform(k2, (N_BIG, 5)), parent, m[0], 60.0, 5.0, m[1], m[2])[1])
        return ram, chain

    (r_mean, r_err), (c_mean, c_err) = run(key)
    assert float(r_err) > 1e-4 * expected  # massive weights vary: a genuine Monte Carlo test
    assert_compatible(r_mean, expected, r_err, what="RAMBO massive Φ₃")
    assert_compatible(c_mean, expected, c_err, what="decay-chain Φ₃")


def test_rambo_conservation_and_on_shell_n10(key):
    rs = 500.0
    masses = jnp.asarray([0.0, 0.1, 1.0, 5.0, 10.0, 20.0, 30.0, 40.0, 80.0, 91.0])
    u = _uniform(key, (20_000, 40))
    for m in (None, masses):
        p, log_w = rambo_jit(u, rs, m)
        assert np.all(np.isfinite(np.asarray(log_w)))
        ev = _events(p)
        assert_momentum_conserved(ev, jnp.array([rs, 0.0, 0.0, 0.0]), rtol=1e-10)
        expected = np.zeros(10) if m is None else np.asarray(masses)
        assert_on_shell(ev, lambda pid, e=expected: np.broadcast_to(e, pid.shape), rtol=1e-10)


def test_decays_conserve_momentum_and_are_on_shell(key):
    @jax.jit
    def run(k):
        k1, k2, k3 = jax.random.split(k, 3)
        n = 10_000
        p2, _ = two_to_two(_uniform(k1, (n, 2)), 500.0, 172.5, 175.0, sampling="born")
        b, w, _ = two_body_decay(_uniform(k2, (n, 2)), p2[:, 0], 4.78, 80.4)
        chain, _ = resonant_decay(_uniform(k3, (n, 5)), p2[:, 1], 4.78, 80.4, 2.1, 0.0, 0.0)
        return jnp.stack([b, w, chain[:, 0], chain[:, 1], chain[:, 2]], axis=1), kin.mass(p2[:, 1])

    p, m_tbar = run(key)
    ev = _events(p)
    assert_momentum_conserved(ev, jnp.array([500.0, 0.0, 0.0, 0.0]), rtol=1e-10)
    masses = np.array([4.78, 80.4, 4.78, 0.0, 0.0])
    assert_on_shell(ev, lambda pid: np.broadcast_to(masses, pid.shape), rtol=1e-10)
    # the W of the chain has the Breit–Wigner-mapped mass, inside its kinematic range
    m_w = np.asarray(kin.mass(p[:, 3] + p[:, 4]))
    assert np.all((m_w > 0) & (m_w < np.asarray(m_tbar) - 4.78))


# ----------------------------------------------------------------- log-weight = slogdet(jacfwd(map))


def _angles(p):
    """(cos θ, φ) of a momentum, φ in (−π, π]."""
    return jnp.stack([kin.cos_theta(p), kin.phi(p)])


def _check_logdet(coords, log_weight_minus_density, points):
    """log-weight minus the phase-space density equals log|det ∂coords/∂u| at every point."""

    @jax.jit
    def run(u):
        sign, logdet = jax.vmap(lambda x: jnp.linalg.slogdet(jax.jacfwd(coords)(x)))(u)
        return sign, logdet, jax.vmap(log_weight_minus_density)(u)

    sign, logdet, lw = run(points)
    assert np.all(np.asarray(sign) != 0)
    np.testing.assert_allclose(np.asarray(lw), np.asarray(logdet), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("sampling", ["flat", "born"])
def test_cos_theta_map_logdet(sampling, key):
    u = _uniform(key, (16,))

    @jax.jit
    def run(u):
        c, log_jac = cos_theta_map(u, sampling)
        dc = jax.vmap(jax.grad(lambda x: cos_theta_map(x, sampling)[0]))(u)
        ends, _ = cos_theta_map(jnp.array([0.0, 0.5, 1.0]), sampling)
        return c, log_jac, dc, ends

    c, log_jac, dc, ends = run(u)
    np.testing.assert_allclose(np.asarray(log_jac), np.log(np.abs(np.asarray(dc))), rtol=1e-12)
    assert np.all(np.abs(np.asarray(c)) <= 1.0)
    # the inverse CDF maps the ends and the middle of [0, 1] to −1, 0, 1
    np.testing.assert_allclose(np.asarray(ends), [-1.0, 0.0, 1.0], atol=1e-14)


def test_born_cos_theta_inverts_the_cdf():
    # F(c) = (c³/3 + c + 4/3)·3/8 evaluated in extended precision: the solver must reach rounding level
    u = np.concatenate([np.linspace(0.0, 1.0, 20001), np.random.default_rng(3).random(20000)])
    for dtype, tol in ((np.float64, 4e-16), (np.float32, 3e-7)):
        c, _ = jax.jit(lambda x: cos_theta_map(x, "born"))(jnp.asarray(u, dtype))
        cl = np.asarray(c).astype(np.longdouble)
        residual = (cl**3 / 3 + cl + np.longdouble(4) / 3) * 3 / 8 - u.astype(dtype).astype(np.longdouble)
        assert float(np.max(np.abs(residual))) < tol, dtype


def test_cos_sin_2pi_matches_extended_precision():
    u = np.concatenate([np.linspace(-1.0, 2.0, 24001), np.random.default_rng(4).random(20000)])
    for dtype, tol in ((np.float64, 6e-16), (np.float32, 2e-7)):
        ud = u.astype(dtype)
        c, s = jax.jit(cos_sin_2pi)(jnp.asarray(ud))
        phi = 2 * np.pi * ud.astype(np.longdouble)
        assert float(np.max(np.abs(np.asarray(c) - np.cos(phi)))) < tol, dtype
        assert float(np.max(np.abs(np.asarray(s) - np.sin(phi)))) < tol, dtype
        assert np.asarray(c).dtype == dtype
    # differentiable like the libm functions: d/du (cos, sin) = 2π (−sin, cos)
    g = jax.vmap(jax.jacfwd(lambda x: jnp.stack(cos_sin_2pi(x))))(jnp.asarray(u[:50]))
    phi = 2 * np.pi * u[:50]
    np.testing.assert_allclose(np.asarray(g), 2 * np.pi * np.stack([-np.sin(phi), np.cos(phi)], 1), atol=1e-13)


def test_octant_values_are_those_of_the_tables():
    # cos_sin_2pi selects the octant's cos and sin instead of reading the tables: the same
    # values, signed zeros included, for every octant and both dtypes
    octant = jnp.arange(8, dtype=jnp.int32)
    for dtype in (jnp.float64, jnp.float32):
        c, s = jax.jit(lambda k, dtype=dtype: maps._octant_cos_sin(k, dtype))(octant)
        for got, table in ((c, maps._OCTANT_COS), (s, maps._OCTANT_SIN)):
            want = np.asarray(table, dtype)
            assert got.dtype == dtype
            np.testing.assert_array_equal(np.asarray(got), want)
            np.testing.assert_array_equal(np.signbit(np.asarray(got)), np.signbit(want))


def test_breit_wigner_logdet_and_fraction(key):
    u = _uniform(key, (16,))
    mass, width, s_lo, s_hi = 80.4, 2.1, 10.0, 160.0**2

    @jax.jit
    def run(u):
        s, log_jac = breit_wigner(u, mass, width, s_lo, s_hi)
        ds = jax.vmap(jax.grad(lambda x: breit_wigner(x, mass, width, s_lo, s_hi)[0]))(u)
        return s, log_jac, ds, breit_wigner_fraction(mass, width, s_lo, s_hi)

    s, log_jac, ds, frac = (np.asarray(x) for x in run(u))
    np.testing.assert_allclose(log_jac, np.log(ds), rtol=1e-12)
    rho = (1 / math.pi) * mass * width / ((s - mass**2) ** 2 + (mass * width) ** 2)
    np.testing.assert_allclose(rho * ds, frac, rtol=1e-10)
    assert np.all((s > s_lo) & (s < s_hi))


@pytest.mark.parametrize("sampling", ["flat", "born"])
def test_two_to_two_logdet(sampling, key):
    rs, m1, m2 = 200.0, 30.0, 91.0
    pstar = math.sqrt((rs**2 - (m1 + m2) ** 2) * (rs**2 - (m1 - m2) ** 2)) / (2 * rs)
    log_density = math.log(pstar / (16 * math.pi**2 * rs))
    _check_logdet(
        lambda u: _angles(two_to_two(u, rs, m1, m2, sampling=sampling)[0][0]),
        lambda u: two_to_two(u, rs, m1, m2, sampling=sampling)[1] - log_density,
        _uniform(key, (8, 2)) * 0.9 + 0.05,
    )


def test_two_body_decay_logdet(key):
    parent = jnp.array([300.0, 40.0, -70.0, 120.0])
    big_m = float(kin.mass(parent))
    m1, m2 = 4.78, 80.4
    pstar = float(kin.two_body_momentum(big_m, m1, m2))
    log_density = math.log(pstar / (16 * math.pi**2 * big_m))

    def coords(u):
        p1, _, _ = two_body_decay(u, parent, m1, m2)
        return _angles(kin.boost_to_rest_frame(p1, parent))

    _check_logdet(
        coords, lambda u: two_body_decay(u, parent, m1, m2)[2] - log_density, _uniform(key, (8, 2)) * 0.9 + 0.05
    )


def test_resonant_decay_logdet(key):
    parent = jnp.array([250.0, 10.0, 20.0, -100.0])
    m1, mass, width, m2, m3 = 4.78, 80.4, 2.1, 0.5, 1.5
    big_m = kin.mass(parent)

    def coords(u):
        p, _ = resonant_decay(u, parent, m1, mass, width, m2, m3)
        r = p[1] + p[2]
        return jnp.concatenate(
            [
                kin.mass2(r)[None],
                _angles(kin.boost_to_rest_frame(p[0], parent)),
                _angles(kin.boost_to_rest_frame(p[1], r)),
            ]
        )

    def log_w_minus_density(u):
        p, log_w = resonant_decay(u, parent, m1, mass, width, m2, m3)
        m_r = kin.mass(p[1] + p[2])
        d1 = kin.two_body_momentum(big_m, m1, m_r) / (16 * math.pi**2 * big_m)
        d2 = kin.two_body_momentum(m_r, m2, m3) / (16 * math.pi**2 * m_r)
        return log_w - jnp.log(d1 * d2 / (2 * math.pi))

    _check_logdet(coords, log_w_minus_density, _uniform(key, (6, 5)) * 0.9 + 0.05)


# ----------------------------------------------------------------- gradients and dtypes


def _check_grad_vs_fd(f, args, eps=1e-6, rtol=1e-6):
    """jax.grad of f against central finite differences in every argument entry (float64)."""
    f_jit = jax.jit(f)
    grads = jax.jit(jax.grad(f, argnums=tuple(range(len(args)))))(*args)
    for i, (a, g) in enumerate(zip(args, grads, strict=True)):
        a = np.asarray(a, dtype=float)
        for j in np.ndindex(a.shape):
            h = eps * max(1.0, abs(a[j]))
            up, down = a.copy(), a.copy()
            up[j] += h
            down[j] -= h
            new_up = list(args)
            new_down = list(args)
            new_up[i], new_down[i] = jnp.asarray(up), jnp.asarray(down)
            fd = (float(f_jit(*new_up)) - float(f_jit(*new_down))) / (2 * h)
            ad = float(np.asarray(g)[j])
            assert abs(ad - fd) <= rtol * max(abs(ad), abs(fd)) + 1e-12, f"argument {i}{j}: grad {ad} vs FD {fd}"


def test_rambo_massive_gradients_match_finite_differences(key):
    u = _uniform(key, (64, 16))

    def f(rs, masses):
        p, log_w = rambo(u, rs, masses)
        return jnp.mean(jnp.exp(log_w) * (p[:, 0, 3] ** 2 + p[:, 2, 0]))

    # Newton iterations carry no gradient; the final step gives the implicit-function derivative
    _check_grad_vs_fd(f, (jnp.asarray(120.0), jnp.asarray([5.0, 10.0, 20.0, 1.0])))


def test_maps_differentiable_in_masses(key):
    u = _uniform(key, (64, 5))
    parent = jnp.array([250.0, 10.0, 20.0, -100.0])

    def f(m1, mass, width):
        p, log_w = resonant_decay(u, parent, m1, mass, width, 0.0, 0.0)
        return jnp.mean(jnp.exp(log_w) * p[:, 1, 0])

    _check_grad_vs_fd(f, (jnp.asarray(4.78), jnp.asarray(80.4), jnp.asarray(2.1)))


def test_float32_follows_input_dtype(key):
    @jax.jit
    def run(k):
        u = jax.random.uniform(k, (1000, 12), jnp.float32)
        return rambo(u, 91.0, jnp.asarray([1.0, 2.0, 3.0], jnp.float32)), two_to_two(u[:, :2], 91.0, sampling="born")

    (p, log_w), (p2, lw2) = run(key)
    assert p.dtype == jnp.float32 and log_w.dtype == jnp.float32
    assert p2.dtype == jnp.float32 and lw2.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(p.sum(axis=1)), np.broadcast_to([91.0, 0, 0, 0], (1000, 4)), atol=1e-3)


def test_bad_input():
    with pytest.raises(ValueError, match=r"rambo: u must have shape \[..., 4n\] with n >= 2"):
        rambo(jnp.zeros((3, 6)), 91.0)
    with pytest.raises(ValueError, match="sampling must be one of"):
        cos_theta_map(jnp.zeros(3), "gauss")
    with pytest.raises(ValueError, match=r"two_to_two: u must have shape \[..., 2\]"):
        two_to_two(jnp.zeros((3, 3)), 91.0)
    with pytest.raises(ValueError, match=r"resonant_decay: u must have shape \[..., 5\]"):
        resonant_decay(jnp.zeros((3, 4)), jnp.array([100.0, 0, 0, 0]), 0.0, 80.0, 2.0, 0.0, 0.0)
