"""Parton-level inputs and reference cluster samples for tests, training and benchmarks.

:func:`parton_chains` builds colour-connected q g … g q̄ events with exact momentum
conservation (massless RAMBO momenta from :func:`diffgen.phasespace.rambo`), independent of the
shower. :func:`reference_clusters` turns them into clusters, the training conditions of the
learned decay models.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from diffgen import phasespace
from diffgen.core import Events
from diffgen.hadronization.formation import Clusters, form_clusters
from diffgen.typing import Key

__all__ = ["parton_chains", "reference_clusters", "flatten_clusters"]


def parton_chains(
    key: Key,
    n_events: int,
    *,
    n_gluons: int = 3,
    sqrt_s: float = 91.2,
    flavours: str = "udscb",
    capacity: int | None = None,
    dtype=None,
) -> Events:
    """Colour-connected q g₁ … g_n q̄ events with momentum conservation.

    Colour tags follow the LHE convention: q (501, 0), g_i (502 + i − 1 … ) so that each
    gluon's anticolour is its left neighbour's colour, q̄ (0, 501 + n).

    Args:
      key: PRNG key.
      n_events: static N.
      n_gluons: static number of gluons per event.
      sqrt_s: centre-of-mass energy (GeV).
      flavours: quark flavours drawn uniformly (subset of "dusc b" letters).
      capacity: particle capacity (default n_gluons + 2).
      dtype: floating dtype (default: JAX's default float).

    Returns:
      ``Events`` with pid (q, g…, q̄) and colour set.
    """
    codes = {"d": 1, "u": 2, "s": 3, "c": 4, "b": 5}
    if not flavours or any(f not in codes for f in flavours):
        raise ValueError(f"parton_chains: flavours must be letters from 'dusbc', got {flavours!r}")
    n = n_gluons + 2
    dtype = jnp.asarray(0.0).dtype if dtype is None else dtype
    k_p, k_f = jax.random.split(key)
    # minval > 0: RAMBO takes log(u₃u₄) for the energies
    u = jax.random.uniform(k_p, (n_events, 4 * n), dtype=dtype, minval=1e-12, maxval=1.0)
    p, _ = phasespace.rambo(u, jnp.asarray(sqrt_s, dtype))
    choice = jnp.asarray(np.array([codes[f] for f in flavours], np.int32))
    fl = choice[jax.random.randint(k_f, (n_events,), 0, len(flavours))]
    pid = jnp.concatenate([fl[:, None], jnp.full((n_events, n_gluons), 21, jnp.int32), -fl[:, None]], axis=1).astype(
        jnp.int32
    )
    tags = 501 + np.arange(n)
    col = np.zeros((n, 2), np.int32)
    col[:-1, 0] = tags[:-1]
    col[1:, 1] = tags[:-1]
    colour = jnp.broadcast_to(jnp.asarray(col), (n_events, n, 2))
    ev = Events(p=p, weight=jnp.ones(n_events, dtype), mask=jnp.ones((n_events, n), bool), pid=pid, colour=colour)
    return ev.pad_to(capacity) if capacity is not None else ev


def flatten_clusters(clusters: Clusters) -> dict[str, np.ndarray]:
    """The real clusters of a batch as flat host arrays: ``p``, ``p_q``, ``flav_q``, ``flav_qbar`` ([M, …])."""
    mask = np.asarray(clusters.mask)
    return {
        "p": np.asarray(clusters.p)[mask],
        "p_q": np.asarray(clusters.p_q)[mask],
        "p_qbar": np.asarray(clusters.p_qbar)[mask],
        "flav_q": np.asarray(clusters.flav_q)[mask],
        "flav_qbar": np.asarray(clusters.flav_qbar)[mask],
    }


def reference_clusters(
    key: Key, n_clusters: int, *, sqrt_s: float = 30.0, n_gluons: int = 4, dtype=None, min_mass: float = 1.2
) -> Clusters:
    """Reference clusters from hadronizing q g⁴ q̄ chains, one cluster per row.

    Clusters above the two-hadron threshold are kept (``min_mass`` GeV, above every light
    two-pseudoscalar threshold), so the sample is a valid input of :func:`decay_clusters`
    with ``on_threshold="error"``.

    Args:
      key: PRNG key.
      n_clusters: number of clusters wanted (static).
      sqrt_s: energy of the generating chains (GeV).
      n_gluons: gluons per chain.
      dtype: floating dtype (default: JAX's default float, float64 with x64 enabled).
      min_mass: lower cut on the cluster mass (GeV).

    Returns:
      ``Clusters`` of shape [n_clusters, 1].
    """
    dtype = jnp.asarray(0.0).dtype if dtype is None else dtype
    params = {"cl_max": jnp.asarray(3.35, dtype), "gamma_s": jnp.asarray(0.6, dtype)}
    out: list[dict[str, np.ndarray]] = []
    have = 0
    i = 0
    while have < n_clusters:
        kk = jax.random.fold_in(key, i)
        k1, k2 = jax.random.split(kk)
        n_ev = 256  # fixed, so the jitted cluster formation compiles once
        ev = parton_chains(k1, n_ev, n_gluons=n_gluons, sqrt_s=sqrt_s, flavours="uds", dtype=dtype)
        cl, _ = _form_jit(params, k2, ev)
        flat = flatten_clusters(cl)
        light_ok = np.asarray(_mass_np(flat["p"])) > min_mass
        flat = {k: v[light_ok] for k, v in flat.items()}
        out.append(flat)
        have += len(flat["p"])
        i += 1
    cat = {k: np.concatenate([o[k] for o in out])[:n_clusters] for k in out[0]}
    return Clusters(
        p_q=jnp.asarray(cat["p_q"])[:, None],
        p_qbar=jnp.asarray(cat["p_qbar"])[:, None],
        flav_q=jnp.asarray(cat["flav_q"], jnp.int32)[:, None],
        flav_qbar=jnp.asarray(cat["flav_qbar"], jnp.int32)[:, None],
        mask=jnp.ones((n_clusters, 1), bool),
    )


def _mass_np(p: np.ndarray) -> np.ndarray:
    m2 = p[:, 0] ** 2 - np.sum(p[:, 1:] ** 2, axis=-1)
    return np.sqrt(np.maximum(m2, 0.0))


_form_jit = jax.jit(lambda params, key, ev: form_clusters(params, key, ev))
