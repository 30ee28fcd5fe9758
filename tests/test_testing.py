"""The assertions of diffgen.testing catch what they claim to catch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffgen import Events, Layer
from diffgen.testing import (
    assert_compatible,
    assert_finite_grads,
    assert_on_shell,
    assert_padding_clean,
    check_layer_grads,
)


def events_with(p, pid, mask=None):
    p = np.asarray(p, float)
    n, cap = p.shape[:2]
    mask = np.ones((n, cap), bool) if mask is None else mask
    return Events(p=p, weight=np.ones(n), mask=mask, pid=np.asarray(pid, np.int32))


def test_assert_on_shell():
    m = 0.105658
    pz = 3.0
    good = events_with([[[np.sqrt(pz**2 + m**2), 0, 0, pz], [0, 0, 0, 0]]], [[13, 0]], mask=np.array([[True, False]]))
    assert_on_shell(good, {13: m})
    with pytest.raises(AssertionError, match="off shell: event 0, slot 0"):
        assert_on_shell(good, {13: 2 * m})
    with pytest.raises(AssertionError, match=r"no mass given for pid\(s\) \[13\]"):
        assert_on_shell(good, {11: m})
    assert_on_shell(good, lambda pid: np.where(np.abs(pid) == 13, m, 0.0))


def test_assert_padding_clean():
    ev = events_with([[[1, 0, 0, 1], [1, 0, 0, -1]]], [[1, 2]], mask=np.array([[True, False]]))
    with pytest.raises(AssertionError, match=r"padding slots carry non-zero \['p', 'pid'\]"):
        assert_padding_clean(ev)


def test_assert_compatible():
    assert_compatible(1.02, 1.0, 0.01, n_sigma=3)
    with pytest.raises(AssertionError, match="pull 4.00 > 3"):
        assert_compatible(1.04, 1.0, 0.01, n_sigma=3)


def test_assert_finite_grads_catches_nan():
    with pytest.raises(AssertionError, match="non-finite gradient"):
        assert_finite_grads(lambda x: jnp.sqrt(x), jnp.asarray(0.0))


def wrong_gradient_layer():
    """A layer whose custom JVP is deliberately wrong by a factor 2."""

    @jax.custom_jvp
    def scale(s, x):
        return s * x

    @scale.defjvp
    def scale_jvp(primals, tangents):
        s, x = primals
        ds, dx = tangents
        return s * x, 2 * ds * x + s * dx

    def apply(params, key, events):
        del key
        return events.replace(p=scale(params["s"], events.p))

    return Layer(lambda key: {"s": jnp.asarray(1.0)}, apply)


def test_check_layer_grads_detects_wrong_gradient(key):
    ev = events_with([[[1, 0, 0, 1]]], [[22]])
    layer = wrong_gradient_layer()
    with pytest.raises(AssertionError, match=r"gradient check failed:\n  \['s'\]\[0\]"):
        check_layer_grads(layer, layer.init(key), key, ev, lambda e: jnp.sum(e.p))
