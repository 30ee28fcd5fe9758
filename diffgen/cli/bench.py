"""``diffgen bench``: run the benchmark suite (``benchmarks/__main__.py``) of a source checkout."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from diffgen.cli import UsageError

NAME = "bench"
HELP = "run the benchmark suite (events/s vs NumPy and Pythia 8 baselines, gradient cost, memory, scaling)"

SECTIONS = ("hard_process", "chains", "gradient", "memory", "scaling_n", "rambo", "areas")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="small sizes (default: full sizes, N up to 1e7)")
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated sections to run (default: all of {','.join(SECTIONS)})",
    )
    parser.add_argument("--no-pythia", action="store_true", help="skip the Pythia 8 baseline even if installed")
    parser.add_argument(
        "--out",
        default=None,
        help="output JSON file (default: benchmarks/results/<date>-<machine>[-quick].json in the checkout)",
    )


def _checkout_root() -> Path:
    """The source tree holding ``benchmarks/`` (the suite is not part of the installed package)."""
    import diffgen

    for root in (Path(diffgen.__file__).resolve().parents[1], Path.cwd()):
        if (root / "benchmarks" / "__main__.py").is_file():
            return root
    raise UsageError("the benchmark suite lives in benchmarks/ of a diffgen source checkout; run from one")


def run(args: argparse.Namespace) -> int:
    unknown = sorted({s.strip() for s in args.sections.split(",") if s.strip()} - set(SECTIONS))
    if unknown:
        raise UsageError(f"--sections: unknown section(s) {unknown}; choose from {list(SECTIONS)}")
    root = _checkout_root()
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from benchmarks.__main__ import main

    argv = ["--sections", args.sections]
    if args.quick:
        argv.append("--quick")
    if args.no_pythia:
        argv.append("--no-pythia")
    if args.out:
        argv += ["--out", args.out]
    return main(argv)
