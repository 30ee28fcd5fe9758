"""Four-momentum conservation of the e⁺e⁻ → hadrons chain, event by event, float32 and float64.

For e⁺e⁻ → q q̄ → ``final_state_shower()`` (→ ``hadronize()``) at 91.1876 GeV, prints per
stage and dtype the largest and the median of max_μ |ΣP_μ − P⁰_μ| / √s over the events, with
ΣP the sum of the final particles (in float64) and P⁰ = (√s, 0, 0, 0): how far rounding
moves the events away from exact conservation. A precision measurement, not a speed one.

    .venv/bin/python -m benchmarks.conservation [--n 2000] [--seed 1]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import machine_info, positive_int, print_table
from diffgen.core import chain, jit

#: √s of the events, GeV (the Z pole, ``ee_to_qqbar``'s default).
SQRT_S = 91.1876


def deviations(n: int, dtype, seed: int, hadrons: bool) -> np.ndarray:
    """[n] max_μ |ΣP_μ − P⁰_μ| / √s of n events of the chain (with ``hadrons``: and hadronization)."""
    from diffgen.hadronization import hadronize
    from diffgen.processes import ee_to_qqbar
    from diffgen.shower import final_state_shower

    src = ee_to_qqbar(SQRT_S, dtype=dtype)
    stages = [("shower", final_state_shower())] + ([("hadronization", hadronize())] if hadrons else [])
    sim = chain(src, *stages)
    ev = jit(lambda p, k: sim.sample(p, k, n))(sim.init(jax.random.key(0)), jax.random.key(seed))
    mask = np.asarray(ev.mask)[..., None]
    total = np.sum(np.where(mask, np.asarray(ev.p, np.float64), 0.0), axis=1)
    return np.max(np.abs(total - np.array([SQRT_S, 0.0, 0.0, 0.0])), axis=1) / SQRT_S


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=positive_int, default=2000, help="events per stage and dtype (default 2000)")
    parser.add_argument("--seed", type=int, default=1, help="PRNG seed of the events (default 1)")
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    print(machine_info())
    rows = []
    for dtype in (jnp.float32, jnp.float64):
        eps = float(jnp.finfo(dtype).eps)
        for label, hadrons in (("shower", False), ("shower + hadronization", True)):
            dev = deviations(args.n, dtype, args.seed, hadrons)
            rows.append(
                {
                    "chain": f"ee->qqbar, {label}",
                    "dtype": jnp.dtype(dtype).name,
                    "n": args.n,
                    "max deviation / sqrt(s)": float(dev.max()),
                    "median": float(np.median(dev)),
                    "max in units of eps": float(dev.max() / eps),
                }
            )
    print_table("four-momentum conservation per event (relative to sqrt(s))", rows)
    return rows


if __name__ == "__main__":
    main()
