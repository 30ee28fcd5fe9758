"""The ``hadronize`` layer: cluster formation + cluster decay + unstable-hadron decays."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from diffgen.core import Events, Layer
from diffgen.hadronization.decay import AngleModel, decay_clusters, decay_unstable, reference_angles
from diffgen.hadronization.formation import DEFAULT_MAX_CLUSTERS, form_clusters
from diffgen.typing import Key, Params

__all__ = ["DEFAULT_PARAMS", "HISTORY_KEYS", "HISTORY_PREFIX", "capacities", "hadronize"]

#: Default physics parameters: cl_max (GeV, Herwig 7 ClMaxLight), γ_s (strange-pair weight),
#: p_vector (probability of a vector meson per hadron; 0.75 = spin counting 3 : 1).
DEFAULT_PARAMS = {"cl_max": 3.35, "gamma_s": 0.6, "p_vector": 0.75}

#: Slots beyond the 2K primary-hadron slots in which the unstable decays run before the
#: all-capacity fallback (see ``decay_unstable(working_capacity=...)``).
WORKING_SLOTS = 64

#: Cluster slots on which the fission and the cluster decays of an event run when its clusters
#: fit into them (``form_clusters(working_clusters=...)``, ``decay_clusters(working_clusters=...)``;
#: the few other events use all K). At 91.2 GeV
#: an event has 7.0 clusters on average and more than 16 in 0.2 % of the events
#: (``benchmarks.hadronization_capacity``, 2·10⁵ events).
WORKING_CLUSTERS = 16

#: Prefix of the cluster-history keys written with ``hadronize(record_history=True)``.
HISTORY_PREFIX = "hadronization_history/"

#: The ``Events.extra`` keys of the cluster history (see :func:`hadronize`).
HISTORY_KEYS = tuple(
    HISTORY_PREFIX + name
    for name in (
        "parton_p_q",
        "parton_p_qbar",
        "parton_flavour",
        "cluster_q",
        "cluster_qbar",
        "fission_target",
        "cluster_p_formed",
        "cluster_p",
        "cluster_mask",
        "hadron_cluster",
        "hadron_parent",
        "decayed_p",
        "decayed_pid",
        "decayed_parent",
        "decayed_cluster",
        "decayed_mask",
        "record_overflow",
    )
)


def capacities(parton_capacity: int, max_clusters: int | None = None, capacity: int | None = None):
    """The static capacities of :func:`hadronize` for events of ``parton_capacity`` slots.

    The number of clusters after fission grows with the energy, not with the parton slots:
    at 91.2 GeV with the default shower (P = 24) one event of 10⁶ needed more than 24
    clusters (``formation.DEFAULT_MAX_CLUSTERS``) and none had more than 109 hadrons after the
    decays (docs/hadronization.md, Performance), so the defaults K = max(P, 24) and
    C = 6K leave room at LEP energies; an event that does not fit is flagged
    (``cluster_overflow``, ``hadron_overflow``), never silently truncated. At higher energies
    pass a larger K.

    Args:
      parton_capacity: P, the slots of the input partons.
      max_clusters: K (at least P: a cluster per parton is the least that colour-singlet
        formation can need), or None for the default max(P, 24).
      capacity: C, or None for the default 6K.

    Returns:
      ``(K, C, W)``: W = min(C, 2K + :data:`WORKING_SLOTS`), the working slots of the unstable
      decays (they are repeated on all C slots only for a batch with an event that does not
      fit into W; the result is the same either way).

    Raises:
      ValueError: K < P or C < 2K.
    """
    k = max(parton_capacity, DEFAULT_MAX_CLUSTERS) if max_clusters is None else max_clusters
    if k < parton_capacity:
        raise ValueError(f"hadronize: max_clusters must be >= the parton capacity {parton_capacity}, got {k}")
    cap = 6 * k if capacity is None else capacity
    if cap < 2 * k:
        raise ValueError(f"hadronize: capacity must be >= 2 × max_clusters = {2 * k}, got {cap}")
    return k, cap, min(cap, 2 * k + WORKING_SLOTS)


def hadronize(
    decay: str | AngleModel = "reference",
    *,
    max_clusters: int | None = None,
    capacity: int | None = None,
    n_fission_rounds: int = 8,
    decay_unstable_hadrons: bool = True,
    n_decay_rounds: int = 8,
    record_history: bool = False,
) -> Layer:
    """Cluster hadronization of showered partons (a ``Layer`` to put after the shower).

    ``chain(ee_to_qqbar(), ("shower", final_state_shower()), ("hadronization", hadronize()))``.

    Args:
      decay: ``"reference"`` (smeared angles), ``"isotropic"``, or an :class:`AngleModel`
        (e.g. :func:`diffgen.hadronization.learned.angle_model` of a trained checkpoint).
      max_clusters: static cluster capacity K ≥ P (default max(P, 24), see :func:`capacities`).
      capacity: static hadron capacity per event (default 6 K).
      n_fission_rounds: static number of cluster-fission rounds.
      decay_unstable_hadrons: decay ρ, η, K*, K⁰, D, B … (and π⁰ → γγ).
      n_decay_rounds: static number of unstable-decay rounds.
      record_history: also write the cluster history (static, default off; the hadrons are
        the same either way), e.g. for HepMC3 output (:mod:`diffgen.io.hepmc`). With P the
        parton capacity, K the cluster capacity, R = ``n_fission_rounds``, C the hadron
        capacity and U = C the size of the record of decayed hadrons (far more than the
        decays of an event at LEP energies; an overflow is flagged), the ``extra`` keys
        ``hadronization_history/…`` are (indices −1 and zeros in padding; momenta
        (E, px, py, pz) GeV; held out of gradients):

        ====================  =============  ===================================================
        ``parton_p_q``        float [N,P,4]  quark end of every input parton: the quark itself
                                             or, for a gluon, the q of its non-perturbative
                                             splitting g → q q̄ (zero for antiquarks)
        ``parton_p_qbar``     float [N,P,4]  antiquark end (the antiquark, or the gluon's q̄)
        ``parton_flavour``    int32 [N,P]    flavour 1..3 of a gluon's q q̄ pair (0 otherwise)
        ``cluster_q``         int32 [N,K]    parton slot whose quark end formed cluster k
                                             (−1 for clusters made by fission)
        ``cluster_qbar``      int32 [N,K]    parton slot whose antiquark end formed cluster k
        ``fission_target``    int32 [N,R,K]  slot of the second child when cluster k splits
                                             in fission round r (the first keeps slot k)
        ``cluster_p_formed``  float [N,K,4]  cluster momenta after fission
        ``cluster_p``         float [N,K,4]  cluster momenta that decay, after the
                                             reshuffling of the threshold rule
        ``cluster_mask``      bool [N,K]     real clusters (after fission)
        ``hadron_cluster``    int32 [N,C]    cluster of every output hadron
        ``hadron_parent``     int32 [N,C]    row of ``decayed_*`` of the unstable hadron whose
                                             decay made the hadron (−1: a primary hadron)
        ``decayed_p``         float [N,U,4]  unstable hadrons that decayed (before the decay)
        ``decayed_pid``       int32 [N,U]    their PDG ids
        ``decayed_parent``    int32 [N,U]    row of their own decayed parent (−1: primary)
        ``decayed_cluster``   int32 [N,U]    their cluster
        ``decayed_mask``      bool [N,U]     real rows
        ``record_overflow``   bool [N]       more than U decays; the record is incomplete
        ====================  =============  ===================================================

    Returns:
      ``Layer`` with params ``{"cl_max", "gamma_s", "p_vector", "decay": {...}}``; the output
      Events hold hadrons (``colour`` None), the input's weights, and the input's ``extra``
      plus ``hadronization_logp`` [N] (log-probability of the discrete flavour/multiplet
      choices, for score-function gradients in γ_s and p_vector), ``n_clusters`` [N] int32,
      ``n_single_hadron_clusters`` [N] int32, and the flags [N] bool ``cluster_overflow``,
      ``hadron_overflow``, ``colour_unmatched``, ``reshuffle_failed``, ``fission_unfinished`` (a
      cluster is still above the fission threshold after ``n_fission_rounds`` rounds).
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
    if not isinstance(record_history, bool):
        raise TypeError(f"hadronize: record_history must be a bool, got {type(record_history).__name__}")
    for name, value in (("max_clusters", max_clusters), ("capacity", capacity)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"hadronize: {name} must be a positive int or None, got {value!r}")

    def init(key: Key) -> Params:
        params = {k: jnp.asarray(v) for k, v in DEFAULT_PARAMS.items()}
        params["decay"] = model.init(key)
        return params

    def apply(params: Params, key: Key, events: Events) -> Events:
        k_form, k_dec, k_unst = jax.random.split(key, 3)
        k, cap, width = capacities(events.capacity, max_clusters, capacity)
        clusters, finfo = form_clusters(
            params,
            k_form,
            events,
            max_clusters=k,
            n_fission_rounds=n_fission_rounds,
            record_history=record_history,
            working_clusters=min(WORKING_CLUSTERS, k),
        )
        p, pid, mask, dinfo = decay_clusters(
            params,
            k_dec,
            clusters,
            model,
            on_threshold="reshuffle",
            record_history=record_history,
            working_clusters=min(WORKING_CLUSTERS, k),
        )
        history = {}
        if record_history:
            # Primary hadron slots 2k, 2k + 1 belong to cluster k (decay_clusters).
            primary = jnp.arange(p.shape[1], dtype=jnp.int32) // 2
            labels = jnp.where(mask, primary[None, :], -1)
            history = {name: finfo["history"][name] for name in ("parton_p_q", "parton_p_qbar", "parton_flavour")}
            history.update({name: finfo["history"][name] for name in ("cluster_q", "cluster_qbar", "fission_target")})
            history.update(
                cluster_p_formed=jax.lax.stop_gradient(clusters.p),
                cluster_p=dinfo["cluster_p"],
                cluster_mask=clusters.mask,
            )
        if decay_unstable_hadrons and record_history:
            p, pid, mask, overflow, hist = decay_unstable(
                k_unst,
                p,
                pid,
                mask,
                n_rounds=n_decay_rounds,
                history_labels=labels,
                history_capacity=cap,
                working_capacity=width,
                capacity=cap,
            )
            history.update(
                hadron_cluster=hist["label"],
                hadron_parent=hist["parent"],
                decayed_cluster=hist["decayed_label"],
                **{name: hist[name] for name in ("decayed_p", "decayed_pid", "decayed_parent", "decayed_mask")},
                record_overflow=hist["record_overflow"],
            )
        elif decay_unstable_hadrons:
            p, pid, mask, overflow = decay_unstable(
                k_unst, p, pid, mask, n_rounds=n_decay_rounds, working_capacity=width, capacity=cap
            )
        else:
            overflow = jnp.zeros(mask.shape[:1], bool)
            pad = cap - p.shape[1]
            # decay_unstable leaves zeros in the empty slots; here the primary hadrons are masked.
            p = jnp.pad(jnp.where(mask[..., None], p, 0.0), ((0, 0), (0, pad), (0, 0)))
            pid = jnp.pad(jnp.where(mask, pid, 0), ((0, 0), (0, pad)))
            mask = jnp.pad(mask, ((0, 0), (0, pad)))
            if record_history:
                n = mask.shape[0]
                history.update(
                    hadron_cluster=jnp.pad(labels, ((0, 0), (0, pad)), constant_values=-1),
                    hadron_parent=jnp.full(mask.shape, -1, jnp.int32),
                    decayed_p=jnp.zeros((n, 1, 4), p.dtype),
                    decayed_pid=jnp.zeros((n, 1), jnp.int32),
                    decayed_parent=jnp.full((n, 1), -1, jnp.int32),
                    decayed_cluster=jnp.full((n, 1), -1, jnp.int32),
                    decayed_mask=jnp.zeros((n, 1), bool),
                    record_overflow=jnp.zeros((n,), bool),
                )
        extra = dict(events.extra)
        extra.update(
            hadronization_logp=finfo["logp"] + dinfo["logp"],
            n_clusters=clusters.multiplicity(),
            n_single_hadron_clusters=dinfo["n_single"],
            cluster_overflow=finfo["overflow"],
            hadron_overflow=overflow,
            colour_unmatched=finfo["colour_unmatched"],
            fission_unfinished=finfo["fission_unfinished"],
            reshuffle_failed=dinfo["reshuffle_failed"],
            **{HISTORY_PREFIX + name: value for name, value in history.items()},
        )
        return Events(p=p, weight=events.weight, mask=mask, pid=pid, colour=None, extra=extra)

    return Layer(init=init, apply=apply)
