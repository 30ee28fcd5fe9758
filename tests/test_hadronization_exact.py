"""Hadronization shortcuts that must not change the result: block draws, decay lists, working capacity,
rounds on the active events only."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffgen.hadronization import decay as D
from diffgen.hadronization import formation as F
from diffgen.hadronization import hadronize
from diffgen.hadronization.formation import uniform, uniform_at, uniform_block
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
    # Given rows of the first axis (repeated, unordered), with and without a permutation.
    rows = jnp.array([9, 0, 12, 9], jnp.int32)
    for key in (keys[0], rbg):
        full = np.asarray(jax.random.uniform(key, shape, dtype))[np.asarray(rows)]
        block = jax.jit(lambda k, r: uniform_block(k, shape, (5, r, 2, 0), (4, 1, 7, 3), dtype, rows=rows))(
            key, jnp.int32(2)
        )
        np.testing.assert_array_equal(np.asarray(block), full[:, 2:3, 2:9])
        moved = uniform_block(key, shape, (0, 1, 0, 0), (4, 2, 11, 3), dtype, rows=rows, axes=(1, 0, 2, 3))
        np.testing.assert_array_equal(np.asarray(moved), np.transpose(full[:, 1:3], (1, 0, 2, 3)))
    with pytest.raises(ValueError, match="rows must have shape"):
        uniform_block(keys[0], shape, (0, 0, 0, 0), (3, 1, 1, 1), dtype, rows=rows)


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_uniform_at_gives_the_chosen_elements_of_jax_random_uniform(dtype):
    shape = (13, 5, 11, 3)
    rng = np.random.default_rng(1)
    index = tuple(rng.integers(0, d, 40).astype(np.int32) for d in shape[:3])
    for key in (jax.random.key(7), jax.random.PRNGKey(3), jax.random.key(5, impl="rbg")):
        full = np.asarray(jax.random.uniform(key, shape, dtype))
        got = jax.jit(lambda k, e, r, s: uniform_at(k, shape, (e[None], r, s[None], jnp.arange(3)[:, None]), dtype))(
            key, index[0], jnp.int32(2), index[2]
        )
        assert got.shape == (3, 40) and got.dtype == jnp.dtype(dtype)
        np.testing.assert_array_equal(np.asarray(got), full[index[0], 2, index[2]].T)
    with pytest.raises(ValueError, match="one index per axis"):
        uniform_at(jax.random.key(0), shape, index, dtype)


@pytest.mark.parametrize("n", [40, 1024])
def test_on_active_rows_is_the_row_function_on_the_active_rows(n):
    rng = np.random.default_rng(n)
    base = {"a": jnp.asarray(rng.normal(size=(n, 3))), "b": jnp.asarray(rng.integers(0, 9, size=n), jnp.int32)}
    inputs = jnp.asarray(rng.normal(size=(n, 2)))
    active = jnp.asarray(rng.permutation(n) % 5 == 0)  # a fifth of the rows, scattered

    def fn(rows, x):
        return {"a": rows["a"] * x[:, :1] + x[:, 1:], "b": rows["b"] + 1}

    size = F.active_row_capacity(n, min_rows=1)
    assert 0 < size < n
    assert bool(F.active_rows_fit(active, size))
    got = jax.jit(lambda b, x, a: F.on_active_rows(fn, b, x, a, size))(base, inputs, active)
    want = jax.tree.map(
        lambda new, old: jnp.where(active.reshape(-1, *[1] * (old.ndim - 1)), new, old), fn(base, inputs), base
    )
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(np.asarray(g), np.asarray(w))
    # Too many active rows in a block is detected (the caller then uses all rows).
    assert not bool(F.active_rows_fit(jnp.ones(n, bool), size))
    assert F.active_row_capacity(n, 0.0, min_rows=1) == 0 and F.active_row_capacity(3, 0.25, min_rows=1) == 1
    assert F.active_row_capacity(n, min_rows=n + 1) == 0


def test_active_row_tiers_pick_the_smallest_set_that_holds_every_block():
    n = 4096  # 16 blocks of 256 rows
    sizes = F.active_row_capacities(n, min_rows=1)
    assert sizes == (64, 16, 4)  # a quarter of a block, then 1/4 and 1/16 of that
    assert F.active_row_capacities(n, min_rows=n + 1) == ()
    rows = np.zeros((16, 256), bool)
    tier = jax.jit(lambda a: F.active_rows_tier(a, sizes))
    for most, want in ((0, 2), (4, 2), (5, 1), (16, 1), (17, 0), (64, 0), (65, -1)):
        rows[:] = False
        rows[3, :most] = True  # the fullest block decides
        rows[7, : min(most, 2)] = True
        assert int(tier(jnp.asarray(rows.reshape(-1)))) == want, most
        assert bool(F.active_rows_fit(jnp.asarray(rows.reshape(-1)), 16)) == (most <= 16)


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


def _coarse_lengths(rows, slots, factor=2):
    """Three list lengths (2 and 16 entries per event, and every slot): a shorter compile than
    :func:`decay.decay_list_lengths`, with the choice among lengths still exercised."""
    return tuple(sorted({min(2 * rows, rows * slots), min(16 * rows, rows * slots), rows * slots}))


def test_decay_lists_and_working_capacity_give_the_same_decays(primaries, monkeypatch):
    ev, labels = primaries
    most = int(np.max(np.sum(np.asarray(ev.mask), axis=1)))
    # A small batch: two list lengths on all C slots.
    default = _decay(ev, labels)
    # The lists (decay_list_lengths) and the working capacity of large batches, on these 24
    # events: W = 120 between the occupied slots and C = 160.
    monkeypatch.setattr(F, "ACTIVE_ROW_MIN_EVENTS", 1)
    assert most < 120 < ev.capacity
    lists = _decay(ev, labels, working_capacity=120)
    monkeypatch.setattr(D, "decay_list_lengths", _coarse_lengths)
    # A working capacity below the primaries' slots forces the all-capacity repetition.
    small = _decay(ev, labels, working_capacity=most // 2)
    # Reference: every round on the longest list (as long as the block's slots).
    monkeypatch.setattr(D, "decay_list_lengths", lambda rows, slots, factor=2: (rows * slots,))
    every_slot = _decay(ev, labels)
    n_final = default[2].sum(axis=1)
    assert n_final.min() > most // 2 and np.all(~default[3])
    for other in (lists, small, every_slot):
        np.testing.assert_array_equal(other[1], default[1])  # pid
        np.testing.assert_array_equal(other[2], default[2])  # mask
        np.testing.assert_array_equal(other[3], default[3])  # overflow
        for name in ("label", "parent", "decayed_pid", "decayed_parent", "decayed_label", "decayed_mask"):
            np.testing.assert_array_equal(other[4][name], default[4][name])
        # Momenta agree to rounding (XLA may contract multiply-adds differently).
        np.testing.assert_allclose(other[0], default[0], rtol=0, atol=1e-9)
        np.testing.assert_allclose(other[4]["decayed_p"], default[4]["decayed_p"], rtol=0, atol=1e-9)


def test_empty_slots_are_ignored_on_input_and_zero_on_output(primaries):
    """Whatever the empty input slots hold, the decays are the same and the empty output slots are zero."""
    ev, labels = primaries
    want = _decay(ev, labels)
    junk = ev.replace(p=jnp.where(ev.mask[..., None], ev.p, 7.0), pid=jnp.where(ev.mask, ev.pid, 213))
    got = _decay(junk, labels)
    for g, w in zip(got[:4], want[:4], strict=True):
        np.testing.assert_array_equal(g, w)
    empty = ~got[2]
    assert empty.any() and got[2].any()
    assert np.all(got[0][empty] == 0.0) and np.all(got[1][empty] == 0)


def test_fast_light_hadrons_decay_with_energy_and_momentum_conserved_in_float32():
    """π⁰ → γγ and ρ⁰ → π⁺π⁻ at up to 45 GeV (γ up to 330) keep the parent's four-momentum in float32.

    With γ = 1/√(1 − β²) the boost was off by a few per mille at γ ~ 300 in float32; the
    sum of the daughters must equal the parent to a few float32 roundings of E.
    """
    n = 256
    rng = np.random.default_rng(5)
    pid = np.where(np.arange(n) % 2 == 0, 111, 113).astype(np.int32)
    mass = np.asarray(D.H.hadron_mass(jnp.asarray(pid), jnp.float64))
    energy = rng.uniform(5.0, 45.0, n)
    direction = rng.normal(size=(n, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    p3 = np.sqrt(energy**2 - mass**2)[:, None] * direction
    p_in = np.zeros((n, 4, 4), np.float32)
    p_in[:, 0] = np.concatenate([energy[:, None], p3], axis=1)
    pid_in = np.zeros((n, 4), np.int32)
    pid_in[:, 0] = pid
    mask = np.zeros((n, 4), bool)
    mask[:, 0] = True
    fn = jax.jit(lambda k, p, i, m: D.decay_unstable(k, p, i, m, n_rounds=2))
    p, _, mask_out, overflow = fn(jax.random.key(4), jnp.asarray(p_in), jnp.asarray(pid_in), jnp.asarray(mask))
    assert p.dtype == jnp.float32 and not np.any(np.asarray(overflow))
    mask_out = np.asarray(mask_out)
    assert np.all(mask_out.sum(axis=1) == 2)  # two daughters, both stable
    total = np.sum(np.where(mask_out[..., None], np.asarray(p, np.float64), 0.0), axis=1)
    eps = float(np.finfo(np.float32).eps)
    error = np.abs(total - p_in[:, 0].astype(np.float64)) / energy[:, None]
    assert error.max() < 8 * eps, error.max() / eps


def test_output_capacity_is_that_of_padded_inputs(primaries, monkeypatch):
    """``capacity=C`` on the occupied input slots gives the decays of the inputs padded to C."""
    ev, labels = primaries
    s = 80  # the 2K primary-hadron slots (max_clusters = 40); the rest is padding
    assert not np.asarray(ev.mask)[:, s:].any()
    most = int(np.max(np.sum(np.asarray(ev.mask), axis=1)))
    cut = ev.replace(p=ev.p[:, :s], pid=ev.pid[:, :s], mask=ev.mask[:, :s])
    # All C slots (a small batch), then the working capacity of large batches on these 24
    # events: W between S and C, W below S (the repetition on all C slots).
    for width in (None, 120, most // 2):
        if width is not None:
            monkeypatch.setattr(F, "ACTIVE_ROW_MIN_EVENTS", 1)
            monkeypatch.setattr(D, "decay_list_lengths", _coarse_lengths)
        want = _decay(ev, labels, working_capacity=width)
        got = _decay(cut, labels[:, :s], working_capacity=width, capacity=ev.capacity)
        assert got[0].shape == want[0].shape == ev.p.shape
        for name in ("label", "parent", "decayed_pid", "decayed_parent", "decayed_label", "decayed_mask"):
            np.testing.assert_array_equal(got[4][name], want[4][name])
        for g, w in zip(got[1:4], want[1:4], strict=True):
            np.testing.assert_array_equal(g, w)
        np.testing.assert_allclose(got[0], want[0], rtol=0, atol=1e-9)
    assert want[2].sum() > ev.mask.sum()  # something decayed
    with pytest.raises(ValueError, match="capacity must be an int >= the 80 input slots"):
        D.decay_unstable(jax.random.key(0), cut.p, cut.pid, cut.mask, capacity=40)


def test_decay_list_lengths_rise_by_the_factor_up_to_every_slot():
    assert D.decay_list_lengths(625, 112) == (156, 312, 625, 1250, 2500, 5000, 10000, 20000, 40000, 70000)
    assert D.decay_list_lengths(40, 10, 4) == (2, 10, 40, 160, 400)
    assert D.decay_list_lengths(1, 1) == (1,)
    with pytest.raises(ValueError, match="factor must be an int >= 2"):
        D.decay_list_lengths(8, 8, 1)


def _round_by_hand(u0, pid, n):
    """One decay round of every event by a plain loop over the events and their slots (numpy);
    u0 [N, C] the channel uniforms of the round (the k-th unstable particle of event e takes u0[e, k])."""
    table = {k: np.asarray(v) for k, v in D.H.TABLE.items()}
    pid, n = pid.copy(), n.copy()
    w = pid.shape[1]
    for e in range(pid.shape[0]):
        slots = [s for s in range(n[e]) if not table["stable"][min(abs(pid[e, s]), D.H.MAX_ABS_PID - 1)]]
        appended = 0
        for k, s in enumerate(slots):
            a = min(abs(pid[e, s]), D.H.MAX_ABS_PID - 1)
            ch = int(u0[e, k] >= table["br"][a, 0])
            d1, d2 = (int(table[d][a, ch]) for d in ("d1", "d2"))
            if pid[e, s] < 0:
                d1, d2 = (int(D.H.conjugate_pid(jnp.int32(d))) if d else 0 for d in (d1, d2))
            if d2 == 0:
                pid[e, s] = d1
            elif n[e] + appended < w:
                pid[e, s], pid[e, n[e] + appended] = d1, d2
                appended += 1
        n[e] += appended
    return pid, n


def test_decay_rounds_keep_the_list_of_the_unstable_particles(primaries):
    """Round after round, the list a round builds from its decays is the one built from the slots,
    and the hadrons are those of a plain loop over the events' unstable particles in slot order
    with the uniforms (event, round, k) of the documented draw."""
    ev, _ = primaries
    front = F.to_front(ev.mask)
    w = ev.mask.shape[1]
    st = {
        "p": jnp.take_along_axis(ev.p, front[..., None], axis=1),
        "pid": jnp.take_along_axis(ev.pid, front, axis=1),
        "n": jnp.sum(ev.mask, axis=-1, dtype=jnp.int32),
        "overflow": jnp.zeros(ev.n_events, bool),
    }
    key, n_rounds = jax.random.key(2), 8
    shape = (ev.n_events, n_rounds, w, 3)
    longest = ev.n_events * w

    @functools.partial(jax.jit, static_argnums=2)
    def first_list(pid, n, size):
        live = jnp.arange(w, dtype=jnp.int32)[None, :] < n[:, None]
        return D._first_unstable_list(live & ~D.H.is_stable(pid), size)

    ls = first_list(st["pid"], st["n"], longest)
    # The documented draw: the k-th unstable particle of event e takes element (e, r, k).
    u0 = np.asarray(jax.random.uniform(key, shape, ev.p.dtype))[..., 0]
    one_round = jax.jit(lambda st, ls, r: D._unstable_round(key, shape, jnp.int32(0), st, ls, r, longest, 0))
    totals = []
    for r in range(n_rounds):
        want_pid, want_n = _round_by_hand(u0[:, r], np.asarray(st["pid"]), np.asarray(st["n"]))
        st, ls = one_round(st, ls, jnp.int32(r))
        np.testing.assert_array_equal(np.asarray(st["n"]), want_n)
        np.testing.assert_array_equal(
            np.asarray(st["pid"])[np.arange(w)[None] < want_n[:, None]], want_pid[np.arange(w)[None] < want_n[:, None]]
        )
        fresh = first_list(st["pid"], st["n"], longest)
        total = int(fresh["total"])
        assert int(ls["total"]) == total
        # Computed on the first entries only (padded to the longest list): the same list.
        short = first_list(st["pid"], st["n"], max(total, 1))
        for name in fresh:
            np.testing.assert_array_equal(np.asarray(short[name]), np.asarray(fresh[name]))
        for name in ("off", "count"):
            np.testing.assert_array_equal(np.asarray(ls[name]), np.asarray(fresh[name]))
        for name in ("slot", "event"):
            np.testing.assert_array_equal(np.asarray(ls[name])[:total], np.asarray(fresh[name])[:total])
        totals.append(total)
    assert totals[0] > 0 and totals[-1] == 0 and not np.asarray(st["overflow"]).any()


def _count_row_sets(monkeypatch, *modules):
    """Replace ``on_active_rows`` in ``modules`` by a wrapper that records, at run time, the row-set
    size of every call; returns the list it appends to."""
    taken = []
    original = F.on_active_rows

    def counted(*args):
        size = args[-1]
        jax.debug.callback(lambda: taken.append(size))
        return original(*args)

    for module in modules:
        monkeypatch.setattr(module, "on_active_rows", counted)
    return taken


def test_rounds_on_the_active_events_give_the_same_hadrons(monkeypatch):
    """Fission and cluster-decay rounds on the few events with work change nothing.

    The reference turns the shortcut off (``ACTIVE_ROW_FRACTION = 0``: every round on every
    event). A callback counts the rounds that took the shortcut, so the test cannot pass by
    never using it.
    """
    # The shortcut is compiled for large batches only; 600 events exercise it as well.
    monkeypatch.setattr(F, "ACTIVE_ROW_MIN_EVENTS", 512)
    monkeypatch.setattr(D, "decay_list_lengths", _coarse_lengths)
    partons = parton_chains(jax.random.key(5), 600, n_gluons=4, sqrt_s=91.2, capacity=8)
    layer = hadronize(record_history=True)
    params = layer.init(jax.random.key(0))
    taken = _count_row_sets(monkeypatch, F, D)
    fast = jax.tree.map(np.asarray, jax.jit(lambda *a: layer.apply(*a))(params, jax.random.key(3), partons))
    # Late fission rounds (the unstable decays work on lists of their own; the smaller row sets
    # of formation.ACTIVE_ROW_TIERS are tested in test_on_active_rows_is_the_row_function_on_the_active_rows).
    assert len(taken) >= 4
    monkeypatch.setattr(F, "ACTIVE_ROW_FRACTION", 0.0)
    # The reference decays as a small batch (two list lengths on all C slots, instead of three
    # and the working capacity).
    monkeypatch.setattr(F, "ACTIVE_ROW_MIN_EVENTS", 4096)
    taken.clear()
    # A new function: a new trace, which reads the fraction again.
    every = jax.tree.map(np.asarray, jax.jit(lambda *a: layer.apply(*a))(params, jax.random.key(3), partons))
    assert not taken
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(fast), jax.tree.leaves(every), strict=True):
        if a.dtype.kind == "f":
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-9, err_msg=str(path))
        else:
            np.testing.assert_array_equal(a, b, err_msg=str(path))
    # The decay rounds build each round's list of unstable particles from their own decays
    # instead of from the slots: a wrong list would skip decays, and unstable hadrons would be left.
    final = np.abs(fast.pid[fast.mask])
    assert final.size > 0 and set(final.tolist()) <= {22, 211, 321, 130}
    assert not fast.extra["hadron_overflow"].any()


def test_working_clusters_give_the_same_cluster_decays(monkeypatch):
    """``decay_clusters(working_clusters=K_w)``: the few events with clusters beyond K_w on all K
    slots, or every event when they are not few; the decays of ``working_clusters=None``."""
    monkeypatch.setattr(F, "ACTIVE_ROW_MIN_EVENTS", 1)  # the few-events path also for a small batch
    n = 256
    partons = parton_chains(jax.random.key(5), n, n_gluons=6, sqrt_s=91.2, capacity=8)
    layer = hadronize(max_clusters=40)
    params = layer.init(jax.random.key(0))
    clusters, _ = F.form_clusters(params, jax.random.key(1), partons, max_clusters=40)
    counts = np.sum(np.asarray(clusters.mask), axis=1)
    # clusters at the front of the slots, as form_clusters leaves them
    assert np.all(np.asarray(clusters.mask)[np.arange(40)[None, :] >= counts[:, None]] == 0)

    def run(kw):
        fn = jax.jit(
            lambda p, k, c: D.decay_clusters(
                p, k, c, D.reference_angles(), on_threshold="reshuffle", record_history=True, working_clusters=kw
            )
        )
        return jax.tree.map(np.asarray, fn(params, jax.random.key(2), clusters))

    want = run(None)
    assert want[3]["n_single"].sum() > 0  # the threshold rule and its reshuffling are exercised
    few = int(np.sort(counts)[-5])  # 4 events beyond: the few-events path
    half = int(np.median(counts))  # about half the events beyond: every event on all K
    assert few < counts.max() and np.sum(counts > half) > n // 4
    for kw in (few, half, 64):
        got = run(kw)
        for g, w in ((got[1], want[1]), (got[2], want[2])):  # pid, mask
            np.testing.assert_array_equal(g, w)
        for name in ("n_single", "reshuffle_failed"):
            np.testing.assert_array_equal(got[3][name], want[3][name])
        # floats to rounding (XLA may contract multiply-adds differently for another width)
        np.testing.assert_allclose(got[0], want[0], rtol=0, atol=1e-9)
        for name in ("cluster_p", "logp", "angles"):
            np.testing.assert_allclose(got[3][name], want[3][name], rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match="working_clusters must be an int >= 1"):
        D.decay_clusters(params, jax.random.key(2), clusters, working_clusters=0)


def test_working_clusters_give_the_same_fission(monkeypatch):
    """``form_clusters(working_clusters=K_w)``: fission on K_w slots, the few events that do not fit
    redone on all K (the smallest set of rows), every event on all K when they are not few; the
    clusters of ``working_clusters=None``. A callback records the sets of rows used, so the test
    cannot pass without the redo."""
    monkeypatch.setattr(F, "ACTIVE_ROW_MIN_EVENTS", 1)  # the rows of the few events also for a small batch
    n, k = 256, 40
    partons = parton_chains(jax.random.key(5), n, n_gluons=6, sqrt_s=91.2, capacity=8)
    params = hadronize(max_clusters=k).init(jax.random.key(0))
    taken = _count_row_sets(monkeypatch, F)

    def run(kw):
        taken.clear()
        fn = jax.jit(
            lambda p, key, e: F.form_clusters(p, key, e, max_clusters=k, record_history=True, working_clusters=kw)
        )
        return jax.tree.map(np.asarray, fn(params, jax.random.key(1), partons))

    want = run(None)
    counts = np.sum(want[0].mask, axis=1)
    assert (np.asarray(want[1]["history"]["fission_target"]) >= 0).any()  # fission happens
    smallest = F.active_row_capacities(n)[-1]
    few = int(np.sort(counts)[-smallest - 1])  # at most `smallest` events beyond: redone in those rows
    half = int(np.median(counts))  # about half the events beyond: every event on all K
    assert few < counts.max() and np.sum(counts > half) > n // 4
    for kw, redone in ((few, True), (half, False), (k + 8, False)):
        got = run(kw)
        assert (smallest in taken) == redone, (kw, taken)
        for (path, g), w in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want), strict=True):
            if g.dtype.kind == "f":
                # to rounding (XLA may contract multiply-adds differently for another width)
                np.testing.assert_allclose(g, w, rtol=0, atol=1e-9, err_msg=f"{kw} {path}")
            else:
                np.testing.assert_array_equal(g, w, err_msg=f"{kw} {path}")
    with pytest.raises(ValueError, match="working_clusters must be an int >= 1"):
        F.form_clusters(params, jax.random.key(1), partons, working_clusters=0)
