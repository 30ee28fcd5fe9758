"""``diffgen fit RUN.toml DATA.csv``: fit a model's parameters to a data table with Hessian uncertainties.

The run file's ``[fit]`` table (every key optional)::

    [fit]
    model = "z_lineshape"     # the model; at present the Z lineshape (m_Z, Γ_Z, norm) of `diffgen demo`
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
"""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "fit"
HELP = "fit model parameters to a data table (run configuration TOML + data CSV), Hessian errors"

MODELS = ("z_lineshape",)
DEFAULTS = {
    "model": "z_lineshape",
    "events": 100_000,
    "seed": 1,
    "optimizer": "lbfgs",
    "steps": 200,
    "output": "out/fit",
    "start": {"m_z": 91.0, "gamma_z": 2.6, "norm": 1.0},
}


def _fields():
    from diffgen.config import Field

    return {
        "model": Field((str,), "model to fit", choices=MODELS),
        "events": Field((int,), "weighted MC events per data point", minimum=100),
        "seed": Field((int,), "random seed", minimum=0),
        "optimizer": Field((str,), "optax optimiser", choices=("lbfgs", "adam")),
        "steps": Field((int,), "maximum optimiser steps per pass", minimum=1),
        "output": Field((str,), "output directory"),
        "start": Field((dict,), "starting values {m_z (GeV), gamma_z (GeV), norm}"),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="run configuration TOML with a [fit] table")
    parser.add_argument("data", help="data CSV (the lineshape table format)")
    parser.add_argument("--out", default=None, help="output directory (overrides [fit] output)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from diffgen.cli import UsageError
    from diffgen.config import load_section, write_effective_config

    cfg = {**DEFAULTS, **load_section(args.config, "fit", _fields())}
    start = {**DEFAULTS["start"], **cfg["start"]}
    unknown = sorted(set(start) - set(DEFAULTS["start"]))
    if unknown:
        raise UsageError(f"[fit.start]: unknown parameter(s) {unknown}; allowed: {sorted(DEFAULTS['start'])}")
    for k, v in start.items():
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise UsageError(f"[fit.start] {k} must be a number, got {v!r}")
    cfg["start"] = {k: float(v) for k, v in start.items()}
    if args.out is not None:
        cfg["output"] = args.out
    out = Path(cfg["output"])

    import jax

    jax.config.update("jax_enable_x64", True)
    from diffgen.demo import _write_json
    from diffgen.lineshape import LEP_REFERENCE, fit_lineshape, load_lep_table

    data = load_lep_table(args.data)
    res = fit_lineshape(
        data,
        n_events=cfg["events"],
        seed=cfg["seed"],
        start=cfg["start"],
        optimizer=cfg["optimizer"],
        steps=cfg["steps"],
        progress=not args.no_progress,
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
    out.mkdir(parents=True, exist_ok=True)
    _write_json(result, out / "fit.json")
    write_effective_config(out / "fit.json", NAME, cfg)
    for k in ("m_z", "gamma_z", "norm"):
        print(f"{k:8s} = {res['params'][k]:.6f} ± {res['errors'][k]:.6f}")
    print(
        f"sigma0_had = {res['sigma0_had_nb']:.4f} ± {res['sigma0_had_err_nb']:.4f} nb; "
        f"chi2/ndf = {res['chi2']:.3f}/{res['ndf']}; wrote {out / 'fit.json'}"
    )
    return 0
