"""Derivatives of shower observables in αs(m_Z) and t0 with every estimator, side by side.

For e⁺e⁻ → q q̄ at 91.2 GeV showered by ``final_state_shower(boundary_trials=B)`` this prints
and writes ``OUT/shower_event_derivatives.json`` with, for O = 1 − T (thrust) and O = the
parton multiplicity:

* event derivatives with the random numbers fixed and the decisions held (pathwise only);
* + the score of the held decisions (``score_function_term``);
* + the cut-off boundary term (``boundary_term``): the full event-derivative estimator;
* the exact reweighting estimator ``mean(extra["shower_score_alpha_s"]·(O − ⟨O⟩))`` (αs only);
* central finite differences with common random numbers (same events and keys, ±h);
* finite differences of independent samples at ±Δ.

Each value comes with its Monte Carlo error (per-event spread / √N; for the finite
differences of independent samples the two sample errors combined).

    .venv/bin/python examples/shower_event_derivatives.py [--n 10000] [--boundary-trials 8] [--seed 1] [--out out]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

from diffgen.demo import _write_json  # noqa: E402
from diffgen.observables import thrust  # noqa: E402
from diffgen.processes import ee_to_qqbar  # noqa: E402
from diffgen.shower import boundary_term, final_state_shower, score_function_term  # noqa: E402

OBSERVABLES = {
    "1-T": lambda ev: 1.0 - thrust(ev),
    "multiplicity": lambda ev: jnp.sum(ev.mask, axis=1).astype(ev.dtype),
}
ALPHA_S, T0 = 0.118, 1.0


def _mean_err(x: np.ndarray) -> tuple[float, float]:
    return float(np.mean(x)), float(np.std(x) / math.sqrt(len(x)))


def estimates(n: int, boundary_trials: int, seed: int, h_alpha: float, h_t0: float, delta: float) -> dict:
    """All estimators of d⟨O⟩/dαs(m_Z) and d⟨O⟩/dt0 on one sample (see the module docstring)."""
    src = ee_to_qqbar(91.2)
    hard = jax.jit(src.sample, static_argnums=2)(src.init(jax.random.key(0)), jax.random.key(seed), n)
    shower = final_state_shower(boundary_trials=boundary_trials)
    key = jax.random.key(seed + 1000)

    def per_event(alpha, t0):
        ev = shower.apply({"alpha_s_mz": alpha, "t0": t0}, key, hard)
        out = {}
        for name, fn in OBSERVABLES.items():
            o = fn(ev)
            out[name] = {
                "pathwise": o,
                "pathwise+score": score_function_term(o, ev),
                "total": score_function_term(o, ev) + boundary_term(fn, ev),
            }
        return out, ev

    a0, t00 = jnp.asarray(ALPHA_S), jnp.asarray(T0)
    values = jax.jit(lambda a, t: jax.tree.map(lambda x: x, per_event(a, t)[0]))
    results: dict = {"n_events": n, "boundary_trials": boundary_trials, "seed": seed}
    for param, tangent in (("alpha_s_mz", (1.0, 0.0)), ("t0", (0.0, 1.0))):
        jvp = jax.jit(
            lambda a, t, ta=tangent: jax.jvp(
                lambda x, y: per_event(x, y)[0], (a, t), (jnp.asarray(ta[0]), jnp.asarray(ta[1]))
            )[1]
        )
        start = time.perf_counter()
        tangents = jax.tree.map(np.asarray, jvp(a0, t00))
        h = h_alpha if param == "alpha_s_mz" else h_t0
        step = (h, 0.0) if param == "alpha_s_mz" else (0.0, h)
        plus = values(a0 + step[0], t00 + step[1])
        minus = values(a0 - step[0], t00 - step[1])
        res = {}
        for name in OBSERVABLES:
            row = {k: _mean_err(v) for k, v in tangents[name].items()}
            crn = (np.asarray(plus[name]["pathwise"]) - np.asarray(minus[name]["pathwise"])) / (2 * h)
            row["crn_finite_difference"] = _mean_err(crn)
            row["total_minus_crn"] = _mean_err(tangents[name]["total"] - crn)
            row["pathwise+score_minus_crn"] = _mean_err(tangents[name]["pathwise+score"] - crn)
            res[name] = row
        if param == "alpha_s_mz":
            _, ev = jax.jit(per_event)(a0, t00)
            score = np.asarray(ev.extra["shower_score_alpha_s"])
            for name, fn in OBSERVABLES.items():
                o = np.asarray(fn(ev))
                res[name]["reweighting"] = _mean_err(score * (o - o.mean()))
            # independent samples at αs ± Δ (new hard events and shower keys)
            for name, fn in OBSERVABLES.items():
                side = []
                for sgn, k in ((1, 1), (-1, 2)):
                    hard_k = jax.jit(src.sample, static_argnums=2)(
                        src.init(jax.random.key(0)), jax.random.key(seed + 100 * k), n
                    )
                    ev_k = jax.jit(shower.apply)(
                        {"alpha_s_mz": a0 + sgn * delta, "t0": t00}, jax.random.key(seed + 200 * k), hard_k
                    )
                    side.append(np.asarray(fn(ev_k)))
                d = (side[0].mean() - side[1].mean()) / (2 * delta)
                e = math.sqrt(side[0].var() / n + side[1].var() / n) / (2 * delta)
                res[name]["independent_finite_difference"] = (float(d), float(e))
        res["seconds"] = time.perf_counter() - start
        results[param] = res
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="events (default 10 000)")
    parser.add_argument("--boundary-trials", type=int, default=8, help="B, trials kept for the boundary term")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--h-alpha", type=float, default=0.005, help="step of the common-random-number differences")
    parser.add_argument(
        "--h-t0", type=float, default=0.05, help="t0 step (GeV²) of the common-random-number differences"
    )
    parser.add_argument("--delta", type=float, default=0.01, help="αs step of the independent-sample differences")
    parser.add_argument("--out", type=Path, default=Path("out"))
    args = parser.parse_args(argv)
    if args.n < 100 or args.boundary_trials < 1:
        parser.error("--n must be >= 100 and --boundary-trials >= 1")
    res = estimates(args.n, args.boundary_trials, args.seed, args.h_alpha, args.h_t0, args.delta)
    for param in ("alpha_s_mz", "t0"):
        print(
            f"\nd<O>/d{param} at alpha_s(m_Z) = {ALPHA_S}, t0 = {T0} GeV^2 "
            f"({args.n} events, B = {args.boundary_trials})"
        )
        for name in OBSERVABLES:
            print(f"  {name}:")
            for k, (v, e) in res[param][name].items():
                print(f"    {k:32s} {v:10.4f} ± {e:.4f}")
    args.out.mkdir(parents=True, exist_ok=True)
    _write_json(res, args.out / "shower_event_derivatives.json")
    print(f"\nwrote {args.out / 'shower_event_derivatives.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
