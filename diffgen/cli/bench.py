"""``diffgen bench``: run the benchmark suite (``benchmarks/__main__.py``) of a source checkout.

Run file table ``[bench]`` (every key optional; command-line options override it)::

    [bench]
    quick = true
    sections = ["hard_process", "chains"]
    pythia = false                 # the Pythia 8 baseline, if installed
    out = "bench.json"
    seed = 0

The effective configuration is written next to the results as ``<out>.run.toml``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from pathlib import Path
from typing import Any

from diffgen.cli import UsageError, _common

NAME = "bench"
HELP = "run the benchmark suite (events/s vs NumPy and Pythia 8 baselines, gradient cost, memory, scaling)"

SECTIONS = ("hard_process", "chains", "gradient", "memory", "scaling_n", "rambo", "areas")

DEFAULTS: dict[str, Any] = {"quick": False, "sections": list(SECTIONS), "pythia": True, "out": None, "seed": 0}


def fields() -> dict[str, Any]:
    """Allowed keys of the ``[bench]`` table."""
    from diffgen.config import Field

    return {
        "quick": Field((bool,), "small sizes"),
        "sections": Field((list,), f"sections to run, from {list(SECTIONS)}"),
        "pythia": Field((bool,), "run the Pythia 8 baseline if installed"),
        "out": Field((str,), "output JSON file"),
        "seed": Field((int,), "seed of the benchmarked events", minimum=0),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the suite, shared with ``python -m benchmarks``; ``diffgen bench`` adds the common ones.

    The suite's own parser (``python -m benchmarks``) gets only the suite options: it has no run
    files, no ``--quiet`` and its own fixed seeds.
    """
    diffgen_cli = parser.prog.split()[0] == "diffgen"
    default = None if diffgen_cli else False  # None = "not given", so that a run file can set it
    parser.add_argument(
        "--quick",
        action="store_const",
        const=True,
        default=default,
        help="small sizes (default: full sizes, N up to 1e7)",
    )
    parser.add_argument(
        "--sections",
        default=None if diffgen_cli else ",".join(SECTIONS),
        metavar="S1,S2",
        help=f"comma-separated sections to run (default: all of {','.join(SECTIONS)})",
    )
    parser.add_argument(
        "--no-pythia",
        dest="pythia" if diffgen_cli else "no_pythia",
        action="store_const",
        const=not diffgen_cli,
        default=None if diffgen_cli else False,
        help="skip the Pythia 8 baseline even if installed (default: run it when installed)",
    )
    parser.add_argument(
        "--out",
        default=None,
        metavar="FILE",
        help="output JSON file (default: benchmarks/results/<date>-<machine>[-quick].json in the checkout)",
    )
    if diffgen_cli:
        _common.add_common_options(parser, seed_default=DEFAULTS["seed"], seed_what="benchmarked events")


def _checkout_root() -> Path:
    """The source tree holding ``benchmarks/`` (the suite is not part of the installed package)."""
    import diffgen

    for root in (Path(diffgen.__file__).resolve().parents[1], Path.cwd()):
        if (root / "benchmarks" / "__main__.py").is_file():
            return root
    raise UsageError("the benchmark suite lives in benchmarks/ of a diffgen source checkout; run from one")


def _sections(value: Any) -> list[str]:
    items = [s.strip() for s in value.split(",")] if isinstance(value, str) else list(value)
    items = [s for s in items if s]
    unknown = sorted(set(items) - set(SECTIONS))
    if unknown:
        raise UsageError(f"--sections: unknown section(s) {unknown}; choose from {list(SECTIONS)}")
    if not items:
        raise UsageError(f"--sections: give at least one of {list(SECTIONS)}")
    return items


def run(args: argparse.Namespace) -> int:
    """Run the suite, write its JSON and the effective configuration next to it."""
    if isinstance(args.sections, str):
        args.sections = _sections(args.sections)
    cfg = _common.resolve(args, NAME, fields(), DEFAULTS)
    cfg["sections"] = _sections(cfg["sections"])
    root = _checkout_root()
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    import benchmarks.__main__ as suite

    if cfg["out"] is None:
        import datetime

        date = datetime.date.today().isoformat()
        cfg["out"] = str(suite.RESULTS_DIR / f"{date}-{suite._machine_tag()}{'-quick' if cfg['quick'] else ''}.json")
    _common.output_directory(Path(cfg["out"]).resolve().parent, "--out")
    argv = ["--sections", ",".join(cfg["sections"]), "--out", cfg["out"]]
    if cfg["quick"]:
        argv.append("--quick")
    if not cfg["pythia"]:
        argv.append("--no-pythia")
    # --quiet: the tables go only to the JSON file; errors still reach stderr.
    with (
        contextlib.redirect_stdout(io.StringIO()) if args.quiet else contextlib.nullcontext(),
        _common.progress(len(cfg["sections"]), "benchmark sections", quiet=args.quiet, unit="sections") as bar,
        _count_sections(suite, bar),
        _seeded(suite, cfg["seed"]),
    ):
        status = suite.main(argv)
    _common.write_effective(cfg["out"], NAME, cfg)
    return status


@contextlib.contextmanager
def _seeded(suite: Any, seed: int) -> Any:
    """The suite draws its events from the keys 0, 1, 2, …: a seed other than 0 makes key ``i``
    ``fold_in(key(seed), i)`` for the run (restored after)."""
    if seed == 0:
        yield
        return
    import jax

    base, original = jax.random.key(seed), suite._key
    suite._key = lambda i: jax.random.fold_in(base, i)
    try:
        yield
    finally:
        suite._key = original


@contextlib.contextmanager
def _count_sections(suite: Any, bar: Any) -> Any:
    """Advance ``bar`` after each section of the suite (its ``section_<name>`` functions), restored after."""
    originals = {f"section_{name}": getattr(suite, f"section_{name}", None) for name in SECTIONS}

    def counted(func: Any) -> Any:
        def run_section(*a: Any, **k: Any) -> Any:
            try:
                return func(*a, **k)
            finally:
                bar.advance(1)

        return run_section

    try:
        for attr, func in originals.items():
            if func is not None:
                setattr(suite, attr, counted(func))
        yield
    finally:
        for attr, func in originals.items():
            if func is not None:
                setattr(suite, attr, func)
