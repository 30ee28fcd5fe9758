"""Make the images of docs/plotting.md and docs/cli.md with the diffgen command line.

Every plot type of ``diffgen.plotting`` is drawn from events generated here:

- ``mumu_costheta.png``: several samples with MC errors and a ratio panel
  (e⁺e⁻ → μ⁺μ⁻ below, on and above the Z pole; the forward–backward asymmetry changes sign);
- ``thrust_aleph.png``: a sample against data points from a CSV (ALEPH 1 − T), ratio
  panel to the data, logarithmic y axis;
- ``xp_alphas_logx.png``: logarithmic x and y axes, a parameter variation (α_s(m_Z) of the shower);
- ``lep_lineshape.png``: data points alone (the LEP hadronic cross sections);
- ``nch_aleph.png`` (with ``--hadrons``): hadron-level charged multiplicity against ALEPH,
  normalised as a probability per bin (compiling the hadronization takes minutes).

Run from the repository root: ``.venv/bin/python docs/make_plot_images.py [--n 20000] [--hadrons]``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from diffgen.cli import main

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
DATA = ROOT / ".." / "shared" / "data"


def diffgen(*argv: str) -> None:
    """Run a diffgen subcommand in this process; stop on failure."""
    code = main([str(a) for a in argv])
    if code != 0:
        raise SystemExit(f"diffgen {' '.join(map(str, argv))} failed with exit code {code}")


def main_() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="events per μμ sample (default: 20000)")
    parser.add_argument("--n-shower", type=int, default=4_000, help="events per showered sample (default: 4000)")
    parser.add_argument("--hadrons", action="store_true", help="also make nch_aleph.png (slow to compile)")
    parser.add_argument("--only-hadrons", action="store_true", help="make only nch_aleph.png")
    args = parser.parse_args()
    IMAGES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        if args.hadrons or args.only_hadrons:
            had = t / "had.parquet"
            diffgen("generate", "--process", "ee_to_qqbar", "--layers", "shower,hadronization", "--n", args.n_shower,
                    "--chunk-size", 1000, "--seed", 3, "-o", had, "-q")  # fmt: skip
            diffgen("plot", had, "--labels", "diffgen hadrons", "--observable", "n_charged",
                    "--data", DATA / "aleph1996_nch_distribution_91GeV.csv", "--data-label", "ALEPH",
                    "--norm", "fraction", "--ylabel", "P(N_ch)", "--title", "e⁺e⁻ → hadrons, 91.2 GeV",
                    "-o", IMAGES / "nch_aleph.png", "-q")  # fmt: skip
        if not args.only_hadrons:
            make_standard_images(t, args.n, args.n_shower)
    for f in IMAGES.glob("*.run.toml"):
        f.unlink()  # the effective configurations name temporary event files
    print("wrote", ", ".join(sorted(p.name for p in IMAGES.glob("*.png"))))


def make_standard_images(t: Path, n: int, n_shower: int) -> None:
    """The μμ, shower and data-only images."""
    # 1. Several samples with a ratio panel.
    files, labels = [], []
    for sqrt_s in (88.5, 91.1876, 93.7):
        out = t / f"mumu_{sqrt_s}.parquet"
        diffgen("generate", "--n", n, "--sqrt-s", sqrt_s, "--seed", 1, "-o", out, "-q")
        files.append(out)
        labels.append(f"√s = {sqrt_s:g} GeV")
    diffgen("plot", *files, "--labels", ",".join(labels), "--observable", "cos_theta", "--bins", 20,
            "--norm", "density", "--ylabel", "1/σ dσ/dcos θ", "--title", "e⁺e⁻ → μ⁺μ⁻",
            "-o", IMAGES / "mumu_costheta.png", "-q")  # fmt: skip

    # 2. and 3. Showered q q̄ events: against data; logarithmic axes and an α_s variation.
    qq = t / "qq.parquet"
    diffgen("generate", "--process", "ee_to_qqbar", "--layers", "shower", "--n", n_shower,
            "--chunk-size", 1000, "--seed", 2, "-o", qq, "-q")  # fmt: skip
    diffgen("plot", qq, "--labels", "diffgen partons (shower)", "--observable", "one_minus_thrust",
            "--data", DATA / "aleph1996_1minusT_charged_91GeV.csv", "--data-label", "ALEPH (charged hadrons)",
            "--norm", "density", "--logy", "--ylabel", "1/σ dσ/d(1 − T)", "--title", "e⁺e⁻ → hadrons, 91.2 GeV",
            "-o", IMAGES / "thrust_aleph.png", "-q")  # fmt: skip
    qq_up = t / "qq_up.parquet"
    diffgen("generate", "--process", "ee_to_qqbar", "--layers", "shower", "--n", n_shower,
            "--chunk-size", 1000, "--seed", 2, "--param", "shower.alpha_s_mz=0.130", "-o", qq_up, "-q")  # fmt: skip
    edges = ",".join(f"{e:.6g}" for e in np.geomspace(0.005, 1.0, 21))
    diffgen("plot", qq, qq_up, "--labels", "α_s(m_Z) = 0.118,α_s(m_Z) = 0.130", "--observable", "xp",
            "--edges", edges, "--logx", "--logy", "--ylabel", "dσ/dx_p [pb]",
            "--title", "partons after the shower, 91.2 GeV", "-o", IMAGES / "xp_alphas_logx.png", "-q")  # fmt: skip

    # 4. Data points alone.
    diffgen("plot", "--data", DATA / "lep_hadronic_xsec_7point_average_kafe.csv", "--data-label",
            "LEP average, σ⁰_had", "--ylabel", "σ⁰_had [nb]", "--xlabel", "√s [GeV]",
            "-o", IMAGES / "lep_lineshape.png", "-q")  # fmt: skip


if __name__ == "__main__":
    main_()
