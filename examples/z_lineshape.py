"""Full-size Z-lineshape fit to the LEP σ⁰_had table (what `diffgen demo` runs), outputs in out/z_lineshape/.

.venv/bin/python examples/z_lineshape.py [--events 100000] [--seed 1] [--optimizer lbfgs]
"""

import argparse

import jax

jax.config.update("jax_enable_x64", True)

from diffgen.demo import run_demo  # noqa: E402

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=100_000, help="hadronic events per LEP energy")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--optimizer", choices=("lbfgs", "adam"), default="lbfgs")
    ap.add_argument("--out", default="out/z_lineshape")
    a = ap.parse_args()
    run_demo(a.out, n_fit=a.events, seed=a.seed, optimizer=a.optimizer)
