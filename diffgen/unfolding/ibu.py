"""Iterative Bayesian unfolding (D'Agostini), the binned baseline.

G. D'Agostini, Nucl. Instrum. Meth. A362 (1995) 487 (and arXiv:1010.0632 for the
iterated form). With the response ``R_ji = P(reco bin j | gen bin i)`` (columns sum to the
efficiency ``ε_i``), the MC fakes in reco bin j as a fraction ``φ_j`` of all reconstructed MC
(fakes are a background whose rate per reconstructed event is taken from simulation) and a
prior ``p_i``:

    d'_j      = max(d_j − φ_j · Σ_k d_k, 0)                         (fakes subtracted)
    P(i | j)  = R_ji p_i / Σ_k R_jk p_k                              (Bayes' theorem)
    n_i       = (1/ε_i) Σ_j P(i | j) d'_j                            (efficiency corrected)
    p_i       ← n_i / Σ_k n_k                                        (next prior)

Starting from the MC truth as prior, a few iterations regularise (fewer iterations: closer to
the prior). :func:`ibu` is pure ``jnp`` (differentiable with respect to counts, response and
prior); :func:`ibu_unfold` histograms unbinned data and propagates the data's statistical
uncertainty with Poisson bootstrap replicas.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diffgen.kinematics import safe_div
from diffgen.unfolding.classifier import check_weights

__all__ = ["Response", "IBUResult", "response_matrix", "ibu", "ibu_unfold", "histogram"]


@dataclasses.dataclass(frozen=True)
class Response:
    """A binned detector response estimated from paired MC.

    Attributes:
      gen_edges: [n_gen + 1] particle-level bin edges.
      reco_edges: [n_reco + 1] detector-level bin edges.
      matrix: [n_reco, n_gen] ``P(reco bin j | gen bin i)``; column sums are the efficiencies.
      efficiency: [n_gen] probability that a particle-level event in bin i is reconstructed.
      fake_fraction: [n_reco] MC fakes in reco bin j divided by all reconstructed MC weight
        (sums to the overall fake fraction).
      truth: [n_gen] MC particle-level histogram (weighted counts; the default prior).
      reco: [n_reco] MC detector-level histogram (reconstructed events, fakes included).
    """

    gen_edges: np.ndarray
    reco_edges: np.ndarray
    matrix: np.ndarray
    efficiency: np.ndarray
    fake_fraction: np.ndarray
    truth: np.ndarray
    reco: np.ndarray


@dataclasses.dataclass(frozen=True)
class IBUResult:
    """Output of :func:`ibu_unfold`.

    Attributes:
      counts: [n_gen] unfolded particle-level counts (efficiency-corrected, fakes removed).
      error: [n_gen] bootstrap standard deviation (NaN without replicas).
      covariance: [n_gen, n_gen] bootstrap covariance.
      replicas: [B, n_gen] bootstrap results.
      history: [iterations, n_gen] counts after each iteration (nominal).
      edges: [n_gen + 1] particle-level bin edges.
    """

    counts: np.ndarray
    error: np.ndarray
    covariance: np.ndarray
    replicas: np.ndarray
    history: np.ndarray
    edges: np.ndarray


def _edges(edges: Any, name: str) -> np.ndarray:
    e = np.asarray(edges, dtype=float)
    if e.ndim != 1 or e.shape[0] < 2:
        raise ValueError(f"{name}: expected at least 2 bin edges [n_bins + 1], got shape {list(e.shape)}")
    if not np.all(np.isfinite(e)) or not np.all(np.diff(e) > 0):
        raise ValueError(f"{name}: bin edges must be finite and strictly increasing")
    return e


def histogram(x: Any, edges: Any, weights: Any = None, *, overflow: bool = True) -> np.ndarray:
    """Weighted histogram; with ``overflow`` values outside the edges go to the edge bins.

    Args:
      x: [N] values (finite).
      edges: [n + 1] increasing bin edges.
      weights: [N] weights (default 1).
      overflow: fold under/overflow into the first/last bin (else drop them).

    Returns:
      [n] weighted counts.
    """
    e = _edges(edges, "edges")
    x = np.asarray(x, dtype=float)
    idx = _bin_index(x, e, overflow)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=float)
    ok = idx >= 0
    return np.bincount(idx[ok], weights=w[ok], minlength=e.shape[0] - 1).astype(float)


def _bin_index(x: np.ndarray, e: np.ndarray, overflow: bool) -> np.ndarray:
    n = e.shape[0] - 1
    idx = np.searchsorted(e, x, side="right") - 1
    if overflow:
        return np.clip(idx, 0, n - 1)
    return np.where((idx >= 0) & (idx < n), idx, -1)


def response_matrix(
    gen: Any,
    reco: Any,
    gen_edges: Any,
    reco_edges: Any,
    *,
    weights: Any = None,
    pass_gen: Any = None,
    pass_reco: Any = None,
    overflow: bool = True,
) -> Response:
    """Estimate the binned response from paired MC (one row per event).

    Args:
      gen: [N] particle-level values (ignored where ``pass_gen`` is False).
      reco: [N] detector-level values (ignored where ``pass_reco`` is False).
      gen_edges, reco_edges: bin edges.
      weights: [N] MC weights (default 1; may be negative).
      pass_gen, pass_reco: [N] bool flags (default all True).
      overflow: fold values outside the edges into the edge bins (else such events count as
        failing that level).

    Returns:
      :class:`Response`.
    """
    ge, re_ = _edges(gen_edges, "gen_edges"), _edges(reco_edges, "reco_edges")
    gen = np.asarray(gen, dtype=float).reshape(-1)
    reco = np.asarray(reco, dtype=float).reshape(-1)
    n = gen.shape[0]
    if reco.shape[0] != n:
        raise ValueError(f"response_matrix: gen and reco need the same length, got {n} and {reco.shape[0]}")
    if n == 0:
        raise ValueError("response_matrix: gen is empty")
    w = np.ones(n) if weights is None else check_weights(weights, n, "weights")
    pg = np.ones(n, bool) if pass_gen is None else np.asarray(pass_gen, dtype=bool)
    pr = np.ones(n, bool) if pass_reco is None else np.asarray(pass_reco, dtype=bool)
    if pg.shape != (n,) or pr.shape != (n,):
        raise ValueError(f"response_matrix: pass_gen and pass_reco must have shape [N] = [{n}]")
    if not np.isfinite(gen[pg]).all():
        raise ValueError("response_matrix: gen has NaN/inf values for pass_gen events")
    if not np.isfinite(reco[pr]).all():
        raise ValueError("response_matrix: reco has NaN/inf values for pass_reco events")
    ig = np.where(pg, _bin_index(np.where(pg, gen, 0.0), ge, overflow), -1)
    ir = np.where(pr, _bin_index(np.where(pr, reco, 0.0), re_, overflow), -1)
    n_gen, n_reco = ge.shape[0] - 1, re_.shape[0] - 1
    truth = np.bincount(ig[ig >= 0], weights=w[ig >= 0], minlength=n_gen)
    both = (ig >= 0) & (ir >= 0)
    joint = np.zeros((n_reco, n_gen))
    np.add.at(joint, (ir[both], ig[both]), w[both])
    fake = (ir >= 0) & (ig < 0)
    fakes = np.bincount(ir[fake], weights=w[fake], minlength=n_reco)
    reco_h = np.bincount(ir[ir >= 0], weights=w[ir >= 0], minlength=n_reco)
    matrix = np.divide(joint, truth[None, :], out=np.zeros_like(joint), where=truth[None, :] != 0)
    eff = matrix.sum(axis=0)
    total = reco_h.sum()
    phi = fakes / total if total != 0 else np.zeros_like(fakes)
    return Response(ge, re_, matrix, eff, phi, truth, reco_h)


def ibu(counts: Any, response: Response, *, iterations: int = 4, prior: Any = None) -> tuple[jax.Array, jax.Array]:
    """D'Agostini iterations on a histogram (pure ``jnp``, differentiable).

    Args:
      counts: [n_reco] observed (weighted) counts.
      response: :class:`Response`.
      iterations: number of iterations (≥ 1).
      prior: [n_gen] starting prior (default the MC truth histogram).

    Returns:
      ``(unfolded counts [n_gen], history [iterations, n_gen])``.
    """
    if not (isinstance(iterations, int) and iterations >= 1):
        raise ValueError(f"ibu: iterations must be an integer >= 1, got {iterations!r}")
    d = jnp.asarray(counts)
    dtype = d.dtype if jnp.issubdtype(d.dtype, jnp.floating) else jnp.result_type(float)
    d = d.astype(dtype)
    n_reco, n_gen = response.matrix.shape
    if d.shape != (n_reco,):
        raise ValueError(f"ibu: counts must have shape [n_reco] = [{n_reco}], got {list(d.shape)}")
    r = jnp.asarray(response.matrix, dtype)
    eff = jnp.asarray(response.efficiency, dtype)
    p0 = jnp.asarray(response.truth if prior is None else prior, dtype)
    if p0.shape != (n_gen,):
        raise ValueError(f"ibu: prior must have shape [n_gen] = [{n_gen}], got {list(p0.shape)}")
    d_true = jnp.maximum(d - jnp.asarray(response.fake_fraction, dtype) * jnp.sum(d), 0.0)

    def step(p, _):
        p = safe_div(p, jnp.sum(p))
        folded = r @ p  # [n_reco]
        post = safe_div(r * p[None, :], folded[:, None])  # P(i | j) [n_reco, n_gen]
        n = safe_div(jnp.sum(post * d_true[:, None], axis=0), eff)
        return n, n

    final, hist = jax.lax.scan(step, p0, None, length=iterations)
    return final, hist


def ibu_unfold(
    data: Any,
    response: Response,
    *,
    weights: Any = None,
    iterations: int = 4,
    prior: Any = None,
    n_bootstrap: int = 50,
    seed: Any = 0,
    overflow: bool = True,
) -> IBUResult:
    """Unfold unbinned detector-level data with IBU; bootstrap the data for the errors.

    Args:
      data: [N] detector-level data values (finite).
      response: :class:`Response` from :func:`response_matrix`.
      weights: [N] data weights (default 1).
      iterations: D'Agostini iterations.
      prior: [n_gen] prior (default MC truth).
      n_bootstrap: Poisson bootstrap replicas of the data (0 or ≥ 2).
      seed: numpy seed of the replicas.
      overflow: fold values outside the reco edges into the edge bins.

    Returns:
      :class:`IBUResult`.
    """
    x = np.asarray(data, dtype=float).reshape(-1)
    if x.shape[0] == 0:
        raise ValueError("ibu_unfold: data is empty")
    if not np.isfinite(x).all():
        raise ValueError(f"ibu_unfold: data has {int((~np.isfinite(x)).sum())} NaN/inf values")
    if not (isinstance(n_bootstrap, int) and (n_bootstrap == 0 or n_bootstrap >= 2)):
        raise ValueError(f"ibu_unfold: n_bootstrap must be 0 or an integer >= 2, got {n_bootstrap!r}")
    w = np.ones_like(x) if weights is None else check_weights(weights, x.shape[0], "weights")
    counts = histogram(x, response.reco_edges, w, overflow=overflow)
    nominal, hist = ibu(counts, response, iterations=iterations, prior=prior)
    n_gen = response.truth.shape[0]
    if n_bootstrap:
        rng = np.random.default_rng(seed)
        ir = _bin_index(x, response.reco_edges, overflow)
        ok = ir >= 0
        boot = rng.poisson(1.0, size=(n_bootstrap, x.shape[0])) * w[None, :]
        reps_counts = np.stack([np.bincount(ir[ok], weights=b[ok], minlength=response.reco.shape[0]) for b in boot])
        reps = np.asarray(
            jax.vmap(lambda c: ibu(c, response, iterations=iterations, prior=prior)[0])(jnp.asarray(reps_counts))
        )
        cov = np.cov(reps, rowvar=False)
        err = np.sqrt(np.diag(cov))
    else:
        reps = np.zeros((0, n_gen))
        cov = np.full((n_gen, n_gen), np.nan)
        err = np.full(n_gen, np.nan)
    return IBUResult(np.asarray(nominal), err, cov, reps, np.asarray(hist), response.gen_edges)
