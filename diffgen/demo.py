"""``diffgen demo``: generate e⁺e⁻ → μ⁺μ⁻ and → hadrons across the Z and fit the LEP lineshape.

Runs :func:`diffgen.lineshape.fit_lineshape` on the LEP σ⁰_had table shipped in
``diffgen/data``, then writes to the output directory:

- ``events_z_peak.npz``: weighted μ⁺μ⁻ and q q̄ events at √s = fitted m_Z (``Events.to_numpy``
  arrays under ``mumu/`` and ``hadrons/``, plus ``metadata``: a JSON string with process,
  √s, parameters, seed, units);
- ``sigma_had.png``: σ⁰_had(√s) LEP points with the fitted MC curve and a pull panel;
- ``cos_theta_mumu.png``: dσ/dcos θ of μ⁻ at three energies; ``afb_mumu.png``: A_FB^μμ(√s);
- ``summary.json``: every number printed.

Nothing is hard-coded: every number comes from the generated events and the fit.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diffgen._progress import StageBar
from diffgen.core import Events, jit
from diffgen.kinematics import cos_theta
from diffgen.lineshape import LEP_REFERENCE, fit_lineshape, load_lep_table
from diffgen.processes import ee_to_ffbar

__all__ = ["run_demo"]


def _atomic_path(path: Path, write) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _save_fig(fig, path: Path) -> Path:
    def write(tmp: str) -> None:
        fig.savefig(tmp, dpi=120, format=path.suffix.lstrip("."))

    return _atomic_path(path, write)


def _write_json(obj: Mapping[str, Any], path: Path) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "w") as fh:
            json.dump(obj, fh, indent=2, sort_keys=False)
            fh.write("\n")

    return _atomic_path(path, write)


def _write_npz(arrays: Mapping[str, np.ndarray], path: Path) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    return _atomic_path(path, write)


def _mumu_scan(n: int, dtype):
    """σ_μμ, A_FB and cos θ samples over an energy grid (one compiled function)."""
    src = ee_to_ffbar("mu", 91.1876, width="running", dtype=dtype)
    base = src.init(jax.random.key(0))

    @jax.jit
    def scan(m_z, gamma_z, energies, key):
        def one(e):
            ev = src.sample({**base, "sqrt_s": e, "m_z": m_z, "gamma_z": gamma_z}, key, n)
            return ev

        return jax.vmap(one)(energies)

    return scan, src


def run_demo(
    out: str | os.PathLike[str] = "out",
    *,
    n_fit: int = 100_000,
    n_plot: int = 50_000,
    n_save: int = 10_000,
    seed: int = 1,
    optimizer: str = "lbfgs",
    progress: bool = True,
    verbose: bool = True,
    data_path: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Run the Z-lineshape demonstration and write its outputs to ``out``.

    Args:
      out: output directory (created).
      n_fit: weighted hadronic events per LEP energy in the fitted MC estimate.
      n_plot: μ⁺μ⁻ events per energy for the cos θ and A_FB plots.
      n_save: events of each process written to the npz file.
      seed: random seed.
      optimizer: ``"lbfgs"`` or ``"adam"``.
      progress: show progress bars; verbose: print the results.
      data_path: another lineshape CSV (default: the LEP table shipped with diffgen).

    Returns:
      the summary dict (also written as ``summary.json``).
    """
    for name, v in (("n_fit", n_fit), ("n_plot", n_plot), ("n_save", n_save)):
        if not isinstance(v, int) or v < 100:
            raise ValueError(f"{name} must be an int >= 100, got {v!r}")
    import matplotlib

    matplotlib.use("Agg")

    t_start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    data = load_lep_table(data_path)
    res = fit_lineshape(data, n_events=n_fit, seed=seed, optimizer=optimizer, progress=progress, dtype=dtype)
    stages = StageBar(["fitted curve and μ⁺μ⁻ energy scan", "hadron events", "plots", "event file"], enabled=progress)
    try:
        summary = _after_fit(out, data, res, stages, dtype, n_fit, n_plot, n_save, seed, optimizer)
    finally:
        stages.close()
    summary["timing_s"]["total"] = time.perf_counter() - t_start
    _write_json(summary, out / "summary.json")
    if verbose:
        _print_summary(summary, out)
    return summary


def _after_fit(out, data, res, stages, dtype, n_fit, n_plot, n_save, seed, optimizer):
    """Everything after the fit: curves, μ⁺μ⁻ scan, hadron events, plots and the event file."""
    import matplotlib.pyplot as plt

    prob, theta, key = res["problem"], res["theta"], res["key"]
    p, e = res["params"], res["errors"]
    stages.next()

    # --- fitted curve on a fine grid (same random numbers as the fit)
    grid = np.linspace(87.8, 94.6, 69)
    curve, curve_err = prob["model_jit"](theta, jnp.asarray(grid, dtype), key)
    curve, curve_err = np.asarray(curve), np.asarray(curve_err)
    pred = res["prediction_nb"]
    pulls = (data.sigma - pred) / data.sigma_err

    # --- μ⁺μ⁻ over an energy grid: σ, A_FB, cos θ
    afb_grid = np.round(np.linspace(88.0, 94.4, 17), 4)
    energies = np.unique(np.concatenate([afb_grid, [p["m_z"]]]))
    scan, _ = _mumu_scan(n_plot, dtype)
    kmu = jax.random.fold_in(key, 101)
    ev = scan(theta["m_z"], theta["gamma_z"], jnp.asarray(energies, dtype), kmu)
    w = np.asarray(ev.weight)  # [E, N] pb
    c = np.asarray(cos_theta(ev.p[:, :, 0]))  # μ⁻ (slot 0) relative to the e⁻ beam
    sig_mu = w.mean(axis=1)
    sig_mu_err = w.std(axis=1, ddof=1) / np.sqrt(n_plot)
    sgn = np.sign(c)
    afb_v = (w * sgn).sum(axis=1) / w.sum(axis=1)
    afb_e = np.sqrt((w * w * (sgn - afb_v[:, None]) ** 2).sum(axis=1)) / np.abs(w.sum(axis=1))
    i_peak = int(np.argmin(np.abs(energies - p["m_z"])))

    # --- events at the peak for the file (μμ from the scan, hadrons from the fitted source)
    mu_peak = Events(
        p=ev.p[i_peak, :n_save],
        weight=ev.weight[i_peak, :n_save],
        mask=ev.mask[i_peak, :n_save],
        pid=ev.pid[i_peak, :n_save],
    )
    stages.next()
    had_src = prob["source"]
    had_params = {**prob["base"], "sqrt_s": theta["m_z"], "m_z": theta["m_z"], "gamma_z": theta["gamma_z"]}
    had = jit(had_src.sample, static_argnums=2)(had_params, jax.random.fold_in(key, 202), n_save)
    had = had.replace(weight=had.weight * theta["norm"])
    sig_had_peak = float(np.mean(np.asarray(had.weight))) / 1000.0
    sig_mu_peak, sig_mu_peak_err = float(sig_mu[i_peak]), float(sig_mu_err[i_peak])
    ratio_had_mu = 1000.0 * sig_had_peak / sig_mu_peak

    # --- summary (every printed number)
    lep = LEP_REFERENCE
    pull_lep = {
        "m_z": (p["m_z"] - lep["m_z"][0]) / e["m_z"],
        "gamma_z": (p["gamma_z"] - lep["gamma_z"][0]) / e["gamma_z"],
        "sigma0_had_nb": (res["sigma0_had_nb"] - lep["sigma0_had_nb"][0]) / res["sigma0_had_err_nb"],
    }
    summary: dict[str, Any] = {
        "fit": {
            "m_z_GeV": p["m_z"],
            "m_z_err_GeV": e["m_z"],
            "gamma_z_GeV": p["gamma_z"],
            "gamma_z_err_GeV": e["gamma_z"],
            "norm": p["norm"],
            "norm_err": e["norm"],
            "sigma0_had_nb": res["sigma0_had_nb"],
            "sigma0_had_err_nb": res["sigma0_had_err_nb"],
            "chi2": res["chi2"],
            "ndf": res["ndf"],
            "correlation": {"names": res["names"], "matrix": np.asarray(res["correlation"]).tolist()},
            "optimizer": optimizer,
            "steps": [r.n_steps for r in res["passes"]],
            "status": [r.status for r in res["passes"]],
        },
        "lep_reference": {k: {"value": v[0], "error": v[1]} for k, v in lep.items()},
        "pull_vs_lep_in_own_sigma": pull_lep,
        "within_3_sigma": {k: bool(abs(v) < 3.0) for k, v in pull_lep.items() if k != "sigma0_had_nb"},
        "points": {
            "sqrt_s_GeV": data.sqrt_s.tolist(),
            "sigma0_had_nb": data.sigma.tolist(),
            "sigma0_had_err_nb": data.sigma_err.tolist(),
            "fit_nb": pred.tolist(),
            "fit_mc_err_nb": res["mc_error_nb"].tolist(),
            "pull": pulls.tolist(),
        },
        "mumu": {
            "sqrt_s_GeV": energies.tolist(),
            "sigma_pb": sig_mu.tolist(),
            "sigma_err_pb": sig_mu_err.tolist(),
            "afb": afb_v.tolist(),
            "afb_err": afb_e.tolist(),
            "sigma_peak_pb": sig_mu_peak,
            "sigma_peak_err_pb": sig_mu_peak_err,
            "afb_peak": float(afb_v[i_peak]),
            "afb_peak_err": float(afb_e[i_peak]),
        },
        "hadrons_peak_sigma_nb": sig_had_peak,
        "R_had_mu_peak": ratio_had_mu,
        "config": {
            "n_fit_per_energy": n_fit,
            "n_plot_per_energy": n_plot,
            "n_saved": n_save,
            "seed": seed,
            "data": data.source,
            "dtype": jnp.dtype(dtype).name,
            "width_scheme": "running",
        },
        "timing_s": {"fit": res["time_fit_s"], "hessian": res["time_hessian_s"]},
    }

    # --- plots
    stages.next()
    fig, (ax, rax) = plt.subplots(2, 1, sharex=True, figsize=(6.4, 6.0), gridspec_kw={"height_ratios": [3, 1]})
    ax.fill_between(grid, curve - curve_err, curve + curve_err, color="C0", alpha=0.3, lw=0)
    ax.plot(grid, curve, color="C0", label=f"diffgen fit (MC, {n_fit} ev./point)")
    ax.errorbar(data.sqrt_s, data.sigma, yerr=data.sigma_err, fmt="o", color="k", ms=4, label="LEP σ⁰_had")
    ax.set_ylabel("σ(e⁺e⁻ → hadrons) [nb]")
    ax.legend(loc="upper right", fontsize=8)
    ax.text(
        0.02,
        0.95,
        f"m_Z = {p['m_z']:.4f} ± {e['m_z']:.4f} GeV\nΓ_Z = {p['gamma_z']:.4f} ± {e['gamma_z']:.4f} GeV\n"
        f"σ⁰_had = {res['sigma0_had_nb']:.3f} ± {res['sigma0_had_err_nb']:.3f} nb\n"
        f"χ²/ndf = {res['chi2']:.2f}/{res['ndf']}",
        transform=ax.transAxes,
        va="top",
        fontsize=8,
    )
    rax.axhline(0.0, color="C0")
    rax.errorbar(data.sqrt_s, pulls, yerr=np.ones_like(pulls), fmt="o", color="k", ms=4)
    rax.set_ylabel("(data − fit)/σ")
    rax.set_xlabel("√s [GeV]")
    fig.tight_layout()
    _save_fig(fig, out / "sigma_had.png")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    edges = np.linspace(-1.0, 1.0, 21)
    for j, target in enumerate((89.4, p["m_z"], 93.0)):
        i = int(np.argmin(np.abs(energies - target)))
        h, _ = np.histogram(c[i], bins=edges, weights=w[i])
        h2, _ = np.histogram(c[i], bins=edges, weights=w[i] ** 2)
        scale = 1.0 / (n_plot * np.diff(edges))
        ax.errorbar(
            0.5 * (edges[1:] + edges[:-1]),
            h * scale,
            yerr=np.sqrt(h2) * scale,
            fmt="o-",
            ms=3,
            color=f"C{j}",
            label=f"√s = {energies[i]:.3f} GeV",
        )
    ax.set_xlabel("cos θ(μ⁻, e⁻ beam)")
    ax.set_ylabel("dσ/dcos θ [pb]")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save_fig(fig, out / "cos_theta_mumu.png")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.errorbar(energies, afb_v, yerr=afb_e, fmt="o-", ms=3, color="C3", label="diffgen (fitted m_Z, Γ_Z)")
    ax.axhline(0.0, color="grey", lw=0.5)
    ax.axvline(p["m_z"], color="grey", lw=0.5, ls="--")
    ax.set_xlabel("√s [GeV]")
    ax.set_ylabel("A_FB(e⁺e⁻ → μ⁺μ⁻)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save_fig(fig, out / "afb_mumu.png")
    plt.close(fig)

    # --- events
    stages.next()
    meta = {
        "generator": "diffgen",
        "units": {"p": "GeV (E, px, py, pz)", "weight": "pb"},
        "sqrt_s_GeV": p["m_z"],
        "seed": seed,
        "processes": {
            "mumu": "e+e- -> gamma*/Z -> mu+mu- (Born, running width)",
            "hadrons": "e+e- -> gamma*/Z -> q qbar, q in udscb (Born, running width, 1+alpha_s/pi, x norm)",
        },
        "params": {
            "m_z": p["m_z"],
            "gamma_z": p["gamma_z"],
            "norm": p["norm"],
            **{k: float(v) for k, v in prob["base"].items() if k not in ("sqrt_s", "m_z", "gamma_z")},
        },
        "beam": "e- along +z, centre-of-mass frame; final-state particles only",
    }
    arrays = {f"mumu/{k}": v for k, v in mu_peak.to_numpy().items()}
    arrays.update({f"hadrons/{k}": v for k, v in had.to_numpy().items()})
    arrays["metadata"] = np.asarray(json.dumps(meta))
    _write_npz(arrays, out / "events_z_peak.npz")
    summary["outputs"] = sorted(
        ["sigma_had.png", "cos_theta_mumu.png", "afb_mumu.png", "events_z_peak.npz", "summary.json"]
    )
    return summary


def _print_summary(s: Mapping[str, Any], out: Path) -> None:
    f, pl = s["fit"], s["pull_vs_lep_in_own_sigma"]
    lep = s["lep_reference"]
    print("Z lineshape fit to the LEP σ⁰_had points (χ² with Hessian errors):")
    print(
        f"  m_Z      = {f['m_z_GeV']:.5f} ± {f['m_z_err_GeV']:.5f} GeV   "
        f"(LEP {lep['m_z']['value']} ± {lep['m_z']['error']}, pull {pl['m_z']:+.2f} σ)"
    )
    print(
        f"  Γ_Z      = {f['gamma_z_GeV']:.5f} ± {f['gamma_z_err_GeV']:.5f} GeV   "
        f"(LEP {lep['gamma_z']['value']} ± {lep['gamma_z']['error']}, pull {pl['gamma_z']:+.2f} σ)"
    )
    print(
        f"  σ⁰_had   = {f['sigma0_had_nb']:.4f} ± {f['sigma0_had_err_nb']:.4f} nb   "
        f"(LEP {lep['sigma0_had_nb']['value']} ± {lep['sigma0_had_nb']['error']}, pull {pl['sigma0_had_nb']:+.2f} σ)"
    )
    print(f"  norm     = {f['norm']:.5f} ± {f['norm_err']:.5f}")
    print(f"  χ²/ndf   = {f['chi2']:.3f}/{f['ndf']}")
    mu = s["mumu"]
    print(
        f"  σ(μμ) at the peak = {mu['sigma_peak_pb']:.2f} ± {mu['sigma_peak_err_pb']:.2f} pb, "
        f"A_FB(μμ) = {mu['afb_peak']:+.4f} ± {mu['afb_peak_err']:.4f}, "
        f"R = σ_had/σ_μμ = {s['R_had_mu_peak']:.3f}"
    )
    print(
        f"  time: fit {s['timing_s']['fit']:.1f} s, Hessian {s['timing_s']['hessian']:.1f} s, "
        f"total {s['timing_s']['total']:.1f} s"
    )
    print(f"  wrote {', '.join(s['outputs'])} to {out}/")
