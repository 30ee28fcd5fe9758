"""Draw the overview figure of the diffgen chain (docs/images/chain.png), used by the README and the docs.

Run: ``.venv/bin/python docs/make_chain_figure.py``.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

STAGES = [
    ("theory\nparameters", "m_Z, Γ_Z, sin²θ_W,\nαs(m_Z), t₀, σ_det …", "#dfe7f2"),
    ("hard process", "phase space ×\n|M|² → weights", "#e3f1e3"),
    ("parton shower", "CS dipoles, veto alg.\nreweighting in αs", "#e3f1e3"),
    ("hadronization", "clusters → hadrons\nreference or learned", "#e3f1e3"),
    ("detector", "smearing, efficiency\ngen–reco pairs", "#e3f1e3"),
    ("observables", "thrust, C, y₂₃,\nA_FB, multiplicity", "#f6ecd9"),
    ("fit / unfold", "optax + Hessian,\nOmniFold, IBU, flows", "#f6e0e0"),
]


def main(path: Path) -> None:
    fig, ax = plt.subplots(figsize=(14, 2.9))
    ax.set_xlim(0, len(STAGES) * 2.0)
    ax.set_ylim(-0.1, 2.9)
    ax.axis("off")
    for i, (title, detail, colour) in enumerate(STAGES):
        x = i * 2.0 + 0.1
        ax.add_patch(FancyBboxPatch((x, 0.9), 1.6, 1.5, boxstyle="round,pad=0.05", fc=colour, ec="#333333"))
        ax.text(x + 0.8, 2.05, title, ha="center", va="center", fontsize=10.5, weight="bold")
        ax.text(x + 0.8, 1.35, detail, ha="center", va="center", fontsize=8.5)
        if i < len(STAGES) - 1:
            ax.add_patch(FancyArrowPatch((x + 1.68, 1.65), (x + 2.02, 1.65), arrowstyle="-|>", mutation_scale=14))
    ax.add_patch(
        FancyArrowPatch(
            (len(STAGES) * 2.0 - 1.1, 0.8),
            (1.0, 0.8),
            arrowstyle="-|>",
            mutation_scale=14,
            connectionstyle="arc3,rad=-0.06",
            color="#b03030",
        )
    )
    ax.text(
        len(STAGES),
        0.12,
        "jax.grad: one autodiff graph from every parameter to every observable",
        ha="center",
        va="center",
        fontsize=10,
        color="#b03030",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    tmp.replace(path)


if __name__ == "__main__":
    main(Path(__file__).resolve().parent / "images" / "chain.png")
