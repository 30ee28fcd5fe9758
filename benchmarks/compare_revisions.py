"""Events/s of one stage at two git revisions, timed in alternating processes.

A change of a few per cent is smaller than this machine's run-to-run spread (±10–20 %
between runs of the same code), so a before/after pair taken in two separate runs says
little. This script exports each revision's ``diffgen`` package (``git archive``) into a
temporary directory and times the stage in child processes that alternate between the
revisions (A B A B …): drifts of the machine's speed then hit both alike. Each child
compiles the stage once and reports the best of ``--repeat`` calls; the table gives, per
revision, the median over the children, and the ratio of the medians.

    .venv/bin/python -m benchmarks.compare_revisions HEAD~1 HEAD [--stage hadronization]
        [--dtype float32] [--n 10000] [--rounds 3] [--repeat 5] [--same-process CALLS]

With ``--same-process CALLS`` one child process compiles the stage of both revisions and
alternates CALLS timed calls between the two executables: the processes of one revision
spread by up to ±30 % on this machine, calls within one process far less, so this mode
resolves changes of a few per cent. The table gives the median and the best call per
revision and the ratios of both.

Stages: ``shower`` (on e⁺e⁻ → q q̄), ``hadronization`` (on showered partons, the default),
``chain`` (e⁺e⁻ → q q̄ → shower → hadronization), ``chunks`` (the chain as concurrent chunks,
``diffgen.parallel.sample_chunks``, one chunk of N / cores events per core; N a multiple of
the cores; each call includes the assembly of the N events). The inputs of a stage are generated with
the revision under test, with the same keys. Each revision compiles them as it does
itself: with ``diffgen.core.jit`` (and its XLA options) where it has one, else ``jax.jit``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import machine_info, positive_int, print_table

REPO = Path(__file__).resolve().parents[1]
STAGES = ("shower", "hadronization", "chain", "chunks")

# The stage as a function and its arguments, built with whichever ``diffgen`` is imported
# when it is called (the imports are inside). Shared by both child scripts.
_STAGE = r"""
import json, sys, time
import jax, jax.numpy as jnp
jax.config.update("jax_enable_x64", True)


def stage_fn(stage, dtype, n):
    from diffgen.core import chain
    from diffgen.hadronization import hadronize
    from diffgen.processes import ee_to_qqbar
    from diffgen.shower import final_state_shower

    key = jax.random.key
    src = ee_to_qqbar(dtype=dtype)
    if stage in ("chain", "chunks"):
        sim = chain(src, ("shower", final_state_shower()), ("hadronization", hadronize()))
        if stage == "chunks":
            from diffgen.parallel import default_workers, sample_chunks

            workers = default_workers()
            # A host-level driver that compiles its chunk program itself (not jitted here).
            return (lambda p, k: sample_chunks(sim, p, k, n, chunk_size=n // workers, workers=workers)), (
                sim.init(key(0)),
                key(1),
            )
        return (lambda p, k: sim.sample(p, k, n)), (sim.init(key(0)), key(1))
    events = jax.jit(lambda p, k: src.sample(p, k, n))(src.init(key(0)), key(1))
    shower = final_state_shower()
    if stage == "hadronization":
        events = jax.jit(shower.apply)(shower.init(key(2)), key(3), events)
    layer = shower if stage == "shower" else hadronize()
    return layer.apply, (layer.init(key(4)), key(5), events)


def revision_jit():
    # How the revision compiles its programs: diffgen.core.jit (with its XLA options) where
    # the revision has it, jax.jit before.
    import diffgen.core

    return getattr(diffgen.core, "jit", jax.jit)


def stage_call(stage, dtype, n):
    # The stage as the revision runs it; its first call compiles. sample_chunks (stage
    # chunks) is a host-level driver that compiles its chunk program itself.
    fn, args = stage_fn(stage, dtype, n)
    return (fn if stage == "chunks" else revision_jit()(fn)), args
"""

# Run in a child process with the exported revision first on sys.path. Prints one JSON line.
_CHILD = (
    _STAGE
    + r"""
stage, dtype, n, repeat = sys.argv[1], jnp.dtype(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
fn, args = stage_call(stage, dtype, n)
t0 = time.perf_counter()
jax.block_until_ready(fn(*args))
compile_s = time.perf_counter() - t0
best = float("inf")
for _ in range(repeat):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - t0)
import diffgen
print(json.dumps({"events_per_s": n / best, "compile_s": compile_s, "package": diffgen.__file__}))
"""
)

# One child process for both revisions (``--same-process``): each revision's package is
# imported, its stage traced and compiled, then its modules are dropped from sys.modules so
# the next revision imports its own; the jitted stages keep the functions they call, cached.
# The timed calls then alternate between the two executables. Prints one JSON line.
_CHILD_PAIR = (
    _STAGE
    + r"""
stage, dtype, n, calls = sys.argv[1], jnp.dtype(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
roots = sys.argv[5:]
compiled = []
for root in roots:
    for name in [m for m in sys.modules if m == "diffgen" or m.startswith("diffgen.")]:
        del sys.modules[name]
    sys.path.insert(0, root)
    import diffgen
    exe, args = stage_call(stage, dtype, n)
    jax.block_until_ready(exe(*args))  # compiles
    compiled.append((exe, args, diffgen.__file__))
    sys.path.remove(root)
times = [[] for _ in roots]
for _ in range(calls):
    for i, (exe, args, _) in enumerate(compiled):
        t0 = time.perf_counter()
        jax.block_until_ready(exe(*args))
        times[i].append(time.perf_counter() - t0)
print(json.dumps({"seconds": times, "packages": [c[2] for c in compiled]}))
"""
)


def export(revision: str, into: Path) -> Path:
    """Write the ``diffgen`` package of ``revision`` under ``into``; returns ``into``."""
    rev = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"],
        capture_output=True,
        text=True,
    )
    if rev.returncode != 0:
        raise ValueError(f"revision {revision!r} is not a commit of {REPO}")
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", rev.stdout.strip(), "diffgen"], capture_output=True, check=True
    )
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def time_once(package_root: Path, stage: str, dtype: str, n: int, repeat: int) -> dict[str, float]:
    """Events/s and compile time of ``stage`` in a fresh process importing ``package_root/diffgen``."""
    env = dict(os.environ, PYTHONPATH=str(package_root))
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, stage, dtype, str(n), str(repeat)],
        capture_output=True,
        text=True,
        env=env,
        cwd=package_root,
    )
    if out.returncode != 0:
        raise RuntimeError(f"timing {stage} at {package_root} failed:\n{out.stderr[-2000:]}")
    run = json.loads(out.stdout.strip().splitlines()[-1])
    # An installed diffgen (e.g. an editable install's import hook) must not shadow the export.
    if Path(run["package"]).resolve().parent != (package_root / "diffgen").resolve():
        raise RuntimeError(f"the child imported diffgen from {run['package']}, not from {package_root}")
    return run


def time_pair(roots: list[Path], stage: str, dtype: str, n: int, calls: int) -> list[list[float]]:
    """Seconds of ``calls`` alternating calls of ``stage`` per package root, in one fresh process."""
    out = subprocess.run(
        [sys.executable, "-c", _CHILD_PAIR, stage, dtype, str(n), str(calls), *map(str, roots)],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        cwd=roots[0].parent,
    )
    if out.returncode != 0:
        raise RuntimeError(f"timing {stage} at {', '.join(map(str, roots))} failed:\n{out.stderr[-2000:]}")
    run = json.loads(out.stdout.strip().splitlines()[-1])
    for root, package in zip(roots, run["packages"], strict=True):
        if Path(package).resolve().parent != (root / "diffgen").resolve():
            raise RuntimeError(f"the child imported diffgen from {package}, not from {root}")
    return run["seconds"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", help="git revision of the baseline (e.g. HEAD~1)")
    parser.add_argument("after", help="git revision to compare (e.g. HEAD)")
    parser.add_argument("--stage", choices=STAGES, default="hadronization")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--n", type=positive_int, default=10_000, help="events per call (default 10^4)")
    parser.add_argument("--rounds", type=positive_int, default=3, help="processes per revision, alternated (default 3)")
    parser.add_argument("--repeat", type=positive_int, default=5, help="timed calls per process (best is kept)")
    parser.add_argument(
        "--same-process",
        type=int,
        metavar="CALLS",
        default=0,
        help="instead: both revisions compiled in one process, CALLS timed calls of each, alternating",
    )
    args = parser.parse_args(argv)
    if args.same_process < 0:
        parser.error(f"--same-process must be >= 1 calls (0: off), got {args.same_process}")
    if args.stage == "chunks":
        from diffgen.parallel import default_workers

        cores = default_workers()
        if args.n % cores:
            parser.error(f"--stage chunks: --n must be a multiple of the {cores} cores, got {args.n}")
    print(machine_info())
    with tempfile.TemporaryDirectory() as tmp:
        roots = {}
        for label in ("before", "after"):
            try:
                roots[label] = export(getattr(args, label), Path(tmp) / label)
            except ValueError as err:
                parser.error(str(err))
        if args.same_process:
            seconds = time_pair([roots["before"], roots["after"]], args.stage, args.dtype, args.n, args.same_process)
            return _report_pair(args, dict(zip(("before", "after"), seconds, strict=True)))
        rates: dict[str, list[float]] = {"before": [], "after": []}
        for _ in range(args.rounds):
            for label in ("before", "after"):
                run = time_once(roots[label], args.stage, args.dtype, args.n, args.repeat)
                rates[label].append(run["events_per_s"])
    medians = {label: statistics.median(v) for label, v in rates.items()}
    rows = [
        {
            "revision": f"{label}: {getattr(args, label)}",
            "events_per_s (median)": medians[label],
            "us_per_event": 1e6 / medians[label],
            "per process": " ".join(f"{r:.4g}" for r in rates[label]),
        }
        for label in ("before", "after")
    ]
    print_table(f"{args.stage}, {args.dtype}, N = {args.n}, {args.rounds} alternating processes per revision", rows)
    print(f"after / before (medians): {medians['after'] / medians['before']:.3f}")
    return 0


def _report_pair(args: argparse.Namespace, seconds: dict[str, list[float]]) -> int:
    """Table of the same-process mode: per revision the median and the best call, and their ratios."""
    rows = [
        {
            "revision": f"{label}: {getattr(args, label)}",
            "us_per_event (median)": 1e6 * statistics.median(v) / args.n,
            "us_per_event (best)": 1e6 * min(v) / args.n,
            "events_per_s (median)": args.n / statistics.median(v),
        }
        for label, v in seconds.items()
    ]
    title = f"{args.stage}, {args.dtype}, N = {args.n}, {args.same_process} alternating calls per revision, one process"
    print_table(title, rows)
    med = {label: statistics.median(v) for label, v in seconds.items()}
    best = {label: min(v) for label, v in seconds.items()}
    print(f"after / before (events/s of the medians): {med['before'] / med['after']:.3f}")
    print(f"after / before (events/s of the best calls): {best['before'] / best['after']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
