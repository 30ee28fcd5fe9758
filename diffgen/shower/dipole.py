"""Catani–Seymour dipole final-state shower in leading colour, vectorised over events.

The physics follows the tutorial shower of S. Höche, "Introduction to parton-shower event
generators", arXiv:1411.4085 (section 3 and its accompanying code), with the massless
final-state dipole kinematics of S. Catani and M.H. Seymour, arXiv:hep-ph/9605323, section 5.1:

* splitting kernels (n_f = 5, massless), with ``z`` the emitter's light-cone fraction and
  ``y`` the dipole recoil variable, arXiv:1411.4085 eqs. (3.12)-(3.14):
  ``P_qq(z, y) = C_F [2/(1 − z(1 − y)) − (1 + z)]``,
  ``P_gg(z, y) = C_A/2 [2/(1 − z(1 − y)) − 2 + z(1 − z)]``,
  ``P_gq(z)    = T_R/2 [1 − 2 z(1 − z)]`` per flavour;
  a gluon radiates in both of its colour dipoles, hence the factors 1/2;
* evolution variable ``t = p_T² = Q² y z(1 − z)`` with ``Q² = 2 p̃_ij·p̃_k``, emission density
  ``αs(t)/(2π) dt/t dz (1 − y) P(z, y)``, cut-off ``t0``;
* veto algorithm with the overestimates ``C_F 2/(1 − z)``, ``C_A/(1 − z)``, ``T_R/2`` on
  ``z ∈ [z₋, z₊]``, ``z± = (1 ± sqrt(1 − 4 t0/Q²))/2`` (arXiv:1411.4085 eq. 3.16), and for the
  coupling the one-loop running ``α̂(t) = α̂₀/w(t)``, ``w(t) = 1 + b0 α̂₀ log(t/t0)``, from
  ``α̂₀ = αs(t0)``: it equals the one-loop αs(t) exactly and bounds the two-loop αs(t) from
  above for t ≥ t0 (two-loop running is faster; 0.95 ≤ αs/α̂ ≤ 1 at αs(m_Z) = 0.12, and
  αs/α̂ ≤ 1 whenever αs(t0) ≤ 1, which the layer requires). Its Sudakov integral
  ``∫ α̂(t) dt/t = log w/b0`` inverts in closed form, and because the acceptance αs/α̂ then
  hardly depends on αs(m_Z), trials are fewer than with the constant ``α̂ = αs(t0)`` of
  arXiv:1411.4085 and the held accept/reject decisions of the pathwise derivative are nearly
  the right ones (fixed coupling, ``order = 0``: ``α̂ = αs(m_Z)``, b0 → 0);
  the competition of all dipole ends is sampled with the *summed* overestimate and a
  probabilistic choice of the channel (the veto algorithm of arXiv:hep-ph/0603175, section 4.2);
* kinematics (arXiv:hep-ph/9605323 eq. 5.3; arXiv:1411.4085 eq. 3.10):
  ``p_i = z p̃_ij + (1 − z) y p̃_k + k_⊥``, ``p_j = (1 − z) p̃_ij + z y p̃_k − k_⊥``,
  ``p_k = (1 − y) p̃_k`` with ``k_⊥² = −t``: the spectator absorbs the recoil, so the event's
  four-momentum is conserved exactly and every parton stays massless.

The per-event state is a fixed-capacity array of partons plus, for every parton, the index of
its colour partner on the colour (0) and anti-colour (1) side; dipole ends are (parton, side)
pairs. Random numbers are drawn per trial from ``fold_in(event_key, trial)``, so they do not
depend on the parameters (common random numbers for pathwise derivatives).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diffgen.kinematics import minkowski_dot, safe_div, safe_log, safe_sqrt
from diffgen.shower.alphas import CA, CF, NF, TR, alpha_s, beta0, dlog_alpha_s
from diffgen.typing import Array
from diffgen.xla_ops import prefix_sum, threefry2x32

__all__ = ["BOUNDARY_FIELDS", "EMISSION_FIELDS", "HISTORY_FIELDS", "ShowerState", "Trial", "shower_one_event"]

_TWO_PI = 2.0 * math.pi


class ShowerState(NamedTuple):
    """Carry of the per-event emission loop (all fixed-shape)."""

    p: Array  # [P, 4]
    pid: Array  # [P] int32
    col: Array  # [P, 2] int32
    partner: Array  # [P, 2] int32, -1 for none
    n: Array  # () int32, number of partons
    g: Array  # [P, 2] overestimate coefficient of each dipole end (incl. α̂/2π)
    cum: Array  # [2P] running sums of g in (slot, side) order, no derivative: the channel choice
    gsum: Array  # () Σ g, the total trial density
    t: Array  # () current evolution scale, GeV²
    next_tag: Array  # () int32
    trial: Array  # () int32, trials made
    n_emissions: Array  # () int32
    log_prob: Array  # () log-probability of the discrete decisions taken
    score: Array  # () d log w / d αs(m_Z) of the reweighting weight, at the generating value
    rec_t: Array  # [R] scales of trials with 0 < f/g
    rec_r: Array  # [R] their acceptance probabilities f/g
    rec_acc: Array  # [R] bool, accepted
    n_rec: Array  # () int32
    overflow: Array  # () bool, particle capacity or trial bound reached
    rec_overflow: Array  # () bool, record buffer full (reweight() unavailable for this event)
    done: Array  # () bool
    hist: dict | None = None  # emission record (record_history=True): see _empty_history
    bnd: dict | None = None  # cut-off boundary record of the last B trials (boundary=B): see _empty_boundary


#: Fields of the per-event emission record (``shower_one_event(record_history=True)``), each
#: with leading axis E = particle capacity (an event cannot accept more emissions than slots).
HISTORY_FIELDS = (
    "emitter",
    "spectator",
    "emitted",
    "p_emitter",
    "p_spectator",
    "pid_emitter",
    "pid_spectator",
    "colour_emitter",
    "colour_spectator",
    "t",
)


def _empty_history(cap: int, dtype) -> dict[str, Array]:
    """Empty emission record: indices -1, momenta/pids/colours/scales 0 (padding)."""
    minus = jnp.full((cap,), -1, jnp.int32)
    return {
        "emitter": minus,
        "spectator": minus,
        "emitted": minus,
        "p_emitter": jnp.zeros((cap, 4), dtype),
        "p_spectator": jnp.zeros((cap, 4), dtype),
        "pid_emitter": jnp.zeros((cap,), jnp.int32),
        "pid_spectator": jnp.zeros((cap,), jnp.int32),
        "colour_emitter": jnp.zeros((cap, 2), jnp.int32),
        "colour_spectator": jnp.zeros((cap, 2), jnp.int32),
        "t": jnp.zeros((cap,), dtype),
    }


#: Fields of the cut-off boundary record (``shower_one_event(boundary=B)``), each with leading
#: axis B: trial k of an event is row ``k mod B``, so the last B trials are kept.
BOUNDARY_FIELDS = ("u_star", "r", "n_pre", "p_pre", "pid_pre", "col_pre", "p_em", "pid_em", "col_em")


def _empty_boundary(n_rows: int, cap: int, dtype) -> dict[str, Array]:
    """Empty boundary record: flux ``u_star`` and acceptance ``r`` 0 (such a row adds nothing)."""
    zeros_p = jnp.zeros((n_rows, cap, 4), dtype)
    zeros_pid = jnp.zeros((n_rows, cap), jnp.int32)
    zeros_col = jnp.zeros((n_rows, cap, 2), jnp.int32)
    return {
        "u_star": jnp.zeros((n_rows,), dtype),
        "r": jnp.zeros((n_rows,), dtype),
        "n_pre": jnp.zeros((n_rows,), jnp.int32),
        "p_pre": zeros_p,
        "pid_pre": zeros_pid,
        "col_pre": zeros_col,
        "p_em": zeros_p,
        "pid_em": zeros_pid,
        "col_em": zeros_col,
    }


#: Uniform numbers per veto trial (scale, channel, kernel, z, φ, acceptance, flavour).
TRIAL_UNIFORMS = 7


def _is_threefry_key(key) -> bool:
    if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return False
    return str(jax.random.key_impl(key)) == "threefry2x32" and bool(jax.config.jax_threefry_partitionable)


def trial_uniforms(key, trial, n: int, dtype) -> Array:
    """The n uniform numbers of one veto trial: ``jax.random.uniform(fold_in(key, trial), (n,), dtype)``.

    For threefry keys (JAX's default, with ``jax_threefry_partitionable``) the same bits are
    computed by the fused :func:`diffgen.xla_ops.threefry2x32`: the fold-in hashes the counter (0, trial),
    the draw the counters (0, i), i < n, and the bits become floats in [0, 1) by JAX's
    mantissa construction. Other keys and dtypes use ``jax.random`` itself.

    Args:
      key: one event's PRNG key; trial: () int32 trial number; n: numbers (static);
      dtype: float dtype.

    Returns:
      [n] uniforms in [0, 1).
    """
    dtype = jnp.dtype(dtype)
    if not _is_threefry_key(key) or dtype not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64)):
        return jax.random.uniform(jax.random.fold_in(key, trial), (n,), dtype=dtype)
    data = jax.random.key_data(key)
    f1, f2 = threefry2x32(data[0], data[1], jnp.zeros((), jnp.uint32), jnp.asarray(trial).astype(jnp.uint32))
    b1, b2 = threefry2x32(f1, f2, jnp.zeros((n,), jnp.uint32), jnp.arange(n, dtype=jnp.uint32))
    if dtype == jnp.float32:
        bits = jax.lax.shift_right_logical(b1 ^ b2, np.uint32(9)) | np.uint32(0x3F800000)
        return jax.lax.bitcast_convert_type(bits, jnp.float32) - jnp.float32(1.0)
    bits = jax.lax.shift_left(b1.astype(jnp.uint64), np.uint64(32)) | b2.astype(jnp.uint64)
    bits = jax.lax.shift_right_logical(bits, np.uint64(12)) | np.uint64(0x3FF0000000000000)
    return jax.lax.bitcast_convert_type(bits, jnp.float64) - jnp.float64(1.0)


def _transverse_basis(pa: Array, pb: Array) -> tuple[Array, Array]:
    """Two unit space-like vectors (e1² = e2² = −1, e1·e2 = 0) orthogonal to light-like pa, pb.

    The lab axes x, y, z are projected onto the plane orthogonal to pa and pb; e1 is the
    longest projection, e2 the longest of the others made orthogonal to e1 (Gram–Schmidt).
    """
    dtype = pa.dtype
    pab = minkowski_dot(pa, pb)
    axes = jnp.asarray(np.concatenate([np.zeros((3, 1)), np.eye(3)], axis=1), dtype=dtype)  # [3, 4]
    ra = minkowski_dot(axes, pa[None, :])
    rb = minkowski_dot(axes, pb[None, :])
    cand = axes - safe_div(rb, pab)[:, None] * pa[None, :] - safe_div(ra, pab)[:, None] * pb[None, :]
    norm2 = -minkowski_dot(cand, cand)
    best = jnp.argmax(norm2)
    e1 = cand[best] / safe_sqrt(norm2[best])
    # e1² = −1, so removing the e1 component of v is v + (v·e1) e1
    rest = cand + minkowski_dot(cand, e1[None, :])[:, None] * e1[None, :]
    norm2r = -minkowski_dot(rest, rest)
    second = jnp.argmax(norm2r)
    e2 = rest[second] / safe_sqrt(norm2r[second])
    return e1, e2


def _end_overestimate(p, pid, partner, a, side, t0, amax):
    """Overestimate coefficient g of dipole end (a, side): trial density g dt/t.

    ``g = α̂/(2π) ∫ dz Ĝ(z)`` over ``[z₋, z₊]`` summed over the kernels of the end
    (arXiv:1411.4085 eq. 3.16): quark ``2 C_F log(z₊/z₋)``; gluon
    ``C_A log(z₊/z₋) + n_f T_R/2 (z₊ − z₋)``. Zero if the end has no partner or
    ``Q² ≤ 4 t0`` (no phase space).
    """
    b = partner[a, side]
    valid = b >= 0
    q2 = 2.0 * minkowski_dot(p[a], p[jnp.maximum(b, 0)])
    ok = valid & (q2 > 4.0 * t0)
    disc = safe_sqrt(1.0 - safe_div(4.0 * t0, q2, fill=1.0))
    zp = 0.5 * (1.0 + disc)
    lg = safe_log(safe_div(zp, 1.0 - zp, fill=1.0))
    is_g = pid[a] == 21
    coef = jnp.where(is_g, CA * lg + 0.5 * TR * NF * disc, 2.0 * CF * lg)
    return jnp.where(ok, amax / _TWO_PI * coef, 0.0)


def _channel_sums(g: Array) -> dict[str, Array]:
    """The state's sums of the overestimate coefficients, for the trial's scale and dipole end.

    g changes only at an emission (about one trial in seven), so the state keeps these sums
    (``ShowerState.cum``, ``ShowerState.gsum``) instead of every trial recomputing them
    (docs/shower.md, "Benchmark").

    Args:
      g: [P, 2] overestimate coefficients of the dipole ends (slot, side 0 colour / 1 anti-colour).

    Returns:
      ``{"cum": [2P] inclusive prefix sums in (slot, side) order, held out of gradients (the
      choice of end is a discrete decision; its probability enters ``log_prob``), "gsum": ()
      Σ g, with derivatives (it sets the trial scale)}``.
    """
    return {"cum": prefix_sum(jax.lax.stop_gradient(g.reshape(-1))), "gsum": jnp.sum(g)}


def _all_overestimates(p, pid, partner, t0, amax):
    cap = p.shape[0]
    idx = jnp.arange(cap)
    f = jax.vmap(
        jax.vmap(_end_overestimate, in_axes=(None, None, None, None, 0, None, None)),
        in_axes=(None, None, None, 0, None, None, None),
    )
    return f(p, pid, partner, idx, jnp.arange(2), t0, amax)


def initial_state(
    p,
    pid,
    col,
    mask,
    t0,
    amax,
    max_records: int,
    record_history: bool = False,
    boundary: int = 0,
    capacity: int | None = None,
) -> ShowerState:
    """Per-event initial shower state: colour partners from the tags, start scale t = Q².

    Args:
      p: [P, 4] massless momenta (E, px, py, pz) GeV; pid: [P] int32; col: [P, 2] int32 LHE
        colour tags; mask: [P] bool.
      t0: cut-off, GeV²; amax: α̂₀, the overestimate's coupling at t0 (0-d, dtype of p).
      max_records: R, the reweighting record size (static).
      record_history, boundary: as in :func:`shower_one_event` (static).
      capacity: static C ≥ P, the slots of the state (default P). The state is that of the
        inputs padded with empty slots to C; the colour partners and overestimates are
        computed on the P input slots only (the empty slots have neither).

    Returns:
      the ``ShowerState`` with C slots, ``done`` false.
    """
    dtype = p.dtype
    n_in = p.shape[0]
    cap = n_in if capacity is None else capacity
    if not isinstance(cap, int) or cap < n_in:
        raise ValueError(f"initial_state: capacity must be an int >= the {n_in} input slots or None, got {capacity!r}")
    # partner on the colour side: the parton whose anti-colour equals my colour (and vice versa)
    c, ac = col[:, 0], col[:, 1]
    conn0 = (c[:, None] == ac[None, :]) & (c[:, None] != 0) & mask[:, None] & mask[None, :]
    conn1 = (ac[:, None] == c[None, :]) & (ac[:, None] != 0) & mask[:, None] & mask[None, :]
    partner = jnp.stack(
        [jnp.where(conn0.any(1), jnp.argmax(conn0, 1), -1), jnp.where(conn1.any(1), jnp.argmax(conn1, 1), -1)],
        axis=1,
    ).astype(jnp.int32)
    n = jnp.sum(mask, dtype=jnp.int32)
    pad = cap - n_in
    g = jnp.pad(_all_overestimates(p, pid, partner, t0, amax), ((0, pad), (0, 0)))
    p_pad = jnp.pad(p, ((0, pad), (0, 0)))
    # summed over all C slots: the order of the additions, hence Q², is that of padded inputs
    total = jnp.sum(jnp.where(jnp.pad(mask, (0, pad))[:, None], p_pad, 0.0), axis=0)
    zero = jnp.zeros((), dtype)
    return ShowerState(
        p=p_pad,
        pid=jnp.pad(pid, (0, pad)),
        col=jnp.pad(col, ((0, pad), (0, 0))),
        partner=jnp.pad(partner, ((0, pad), (0, 0)), constant_values=-1),
        n=n,
        g=g,
        **_channel_sums(g),
        t=minkowski_dot(total, total),
        next_tag=jnp.maximum(jnp.max(col), 500).astype(jnp.int32) + 1,
        trial=jnp.zeros((), jnp.int32),
        n_emissions=jnp.zeros((), jnp.int32),
        log_prob=zero,
        score=zero,
        rec_t=jnp.zeros((max_records,), dtype),
        rec_r=jnp.zeros((max_records,), dtype),
        rec_acc=jnp.zeros((max_records,), bool),
        n_rec=jnp.zeros((), jnp.int32),
        overflow=jnp.zeros((), bool),
        rec_overflow=jnp.zeros((), bool),
        done=jnp.zeros((), bool),
        hist=_empty_history(cap, dtype) if record_history else None,
        bnd=_empty_boundary(boundary, cap, dtype) if boundary else None,
    )


#: Fields of ``ShowerState`` that an emission changes (:func:`_emission`); the trial
#: (:func:`_trial`) changes the others.
EMISSION_FIELDS = ("p", "pid", "col", "partner", "n", "g", "cum", "gsum", "next_tag", "n_emissions", "hist")


class Trial(NamedTuple):
    """One event's trial branching, as the emission update needs it (all 0-d)."""

    a: Array  # int32, emitter slot
    s: Array  # int32, side of the dipole end (0 colour, 1 anti-colour)
    b: Array  # int32, spectator slot
    split: Array  # bool, g → q q̄
    z: Array  # light-cone fraction of the emitter
    y: Array  # dipole recoil variable at the trial scale
    t: Array  # trial scale, GeV²
    phi: Array  # azimuth of k_⊥
    flavour: Array  # int32, quark flavour of a g → q q̄ splitting


def _kernel_ratio(t, q2, z, split, is_g):
    """Recoil y, whether (t, z) is inside the dipole phase space, and (1 − y)P/Ĝ at scale t
    (kernels and overestimates of the module docstring, arXiv:1411.4085 eqs. 3.12-3.16)."""
    zz = z * (1.0 - z)
    y = safe_div(t, q2 * zz, fill=2.0)
    one_m_y = 1.0 - y
    eik = safe_div(2.0, 1.0 - z * one_m_y, fill=0.0)
    ratio_qq = one_m_y * (eik - (1.0 + z)) * (1.0 - z) / 2.0
    ratio_gg = one_m_y * (eik - 2.0 + zz) * (1.0 - z) / 2.0
    ratio_gq = one_m_y * (1.0 - 2.0 * zz)
    return y, (y < 1.0) & (zz > 0), jnp.where(split, ratio_gq, jnp.where(is_g, ratio_gg, ratio_qq))


def _branched_momenta(p, tr: Trial, j, t, y):
    """All momenta after the branching at scale t with recoil y (arXiv:hep-ph/9605323 eq. 5.3)."""
    pa, pb = p[tr.a], p[tr.b]
    e1, e2 = _transverse_basis(pa, pb)
    kt = safe_sqrt(t) * (jnp.cos(tr.phi) * e1 + jnp.sin(tr.phi) * e2)
    z = tr.z
    new_pa = z * pa + (1.0 - z) * y * pb + kt
    new_pj = (1.0 - z) * pa + z * y * pb - kt
    new_pb = (1.0 - y) * pb
    return p.at[tr.a].set(new_pa).at[tr.b].set(new_pb).at[j].set(new_pj)


def _trial(state: ShowerState, u, alpha, t0, amax, order: int, max_trials: int):
    """One veto-algorithm trial of one event: scale, channel, z, acceptance and their bookkeeping.

    ``u`` [7] are the trial's uniform numbers, :data:`TRIAL_UNIFORMS` of
    ``trial_uniforms(event key, state.trial)``.

    Returns ``(state, emit, trial, aux)``: the state with the trial's fields updated (scale,
    trial count, log-probability, reweighting score and record, overflow, done; the
    :data:`EMISSION_FIELDS` are unchanged), whether the branching is to be made
    (:func:`_emission`), the branching itself, and what the cut-off boundary record needs.
    An event that is already done is returned unchanged with ``emit`` false.
    """
    dtype = state.p.dtype
    cap = state.p.shape[0]
    active = ~state.done
    gflat = state.g.reshape(-1)
    gsum = state.gsum
    b0a = beta0() * amax if order > 0 else None
    if b0a is None:
        # fixed coupling: Δ̂(t, t') = (t'/t)^Σg
        t_new = state.t * jnp.exp(safe_div(jnp.log1p(-u[0]), gsum, fill=-jnp.inf))
        running = jnp.ones((), dtype)
    else:
        # running overestimate (module docstring): Δ̂(t, t') = (w(t')/w(t))^(Σg/(b0 α̂₀))
        log_w = safe_log(1.0 + b0a * jnp.log(state.t / t0)) + safe_div(b0a * jnp.log1p(-u[0]), gsum, fill=-jnp.inf)
        running = jnp.exp(log_w)  # w(t_new); α̂(t_new) = amax / w(t_new)
        t_new = t0 * jnp.exp((running - 1.0) / b0a)
    physical = t_new > t0

    # channel (dipole end) with probability g_c/Σg
    cum = state.cum
    # counted in int32: with jax_enable_x64 a sum of booleans is int64, twice the bytes of the
    # trial's widest reduction
    idx = jnp.minimum(jnp.sum(cum <= u[1] * cum[-1], dtype=jnp.int32), 2 * cap - 1)
    a = idx // 2
    s = idx % 2
    b = jnp.maximum(state.partner[a, s], 0)
    q2 = 2.0 * minkowski_dot(state.p[a], state.p[b])
    disc = safe_sqrt(1.0 - safe_div(4.0 * t0, q2, fill=1.0))
    one_m_zp = 0.5 * (1.0 - disc)
    ratio_z = safe_div(0.5 * (1.0 + disc), one_m_zp, fill=1.0)
    lg = safe_log(ratio_z)
    is_g = state.pid[a] == 21
    w_soft = jnp.where(is_g, CA * lg, 2.0 * CF * lg)
    w_split = jnp.where(is_g, 0.5 * TR * NF * disc, 0.0)
    w_tot = w_soft + w_split
    split = is_g & (u[2] * jax.lax.stop_gradient(w_tot) >= jax.lax.stop_gradient(w_soft))
    # z from the overestimates by inversion (arXiv:1411.4085, GenerateZ)
    z_soft = 1.0 - one_m_zp * jnp.exp(u[3] * lg)
    z_split = one_m_zp + disc * u[3]
    z = jnp.where(split, z_split, z_soft)

    y, inside, kernel_ratio = _kernel_ratio(t_new, q2, z, split, is_g)
    in_range = physical & inside
    a_t = alpha_s(jnp.where(physical, t_new, t0), alpha, order=order)
    r = jnp.where(in_range, a_t * running / amax * kernel_ratio, 0.0)
    accept = in_range & (u[5] < jax.lax.stop_gradient(r))

    # log-probability of the discrete decisions (channel, kernel, accept/reject); the trial
    # scale, z and φ are reparameterised and carry pathwise derivatives instead.
    lp_channel = safe_log(safe_div(gflat[idx], gsum, fill=1.0))
    lp_kernel = jnp.where(is_g, safe_log(safe_div(jnp.where(split, w_split, w_soft), w_tot, fill=1.0)), 0.0)
    lp_accept = jnp.where(accept, safe_log(r), safe_log(1.0 - r))
    log_prob = state.log_prob + jnp.where(physical & active, lp_channel + lp_kernel + lp_accept, 0.0)

    # exact reweighting score: accepted f'/f = ρ, rejected (1 − rρ)/(1 − r), ρ = αs'(t)/αs(t)
    dlog_as = jax.lax.stop_gradient(dlog_alpha_s(jnp.where(physical, t_new, t0), alpha, order=order))
    r_sg = jax.lax.stop_gradient(r)
    score = state.score + jnp.where(
        in_range & active, jnp.where(accept, dlog_as, -safe_div(r_sg * dlog_as, 1.0 - r_sg)), 0.0
    )
    max_records = state.rec_t.shape[0]
    record = in_range & (r > 0) & active
    room_rec = state.n_rec < max_records
    write = record & room_rec
    row = jnp.where(write, state.n_rec, max_records)  # out of range: not written
    rec_t = state.rec_t.at[row].set(jax.lax.stop_gradient(t_new), mode="drop")
    rec_r = state.rec_r.at[row].set(r_sg, mode="drop")
    rec_acc = state.rec_acc.at[row].set(accept, mode="drop")

    room = state.n < cap
    emit = accept & room & active
    overflow = state.overflow | (accept & ~room & active)
    trial = state.trial + active.astype(jnp.int32)
    done = state.done | (~physical) | overflow | (trial >= max_trials)
    tr = Trial(
        a=a,
        s=s,
        b=b,
        split=split,
        z=z,
        y=y,
        t=t_new,
        phi=_TWO_PI * u[4],
        flavour=jnp.minimum((u[6] * NF).astype(jnp.int32), NF - 1) + 1,
    )
    new = state._replace(
        t=jnp.where(active, jnp.where(physical, t_new, t0), state.t),
        trial=trial,
        log_prob=log_prob,
        score=score,
        rec_t=rec_t,
        rec_r=rec_r,
        rec_acc=rec_acc,
        n_rec=state.n_rec + write.astype(jnp.int32),
        overflow=overflow | (active & physical & (trial >= max_trials)),
        rec_overflow=state.rec_overflow | (record & ~room_rec),
        done=done,
    )
    aux = {"gsum": gsum, "b0a": b0a, "q2": q2, "is_g": is_g, "room": room}
    return new, emit, tr, aux


def _emission(em: dict, tr: Trial, t0, amax) -> dict:
    """The trial's branching applied to one event's :data:`EMISSION_FIELDS` (a dict).

    Momenta by the recoil of arXiv:hep-ph/9605323 eq. 5.3, colour flow in leading colour, the
    new parton in slot n (the caller checks that there is room), overestimates of the changed
    dipole ends, and the emission record (if ``em["hist"]`` is not None).
    """
    p, pid_in, col_in, partner_in = em["p"], em["pid"], em["col"], em["partner"]
    cap = p.shape[0]
    a, s, b, split = tr.a, tr.s, tr.b, tr.split
    j = jnp.minimum(em["n"], cap - 1)
    p_new = _branched_momenta(p, tr, j, tr.t, tr.y)

    # colour flow: a gluon j is inserted between a and b on side s; a g → q q̄ splitting cuts
    # the gluon's colour line, a keeps the side facing b, j takes the other side.
    tag = em["next_tag"]
    col_a = col_in[a]
    other = 1 - s
    zero2 = jnp.zeros(2, jnp.int32)
    col_a_g = col_a.at[s].set(tag)
    col_j_g = zero2.at[s].set(col_a[s]).at[other].set(tag)
    col_a_q = col_a.at[other].set(0)
    col_j_q = zero2.at[other].set(col_a[other])
    col = col_in.at[a].set(jnp.where(split, col_a_q, col_a_g)).at[j].set(jnp.where(split, col_j_q, col_j_g))
    pid_a_q = jnp.where(s == 0, tr.flavour, -tr.flavour)
    pid = pid_in.at[a].set(jnp.where(split, pid_a_q, pid_in[a])).at[j].set(jnp.where(split, -pid_a_q, 21))
    m = partner_in[a, other]
    partner_g = partner_in.at[a, s].set(j).at[j, other].set(a).at[j, s].set(b).at[b, other].set(j)
    partner_q = partner_in.at[a, other].set(-1).at[j, other].set(m).at[j, s].set(-1)
    partner_q = partner_q.at[jnp.where(m >= 0, m, cap), s].set(j, mode="drop")
    partner = jnp.where(split, partner_q, partner_g)

    # Overestimates of the dipole ends whose invariant mass or partner changed: both ends of
    # a, j and b, and the ends facing them from outside. Of the latter only two are not among
    # the former: on side s the partner of b, on the other side that of a (gluon emission; a
    # splitting gives a's former partner there to j); the others are a, j or b themselves.
    outer = jnp.where(split, partner[j, other], partner[a, other])
    own_x = jnp.repeat(jnp.stack([a, j, b]), 2)
    own_s = jnp.tile(jnp.arange(2, dtype=jnp.int32), 3)
    ends_x = jnp.concatenate([own_x, jnp.stack([partner[b, s], outer])]).astype(jnp.int32)
    ends_s = jnp.concatenate([own_s, jnp.stack([other, s]).astype(jnp.int32)])
    vals = jax.vmap(_end_overestimate, in_axes=(None, None, None, 0, 0, None, None))(
        p_new, pid, partner, jnp.maximum(ends_x, 0), ends_s, t0, amax
    )
    g = em["g"].at[jnp.where(ends_x >= 0, ends_x, cap), ends_s].set(vals, mode="drop")

    hist = em["hist"]
    if hist is not None:
        values = {
            "emitter": a.astype(jnp.int32),
            "spectator": b.astype(jnp.int32),
            "emitted": j.astype(jnp.int32),
            "p_emitter": p[a],
            "p_spectator": p[b],
            "pid_emitter": pid_in[a],
            "pid_spectator": pid_in[b],
            "colour_emitter": col_a,
            "colour_spectator": col_in[b],
            "t": tr.t,
        }
        k = em["n_emissions"]
        hist = {name: hist[name].at[k].set(jax.lax.stop_gradient(values[name]), mode="drop") for name in HISTORY_FIELDS}
    return {
        "p": p_new,
        "pid": pid,
        "col": col,
        "partner": partner,
        "n": em["n"] + 1,
        "g": g,
        **_channel_sums(g),
        "next_tag": tag + jnp.where(split, 0, 1).astype(jnp.int32),
        "n_emissions": em["n_emissions"] + 1,
        "hist": hist,
    }


def emission_fields(state: ShowerState) -> dict:
    """The :data:`EMISSION_FIELDS` of a state, as the dict :func:`_emission` takes."""
    return {name: getattr(state, name) for name in EMISSION_FIELDS}


def _step(state: ShowerState, key, alpha, t0, amax, order: int, max_trials: int) -> ShowerState:
    """One trial of one event and, if accepted, its branching: :func:`_trial` + :func:`_emission`."""
    # jax.random itself here (the per-event loop, the reference and the derivative path): the
    # fused hash of trial_uniforms gives the same bits but is duplicated by XLA into its consumers
    # unless it is an operand of the loop, as in the refilling loop (layer.py)
    u = jax.random.uniform(jax.random.fold_in(key, state.trial), (TRIAL_UNIFORMS,), dtype=state.p.dtype)
    new, emit, tr, aux = _trial(state, u, alpha, t0, amax, order, max_trials)
    em = _emission(emission_fields(new), tr, t0, amax)
    picked = jax.tree.map(lambda x, old: jnp.where(emit, x, old), em, emission_fields(new))
    new = new._replace(**picked)
    bnd = state.bnd
    if bnd is not None:
        # Cut-off boundary (docs/shower.md, "Event derivatives"): this trial stays above t0 iff
        # 1 − u₀ > U* = Δ̂(t, t0), the overestimate's no-emission probability down to t0. U*
        # moves with the params; at the boundary the trial sits at t0, where it branches with
        # probability r(t0) using this trial's channel, z, φ and flavour, and the shower ends.
        gsum, b0a = aux["gsum"], aux["b0a"]
        if b0a is None:
            log_u_star = gsum * jnp.log(t0 / state.t)
        else:
            log_u_star = -safe_div(gsum, b0a) * safe_log(1.0 + b0a * jnp.log(state.t / t0))
        y0, inside0, kernel_ratio0 = _kernel_ratio(t0, aux["q2"], tr.z, tr.split, aux["is_g"])
        # α̂(t0) = amax: w(t0) = 1 for the running overestimate, amax = αs for a fixed coupling
        r0 = jnp.where(inside0 & aux["room"], alpha_s(t0, alpha, order=order) / amax * kernel_ratio0, 0.0)
        j = jnp.minimum(state.n, state.p.shape[0] - 1)
        values = {
            "u_star": jnp.exp(log_u_star),
            "r": jax.lax.stop_gradient(r0),
            "n_pre": state.n,
            "p_pre": jax.lax.stop_gradient(state.p),
            "pid_pre": state.pid,
            "col_pre": state.col,
            "p_em": jax.lax.stop_gradient(_branched_momenta(state.p, tr, j, t0, y0)),
            "pid_em": em["pid"],
            "col_em": em["col"],
        }
        row = state.trial % bnd["u_star"].shape[0]
        new = new._replace(bnd={name: bnd[name].at[row].set(values[name]) for name in BOUNDARY_FIELDS})
    return new


def shower_one_event(
    p,
    pid,
    col,
    mask,
    key,
    alpha,
    t0,
    *,
    order: int,
    max_records: int,
    max_trials: int,
    record_history: bool = False,
    boundary: int = 0,
    capacity: int | None = None,
):
    """Shower one event (to be ``vmap``ped): returns the final ``ShowerState``.

    Args:
      p: [P, 4] massless momenta (E, px, py, pz) GeV.
      pid: [P] int32; col: [P, 2] int32 LHE colour tags; mask: [P] bool.
      key: the event's PRNG key.
      alpha: αs(m_Z); t0: cut-off in GeV² (0-d, dtype of p).
      order: loops in the running of αs (static); max_records: reweighting record size
        (static); max_trials: bound on the number of trials (static).
      record_history: also fill ``ShowerState.hist``, the record of every accepted emission
        (:data:`HISTORY_FIELDS`; static; the momenta and decisions are the same either way).
      boundary: B > 0 also fills ``ShowerState.bnd``, the cut-off boundary record of the last B
        trials (:data:`BOUNDARY_FIELDS`; static; the momenta and decisions are the same either way).
      capacity: static C ≥ P, the particle slots of the shower (default P): the inputs are
        padded with empty slots to C (:func:`initial_state`).
    """
    amax = alpha_s(t0, alpha, order=order)
    state = initial_state(p, pid, col, mask, t0, amax, max_records, record_history, boundary, capacity)
    state = state._replace(done=state.t <= t0)
    return jax.lax.while_loop(
        lambda st: ~st.done,
        lambda st: _step(st, key, alpha, t0, amax, order, max_trials),
        state,
    )
