"""``diffgen demo``: the Z-lineshape fit to the LEP cross sections, with events and plots in ``--out``.

Run file table ``[demo]`` (every key optional; command-line options override it)::

    [demo]
    out = "out"            # output directory
    events = 100000        # weighted hadronic events per LEP energy in the fit
    seed = 1
    optimizer = "lbfgs"    # or "adam"
    quick = false          # 5000 events per point (smoke test)

The effective configuration is written as ``<out>/summary.json.run.toml``.
"""

from __future__ import annotations

import argparse
from typing import Any

from diffgen.cli import _common

NAME = "demo"
HELP = "generate e+e- -> mu+mu- / hadrons across the Z and fit m_Z, Gamma_Z to the LEP lineshape"

DEFAULTS: dict[str, Any] = {"out": "out", "events": 100_000, "seed": 1, "optimizer": "lbfgs", "quick": False}


def fields() -> dict[str, Any]:
    """Allowed keys of the ``[demo]`` table."""
    from diffgen.config import Field

    return {
        "out": Field((str,), "output directory"),
        "events": Field((int,), "weighted hadronic events per LEP energy in the fit", minimum=100),
        "seed": Field((int,), "random seed", minimum=0),
        "optimizer": Field((str,), "optax optimiser", choices=("lbfgs", "adam")),
        "quick": Field((bool,), "reduced sizes (5000 events per point)"),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``diffgen demo``."""
    parser.add_argument("--out", default=None, metavar="DIR", help=f"output directory (default: {DEFAULTS['out']})")
    parser.add_argument(
        "--events",
        type=int,
        default=None,
        metavar="N",
        help="weighted hadronic events per LEP energy in the fitted MC estimate, >= 100 "
        f"(default: {DEFAULTS['events']})",
    )
    parser.add_argument("--optimizer", choices=("lbfgs", "adam"), default=None, help="optax optimiser (default: lbfgs)")
    _common.add_flag(parser, "--quick", help="reduced size (5000 events per point) for a smoke test (default: off)")
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bars, but the summary is printed (default: off)"
    )
    _common.add_common_options(parser, seed_default=DEFAULTS["seed"], seed_what="pseudo-events and fit")


def run(args: argparse.Namespace) -> int:
    """Run the demonstration; exit code 1 if a fitted value is more than 3σ from LEP."""
    from diffgen.cli import UsageError

    # Options are named as options in messages; run-file values are named as keys by resolve().
    if args.events is not None and args.events < 100:
        raise UsageError(f"--events must be >= 100, got {args.events}")
    if args.seed is not None and args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")
    cfg = _common.resolve(args, NAME, fields(), DEFAULTS)
    out = _common.output_directory(cfg["out"], "--out")
    import jax

    jax.config.update("jax_enable_x64", True)
    from diffgen.demo import run_demo

    quick = bool(cfg["quick"])
    summary = run_demo(
        cfg["out"],
        n_fit=5_000 if quick else cfg["events"],
        n_plot=5_000 if quick else 50_000,
        n_save=1_000 if quick else 10_000,
        seed=cfg["seed"],
        optimizer=cfg["optimizer"],
        progress=not (args.quiet or args.no_progress),
        verbose=not args.quiet,
    )
    _common.write_effective(out / "summary.json", NAME, cfg)
    return 0 if all(summary["within_3_sigma"].values()) else 1
