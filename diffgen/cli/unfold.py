"""``diffgen unfold``: OmniFold per-event weights from feature arrays in npz files.

Input files (NumPy ``.npz``):

- ``--mc``: ``gen`` [N] or [N, F] particle-level features, ``reco`` [N] or [N, F']
  detector-level features of the same events; optional ``weights`` [N] (MC weights; default
  1), ``pass_gen`` and ``pass_reco`` [N] bool (default all True; rows failing a level may hold
  NaN there).
- ``--data``: ``reco`` [M] or [M, F'] detector-level data features; optional ``weights`` [M].

Output (``--out``, written atomically): ``weights`` [N] unfolded particle-level MC weights,
``push`` [N] the factors ν, ``replica_weights`` [B, N] bootstrap replicas, ``pass_gen``,
``pass_reco``, and ``diagnostics`` (a JSON string: one record per OmniFold step).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

from diffgen.cli import UsageError

NAME = "unfold"
HELP = "Unfold detector-level data with OmniFold; write per-event particle-level weights (npz)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``diffgen unfold``."""
    parser.add_argument(
        "--mc", required=True, help="npz with gen, reco [, weights, pass_gen, pass_reco] (one row per MC event)"
    )
    parser.add_argument("--data", required=True, help="npz with reco [, weights] (one row per data event)")
    parser.add_argument("--out", required=True, help="output npz file (written atomically)")
    parser.add_argument("--iterations", type=int, default=5, help="OmniFold iterations (default 5)")
    parser.add_argument(
        "--bootstrap", type=int, default=0, help="bootstrap replicas of the data, 0 or >= 2 (default 0)"
    )
    parser.add_argument("--ensemble", type=int, default=1, help="networks averaged per step (default 1)")
    parser.add_argument("--epochs", type=int, default=20, help="maximum epochs per step (default 20; early stopping)")
    parser.add_argument("--batch-size", type=int, default=1024, help="events per optimiser step (default 1024)")
    parser.add_argument("--hidden", default="32,32", help="MLP hidden widths, comma separated (default 32,32)")
    parser.add_argument("--learning-rate", type=float, default=3e-3, help="Adam step size (default 3e-3)")
    parser.add_argument("--clip", type=float, default=100.0, help="ratios clipped to [1/clip, clip] (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


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
    """Run OmniFold on the files and write the weights."""
    try:
        hidden = tuple(int(h) for h in args.hidden.split(",") if h.strip())
    except ValueError as err:
        raise UsageError(f"--hidden: expected comma-separated integers, got {args.hidden!r}") from err
    if not hidden or min(hidden) < 1:
        raise UsageError(f"--hidden: widths must be positive integers, got {args.hidden!r}")
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        raise UsageError(f"--out: directory {out_dir!r} does not exist")
    mc = _load(args.mc, ("gen", "reco"), ("weights", "pass_gen", "pass_reco"), "mc")
    data = _load(args.data, ("reco",), ("weights",), "data")

    import dataclasses

    import jax
    import numpy as np

    from diffgen.unfolding import TrainConfig, omnifold

    config = TrainConfig(
        hidden=hidden,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        clip=args.clip,
    )
    res = omnifold(
        mc["gen"],
        mc["reco"],
        data["reco"],
        key=jax.random.key(args.seed),
        mc_weights=mc.get("weights"),
        data_weights=data.get("weights"),
        pass_gen=mc.get("pass_gen"),
        pass_reco=mc.get("pass_reco"),
        iterations=args.iterations,
        n_bootstrap=args.bootstrap,
        n_ensemble=args.ensemble,
        config=config,
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
        os.replace(tmp, args.out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    last = res.diagnostics[-1]
    print(
        f"unfolded {res.weights.shape[0]} MC events with {args.iterations} iterations; "
        f"last step ESS fraction {last.ess_fraction:.3f}, AUC {last.auc:.3f}; wrote {args.out}"
    )
    return 0
