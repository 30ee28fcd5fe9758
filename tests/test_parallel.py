"""Sharding across devices (diffgen.parallel): same bits on 1 and 4 devices, correct reductions.

The main pytest process has one CPU device; the multi-device comparison runs once in a
subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` set before JAX is
imported, and reports every comparison back as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffgen import parallel
from diffgen.core import Events, Layer, Source
from diffgen.testing import assert_compatible

REPO = Path(__file__).resolve().parents[1]

SIGMA_PB = 2000.0
AFB = 0.02


def toy_mumu(dtype=jnp.float64) -> Source:
    """e⁺e⁻ → μ⁺μ⁻ at lowest order with a free normalisation σ and asymmetry A_FB.

    dσ/dcosθ = σ [3/8 (1 + cos²θ) + A_FB cosθ]; cosθ and φ drawn uniformly, so the weight
    is 2 dσ/dcosθ and ⟨w⟩ = σ exactly in expectation.
    """

    def init(key):
        del key
        return {
            "sqrt_s": jnp.asarray(91.1876, dtype),
            "sigma": jnp.asarray(SIGMA_PB, dtype),
            "afb": jnp.asarray(AFB, dtype),
            "m_mu": jnp.asarray(0.1056583755, dtype),
        }

    def sample(params, key, n):
        u = jax.random.uniform(key, (n, 2), dtype)
        c = 2.0 * u[:, 0] - 1.0
        phi = 2.0 * jnp.pi * u[:, 1]
        e = params["sqrt_s"] / 2.0
        pabs = jnp.sqrt(e * e - params["m_mu"] ** 2)
        s = jnp.sqrt(1.0 - c * c)
        p3 = jnp.stack([pabs * s * jnp.cos(phi), pabs * s * jnp.sin(phi), pabs * c], axis=-1)
        energy = jnp.broadcast_to(e, (n, 1))
        p = jnp.stack([jnp.concatenate([energy, p3], -1), jnp.concatenate([energy, -p3], -1)], axis=1)
        w = 2.0 * params["sigma"] * (0.375 * (1.0 + c * c) + params["afb"] * c)
        pid = jnp.broadcast_to(jnp.array([13, -13], jnp.int32), (n, 2))
        return Events(p=p, weight=w, mask=jnp.ones((n, 2), bool), pid=pid)

    return Source(init, sample)


def toy_smearing() -> Layer:
    """Gaussian energy-momentum smearing with relative resolution ``sigma_rel`` (pathwise)."""

    def init(key):
        del key
        return {"sigma_rel": jnp.asarray(0.01, jnp.float64)}

    def apply_(params, key, events):
        z = jax.random.normal(key, events.p.shape, events.p.dtype)
        return events.replace(p=events.p * (1.0 + params["sigma_rel"] * z))

    return Layer(init, apply_)


def cos_theta_mu(events: Events) -> jax.Array:
    return events.p[:, 0, 3] / jnp.linalg.norm(events.p[:, 0, 1:], axis=-1)


# --------------------------------------------------------------------------- one device


def test_sample_matches_jit_on_one_device(key):
    src = toy_mumu()
    params = src.init(key)
    ref = jax.jit(src.sample, static_argnums=2)(params, key, 400)
    got = parallel.sample(src, params, key, 400, mesh=parallel.event_mesh(1))
    for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(got), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_cross_section_is_unbiased_and_differentiable(key):
    src = toy_mumu()
    params = src.init(key)
    n = 8000
    sigma, err = parallel.cross_section(src, params, key, n)
    assert_compatible(sigma, SIGMA_PB, err, n_sigma=4.0, what="toy cross section")
    # The error is the standard error of the mean, σ_w/√N, with the exact variance of
    # w = 2σ[3/8(1+c²) + A c] for uniform c: σ_w² = σ²(4E[f²] - 1). The sample standard deviation
    # fluctuates by ~1/√(2N) relative (kurtosis ≈ 2); allow 5/√N.
    c2, c4 = 1.0 / 3.0, 1.0 / 5.0
    mean_f2 = 4.0 * (0.140625 * (1.0 + 2.0 * c2 + c4) + AFB**2 * c2)
    exact_err = SIGMA_PB * np.sqrt(mean_f2 - 1.0) / np.sqrt(n)
    assert abs(float(err) / exact_err - 1.0) < 5.0 / np.sqrt(n)
    # σ enters linearly: dσ̂/dσ = σ̂/σ; A_FB integrates to zero but not per sample: dσ̂/dA = 2⟨c⟩.
    grads = jax.jit(jax.grad(lambda p: parallel.cross_section(src, p, key, n)[0]))(params)
    np.testing.assert_allclose(grads["sigma"], sigma / SIGMA_PB, rtol=1e-12)
    c = cos_theta_mu(jax.jit(src.sample, static_argnums=2)(params, key, n))
    np.testing.assert_allclose(grads["afb"], 2.0 * SIGMA_PB * np.mean(np.asarray(c)), rtol=1e-9)


def test_ordered_sum_matches_numpy():
    x = np.random.default_rng(3).normal(size=(64, 3))
    got = jax.jit(parallel.ordered_sum)({"a": jnp.asarray(x), "i": jnp.arange(64, dtype=jnp.int32)})
    np.testing.assert_allclose(got["a"], x.sum(0), rtol=1e-13)
    assert int(got["i"]) == 64 * 63 // 2 and got["i"].dtype == jnp.int32
    # The documented order, replayed in NumPy: pairwise halving inside each of the 8 blocks,
    # then block sums added left to right. Elementwise IEEE adds, so the bits must match.
    blocks = x.reshape(8, 8, 3)
    while blocks.shape[1] > 1:
        half = blocks.shape[1] // 2
        blocks = blocks[:, :half] + blocks[:, half:]
    ref = blocks[0, 0]
    for b in blocks[1:, 0]:
        ref = ref + b
    np.testing.assert_array_equal(np.asarray(got["a"]), ref)


def test_bad_arguments(key):
    src = toy_mumu()
    params = src.init(key)
    with pytest.raises(ValueError, match="n must be a multiple of 8"):
        parallel.cross_section(src, params, key, 100)
    with pytest.raises(ValueError, match="n must be >= 1"):
        parallel.sample(src, params, key, 0)
    with pytest.raises(TypeError, match="n must be a Python int"):
        parallel.sample(src, params, key, 10.0)
    with pytest.raises(TypeError, match="source must be a diffgen Source"):
        parallel.sample(lambda *a: None, params, key, 8)
    with pytest.raises(TypeError, match="mesh must be a jax.sharding.Mesh"):
        parallel.sample(src, params, key, 8, mesh="cpu")
    with pytest.raises(ValueError, match="devices must be in"):
        parallel.event_mesh(len(jax.devices()) + 1)
    with pytest.raises(ValueError, match="axis: 'x' is not an axis"):
        parallel.sample(src, params, key, 8, mesh=parallel.event_mesh(1), axis="x")
    with pytest.raises(TypeError, match="layer must be a diffgen Layer"):
        parallel.apply(
            src,
            params,
            key,
            Events(
                p=np.zeros((8, 1, 4)), weight=np.ones(8), mask=np.ones((8, 1), bool), pid=np.zeros((8, 1), np.int32)
            ),
        )
    with pytest.raises(ValueError, match="leading axis N must be a multiple of 8"):
        parallel.ordered_sum(jnp.ones(12))


# --------------------------------------------------------------------------- several devices

_MULTI_DEVICE_SCRIPT = textwrap.dedent(
    """
    import importlib.util, json, os, sys
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_numpy_dtype_promotion", "strict")
    jax.config.update("jax_numpy_rank_promotion", "raise")
    spec = importlib.util.spec_from_file_location("tp", sys.argv[1])
    tp = importlib.util.module_from_spec(spec); spec.loader.exec_module(tp)
    from diffgen import parallel
    from diffgen.core import chain

    out = {"devices": len(jax.devices())}
    key = jax.random.key(7)
    m1, m4 = parallel.event_mesh(1), parallel.event_mesh(4)

    def same(a, b):
        la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
        return len(la) == len(lb) and all(
            x.shape == y.shape and x.dtype == y.dtype and np.array_equal(np.asarray(x), np.asarray(y))
            for x, y in zip(la, lb))

    def shards(x):
        return sorted({s.data.shape[0] for s in x.addressable_shards}), len(x.addressable_shards)

    def grad_diff(a, b):
        return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)) / np.maximum(np.abs(np.asarray(y)), 1e-300)))
                   for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))

    def compare(name, src, n=800, full=True):
        params = src.init(key)
        e1 = parallel.sample(src, params, key, n, mesh=m1)
        e4 = parallel.sample(src, params, key, n, mesh=m4)
        out[name + "/sample"] = same(e1, e4)
        out[name + "/shards"] = shards(e4.p)
        xs = {m: parallel.cross_section(src, params, key, n, mesh=m) for m in (m1, m4)}
        out[name + "/xsec"] = same(xs[m1], xs[m4])
        out[name + "/xsec_value"] = [float(v) for v in xs[m4]]
        if not full:
            return
        g = {m: jax.jit(jax.grad(lambda p, m=m: parallel.cross_section(src, p, key, n, mesh=m)[0]))(params)
             for m in (m1, m4)}
        out[name + "/grad_rel_diff"] = grad_diff(g[m4], g[m1])
        h = {m: parallel.stream_histogram(tp.cos_theta_mu, np.linspace(-1, 1, 9), src, params, key, 2 * n,
                                          chunk_size=n, mesh=m) for m in (m1, m4)}
        out[name + "/hist"] = same(h[m1], h[m4])
        out[name + "/hist_total"] = int(np.asarray(h[m4]["count"]).sum())
        sg = {m: jax.jit(jax.grad(lambda p, m=m: parallel.stream_cross_section(
            src, p, key, 2 * n, chunk_size=n, mesh=m)[0]))(params) for m in (m1, m4)}
        out[name + "/stream_grad_rel_diff"] = grad_diff(sg[m4], sg[m1])

    compare("toy", tp.toy_mumu())
    sim = chain(tp.toy_mumu(), ("detector", tp.toy_smearing()))
    compare("chain", sim, full=False)
    lay = tp.toy_smearing()
    ev = tp.toy_mumu().sample(tp.toy_mumu().init(key), key, 800)
    a1 = parallel.apply(lay, lay.init(key), key, ev, mesh=m1)
    a4 = parallel.apply(lay, lay.init(key), key, ev, mesh=m4)
    out["layer/apply"] = same(a1, a4)
    out["layer/shards"] = shards(a4.p)
    try:
        from diffgen.processes import ee_to_ffbar
    except ImportError:
        out["process"] = "absent"
    else:
        compare("ee_to_ffbar", ee_to_ffbar(flavour="mu"), full=False)
        out["process"] = "present"
    print("RESULT " + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def four_devices():
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    env = dict(os.environ, XLA_FLAGS=flags.strip(), JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, "-c", _MULTI_DEVICE_SCRIPT, __file__],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=600,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"multi-device subprocess failed:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(lines[-1][len("RESULT ") :])


def test_four_devices_really_shard(four_devices):
    assert four_devices["devices"] == 4
    assert four_devices["toy/shards"] == [[200], 4]
    assert four_devices["layer/shards"] == [[200], 4]


@pytest.mark.parametrize("what", ["toy/sample", "toy/xsec", "toy/hist", "chain/sample", "chain/xsec", "layer/apply"])
def test_one_and_four_devices_agree_bit_for_bit(four_devices, what):
    assert four_devices[what] is True


@pytest.mark.parametrize("what", ["grad_rel_diff", "stream_grad_rel_diff"])
def test_gradients_agree_to_rounding(four_devices, what):
    # Parameter gradients are sums over events that autodiff inserts (transposes of
    # broadcasts); XLA all-reduces them across devices in a layout-dependent order, so they
    # agree to rounding, not bit for bit: a few ulp of float64 (2.2e-16) per reduction level.
    assert four_devices[f"toy/{what}"] < 1e-13


def test_sharded_reductions_are_correct(four_devices):
    sigma, err = four_devices["toy/xsec_value"]
    assert_compatible(sigma, SIGMA_PB, err, n_sigma=4.0, what="sharded cross section")
    assert four_devices["toy/hist_total"] == 1600  # |cos θ| < 1: every event in a bin


@pytest.mark.parametrize("what", ["sample", "xsec"])
def test_real_process_on_four_devices(four_devices, what):
    if four_devices["process"] != "present":
        pytest.skip("diffgen.processes not available")
    assert four_devices[f"ee_to_ffbar/{what}"] is True


def test_ordered_map_keeps_order_and_runs_at_most_workers_ahead():
    import threading
    import time

    started, lock = [], threading.Lock()
    consumed = []

    def work(i):
        with lock:
            started.append(i)
        time.sleep(0.002 * (5 - i % 5))  # later items often finish first
        return i * i

    ahead = []
    for r in parallel.ordered_map(work, 12, workers=3):
        consumed.append(r)
        with lock:
            ahead.append(len(started) - len(consumed))
    assert consumed == [i * i for i in range(12)]
    assert max(ahead) <= 3  # never more than `workers` computed beyond the one handed out
    assert list(parallel.ordered_map(work, 4, workers=1)) == [0, 1, 4, 9]
    # Closing early drops the items not started.
    started.clear()
    it = parallel.ordered_map(work, 50, workers=2)
    next(it)
    it.close()
    assert len(started) <= 4
    with pytest.raises(ValueError, match="workers must be an int >= 1"):
        list(parallel.ordered_map(work, 3, workers=0))
