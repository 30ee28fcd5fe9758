"""Shared timing and reporting for the benchmark scripts.

Every benchmark measures diffgen and its baseline in the same process, so that ratios
hold on a noisy machine, and prints events/s plus the ratio to the baseline it names.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax

from diffgen.host_memory import huge_pages_enabled, transparent_huge_page_mode

__all__ = [
    "block",
    "time_compile_and_run",
    "best_time",
    "best_time_and_cores",
    "alternating_times",
    "timed_call",
    "machine_info",
    "print_table",
    "write_json",
    "positive_int",
]


def block(x: Any) -> Any:
    """Wait for every array in ``x`` to be computed."""
    return jax.block_until_ready(x)


def time_compile_and_run(fn: Callable[..., Any], *args: Any, repeat: int = 5) -> tuple[float, float]:
    """Compile time of the first call and best wall time of ``repeat`` further calls (seconds)."""
    t0 = time.perf_counter()
    block(fn(*args))
    compile_s = time.perf_counter() - t0
    return compile_s, best_time(fn, *args, repeat=repeat)


def best_time(fn: Callable[..., Any], *args: Any, repeat: int = 5) -> float:
    """Best wall time (seconds) of ``repeat`` calls; the minimum is the least noisy estimate."""
    return best_time_and_cores(fn, *args, repeat=repeat)[0]


def timed_call(fn: Callable[..., Any], *args: Any) -> tuple[float, float]:
    """Wall and CPU seconds (all threads of the process, user + system) of one call of ``fn``.

    Args:
      fn: the function; its result is waited for (:func:`block`) before the clock stops.
      args: its arguments.

    Returns:
      ``(wall, cpu)`` in seconds.
    """
    c0, t0 = time.process_time(), time.perf_counter()
    block(fn(*args))
    return time.perf_counter() - t0, time.process_time() - c0


def best_time_and_cores(fn: Callable[..., Any], *args: Any, repeat: int = 5) -> tuple[float, float]:
    """Best wall time (seconds) of ``repeat`` calls and the cores that call kept busy.

    Cores = CPU time of the process (all its threads, user + system) / wall time of the best
    call: 1 for single-threaded code, up to the machine's core count for XLA's thread pool.
    """
    wall, cpu = min(timed_call(fn, *args) for _ in range(repeat))
    return wall, cpu / wall


def alternating_times(fns: Sequence[Callable[[], Any]], repeat: int) -> list[list[tuple[float, float]]]:
    """(wall, CPU) seconds of ``repeat`` rounds in which each of ``fns`` is called once, in turn.

    Timing two programs in alternation puts each pair of calls in the same moment of a
    machine whose speed drifts; timing one after the other compares two moments instead.

    Returns:
      one list per function of its ``repeat`` ``(wall, cpu)`` pairs, in call order.
    """
    if not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"alternating_times: repeat must be an int >= 1, got {repeat!r}")
    out: list[list[tuple[float, float]]] = [[] for _ in fns]
    for _ in range(repeat):
        for times, fn in zip(out, fns, strict=True):
            times.append(timed_call(fn))
    return out


def machine_info() -> dict[str, Any]:
    """The machine and software a measurement was made on."""
    return {
        "machine": platform.node(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": len(jax.devices()),
        # XLA's per-call host buffers with transparent huge pages (diffgen.host_memory).
        "huge_pages": huge_pages_enabled(),
        "transparent_huge_pages": transparent_huge_page_mode(),
    }


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    """Print rows (dicts with the same keys) as an aligned text table."""
    if not rows:
        return
    keys = list(rows[0])
    cells = [[_fmt(r.get(k)) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    print(f"\n{title}")
    print("  ".join(k.ljust(w) for k, w in zip(keys, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"
    return str(v)


def write_json(path: str, payload: dict[str, Any]) -> None:
    """Write ``payload`` as JSON atomically (temp file + rename)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as fh:
        json.dump(payload, fh, indent=2, default=float)
    os.replace(tmp, path)


def positive_int(text: str) -> int:
    """``argparse`` type of a count ≥ 1 (events, calls, rounds); the error names the value given."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value
