"""Occupancy and sub-step cost of the ``hadronize`` layer at 91.2 GeV: what its capacities rest on.

Prints, for e⁺e⁻ → q q̄ → shower → ``hadronize()`` at its default capacities:

- the tails that set the defaults (``diffgen.hadronization.capacities``): the most clusters
  after fission and hadrons after the decays over all events, the overflow flags, and how
  many events exceed a few hadron counts (the working slots W of the unstable decays);
- per fission round and per decay round, the share of events that still have work (a cluster
  above the fission threshold, an unstable hadron), and the mean and most unstable hadrons of
  one event: the rounds that ``formation.on_active_rows`` and the mixed decay lists shorten;
- events/s of the layer's three steps and of the whole layer, float32 and float64, with the
  active-event shortcut and without it (``formation.ACTIVE_ROW_FRACTION = 0``), same run;
- the cost of one unstable-decay round against the length M of the events' lists (float32),
  split by a straight line into the part every round pays and the part per list entry.

    .venv/bin/python -m benchmarks.hadronization_capacity [--events 1000000] [--chunk 20000]
        [--parts rates,activity,rounds,tails]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import best_time, machine_info, positive_int, print_table
from diffgen.core import jit


def _showered(n: int, dtype, seed: int):
    from diffgen.processes import ee_to_qqbar
    from diffgen.shower import final_state_shower

    src, shower = ee_to_qqbar(dtype=dtype), final_state_shower()
    sp, shp = src.init(jax.random.key(0)), shower.init(jax.random.key(0))
    return jit(lambda a, b, k: shower.apply(b, k, src.sample(a, k, n)))(sp, shp, jax.random.key(seed))


def _params(dtype):
    from diffgen.hadronization import hadronize

    params = hadronize().init(jax.random.key(0))
    return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, params)


def _primaries(params, clusters):
    """Primary hadrons of the clusters (reference decay, 2K slots, as the layer passes them on) and the decay."""
    from diffgen.hadronization.decay import decay_clusters, reference_angles
    from diffgen.hadronization.layer import WORKING_CLUSTERS

    dec = jit(
        lambda p, key, c: decay_clusters(
            p, key, c, reference_angles(), on_threshold="reshuffle", working_clusters=WORKING_CLUSTERS
        )
    )
    p, pid, mask, _ = dec(params, jax.random.key(3), clusters)
    return (p, pid, mask), dec


def tails(n_events: int, chunk: int) -> dict[str, object]:
    """Largest cluster and hadron counts and overflow flags over ``n_events`` events (float32)."""
    from diffgen.core import chain
    from diffgen.hadronization import hadronize
    from diffgen.processes import ee_to_qqbar
    from diffgen.shower import final_state_shower

    sim = chain(ee_to_qqbar(dtype=jnp.float32), ("shower", final_state_shower()), ("hadronization", hadronize()))
    params = sim.init(jax.random.key(0))

    def stats(p, k):
        ev = sim.sample(p, k, chunk)
        x = ev.extra
        return ev.mask.sum(1), x["n_clusters"], x["cluster_overflow"], x["hadron_overflow"], x["shower_overflow"]

    fn = jit(stats)
    parts = [[] for _ in range(5)]
    for i in range(max(1, n_events // chunk)):
        for j, v in enumerate(fn(params, jax.random.key(1000 + i))):
            parts[j].append(np.asarray(v))
    hadrons, clusters, c_ovf, h_ovf, s_ovf = (np.concatenate(p) for p in parts)
    from diffgen.hadronization.layer import WORKING_CLUSTERS

    out = {
        "events": len(hadrons),
        "mean clusters": round(float(clusters.mean()), 2),
        "max clusters": int(clusters.max()),
        f"events with > {WORKING_CLUSTERS} clusters": int((clusters > WORKING_CLUSTERS).sum()),
        "max hadrons": int(hadrons.max()),
        "cluster overflow": int(c_ovf.sum()),
        "hadron overflow": int(h_ovf.sum()),
        "shower overflow": int(s_ovf.sum()),
    }
    for c in (80, 96, 112):
        out[f"events with > {c} hadrons"] = int((hadrons > c).sum())
    return out


def _unstable_count(pid, mask) -> np.ndarray:
    """[N] number of unstable hadrons of every event (``pid``, ``mask`` [N, S])."""
    from diffgen.hadronization import hadrons as H

    return np.asarray(jnp.sum(mask & ~H.is_stable(pid), axis=-1))


def activity(n: int) -> list[dict[str, object]]:
    """Share of events with work left before every fission and decay round (float32, n events)."""
    from diffgen.hadronization.decay import decay_unstable
    from diffgen.hadronization.formation import _fission_split, form_clusters
    from diffgen.hadronization.layer import capacities

    dtype = jnp.float32
    partons = _showered(n, dtype, 1)
    params = _params(dtype)
    _, cap, width = capacities(partons.capacity)
    rows = []
    for r in range(9):
        cl, _ = jit(lambda p, key, e, r=r: form_clusters(p, key, e, n_fission_rounds=r))(
            params, jax.random.key(2), partons
        )
        split = jax.vmap(lambda *a: _fission_split(params, *a)[1])(cl.p_q, cl.p_qbar, cl.flav_q, cl.flav_qbar, cl.mask)
        share = float(jnp.mean(jnp.any(split, -1)))
        rows.append(
            {
                "loop": "fission",
                "before round": r + 1,
                "active share": share,
                "share > 16": "",
                "mean in an event": "",
                "most in an event": "",
            }
        )
    (p, pid, mask), _ = _primaries(params, cl)
    for r in range(8):
        out = jit(
            lambda key, a, b, c, r=r: decay_unstable(key, a, b, c, n_rounds=r, working_capacity=width, capacity=cap)
        )(jax.random.key(4), p, pid, mask)
        count = _unstable_count(out[1], out[2])
        rows.append(
            {
                "loop": "decays",
                "before round": r + 1,
                "active share": float(np.mean(count > 0)),
                "share > 16": float(np.mean(count > 16)),
                "mean in an event": float(count.mean()),
                "most in an event": int(count.max()),
            }
        )
    return rows


def rates(n: int, dtype, repeat: int) -> list[dict[str, object]]:
    """Events/s of the layer's steps and the whole layer, with and without the active-event shortcut."""
    from diffgen.hadronization import formation as F
    from diffgen.hadronization import hadronize
    from diffgen.hadronization.decay import decay_unstable
    from diffgen.hadronization.layer import capacities

    partons = _showered(n, dtype, 1)
    layer = hadronize()
    params = _params(dtype)
    _, cap, width = capacities(partons.capacity)
    saved = F.ACTIVE_ROW_FRACTION
    rows = []
    try:
        for fraction in (saved, 0.0):
            F.ACTIVE_ROW_FRACTION = fraction
            # New functions per setting: the fraction is read when they are traced.
            form = jit(lambda p, key, e: F.form_clusters(p, key, e))
            cl, _ = form(params, jax.random.key(2), partons)
            primaries, dec = _primaries(params, cl)
            unstable = jit(lambda key, a, b, c: decay_unstable(key, a, b, c, working_capacity=width, capacity=cap))
            whole = jit(lambda p, key, e: layer.apply(p, key, e))
            for name, fn, args in (
                ("cluster formation + fission", form, (params, jax.random.key(2), partons)),
                ("cluster decays", dec, (params, jax.random.key(3), cl)),
                ("unstable-hadron decays", unstable, (jax.random.key(4), *primaries)),
                ("hadronize (whole layer)", whole, (params, jax.random.key(5), partons)),
            ):
                t0 = time.perf_counter()
                jax.block_until_ready(fn(*args))
                first = time.perf_counter() - t0
                t = best_time(fn, *args, repeat=repeat)
                rows.append(
                    {
                        "step": name,
                        "dtype": jnp.dtype(dtype).name,
                        "active-event rounds": "on" if fraction else "off",
                        "compile+run s": first,
                        "events_per_s": n / t,
                        "us_per_event": t / n * 1e6,
                    }
                )
    finally:
        F.ACTIVE_ROW_FRACTION = saved
    return rows


#: List lengths M of the timed single rounds (:func:`round_costs`).
ROUND_COST_LISTS = (16, 32, 64)

#: The parts of the report, in the order printed.
PARTS = ("rates", "activity", "rounds", "tails")


def round_costs(n: int, repeat: int, lists: tuple[int, ...] = ROUND_COST_LISTS) -> tuple[list[dict[str, object]], dict]:
    """Cost of one unstable-decay round with every event on a list of M entries (float32, n events).

    The primary hadrons of n events are decayed, round by round, until no event has more
    unstable hadrons than the shortest list. One more round is then timed with every event on
    an M-entry list (each block's list of unstable particles M entries per event long:
    ``decay.decay_list_lengths`` patched to give M · rows first, the shortest that holds every
    event), less the same call with no round (sorting the particles to the front, padding to
    C). A least-squares line through (M, µs per event) splits a round's cost into the part it
    pays whatever its list (the intercept: the per-event bounds of the list, the branch choice) and the part
    per list entry (the slope: hashing, table lookups, boosts, writes); the mean number of
    unstable hadrons per event is the share of the list that does work.

    Args:
      n: events.
      repeat: timed calls per program (the best is kept).
      lists: the list lengths M, each ≥ 1.

    Returns:
      ``(rows, fit)``: one row per M (µs per event of the round, events/s) and the fit
      (``fixed_us_per_event``, ``us_per_list_entry``, the round's ``unstable_mean`` and
      ``unstable_max`` per event, and ``rounds_before``).

    Raises:
      ValueError: an M < 1, or fewer than two list lengths.
      RuntimeError: some event holds more unstable hadrons than the shortest list after 8
        rounds (its daughters found no free slot).
    """
    from diffgen.hadronization import decay as D
    from diffgen.hadronization.formation import form_clusters
    from diffgen.hadronization.layer import capacities

    if len(lists) < 2 or any(not isinstance(m, int) or m < 1 for m in lists):
        raise ValueError(f"round_costs: need two or more list lengths >= 1, got {lists!r}")
    dtype = jnp.float32
    partons = _showered(n, dtype, 1)
    params = _params(dtype)
    _, cap, width = capacities(partons.capacity)
    cl, _ = jit(lambda p, key, e: form_clusters(p, key, e))(params, jax.random.key(2), partons)
    (p, pid, mask), _ = _primaries(params, cl)
    one_round = jit(lambda key, a, b, c: D.decay_unstable(key, a, b, c, n_rounds=1, capacity=width)[:3])
    count = _unstable_count(pid, mask)
    before = 0
    while int(count.max()) > min(lists):
        if before == 8:
            raise RuntimeError(f"round_costs: an event still holds {int(count.max())} unstable hadrons after 8 rounds")
        p, pid, mask = one_round(jax.random.fold_in(jax.random.key(5), before), p, pid, mask)
        count = _unstable_count(pid, mask)
        before += 1
    args = (jax.random.key(6), p, pid, mask)

    def timed(rounds: int) -> float:
        fn = jit(
            lambda key, a, b, c: D.decay_unstable(key, a, b, c, n_rounds=rounds, working_capacity=width, capacity=cap)
        )
        jax.block_until_ready(fn(*args))
        return best_time(fn, *args, repeat=repeat) / n * 1e6

    saved = D.decay_list_lengths
    try:
        base = timed(0)
        us = []
        for m in lists:
            # Read when the function is traced: every event on the M-entry list.
            D.decay_list_lengths = lambda rows, slots, factor=2, m=m: (m * rows, rows * slots)
            us.append(timed(1) - base)
    finally:
        D.decay_list_lengths = saved
    slope, intercept = np.polyfit(np.asarray(lists, float), np.asarray(us), 1)
    rows = [
        {"list entries M": m, "us_per_event (one round)": u, "events_per_s": 1e6 / u}
        for m, u in zip(lists, us, strict=True)
    ]
    fit = {
        "fixed_us_per_event": float(intercept),
        "us_per_list_entry": float(slope),
        "unstable_mean": float(count.mean()),
        "unstable_max": int(count.max()),
        "rounds_before": before,
        "no_round_us_per_event": base,
    }
    return rows, fit


def _parts(text: str) -> tuple[str, ...]:
    """argparse type: a comma-separated subset of :data:`PARTS`."""
    parts = tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = [p for p in parts if p not in PARTS]
    if not parts or unknown:
        raise argparse.ArgumentTypeError(f"need a comma-separated subset of {','.join(PARTS)}, got {text!r}")
    return parts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=positive_int, default=1_000_000, help="events for the tails (default 10^6)")
    parser.add_argument("--chunk", type=positive_int, default=20_000, help="events per batch for the tails")
    parser.add_argument("--n", type=positive_int, default=10_000, help="events for activity and timing (default 10^4)")
    parser.add_argument("--repeat", type=positive_int, default=5, help="timed repetitions (best is kept)")
    parser.add_argument(
        "--parts", type=_parts, default=PARTS, help=f"comma-separated parts to run (default {','.join(PARTS)})"
    )
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    print(machine_info())
    if "rates" in args.parts:
        rows = []
        for dtype in (jnp.float32, jnp.float64):
            rows += rates(args.n, dtype, args.repeat)
        print_table(f"hadronize steps at 91.2 GeV, N = {args.n} (with and without the active-event rounds)", rows)
    if "activity" in args.parts:
        print_table(f"work left before each round (N = {args.n}, float32)", activity(args.n))
    if "rounds" in args.parts:
        rows, fit = round_costs(args.n, args.repeat)
        print_table(
            f"one unstable-decay round, every event on an M-entry list (N = {args.n}, float32, "
            f"after {fit['rounds_before']} rounds: {fit['unstable_mean']:.2f} unstable hadrons per event, "
            f"at most {fit['unstable_max']})",
            rows,
        )
        print(
            f"line through the rows: {fit['fixed_us_per_event']:.2f} us per event per round whatever M, "
            f"+ {fit['us_per_list_entry']:.3f} us per list entry; "
            f"the call without rounds: {fit['no_round_us_per_event']:.2f} us per event"
        )
    if "tails" in args.parts:
        t = tails(args.events, args.chunk)
        print_table("tails at 91.2 GeV (float32, default capacities)", [t])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
