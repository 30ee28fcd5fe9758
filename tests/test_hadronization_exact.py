"""Hadronization shortcuts that must not change the result: block draws, decay lists, working capacity."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffgen.hadronization import decay as D
from diffgen.hadronization import hadronize
from diffgen.hadronization.formation import uniform, uniform_block
from diffgen.hadronization.samples import parton_chains

pytestmark = pytest.mark.filterwarnings("ignore:jax.core.pytype_aval_mappings is deprecated:DeprecationWarning")


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_uniform_block_is_a_slice_of_jax_random_uniform(dtype):
    shape = (13, 5, 11, 3)
    keys = (jax.random.key(7), jax.random.PRNGKey(3), jax.random.split(jax.random.key(1), 3)[2])
    for key in keys:
        full = np.asarray(jax.random.uniform(key, shape, dtype))
        block = jax.jit(lambda k, s: uniform_block(k, shape, s, (6, 2, 7, 2), dtype))(key, (4, jnp.int32(3), 2, 1))
        assert block.dtype == jnp.dtype(dtype)
        np.testing.assert_array_equal(np.asarray(block), full[4:10, 3:5, 2:9, 1:3])
        np.testing.assert_array_equal(np.asarray(jax.jit(lambda k: uniform(k, shape, dtype))(key)), full)
        moved = uniform_block(key, shape, (0, 0, 0, 0), shape, dtype, axes=(1, 0, 2, 3))
        np.testing.assert_array_equal(np.asarray(moved), np.transpose(full, (1, 0, 2, 3)))
    # Another generator takes the full draw and slices it: the same numbers.
    rbg = jax.random.key(5, impl="rbg")
    np.testing.assert_array_equal(
        np.asarray(uniform_block(rbg, shape, (1, 0, 0, 0), (2, 5, 11, 3), dtype)),
        np.asarray(jax.random.uniform(rbg, shape, dtype))[1:3],
    )
    with pytest.raises(ValueError, match="equal lengths"):
        uniform_block(keys[0], shape, (0, 0), (1, 1), dtype)


@pytest.fixture(scope="module")
def primaries():
    partons = parton_chains(jax.random.key(11), 24, n_gluons=4, sqrt_s=91.2, capacity=8)
    layer = hadronize(decay_unstable_hadrons=False, max_clusters=40, capacity=160)
    ev = jax.jit(layer.apply)(layer.init(jax.random.key(0)), jax.random.key(3), partons)
    labels = jnp.where(ev.mask, jnp.arange(ev.capacity, dtype=jnp.int32)[None, :] // 2, -1)
    return ev, labels


def _decay(ev, labels, **kw):
    def fn(k, p, pid, m, lab):
        return D.decay_unstable(k, p, pid, m, history_labels=lab, history_capacity=80, **kw)

    fn = jax.jit(fn)
    return jax.tree.map(np.asarray, fn(jax.random.key(9), ev.p, ev.pid, ev.mask, labels))


def test_decay_lists_and_working_capacity_give_the_same_decays(primaries, monkeypatch):
    ev, labels = primaries
    most = int(np.max(np.sum(np.asarray(ev.mask), axis=1)))
    default = _decay(ev, labels)
    # A working capacity below the primaries' slots forces the all-capacity repetition.
    small = _decay(ev, labels, working_capacity=most // 2)
    # Reference: every round over every slot (no lists of unstable particles).
    monkeypatch.setattr(D, "DECAY_LIST_SIZES", ())
    every_slot = _decay(ev, labels)
    n_final = default[2].sum(axis=1)
    assert n_final.min() > most // 2 and np.all(~default[3])
    for other in (small, every_slot):
        np.testing.assert_array_equal(other[1], default[1])  # pid
        np.testing.assert_array_equal(other[2], default[2])  # mask
        np.testing.assert_array_equal(other[3], default[3])  # overflow
        for name in ("label", "parent", "decayed_pid", "decayed_parent", "decayed_label", "decayed_mask"):
            np.testing.assert_array_equal(other[4][name], default[4][name])
        # Momenta agree to rounding (XLA may contract multiply-adds differently).
        np.testing.assert_allclose(other[0], default[0], rtol=0, atol=1e-9)
        np.testing.assert_allclose(other[4]["decayed_p"], default[4]["decayed_p"], rtol=0, atol=1e-9)
