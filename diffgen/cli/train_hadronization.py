"""``diffgen train-hadronization``: train a learned cluster-decay model against the reference decay.

Run file table ``[train-hadronization]`` (every key optional; command-line options override it)::

    [train-hadronization]
    model = "gan"            # or "flow"
    out = "out/hadronization"
    n_train = 100000
    n_val = 20000
    steps = 3000
    batch = 512
    lr = 1e-3                # initial Adam learning rate
    schedule = "cosine"      # decay to lr/100 at the last step, or "constant"
    n_critic = 2             # GAN: discriminator steps per generator step
    r1_gamma = 1.0           # GAN: R1 gradient-penalty weight (0 = off)
    smearing = 0.78
    hidden = 64
    depth = 2
    val_every = 500
    ckpt_every = 500
    seed = 0
    resume = true            # continue from OUT/checkpoint.npz if it exists

The effective configuration is written as ``<out>/metrics.json.run.toml`` before training starts
(so that a checkpoint always has its configuration next to it).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from diffgen.cli import _common

NAME = "train-hadronization"
HELP = "train the learned cluster-decay model (conditional GAN or distrax flow) and write checkpoint, metrics, plot"

DEFAULTS: dict[str, Any] = {
    "model": "gan",
    "out": "out/hadronization",
    "n_train": 100_000,
    "n_val": 20_000,
    "steps": 3000,
    "batch": 512,
    "lr": 1e-3,
    "schedule": "cosine",
    "n_critic": 2,
    "r1_gamma": 1.0,
    "smearing": 0.78,
    "hidden": 64,
    "depth": 2,
    "val_every": 500,
    "ckpt_every": 500,
    "seed": 0,
    "resume": True,
}


def fields() -> dict[str, Any]:
    """Allowed keys of the ``[train-hadronization]`` table (ranges are checked by ``TrainConfig.validate``)."""
    from diffgen.config import Field

    return {
        "model": Field((str,), "learned model", choices=("gan", "flow")),
        "out": Field((str,), "output directory"),
        "n_train": Field((int,), "reference clusters for training"),
        "n_val": Field((int,), "held-out clusters per validation sample"),
        "steps": Field((int,), "optimizer steps"),
        "batch": Field((int,), "minibatch size"),
        "lr": Field((float,), "initial Adam learning rate"),
        "schedule": Field((str,), "learning-rate schedule", choices=("cosine", "constant")),
        "n_critic": Field((int,), "GAN discriminator steps per generator step"),
        "r1_gamma": Field((float,), "GAN R1 gradient-penalty weight"),
        "smearing": Field((float,), "σ of the reference decay model"),
        "hidden": Field((int,), "hidden units per layer"),
        "depth": Field((int,), "hidden layers"),
        "val_every": Field((int,), "validation interval in steps"),
        "ckpt_every": Field((int,), "checkpoint interval in steps"),
        "seed": Field((int,), "seed of data, initialisation and minibatches", minimum=0),
        "resume": Field((bool,), "continue from OUT/checkpoint.npz if it exists"),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``diffgen train-hadronization``."""
    d = DEFAULTS

    def opt(flag: str, type_: Any, text: str, metavar: str = "N") -> None:
        key = flag.lstrip("-").replace("-", "_")
        parser.add_argument(flag, type=type_, default=None, metavar=metavar, help=f"{text} (default: {d[key]})")

    parser.add_argument("--model", choices=("gan", "flow"), default=None, help=f"learned model (default: {d['model']})")
    parser.add_argument("--out", default=None, metavar="DIR", help=f"output directory (default: {d['out']})")
    opt("--n-train", int, "reference clusters for training, >= 1")
    opt("--n-val", int, "held-out clusters per validation sample, >= 1")
    opt("--steps", int, "optimizer steps, >= 1")
    opt("--batch", int, "minibatch size, >= 1")
    opt("--lr", float, "initial Adam learning rate, > 0", "RATE")
    parser.add_argument(
        "--schedule",
        choices=("cosine", "constant"),
        default=None,
        help=f"learning-rate schedule: cosine decay to lr/100 at the last step, or constant (default: {d['schedule']})",
    )
    opt("--n-critic", int, "GAN: discriminator steps per generator step, >= 1")
    opt("--r1-gamma", float, "GAN: weight of the R1 gradient penalty on real data, >= 0 (0 = off)", "GAMMA")
    opt("--smearing", float, "σ of the reference decay model (dimensionless), > 0", "SIGMA")
    opt("--hidden", int, "hidden units per layer, >= 1")
    opt("--depth", int, "hidden layers, >= 1")
    opt("--val-every", int, "validation interval in steps, >= 1")
    opt("--ckpt-every", int, "checkpoint interval in steps, >= 1")
    parser.add_argument(
        "--no-resume",
        dest="resume",
        action="store_const",
        const=False,
        default=None,
        help="start afresh even if OUT/checkpoint.npz exists (default: resume)",
    )
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar, but validation lines and metrics are printed (default: off)",
    )
    _common.add_common_options(parser, seed_default=d["seed"], seed_what="data, initialisation and minibatches")


def run(args: argparse.Namespace) -> int:
    """Train, writing the effective configuration first, then checkpoint, metrics and plot."""
    cfg = _common.resolve(args, NAME, fields(), DEFAULTS)
    import json

    from diffgen.hadronization.train import TrainConfig, train

    train_cfg = TrainConfig(**{k: v for k, v in cfg.items() if k not in ("out", "resume")})
    train_cfg.validate()
    _common.output_directory(cfg["out"], "--out")
    _common.write_effective(os.path.join(cfg["out"], "metrics.json"), NAME, cfg)
    quiet = bool(args.quiet)
    result = train(
        train_cfg,
        cfg["out"],
        resume=bool(cfg["resume"]),
        progress=not (quiet or args.no_progress),
        log=(lambda line: None) if quiet else print,
    )
    if not quiet:
        print(
            json.dumps({"metrics": result["metrics"], "baseline_reference_vs_reference": result["baseline"]}, indent=2)
        )
        print(f"checkpoint: {result['checkpoint']}")
    return 0
