"""Events/s of the e⁺e⁻ → hadrons chain with and without transparent huge pages.

XLA allocates a program's temporary buffer afresh on every call; glibc maps an allocation
that large with ``mmap`` and unmaps it when it is freed, so every call page-faults its way
through new memory (diffgen/host_memory.py). This script times the chain of the benchmark's
``chains`` section (one call of N events, and the same N as concurrent chunks, one per core)
in child processes that alternate between the environment without and with
``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``, and counts the minor page faults per call. When
Pythia 8 is installed each child also times it (2000 events, best of the same number of
batches), to show whether the setting changes the baseline's speed too.

    .venv/bin/python -m benchmarks.host_memory [--dtype float32] [--n 10000] [--rounds 3] [--repeat 5]

Prints one table: the median over rounds of each child's best call, per setting, and their
ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
from typing import Any

from benchmarks.common import print_table
from diffgen.host_memory import HUGE_PAGES_TUNABLE, OPT_OUT_VARIABLE, transparent_huge_page_mode, with_huge_pages

SETTINGS = ("off", "on")
PROGRAMS = (("one_call", "chain, one call"), ("chunks", "chain, concurrent chunks"), ("pythia", "Pythia 8"))


def environment(setting: str) -> dict[str, str]:
    """This process's environment with ``glibc.malloc.hugetlb`` removed (``off``) or set to 1 (``on``).

    Args:
      setting: ``"off"`` or ``"on"``.

    Returns:
      The environment of a child process; ``DIFFGEN_HUGE_PAGES=0`` keeps it from changing it.
    """
    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {SETTINGS}, got {setting!r}")
    return {**with_huge_pages(os.environ, setting == "on"), OPT_OUT_VARIABLE: "0"}


def _faults_per_call(call: Any, calls: int = 3) -> float:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(calls):
        call()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / calls


def child(dtype_name: str, n: int, repeat: int) -> dict[str, Any]:
    """Time the chain (one call, concurrent chunks) and Pythia 8 in this process.

    Args:
      dtype_name: ``float32`` or ``float64``.
      n: events per call.
      repeat: timed calls (best kept).

    Returns:
      ``{"one_call": {...}, "chunks": {...}, "pythia": {...} or None}``, each with
      ``events_per_s`` and (diffgen's) ``faults_per_call``.
    """
    import jax
    import jax.numpy as jnp

    from benchmarks.__main__ import (
        _chunk_workers,
        _float_params,
        _hadron_chain,
        _key,
        _measure,
        _measure_chunks,
        _sampler,
    )
    from benchmarks.baselines import pythia_available, pythia_generator
    from benchmarks.common import block
    from diffgen.parallel import sample_chunks
    from diffgen.processes import ee_to_ffbar

    jax.config.update("jax_enable_x64", True)
    dtype = jnp.dtype(dtype_name)
    sim = _hadron_chain(dtype, False)
    params, key = sim.init(_key(0)), _key(1)
    out: dict[str, Any] = {}
    sampler = _sampler(sim, n)
    m = _measure(sampler, params, key, repeat=repeat)
    out["one_call"] = {
        "events_per_s": n / m["best_s"],
        "faults_per_call": _faults_per_call(lambda: block(sampler(params, key))),
    }
    workers = _chunk_workers(n)
    m = _measure_chunks(sim, params, key, n, workers, repeat=repeat, against=None)

    def chunks() -> Any:
        return block(sample_chunks(sim, params, key, m["n"], chunk_size=m["n"] // workers, workers=workers))

    out["chunks"] = {
        "events_per_s": m["n"] / m["best_s"],
        "faults_per_call": _faults_per_call(chunks),
        "workers": workers,
    }
    out["pythia"] = None
    if pythia_available():
        generator = pythia_generator("hadrons", _float_params(ee_to_ffbar("mu").init(_key(0))))
        if generator is not None:
            out["pythia"] = {"events_per_s": generator.rate(2000, repeat=repeat)["events_per_s"]}
    return out


def run_child(setting: str, dtype_name: str, n: int, repeat: int) -> dict[str, Any]:
    """:func:`child` in a fresh process with the given huge-page ``setting``."""
    args = [sys.executable, "-m", "benchmarks.host_memory", "--child", "--dtype", dtype_name]
    args += ["--n", str(n), "--repeat", str(repeat)]
    done = subprocess.run(args, env=environment(setting), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"child ({setting}) failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(runs: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Rows of the printed table from the children's results per setting (medians over rounds)."""

    def median(setting: str, what: str, field: str) -> float | None:
        values = [r[what][field] for r in runs[setting] if r.get(what)]
        return statistics.median(values) if values else None

    rows = []
    for what, label in PROGRAMS:
        off, on = median("off", what, "events_per_s"), median("on", what, "events_per_s")
        if off is None or on is None:
            continue
        row: dict[str, Any] = {"program": label, "events_per_s off": off, "events_per_s on": on, "on / off": on / off}
        if what != "pythia":
            row["faults/call off"] = median("off", what, "faults_per_call")
            row["faults/call on"] = median("on", what, "faults_per_call")
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.host_memory", description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--n", type=int, default=10_000, help="events per call (default 10^4)")
    parser.add_argument("--rounds", type=int, default=3, help="child processes per setting, alternating (default 3)")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per child (best is kept)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.n < 1 or args.rounds < 1 or args.repeat < 1:
        parser.error("--n, --rounds and --repeat must be >= 1")
    if args.child:
        print(json.dumps(child(args.dtype, args.n, args.repeat)))
        return 0
    print(f"transparent huge pages (kernel mode): {transparent_huge_page_mode()}")
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in SETTINGS}
    for _ in range(args.rounds):
        for setting in SETTINGS:
            runs[setting].append(run_child(setting, args.dtype, args.n, args.repeat))
    title = f"{args.dtype}, N = {args.n}, {args.rounds} alternating processes per setting ({HUGE_PAGES_TUNABLE} off/on)"
    print_table(title, table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
