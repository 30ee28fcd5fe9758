"""Benchmark of the final-state shower: showered e⁺e⁻ → q q̄ events/s at 91.2 GeV.

Measures, in one process: the forward shower in float32 and float64 (compile time and best
wall time), the same with the plain ``vmap`` of the per-event ``while_loop`` that the
slot-refilling forward loop replaced (the speed reference: same trials and decisions), the
cost of each αs gradient estimator relative to the forward shower — event derivatives
(``jax.jvp`` through the shower's custom JVP) and reweighting (``reweight`` to a new αs plus
the free per-event score) — and the mean parton multiplicity and number of veto trials (all of
them, those inside the dipole phase space (f/g > 0) and the accepted ones).
Baseline: the forward float64 shower of the same run (ratios are shown against it).

Run: ``.venv/bin/python -m benchmarks.shower [--quick] [--n N] [--slots 128,256,512] [--repeat R]``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import alternating_times, machine_info, print_table, time_compile_and_run
from diffgen.core import jit
from diffgen.observables import thrust
from diffgen.processes import ee_to_qqbar
from diffgen.shower import final_state_shower, reweight
from diffgen.shower import layer as shower_layer


def shower_with(slots: int, every: int | None = None, emit_fraction: float | None = None):
    """``apply`` of the default shower layer with S = min(N, ``slots``) slots of the refilling loop (0: the
    plain ``vmap`` of the per-event ``while_loop``), ``every`` trials per round and emission blocks
    of ``emit_fraction`` · S rows (None: the defaults)."""
    names = ("_REFILL_SLOTS", "_REFILL_EVERY", "_EMIT_FRACTION")
    settings = {k: v for k, v in zip(names, (slots, every, emit_fraction), strict=True) if v is not None}
    settings["_REFILL_EVENTS_PER_SLOT"] = 1  # exactly min(N, slots) slots

    @contextlib.contextmanager
    def patched():
        saved = {k: getattr(shower_layer, k) for k in settings}
        for k, v in settings.items():
            setattr(shower_layer, k, v)
        try:
            yield
        finally:
            for k, v in saved.items():
                setattr(shower_layer, k, v)

    # S is read when the layer is built, the others when it is traced (at the first call)
    with patched():
        apply = jit(final_state_shower().apply)

    def call(*args):
        with patched():
            return apply(*args)

    return call


def vmapped_shower():
    """The default shower layer, run as the plain ``vmap`` of the per-event ``while_loop``."""
    return shower_with(0)


def best_times(fns, *args, repeat: int = 3) -> tuple[list[float], list[float]]:
    """Best wall and best process CPU time (s) of each of ``fns`` over ``repeat`` interleaved calls.

    Interleaving lets all functions see the same machine load; on a shared, loaded machine the
    CPU time is the steadier measure."""
    times = alternating_times([functools.partial(fn, *args) for fn in fns], repeat)
    return [min(w for w, _ in t) for t in times], [min(c for _, c in t) for t in times]


def parse_slots(text: str) -> list[tuple[int, int | None, float | None]]:
    """``"128,512:8,512:4:0.125"`` -> [(128, None, None), (512, 8, None), (512, 4, 0.125)]."""
    out = []
    for item in text.split(","):
        parts = item.strip().split(":")
        try:
            if not 1 <= len(parts) <= 3:
                raise ValueError
            slots = int(parts[0])
            every = int(parts[1]) if len(parts) > 1 else None
            fraction = float(parts[2]) if len(parts) > 2 else None
        except ValueError:
            raise SystemExit(f"--slots: expected S[:E[:F]] (integers S, E and a fraction F), got {item!r}") from None
        if slots < 1 or (every is not None and every < 1) or (fraction is not None and not 0 < fraction <= 1):
            raise SystemExit(f"--slots: need S >= 1, E >= 1 and 0 < F <= 1, got {item!r}")
        out.append((slots, every, fraction))
    return out


def slot_sweep(n: int, settings, *, repeat: int) -> int:
    """Forward float32 shower for each (S, E, F) of the refilling loop, best wall and CPU time of
    ``repeat`` interleaved runs (so that all settings see the same machine load)."""
    src = ee_to_qqbar(91.2, dtype=jnp.float32)
    events = jit(src.sample, static_argnums=2)(src.init(jax.random.key(0)), jax.random.key(1), n)
    params = {"alpha_s_mz": jnp.asarray(0.118, jnp.float32), "t0": jnp.asarray(1.0, jnp.float32)}
    fns, compile_s = [], []
    for setting in settings:
        fn = shower_with(*setting)
        t0 = time.perf_counter()
        jax.block_until_ready(fn(params, jax.random.key(2), events))
        compile_s.append(time.perf_counter() - t0)
        fns.append(fn)
    wall, cpu = best_times(fns, params, jax.random.key(2), events, repeat=repeat)
    base = wall[0]
    rows = [
        {
            "S": s,
            "trials/round": e or shower_layer._REFILL_EVERY,
            "block rows K/S": f or shower_layer._EMIT_FRACTION,
            "events/s": n / w,
            "events/CPU-s": n / c,
            "ratio to first": base / w,
            "compile s": cs,
        }
        for (s, e, f), w, c, cs in zip(settings, wall, cpu, compile_s, strict=True)
    ]
    print(machine_info())
    print_table(f"forward float32 shower by refilling-loop setting, N={n}, best of {repeat}", rows)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small batches, one repetition")
    parser.add_argument("--n", type=int, default=None, help="events per batch")
    parser.add_argument(
        "--slots",
        default=None,
        metavar="S[:E[:F]],...",
        help="instead of the table: forward float32 for each setting of the refilling loop, S slots, "
        "E trials per round, emission blocks of F*S rows (e.g. 128,512,512:8,512:4:0.125)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="timed calls per measurement, best kept (default 3, 1 with --quick; at least 3 with --slots)",
    )
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    n = args.n or (2000 if args.quick else 20000)
    if args.repeat is not None and args.repeat < 1:
        raise SystemExit(f"--repeat: need an integer >= 1, got {args.repeat}")
    repeat = args.repeat or (1 if args.quick else 3)
    if args.slots:
        return slot_sweep(n, parse_slots(args.slots), repeat=max(repeat, 3))
    shower = final_state_shower()
    rows = []
    results = {}
    for dtype in (jnp.float64, jnp.float32):
        src = ee_to_qqbar(91.2, dtype=dtype)
        events = jit(src.sample, static_argnums=2)(src.init(jax.random.key(0)), jax.random.key(1), n)
        params = {"alpha_s_mz": jnp.asarray(0.118, dtype), "t0": jnp.asarray(1.0, dtype)}
        fwd = jit(shower.apply)
        compile_s, run_s = time_compile_and_run(fwd, params, jax.random.key(2), events, repeat=repeat)
        ref = vmapped_shower()
        compile_ref, run_ref = time_compile_and_run(ref, params, jax.random.key(2), events, repeat=repeat)
        _, (cpu_s, cpu_ref) = best_times((fwd, ref), params, jax.random.key(2), events, repeat=max(repeat, 3))
        out = fwd(params, jax.random.key(2), events)
        mult = float(jnp.mean(out.multiplicity()))
        trials = np.asarray(out.extra["shower_n_trials"])
        # where the trials go: the reweighting record keeps those with f/g > 0, i.e. inside the
        # dipole phase space; the rest fall outside the z range at their scale
        in_range = np.sum(np.asarray(out.extra["shower_trial_t"]) > 0, axis=1)
        accepted = np.asarray(out.extra["shower_n_emissions"])
        record_overflow = int(np.sum(np.asarray(out.extra["shower_record_overflow"])))
        name = np.dtype(dtype).name
        results[name] = run_s
        for mode, t, c, cpu in (
            (f"forward {name}", run_s, compile_s, cpu_s),
            (f"forward {name}, vmap reference", run_ref, compile_ref, cpu_ref),
        ):
            rows.append(
                {
                    "mode": mode,
                    "events/s": n / t,
                    "compile s": c,
                    "ratio to fwd f64": 0.0,
                    "speed-up vs vmap": run_ref / t,
                    "events/CPU-s": n / cpu,
                    "CPU speed-up": cpu_ref / cpu,
                    "<n partons>": mult,
                    "trials mean/max": f"{trials.mean():.1f}/{trials.max()}",
                    "f/g>0, accepted": f"{in_range.mean():.1f}, {accepted.mean():.2f}",
                    "overflow": int(jnp.sum(out.extra["shower_overflow"])),
                }
            )
        if record_overflow:
            print(f"{name}: the trial record overflowed in {record_overflow} events; f/g>0 undercounts there")
        if dtype == jnp.float64:
            rw = jit(lambda ev: jnp.mean(reweight(ev, 0.128)))
            c_rw, t_rw = time_compile_and_run(rw, out, repeat=repeat)
            rows.append(
                {
                    "mode": "reweighting (after fwd)",
                    "events/s": n / (run_s + t_rw),
                    "compile s": c_rw,
                    "ratio to fwd f64": 0.0,
                    "speed-up vs vmap": "",
                    "events/CPU-s": "",
                    "CPU speed-up": "",
                    "<n partons>": mult,
                    "trials mean/max": "",
                    "f/g>0, accepted": "",
                    "overflow": 0,
                }
            )
            n_jvp = max(n // 10, 200)
            sub = events[:n_jvp]

            def f(a, sub=sub, dtype=dtype):
                ev = shower.apply({"alpha_s_mz": a, "t0": jnp.asarray(1.0, dtype)}, jax.random.key(2), sub)
                return jnp.mean(1 - thrust(ev))

            jvp = jit(lambda a: jax.jvp(f, (a,), (jnp.ones_like(a),)))
            c_j, t_j = time_compile_and_run(jvp, jnp.asarray(0.118, dtype), repeat=repeat)
            fwd_sub = jit(lambda a: f(a))
            _, t_fs = time_compile_and_run(fwd_sub, jnp.asarray(0.118, dtype), repeat=repeat)
            rows.append(
                {
                    "mode": f"event derivatives (jvp, n={n_jvp})",
                    "events/s": n_jvp / t_j,
                    "compile s": c_j,
                    "ratio to fwd f64": t_j / t_fs,
                    "speed-up vs vmap": "",
                    "events/CPU-s": "",
                    "CPU speed-up": "",
                    "<n partons>": mult,
                    "trials mean/max": "",
                    "f/g>0, accepted": "",
                    "overflow": 0,
                }
            )
    base = results["float64"]
    for r in rows:
        if r["ratio to fwd f64"] == 0.0:
            r["ratio to fwd f64"] = (n / r["events/s"]) / base
    print(machine_info())
    print_table(f"final_state_shower, ee -> q qbar at 91.2 GeV, alpha_s(mZ)=0.118, t0=1 GeV^2, N={n}", rows)
    print("(event-derivative ratio is relative to the forward shower+thrust of the same sub-batch)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
