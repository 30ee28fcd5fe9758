"""``diffgen unfold``: OmniFold per-event weights from feature arrays in npz files.

Input files (NumPy ``.npz``):

- ``--mc``: ``gen`` [N] or [N, F] particle-level features, ``reco`` [N] or [N, F']
  detector-level features of the same events; optional ``weights`` [N] (MC weights; default
  1), ``pass_gen`` and ``pass_reco`` [N] bool (default all True; rows failing a level may hold
  NaN there).
- ``--data``: ``reco`` [M] or [M, F'] detector-level data features; optional ``weights`` [M].

Output (``--out``, written atomically): ``weights`` [N] unfolded particle-level MC weights,
``push`` [N] the factors ν, ``replica_weights`` [B, N] bootstrap replicas, ``pass_gen``,
``pass_reco``, and ``diagnostics`` (a JSON string: one record per OmniFold step), then the
effective configuration ``<out>.run.toml``. Every option may instead come from the ``[unfold]``
table of a run file (``--config``; keys are the option names with ``_``, see docs/cli.md).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from typing import Any

from diffgen.cli import UsageError, _common

NAME = "unfold"
HELP = "Unfold detector-level data with OmniFold; write per-event particle-level weights (npz)."


DEFAULTS: dict[str, Any] = {
    "mc": None,
    "data": None,
    "out": None,
    "iterations": 5,
    "bootstrap": 0,
    "ensemble": 1,
    "epochs": 20,
    "batch_size": 1024,
    "hidden": "32,32",
    "learning_rate": 3e-3,
    "clip": 100.0,
    "seed": 0,
}


def fields() -> dict[str, Any]:
    """Allowed keys of the ``[unfold]`` table."""
    from diffgen.config import Field

    return {
        "mc": Field((str,), "npz with gen, reco [, weights, pass_gen, pass_reco]"),
        "data": Field((str,), "npz with reco [, weights]"),
        "out": Field((str,), "output npz file"),
        "iterations": Field((int,), "OmniFold iterations", minimum=1),
        "bootstrap": Field((int,), "bootstrap replicas of the data, 0 or >= 2", minimum=0),
        "ensemble": Field((int,), "networks averaged per step", minimum=1),
        "epochs": Field((int,), "maximum epochs per step", minimum=1),
        "batch_size": Field((int,), "events per optimiser step", minimum=1),
        "hidden": Field((str,), "MLP hidden widths, comma separated, e.g. '32,32'"),
        "learning_rate": Field((float,), "Adam step size", minimum=0.0),
        "clip": Field((float,), "ratios clipped to [1/clip, clip]", minimum=1.0),
        "seed": Field((int,), "random seed", minimum=0),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``diffgen unfold``."""
    d = DEFAULTS
    parser.add_argument(
        "--mc",
        default=None,
        metavar="NPZ",
        help="npz with gen, reco [, weights, pass_gen, pass_reco] (one row per MC event); required, "
        "on the command line or in the run file",
    )
    parser.add_argument(
        "--data",
        default=None,
        metavar="NPZ",
        help="npz with reco [, weights] (one row per data event); required, on the command line or in the run file",
    )
    parser.add_argument(
        "--out",
        default=None,
        metavar="NPZ",
        help="output npz file (written atomically, with OUT.run.toml next to it); required, "
        "on the command line or in the run file",
    )
    parser.add_argument(
        "--iterations", type=int, default=None, metavar="N", help=f"OmniFold iterations (default: {d['iterations']})"
    )
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=None,
        metavar="B",
        help=f"bootstrap replicas of the data, 0 or >= 2 (default: {d['bootstrap']})",
    )
    parser.add_argument(
        "--ensemble", type=int, default=None, metavar="K", help=f"networks averaged per step (default: {d['ensemble']})"
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        metavar="N",
        help=f"maximum epochs per step (default: {d['epochs']}; early stopping)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        metavar="N",
        help=f"events per optimiser step (default: {d['batch_size']})",
    )
    parser.add_argument(
        "--hidden", default=None, metavar="W1,W2", help=f"MLP hidden widths, comma separated (default: {d['hidden']})"
    )
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=None,
        metavar="RATE",
        help=f"Adam step size (default: {d['learning_rate']})",
    )
    parser.add_argument(
        "--clip",
        type=float,
        default=None,
        metavar="C",
        help=f"ratios clipped to [1/clip, clip], > 1 (default: {d['clip']:g})",
    )
    _common.add_common_options(parser, seed_default=d["seed"], seed_what="networks, minibatches and bootstrap replicas")


def _load(path: str, required: tuple[str, ...], optional: tuple[str, ...], what: str) -> dict:
    import numpy as np

    if not os.path.exists(path):
        raise FileNotFoundError(f"--{what}: no such file {path!r}")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as err:
        raise UsageError(f"--{what}: cannot read {path!r} as an npz file ({err})") from err
    missing = [k for k in required if k not in arrays]
    if missing:
        raise UsageError(f"--{what}: {path!r} lacks array(s) {missing} (has {sorted(arrays)})")
    unknown = sorted(set(arrays) - set(required) - set(optional))
    if unknown:
        raise UsageError(f"--{what}: {path!r} has unknown array(s) {unknown}; allowed: {list(required + optional)}")
    return arrays


def run(args: argparse.Namespace) -> int:
    """Run OmniFold on the files and write the weights and the effective configuration."""
    cfg = _common.resolve(args, NAME, fields(), DEFAULTS)
    missing = [f"--{k}" for k in ("mc", "data", "out") if cfg[k] is None]
    if missing:
        raise UsageError(f"the following are required (as options or in the run file): {', '.join(missing)}")
    try:
        hidden = tuple(int(h) for h in cfg["hidden"].split(",") if h.strip())
    except ValueError as err:
        raise UsageError(f"--hidden: expected comma-separated integers, got {cfg['hidden']!r}") from err
    if not hidden or min(hidden) < 1:
        raise UsageError(f"--hidden: widths must be positive integers, got {cfg['hidden']!r}")
    out_dir = os.path.dirname(os.path.abspath(cfg["out"]))
    if not os.path.isdir(out_dir):
        raise UsageError(f"--out: directory {out_dir!r} does not exist")
    mc = _load(cfg["mc"], ("gen", "reco"), ("weights", "pass_gen", "pass_reco"), "mc")
    data = _load(cfg["data"], ("reco",), ("weights",), "data")

    import dataclasses

    import jax
    import numpy as np

    from diffgen.unfolding import TrainConfig, omnifold

    config = TrainConfig(
        hidden=hidden,
        epochs=cfg["epochs"],
        batch_size=cfg["batch_size"],
        learning_rate=cfg["learning_rate"],
        clip=cfg["clip"],
    )
    # one tick per classifier step (two per iteration)
    n_steps = 2 * cfg["iterations"]
    with _common.progress(n_steps, "OmniFold classifier steps", quiet=args.quiet, unit="steps") as bar:
        res = omnifold(
            mc["gen"],
            mc["reco"],
            data["reco"],
            key=jax.random.key(cfg["seed"]),
            mc_weights=mc.get("weights"),
            data_weights=data.get("weights"),
            pass_gen=mc.get("pass_gen"),
            pass_reco=mc.get("pass_reco"),
            iterations=cfg["iterations"],
            n_bootstrap=cfg["bootstrap"],
            n_ensemble=cfg["ensemble"],
            config=config,
            on_step=lambda it, step: bar.advance(1),
        )
    diagnostics = json.dumps([dataclasses.asdict(d) for d in res.diagnostics])
    fd, tmp = tempfile.mkstemp(prefix=".unfold-", suffix=".npz", dir=out_dir)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(
                fh,
                weights=res.weights,
                push=res.push,
                replica_weights=res.replica_weights,
                pass_gen=res.pass_gen,
                pass_reco=res.pass_reco,
                diagnostics=np.asarray(diagnostics),
            )
        os.replace(tmp, cfg["out"])
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _common.write_effective(cfg["out"], NAME, cfg)
    last = res.diagnostics[-1]
    if not args.quiet:
        print(
            f"unfolded {res.weights.shape[0]} MC events with {cfg['iterations']} iterations; "
            f"last step ESS fraction {last.ess_fraction:.3f}, AUC {last.auc:.3f}; wrote {cfg['out']}"
        )
    return 0
