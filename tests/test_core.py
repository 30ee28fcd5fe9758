"""Events, the layer contract and chain()."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffgen import Events, Layer, Source, chain, stage_key
from diffgen import kinematics as kin
from diffgen.testing import assert_momentum_conserved, check_layer_grads


def make_events(n=5, cap=3, dtype=np.float64, colour=False):
    rng = np.random.default_rng(0)
    p = np.zeros((n, cap, 4), dtype)
    p3 = rng.normal(size=(n, 2, 3))
    p[:, :2, 1:] = p3
    p[:, :2, 0] = np.linalg.norm(p3, axis=-1)
    mask = np.zeros((n, cap), bool)
    mask[:, :2] = True
    pid = np.where(mask, 13, 0).astype(np.int32)
    kwargs = {}
    if colour:
        kwargs["colour"] = np.zeros((n, cap, 2), np.int32)
    return Events(p=p, weight=np.ones(n, dtype), mask=mask, pid=pid, **kwargs)


# --------------------------------------------------------------------------- Events validation


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("p", np.zeros((5, 3, 3)), r"Events\.p: expected shape \[N, P, 4\]"),
        ("p", np.zeros((5, 3, 4), np.int32), r"Events\.p: expected a floating dtype"),
        ("weight", np.ones(4), r"Events\.weight: expected shape \[N\] = \[5\], got \[4\]"),
        ("weight", np.ones(5, np.float32), r"Events\.weight: expected dtype float64"),
        ("mask", np.ones((5, 2), bool), r"Events\.mask: expected shape \[N, P\] = \[5, 3\], got \[5, 2\]"),
        ("mask", np.ones((5, 3), np.int32), r"Events\.mask: expected dtype bool"),
        ("pid", np.ones((5, 3), np.int64), r"Events\.pid: expected dtype int32, got int64"),
        ("pid", np.ones((3, 5), np.int32), r"Events\.pid: expected shape \[N, P\] = \[5, 3\], got \[3, 5\]"),
        ("colour", np.ones((5, 3), np.int32), r"Events\.colour: expected shape \[N, P, 2\]"),
        ("extra", {"flag": np.ones(4)}, r"Events\.extra\['flag'\]: expected leading axis N = 5"),
    ],
)
def test_events_rejects_bad_fields(field, value, message):
    ev = make_events()
    with pytest.raises(ValueError, match=message):
        ev.replace(**{field: value})


@pytest.mark.parametrize("field", ["p", "weight"])
def test_events_rejects_non_finite(field):
    ev = make_events()
    bad = np.array(getattr(ev, field))
    bad.flat[3] = np.nan
    with pytest.raises(ValueError, match=rf"Events\.{field}: expected finite values, got 1 NaN/inf"):
        ev.replace(**{field: bad})


def test_validation_does_not_break_tracing():
    ev = make_events()

    @jax.jit
    def f(events):
        # Under jit values are unknown: only static checks run, and NaNs propagate.
        return events.replace(weight=events.weight * jnp.nan)

    out = f(ev)
    assert np.isnan(np.asarray(out.weight)).all()
    with pytest.raises(ValueError, match="Events.weight: expected shape"):
        jax.jit(lambda e: e.replace(weight=e.weight[:2]))(ev)


def test_events_is_a_pytree_with_named_paths():
    ev = make_events(colour=True).with_extra(flag=jnp.ones(5))
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(ev)]
    assert paths == [".p", ".weight", ".mask", ".pid", ".colour", ".extra['flag']"]
    doubled = jax.tree.map(lambda x: x, ev)
    assert isinstance(doubled, Events)
    assert jax.vmap(lambda e: e.weight.sum())(jax.tree.map(lambda x: jnp.stack([x, x]), ev)).shape == (2,)


def test_events_helpers():
    ev = make_events(n=6, cap=3).with_extra(tag=jnp.arange(6))
    assert (ev.n_events, ev.capacity, len(ev)) == (6, 3, 6)
    assert ev.dtype == jnp.float64
    np.testing.assert_array_equal(ev.multiplicity(), np.full(6, 2))
    np.testing.assert_allclose(ev.momentum_sum(), np.asarray(ev.p).sum(axis=1))
    sub = ev.take(jnp.array([4, 1]))
    np.testing.assert_array_equal(sub.extra["tag"], [4, 1])
    np.testing.assert_array_equal(ev[2:4].extra["tag"], [2, 3])
    np.testing.assert_array_equal(ev[-1].extra["tag"], [5])
    np.testing.assert_array_equal(ev[np.array([True, False] * 3)].extra["tag"], [0, 2, 4])
    with pytest.raises(IndexError):
        ev[6]
    padded = ev.pad_to(7)
    assert padded.capacity == 7 and not np.asarray(padded.mask)[:, 3:].any()
    np.testing.assert_array_equal(padded.momentum_sum(), ev.momentum_sum())
    with pytest.raises(ValueError, match="pad_to: capacity must be >= the current capacity 3"):
        ev.pad_to(2)


def test_concatenate_pads_to_largest_capacity():
    a, b = make_events(n=2, cap=3), make_events(n=4, cap=5)
    both = Events.concatenate([a, b])
    assert (both.n_events, both.capacity) == (6, 5)
    np.testing.assert_allclose(both.momentum_sum()[:2], a.momentum_sum())
    with pytest.raises(ValueError, match="either every batch has colour or none"):
        Events.concatenate([a, make_events(colour=True)])
    with pytest.raises(ValueError, match="at least one batch"):
        Events.concatenate([])


def test_numpy_round_trip_and_casting():
    ev = make_events(colour=True).with_extra(logp=jnp.linspace(0, 1, 5))
    data = ev.to_numpy()
    assert set(data) == {"p", "weight", "mask", "pid", "colour", "extra/logp"}
    back = Events.from_numpy(data)
    for a, b in zip(jax.tree.leaves(ev), jax.tree.leaves(back), strict=True):
        np.testing.assert_array_equal(a, b)
    # int64 pids and 0/1 masks from user files are cast when the values fit.
    loose = {"p": data["p"], "pid": data["pid"].astype(np.int64), "mask": data["mask"].astype(np.int8)}
    ev2 = Events.from_numpy(loose)
    assert ev2.pid.dtype == jnp.int32 and ev2.mask.dtype == jnp.bool_
    np.testing.assert_array_equal(ev2.weight, np.ones(5))
    with pytest.raises(ValueError, match="pid values do not fit in int32"):
        Events.from_numpy({"p": data["p"], "pid": np.full((5, 3), 2**40)})
    with pytest.raises(ValueError, match=r"missing required field\(s\) \['pid'\]"):
        Events.from_numpy({"p": data["p"]})
    single = Events.from_numpy(data, dtype=np.float32)
    assert single.p.dtype == jnp.float32 and single.weight.dtype == jnp.float32


# --------------------------------------------------------------------------- chain

BEAM = 91.0


def toy_source() -> Source:
    """Back-to-back massless pairs with isotropic direction; param: energy scale."""

    def init(key):
        del key
        return {"sqrt_s": jnp.asarray(BEAM)}

    def sample(params, key, n):
        u = jax.random.uniform(key, (n, 2), dtype=jnp.float64)
        cos, phi = 2 * u[:, 0] - 1, 2 * jnp.pi * u[:, 1]
        sin = jnp.sqrt(1 - cos**2)
        e = params["sqrt_s"] / 2 * jnp.ones(n)
        p1 = jnp.stack([e, e * sin * jnp.cos(phi), e * sin * jnp.sin(phi), e * cos], -1)
        p2 = p1 * jnp.array([[1.0, -1.0, -1.0, -1.0]])
        p = jnp.stack([p1, p2], axis=1)
        mask = jnp.ones((n, 2), bool)
        pid = jnp.broadcast_to(jnp.array([13, -13], jnp.int32), (n, 2))
        return Events(p=p, weight=jnp.ones(n), mask=mask, pid=pid)

    return Source(init, sample)


def smearing_layer() -> Layer:
    """Multiplies each particle's three-momentum by (1 + σ z); param: σ."""

    def init(key):
        del key
        return {"sigma": jnp.asarray(0.05)}

    def apply(params, key, events):
        z = jax.random.normal(key, events.p.shape[:2], dtype=events.dtype)
        scale = 1 + params["sigma"] * z
        p3 = events.p[..., 1:] * scale[..., None]
        p = kin.from_p3_m(p3, jnp.zeros(p3.shape[:-1]))
        return events.replace(p=jnp.where(events.mask[..., None], p, 0.0))

    return Layer(init, apply)


def efficiency_layer() -> Layer:
    """Multiplies event weights by a smooth function of the leading energy; param: slope."""

    def init(key):
        del key
        return {"slope": jnp.asarray(0.01)}

    def apply(params, key, events):
        del key
        e = jnp.max(events.p[..., 0], axis=1)
        return events.replace(weight=events.weight * jax.nn.sigmoid(params["slope"] * (e - 40.0)))

    return Layer(init, apply)


def mean_mass(events):
    m = kin.mass(events.momentum_sum())
    return jnp.sum(events.weight * m) / jnp.sum(events.weight)


def test_chain_init_and_sample(key):
    sim = chain(toy_source(), ("smear", smearing_layer()), ("eff", efficiency_layer()))
    params = sim.init(key)
    assert set(params) == {"source", "smear", "eff"}
    ev = sim.sample(params, key, 100)
    assert ev.n_events == 100
    assert np.all(np.asarray(ev.weight) < 1)


def test_appending_a_stage_keeps_earlier_random_numbers(key):
    short = chain(toy_source(), ("smear", smearing_layer()))
    long = chain(toy_source(), ("smear", smearing_layer()), ("eff", efficiency_layer()))
    a = short.sample(short.init(key), key, 50)
    b = long.sample(long.init(key), key, 50)
    np.testing.assert_array_equal(a.p, b.p)
    # The source alone sees the same key as inside a chain.
    src = toy_source()
    np.testing.assert_array_equal(
        src.sample(src.init(key), stage_key(key, 0), 50).p, chain(src).sample({"source": src.init(key)}, key, 50).p
    )


def test_chain_jit_vmap_grad_and_single_trace(key):
    sim = chain(("hard", toy_source()), ("smear", smearing_layer()), ("eff", efficiency_layer()))
    params = sim.init(key)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def loss(params, key):
        return mean_mass(sim.sample(params, key, 256))

    g = jax.grad(loss)(params, key)
    assert float(g["smear"]["sigma"]) != 0.0
    # Second call with new values and a new key reuses the trace.
    params2 = jax.tree.map(lambda x: x * 1.01, params)
    jax.grad(loss)(params2, jax.random.fold_in(key, 1))
    keys = jax.random.split(key, 4)
    per_key = jax.vmap(lambda k: mean_mass(sim.sample(params, k, 64)))(keys)
    assert per_key.shape == (4,) and len(set(np.asarray(per_key).tolist())) == 4
    # grad with respect to a middle stage's parameter agrees with finite differences (common random numbers).
    check_layer_grads(sim, params, key, 256, mean_mass, rtol=1e-6)


def test_chain_layer_conserves_momentum_when_it_should(key):
    src = toy_source()
    ev = src.sample(src.init(key), key, 10)
    assert_momentum_conserved(ev, jnp.array([BEAM, 0, 0, 0]))
    smeared = smearing_layer().apply({"sigma": jnp.asarray(0.1)}, key, ev)
    with pytest.raises(AssertionError, match="four-momentum not conserved"):
        assert_momentum_conserved(smeared, ev)


def test_chain_rejects_bad_stages():
    with pytest.raises(TypeError, match="first argument must be a Source"):
        chain(smearing_layer())
    with pytest.raises(TypeError, match=r"stage 1 must be a \(name, Layer\) pair"):
        chain(toy_source(), smearing_layer())
    with pytest.raises(ValueError, match="used twice"):
        chain(toy_source(), ("a", smearing_layer()), ("a", efficiency_layer()))
    sim = chain(toy_source(), ("a", smearing_layer()))
    with pytest.raises(ValueError, match=r"params lack the stage\(s\) \['a'\]"):
        sim.sample({"source": {"sqrt_s": jnp.asarray(91.0)}}, jax.random.key(0), 4)


@pytest.mark.parametrize(
    ("dtype", "stages"), [(jnp.float32, "shower+hadronization"), (jnp.float64, "shower")], ids=["float32", "float64"]
)
def test_jit_gives_the_events_of_jax_jit(key, dtype, stages):
    # The copy-insertion option of COMPILER_OPTIONS changes which buffers XLA copies, never a
    # value: the loops it speeds up (the shower's and the hadronization's) give the same events
    # bit for bit. The whole chain in float32 (the benchmarked one); in float64 the shower alone,
    # whose loop carries the per-slot arrays of every event (the same buffers in either dtype),
    # because compiling the chain twice more would double the test's time. Both programs use
    # XLA's fusion emitters (the default; conftest turns them off to compile faster): the older
    # emitters at optimisation level 0 give results that differ in the last bit with the option.
    from diffgen.core import COMPILER_OPTIONS, jit
    from diffgen.hadronization import hadronize
    from diffgen.processes import ee_to_qqbar
    from diffgen.shower import final_state_shower

    assert COMPILER_OPTIONS == {"xla_cpu_copy_insertion_use_region_analysis": True}
    emitters = {"xla_cpu_use_fusion_emitters": True}
    layers = [("shower", final_state_shower())]
    if stages == "shower+hadronization":
        layers.append(("hadronization", hadronize()))
    sim = chain(ee_to_qqbar(dtype=dtype), *layers)
    params = sim.init(key)

    def run(p, k):
        return sim.sample(p, k, 64)

    plain = jax.jit(run, compiler_options=emitters).lower(params, key).compile()
    tuned = jit(run, compiler_options=emitters).lower(params, key).compile()
    assert tuned.as_text() != plain.as_text()
    a, b = plain(params, key), tuned(params, key)
    # particles in every event beyond the two quarks, not empty slots
    assert int(a.mask.sum()) > 64 * (10 if len(layers) == 2 else 3)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_jit_merges_compiler_options():
    from diffgen.core import jit

    f = jit(lambda x: x + 1, compiler_options={"xla_cpu_copy_insertion_use_region_analysis": False})
    assert int(f(1)) == 2
    g = jit(lambda x, k: x * k, static_argnums=1)
    assert int(g(3, 2)) == 6
    with pytest.raises(Exception, match="xla_no_such_option"):
        jit(lambda x: x, compiler_options={"xla_no_such_option": True})(1)
    # JAX takes compiler options only on the outermost jit: nested, the plain jit runs.
    h = jit(lambda x: jnp.sin(x) * 3.0)
    assert float(jax.jit(lambda x: h(x) + 1.0)(0.5)) == pytest.approx(np.sin(0.5) * 3.0 + 1.0)
    assert float(jax.jit(lambda: h(jnp.asarray(0.5)))()) == pytest.approx(np.sin(0.5) * 3.0)
    assert float(jax.grad(h)(0.5)) == pytest.approx(np.cos(0.5) * 3.0)
    assert jax.vmap(h)(jnp.zeros(3)).shape == (3,)
    assert "sine" in h.lower(0.5).compile().as_text()
