"""Distances between learned and reference cluster-decay samples.

- :func:`wasserstein_1d`: the exact 1-D Wasserstein-1 distance ``∫|F_a(x) − F_b(x)| dx``
  between two empirical distributions (C. Villani, Optimal Transport, 2009, remark 2.19).
- :func:`sliced_wasserstein`: the mean 1-D W₁ over random unit projections
  (N. Bonneel et al., J. Math. Imaging Vis. 51 (2015) 22).
- :func:`decay_metrics`: W₁ on cos θ and φ normalised to the range (cos θ / 2, φ / 2π, so 0.01
  means 1 % of the range), W₁ on the lab-frame hadron energies and momenta (GeV), and the
  sliced-Wasserstein distance in the standardised joint space
  (cos θ, φ, E₁, |p⃗₁|, E₂, |p⃗₂|) (standardised with the reference's mean and spread).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["JOINT_FEATURES", "decay_metrics", "joint_features", "sliced_wasserstein", "wasserstein_1d"]

JOINT_FEATURES = ("cos_theta", "phi", "e1", "p1", "e2", "p2")


def wasserstein_1d(a: np.ndarray, b: np.ndarray) -> float:
    """Exact W₁ between two 1-D samples (any sizes).

    Args:
      a: [n] sample.
      b: [m] sample.

    Returns:
      W₁ in the units of the samples.
    """
    a = np.sort(np.asarray(a, dtype=np.float64).ravel())
    b = np.sort(np.asarray(b, dtype=np.float64).ravel())
    if a.size == 0 or b.size == 0:
        raise ValueError("wasserstein_1d: both samples must be non-empty")
    grid = np.sort(np.concatenate([a, b]))
    widths = np.diff(grid)
    fa = np.searchsorted(a, grid[:-1], side="right") / a.size
    fb = np.searchsorted(b, grid[:-1], side="right") / b.size
    return float(np.sum(np.abs(fa - fb) * widths))


def sliced_wasserstein(x: np.ndarray, y: np.ndarray, *, n_projections: int = 128, seed: int = 0) -> float:
    """Sliced W₁: mean over random unit directions of the W₁ of the projected samples.

    Args:
      x: [n, d] sample.
      y: [m, d] sample.
      n_projections: number of random directions (fixed by ``seed``).
      seed: NumPy seed of the directions.

    Returns:
      SW₁ in the units of the features.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"sliced_wasserstein: x and y must be [n, d] and [m, d], got {x.shape} and {y.shape}")
    rng = np.random.default_rng(seed)
    dirs = rng.normal(size=(n_projections, x.shape[1]))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    return float(np.mean([wasserstein_1d(x @ d, y @ d) for d in dirs]))


def joint_features(sample: Mapping[str, np.ndarray]) -> np.ndarray:
    """Stack the joint-space features of a decay sample: [n, 6] in :data:`JOINT_FEATURES` order."""
    return np.stack([np.asarray(sample[k], dtype=np.float64) for k in JOINT_FEATURES], axis=1)


def decay_metrics(model: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray]) -> dict[str, float]:
    """All distances between a model sample and a reference sample of cluster decays.

    Args:
      model, reference: dicts with [n] arrays ``cos_theta``, ``phi`` (rad), ``e1``, ``p1``,
        ``e2``, ``p2`` (lab hadron energies and momentum magnitudes, GeV).

    Returns:
      ``{"w1_cos_theta", "w1_phi"}`` (fractions of the range), ``{"w1_e1", "w1_p1", "w1_e2",
      "w1_p2"}`` (GeV) and ``"sliced_w1"`` (standardised joint space).
    """
    out = {
        "w1_cos_theta": wasserstein_1d(model["cos_theta"], reference["cos_theta"]) / 2.0,
        "w1_phi": wasserstein_1d(model["phi"], reference["phi"]) / (2.0 * np.pi),
    }
    for k in ("e1", "p1", "e2", "p2"):
        out[f"w1_{k}"] = wasserstein_1d(model[k], reference[k])
    ref = joint_features(reference)
    mean, std = ref.mean(axis=0), ref.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    out["sliced_w1"] = sliced_wasserstein((joint_features(model) - mean) / std, (ref - mean) / std)
    return out
