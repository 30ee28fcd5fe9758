"""The ``hadronize`` layer: cluster formation + cluster decay + unstable-hadron decays."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from diffgen.core import Events, Layer
from diffgen.hadronization.decay import AngleModel, decay_clusters, decay_unstable, reference_angles
from diffgen.hadronization.formation import form_clusters
from diffgen.typing import Key, Params

__all__ = ["hadronize", "DEFAULT_PARAMS"]

#: Default physics parameters: cl_max (GeV, Herwig 7 ClMaxLight), γ_s (strange-pair weight),
#: p_vector (probability of a vector meson per hadron; 0.75 = spin counting 3 : 1).
DEFAULT_PARAMS = {"cl_max": 3.35, "gamma_s": 0.6, "p_vector": 0.75}


def hadronize(
    decay: str | AngleModel = "reference",
    *,
    max_clusters: int | None = None,
    capacity: int | None = None,
    n_fission_rounds: int = 4,
    decay_unstable_hadrons: bool = True,
    n_decay_rounds: int = 8,
) -> Layer:
    """Cluster hadronization of showered partons (a ``Layer`` to put after the shower).

    ``chain(ee_to_qqbar(), ("shower", final_state_shower()), ("hadronization", hadronize()))``.

    Args:
      decay: ``"reference"`` (smeared angles), ``"isotropic"``, or an :class:`AngleModel`
        (e.g. :func:`diffgen.hadronization.learned.angle_model` of a trained checkpoint).
      max_clusters: static cluster capacity K (default 2 × parton capacity P).
      capacity: static hadron capacity per event (default 6 K).
      n_fission_rounds: static number of cluster-fission rounds.
      decay_unstable_hadrons: decay ρ, η, K*, K⁰, D, B … (and π⁰ → γγ).
      n_decay_rounds: static number of unstable-decay rounds.

    Returns:
      ``Layer`` with params ``{"cl_max", "gamma_s", "p_vector", "decay": {...}}``; the output
      Events hold hadrons (``colour`` None), the input's weights, and the input's ``extra``
      plus ``hadronization_logp`` [N] (log-probability of the discrete flavour/multiplet
      choices, for score-function gradients in γ_s and p_vector), ``n_clusters`` [N] int32,
      ``n_single_hadron_clusters`` [N] int32, and the flags [N] bool ``cluster_overflow``,
      ``hadron_overflow``, ``colour_unmatched``, ``reshuffle_failed``.
    """
    if isinstance(decay, str):
        if decay not in ("reference", "isotropic"):
            raise ValueError(f"hadronize: decay must be 'reference', 'isotropic' or an AngleModel, got {decay!r}")
        model = reference_angles(isotropic=decay == "isotropic")
    elif isinstance(decay, AngleModel):
        model = decay
    else:
        raise TypeError(f"hadronize: decay must be a string or an AngleModel, got {type(decay).__name__}")
    for name, value, low in (("n_fission_rounds", n_fission_rounds, 0), ("n_decay_rounds", n_decay_rounds, 0)):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"hadronize: {name} must be an int >= {low}, got {value!r}")
    for name, value in (("max_clusters", max_clusters), ("capacity", capacity)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"hadronize: {name} must be a positive int or None, got {value!r}")

    def init(key: Key) -> Params:
        params = {k: jnp.asarray(v) for k, v in DEFAULT_PARAMS.items()}
        params["decay"] = model.init(key)
        return params

    def apply(params: Params, key: Key, events: Events) -> Events:
        k_form, k_dec, k_unst = jax.random.split(key, 3)
        k = 2 * events.capacity if max_clusters is None else max_clusters
        if k < events.capacity:
            raise ValueError(f"hadronize: max_clusters must be >= the parton capacity {events.capacity}, got {k}")
        cap = 6 * k if capacity is None else capacity
        if cap < 2 * k:
            raise ValueError(f"hadronize: capacity must be >= 2 × max_clusters = {2 * k}, got {cap}")
        clusters, finfo = form_clusters(params, k_form, events, max_clusters=k, n_fission_rounds=n_fission_rounds)
        p, pid, mask, dinfo = decay_clusters(params, k_dec, clusters, model, on_threshold="reshuffle")
        pad = cap - p.shape[1]
        p = jnp.pad(p, ((0, 0), (0, pad), (0, 0)))
        pid = jnp.pad(pid, ((0, 0), (0, pad)))
        mask = jnp.pad(mask, ((0, 0), (0, pad)))
        if decay_unstable_hadrons:
            p, pid, mask, overflow = decay_unstable(k_unst, p, pid, mask, n_rounds=n_decay_rounds)
        else:
            overflow = jnp.zeros(mask.shape[:1], bool)
        p = jnp.where(mask[..., None], p, 0.0)
        pid = jnp.where(mask, pid, 0).astype(jnp.int32)
        extra = dict(events.extra)
        extra.update(
            hadronization_logp=finfo["logp"] + dinfo["logp"],
            n_clusters=clusters.multiplicity(),
            n_single_hadron_clusters=dinfo["n_single"],
            cluster_overflow=finfo["overflow"],
            hadron_overflow=overflow,
            colour_unmatched=finfo["colour_unmatched"],
            reshuffle_failed=dinfo["reshuffle_failed"],
        )
        return Events(p=p, weight=events.weight, mask=mask, pid=pid, colour=None, extra=extra)

    return Layer(init=init, apply=apply)
