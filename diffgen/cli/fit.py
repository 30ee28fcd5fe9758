"""``diffgen fit [--config RUN.toml] DATA.csv``: fit a model's parameters to a data table with Hessian errors.

The run file's ``[fit]`` table (every key optional; command-line options override it)::

    [fit]
    model = "z_lineshape"     # the model; at present the Z lineshape (m_Z, Γ_Z, norm) of `diffgen demo`
    data = "lep.csv"          # the data table (the positional DATA.csv overrides it)
    events = 100000           # weighted MC events per data point
    seed = 1
    optimizer = "lbfgs"       # or "adam"
    steps = 200               # maximum optimiser steps per pass
    output = "out/fit"        # directory for fit.json and the effective configuration
    [fit.start]               # starting values
    m_z = 91.0
    gamma_z = 2.6
    norm = 1.0

The data file is a CSV like ``diffgen/data/lep_hadronic_xsec_7point_average_kafe.csv``
(columns ``E_cm_GeV, E_cm_err_GeV, sigma0_had_nb, sigma0_had_err_nb``; ``#`` comment lines).

The older form ``diffgen fit RUN.toml DATA.csv`` (run file first, positional) still works.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from diffgen.cli import UsageError, _common

NAME = "fit"
HELP = "fit model parameters to a data table (data CSV [+ run configuration TOML]), Hessian errors"

MODELS = ("z_lineshape",)
DEFAULTS: dict[str, Any] = {
    "model": "z_lineshape",
    "data": None,
    "events": 100_000,
    "seed": 1,
    "optimizer": "lbfgs",
    "steps": 200,
    "output": "out/fit",
    "start": {"m_z": 91.0, "gamma_z": 2.6, "norm": 1.0},
}


def _fields() -> dict[str, Any]:
    from diffgen.config import Field

    return {
        "model": Field((str,), "model to fit", choices=MODELS),
        "data": Field((str,), "data CSV (the lineshape table format)"),
        "events": Field((int,), "weighted MC events per data point", minimum=100),
        "seed": Field((int,), "random seed", minimum=0),
        "optimizer": Field((str,), "optax optimiser", choices=("lbfgs", "adam")),
        "steps": Field((int,), "maximum optimiser steps per pass", minimum=1),
        "output": Field((str,), "output directory"),
        "start": Field((dict,), "starting values {m_z (GeV), gamma_z (GeV), norm}"),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``diffgen fit``."""
    parser.add_argument(
        "inputs",
        nargs="*",
        metavar="DATA.csv",
        help="data CSV (the lineshape table format); may instead be set as `data` in the run file. "
        "The older form `diffgen fit RUN.toml DATA.csv` (run file first) is still accepted (default: none)",
    )
    parser.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help=f"output directory for fit.json and fit.json.run.toml (default: {DEFAULTS['output']})",
    )
    parser.add_argument("--model", choices=MODELS, default=None, help=f"model to fit (default: {DEFAULTS['model']})")
    parser.add_argument(
        "--events",
        type=int,
        default=None,
        metavar="N",
        help=f"weighted MC events per data point, >= 100 (default: {DEFAULTS['events']})",
    )
    parser.add_argument(
        "--optimizer",
        choices=("lbfgs", "adam"),
        default=None,
        help=f"optax optimiser (default: {DEFAULTS['optimizer']})",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        metavar="N",
        help=f"maximum optimiser steps per pass, >= 1 (default: {DEFAULTS['steps']})",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bars, but the results are printed (default: off)"
    )
    _common.add_common_options(parser, seed_default=DEFAULTS["seed"], seed_what="MC estimate and fit")


def _positionals(args: argparse.Namespace) -> None:
    """Map the positional arguments on ``args.data`` (and ``args.config`` for the older form)."""
    inputs = list(args.inputs or [])
    args.data = None
    if len(inputs) == 2 and inputs[0].lower().endswith(".toml"):
        if args.config is not None:
            raise UsageError(f"give the run file either as --config or first positional, not both ({inputs[0]!r})")
        args.config = inputs.pop(0)
    if len(inputs) == 1 and inputs[0].lower().endswith(".toml"):
        raise UsageError(f"{inputs[0]!r} looks like a run file: give it as --config {inputs[0]} (and the data CSV)")
    if len(inputs) > 1:
        raise UsageError(f"expected one data CSV (and --config RUN.toml), got {inputs}")
    if inputs:
        args.data = inputs[0]


def run(args: argparse.Namespace) -> int:
    """Fit, write ``fit.json`` and its effective configuration, print the results."""
    _positionals(args)
    cfg = _common.resolve(args, NAME, _fields(), DEFAULTS, dest={"output": "out"})
    start = {**DEFAULTS["start"], **cfg["start"]}
    unknown = sorted(set(start) - set(DEFAULTS["start"]))
    if unknown:
        raise UsageError(f"[fit.start]: unknown parameter(s) {unknown}; allowed: {sorted(DEFAULTS['start'])}")
    for k, v in start.items():
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise UsageError(f"[fit.start] {k} must be a number, got {v!r}")
    cfg["start"] = {k: float(v) for k, v in start.items()}
    if cfg["data"] is None:
        raise UsageError("give the data CSV (positional DATA.csv or `data` in the [fit] table of --config)")
    if not Path(cfg["data"]).is_file():
        raise UsageError(f"data file {cfg['data']!r} does not exist")
    out = _common.output_directory(cfg["output"], "--out")

    import jax

    jax.config.update("jax_enable_x64", True)
    from diffgen.demo import _write_json
    from diffgen.lineshape import LEP_REFERENCE, fit_lineshape, load_lep_table

    data = load_lep_table(cfg["data"])
    res = fit_lineshape(
        data,
        n_events=cfg["events"],
        seed=cfg["seed"],
        start=cfg["start"],
        optimizer=cfg["optimizer"],
        steps=cfg["steps"],
        progress=not (args.quiet or args.no_progress),
    )
    result = {
        "model": cfg["model"],
        "data": data.source,
        "params": res["params"],
        "errors": res["errors"],
        "correlation": {"names": res["names"], "matrix": res["correlation"].tolist()},
        "sigma0_had_nb": res["sigma0_had_nb"],
        "sigma0_had_err_nb": res["sigma0_had_err_nb"],
        "chi2": res["chi2"],
        "ndf": res["ndf"],
        "status": [r.status for r in res["passes"]],
        "lep_reference": {k: {"value": v[0], "error": v[1]} for k, v in LEP_REFERENCE.items()},
    }
    _write_json(result, out / "fit.json")
    _common.write_effective(out / "fit.json", NAME, cfg)
    if not args.quiet:
        for k in ("m_z", "gamma_z", "norm"):
            print(f"{k:8s} = {res['params'][k]:.6f} ± {res['errors'][k]:.6f}")
        print(
            f"sigma0_had = {res['sigma0_had_nb']:.4f} ± {res['sigma0_had_err_nb']:.4f} nb; "
            f"chi2/ndf = {res['chi2']:.3f}/{res['ndf']}; wrote {out / 'fit.json'}"
        )
    return 0
