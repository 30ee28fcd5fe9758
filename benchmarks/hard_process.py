"""Benchmark: weighted e⁺e⁻ → μ⁺μ⁻ events (diffgen under jit vs a vectorised NumPy generator).

For N events (momenta [N, 2, 4] and weights [N] materialised, random numbers included) in
float32 and float64 it prints: events/s under ``jit`` for three PRNG implementations
(threefry2x32, rbg, unsafe_rbg), the compile time, the cost of ``jax.grad`` of σ relative
to σ itself, and the speed ratio to a NumPy implementation of the same generator (same
cos θ importance sampling, same matrix element), measured in the same process.

Run: ``.venv/bin/python -m benchmarks.hard_process [--quick] [--n N] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.baselines import numpy_mumu
from benchmarks.common import best_time, machine_info, print_table, time_compile_and_run, write_json
from diffgen.core import jit
from diffgen.processes import cross_section, ee_to_ffbar

PRNG_IMPLS = ("threefry2x32", "rbg", "unsafe_rbg")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 2·10⁵ and fewer repeats (seconds, for CI)")
    parser.add_argument("--n", type=int, default=None, help="number of events (default 10⁶, 2·10⁵ with --quick)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file (atomic)")
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    n = args.n or (200_000 if args.quick else 1_000_000)
    repeat = 3 if args.quick else 7
    print(f"e+e- -> mu+mu- weighted events, N = {n}, sqrt(s) = 91.1876 GeV")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print("machine:", machine_info(), f"load average {load:.2f} (other jobs slow every rate; ratios hold)")

    rows = []
    grad_rows = []
    for dtype in (jnp.float64, jnp.float32):
        name = np.dtype(dtype).name
        src = ee_to_ffbar("mu", dtype=dtype)
        params = src.init(jax.random.key(0))
        sample = jit(src.sample, static_argnums=2)
        best_impl, best_rate = None, 0.0
        for impl in PRNG_IMPLS:
            key = jax.random.key(1, impl=impl)
            compile_s, run_s = time_compile_and_run(sample, params, key, n, repeat=repeat)
            rate = n / run_s
            rows.append({"dtype": name, "prng": impl, "compile_s": compile_s, "run_s": run_s, "events_per_s": rate})
            if rate > best_rate:
                best_impl, best_rate = impl, rate
        # NumPy baseline of the same generator, same process
        rng = np.random.default_rng(1)
        np_params = {k: float(v) for k, v in params.items()}
        np_dtype = np.float64 if name == "float64" else np.float32
        np_s = best_time(numpy_mumu, np_params, n, rng, np_dtype, repeat=repeat)
        rows.append({"dtype": name, "prng": "numpy PCG64", "compile_s": 0.0, "run_s": np_s, "events_per_s": n / np_s})
        for r in rows:
            if r["dtype"] == name:
                r["vs_numpy"] = np_s / r["run_s"]
        # cost of the gradient of σ relative to σ (best PRNG)
        key = jax.random.key(1, impl=best_impl)

        def sigma_fn(p, k, src=src):
            return cross_section(src, p, k, n)[0]

        sigma = jit(sigma_fn)
        dsigma = jit(jax.grad(sigma_fn))
        _, t_f = time_compile_and_run(sigma, params, key, repeat=repeat)
        c_g, t_g = time_compile_and_run(dsigma, params, key, repeat=repeat)
        grad_rows.append(
            {
                "dtype": name,
                "prng": best_impl,
                "sigma_s": t_f,
                "grad_s": t_g,
                "grad_compile_s": c_g,
                "grad/sigma": t_g / t_f,
            }
        )
    print_table("events/s under jit (momenta + weights materialised, PRNG included); ratio to NumPy", rows)
    print_table("cost of jax.grad(sigma) relative to sigma (all 5 params)", grad_rows)
    if args.json:
        write_json(args.json, {"n": n, "machine": machine_info(), "sample": rows, "grad": grad_rows})
    return 0


if __name__ == "__main__":
    t0 = time.perf_counter()
    status = main()
    print(f"\nbenchmark wall time {time.perf_counter() - t0:.1f} s")
    raise SystemExit(status)
