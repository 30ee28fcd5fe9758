"""Benchmark of the e⁺e⁻ → hadrons chain on one core and on all cores: how its speed scales.

Every mode runs in fresh processes, started together and timed at the same moment:

* ``one core``: one process confined to one core (its CPU affinity is set before it starts,
  so XLA sizes its thread pool to that core) calls the chunk program
  (``diffgen.parallel.chunk_program``) of ``--chunk`` events;
* ``threads``: one process on all cores runs ``diffgen.parallel.sample_chunks`` with one
  chunk per core at once (what the ``chains`` section of ``python -m benchmarks`` times);
* ``processes``: one process per core, each confined to its core, each calling the chunk
  program, all timed in the same window.

Baseline: the ``one core`` mode of the same round. The modes alternate round by round (the
machine's speed drifts); a persistent compilation cache in a temporary directory lets every
process after the first load the executables instead of compiling them again.

Rates: "all calls" divides the events of all timed calls by the wall time from the common
start until the last process finished them (the throughput of the whole mode); "best call"
is the events of one call (all processes' calls for ``processes``) over the best call's time.

Run: ``.venv/bin/python -m benchmarks.core_scaling [--chunk 5000] [--calls 7] [--rounds 2]
[--dtype float32] [--out FILE.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

from benchmarks.common import machine_info, positive_int, print_table, timed_call, write_json

MODES = ("one core", "threads", "processes")


def _child(mode: str, chunk: int, calls: int, dtype_name: str, rank: int) -> None:
    """Compile, warm up, report ready, wait for the go, time ``calls`` calls, report them (JSON)."""
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    from benchmarks.__main__ import _hadron_chain, _key
    from diffgen.parallel import chunk_program, default_workers, sample_chunks

    sim = _hadron_chain(jnp.dtype(dtype_name), False)
    params, key = sim.init(_key(0)), _key(1)
    if mode == "threads":
        workers = default_workers()
        n = workers * chunk

        def call() -> Any:
            return sample_chunks(sim, params, key, n, chunk_size=chunk, workers=workers)

    else:
        n = chunk
        program = chunk_program(sim, chunk)
        index = jnp.asarray(rank, jnp.int32)

        def call() -> Any:
            return program(params, key, index)

    jax.block_until_ready(call())
    print("ready", flush=True)
    sys.stdin.readline()
    times = [timed_call(call)[0] for _ in range(calls)]
    print(json.dumps({"n": n, "times": times, "end": time.time()}), flush=True)


def _run_mode(mode: str, args: argparse.Namespace, cores: list[int], env: dict[str, str]) -> dict[str, Any]:
    """Start the mode's processes, let them compile, start their timing together, collect it."""
    pinned = {"one core": cores[:1], "threads": [None], "processes": cores}[mode]
    procs = []
    for rank, core in enumerate(pinned):
        cmd = [sys.executable, "-m", "benchmarks.core_scaling", "--child", mode, "--rank", str(rank)]
        cmd += ["--chunk", str(args.chunk), "--calls", str(args.calls), "--dtype", args.dtype]
        preexec = None if core is None else (lambda c=core: os.sched_setaffinity(0, {c}))
        procs.append(
            subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, preexec_fn=preexec)
        )
    try:
        for p in procs:
            if p.stdout.readline().strip() != "ready":
                raise RuntimeError(f"core_scaling: a {mode!r} process failed before timing (exit code {p.wait()})")
        start = time.time()
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        results = [json.loads(p.stdout.readline()) for p in procs]
    except BaseException:
        for p in procs:  # the others would wait for the start forever
            p.kill()
        raise
    finally:
        for p in procs:
            p.wait()
    return {"mode": mode, **rates(results, start)}


def rates(results: list[dict[str, Any]], start: float) -> dict[str, Any]:
    """Events/s of a mode from its processes' reports (see the module docstring).

    Args:
      results: per process ``{"n": events per call, "times": [s] of its timed calls, "end":
        wall-clock time (s since the epoch) when its last call finished}``.
      start: wall-clock time at which all processes were told to start timing.

    Returns:
      ``processes``, ``events_per_call`` (all processes), ``events_per_s_all_calls`` (all
      timed events over the time from start to the last end) and ``events_per_s_best_call``
      (the events of one call of every process over the slowest of their best calls).
    """
    events = sum(r["n"] * len(r["times"]) for r in results)
    per_call = sum(r["n"] for r in results)
    return {
        "processes": len(results),
        "events_per_call": per_call,
        "events_per_s_all_calls": events / (max(r["end"] for r in results) - start),
        "events_per_s_best_call": per_call / max(min(r["times"]) for r in results),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunk", type=positive_int, default=5000, help="events per chunk program call")
    parser.add_argument("--calls", type=positive_int, default=7, help="timed calls per process")
    parser.add_argument("--rounds", type=positive_int, default=2, help="rounds of the three modes")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--out", help="also write the rows as JSON to this file")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--rank", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.chunk, args.calls, args.dtype, args.rank)
        return
    if not hasattr(os, "sched_setaffinity"):
        raise SystemExit("core_scaling: needs CPU affinity (os.sched_setaffinity, Linux)")
    cores = sorted(os.sched_getaffinity(0))
    rows = []
    with tempfile.TemporaryDirectory(prefix="diffgen-core-scaling-") as cache:
        env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": cache}
        for r in range(args.rounds):
            base = None
            for mode in MODES:
                row = {"round": r, **_run_mode(mode, args, cores, env)}
                base = row if mode == "one core" else base
                row["ratio_all_calls"] = row["events_per_s_all_calls"] / base["events_per_s_all_calls"]
                row["ratio_best_call"] = row["events_per_s_best_call"] / base["events_per_s_best_call"]
                rows.append(row)
                print(f"round {r}: {mode}: {row['events_per_s_all_calls']:.4g} events/s", flush=True)
    print_table(
        f"e+e- -> hadrons chain ({args.dtype}, chunks of {args.chunk}) on {len(cores)} cores; "
        "baseline: one core, same round",
        rows,
    )
    for mode in MODES[1:]:
        ratios = [row["ratio_all_calls"] for row in rows if row["mode"] == mode]
        print(f"{mode} / one core (all calls), median over rounds: {np.median(ratios):.3g}")
    if args.out:
        write_json(args.out, {"machine": machine_info(), "args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
