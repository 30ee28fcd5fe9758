"""The shower as a ``Layer`` and the exact αs reweighting of showered events."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero

from diffgen import kinematics as kin
from diffgen.core import Events, Layer, is_traced
from diffgen.kinematics import safe_log
from diffgen.shower.alphas import MZ, alpha_s
from diffgen.shower.dipole import (
    BOUNDARY_FIELDS,
    EMISSION_FIELDS,
    HISTORY_FIELDS,
    TRIAL_UNIFORMS,
    _emission,
    _step,
    _trial,
    initial_state,
    shower_one_event,
    trial_uniforms,
)
from diffgen.typing import Array, Key, Params
from diffgen.xla_ops import prefix_sum

__all__ = [
    "BOUNDARY_KEYS",
    "DEFAULT_CAPACITY",
    "EXTRA_KEYS",
    "HISTORY_KEYS",
    "HISTORY_PREFIX",
    "boundary_events",
    "boundary_term",
    "final_state_shower",
    "reweight",
    "score_function_term",
]

#: Default particle capacity: at √s = 91.2 GeV, αs(m_Z) = 0.118, t0 = 1 GeV², two-loop
#: running, more than 99.9 % of events fit (see docs/shower.md for the measured tail).
DEFAULT_CAPACITY = 24

#: The ``Events.extra`` keys written by :func:`final_state_shower` (per event).
EXTRA_KEYS = (
    "shower_overflow",
    "shower_n_emissions",
    "shower_n_trials",
    "shower_log_prob",
    "shower_score_alpha_s",
    "shower_alpha_s_mz",
    "shower_alpha_s_order",
    "shower_trial_t",
    "shower_trial_r",
    "shower_trial_accepted",
    "shower_record_overflow",
)

#: Prefix of the emission-record keys written with ``final_state_shower(record_history=True)``.
HISTORY_PREFIX = "shower_history/"

#: The ``Events.extra`` keys of the emission record (``record_history=True``; see the table in
#: :func:`final_state_shower`).
HISTORY_KEYS = tuple(HISTORY_PREFIX + name for name in ("p_start", *HISTORY_FIELDS))

#: The ``Events.extra`` keys of the cut-off boundary record (``boundary_trials=B``), in the
#: order of ``diffgen.shower.dipole.BOUNDARY_FIELDS`` (see :func:`final_state_shower`).
BOUNDARY_KEYS = (
    "shower_boundary_u",
    "shower_boundary_r",
    "shower_boundary_n",
    "shower_boundary_p_before",
    "shower_boundary_pid_before",
    "shower_boundary_colour_before",
    "shower_boundary_p_after",
    "shower_boundary_pid_after",
    "shower_boundary_colour_after",
)

_QUARKS = (1, 2, 3, 4, 5)


def _check_input(events: Events, capacity: int) -> None:
    if not isinstance(events, Events):
        raise TypeError(f"final_state_shower: events must be Events, got {type(events).__name__}")
    if events.colour is None:
        raise ValueError("final_state_shower: events need colour tags (Events.colour [N, P, 2]) for the q q̄ dipole")
    if events.capacity > capacity:
        raise ValueError(
            f"final_state_shower: input capacity {events.capacity} exceeds the shower capacity {capacity}; "
            f"use capacity >= {events.capacity} (and enough room for emissions)"
        )
    if events.capacity < 2:
        raise ValueError(
            f"final_state_shower: events need at least 2 particle slots (a q q̄ pair), got {events.capacity}"
        )
    if is_traced(events.pid) or is_traced(events.colour) or is_traced(events.mask):
        return
    pid = np.asarray(events.pid)
    mask = np.asarray(events.mask)
    col = np.asarray(events.colour)
    partons = mask & (np.isin(np.abs(pid), _QUARKS) | (pid == 21))
    if np.any(mask & ~partons):
        bad = int(np.argwhere(np.any(mask & ~partons, axis=1))[0, 0])
        raise ValueError(
            f"final_state_shower: event {bad} contains non-partons (pid {sorted(set(pid[bad][mask[bad]].tolist()))}); "
            "allowed are quarks d..b (±1..±5) and gluons (21)"
        )
    n_q = np.sum(mask & (pid > 0) & (pid <= 5), axis=1)
    n_qb = np.sum(mask & (pid < 0) & (pid >= -5), axis=1)
    bad = np.flatnonzero((n_q < 1) | (n_qb < 1))
    if bad.size:
        raise ValueError(
            f"final_state_shower: event {int(bad[0])} has no q q̄ pair ({int(n_q[bad[0]])} quarks, "
            f"{int(n_qb[bad[0]])} antiquarks); the shower needs one colour-connected q q̄ pair per event"
        )
    # every colour tag must appear exactly once as colour and once as anti-colour
    for i in range(len(pid)):
        c = col[i][mask[i]]
        colours = sorted(c[:, 0][c[:, 0] != 0].tolist())
        anti = sorted(c[:, 1][c[:, 1] != 0].tolist())
        if colours != anti or len(set(colours)) != len(colours) or (np.any(c[pid[i][mask[i]] > 0, 0] == 0)):
            raise ValueError(
                f"final_state_shower: event {i} has an invalid colour flow {c.tolist()}; every colour tag "
                "(>= 501) must connect exactly one colour to one anti-colour"
            )
        if i >= 1023:  # a prefix is enough to catch a wrongly built source
            break


def _check_params(params: Mapping[str, Array]) -> None:
    for name in ("alpha_s_mz", "t0"):
        if name not in params:
            raise ValueError(f"final_state_shower: params lack {name!r}; expected keys ('alpha_s_mz', 't0')")
    a, t0 = params["alpha_s_mz"], params["t0"]
    if not is_traced(a) and not (0.0 < float(a) < 0.5):
        raise ValueError(f"final_state_shower: alpha_s_mz must lie in (0, 0.5), got {float(a)}")
    if not is_traced(t0) and not (float(t0) > 0.0 and np.isfinite(float(t0))):
        raise ValueError(f"final_state_shower: t0 must be a positive cut-off in GeV², got {float(t0)}")
    if not is_traced(a) and not is_traced(t0):
        amax = float(alpha_s(jnp.asarray(float(t0)), float(a), order=2))
        amax1 = float(alpha_s(jnp.asarray(float(t0)), float(a), order=1))
        # αs(t0) ≤ 1 keeps the running overestimate above the two-loop coupling (dipole.py)
        if not (0.0 < amax <= 1.0 and 0.0 < amax1 <= 1.0):
            raise ValueError(
                f"final_state_shower: αs(t0) must lie in (0, 1] (perturbative cut-off), got "
                f"αs(t0) = {amax:.3g} (two loops) for t0 = {float(t0)} GeV² and alpha_s_mz = {float(a)}; "
                "raise t0 (default 1 GeV²)"
            )


def final_state_shower(
    capacity: int = DEFAULT_CAPACITY,
    *,
    alpha_s_order: int = 2,
    max_records: int | None = None,
    max_trials: int | None = None,
    record_history: bool = False,
    boundary_trials: int = 0,
) -> Layer:
    """Catani–Seymour dipole final-state shower in leading colour (arXiv:1411.4085) as a ``Layer``.

    Params: ``{"alpha_s_mz": αs(m_Z) (default 0.118), "t0": cut-off in GeV² (default 1)}``.

    ``apply(params, key, events)`` showers every event independently (a ``lax.while_loop``
    over veto trials per event, run on a fixed set of slots that are refilled with the next
    event when one finishes), starting at t = Q² (the event's invariant mass squared)
    and stopping at t0. Input events carry partons with LHE colour tags (at least one q q̄ pair,
    e.g. the output of ``diffgen.processes.ee_to_qqbar``); the output has ``capacity`` slots
    with the partons in slots ``0 … n−1`` (the input partons keep their slots), ``colour`` set
    along the leading-colour chain, the input weight unchanged and these ``extra`` keys:

    ============================  ==========  ====================================================
    ``shower_overflow``           bool [N]    capacity (or the trial bound) was reached; the event
                                              stopped showering early (still momentum-conserving)
    ``shower_n_emissions``        int32 [N]   accepted emissions
    ``shower_n_trials``           int32 [N]   veto-algorithm trials
    ``shower_log_prob``           float [N]   log-probability of the discrete decisions (channel,
                                              kernel, accept/reject), differentiable: the score
                                              term of the event-derivative estimator
    ``shower_score_alpha_s``      float [N]   exact d log w(αs′)/dαs′ at αs′ = αs(m_Z)
    ``shower_alpha_s_mz``         float [N]   generating αs(m_Z)
    ``shower_alpha_s_order``      int32 [N]   loops of the running (0 = fixed, 1, 2)
    ``shower_trial_t``            float [N,R] scales t (GeV²) of the trials with f/g > 0
    ``shower_trial_r``            float [N,R] their acceptance probability f/g
    ``shower_trial_accepted``     bool [N,R]  whether each was accepted (padding: t = 0)
    ``shower_record_overflow``    bool [N]    more than R such trials; reweight() gives NaN
    ============================  ==========  ====================================================

    With ``record_history=True`` the layer also writes the emission record, from which the
    sequence of 2 → 3 branchings (emitter ĩj + spectator k̃ → emitter i + spectator k + new
    parton j, four-momentum conserved exactly by the spectator recoil) can be rebuilt, e.g.
    for HepMC3 output (:mod:`diffgen.io.hepmc`). Emission e = 0, 1, … of an event is row e;
    rows e ≥ ``shower_n_emissions`` are padding (indices −1, zeros). Indices are particle
    slots of the output ``Events``; momenta (E, px, py, pz) GeV; held out of gradients:

    ==================================  ==============  ==========================================
    ``shower_history/p_start``          float [N,P,4]   the partons the shower starts from: the
                                                        input mapped onto massless momenta with
                                                        the same total (zero in empty slots)
    ``shower_history/emitter``          int32 [N,P]     slot of the emitter (keeps its slot)
    ``shower_history/spectator``        int32 [N,P]     slot of the spectator (recoiler)
    ``shower_history/emitted``          int32 [N,P]     slot of the new parton
    ``shower_history/p_emitter``        float [N,P,4]   emitter momentum before the branching
    ``shower_history/p_spectator``      float [N,P,4]   spectator momentum before the branching
    ``shower_history/pid_emitter``      int32 [N,P]     emitter pid before (21 for g → q q̄)
    ``shower_history/pid_spectator``    int32 [N,P]     spectator pid (unchanged by the branching)
    ``shower_history/colour_emitter``   int32 [N,P,2]   emitter colour tags before the branching
    ``shower_history/colour_spectator`` int32 [N,P,2]   spectator colour tags before the branching
    ``shower_history/t``                float [N,P]     evolution scale t = p_T² of the emission, GeV²
    ==================================  ==============  ==========================================

    The momenta after emission e are those before the next emission involving the same slot,
    or the output momenta. ``record_history`` is static; the momenta, weights and decisions
    are bit-for-bit those of ``record_history=False``.

    With ``boundary_trials=B`` the layer also records, for the last B veto trials of every
    event (row ``k mod B`` for trial k; rows of trials never made are zero), what the cut-off
    boundary term of the event derivative needs (:func:`boundary_term`; P = ``capacity``):

    ===================================  ==============  ====================================
    ``shower_boundary_u``                float [N,B]     U* = Δ̂(t, t0): the overestimate's
                                                         no-trial probability from the trial's
                                                         start scale t down to t0;
                                                         differentiable (pathwise)
    ``shower_boundary_r``                float [N,B]     acceptance f/g of the trial's branching
                                                         placed at t = t0 (0 if outside phase
                                                         space or no free slot)
    ``shower_boundary_n``                int32 [N,B]     partons before the trial
    ``shower_boundary_p_before``         float [N,B,P,4] momenta before the trial
    ``shower_boundary_pid_before``       int32 [N,B,P]   pids before the trial
    ``shower_boundary_colour_before``    int32 [N,B,P,2] colour tags before the trial
    ``shower_boundary_p_after``          float [N,B,P,4] momenta after the branching at t0
                                                         (n + 1 partons)
    ``shower_boundary_pid_after``        int32 [N,B,P]   pids after it
    ``shower_boundary_colour_after``     int32 [N,B,P,2] colour tags after it
    ===================================  ==============  ====================================

    Gradients (docs/shower.md): pathwise ``jax.jvp``/``jax.jacfwd`` (forward mode through the
    ``while_loop``; ``jax.grad`` works too, through a custom JVP whose forward-mode Jacobian
    JAX transposes) with random numbers fixed and decisions held; add
    :func:`score_function_term` (the held decisions) and :func:`boundary_term` (events
    crossing the cut-off; needs ``boundary_trials``) to make it unbiased; or reweight with
    :func:`reweight` (αs only).

    Args:
      capacity: particle slots per output event (static); events that would need more are
        flagged in ``shower_overflow``.
      alpha_s_order: 1 or 2 loops of running from αs(m_Z), or 0 for a fixed coupling αs(m_Z).
      max_records: R, the per-event trial record for :func:`reweight` (default 3·capacity).
      max_trials: bound on veto trials per event (default 64·capacity); reaching it is flagged
        as overflow.
      record_history: also write the emission record ``shower_history/…`` (static, default off).
      boundary_trials: B, the number of last trials per event kept in the boundary record
        ``shower_boundary_…`` (static, default 0 = none; 8 keeps the truncation below 1 % of
        the boundary term at 91.2 GeV, docs/shower.md). The decisions and weights are those of B = 0 and
        the momenta agree to rounding (XLA may contract multiply-adds differently in the larger
        program).

    Returns:
      ``Layer(init, apply)``.
    """
    if not isinstance(capacity, (int, np.integer)) or isinstance(capacity, bool) or capacity < 2:
        raise ValueError(f"final_state_shower: capacity must be an integer >= 2, got {capacity!r}")
    if alpha_s_order not in (0, 1, 2):
        raise ValueError(f"final_state_shower: alpha_s_order must be 0 (fixed), 1 or 2, got {alpha_s_order!r}")
    capacity = int(capacity)
    max_records = 3 * capacity if max_records is None else int(max_records)
    max_trials = 64 * capacity if max_trials is None else int(max_trials)
    if max_records < 1 or max_trials < 1:
        raise ValueError("final_state_shower: max_records and max_trials must be >= 1")

    def init(key: Key) -> Params:
        del key
        return {"alpha_s_mz": jnp.asarray(0.118), "t0": jnp.asarray(1.0)}

    if not isinstance(record_history, bool):
        raise TypeError(f"final_state_shower: record_history must be a bool, got {type(record_history).__name__}")
    if (
        not isinstance(boundary_trials, (int, np.integer))
        or isinstance(boundary_trials, bool)
        or not 0 <= boundary_trials <= 4096
    ):
        raise ValueError(
            f"final_state_shower: boundary_trials must be an integer in [0, 4096], got {boundary_trials!r}"
        )
    boundary_trials = int(boundary_trials)
    run = _make_runner(capacity, alpha_s_order, max_records, max_trials, record_history, boundary=boundary_trials)

    def apply(params: Params, key: Key, events: Events) -> Events:
        _check_input(events, capacity)
        _check_params(params)
        dtype = events.dtype
        alpha = jnp.asarray(params["alpha_s_mz"]).astype(dtype)
        t0 = jnp.asarray(params["t0"]).astype(dtype)
        keys = jax.random.split(key, events.n_events)
        diff, aux = run(alpha, t0, events.p, events.pid, events.colour, events.mask, keys)
        p, log_prob = diff[0], diff[1]
        n = events.n_events
        mask = jnp.arange(capacity, dtype=jnp.int32)[None, :] < aux["n"][:, None]
        extra = {
            "shower_overflow": aux["overflow"],
            "shower_n_emissions": aux["n_emissions"],
            "shower_n_trials": aux["trial"],
            "shower_log_prob": log_prob,
            "shower_score_alpha_s": aux["score"],
            "shower_alpha_s_mz": jnp.broadcast_to(jax.lax.stop_gradient(alpha), (n,)),
            "shower_alpha_s_order": jnp.full((n,), alpha_s_order, jnp.int32),
            "shower_trial_t": aux["rec_t"],
            "shower_trial_r": aux["rec_r"],
            "shower_trial_accepted": aux["rec_acc"],
            "shower_record_overflow": aux["rec_overflow"],
        }
        if record_history:
            extra.update({HISTORY_PREFIX + name: aux["hist"][name] for name in ("p_start", *HISTORY_FIELDS)})
        if boundary_trials:
            record = {"u_star": diff[2], **aux["bnd"]}
            extra.update({key: record[field] for key, field in zip(BOUNDARY_KEYS, BOUNDARY_FIELDS, strict=True)})
        return Events(
            p=jnp.where(mask[..., None], p, 0.0),
            weight=events.weight,
            mask=mask,
            pid=jnp.where(mask, aux["pid"], 0),
            colour=jnp.where(mask[..., None], aux["col"], 0),
            extra={**events.extra, **extra},
        )

    return Layer(init=init, apply=apply)


def _massless(p: Array, mask: Array) -> Array:
    """Map partons onto massless momenta with the same total four-momentum.

    In the event's rest frame every three-momentum is scaled by ``ξ = √s/Σ|p⃗|`` and
    ``E = ξ|p⃗|``, so Σp⃗ = 0 and ΣE = √s still hold; for a back-to-back pair the energies are
    unchanged. (The shower is massless, n_f = 5, as in arXiv:1411.4085.)

    Args:
      p: [P, 4] one event; mask: [P] bool.
    """
    p = jnp.where(mask[:, None], p, 0.0)
    total = jnp.sum(p, axis=0)
    rest = kin.boost_to_rest_frame(p, total[None, :])
    a = kin.p_abs(rest)
    xi = kin.safe_div(kin.mass(total), jnp.sum(a))
    rest = jnp.concatenate([(xi * a)[:, None], xi * rest[:, 1:]], axis=-1)
    return jnp.where(mask[:, None], kin.boost_from_rest_frame(rest, total[None, :]), 0.0)


def _aux_outputs(st, p_start: Array, record_history: bool, boundary: int = 0):
    """The runner's outputs from one event's final ``ShowerState``: differentiable, aux.

    The differentiable part is (momenta, log-prob) and, with ``boundary`` > 0, the boundary
    fluxes U* [B] of the record (the rest of the record goes to aux["bnd"]).
    """
    aux = {
        "n": st.n,
        "pid": st.pid,
        "col": st.col,
        "overflow": st.overflow,
        "n_emissions": st.n_emissions,
        "trial": st.trial,
        "score": st.score,
        "rec_t": st.rec_t,
        "rec_r": st.rec_r,
        "rec_acc": st.rec_acc,
        "rec_overflow": st.rec_overflow,
    }
    if record_history:
        aux["hist"] = {**st.hist, "p_start": jax.lax.stop_gradient(p_start)}
    if boundary:
        aux["bnd"] = {k: v for k, v in st.bnd.items() if k != "u_star"}
        return (st.p, st.log_prob, st.bnd["u_star"]), aux
    return (st.p, st.log_prob), aux


def _pad_slots(p: Array, capacity: int) -> Array:
    """[P, 4] momenta padded with zero momenta to [capacity, 4]."""
    return jnp.pad(p, ((0, capacity - p.shape[0]), (0, 0)))


#: Largest number of slots S of the refilling forward shower (:func:`_refill_loop`). 0 selects
#: the plain ``vmap`` of the per-event ``while_loop`` (the reference; same trials, decisions and
#: values up to floating-point contraction, see docs/shower.md "Benchmark").
_REFILL_SLOTS = 512

#: S = min(N, _REFILL_SLOTS, max(_REFILL_MIN_SLOTS, N // _REFILL_EVENTS_PER_SLOT)): enough events
#: per slot that the drain of the last S events stays short (measured best at N = 600 … 10⁴,
#: docs/shower.md). Setting _REFILL_EVENTS_PER_SLOT = 1 makes S = min(N, _REFILL_SLOTS).
_REFILL_MIN_SLOTS = 128
_REFILL_EVENTS_PER_SLOT = 4

#: Trials per slot between two refills (the finished events of a round are written out and
#: replaced together; a slot whose event finished early idles for the rest of the round).
_REFILL_EVERY = 4

#: Whether the refilling loop applies the branching only to the accepted slots (compacted);
#: False runs the full step on every slot (the previous loop, kept as a benchmark reference).
#: With ``boundary_trials`` the full step is always used (the record needs every trial's
#: branching at t0).
_COMPACT_EMISSIONS = True

#: Rows K of an emission block of the refilling loop, as a fraction of the slots S: about
#: 15 % of trials are accepted (binomially ≈ 77 ± 8 of S = 512), so a block of 0.18 S rows holds them
#: in nearly every step; the block's cost grows with K, a second block is rare
#: (docs/shower.md, "Benchmark": 0.16–0.19 S best, S/4 6–9 % slower).
_EMIT_FRACTION = 0.18


def _refill_loop(init, keys, step, n_slots: int, steps_per_refill: int, split=None, chunk: int = 0):
    """Run ``step`` on every event of ``init`` until done, ``n_slots`` events at a time.

    Under ``vmap`` a per-event ``while_loop`` runs until the slowest event of the batch has
    finished (at 91.2 GeV the maximum number of trials of 2000 events is ≈ 2.5 times the
    mean of ≈ 21). Here S = ``n_slots`` slots each hold one event's state; a round applies
    ``step`` ``steps_per_refill`` times to all slots (a finished event's state is kept, as
    under ``vmap``), then writes the states of the events finished in the round into the
    output at their event index and loads the next unstarted events into the freed slots.
    ``step`` draws its random numbers from the event's key and trial number, so an event's
    trials and decisions are those of the per-event loop whichever slot runs it; only
    the tail of the last S events and the rest of a round after an event has finished are
    stepped in vain.

    With ``split = (trial, emission, fields)`` a step is instead the vmapped ``trial(state,
    key) -> (state, emit, info)`` on all slots (it must leave done states unchanged), and
    ``emission(sub, info) -> sub`` on the ``fields`` of the slots with ``emit`` only: their
    indices are compacted into blocks of K = ``chunk`` rows, each block is gathered, updated
    by the vmapped ``emission`` and scattered back, block after block until every emitting
    slot is done (a ``while_loop``; usually one block, none when no slot emits). Per slot this
    is the same computation as ``step``.

    Args:
      init: batched state [N, …] (any pytree with a boolean ``done`` [N] field, e.g.
        ``ShowerState``); events already done are returned unchanged.
      keys: [N] PRNG keys.
      step: ``(state, key) -> state`` for one event.
      n_slots: S (static), 1 ≤ S ≤ N.
      steps_per_refill: trials per round (static, ≥ 1).
      split: optional ``(trial, emission, fields)`` as above (per event; static).
      chunk: K (static, 1 ≤ K ≤ S), rows of an emission block; used with ``split``.

    Returns:
      the final states [N, …].
    """
    n = init.done.shape[0]
    # events still to shower first (stable: in event order), already finished ones after them
    queue = jnp.argsort(init.done, stable=True).astype(jnp.int32)
    n_todo = n - jnp.sum(init.done, dtype=jnp.int32)
    first = queue[:n_slots]
    slot_event = jnp.where(jnp.arange(n_slots, dtype=jnp.int32) < n_todo, first, n)
    slots = jax.tree.map(lambda x: x[first], init)
    slot_keys = keys[first]

    def select(flag, new, old):
        return jax.tree.map(lambda a, b: jnp.where(flag.reshape(flag.shape + (1,) * (a.ndim - 1)), a, b), new, old)

    if split is None:
        batched_step = jax.vmap(step)

        def advance(_, slots_keys):
            # as under vmap of the per-event while_loop: a finished event's state stays as it is
            slots, slot_keys = slots_keys
            return select(slots.done, slots, batched_step(slots, slot_keys)), slot_keys

    else:
        draw, trial, emission, fields = split
        batched_trial = jax.vmap(trial)
        # a round's random numbers [S, steps, …], drawn at once: as an operand of the trial
        # loop they are computed once (XLA would otherwise fuse the hash into every consumer)
        batched_draw = jax.vmap(jax.vmap(draw, in_axes=(None, 0)), in_axes=(0, 0))
        steps = jnp.arange(steps_per_refill, dtype=jnp.int32)
        batched_emission = jax.vmap(emission)
        k_rows = max(1, min(int(chunk), n_slots))
        slot_ids = jnp.arange(n_slots, dtype=jnp.int32)
        spare = n_slots + jnp.arange(k_rows, dtype=jnp.int32)  # distinct out-of-range rows: dropped

        def advance(i, slots_u):
            slots, u = slots_u
            slots, emit, info = batched_trial(slots, u[:, i])
            n_emit = jnp.sum(emit, dtype=jnp.int32)
            # position of an emitting slot among them (jnp.cumsum is a slow reduce-window on CPU)
            rank = prefix_sum(emit.astype(jnp.int32)) - 1

            def block(carry):
                start, sub = carry
                mine = emit & (rank >= start) & (rank < start + k_rows)
                rows = jnp.full((k_rows,), n_slots, jnp.int32)
                rows = rows.at[jnp.where(mine, rank - start, k_rows)].set(slot_ids, mode="drop")
                src = jnp.minimum(rows, n_slots - 1)
                updated = batched_emission(jax.tree.map(lambda x: x[src], sub), jax.tree.map(lambda x: x[src], info))
                dest = jnp.where(rows < n_slots, rows, spare)
                sub = jax.tree.map(lambda o, x: o.at[dest].set(x, mode="drop", unique_indices=True), sub, updated)
                return start + k_rows, sub

            sub = {name: getattr(slots, name) for name in fields}
            # The first block unconditionally (nearly every step has emissions; with none its rows
            # are all dropped), further blocks only when more slots accepted than a block holds.
            start, sub = block((jnp.zeros((), jnp.int32), sub))
            _, sub = jax.lax.cond(
                start < n_emit,
                lambda c: jax.lax.while_loop(lambda c: c[0] < n_emit, block, c),
                lambda c: c,
                (start, sub),
            )
            return slots._replace(**sub), u

    def cond(carry):
        return jnp.any(carry[1] < n)

    def body(carry):
        slots, slot_event, slot_keys, n_next, out = carry
        if split is None:
            stepped = jax.lax.fori_loop(0, steps_per_refill, advance, (slots, slot_keys))[0]
        else:
            # trial k of the round is the event's trial number trial + k while it is not done
            u = batched_draw(slot_keys, slots.trial[:, None] + steps[None, :])
            stepped = jax.lax.fori_loop(0, steps_per_refill, advance, (slots, u))[0]
        finished = stepped.done & (slot_event < n)
        dest = jnp.where(finished, slot_event, n)
        out = jax.tree.map(lambda o, x: o.at[dest].set(x, mode="drop", unique_indices=True), out, stepped)
        pos = n_next + prefix_sum(finished.astype(jnp.int32)) - 1
        load = finished & (pos < n_todo)
        new_event = queue[jnp.minimum(pos, n - 1)]
        fresh = jax.tree.map(lambda x: x[new_event], init)
        slots = select(load, fresh, stepped)
        slot_keys = jnp.where(load, keys[new_event], slot_keys)
        slot_event = jnp.where(finished, jnp.where(load, new_event, n), slot_event)
        return slots, slot_event, slot_keys, n_next + jnp.sum(finished, dtype=jnp.int32), out

    carry = (slots, slot_event, slot_keys, jnp.asarray(n_slots, jnp.int32), init)
    return jax.lax.while_loop(cond, body, carry)[-1]


def _make_runner(
    capacity: int,
    order: int,
    max_records: int,
    max_trials: int,
    record_history: bool = False,
    refill_slots: int | None = None,
    boundary: int = 0,
):
    """Vectorised shower with a custom JVP, so that forward *and* reverse mode work.

    The primal (forward) shower runs the slot-refilling loop :func:`_refill_loop` with at most
    ``refill_slots`` slots (default :data:`_REFILL_SLOTS`; S as in :data:`_REFILL_MIN_SLOTS`; 0 = the
    ``vmap`` of the per-event ``while_loop``, the reference: same trials and decisions, slower).

    ``lax.while_loop`` supports only forward-mode differentiation. The custom JVP rule
    computes each event's Jacobian of (momenta, log-probability and, with ``boundary``, the
    boundary fluxes U*) with respect to αs(m_Z), t0 and its input momenta by forward mode
    (``jax.jacfwd``; 2 + 4·P_in directions, only those whose tangent is not a symbolic zero:
    2 for the shower params alone) and applies it to the tangents; being linear in the
    tangents it is transposed by JAX, so ``jax.grad`` of anything downstream works too (cost
    ≈ 1 + directions forward showers).
    """
    slots_cfg = _REFILL_SLOTS if refill_slots is None else int(refill_slots)

    def one(alpha, t0, p, pid, col, mask, key):
        p = _massless(p, mask)
        st = shower_one_event(
            p,
            pid,
            col,
            mask,
            key,
            alpha,
            t0,
            order=order,
            max_records=max_records,
            max_trials=max_trials,
            record_history=record_history,
            boundary=boundary,
            capacity=capacity,
        )
        return _aux_outputs(st, _pad_slots(p, capacity), record_history, boundary)

    batched = jax.vmap(one, in_axes=(None, None, 0, 0, 0, 0, 0))

    def refilled(alpha, t0, p, pid, col, mask, keys):
        p = jax.vmap(_massless)(p, mask)
        # as in shower_one_event, with the colour partners and overestimates of the input slots
        # only (the padding to the shower capacity has neither)
        amax = alpha_s(t0, alpha, order=order)
        init = jax.vmap(lambda *a: initial_state(*a, t0, amax, max_records, record_history, boundary, capacity))(
            p, pid, col, mask
        )
        p = init.p
        init = init._replace(done=init.t <= t0)

        def step(st, key):
            return _step(st, key, alpha, t0, amax, order, max_trials)

        split = None
        if not boundary and _COMPACT_EMISSIONS:
            # the boundary record needs every trial's branching at t0: full steps then

            def draw(key, trial_number):
                return trial_uniforms(key, trial_number, TRIAL_UNIFORMS, p.dtype)

            def trial(st, u):
                new, emit, info, _ = _trial(st, u, alpha, t0, amax, order, max_trials)
                return new, emit, info

            def emission(sub, info):
                return _emission(sub, info, t0, amax)

            split = (draw, trial, emission, EMISSION_FIELDS)
        n = p.shape[0]
        n_slots = max(1, min(n, slots_cfg, max(_REFILL_MIN_SLOTS, n // _REFILL_EVENTS_PER_SLOT)))
        final = _refill_loop(
            init, keys, step, n_slots, _REFILL_EVERY, split=split, chunk=max(1, round(n_slots * _EMIT_FRACTION))
        )
        return jax.vmap(lambda st, q: _aux_outputs(st, q, record_history, boundary))(final, p)

    def primal(alpha, t0, p, pid, col, mask, keys):
        if slots_cfg <= 0 or p.shape[0] == 0:
            return batched(alpha, t0, p, pid, col, mask, keys)
        return refilled(alpha, t0, p, pid, col, mask, keys)

    run = jax.custom_jvp(primal)

    def run_jvp(primals, tangents):
        alpha, t0, p, pid, col, mask, keys = primals
        # Jacobian columns only for the inputs whose tangent is not a symbolic zero: a derivative
        # in the shower params alone needs 2 forward-mode directions instead of 2 + 4·P_in.
        live = tuple(i for i in range(3) if not isinstance(tangents[i], SymbolicZero))
        if not live:
            primal_diff, aux = primal(alpha, t0, p, pid, col, mask, keys)
            diff_tangent = jax.tree.map(jnp.zeros_like, primal_diff)
        else:

            def with_aux(a, t, q, pid_e, col_e, mask_e, key_e):
                diff, aux = one(a, t, q, pid_e, col_e, mask_e, key_e)
                return diff, (diff, aux)

            jac_fn = jax.jacfwd(with_aux, argnums=live, has_aux=True)
            jac, (primal_diff, aux) = jax.vmap(jac_fn, in_axes=(None, None, 0, 0, 0, 0, 0))(
                alpha, t0, p, pid, col, mask, keys
            )

            def push(jac_out):
                """Jacobian of one output (columns: αs, t0, input momenta [P_in, 4]) times the tangents."""
                terms = [
                    jnp.einsum("n...kl,nkl->n...", j, tangents[i]) if i == 2 else j * tangents[i]
                    for i, j in zip(live, jac_out, strict=True)
                ]
                return functools.reduce(jnp.add, terms)

            diff_tangent = tuple(push(j) for j in jac)
        aux_tangent = jax.tree.map(
            lambda x: (
                jnp.zeros_like(x)
                if jnp.issubdtype(x.dtype, jnp.floating)
                else np.zeros(x.shape, dtype=jax.dtypes.float0)
            ),
            aux,
        )
        return (primal_diff, aux), (diff_tangent, aux_tangent)

    run.defjvp(run_jvp, symbolic_zeros=True)
    return run


def reweight(events: Events, alpha_s_new: Array) -> Array:
    """Exact veto-algorithm weight ``w(αs′)`` of showered events for a new αs(m_Z).

    With the overestimate g held fixed, the probability of the recorded trial sequence
    changes by ``f′/f = ρ(t)`` for every accepted trial and by ``(1 − r ρ(t))/(1 − r)`` for
    every rejected one, ``ρ(t) = αs(t; αs′)/αs(t; αs)``, ``r = f/g`` (S. Mrenna and P. Skands,
    arXiv:1605.08352, eqs. 2.8-2.9; J. Bellm et al., arXiv:1605.08256). The no-emission
    probability is included through the rejected trials; trials with f = 0 do not contribute.
    ``w`` is unbiased, ``E[w·O] = E_{αs′}[O]``, and exact in αs′, so ``jax.grad`` of it gives
    the exact derivative (at αs′ = αs it equals ``extra["shower_score_alpha_s"]``). Weights can
    be negative when ``r ρ > 1``.

    Args:
      events: output of :func:`final_state_shower` (needs the ``shower_trial_*`` keys).
      alpha_s_new: αs′(m_Z), scalar or [N].

    Returns:
      [N] weights (multiply ``events.weight`` by them); NaN for events whose record overflowed.
    """
    needed = ("shower_trial_t", "shower_trial_r", "shower_trial_accepted", "shower_alpha_s_mz", "shower_alpha_s_order")
    missing = [k for k in needed if k not in events.extra]
    if missing:
        raise ValueError(f"reweight: events lack the shower record {missing}; pass the output of final_state_shower")
    x = events.extra
    t = x["shower_trial_t"]
    r = x["shower_trial_r"]
    acc = x["shower_trial_accepted"]
    dtype = t.dtype
    a_old = x["shower_alpha_s_mz"].astype(dtype)[:, None]
    a_new = jnp.asarray(alpha_s_new).astype(dtype)
    if a_new.ndim == 1:
        a_new = a_new[:, None]
    order = x["shower_alpha_s_order"][:, None]
    used = t > 0
    tt = jnp.where(used, t, MZ**2)

    def rho(o):
        return alpha_s(tt, a_new, order=o) / alpha_s(tt, a_old, order=o)

    rh = jnp.where(order == 0, rho(0), jnp.where(order == 1, rho(1), rho(2)))
    log_acc = safe_log(rh)
    rej = (1.0 - r * rh) / (1.0 - r)
    # signed product: track log|·| and the sign separately
    factor = jnp.where(used, jnp.where(acc, rh, rej), 1.0)
    sign = jnp.prod(jnp.where(factor < 0, -1.0, 1.0).astype(dtype), axis=1)
    logw = jnp.sum(safe_log(jnp.abs(factor)), axis=1)
    del log_acc
    w = sign * jnp.exp(logw)
    overflow = x.get("shower_record_overflow")
    if overflow is not None:
        w = jnp.where(overflow, jnp.nan, w)
    return w


def score_function_term(observable: Array, events: Events, *, baseline: Array | None = None) -> Array:
    """Per-event surrogate whose gradient adds the score term of the held discrete decisions.

    ``O + (O − b)·(L − stop_gradient(L))`` with ``L = extra["shower_log_prob"]`` has the value
    ``O`` and the gradient ``∂O (pathwise) + (O − b) ∂L``; its mean's gradient is an unbiased
    estimator of d⟨O⟩/dθ (stochastic-AD / DiCE construction, J. Foerster et al.,
    arXiv:1802.05098), where the pathwise part alone misses the change of the accept/reject
    and channel probabilities. ``b`` (default: the batch mean of O, a control variate that
    leaves the estimator unbiased up to O(1/N)) reduces its variance.

    Args:
      observable: [N] per-event values (differentiable).
      events: shower output with ``extra["shower_log_prob"]``.
      baseline: scalar control variate, default ``mean(O)`` (gradient stopped).

    Returns:
      [N] surrogate values equal to ``observable``.
    """
    if "shower_log_prob" not in events.extra:
        raise ValueError("score_function_term: events lack extra['shower_log_prob']; pass final_state_shower output")
    lp = events.extra["shower_log_prob"]
    obs_sg = jax.lax.stop_gradient(observable)
    b = jnp.mean(obs_sg) if baseline is None else jax.lax.stop_gradient(baseline)
    return observable + (obs_sg - b) * (lp - jax.lax.stop_gradient(lp))


def boundary_events(events: Events) -> tuple[Events, Events]:
    """The parton states at the cut-off boundary of the last B trials of every event.

    For trial k of an event (row ``k mod B`` of the record written by
    ``final_state_shower(boundary_trials=B)``): ``before`` is the event as it was before the
    trial (the shower ending there), ``after`` the same event with the trial's branching
    placed at the cut-off, t = t0 (its channel, z, φ and flavour). Both are plain parton
    ``Events`` (momenta, pids, colours, unit weights), ready for downstream layers.

    Args:
      events: output of ``final_state_shower(boundary_trials=B)`` with N events, P slots.

    Returns:
      ``(before, after)``, each with N·B events in event-major order (row b of event i is
      event ``i·B + b``) and P slots.
    """
    x = _boundary_record(events, "boundary_events")
    n_ev, n_rows = x["shower_boundary_u"].shape
    cap = events.capacity
    slots = jnp.arange(cap, dtype=jnp.int32)

    def flat(a):
        return jax.lax.stop_gradient(a).reshape((n_ev * n_rows,) + a.shape[2:])

    n_pre = flat(x["shower_boundary_n"])
    weight = jnp.ones((n_ev * n_rows,), events.dtype)
    out = []
    for tag, n in (("before", n_pre), ("after", n_pre + 1)):
        mask = slots[None, :] < n[:, None]
        out.append(
            Events(
                p=jnp.where(mask[..., None], flat(x[f"shower_boundary_p_{tag}"]), 0.0),
                weight=weight,
                mask=mask,
                pid=jnp.where(mask, flat(x[f"shower_boundary_pid_{tag}"]), 0),
                colour=jnp.where(mask[..., None], flat(x[f"shower_boundary_colour_{tag}"]), 0),
            )
        )
    return out[0], out[1]


def boundary_term(observable: Callable[[Events], Array], events: Events) -> Array:
    """Per-event surrogate whose gradient adds the cut-off boundary term of the event derivative.

    With the random numbers fixed, a trial of the veto algorithm stays above the cut-off iff
    its uniform number ``1 − u`` exceeds ``U* = Δ̂(t, t0)``, the overestimate's probability of
    no trial between the current scale t and t0. U* moves with the params, so events cross the
    boundary — an emission at t0 appears or disappears — which no derivative at fixed random
    numbers sees. By the Leibniz rule its contribution to d⟨O⟩/dθ is, summed over the trials
    k of each event, ``−dU*_k/dθ · r_k(t0) · (O(after_k) − O(before_k))`` (before/after the
    branching at t0 that trial k makes at the boundary, accepted with probability r_k(t0);
    docs/shower.md). The surrogate ``−Σ_k (U*_k − stop_gradient(U*_k)) · stop_gradient(r_k ΔO_k)``
    has the value 0 and exactly that gradient; ``U*_k`` carries its pathwise derivative (in
    αs(m_Z), t0 and anything upstream). Add it to :func:`score_function_term`:
    ``mean(score_function_term(O, ev) + boundary_term(obs, ev))`` has an unbiased gradient
    estimator (truncated to the last B trials, whose fluxes fall off fast: docs/shower.md).

    Args:
      observable: ``Events -> [M]``, the per-event observable O (may contain downstream layers
        with fixed keys); it is evaluated on the N·B boundary states of :func:`boundary_events`.
      events: output of ``final_state_shower(boundary_trials=B)``, N events.

    Returns:
      [N] surrogate values (all 0).
    """
    x = _boundary_record(events, "boundary_term")
    u = x["shower_boundary_u"]
    n_ev, n_rows = u.shape
    before, after = boundary_events(events)
    o_before, o_after = (jnp.asarray(observable(e)) for e in (before, after))
    for o in (o_before, o_after):
        if o.shape != (n_ev * n_rows,):
            raise ValueError(
                f"boundary_term: observable must map Events with M events to shape [M]; got shape {o.shape} "
                f"for M = {n_ev * n_rows}"
            )
    jump = jax.lax.stop_gradient(x["shower_boundary_r"] * (o_after - o_before).reshape(n_ev, n_rows))
    return -jnp.sum((u - jax.lax.stop_gradient(u)) * jump, axis=1)


def _boundary_record(events: Events, who: str) -> Mapping[str, Array]:
    if not isinstance(events, Events):
        raise TypeError(f"{who}: events must be Events, got {type(events).__name__}")
    missing = [k for k in BOUNDARY_KEYS if k not in events.extra]
    if missing:
        raise ValueError(
            f"{who}: events lack the shower's boundary record {missing}; pass the output of "
            "final_state_shower(boundary_trials=B) with B >= 1"
        )
    return events.extra
