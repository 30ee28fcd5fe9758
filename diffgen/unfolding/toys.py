"""Toy unfolding problems with known truth: Gaussian smearing with inefficiency and fakes.

These are the closure tests of OmniFold (arXiv:1911.09107, §4 uses Gaussian toys) and of the
other unfolding methods: the particle-level truth of the "data" is known, so an unfolded
result can be compared with it within its statistical uncertainty.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

__all__ = ["ToySample", "gaussian_toy", "mumu_afb_samples"]


@dataclasses.dataclass(frozen=True)
class ToySample:
    """A paired toy sample (one row per event, real events first, then fakes).

    Attributes:
      gen: [N, D] particle-level values (NaN for fakes).
      reco: [N, D] detector-level values (NaN for events failing reconstruction).
      pass_gen: [N] bool, the event exists at particle level (False for fakes).
      pass_reco: [N] bool, the event is reconstructed.
    """

    gen: np.ndarray
    reco: np.ndarray
    pass_gen: np.ndarray
    pass_reco: np.ndarray

    @property
    def observed(self) -> np.ndarray:
        """[N_reco, D] detector-level values of the reconstructed events (what data shows)."""
        return self.reco[self.pass_reco]

    @property
    def truth(self) -> np.ndarray:
        """[N_gen, D] particle-level values of the events that exist at particle level."""
        return self.gen[self.pass_gen]


def gaussian_toy(
    seed: Any,
    n: int,
    mean: Any = 0.0,
    cov: Any = 1.0,
    *,
    smearing: float = 0.5,
    efficiency: float = 0.9,
    fake_fraction: float = 0.1,
    fake_mean: Any = 0.0,
    fake_std: float = 1.5,
) -> ToySample:
    """Multivariate Gaussian truth, Gaussian smearing, random inefficiency, Gaussian fakes.

    Args:
      seed: numpy seed (int or sequence).
      n: particle-level events (≥ 1).
      mean: [D] truth mean (scalar → D = 1).
      cov: [D, D] truth covariance, or a scalar variance, or [D] variances.
      smearing: detector resolution σ per dimension (reco = gen + N(0, σ²)).
      efficiency: probability that a particle-level event is reconstructed, in (0, 1].
      fake_fraction: fraction of reconstructed events that are fakes, in [0, 1).
      fake_mean, fake_std: the fakes' detector-level distribution N(fake_mean, fake_std²) per dim.

    Returns:
      :class:`ToySample` with n + round(f·ε·n/(1−f)) rows.
    """
    if not (isinstance(n, int | np.integer) and n >= 1):
        raise ValueError(f"gaussian_toy: n must be an integer >= 1, got {n!r}")
    if not 0 < efficiency <= 1:
        raise ValueError(f"gaussian_toy: efficiency must be in (0, 1], got {efficiency!r}")
    if not 0 <= fake_fraction < 1:
        raise ValueError(f"gaussian_toy: fake_fraction must be in [0, 1), got {fake_fraction!r}")
    if not smearing >= 0:
        raise ValueError(f"gaussian_toy: smearing must be >= 0, got {smearing!r}")
    mean = np.atleast_1d(np.asarray(mean, dtype=float))
    d = mean.shape[0]
    cov = np.asarray(cov, dtype=float)
    cov = cov * np.eye(d) if cov.ndim == 0 else (np.diag(cov) if cov.ndim == 1 else cov)
    if cov.shape != (d, d):
        raise ValueError(f"gaussian_toy: cov must be [D, D] = [{d}, {d}], got {list(cov.shape)}")
    rng = np.random.default_rng(seed)
    gen = rng.multivariate_normal(mean, cov, size=n)
    reco = gen + smearing * rng.standard_normal((n, d))
    passed = rng.random(n) < efficiency
    n_fake = round(fake_fraction * efficiency * n / (1.0 - fake_fraction))
    fakes = np.asarray(fake_mean, dtype=float) + fake_std * rng.standard_normal((n_fake, d))
    gen_all = np.concatenate([gen, np.full((n_fake, d), np.nan)])
    reco_all = np.concatenate([np.where(passed[:, None], reco, np.nan), fakes])
    pass_gen = np.concatenate([np.ones(n, bool), np.zeros(n_fake, bool)])
    pass_reco = np.concatenate([passed, np.ones(n_fake, bool)])
    return ToySample(gen_all, reco_all, pass_gen, pass_reco)


def mumu_afb_samples(
    n: int, *, data_sin2_theta_w: float = 0.20, cos_max: float = 0.9, seed: int = 1
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """e⁺e⁻ → μ⁺μ⁻ at the Z pole through the LEP-like detector: MC and "data" for unfolding cos θ*.

    The MC is generated at the default sin²θ_W, the "data" at ``data_sin2_theta_w`` (which
    changes A_FB), both with ``diffgen.detector.paired`` so that each event carries its
    particle-level truth. The fiducial region is |cos θ*| < ``cos_max`` at both levels
    (inside the tracker acceptance |cos θ| < 0.95); reconstruction needs both muons.

    Args:
      n: events per sample (static).
      data_sin2_theta_w: sin²θ_W of the "data".
      cos_max: fiducial |cos θ*| bound.
      seed: MC uses key ``seed``, data ``seed + 1``.

    Returns:
      ``(mc, data)``: dicts of [n] arrays ``gen`` and ``reco`` (cos θ* of the μ⁻ in the
      Collins–Soper-like frame of :func:`diffgen.processes.observables.cos_theta_star`),
      ``weight`` (pb), ``pass_gen`` and ``pass_reco`` (bool).
    """
    import jax
    import jax.numpy as jnp

    from diffgen.detector import lep_like, paired
    from diffgen.processes import ee_to_ffbar
    from diffgen.processes.observables import cos_theta_star

    def fiducial(events):
        return jnp.abs(cos_theta_star(events)) < cos_max

    sampler = paired(
        ee_to_ffbar(flavour="mu", sqrt_s=91.1876),
        lep_like(mode="stochastic"),
        gen_selection=fiducial,
        reco_selection=lambda e: (e.multiplicity() == 2) & fiducial(e),
    )
    params = sampler.init(jax.random.key(0))
    src = params["source"]
    sin2 = jnp.asarray(data_sin2_theta_w, src["sin2_theta_w"].dtype)
    data_params = {**params, "source": {**src, "sin2_theta_w": sin2}}
    out = []
    for p, k in ((params, seed), (data_params, seed + 1)):
        pair = sampler.sample(p, jax.random.key(k), n)
        out.append(
            {
                "gen": np.asarray(cos_theta_star(pair.truth)),
                "reco": np.asarray(cos_theta_star(pair.reco)),
                "weight": np.asarray(pair.weight),
                "pass_gen": np.asarray(pair.pass_gen),
                "pass_reco": np.asarray(pair.pass_reco),
            }
        )
    return out[0], out[1]
