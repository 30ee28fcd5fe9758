"""Unfolding benchmark: OmniFold wall time and accuracy on the Gaussian toy and on e⁺e⁻ → μ⁺μ⁻.

Gaussian toy (issue acceptance): MC truth N(0, 1), data truth N(0.2, 0.8²), Gaussian smearing
σ = 0.5, 10 % inefficiency and 10 % fakes, 10⁵ particle-level events per sample, 5 iterations,
the default network (``TrainConfig()``). Printed: wall time, events/s (MC + data events per
second of unfolding), the unfolded mean and standard deviation against the data truth in
units of the bootstrap σ. Baseline in the same run: binned IBU (D'Agostini) on the same
toy, with its time and its bin pulls.

e⁺e⁻ → μ⁺μ⁻ through the LEP-like detector: MC at the default sin²θ_W, "data" at
sin²θ_W = 0.22; the unfolded cos θ* distribution and A_FB against the data truth.

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
    t0, c0 = time.perf_counter(), time.process_time()
    res = omnifold(
        mc.gen,
        mc.reco,
        data.observed,
        key=jax.random.key(0),
        pass_gen=mc.pass_gen,
        pass_reco=mc.pass_reco,
        iterations=iterations,
        n_bootstrap=n_bootstrap,
        config=TrainConfig(),
    )
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    gen = np.where(mc.pass_gen, mc.gen[:, 0], 0.0)
    (mean, std), (s_mean, s_std) = res.statistic(lambda w: np.asarray(weighted_mean_std(gen, w)))
    truth = data.truth[:, 0]
    n_events = mc.gen.shape[0] + data.observed.shape[0]

    t1 = time.perf_counter()
    gen_edges, reco_edges = np.linspace(-3, 3, 13), np.linspace(-4, 4, 33)
    resp = response_matrix(
        mc.gen[:, 0], mc.reco[:, 0], gen_edges, reco_edges, pass_gen=mc.pass_gen, pass_reco=mc.pass_reco, overflow=False
    )
    ibu = ibu_unfold(data.observed[:, 0], resp, iterations=4, n_bootstrap=50, overflow=False)
    wall_ibu = time.perf_counter() - t1
    t_hist = histogram(truth, gen_edges, overflow=False)
    pulls = (ibu.counts - t_hist) / np.sqrt(ibu.error**2 + np.maximum(t_hist, 1.0))
    rows = [
        {
            "method": f"OmniFold ({iterations} it, {n_bootstrap} bootstrap)",
            "events": n_events,
            "wall_s": wall,
            "cpu_s": cpu,
            "events_per_s": n_events / wall,
            "ratio_to_IBU": wall / wall_ibu,
            "mean": float(mean),
            "truth_mean": float(truth.mean()),
            "pull_mean": float((mean - truth.mean()) / s_mean),
            "std": float(std),
            "truth_std": float(truth.std()),
            "pull_std": float((std - truth.std()) / s_std),
        },
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


def ee_benchmark(n: int, iterations: int, n_bootstrap: int) -> list[dict]:
    import jax.numpy as jnp

    from diffgen.detector import lep_like, paired
    from diffgen.processes import ee_to_ffbar
    from diffgen.processes.observables import cos_theta_star
    from diffgen.unfolding import TrainConfig, omnifold

    sampler = paired(
        ee_to_ffbar(flavour="mu", sqrt_s=91.1876),
        lep_like(mode="stochastic"),
        reco_selection=lambda e: e.multiplicity() == 2,
    )
    params = sampler.init(jax.random.key(0))
    data_params = {**params, "source": {**params["source"], "sin2_theta_w": jnp.asarray(0.22)}}
    t0 = time.perf_counter()
    mc = sampler.sample(params, jax.random.key(1), n)
    data = sampler.sample(data_params, jax.random.key(2), n)
    t_gen = time.perf_counter() - t0

    def features(pair):
        return np.asarray(cos_theta_star(pair.truth)), np.asarray(cos_theta_star(pair.reco))

    mc_gen, mc_reco = features(mc)
    d_gen, d_reco = features(data)
    d_pass = np.asarray(data.pass_reco)
    t1, c1 = time.perf_counter(), time.process_time()
    res = omnifold(
        mc_gen,
        mc_reco,
        d_reco[d_pass],
        key=jax.random.key(3),
        mc_weights=np.asarray(mc.weight),
        data_weights=np.asarray(data.weight)[d_pass],
        pass_gen=np.asarray(mc.pass_gen),
        pass_reco=np.asarray(mc.pass_reco),
        iterations=iterations,
        n_bootstrap=n_bootstrap,
        config=TrainConfig(),
    )
    wall, cpu = time.perf_counter() - t1, time.process_time() - c1

    def afb(c, w):
        return float(np.sum(w * np.sign(c)) / np.sum(w))

    value, sigma = res.statistic(lambda w: afb(mc_gen, w))
    w_d = np.asarray(data.weight)
    truth = afb(d_gen, w_d)
    truth_err = float(np.sqrt(np.sum(w_d**2 * (np.sign(d_gen) - truth) ** 2)) / np.sum(w_d))
    prior = afb(mc_gen, np.asarray(mc.weight))
    edges = np.linspace(-1, 1, 11)
    unf = np.histogram(mc_gen, edges, weights=res.weights)[0]
    tru = np.histogram(d_gen, edges, weights=w_d)[0]
    unf, tru = unf / unf.sum(), tru / tru.sum()
    reps = np.stack([np.histogram(mc_gen, edges, weights=w)[0] / w.sum() for w in res.replica_weights])
    tru_err = np.sqrt(np.histogram(d_gen, edges, weights=w_d**2)[0]) / np.sum(w_d)
    pulls = (unf - tru) / np.hypot(reps.std(axis=0, ddof=1), tru_err)
    return [
        {
            "method": f"OmniFold ee->mumu cos theta ({iterations} it)",
            "events": 2 * n,
            "generation_s": t_gen,
            "wall_s": wall,
            "cpu_s": cpu,
            "events_per_s": 2 * n / wall,
            "afb_unfolded": float(value),
            "afb_sigma": float(sigma),
            "afb_truth": truth,
            "afb_truth_err": truth_err,
            "afb_prior": prior,
            "pull_afb": float((value - truth) / np.hypot(sigma, truth_err)),
            "max_abs_bin_pull": float(np.max(np.abs(pulls))),
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
