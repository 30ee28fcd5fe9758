"""Benchmark of the parametric detector: particles/s through each layer and the LEP-like detector.

Measures, in one process, for float32 and float64 events: the forward pass of every detector
layer (tracker, calorimeter, per-component Gaussian smearing, soft and stochastic
acceptance × efficiency) and of the whole LEP-like detector (soft and stochastic), as
particles per second (real particles, padding excluded), with compile time; and the cost
of ``jax.grad`` of a smeared observable (mean reconstructed energy weighted by the keep
probabilities, plus the score-function surrogate in stochastic mode) with respect to all
detector parameters, relative to the forward pass.
Baseline: the same tracker smearing written in vectorised NumPy (same formulas, same
number of random numbers), timed in the same run; ``vs_numpy`` is its time over ours.

Run: ``.venv/bin/python -m benchmarks.detector [--quick]``. On a shared machine the
numbers are measured under load: compare ratios, not absolutes.
"""

from __future__ import annotations

import argparse
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import best_time, machine_info, print_table, time_compile_and_run
from diffgen.core import jit

#: Particle mix of the input (PDG ids, probabilities): like a hadronic Z decay at particle level.
MIX = (
    (211, 0.3),
    (-211, 0.3),
    (22, 0.25),
    (321, 0.04),
    (-321, 0.04),
    (130, 0.03),
    (2112, 0.02),
    (13, 0.01),
    (-14, 0.01),
)


def make_events(n: int, capacity: int, dtype: Any, seed: int = 0):
    """n events × capacity slots (about 80 % filled) of the particle mix; pT exponential, |η| < 3."""
    from diffgen import Events

    rng = np.random.default_rng(seed)
    ids, probs = zip(*MIX, strict=True)
    pid = rng.choice(np.asarray(ids, np.int32), size=(n, capacity), p=np.asarray(probs) / sum(probs))
    mask = rng.uniform(size=(n, capacity)) < 0.8
    pt = rng.exponential(1.5, (n, capacity)) + 0.05
    eta = rng.uniform(-3, 3, (n, capacity))
    phi = rng.uniform(-np.pi, np.pi, (n, capacity))
    p3 = np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)], -1)
    e = np.sqrt(np.sum(p3**2, -1) + 0.13957**2)
    p = np.where(mask[..., None], np.concatenate([e[..., None], p3], -1), 0.0)
    return Events(
        p=jnp.asarray(p, dtype=dtype),
        weight=jnp.ones(n, dtype=dtype),
        mask=jnp.asarray(mask),
        pid=jnp.asarray(np.where(mask, pid, 0).astype(np.int32)),
    )


def numpy_tracker(
    p: np.ndarray, charged: np.ndarray, rng: np.random.Generator, a: float, b: float, s_eta: float, s_phi: float
) -> np.ndarray:
    """The tracker smearing of ``diffgen.detector.tracker`` in NumPy (the baseline)."""
    pt = np.hypot(p[..., 1], p[..., 2])
    ok = charged & (pt > 0)
    eta = np.arcsinh(p[..., 3] / np.where(ok, pt, 1.0))
    phi = np.arctan2(p[..., 2], p[..., 1])
    m2 = np.maximum(p[..., 0] ** 2 - pt**2 - p[..., 3] ** 2, 0.0)
    z = rng.standard_normal(p.shape[:2] + (3,))
    pt_new = pt * np.abs(1 + np.hypot(a, b * pt) * z[..., 0])
    eta_new = eta + s_eta * z[..., 1]
    phi_new = phi + s_phi * z[..., 2]
    p3 = np.stack([pt_new * np.cos(phi_new), pt_new * np.sin(phi_new), pt_new * np.sinh(eta_new)], -1)
    new = np.concatenate([np.sqrt(np.sum(p3**2, -1) + m2)[..., None], p3], -1)
    return np.where(ok[..., None], new, p)


def _observable(out) -> jax.Array:
    """Keep-probability-weighted mean energy, plus the score-function surrogate in stochastic mode.

    In stochastic mode the pathwise gradient of the energy misses the drop decisions, so the
    surrogate mean(stop_gradient(E) · log p) is added (its gradient is the score-function term).
    """
    w = out.extra.get("detector_keep_prob", out.mask.astype(out.p.dtype))
    energy = jnp.sum(w * out.p[..., 0], axis=1)
    logp = out.extra.get("detector_logprob", jnp.zeros_like(energy))
    return jnp.mean(energy) + jnp.mean(jax.lax.stop_gradient(energy) * logp)


def suite(quick: bool = False) -> list[dict[str, Any]]:
    """Run the benchmark; returns one row per (layer, dtype)."""
    from diffgen.detector import calorimeter, efficiency, gaussian_smearing, lep_like, pdg, tracker

    jax.config.update("jax_enable_x64", True)
    n, capacity = (2_000, 32) if quick else (20_000, 64)
    repeat = 2 if quick else 5
    layers = {
        "tracker": tracker(),
        "calorimeter": calorimeter(),
        "gaussian_smearing": gaussian_smearing(),
        "efficiency soft": efficiency(eta_max=2.0, pt_min=0.2, plateau=0.98, pt_50=0.1, pt_width=0.02),
        "efficiency stochastic": efficiency(eta_max=2.0, pt_min=0.2, plateau=0.98, mode="stochastic"),
        "LEP-like soft": lep_like(),
        "LEP-like stochastic": lep_like(mode="stochastic"),
    }
    key = jax.random.key(1)
    rows = []
    for dtype in (jnp.float32, jnp.float64):
        events = make_events(n, capacity, dtype)
        n_particles = int(np.asarray(events.mask).sum())
        dname = np.dtype(dtype).name
        # NumPy baseline of the tracker (always float64: NumPy's transcendental functions).
        p_np = np.asarray(events.p, dtype=np.float64)
        charged = np.asarray(events.mask & pdg.is_charged(events.pid))
        rng = np.random.default_rng(0)
        numpy_s = best_time(numpy_tracker, p_np, charged, rng, 0.005, 6e-4, 1e-3, 1e-3, repeat=repeat)
        rows.append(
            {
                "layer": "NumPy tracker (baseline)",
                "dtype": "float64",
                "particles/s": n_particles / numpy_s,
                "compile_s": 0.0,
                "grad/forward": float("nan"),
                "vs_numpy": 1.0,
            }
        )
        for name, layer in layers.items():
            params = jax.tree.map(lambda x, dtype=dtype: jnp.asarray(x, dtype), layer.init(jax.random.key(0)))
            forward = jit(lambda th, k, ev, layer=layer: _observable(layer.apply(th, k, ev)))
            apply = jit(layer.apply)
            compile_s, run_s = time_compile_and_run(apply, params, key, events, repeat=repeat)
            _, obs_s = time_compile_and_run(forward, params, key, events, repeat=repeat)
            grad = jit(jax.grad(lambda th, k, ev, layer=layer: _observable(layer.apply(th, k, ev))))
            _, grad_s = time_compile_and_run(grad, params, key, events, repeat=repeat)
            rows.append(
                {
                    "layer": name,
                    "dtype": dname,
                    "particles/s": n_particles / run_s,
                    "compile_s": compile_s,
                    "grad/forward": grad_s / obs_s,
                    "vs_numpy": numpy_s / run_s if name == "tracker" else float("nan"),
                }
            )
    print_table(f"diffgen.detector: {n} events x {capacity} slots (~80 % filled), best of {repeat}", rows)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small batches, two repetitions")
    args = parser.parse_args(argv)
    info = machine_info()
    print(
        f"machine: {info['machine']} ({info['cpus']} CPUs, {info['backend']}, jax {info['jax']}); measured under load"
    )
    suite(quick=args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
