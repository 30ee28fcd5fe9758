"""Hadronization benchmark: clusters decayed per second, training-step time, full-chain events/s.

Also prints the mean charged multiplicity of e⁺e⁻ → hadrons at 91.2 GeV (hard process +
shower + clusters + reference decay) next to ALEPH's measurement. The baseline of the decay
rates is the reference decay in the same run (learned/reference ratio); the chain rate is
compared with the shower alone (hadronization overhead).

    .venv/bin/python -m benchmarks.hadronization [--quick]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import best_time, machine_info, print_table, time_compile_and_run
from diffgen.core import jit

ALEPH_CSV = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "lep_mean_charged_multiplicity_91GeV.csv"


def aleph_nch() -> tuple[float, float]:
    """ALEPH 1996 mean charged multiplicity at 91.2 GeV (value, total error)."""
    with open(ALEPH_CSV) as fh:
        rows = list(csv.DictReader(line for line in fh if not line.startswith("#")))
    row = next(r for r in rows if r["quantity"] == "ALEPH 1996 mean N_ch")
    return float(row["value"]), float(row["err_total"])


def chain_multiplicity(n_events: int, seed: int = 0, dtype=jnp.float64):
    """Mean charged multiplicity (and its standard error) of ee → qq̄ + shower + hadronize at 91.2 GeV."""
    from diffgen import chain
    from diffgen.hadronization import charge3, hadronize
    from diffgen.processes import ee_to_qqbar
    from diffgen.shower import final_state_shower

    sim = chain(ee_to_qqbar(91.2), ("shower", final_state_shower()), ("hadronization", hadronize()))
    params = sim.init(jax.random.key(seed))
    sample = jit(sim.sample, static_argnums=2)
    ev = sample(params, jax.random.key(seed + 1), n_events)
    charged = np.asarray(ev.mask) & (np.asarray(charge3(ev.pid)) != 0)
    nch = charged.sum(axis=1)
    flags = {
        k: float(np.mean(np.asarray(v))) for k, v in ev.extra.items() if k.endswith(("overflow", "failed", "unmatched"))
    }
    return float(nch.mean()), float(nch.std() / np.sqrt(len(nch))), flags, sim, params


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (a few seconds of running after compilation)")
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    from diffgen.hadronization import decay_clusters, reference_angles
    from diffgen.hadronization import learned as L
    from diffgen.hadronization.samples import reference_clusters
    from diffgen.hadronization.train import TrainConfig, _flow_fns, _gan_fns, _optimizers

    n_clusters = 2000 if args.quick else 50_000
    rows = []
    clusters64 = reference_clusters(jax.random.key(0), n_clusters)
    clusters = jax.tree.map(lambda x: x.astype(jnp.float32) if jnp.issubdtype(x.dtype, jnp.floating) else x, clusters64)
    base = {"gamma_s": jnp.asarray(0.6, jnp.float32), "p_vector": jnp.asarray(0.5, jnp.float32)}
    models = {"reference": (reference_angles(), {"smearing": jnp.asarray(0.78, jnp.float32)})}
    for kind in ("gan", "flow"):
        cfg = L.default_config(kind)
        m = L.angle_model(cfg)
        models[kind] = (m, m.init(None))
    rates = {}
    for name, (model, dparams) in models.items():
        fn = jit(lambda p, k, c, model=model: decay_clusters(p, k, c, model)[:3])
        compile_s, t = time_compile_and_run(fn, {**base, "decay": dparams}, jax.random.key(1), clusters, repeat=3)
        rates[name] = n_clusters / t
        rows.append(
            {
                "what": f"cluster decay ({name}, float32)",
                "per_s": rates[name],
                "compile_s": compile_s,
                "ratio_to_reference": rates[name] / rates["reference"],
            }
        )
    for kind in ("gan", "flow"):
        cfg = TrainConfig(model=kind, batch=512)
        arch = cfg.arch()
        opt = _optimizers(cfg)
        params = L.init_params(arch)
        state = {k: opt[k].init(params[k]) for k in opt}
        # the default GAN step: n_critic discriminator minibatches of 512 and the R1 penalty
        n_batch = cfg.n_critic * 512 if kind == "gan" else 512
        step = _gan_fns(arch, opt, cfg.n_critic, cfg.r1_gamma) if kind == "gan" else _flow_fns(arch, opt)
        x = jnp.ones((n_batch, 8), jnp.float32)
        c = jnp.zeros(n_batch, jnp.float32)
        compile_s, t = time_compile_and_run(step, params, state, jax.random.key(0), x, c, c, repeat=3)
        rows.append(
            {
                "what": f"training step ({kind}, batch 512)",
                "per_s": 1.0 / t,
                "compile_s": compile_s,
                "ratio_to_reference": float("nan"),
            }
        )
    n_chain = 100 if args.quick else 2000
    mean, err, flags, sim, params = chain_multiplicity(n_chain)
    sample = jit(sim.sample, static_argnums=2)
    t = best_time(sample, params, jax.random.key(5), n_chain, repeat=2)
    from diffgen import chain
    from diffgen.processes import ee_to_qqbar
    from diffgen.shower import final_state_shower

    shower_only = chain(ee_to_qqbar(91.2), ("shower", final_state_shower()))
    sp = shower_only.init(jax.random.key(0))
    s_fn = jit(shower_only.sample, static_argnums=2)
    s_fn(sp, jax.random.key(1), n_chain)
    t_s = best_time(s_fn, sp, jax.random.key(5), n_chain, repeat=2)
    rows.append(
        {
            "what": "ee->hadrons chain 91.2 GeV (float64)",
            "per_s": n_chain / t,
            "compile_s": float("nan"),
            "ratio_to_reference": (n_chain / t) / (n_chain / t_s),
        }
    )
    print_table("hadronization (per_s = clusters/s, steps/s or events/s; measured under load)", rows)
    value, error = aleph_nch()
    print(
        f"\nmean charged multiplicity at 91.2 GeV: diffgen {mean:.2f} ± {err:.2f} ({n_chain} events) "
        f"vs ALEPH 1996 {value:.2f} ± {error:.2f}; flags {flags}"
    )
    print("chain ratio_to_reference = (shower + hadronization) rate / shower-only rate")
    print(machine_info())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
