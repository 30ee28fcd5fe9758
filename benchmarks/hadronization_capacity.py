"""Occupancy and sub-step cost of the ``hadronize`` layer at 91.2 GeV: what its capacities rest on.

Prints, for e⁺e⁻ → q q̄ → shower → ``hadronize()`` at its default capacities:

- the tails that set the defaults (``diffgen.hadronization.capacities``): the most clusters
  after fission and hadrons after the decays over all events, the overflow flags, and how
  many events exceed a few hadron counts (the working slots W of the unstable decays);
- per fission round and per decay round, the share of events that still have work (a cluster
  above the fission threshold, an unstable hadron) and the most unstable hadrons of one
  event: the rounds that ``formation.on_active_rows`` and the mixed decay lists shorten;
- events/s of the layer's three steps and of the whole layer, float32 and float64, with the
  active-event shortcut and without it (``formation.ACTIVE_ROW_FRACTION = 0``), same run.

    .venv/bin/python -m benchmarks.hadronization_capacity [--events 1000000] [--chunk 20000]
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


def activity(n: int) -> list[dict[str, object]]:
    """Share of events with work left before every fission and decay round (float32, n events)."""
    from diffgen.hadronization import hadrons as H
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
            {"loop": "fission", "before round": r + 1, "active share": share, "share > 16": "", "most in an event": ""}
        )
    (p, pid, mask), _ = _primaries(params, cl)
    for r in range(8):
        out = jit(
            lambda key, a, b, c, r=r: decay_unstable(key, a, b, c, n_rounds=r, working_capacity=width, capacity=cap)
        )(jax.random.key(4), p, pid, mask)
        count = np.asarray(jnp.sum(out[2] & ~H.is_stable(out[1]), axis=-1))
        rows.append(
            {
                "loop": "decays",
                "before round": r + 1,
                "active share": float(np.mean(count > 0)),
                "share > 16": float(np.mean(count > 16)),
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=positive_int, default=1_000_000, help="events for the tails (default 10^6)")
    parser.add_argument("--chunk", type=positive_int, default=20_000, help="events per batch for the tails")
    parser.add_argument("--n", type=positive_int, default=10_000, help="events for activity and timing (default 10^4)")
    parser.add_argument("--repeat", type=positive_int, default=5, help="timed repetitions (best is kept)")
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    print(machine_info())
    rows = []
    for dtype in (jnp.float32, jnp.float64):
        rows += rates(args.n, dtype, args.repeat)
    print_table(f"hadronize steps at 91.2 GeV, N = {args.n} (with and without the active-event rounds)", rows)
    print_table(f"work left before each round (N = {args.n}, float32)", activity(args.n))
    t = tails(args.events, args.chunk)
    print_table("tails at 91.2 GeV (float32, default capacities)", [t])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
