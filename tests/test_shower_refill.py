"""The slot-refilling forward shower reproduces the per-event ``vmap``/``while_loop`` shower.

Both run the same trial (``_trial``) and branching (``_emission``) with random numbers from
``fold_in(event_key, trial)``; the refilling loop applies the branching only to the accepted
slots, compacted into blocks. Every event must make the same trials and decisions whichever
slot runs it. XLA fuses the two programs differently and contracts a·b ± c into FMAs in
different places, so the floating values may differ in the last bits; discrete outputs must
be identical and floats equal to a few ulps, amplified by at most the number of trials
(tolerances below). The fused replacements of ``jnp.cumsum`` and of the threefry draw that
the trial uses must give the same bits as the JAX functions they replace.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffgen.core import Events
from diffgen.processes import ee_to_qqbar
from diffgen.shower import dipole, layer
from diffgen.testing import assert_momentum_conserved

N = 120  # events; with 16 slots every slot is refilled ≈ 7 times
SLOTS = 16


def shower(monkeypatch, slots, emit_fraction=0.25, **kw):
    monkeypatch.setattr(layer, "_REFILL_SLOTS", slots)
    monkeypatch.setattr(layer, "_EMIT_FRACTION", emit_fraction)
    return jax.jit(layer.final_state_shower(**kw).apply)


def mixed_batch(dtype):
    """ee → q q̄ events, one in four replaced by q g q̄ (colour chain 501/502), and two events
    below the cut-off (Q² < t0: not showered at all), capacity 3."""
    src = ee_to_qqbar(91.2, dtype=dtype)
    ev = jax.jit(src.sample, static_argnums=2)(src.init(jax.random.key(0)), jax.random.key(1), N).pad_to(3)
    p = np.array(ev.p, dtype=np.float64)
    pid = np.array(ev.pid)
    col = np.array(ev.colour)
    mask = np.array(ev.mask)
    rng = np.random.default_rng(5)
    for i in range(0, N, 4):
        # massless q g q̄ with x_q, x_qbar drawn inside the 3-body region, √s = 91.2 GeV
        e = 91.2 / 2
        xq, xb = rng.uniform(0.5, 0.95, 2)
        xg = 2.0 - xq - xb
        cos_qb = 1.0 - 2.0 * (1.0 - xg) / (xq * xb)  # (p_q + p_qbar)² = s (1 − x_g)
        if not -1.0 < cos_qb < 1.0:
            continue
        sin_qb = np.sqrt(1.0 - cos_qb**2)
        q = xq * e * np.array([1.0, 0.0, 0.0, 1.0])
        qb = xb * e * np.array([1.0, sin_qb, 0.0, cos_qb])
        g = np.array([2 * e, 0.0, 0.0, 0.0]) - q - qb
        g[0] = np.linalg.norm(g[1:])
        p[i] = [q, qb, g]
        pid[i] = [2, -2, 21]
        col[i] = [[501, 0], [0, 502], [502, 501]]
        mask[i] = True
    p[7] *= 0.004  # √s = 0.36 GeV: Q² < t0 = 1 GeV²
    p[N - 2] *= 0.004
    return Events(
        p=jnp.asarray(p, dtype),
        weight=ev.weight,
        mask=jnp.asarray(mask),
        pid=jnp.asarray(pid),
        colour=jnp.asarray(col),
    )


def compare(ref: Events, new: Events, dtype):
    eps = float(jnp.finfo(dtype).eps)
    ref_x, new_x = ref.extra, new.extra
    assert set(ref_x) == set(new_x)
    discrete = ["mask", "pid", "colour"]
    for name in discrete:
        np.testing.assert_array_equal(np.asarray(getattr(new, name)), np.asarray(getattr(ref, name)), err_msg=name)
    np.testing.assert_array_equal(np.asarray(new.weight), np.asarray(ref.weight))
    trials = np.asarray(ref_x["shower_n_trials"])
    for key in ref_x:
        a, b = np.asarray(ref_x[key]), np.asarray(new_x[key])
        assert a.dtype == b.dtype and a.shape == b.shape, key
        if np.issubdtype(a.dtype, np.floating):
            # rounding differences ~ eps per operation, accumulated over at most max(trials) trials
            scale = np.max(np.abs(a)) if a.size else 1.0
            np.testing.assert_allclose(
                b, a, rtol=64 * eps * trials.max(), atol=64 * eps * trials.max() * scale, err_msg=key
            )
        else:
            np.testing.assert_array_equal(b, a, err_msg=key)
    np.testing.assert_allclose(
        np.asarray(new.p), np.asarray(ref.p), rtol=0, atol=64 * eps * trials.max() * 91.2, err_msg="momenta"
    )


# float32 with emission blocks of one row: a trial with several accepted slots (most trials
# of 16 slots at ≈ 15 % acceptance) needs several blocks
@pytest.mark.parametrize(("dtype", "history", "emit_fraction"), [(jnp.float64, False, 0.25), (jnp.float32, True, 0.05)])
def test_refill_matches_vmapped_while_loop(monkeypatch, dtype, history, emit_fraction):
    ev = mixed_batch(dtype)
    params = {"alpha_s_mz": jnp.asarray(0.118, dtype), "t0": jnp.asarray(1.0, dtype)}
    key = jax.random.key(3)
    ref = shower(monkeypatch, 0, capacity=16, record_history=history)(params, key, ev)
    new = shower(monkeypatch, SLOTS, emit_fraction, capacity=16, record_history=history)(params, key, ev)
    compare(ref, new, dtype)
    x = new.extra
    trials = np.asarray(x["shower_n_trials"])
    # the batch exercises refills: events of very different length, gluon inputs, unshowered events
    assert trials[7] == 0 and trials[N - 2] == 0
    assert trials.max() > 2 * np.median(trials)
    assert np.any(np.asarray(ev.pid)[:, 2] == 21)
    if dtype == jnp.float64:
        assert_momentum_conserved(new, ev, rtol=1e-9)
        # the result depends on the event, not on how many slots run the batch
        other = shower(monkeypatch, 3 * SLOTS, capacity=16, record_history=history)(params, key, ev)
        # (same decisions exactly; floats to rounding, as XLA may contract multiply-adds
        # differently in programs of other shapes)
        compare(new, other, dtype)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_trial_uniforms_are_jax_random_bits(dtype):
    keys = jax.random.split(jax.random.key(5), 500)
    trials = jnp.asarray(np.random.default_rng(2).integers(0, 5000, 500), jnp.int32)
    n = dipole.TRIAL_UNIFORMS
    expected = jax.jit(jax.vmap(lambda k, t: jax.random.uniform(jax.random.fold_in(k, t), (n,), dtype=dtype)))(
        keys, trials
    )
    got = jax.jit(jax.vmap(lambda k, t: dipole.trial_uniforms(k, t, n, dtype)))(keys, trials)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))
    assert got.dtype == dtype and float(jnp.min(got)) >= 0.0 and float(jnp.max(got)) < 1.0
