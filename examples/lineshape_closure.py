"""Closure of the Z-lineshape fit: pseudo-data at known m_Z, Γ_Z, norm drawn with the full covariance.

Fits N pseudo-experiments, reports the fraction within 2σ (Hessian) and the ratio of the spread
over pseudo-experiments to the mean Hessian error; compares every fit with the linear
generalised-least-squares estimate for the same draw and gives that estimator's coverage over
10⁵ draws (the coverage a count over N toys estimates); writes out/lineshape_closure.{json,png}.

    .venv/bin/python examples/lineshape_closure.py [--toys 20] [--events 20000]
"""

import argparse
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

from diffgen.demo import _save_fig, _write_json  # noqa: E402
from diffgen.lineshape import fit_lineshape, linear_gls_reference, load_lep_table  # noqa: E402

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--toys", type=int, default=20)
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--out", default="out")
    a = ap.parse_args()
    data = load_lep_table()
    truth = {"m_z": 91.1875, "gamma_z": 2.4952, "norm": 1.0}
    first = fit_lineshape(data, n_events=a.events, seed=a.seed)
    prob, key = first["problem"], first["key"]
    th = {k: jnp.asarray(v) for k, v in truth.items()}
    asimov = np.asarray(prob["model_jit"](th, prob["energies"], key)[0])
    v_tot = np.asarray(prob["covariance"](th, key, jnp.asarray(data.sqrt_s_err))) + np.diag(data.sigma_err**2)
    chol = np.linalg.cholesky(v_tot)
    rng = np.random.default_rng(2026)
    fitted, errors, draws = [], [], []
    for _ in range(a.toys):
        y = asimov + chol @ rng.normal(size=len(asimov))
        r = fit_lineshape(data, n_events=a.events, seed=a.seed, values=y)
        fitted.append([r["params"][k] for k in truth])
        errors.append([r["errors"][k] for k in truth])
        draws.append(y)
    fitted, errors = np.asarray(fitted), np.asarray(errors)
    truth_vec = np.asarray(list(truth.values()))
    pulls = (fitted - truth_vec) / errors
    # The linear generalised-least-squares estimator with the same covariance: the fits should
    # reproduce it toy by toy, and its coverage over many draws is what the fit's would be.
    ref = linear_gls_reference(prob, key, truth, v_tot, np.asarray(draws), asimov)
    linear, cover_lin = ref["linear"], ref["coverage_2sigma"]
    result = {
        "truth": truth,
        "toys": a.toys,
        "events_per_point": a.events,
        "fraction_within_2_sigma": dict(zip(truth, np.mean(np.abs(pulls) < 2, axis=0).tolist(), strict=True)),
        "spread_over_mean_hessian_error": dict(
            zip(truth, (fitted.std(axis=0, ddof=1) / errors.mean(axis=0)).tolist(), strict=True)
        ),
        "pull_mean": dict(zip(truth, pulls.mean(axis=0).tolist(), strict=True)),
        "pull_std": dict(zip(truth, pulls.std(axis=0, ddof=1).tolist(), strict=True)),
        "max_abs_fit_minus_linear_gls_over_sigma": dict(
            zip(truth, np.max(np.abs(fitted - linear) / errors, axis=0).tolist(), strict=True)
        ),
        "linear_gls_coverage_2_sigma_1e5_draws": dict(zip(truth, cover_lin.tolist(), strict=True)),
    }
    out = Path(a.out)
    _write_json(result, out / "lineshape_closure.json")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(10, 3.2))
    for ax, name, col in zip(axes, truth, pulls.T, strict=True):
        ax.hist(col, bins=np.linspace(-4, 4, 17))
        ax.set_xlabel(f"pull {name}")
    fig.tight_layout()
    _save_fig(fig, out / "lineshape_closure.png")
    print(json.dumps(result, indent=2))
