"""``diffgen train-hadronization``: train a learned cluster-decay model against the reference decay."""

from __future__ import annotations

import argparse

NAME = "train-hadronization"
HELP = "train the learned cluster-decay model (conditional GAN or distrax flow) and write checkpoint, metrics, plot"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", choices=("gan", "flow"), default="gan", help="learned model (default gan)")
    parser.add_argument("--out", default="out/hadronization", help="output directory (default out/hadronization)")
    parser.add_argument("--n-train", type=int, default=100_000, help="reference clusters for training (default 1e5)")
    parser.add_argument(
        "--n-val", type=int, default=20_000, help="held-out clusters per validation sample (default 2e4)"
    )
    parser.add_argument("--steps", type=int, default=4000, help="optimizer steps (default 4000)")
    parser.add_argument("--batch", type=int, default=512, help="minibatch size (default 512)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    parser.add_argument("--smearing", type=float, default=0.78, help="reference smearing sigma (default 0.78)")
    parser.add_argument("--hidden", type=int, default=64, help="hidden units per layer (default 64)")
    parser.add_argument("--depth", type=int, default=2, help="hidden layers (default 2)")
    parser.add_argument("--val-every", type=int, default=500, help="validation interval in steps (default 500)")
    parser.add_argument("--ckpt-every", type=int, default=500, help="checkpoint interval in steps (default 500)")
    parser.add_argument("--seed", type=int, default=0, help="seed of data, initialisation and minibatches (default 0)")
    parser.add_argument("--no-resume", action="store_true", help="start afresh even if OUT/checkpoint.npz exists")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import json

    from diffgen.hadronization.train import TrainConfig, train

    cfg = TrainConfig(
        model=args.model,
        n_train=args.n_train,
        n_val=args.n_val,
        steps=args.steps,
        batch=args.batch,
        lr=args.lr,
        smearing=args.smearing,
        hidden=args.hidden,
        depth=args.depth,
        val_every=args.val_every,
        ckpt_every=args.ckpt_every,
        seed=args.seed,
    )
    result = train(cfg, args.out, resume=not args.no_resume, progress=not args.no_progress)
    print(json.dumps({"metrics": result["metrics"], "baseline_reference_vs_reference": result["baseline"]}, indent=2))
    print(f"checkpoint: {result['checkpoint']}")
    return 0
