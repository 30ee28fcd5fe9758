"""Peak memory and throughput of streamed ``diffgen generate`` (bounded memory for any N).

Runs ``diffgen generate`` (default process e⁺e⁻ → μ⁺μ⁻ at the Z pole, parquet output,
chunks of ``--chunk-size`` events) in child processes at a small and a large N and prints
each child's peak resident memory (``wait4`` rusage) and events/s. Baselines, measured in
the same run:

- memory: the same command at the small N — a ratio near 1 means memory does not grow
  with N (streaming);
- speed: in-process sampling of one chunk with no file output (the generator alone) — the
  ratio shows the cost of writing the file (and of start-up and compilation, included in
  the child's wall time).

Usage: ``.venv/bin/python -m benchmarks.io_generate [--quick] [--format lhe|hepmc3|parquet]``
(full: N = 10⁷ vs 10⁵; quick: 2·10⁵ vs 10⁴).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine_info, print_table, write_json

SUFFIX = {"parquet": ".parquet", "lhe": ".lhe", "hepmc3": ".hepmc"}


def run_generate(n: int, chunk: int, fmt: str, workdir: Path, *, show_progress: bool) -> dict[str, float]:
    """Run ``diffgen generate`` in a child; returns wall time (s), peak RSS (MiB), file size (MiB)."""
    out = workdir / f"events_{n}{SUFFIX[fmt]}"
    cmd = [sys.executable, "-m", "diffgen.cli", "generate", "--n", str(n), "--chunk-size", str(chunk), "-o", str(out)]
    if not show_progress:
        cmd.append("--quiet")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=None if show_progress else subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise RuntimeError(f"generate failed with exit code {proc.returncode}: {err}")
    size = out.stat().st_size / 2**20
    out.unlink()
    Path(f"{out}.run.toml").unlink()
    return {"wall_s": wall, "peak_rss_MiB": usage.ru_maxrss / 1024, "file_MiB": size}


def generator_rate(chunk: int) -> float:
    """Events/s of in-process sampling of one chunk (compiled, no output): the baseline."""
    import jax

    jax.config.update("jax_enable_x64", True)
    from benchmarks.common import best_time
    from diffgen.cli.generate import DEFAULTS, Generation

    gen = Generation({**DEFAULTS, "n": chunk, "chunk_size": chunk})
    gen.chunk(0).weight.block_until_ready()
    return chunk / best_time(lambda: gen.chunk(0).weight, repeat=3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (2e5 vs 1e4 events)")
    parser.add_argument("--format", choices=sorted(SUFFIX), default="parquet", help="output format (default: parquet)")
    args = parser.parse_args()
    if args.quick:
        n_small, n_large, chunk = 10_000, 200_000, 10_000
    else:
        n_small, n_large, chunk = 100_000, 10_000_000, 100_000
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (n_small, n_large):
            r = run_generate(n, chunk, args.format, Path(tmp), show_progress=not args.quick and n == n_large)
            rows.append({"n_events": n, "chunk": chunk, "format": args.format, **r, "events_per_s": n / r["wall_s"]})
    base_rate = generator_rate(chunk)
    small, large = rows
    for r in rows:
        r["rss_ratio_to_small_n"] = r["peak_rss_MiB"] / small["peak_rss_MiB"]
        r["rate_ratio_to_generator"] = r["events_per_s"] / base_rate
    print_table("diffgen generate, streamed (measured under load on a shared machine)", rows)
    print(f"\nbaseline: in-process generator alone, chunk of {chunk}: {base_rate:,.0f} events/s")
    print(
        f"peak RSS: {large['peak_rss_MiB']:.0f} MiB at N = {n_large:,} vs {small['peak_rss_MiB']:.0f} MiB at "
        f"N = {n_small:,} (ratio {large['rss_ratio_to_small_n']:.2f})"
    )
    write_json(
        "benchmarks/results/io_generate.json",
        {"machine": machine_info(), "rows": rows, "generator_events_per_s": base_rate, "quick": args.quick},
    )


if __name__ == "__main__":
    main()
