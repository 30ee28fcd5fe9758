"""Streaming reductions (diffgen.parallel.stream_*): exact agreement with the unchunked sums,
unbiased cross sections, and memory that does not grow with N, for values and gradients."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_parallel import SIGMA_PB, cos_theta_mu, toy_mumu

from diffgen import parallel
from diffgen.testing import assert_compatible

N, CHUNK = 4000, 1000
EDGES = np.linspace(-1.0, 1.0, 11)


def per_event(events):
    c = cos_theta_mu(events)
    return {"w": events.weight, "wc": events.weight * c, "n_fwd": (c > 0).astype(jnp.int32)}


@functools.partial(jax.jit, static_argnums=(0, 3, 4))
def unchunked(fn, params, key, n, chunk):
    """Same events, materialised at once: per-chunk ordered sums folded left to right.

    ``fn`` and the chunk's sum run chunk by chunk (``lax.map``) as inside the stream: XLA does
    not promise bit-identical results for differently fused programs (whether ``acc + w·c``
    becomes one fused multiply-add depends on the fusion and on LLVM's optimisation level),
    and that is not what streaming is about.
    """
    src = toy_mumu()
    events = parallel.stream_events(src, params, key, n, chunk_size=chunk)
    chunked = jax.tree.map(lambda v: v.reshape(n // chunk, chunk, *v.shape[1:]), events)
    partial = jax.lax.map(lambda ev: parallel.ordered_sum(fn(ev)), chunked)
    total = jax.tree.map(lambda v: v[0], partial)
    for i in range(1, n // chunk):
        total = jax.tree.map(lambda t, v, i=i: t + v[i], total, partial)
    return total


def test_chunked_equals_unchunked_exactly(key):
    src = toy_mumu()
    params = src.init(key)
    got = jax.jit(lambda p: parallel.stream_sum(per_event, src, p, key, N, chunk_size=CHUNK))(params)
    ref = unchunked(per_event, params, key, N, CHUNK)
    for name in ref:
        np.testing.assert_array_equal(np.asarray(got[name]), np.asarray(ref[name]), err_msg=name)
    # The streamed events really are the chunks fold_in(key, i) of stream_events.
    ev = jax.jit(lambda p: parallel.stream_events(src, p, key, N, chunk_size=CHUNK))(params)
    chunk2 = jax.jit(src.sample, static_argnums=2)(params, jax.random.fold_in(key, 2), CHUNK)
    np.testing.assert_array_equal(np.asarray(ev.p[2 * CHUNK : 3 * CHUNK]), np.asarray(chunk2.p))


def test_histogram_matches_numpy(key):
    src = toy_mumu()
    params = src.init(key)
    hist = parallel.stream_histogram(cos_theta_mu, EDGES, src, params, key, N, chunk_size=CHUNK)
    ev = jax.jit(lambda p: parallel.stream_events(src, p, key, N, chunk_size=CHUNK))(params)
    c, w = np.asarray(cos_theta_mu(ev)), np.asarray(ev.weight)
    counts, _ = np.histogram(c, EDGES)
    np.testing.assert_array_equal(np.asarray(hist["count"]), counts)
    np.testing.assert_allclose(hist["sum_w"], np.histogram(c, EDGES, weights=w)[0], rtol=1e-13)
    np.testing.assert_allclose(hist["sum_w2"], np.histogram(c, EDGES, weights=w * w)[0], rtol=1e-13)
    # Per-bin cross section vs the analytic σ ∫_bin [3/8(1+c²) + A c] dc, within MC errors.
    lo, hi = EDGES[:-1], EDGES[1:]
    expected = SIGMA_PB * (0.375 * (hi - lo + (hi**3 - lo**3) / 3.0) + 0.01 * (hi**2 - lo**2))
    got, err = np.asarray(hist["sum_w"]) / N, np.sqrt(np.asarray(hist["sum_w2"])) / N
    assert_compatible(got, expected, err, n_sigma=4.0, what="binned cross section")


def test_stream_gradient_equals_unchunked_gradient(key):
    src = toy_mumu()
    params = src.init(key)

    def loss_stream(p):
        s = parallel.stream_sum(per_event, src, p, key, N, chunk_size=CHUNK)
        return s["wc"] / s["w"]  # 2/3·... the forward-backward asymmetry estimator ∝ A_FB

    def loss_ref(p):
        s = unchunked(per_event, p, key, N, CHUNK)
        return s["wc"] / s["w"]

    g = jax.jit(jax.grad(loss_stream))(params)
    g_ref = jax.jit(jax.grad(loss_ref))(params)
    for name in ("sigma", "afb"):
        # Same arithmetic up to the order autodiff sums its per-event cotangents: rounding only.
        np.testing.assert_allclose(g[name], g_ref[name], rtol=1e-12, atol=1e-15, err_msg=name)
    # ⟨w c⟩/⟨w⟩ does not depend on σ; its A_FB derivative is 2⟨c²⟩/⟨w⟩ ≈ 2/3·σ/σ·… > 0.
    assert abs(float(g["sigma"])) < 1e-15
    assert float(g["afb"]) > 0


def test_stream_cross_section_of_the_real_process(key):
    processes = pytest.importorskip("diffgen.processes")
    src = processes.ee_to_ffbar(flavour="mu")
    params = src.init(key)
    n = 8000
    sigma, err = jax.jit(lambda p: parallel.stream_cross_section(src, p, key, n, chunk_size=2000))(params)
    mu = processes.constants.FERMIONS["mu"]
    s = params["sqrt_s"] ** 2
    exact = processes.constants.GEV2_PB * processes.born_sigma_total(s, mu.mass, mu.charge, mu.t3, 1.0, params)
    assert_compatible(sigma, exact, err, n_sigma=4.0, what="streamed σ(ee→μμ)")
    # Same events as the materialised stream, hence the same Monte Carlo estimate.
    ref_sigma, ref_err = jax.jit(
        lambda p: processes.weighted_mean_error(parallel.stream_events(src, p, key, n, chunk_size=2000).weight)
    )(params)
    np.testing.assert_allclose([sigma, err], [ref_sigma, ref_err], rtol=1e-11)


def test_sample_chunks_are_the_chunks_called_in_turn(key):
    """Concurrent chunks give the events of the chunks called one after the other, whatever the workers."""
    from test_parallel import toy_smearing

    from diffgen.core import chain

    sim = chain(toy_mumu(), ("detector", toy_smearing()))
    params = sim.init(key)
    chunk = jax.jit(sim.sample, static_argnums=2)
    ref = [chunk(params, jax.random.fold_in(key, i), CHUNK) for i in range(N // CHUNK)]
    for workers in (1, 3, None):
        got = parallel.sample_chunks(sim, params, key, N, chunk_size=CHUNK, workers=workers)
        assert got.n_events == N
        for i, r in enumerate(ref):
            part = got[i * CHUNK : (i + 1) * CHUNK]
            for a, b in zip(jax.tree.leaves(r), jax.tree.leaves(part), strict=True):
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=f"workers={workers}, chunk {i}")
    # The streaming functions see the same chunks (vmapped into one program: to rounding).
    ev = jax.jit(lambda p: parallel.stream_events(sim, p, key, N, chunk_size=CHUNK))(params)
    np.testing.assert_allclose(np.asarray(got.p), np.asarray(ev.p), rtol=1e-14, atol=0.0)
    np.testing.assert_allclose(np.asarray(got.weight), np.asarray(ev.weight), rtol=1e-14, atol=0.0)


def _grad_peak(n: int, *, checkpoint: bool = True, chunked: bool = True) -> int:
    src = toy_mumu()
    params = src.init(None)
    key = jax.random.key(0)

    def loss(p):
        if chunked:
            return parallel.stream_sum(
                lambda ev: ev.weight * cos_theta_mu(ev), src, p, key, n, chunk_size=CHUNK, checkpoint=checkpoint
            )
        return parallel.cross_section(src, p, key, n)[0]

    return parallel.compiled_memory(jax.grad(loss), params)["peak"]


def test_memory_is_flat_in_n_for_value_and_gradient():
    # Compiled (XLA buffer assignment) memory, not RSS: deterministic and load-independent.
    small, large = _grad_peak(10 * CHUNK), _grad_peak(1000 * CHUNK)
    # ×100 events: only the K int32 chunk indices scanned over grow (4 bytes per chunk).
    assert large < 1.2 * small, (small, large)
    # The unchunked gradient grows with N (so the measurement can tell), ~×100.
    u_small, u_large = _grad_peak(10 * CHUNK, chunked=False), _grad_peak(1000 * CHUNK, chunked=False)
    assert u_large > 50 * u_small
    assert large < u_large / 50
    # Without jax.checkpoint reverse mode stores every chunk's residuals: memory grows with N.
    assert _grad_peak(1000 * CHUNK, checkpoint=False) > 10 * large


def test_bad_arguments(key):
    src = toy_mumu()
    params = src.init(key)
    with pytest.raises(ValueError, match="n must be a multiple of 1000"):
        parallel.stream_cross_section(src, params, key, 1500, chunk_size=1000)
    with pytest.raises(ValueError, match="chunk_size must be a multiple of 8"):
        parallel.stream_cross_section(src, params, key, 1500, chunk_size=502)
    with pytest.raises(ValueError, match="blocks must be a multiple of the number of devices"):
        parallel.stream_cross_section(src, params, key, 64, chunk_size=64, blocks=3, mesh=_fake_two_device_mesh())
    with pytest.raises(ValueError, match="edges must be strictly increasing"):
        parallel.stream_histogram(cos_theta_mu, [0.0, 0.0, 1.0], src, params, key, 8, chunk_size=8)
    with pytest.raises(ValueError, match="edges must be a 1-d array"):
        parallel.stream_histogram(cos_theta_mu, [0.0], src, params, key, 8, chunk_size=8)
    with pytest.raises(ValueError, match="one value per event"):
        parallel.stream_histogram(lambda ev: ev.p[:, 0, :], EDGES, src, params, key, 8, chunk_size=8)
    # sample_chunks: the stream's checks, its own workers, and no tracing
    with pytest.raises(ValueError, match="n must be a multiple of 1000"):
        parallel.sample_chunks(src, params, key, 1500, chunk_size=1000)
    with pytest.raises(ValueError, match="workers must be an int >= 1"):
        parallel.sample_chunks(src, params, key, 2000, chunk_size=1000, workers=0)
    with pytest.raises(ValueError, match="workers must be an int >= 1"):
        parallel.sample_chunks(src, params, key, 2000, chunk_size=1000, workers=2.0)
    with pytest.raises(TypeError, match="cannot be traced"):
        jax.jit(lambda p: parallel.sample_chunks(src, p, key, 2000, chunk_size=1000).weight)(params)
    with pytest.raises(TypeError, match="must be a diffgen Source"):
        parallel.sample_chunks(lambda p, k, n: None, params, key, 2000, chunk_size=1000)
    assert parallel.default_workers() >= 1


def _fake_two_device_mesh():
    # One real device listed twice: enough for argument checks, never run.
    dev = jax.devices()[0]
    return jax.sharding.Mesh(np.array([dev, dev], dtype=object), ("events",))
