"""Recover the LEP-like detector's resolution parameters from calibration pseudo-data.

Pseudo-data: Z → μμ and √s = 10 GeV μμ events, photon and K⁰_L test beams, passed through the
LEP-like detector at known ("true") resolution parameters; the fit starts at the shipped values,
uses common random numbers (pathwise gradients through the detector's Gaussian smearing),
L-BFGS and Hessian errors (``diffgen.inference.resolution``). Writes
``OUT/detector_resolution.{json,png}``; with ``--study K`` also fits K seeds and writes
``OUT/detector_resolution_closure.{json,png}`` with the fraction within 2σ and the spread/σ ratio.

    .venv/bin/python examples/fit_detector_resolution.py [--n 1000] [--mc-factor 2] [--seed 1] [--study 20] [--out out]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

from diffgen.demo import _save_fig, _write_json  # noqa: E402
from diffgen.inference.resolution import FREE_PARAMETERS, PSEUDO_DATA_TRUTH, fit_resolution, resolution_problem  # noqa: E402

#: The "true" resolution of the pseudo-data (shifted from the shipped LEP-like values).
TRUTH = PSEUDO_DATA_TRUTH


def summary(r, args, seconds: float) -> dict:
    pulls = {k: (r.values[k] - r.truth[k]) / r.errors[k] for k in FREE_PARAMETERS}
    return {
        "inputs": {
            "events_per_mumu_block": args.n,
            "mc_factor": args.mc_factor,
            "seed": args.seed,
            "truth": r.truth,
            "start": r.start,
            "detector": "lep_like (soft acceptance)",
        },
        "fit": {
            k: {"value": r.values[k], "error": r.errors[k], "truth": r.truth[k], "pull": pulls[k]}
            for k in FREE_PARAMETERS
        },
        "correlation": r.covariance.correlation.tolist(),
        "correlation_names": r.covariance.names,
        "chi2": r.chi2,
        "ndf": r.ndf,
        "chi2_per_ndf": r.chi2 / r.ndf,
        "chi2_start": r.chi2_start,
        "within_2_sigma": all(abs(p) < 2 for p in pulls.values()),
        "fit_message": r.message,
        "gauss_newton_errors": r.gauss_newton_errors,
        "seconds": seconds,
    }


def plot(problem, r, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(problem.specs)
    cols = 5
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows))
    i0 = 0
    for ax, (name, _, _, edges) in zip(axes.ravel(), problem.specs, strict=False):
        k = len(edges) - 1
        c = 0.5 * (edges[1:] + edges[:-1])
        sl = slice(i0, i0 + k)
        i0 += k
        ax.errorbar(c, r.data[sl], np.sqrt(r.data_var[sl]), fmt="k.", ms=3, label="pseudo-data")
        ax.step(edges, np.append(r.model_start[sl], r.model_start[sl][-1]), where="post", color="C1", label="start")
        ax.step(edges, np.append(r.model[sl], r.model[sl][-1]), where="post", color="C0", label="fit")
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=6)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    axes.ravel()[0].legend(fontsize=6)
    fig.suptitle(f"LEP-like detector resolution fit: χ²/ndf = {r.chi2:.1f}/{r.ndf} (start {r.chi2_start:.0f})")
    fig.tight_layout()
    _save_fig(fig, path)
    plt.close(fig)


def study(problem, args, out: Path) -> dict:
    values, errors = [], []
    for s in range(args.study):
        r = fit_resolution(problem, TRUTH, seed=1000 + s)
        values.append([r.values[k] for k in FREE_PARAMETERS])
        errors.append([r.errors[k] for k in FREE_PARAMETERS])
        print(f"seed {1000 + s}: chi2/ndf {r.chi2:.1f}/{r.ndf}", file=sys.stderr, flush=True)
    values, errors = np.asarray(values), np.asarray(errors)
    truth = np.asarray([TRUTH[k] for k in FREE_PARAMETERS])
    pulls = (values - truth) / errors
    res = {
        "inputs": {
            "seeds": list(range(1000, 1000 + args.study)),
            "events_per_mumu_block": args.n,
            "mc_factor": args.mc_factor,
            "truth": TRUTH,
        },
        "fraction_within_2_sigma": dict(zip(FREE_PARAMETERS, np.mean(np.abs(pulls) < 2, axis=0).tolist(), strict=True)),
        "spread_over_mean_hessian_error": dict(
            zip(FREE_PARAMETERS, (values.std(axis=0, ddof=1) / errors.mean(axis=0)).tolist(), strict=True)
        ),
        "pull_mean": dict(zip(FREE_PARAMETERS, pulls.mean(axis=0).tolist(), strict=True)),
        "pulls": pulls.tolist(),
    }
    _write_json(res, out / "detector_resolution_closure.json")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(FREE_PARAMETERS), figsize=(2.4 * len(FREE_PARAMETERS), 2.6))
    for ax, name, col in zip(axes, FREE_PARAMETERS, pulls.T, strict=True):
        ax.hist(col, bins=np.linspace(-4, 4, 17))
        ax.set_xlabel(f"pull {name}", fontsize=7)
    fig.tight_layout()
    _save_fig(fig, out / "detector_resolution_closure.png")
    plt.close(fig)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="pseudo-data events per μμ block (test beams: GUN_EVENTS)")
    ap.add_argument("--mc-factor", type=int, default=2, help="MC sample size / pseudo-data size")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--study", type=int, default=0, help="also fit this many seeds and report the coverage")
    ap.add_argument("--out", default="out")
    ap.add_argument("--image", default=None, help="also save the plot here (e.g. docs/images/...png)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    t0 = time.perf_counter()
    problem = resolution_problem(args.n, mc_factor=args.mc_factor)
    r = fit_resolution(problem, TRUTH, seed=args.seed)
    s = summary(r, args, time.perf_counter() - t0)
    _write_json(s, out / "detector_resolution.json")
    plot(problem, r, out / "detector_resolution.png")
    if args.image:
        plot(problem, r, Path(args.image))
    print(
        json.dumps({k: s[k] for k in ("fit", "chi2", "ndf", "chi2_start", "within_2_sigma", "fit_message")}, indent=2)
    )
    if args.study:
        c = study(problem, args, out)
        print(json.dumps({k: c[k] for k in ("fraction_within_2_sigma", "spread_over_mean_hessian_error")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
