"""diffgen.xla_ops: the element-wise forms give the values of the operations they replace."""

import jax
import jax.extend.random
import jax.numpy as jnp
import numpy as np
import pytest

from diffgen import xla_ops


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64, jnp.int32])
def test_prefix_sum_is_cumsum_bit_for_bit(dtype):
    """Same bits as ``jnp.cumsum`` (XLA's blocked order), for lengths below, at and above a block
    (the shower's 2·capacity dipole ends, the hadronization's 112 working slots)."""
    rng = np.random.default_rng(11)
    xs = tuple(
        jnp.asarray(
            rng.exponential(size=(400, n)) * (rng.uniform(size=(400, n)) < 0.4) * rng.uniform(0.01, 10, (400, 1)), dtype
        )
        for n in (1, 6, 16, 17, 48, 112, 300)
    )
    expected, got = jax.jit(
        lambda xs: ([jax.vmap(jnp.cumsum)(x) for x in xs], [jax.vmap(xla_ops.prefix_sum)(x) for x in xs])
    )(xs)
    for x, e, g in zip(xs, expected, got, strict=True):
        assert g.dtype == x.dtype
        np.testing.assert_array_equal(np.asarray(g), np.asarray(e), err_msg=f"n = {x.shape[1]}")
    if dtype != jnp.int32:
        # XLA's order is not the sequential one, so the test can tell the two apart
        assert not np.array_equal(np.cumsum(np.asarray(xs[-1]), axis=-1), np.asarray(expected[-1]))


def test_threefry2x32_known_answers_and_jax():
    """The Random123 known-answer vectors of Threefry-2x32-20 (Salmon et al., SC'11), and JAX's
    own ``threefry_2x32`` on random keys and counters."""
    u32 = np.uint32
    vectors = [
        ((0, 0), (0, 0), (0x6B200159, 0x99BA4EFE)),
        ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
        ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0)),
    ]
    for key, counter, expected in vectors:
        y = xla_ops.threefry2x32(u32(key[0]), u32(key[1]), np.array([counter[0]], u32), np.array([counter[1]], u32))
        assert (int(y[0][0]), int(y[1][0])) == expected
    rng = np.random.default_rng(3)
    key = rng.integers(0, 2**32, 2, dtype=np.uint64).astype(u32)
    x = rng.integers(0, 2**32, (2, 1000), dtype=np.uint64).astype(u32)
    got = jax.jit(lambda k, a, b: xla_ops.threefry2x32(k[0], k[1], a, b))(key, x[0], x[1])
    ref = jax.extend.random.threefry_2x32(key, x.reshape(-1))
    np.testing.assert_array_equal(np.concatenate([np.asarray(got[0]), np.asarray(got[1])]), np.asarray(ref))


@pytest.mark.parametrize("n", [0, 1, 5, 31, 32, 33, 48, 112, 625, 32 * xla_ops.SELECT_MAX_WORDS + 1])
def test_flagged_slots_is_nonzero(n):
    """The slots of the first M flags of every row, as ``jnp.nonzero(size=M, fill_value=n)``,
    for lists shorter and longer than the flags of a row, empty and full rows included, and
    rows of one, less than one, exactly one and several 32-bit words, and rows too long for the
    bit selection (``jnp.nonzero`` itself)."""
    rng = np.random.default_rng(n)
    share = rng.uniform(0.0, 1.0, (300, 1))
    flags = rng.uniform(size=(300, n)) < share
    flags[0], flags[-1] = False, True
    for size in (0, 1, 16, n + 3):
        expected = jax.vmap(lambda f, size=size: jnp.nonzero(f, size=size, fill_value=n)[0])(jnp.asarray(flags))
        got = jax.jit(lambda f, size=size: xla_ops.flagged_slots(f, size))(jnp.asarray(flags))
        assert got.dtype == jnp.int32 and got.shape == (300, size)
        np.testing.assert_array_equal(np.asarray(got), np.asarray(expected), err_msg=f"n = {n}, size = {size}")
        # row by row under vmap, as the decay rounds call it
        rows = jax.jit(jax.vmap(lambda f, size=size: xla_ops.flagged_slots(f, size)))(jnp.asarray(flags))
        np.testing.assert_array_equal(np.asarray(rows), np.asarray(expected), err_msg=f"vmap, n = {n}, size = {size}")
    with pytest.raises(ValueError, match="size must be an int >= 0"):
        xla_ops.flagged_slots(jnp.asarray(flags), -1)


def test_packed_flags_and_select_bit_find_every_set_flag():
    rng = np.random.default_rng(3)
    flags = rng.random((6, 75)) < 0.3
    flags[0] = False
    flags[1] = True
    words, counts = xla_ops.packed_flags(jnp.asarray(flags))
    assert words.shape == counts.shape == (6, 3) and words.dtype == jnp.uint32
    bits = (np.asarray(words)[..., None] >> np.arange(32, dtype=np.uint32)) & 1
    np.testing.assert_array_equal(bits.reshape(6, 96)[:, :75], flags)
    np.testing.assert_array_equal(np.asarray(counts), bits.sum(-1))
    for w, c in zip(np.asarray(words).ravel(), np.asarray(counts).ravel(), strict=True):
        got = xla_ops.select_bit(jnp.full((c,), w, jnp.uint32), jnp.arange(c, dtype=jnp.int32))
        np.testing.assert_array_equal(np.asarray(got), np.flatnonzero((int(w) >> np.arange(32)) & 1))
