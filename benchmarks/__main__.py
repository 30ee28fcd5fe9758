"""The diffgen benchmark suite: ``python -m benchmarks [--quick]`` (or ``diffgen bench``).

One run measures, on this machine and in this process, with the baselines timed in the
same run so that ratios hold on a noisy machine:

- ``hard_process``: e⁺e⁻ → μ⁺μ⁻ weighted events/s (random numbers, momenta and weights),
  float64 and float32, compile time; the vectorised NumPy generator of the same physics
  (``benchmarks/baselines.py``) and, when installed, Pythia 8 (hard process only).
- ``chains``: events/s of every stage alone and of whole chains — e⁺e⁻ → μ⁺μ⁻ + detector;
  e⁺e⁻ → hadrons (shower + hadronization); the same + detector; e⁺e⁻ → hadrons as concurrent
  chunks, one per core (``diffgen.parallel.sample_chunks``) — float64 and float32, against
  Pythia 8's full e⁺e⁻ → Z → hadrons when installed.
- ``gradient``: time of ``jax.grad`` of a representative observable (weighted mean cos θ
  for μ⁺μ⁻, weighted mean thrust for hadrons) relative to the forward pass.
- ``memory``: compiled peak memory per event (XLA buffer assignment) of forward and gradient.
- ``scaling_n``: time and memory for N = 10³ … 10⁷ (direct up to 10⁶, streamed for all N).
- ``rambo``: RAMBO n = 2 … 10 events/s and memory per event.
- ``areas``: each area's own script (``benchmarks/<area>.py``), when it exposes
  ``suite(quick) -> dict | list[dict]`` (or ``run``/``benchmark``/``main``).

Prints tables and writes ``benchmarks/results/<date>-<machine>[-quick].json`` atomically.
Numbers on a shared machine are measured under load: compare ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import inspect
import math
import platform
import re
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import (
    alternating_times,
    best_time,
    best_time_and_cores,
    block,
    machine_info,
    print_table,
    write_json,
)
from diffgen.core import jit
from diffgen.host_memory import restart_with_huge_pages
from diffgen.parallel import default_workers

SECTIONS = ("hard_process", "chains", "gradient", "memory", "scaling_n", "rambo", "areas")
AREAS = ("hard_process", "shower", "hadronization", "detector", "unfolding")
RESULTS_DIR = Path(__file__).resolve().parent / "results"

#: Targets of the performance issue, checked in the summary.
TARGET_MUMU_RATE = 5e6
TARGET_NUMPY_RATIO = 2.0
TARGET_PYTHIA_RATIO = 10.0
TARGET_GRAD_RATIO = 3.0

#: Label of the hadron chain sampled as concurrent chunks (``diffgen.parallel.sample_chunks``).
CHUNKED_CHAIN = "chain: ee->hadrons as concurrent chunks"


def _sizes(quick: bool) -> dict[str, Any]:
    if quick:
        return {
            "mumu": 100_000,
            "chain_mumu": 100_000,
            "hadrons": 1_000,
            "pythia": {"mumu": 2_000, "hadrons": 200},
            "scaling": [10**3, 10**4, 10**5],
            "direct_max": 10**5,
            "chunk": 10**4,
            "rambo": 10_000,
            "repeat": 3,
            "hadron_dtypes": (jnp.float64,),
        }
    return {
        "mumu": 1_000_000,
        "chain_mumu": 1_000_000,
        "hadrons": 10_000,
        "pythia": {"mumu": 50_000, "hadrons": 2_000},
        "scaling": [10**3, 10**4, 10**5, 10**6, 10**7],
        "direct_max": 10**6,
        "chunk": 10**5,
        "rambo": 100_000,
        "repeat": 5,
        "hadron_dtypes": (jnp.float64, jnp.float32),
    }


# --------------------------------------------------------------------------- helpers


def _key(i: int) -> jax.Array:
    return jax.random.key(i)


def _sampler(source: Any, n: int) -> Callable[..., Any]:
    """Jitted ``params, key -> (p, weight)``: the work of generating n events."""

    def fn(params, key):
        ev = source.sample(params, key, n)
        return ev.p, ev.weight

    return jit(fn)


def _measure(
    fn: Callable[..., Any], *args: Any, repeat: int, against: Callable[[], Any] | None = None
) -> dict[str, Any]:
    """Compile ``fn`` once (ahead of time) and return compile time, best run time and memory.

    The same executable gives all three numbers, so each function is compiled only once.
    With ``against`` (a baseline's timed work, e.g. a batch of Pythia events) the calls of
    ``fn`` alternate with calls of ``against``, and ``against_s`` holds the wall times of
    both, call by call ([(fn, against), …]), with ``against_best_s`` and ``against_cores``.
    """
    t0 = time.perf_counter()
    compiled = jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    block(compiled(*args))
    out: dict[str, Any] = {"compile_s": compile_s, "peak_bytes": _peak_bytes(compiled)}
    out.update(_timed(lambda: compiled(*args), repeat=repeat, against=against))
    return out


def _measure_chunks(
    sim: Any, params: Any, key: jax.Array, n: int, workers: int, *, repeat: int, against: Callable[[], Any] | None
) -> dict[str, Any]:
    """As :func:`_measure` for ``parallel.sample_chunks(sim, params, key, n)`` in ``workers`` chunks.

    The compile time is that of the first call (compilation of the chunk program and one
    call); the memory is that of ``workers`` chunk programs running at once.
    """
    from diffgen.parallel import chunk_program, sample_chunks

    chunk = n // workers
    n = chunk * workers  # the events generated when workers does not divide n

    def call() -> Any:
        return sample_chunks(sim, params, key, n, chunk_size=chunk, workers=workers)

    t0 = time.perf_counter()
    block(call())
    compile_s = time.perf_counter() - t0
    # The executable of the first call, from JAX's cache: no second compilation.
    compiled = chunk_program(sim, chunk).lower(params, key, jnp.asarray(0, jnp.int32)).compile()
    out: dict[str, Any] = {"compile_s": compile_s, "peak_bytes": workers * _peak_bytes(compiled)}
    out.update(workers=workers, n=n)
    out.update(_timed(call, repeat=repeat, against=against))
    return out


def _peak_bytes(compiled: Any) -> int:
    """Arguments + outputs + temporaries of a compiled executable (XLA's buffer assignment), 0 if unknown."""
    stats = compiled.memory_analysis()
    if stats is None:
        return 0
    return int(stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes)


def _chunk_workers(n: int) -> int:
    """Concurrent chunks for n events: one per core, each of at least ``ACTIVE_ROW_MIN_EVENTS``.

    Smaller calls lose the hadronization's reduced row sets and run much slower per event.
    """
    from diffgen.hadronization.formation import ACTIVE_ROW_MIN_EVENTS

    return max(1, min(default_workers(), n // ACTIVE_ROW_MIN_EVENTS))


def _timed(call: Callable[[], Any], *, repeat: int, against: Callable[[], Any] | None) -> dict[str, Any]:
    """Best wall time and cores of ``repeat`` calls, alternating with ``against`` when given (see :func:`_measure`)."""
    out: dict[str, Any] = {}
    if against is None:
        out["best_s"], out["cores"] = best_time_and_cores(call, repeat=repeat)
        return out
    ours, theirs = alternating_times([call, against], repeat)
    (out["best_s"], cpu), (out["against_best_s"], cpu_b) = min(ours), min(theirs)
    out["cores"], out["against_cores"] = cpu / out["best_s"], cpu_b / out["against_best_s"]
    out["against_s"] = [(a[0], b[0]) for a, b in zip(ours, theirs, strict=True)]
    return out


def _pythia_row(label: str, dtype: Any, n: int, m: dict[str, Any], n_py: int) -> dict[str, Any]:
    """The row of a hadron chain; with Pythia timed alternately (``m["against_s"]``), its ratios."""
    row = _row(label, dtype, n, m)
    if "against_s" not in m:
        return row
    # Each call alternated with a batch of Pythia events: the ratio compares the two programs
    # in the same minutes of a machine whose speed drifts.
    py_rate = n_py / m["against_best_s"]
    pairs = [(t_py / n_py) / (t / n) for t, t_py in m["against_s"]]
    row.update(
        baseline="Pythia 8 full (shower+hadronization), alternating calls",
        baseline_events_per_s=py_rate,
        ratio=row["events_per_s"] / py_rate,
        ratio_median=float(np.median(pairs)),
        # Per core: each rate divided by the cores its best call kept busy (Pythia runs in
        # one thread, XLA's executables on a thread pool).
        ratio_per_core=(row["events_per_s"] / row["cores"]) / (py_rate / m["against_cores"]),
    )
    return row


def _rate_row(name: str, dtype: Any, n: int, fn: Callable[..., Any], *args: Any, repeat: int) -> dict[str, Any]:
    return _row(name, dtype, n, _measure(fn, *args, repeat=repeat))


def _row(name: str, dtype: Any, n: int, m: dict[str, Any]) -> dict[str, Any]:
    return {
        "stage": name,
        "dtype": jnp.dtype(dtype).name,
        "n": n,
        "compile_s": m["compile_s"],
        "events_per_s": n / m["best_s"],
        "cores": m["cores"],
        "bytes_per_event": m["peak_bytes"] / n,
    }


def _float_params(params: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in params.items()}


def _memory(fn: Callable[..., Any], *args: Any) -> dict[str, int]:
    from diffgen.parallel import compiled_memory

    return compiled_memory(fn, *args)


# --------------------------------------------------------------------------- sections


def section_hard_process(cfg: dict[str, Any], out: dict[str, Any], use_pythia: bool) -> list[dict[str, Any]]:
    from benchmarks.baselines import numpy_mumu, numpy_mumu_sigma, pythia_rate
    from diffgen.processes import ee_to_ffbar

    n, rows = cfg["mumu"], []
    params64 = ee_to_ffbar("mu").init(_key(0))
    pf = _float_params(params64)
    rng = np.random.default_rng(1)
    numpy_mumu(pf, 1000, rng)
    np_rate = n / best_time(lambda: numpy_mumu(pf, n, rng), repeat=cfg["repeat"])
    for dtype in (jnp.float64, jnp.float32):
        src = ee_to_ffbar("mu", dtype=dtype)
        params = src.init(_key(0))
        row = _rate_row("ee->mumu", dtype, n, _sampler(src, n), params, _key(1), repeat=cfg["repeat"])
        row.update(baseline="numpy (same physics)", baseline_events_per_s=np_rate, ratio=row["events_per_s"] / np_rate)
        rows.append(row)
    rows.append(
        {
            "stage": "ee->mumu",
            "dtype": "float64",
            "n": n,
            "compile_s": 0.0,
            "events_per_s": np_rate,
            "baseline": "(numpy itself)",
            "baseline_events_per_s": np_rate,
            "ratio": 1.0,
        }
    )
    _, w = numpy_mumu(pf, n, rng)
    src = ee_to_ffbar("mu")
    _, w_jax = _sampler(src, n)(params64, _key(2))
    out["mumu_sigma_pb"] = {
        "diffgen": float(jnp.mean(w_jax)),
        "numpy": float(np.mean(w)),
        "analytic": numpy_mumu_sigma(pf),
        "mc_error": float(np.std(w) / math.sqrt(n)),
    }
    if use_pythia:
        py = pythia_rate("mumu", pf, cfg["pythia"]["mumu"])
        if py is not None:
            out["pythia_mumu"] = py
            rows.append(
                {
                    "stage": "ee->mumu",
                    "dtype": "float64",
                    "n": cfg["pythia"]["mumu"],
                    "compile_s": py["init_s"],
                    "events_per_s": py["events_per_s"],
                    "baseline": "(Pythia 8 itself)",
                    "baseline_events_per_s": py["events_per_s"],
                    "ratio": 1.0,
                }
            )
            for r in rows[:2]:
                r["ratio_to_pythia"] = r["events_per_s"] / py["events_per_s"]
            out["mumu_sigma_pb"]["pythia"] = py["sigma_pb"]
    print_table("e+e- -> mu+mu- weighted events (momenta + weights, random numbers included)", rows)
    s = out["mumu_sigma_pb"]
    print(
        f"same physics: sigma = {s['diffgen']:.3f} pb (diffgen), {s['numpy']:.3f} pb (numpy), "
        f"{s['analytic']:.3f} pb (analytic Born), MC error {s['mc_error']:.3f} pb"
        + (f", {s['pythia']:.3f} pb (Pythia 8)" if "pythia" in s else "")
    )
    return rows


def _hadron_chain(dtype: Any, with_detector: bool) -> Any:
    from diffgen.core import chain
    from diffgen.detector import gaussian_smearing
    from diffgen.hadronization import hadronize
    from diffgen.processes import ee_to_qqbar
    from diffgen.shower import final_state_shower

    stages = [("shower", final_state_shower()), ("hadronization", hadronize())]
    if with_detector:
        stages.append(("detector", gaussian_smearing()))
    return chain(ee_to_qqbar(dtype=dtype), *stages)


def section_chains(cfg: dict[str, Any], out: dict[str, Any], use_pythia: bool) -> list[dict[str, Any]]:
    from benchmarks.baselines import pythia_generator
    from diffgen.core import chain
    from diffgen.detector import gaussian_smearing
    from diffgen.hadronization import hadronize
    from diffgen.processes import ee_to_ffbar, ee_to_qqbar
    from diffgen.shower import final_state_shower

    rows, rep = [], max(2, cfg["repeat"] - 2)
    # Calls alternating with Pythia: the machine's speed changes within minutes, and with 3
    # pairs one slow window often held the best call of one program (docs/performance.md);
    # more pairs steady both best calls and the median of the pairs, at a few seconds a row.
    pairs = cfg["repeat"] + 2
    pythia, generator = None, None
    n_py = cfg["pythia"]["hadrons"]
    if use_pythia:
        pf = _float_params(ee_to_ffbar("mu").init(_key(0)))
        generator = pythia_generator("hadrons", pf)
    if generator is not None:
        # best of as many batches as diffgen's rows below get calls
        pythia = generator.rate(n_py, repeat=rep)
        out["pythia_hadrons"] = pythia
    for dtype in (jnp.float64, jnp.float32):
        n = cfg["chain_mumu"]
        sim = chain(ee_to_ffbar("mu", dtype=dtype), ("detector", gaussian_smearing()))
        rows.append(
            _rate_row("chain: ee->mumu + detector", dtype, n, _sampler(sim, n), sim.init(_key(0)), _key(1), repeat=rep)
        )
        if dtype not in cfg["hadron_dtypes"]:
            continue
        n = cfg["hadrons"]
        # Stages alone, each on the previous stage's output.
        src = ee_to_qqbar(dtype=dtype)
        sp = src.init(_key(0))
        rows.append(_rate_row("stage: ee->qqbar", dtype, n, _sampler(src, n), sp, _key(1), repeat=rep))
        partons = jit(lambda p, k, src=src, n=n: src.sample(p, k, n))(sp, _key(2))
        for name, layer in (
            ("shower", final_state_shower()),
            ("hadronization", hadronize()),
            ("detector", gaussian_smearing()),
        ):
            lp = layer.init(_key(3))
            apply = jit(lambda p, k, ev, layer=layer: layer.apply(p, k, ev))
            rows.append(_rate_row(f"stage: {name}", dtype, n, apply, lp, _key(4), partons, repeat=rep))
            partons = apply(lp, _key(4), partons)
        against = None if generator is None else (lambda: generator.generate(n_py))
        for with_det in (False, True):
            sim = _hadron_chain(dtype, with_det)
            label = "chain: ee->hadrons" + (" + detector" if with_det else "")
            args = (_sampler(sim, n), sim.init(_key(0)), _key(1))
            rows.append(_pythia_row(label, dtype, n, _measure(*args, repeat=pairs, against=against), n_py))
        # The same chain as concurrent chunks, one per core (diffgen.parallel.sample_chunks).
        sim = _hadron_chain(dtype, False)
        m = _measure_chunks(sim, sim.init(_key(0)), _key(1), n, _chunk_workers(n), repeat=pairs, against=against)
        rows.append(_pythia_row(f"{CHUNKED_CHAIN}, {m['workers']} chunks at once", dtype, m["n"], m, n_py))
    if pythia is not None:
        rows.append(
            {
                "stage": f"Pythia 8: ee->Z->hadrons (best of {pythia['repeat']})",
                "dtype": "float64",
                "n": n_py,
                "compile_s": pythia["init_s"],
                "events_per_s": pythia["events_per_s"],
                "cores": pythia["cores"],
            }
        )
    print_table("stages and chains (events/s)", rows)
    return rows


def _grad_rows(name: str, sim: Any, n: int, observable: Callable[..., Any], repeat: int) -> dict[str, Any]:
    params = sim.init(_key(0))

    def loss(p, key):
        ev = sim.sample(p, key, n)
        return jnp.sum(ev.weight * observable(ev)) / jnp.sum(ev.weight)

    f = _measure(loss, params, _key(1), repeat=repeat)
    g = _measure(jax.grad(loss), params, _key(1), repeat=repeat)
    return {
        "chain": name,
        "n": n,
        "forward_s": f["best_s"],
        "grad_s": g["best_s"],
        "grad_over_forward": g["best_s"] / f["best_s"],
        "compile_forward_s": f["compile_s"],
        "compile_grad_s": g["compile_s"],
        "forward_bytes_per_event": f["peak_bytes"] / n,
        "grad_bytes_per_event": g["peak_bytes"] / n,
    }


def section_gradient(cfg: dict[str, Any], out: dict[str, Any], use_pythia: bool) -> list[dict[str, Any]]:
    from diffgen.core import chain
    from diffgen.detector import gaussian_smearing
    from diffgen.observables import thrust
    from diffgen.processes import ee_to_ffbar

    def cos_mu(ev):
        p = ev.p[:, 0]
        return p[:, 3] / jnp.sqrt(jnp.sum(p[:, 1:] ** 2, axis=-1))

    rows = [
        _grad_rows("ee->mumu: <cos theta>_w", ee_to_ffbar("mu"), cfg["mumu"], cos_mu, cfg["repeat"]),
        _grad_rows(
            "ee->mumu + detector: <cos theta>_w",
            chain(ee_to_ffbar("mu"), ("detector", gaussian_smearing())),
            cfg["chain_mumu"],
            cos_mu,
            cfg["repeat"],
        ),
    ]
    try:
        rows.append(
            _grad_rows(
                "ee->hadrons + detector: <thrust>_w",
                _hadron_chain(jnp.float64, True),
                cfg["hadrons"],
                thrust,
                max(2, cfg["repeat"] - 2),
            )
        )
    except Exception as err:  # a chain stage may not support reverse mode yet
        out.setdefault("errors", {})["gradient/hadrons"] = f"{type(err).__name__}: {err}"
    print_table("cost of jax.grad of a weighted mean observable relative to the forward pass", rows)
    return rows


def section_memory(cfg: dict[str, Any], out: dict[str, Any], use_pythia: bool) -> list[dict[str, Any]]:
    """Compiled peak memory per event, collected from the executables the other sections built."""
    rows = []
    for r in (out.get("hard_process") or []) + (out.get("chains") or []):
        if r.get("bytes_per_event"):
            rows.append(
                {
                    "what": f"{r['stage']} (sample)",
                    "dtype": r["dtype"],
                    "n": r["n"],
                    "bytes_per_event": r["bytes_per_event"],
                }
            )
    for r in out.get("gradient") or []:
        rows.append(
            {
                "what": f"{r['chain']} (forward)",
                "dtype": "float64",
                "n": r["n"],
                "bytes_per_event": r["forward_bytes_per_event"],
            }
        )
        rows.append(
            {
                "what": f"{r['chain']} (grad)",
                "dtype": "float64",
                "n": r["n"],
                "bytes_per_event": r["grad_bytes_per_event"],
            }
        )
    if not rows:
        print("\nmemory: run together with the hard_process, chains or gradient sections")
    print_table("compiled peak memory per event (arguments + outputs + temporaries, XLA buffer assignment)", rows)
    return rows


def section_scaling_n(cfg: dict[str, Any], out: dict[str, Any], use_pythia: bool) -> list[dict[str, Any]]:
    from diffgen.parallel import stream_cross_section
    from diffgen.processes import ee_to_ffbar

    src = ee_to_ffbar("mu")
    params = src.init(_key(0))
    rows = []
    for n in cfg["scaling"]:
        row: dict[str, Any] = {"n": n}
        if n <= cfg["direct_max"]:
            m = _measure(_sampler(src, n), params, _key(1), repeat=2)
            row.update(
                direct_compile_s=m["compile_s"],
                direct_s=m["best_s"],
                direct_events_per_s=n / m["best_s"],
                direct_peak_MiB=m["peak_bytes"] / 2**20,
            )
        chunk = min(n, cfg["chunk"])
        m = _measure(
            lambda p, k, n=n, chunk=chunk: stream_cross_section(src, p, k, n, chunk_size=chunk),
            params,
            _key(1),
            repeat=1,
        )
        grad = jax.grad(lambda p, k, n=n, chunk=chunk: stream_cross_section(src, p, k, n, chunk_size=chunk)[0])
        row.update(
            chunk=chunk,
            streamed_compile_s=m["compile_s"],
            streamed_s=m["best_s"],
            streamed_events_per_s=n / m["best_s"],
            streamed_peak_MiB=m["peak_bytes"] / 2**20,
            streamed_grad_peak_MiB=_memory(grad, params, _key(1))["peak"] / 2**20,
        )
        rows.append(row)
    print_table("scaling with N: ee->mumu sample (direct) and cross section streamed in chunks", rows)
    return rows


def section_rambo(cfg: dict[str, Any], out: dict[str, Any], use_pythia: bool) -> list[dict[str, Any]]:
    from diffgen.phasespace import rambo

    n_ev, rows = cfg["rambo"], []
    for n in range(2, 11):

        def gen(key, n=n):
            u = jax.random.uniform(key, (n_ev, 4 * n), jnp.float64)
            return rambo(u, jnp.asarray(91.1876, jnp.float64))

        m = _measure(gen, _key(1), repeat=cfg["repeat"])
        rows.append(
            {
                "n_particles": n,
                "events": n_ev,
                "compile_s": m["compile_s"],
                "events_per_s": n_ev / m["best_s"],
                "bytes_per_event": m["peak_bytes"] / n_ev,
            }
        )
    print_table("RAMBO massless n-body phase space (random numbers included), float64", rows)
    return rows


def _area_function(module: Any) -> tuple[str, Callable[..., Any]] | None:
    for name in ("suite", "run_benchmarks", "benchmark", "run", "main"):
        fn = getattr(module, name, None)
        if callable(fn):
            return name, fn
    return None


def _call_area(fn: Callable[..., Any], quick: bool) -> Any:
    params = inspect.signature(fn).parameters
    if "quick" in params:
        return fn(quick=quick)
    if "argv" in params:
        return fn(["--quick"] if quick else [])
    if not params:
        saved = sys.argv
        sys.argv = [fn.__module__, *(["--quick"] if quick else [])]
        try:
            return fn()
        finally:
            sys.argv = saved
    return fn(quick)


def section_areas(cfg: dict[str, Any], out: dict[str, Any], use_pythia: bool, *, quick: bool) -> list[dict[str, Any]]:
    rows = []
    for area in AREAS:
        try:
            module = importlib.import_module(f"benchmarks.{area}")
        except ModuleNotFoundError as err:
            if err.name == f"benchmarks.{area}":
                rows.append({"area": area, "status": "no script", "wall_s": 0.0})
                continue
            raise
        found = _area_function(module)
        if found is None:
            rows.append({"area": area, "status": "no suite()/run()/main()", "wall_s": 0.0})
            continue
        name, fn = found
        print(f"\n=== benchmarks.{area}.{name} ===")
        t0 = time.perf_counter()
        try:
            result = _call_area(fn, quick)
            status = "ok"
        except SystemExit as err:
            result, status = None, "ok" if not err.code else f"exit {err.code}"
        except Exception as err:
            result, status = None, f"{type(err).__name__}: {err}"
            traceback.print_exc()
        wall = time.perf_counter() - t0
        rows.append({"area": area, "status": status, "wall_s": wall})
        out.setdefault("area_results", {})[area] = _jsonable(result)
    print_table("area benchmark scripts", rows)
    return rows


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    if isinstance(x, (np.generic, np.ndarray, jax.Array)):
        return np.asarray(x).tolist()
    return repr(x)


# --------------------------------------------------------------------------- summary


def _summary(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    hp = results.get("hard_process") or []
    f64 = next((r for r in hp if r.get("dtype") == "float64" and r.get("compile_s", 0) > 0), None)
    if f64:
        rows.append(
            {
                "target": "ee->mumu float64 events/s",
                "goal": f">= {TARGET_MUMU_RATE:.0e}",
                "measured": f64["events_per_s"],
                "met": f64["events_per_s"] >= TARGET_MUMU_RATE,
            }
        )
        rows.append(
            {
                "target": "ee->mumu vs numpy (same run)",
                "goal": f">= {TARGET_NUMPY_RATIO:g}x",
                "measured": f64["ratio"],
                "met": f64["ratio"] >= TARGET_NUMPY_RATIO,
            }
        )
    full = [
        r
        for r in results.get("chains") or []
        if (r.get("stage") == "chain: ee->hadrons" or str(r.get("stage")).startswith(CHUNKED_CHAIN)) and "ratio" in r
    ]
    for r in full:
        how = " as concurrent chunks" if r["stage"].startswith(CHUNKED_CHAIN) else ""
        rows.append(
            {
                "target": f"ee->hadrons{how} vs Pythia 8 ({r['dtype']})",
                "goal": f">= {TARGET_PYTHIA_RATIO:g}x",
                "measured": r["ratio"],
                "met": r["ratio"] >= TARGET_PYTHIA_RATIO,
            }
        )
        rows.append(
            {
                "target": f"  the same per busy core ({r['dtype']}; not a target)",
                "goal": "-",
                "measured": r["ratio_per_core"],
                "met": "-",
            }
        )
        if "ratio_median" in r:
            rows.append(
                {
                    "target": f"  median of the alternating pairs ({r['dtype']}; not a target)",
                    "goal": "-",
                    "measured": r["ratio_median"],
                    "met": "-",
                }
            )
    if results.get("chains") and not full:
        rows.append(
            {
                "target": "ee->hadrons vs Pythia 8",
                "goal": f">= {TARGET_PYTHIA_RATIO:g}x",
                "measured": "Pythia not installed",
                "met": "n/a",
            }
        )
    for r in results.get("gradient") or []:
        rows.append(
            {
                "target": f"grad/forward {r['chain']}",
                "goal": f"<= {TARGET_GRAD_RATIO:g}",
                "measured": r["grad_over_forward"],
                "met": r["grad_over_forward"] <= TARGET_GRAD_RATIO,
            }
        )
    return rows


def _machine_tag() -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", platform.node() or "machine")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    # One definition of the options, shared with `diffgen bench`.
    from diffgen.cli.bench import add_arguments

    add_arguments(parser)
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise ValueError(f"--sections: unknown section(s) {unknown}; choose from {list(SECTIONS)}")
    if argv is None:
        # As the diffgen command runs: XLA's per-call buffers with huge pages (diffgen.host_memory).
        restart_with_huge_pages()

    jax.config.update("jax_enable_x64", True)
    from benchmarks.baselines import pythia_available

    use_pythia = not args.no_pythia and pythia_available()
    cfg = _sizes(args.quick)
    info = machine_info()
    print(
        f"diffgen benchmark suite ({'quick' if args.quick else 'full'}) on {info['machine']} "
        f"({info['processor']}, {info['cpus']} CPUs, JAX {info['jax']} {info['backend']}, "
        f"huge pages {'advised' if info['huge_pages'] else 'not advised'}); "
        f"Pythia 8: {'yes' if use_pythia else 'not installed' if not args.no_pythia else 'skipped'}"
    )
    print("numbers are measured under whatever load the machine carries: compare the same-run ratios")
    results: dict[str, Any] = {
        "machine": info,
        "quick": args.quick,
        "started": _dt.datetime.now(_dt.UTC).isoformat(),
        "sizes": cfg,
        "pythia": use_pythia,
    }
    funcs = {
        "hard_process": section_hard_process,
        "chains": section_chains,
        "gradient": section_gradient,
        "memory": section_memory,
        "scaling_n": section_scaling_n,
        "rambo": section_rambo,
    }
    status = 0
    for name in sections:
        t0 = time.perf_counter()
        try:
            if name == "areas":
                results[name] = section_areas(cfg, results, use_pythia, quick=args.quick)
            else:
                results[name] = funcs[name](cfg, results, use_pythia)
        except Exception as err:
            status = 1
            results.setdefault("errors", {})[name] = f"{type(err).__name__}: {err}"
            print(f"\n[{name}] failed: {type(err).__name__}: {err}", file=sys.stderr)
            traceback.print_exc()
        results.setdefault("section_wall_s", {})[name] = time.perf_counter() - t0
    summary = _summary(results)
    results["summary"] = summary
    print_table("targets (this run)", summary)
    for k in ("pythia_mumu", "pythia_hadrons"):
        if k in results:
            print(f"\n{k} settings (diffgen's electroweak parameters):")
            for line in results[k]["settings"]:
                print(f"  {line}")
    if results.get("errors"):
        print(f"\nerrors: {results['errors']}", file=sys.stderr)
    date = _dt.date.today().isoformat()
    path = Path(args.out) if args.out else RESULTS_DIR / f"{date}-{_machine_tag()}{'-quick' if args.quick else ''}.json"
    write_json(str(path), _jsonable(results))
    print(f"\nwrote {path}")
    return status


if __name__ == "__main__":
    sys.exit(main())
