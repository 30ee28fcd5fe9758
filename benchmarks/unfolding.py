"""Unfolding benchmark: OmniFold wall time and accuracy on the Gaussian toy and on e⁺e⁻ → μ⁺μ⁻.

Gaussian toy (issue acceptance): MC truth N(0, 1), data truth N(0.2, 0.8²), Gaussian smearing
σ = 0.5, 10 % inefficiency and 10 % fakes, 10⁵ particle-level events per sample, 5 iterations,
the default network (``TrainConfig()``). Printed next to each other: wall time, events/s (MC +
data events per second of unfolding), and the unfolded mean and standard deviation against
the data truth in units of the bootstrap σ (replicas resample data and simulation, both of
which are finite samples). Baseline in the same run: binned IBU (D'Agostini) on the same toy,
with its time and its bin pulls.

e⁺e⁻ → μ⁺μ⁻ through the LEP-like detector (fiducial |cos θ*| < 0.9 at both levels): MC at the
default sin²θ_W, "data" at sin²θ_W = 0.20; wall time next to the unfolded A_FB and cos θ*
distribution against the data truth, and the prior's distance from it.

Usage: ``python -m benchmarks.unfolding [--quick] [--skip-ee] [--skip-toy] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from benchmarks.common import machine_info, print_table, write_json


def gaussian_toy_benchmark(n: int, iterations: int, n_bootstrap: int) -> list[dict]:
    from diffgen.unfolding import TrainConfig, gaussian_toy, omnifold, weighted_mean_std
    from diffgen.unfolding.ibu import histogram, ibu_unfold, response_matrix

    mc = gaussian_toy(101, n, 0.0, 1.0)
    data = gaussian_toy(102, n, 0.2, 0.8**2)

    def unfold(n_boot: int):
        t0, c0 = time.perf_counter(), time.process_time()
        res = omnifold(
            mc.gen,
            mc.reco,
            data.observed,
            key=jax.random.key(0),
            pass_gen=mc.pass_gen,
            pass_reco=mc.pass_reco,
            iterations=iterations,
            n_bootstrap=n_boot,
            bootstrap_mc=True,
            config=TrainConfig(),
        )
        return res, time.perf_counter() - t0, time.process_time() - c0

    gen = np.where(mc.pass_gen, mc.gen[:, 0], 0.0)
    truth = data.truth[:, 0]
    n_events = mc.gen.shape[0] + data.observed.shape[0]
    # The unfolding itself (nominal networks only), then with bootstrap replicas for the σ.
    res0, wall0, cpu0 = unfold(0)
    mean0, std0 = weighted_mean_std(gen, res0.weights)
    res, wall, cpu = unfold(n_bootstrap)
    (mean, std), (s_mean, s_std) = res.statistic(lambda w: np.asarray(weighted_mean_std(gen, w)))

    t1 = time.perf_counter()
    gen_edges, reco_edges = np.linspace(-3, 3, 13), np.linspace(-4, 4, 33)
    resp = response_matrix(
        mc.gen[:, 0], mc.reco[:, 0], gen_edges, reco_edges, pass_gen=mc.pass_gen, pass_reco=mc.pass_reco, overflow=False
    )
    ibu = ibu_unfold(data.observed[:, 0], resp, iterations=4, n_bootstrap=50, overflow=False)
    wall_ibu = time.perf_counter() - t1
    t_hist = histogram(truth, gen_edges, overflow=False)
    pulls = (ibu.counts - t_hist) / np.sqrt(ibu.error**2 + np.maximum(t_hist, 1.0))

    def row(method, wall_s, cpu_s, m, sd):
        return {
            "method": method,
            "events": n_events,
            "wall_s": wall_s,
            "cpu_s": cpu_s,
            "events_per_s": n_events / wall_s,
            "ratio_to_IBU": wall_s / wall_ibu,
            "mean": float(m),
            "sigma_mean": float(s_mean),
            "truth_mean": float(truth.mean()),
            "pull_mean": float((m - truth.mean()) / s_mean),
            "std": float(sd),
            "sigma_std": float(s_std),
            "truth_std": float(truth.std()),
            "pull_std": float((sd - truth.std()) / s_std),
            # against the parameters of the data-truth distribution N(0.2, 0.8²)
            "pull_mean_pop": float((m - 0.2) / s_mean),
            "pull_std_pop": float((sd - 0.8) / s_std),
        }

    rows = [
        row(f"OmniFold ({iterations} it, nominal only; σ of the next row)", wall0, cpu0, mean0, std0),
        row(f"OmniFold ({iterations} it, nominal + {n_bootstrap} bootstrap)", wall, cpu, mean, std),
        {
            "method": "IBU (4 it, 50 bootstrap), baseline",
            "events": n_events,
            "wall_s": wall_ibu,
            "events_per_s": n_events / wall_ibu,
            "ratio_to_IBU": 1.0,
            "max_abs_bin_pull": float(np.max(np.abs(pulls))),
            "chi2/ndf": float(np.sum(pulls**2) / pulls.shape[0]),
        },
    ]
    return rows


COS_MAX = 0.9  # fiducial region, inside the tracker acceptance |cos θ| < 0.95
DATA_SIN2 = 0.20


def ee_benchmark(n: int, iterations: int, n_bootstrap: int) -> list[dict]:
    from diffgen.unfolding import TrainConfig, mumu_afb_samples, omnifold

    t0 = time.perf_counter()
    mc, data = mumu_afb_samples(n, data_sin2_theta_w=DATA_SIN2, cos_max=COS_MAX)
    t_gen = time.perf_counter() - t0

    keep = mc["pass_gen"] | mc["pass_reco"]  # events outside the fiducial region at both levels
    mc_gen, mc_reco = mc["gen"][keep], mc["reco"][keep]
    mc_w, pg, pr = mc["weight"][keep], mc["pass_gen"][keep], mc["pass_reco"][keep]
    d_gen, d_reco = data["gen"], data["reco"]
    d_w, d_pass, d_true = data["weight"], data["pass_reco"], data["pass_gen"]
    t1, c1 = time.perf_counter(), time.process_time()
    res = omnifold(
        mc_gen,
        mc_reco,
        d_reco[d_pass],
        key=jax.random.key(3),
        mc_weights=mc_w,
        data_weights=d_w[d_pass],
        pass_gen=pg,
        pass_reco=pr,
        iterations=iterations,
        n_bootstrap=n_bootstrap,
        bootstrap_mc=True,
        config=TrainConfig(),
    )
    wall, cpu = time.perf_counter() - t1, time.process_time() - c1

    def afb(c, w):
        return float(np.sum(w * np.sign(c)) / np.sum(w))

    g = np.where(pg, mc_gen, 0.0)
    value, sigma = res.statistic(lambda w: afb(g[pg], w[pg]))
    t, tw = d_gen[d_true], d_w[d_true]
    truth = afb(t, tw)
    truth_err = float(np.sqrt(np.sum(tw**2 * (np.sign(t) - truth) ** 2)) / np.sum(tw))
    prior = afb(mc_gen[pg], mc_w[pg])
    edges = np.linspace(-COS_MAX, COS_MAX, 11)

    def shape(c, w):
        h = np.histogram(c, edges, weights=w)[0]
        return h / h.sum()

    unf, unf_err = res.statistic(lambda w: shape(g[pg], w[pg]))
    tru = shape(t, tw)
    tru_err = np.sqrt(np.histogram(t, edges, weights=tw**2)[0]) / np.sum(tw)
    sig = np.hypot(unf_err, tru_err)
    pulls = (unf - tru) / sig
    sig_afb = float(np.hypot(sigma, truth_err))
    return [
        {
            "method": f"OmniFold ee->mumu cos theta* ({iterations} it, {n_bootstrap} bootstrap)",
            "events": 2 * n,
            "generation_s": t_gen,
            "wall_s": wall,
            "cpu_s": cpu,
            "events_per_s": 2 * n / wall,
            "afb_unfolded": float(value),
            "afb_sigma": float(sigma),
            "afb_truth": truth,
            "afb_truth_err": truth_err,
            "pull_afb": float((value - truth) / sig_afb),
            "afb_prior": prior,
            "prior_pull_afb": float((prior - truth) / sig_afb),
            "max_abs_bin_pull": float(np.max(np.abs(pulls))),
            "chi2_10bins": float(np.sum(pulls**2)),
            "chi2_prior": float(np.sum(((shape(mc_gen[pg], mc_w[pg]) - tru) / sig) ** 2)),
        }
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2·10⁴ events, 3 iterations (a smoke run)")
    parser.add_argument("--skip-ee", action="store_true", help="skip the e+e- -> mu+mu- case")
    parser.add_argument("--skip-toy", action="store_true", help="skip the Gaussian toy")
    parser.add_argument("--bootstrap", type=int, default=4, help="bootstrap replicas for the σ (default 4)")
    parser.add_argument("--iterations", type=int, default=None, help="OmniFold iterations (default 5; 3 with --quick)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)
    n, iterations = (20_000, 3) if args.quick else (100_000, 5)
    iterations = args.iterations or iterations
    print("machine:", machine_info())
    print("numbers measured on a shared machine: wall times are upper bounds; cpu_s is the process CPU time")
    rows = []
    if not args.skip_toy:
        rows = gaussian_toy_benchmark(n, iterations, args.bootstrap)
        print_table(f"Gaussian toy, {n} events per sample", rows)
    if not args.skip_ee:
        ee = ee_benchmark(n, iterations, args.bootstrap)
        print_table(f"e+e- -> mu+mu-, LEP-like detector, {n} events per sample", ee)
        rows += ee
    if args.json:
        write_json(args.json, {"machine": machine_info(), "rows": rows})


if __name__ == "__main__":
    main()
