"""``diffgen demo``: the Z-lineshape fit to the LEP cross sections, with events and plots in ``--out``."""

from __future__ import annotations

import argparse

NAME = "demo"
HELP = "generate e+e- -> mu+mu- / hadrons across the Z and fit m_Z, Gamma_Z to the LEP lineshape"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="out", help="output directory (default: out)")
    parser.add_argument(
        "--events",
        type=int,
        default=100_000,
        help="weighted hadronic events per LEP energy in the fitted MC estimate (default: 100000)",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (default: 1)")
    parser.add_argument(
        "--optimizer", choices=("lbfgs", "adam"), default="lbfgs", help="optax optimiser (default: lbfgs)"
    )
    parser.add_argument("--quick", action="store_true", help="reduced size (5000 events per point) for a smoke test")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from diffgen.cli import UsageError

    if args.events < 100:
        raise UsageError(f"--events must be >= 100, got {args.events}")
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")
    import jax

    jax.config.update("jax_enable_x64", True)
    from diffgen.demo import run_demo

    n_fit = 5_000 if args.quick else args.events
    n_plot = 5_000 if args.quick else 50_000
    n_save = 1_000 if args.quick else 10_000
    summary = run_demo(
        args.out,
        n_fit=n_fit,
        n_plot=n_plot,
        n_save=n_save,
        seed=args.seed,
        optimizer=args.optimizer,
        progress=not args.no_progress,
    )
    return 0 if all(summary["within_3_sigma"].values()) else 1
