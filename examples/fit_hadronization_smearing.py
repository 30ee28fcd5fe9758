"""Recover the reference cluster-decay smearing σ from hadron-level pseudo-data only.

Pseudo-data: q q̄ strings at √s = 30 GeV (``event_clusters``: cluster formation and fission), the
clusters decayed by the reference model at a "true" σ; only the hadrons of each event are kept.
The fit (``diffgen.hadronization.fit.fit_smearing``) trains a DeepSets discriminator on the
hadrons (features relative to the event's sphericity axis) against events simulated at the current
σ from independent clusters, and moves log σ by the pathwise gradient of the generator loss, starting
far from the truth. Each seed draws a new pseudo-data sample, a new model sample and a new
discriminator, so the spread of the estimates over seeds is the statistical uncertainty of one fit
(the truths of one seed share its parton events and keys and differ only in σ).
Writes ``OUT/<tag>.{json,png}``.

    .venv/bin/python examples/fit_hadronization_smearing.py [--n 4096] [--steps 200] [--seeds 4] \\
        [--truths 0.5,1.5] [--starts 2.0,0.2] [--final-state] [--out out] [--tag hadronization_smearing_fit]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

from diffgen.demo import _save_fig, _write_json  # noqa: E402
from diffgen.hadronization.fit import event_clusters, fit_smearing, hadron_features, simulate_hadrons  # noqa: E402

_simulate = jax.jit(simulate_hadrons, static_argnames=("final_state",))
_features = jax.jit(hadron_features)


def pseudo_data(truth: float, seed: int, args) -> tuple:
    """Target hadrons at σ = truth and independent model clusters for one seed."""
    key = jax.random.fold_in(jax.random.key(20260), seed)
    k_t, k_m, k_d = jax.random.split(key, 3)
    cl_t = event_clusters(k_t, args.n, sqrt_s=args.sqrt_s)
    cl_m = event_clusters(k_m, args.n * args.mc_factor, sqrt_s=args.sqrt_s)
    p, mask = _simulate(jnp.asarray(truth), k_d, cl_t, final_state=args.final_state)
    return p, mask, cl_m


def pt_values(p, mask) -> np.ndarray:
    x = np.asarray(_features(p, mask))
    return x[..., 0][np.asarray(mask)]


def run(args) -> dict:
    truths = [float(t) for t in args.truths.split(",")]
    starts = [float(s) for s in args.starts.split(",")]
    if len(starts) != len(truths):
        raise ValueError("--starts must give one start per truth")
    results = []
    for truth, start in zip(truths, starts, strict=True):
        runs = []
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            p, mask, cl_m = pseudo_data(truth, seed, args)
            r = fit_smearing(
                p,
                mask,
                cl_m,
                sigma0=start,
                steps=args.steps,
                batch=args.batch,
                final_state=args.final_state,
                seed=seed,
                lr_sigma=args.lr_sigma,
                lr_sigma_final=args.lr_sigma_final,
                momentum=args.momentum,
            )
            dt = time.perf_counter() - t0
            print(
                f"truth {truth}: seed {seed} start {start} -> {r['estimate']:.4f} (tail spread {r['spread']:.4f}) "
                f"in {dt:.0f} s",
                file=sys.stderr,
                flush=True,
            )
            runs.append({"seed": seed, **r, "seconds": dt})
        est = np.array([r["estimate"] for r in runs])
        std = float(est.std(ddof=1)) if len(est) > 1 else float("nan")
        results.append(
            {
                "truth": truth,
                "start": start,
                "estimates": est.tolist(),
                "mean": float(est.mean()),
                "std_over_seeds": std,
                "error_of_mean": std / np.sqrt(len(est)),
                "pull_of_mean": float((est.mean() - truth) / (std / np.sqrt(len(est)))),
                "tail_spread": [r["spread"] for r in runs],
                "final_d_loss": [float(np.mean(r["d_loss"][-20:])) for r in runs],
                "seconds": [r["seconds"] for r in runs],
                "trajectories": [r["sigma"].tolist() for r in runs],
            }
        )
    return {"truths": truths, "results": results}


def plot(res: dict, args, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (a0, a1) = plt.subplots(1, 2, figsize=(10, 3.8))
    for i, r in enumerate(res["results"]):
        for j, traj in enumerate(r["trajectories"]):
            a0.plot(
                np.arange(1, len(traj) + 1),
                traj,
                color=f"C{i}",
                lw=0.8,
                alpha=0.8,
                label=None if j else f"truth {r['truth']}",
            )
        a0.axhline(r["truth"], color=f"C{i}", ls="--", lw=0.8)
    a0.set_yscale("log")
    a0.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    a0.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    a0.set_yticks([0.2, 0.3, 0.5, 1.0, 1.5, 2.0])
    a0.set_xlabel("σ step")
    a0.set_ylabel("σ")
    a0.legend(fontsize=8)
    a0.set_title("σ from hadron-level data (DeepSets discriminator)", fontsize=9)
    # the σ-sensitive observable: hadron p_T to the sphericity axis, first truth's pseudo-data
    r = res["results"][0]
    p, mask, cl_m = pseudo_data(r["truth"], 0, args)
    bins = np.linspace(0.0, 2.5, 51)
    a1.hist(
        pt_values(p, mask), bins=bins, density=True, histtype="step", color="k", label=f"pseudo-data σ = {r['truth']}"
    )
    k = jax.random.key(7)
    for s, name, c in ((r["start"], "start", "C1"), (r["estimates"][0], "fit", "C0")):
        pm, mm = _simulate(jnp.asarray(s), k, cl_m, final_state=args.final_state)
        a1.hist(pt_values(pm, mm), bins=bins, density=True, histtype="step", color=c, label=f"{name} σ = {s:.3g}")
    a1.set_xlabel("hadron p_T to the sphericity axis (GeV)")
    a1.set_ylabel("density")
    a1.legend(fontsize=8)
    fig.tight_layout()
    _save_fig(fig, path)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=4096, help="pseudo-data events per fit")
    ap.add_argument("--mc-factor", type=int, default=1, help="model events / pseudo-data events")
    ap.add_argument("--sqrt-s", type=float, default=30.0, help="energy of the q q̄ strings (GeV)")
    ap.add_argument("--steps", type=int, default=200, help="σ updates per fit")
    ap.add_argument("--batch", type=int, default=256, help="events per minibatch")
    ap.add_argument("--lr-sigma", type=float, default=0.1, help="initial Adam learning rate of log σ")
    ap.add_argument("--lr-sigma-final", type=float, default=0.005, help="final Adam learning rate of log σ")
    ap.add_argument("--momentum", type=float, default=0.9, help="Adam beta1 of log σ")
    ap.add_argument("--seeds", type=int, default=4, help="independent pseudo-data samples per truth")
    ap.add_argument("--truths", default="0.5,1.5")
    ap.add_argument("--starts", default="2.0,0.2", help="start σ of each truth's fits")
    ap.add_argument("--final-state", action="store_true", help="decay unstable hadrons (default: primary hadrons)")
    ap.add_argument("--out", default="out")
    ap.add_argument("--tag", default="hadronization_smearing_fit", help="output file name stem")
    args = ap.parse_args(argv)
    out = Path(args.out)
    t0 = time.perf_counter()
    res = run(args)
    res["inputs"] = {k: v for k, v in vars(args).items() if k not in ("out", "tag")}
    res["seconds"] = time.perf_counter() - t0
    _write_json(res, out / f"{args.tag}.json")
    plot(res, args, out / f"{args.tag}.png")
    keys = ("truth", "start", "estimates", "mean", "std_over_seeds", "error_of_mean", "pull_of_mean", "tail_spread")
    print(json.dumps([{k: r[k] for k in keys} for r in res["results"]], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
