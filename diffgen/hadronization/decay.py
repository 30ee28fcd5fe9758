"""Cluster decay: angle models, two-body kinematics, threshold rule, unstable-hadron decays.

A cluster C of mass M made of a quark q_a and an antiquark q̄_b decays by popping a pair
q_f q̄_f from the vacuum (f = d, u, s with weights 1 : 1 : γ_s) into the mesons
h₁ = (q_a q̄_f) and h₂ = (q_f q̄_b), each a vector meson with probability ``p_vector``
(Herwig's cluster decay, arXiv:0803.0883 §7.3, with the spin/phase-space weights replaced by
these two parameters). In the cluster rest frame h₁ moves at polar angle θ to the quark
constituent's direction n̂ and azimuth φ about it (the frame of
:func:`diffgen.kinematics.rotate_from_z`); h₂ recoils. With exact two-body kinematics
``|p*| = λ^{1/2}(M², m₁², m₂²)/(2M)`` and a boost to the lab both hadrons are on shell and
four-momentum is conserved by construction.

The angle model is pluggable (:class:`AngleModel`): the reference model below, or a learned
generator/flow from :mod:`diffgen.hadronization.learned`.

Reference angles (in the spirit of Herwig's ClDir/ClSmr option, arXiv:0803.0883 eq. 7.6):
cos θ follows the truncated exponential ``p(c) ∝ exp((c − 1)/σ)`` on [−1, 1], sampled by the
inverse CDF ``c = 1 + σ log(1 − u(1 − e^{−2/σ}))`` (pathwise differentiable in the smearing σ;
σ → ∞ is isotropic, σ → 0 aligns h₁ with the quark); φ ~ U(−π, π).

Threshold rule (documented, never dropping a cluster): if M is below m₁ + m₂ for the sampled
types, the pseudoscalar pair of the popped flavour that minimises m₁ + m₂ is used; if M is
below even that, the cluster becomes the lightest single meson (q_a q̄_b) and exchanges
momentum with the other clusters of the event by a common rescaling of all three-momenta in
their rest frame (see :func:`_reshuffle`; in the spirit of Herwig's reshuffling,
arXiv:0803.0883 §6.4 and §7.3). Massless b and c constituents make many heavy-flavour clusters lighter
than the lightest B or D meson; they become single hadrons by this rule.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diffgen import kinematics as kin
from diffgen.core import is_traced
from diffgen.hadronization import formation
from diffgen.hadronization import hadrons as H
from diffgen.hadronization.formation import (
    Clusters,
    active_row_capacities,
    active_rows_tier,
    constituent_axis,
    on_active_rows,
    popped_flavour_logits,
    row_blocks,
    sample_flavour,
    slot_sum,
    to_front,
    uniform,
    uniform_at,
    uniform_block,
)
from diffgen.phasespace.maps import cos_sin_2pi
from diffgen.typing import Array, Key, Params
from diffgen.xla_ops import packed_flags, prefix_sum, select_bit

__all__ = [
    "SMALL_BATCH_ENTRIES",
    "AngleModel",
    "decay_clusters",
    "decay_list_lengths",
    "decay_unstable",
    "reference_angles",
    "smeared_cos_theta",
    "smeared_cos_theta_log_prob",
    "two_body_decay",
]

#: Entries per event of the shorter of the two list lengths that :func:`decay_unstable` uses
#: for batches of fewer than ``formation.ACTIVE_ROW_MIN_EVENTS`` events (the other holds every
#: slot). About 11, 5.5, 1.9 and 0.8 hadrons per event are unstable before rounds 1–4 at
#: 91.2 GeV: after the first round or two every round fits.
SMALL_BATCH_ENTRIES = 8


class AngleModel(NamedTuple):
    """A model of the decay angles of a cluster.

    Attributes:
      init: ``init(key) -> params``.
      sample: ``sample(params, key, p_cluster, axis) -> (cos_theta, phi)`` with
        ``p_cluster`` [..., 4] (lab, GeV), ``axis`` [..., 3] the unit quark direction in the
        cluster rest frame, and outputs [...] (cos θ in [−1, 1], φ in [−π, π)).
      name: a label (``"reference"``, ``"gan"``, ``"flow"``).
    """

    init: Callable[[Key], Params]
    sample: Callable[[Params, Key, Array, Array], tuple[Array, Array]]
    name: str = "model"


def smeared_cos_theta(u: Array, smearing: Array) -> Array:
    """Inverse CDF of ``p(c) ∝ exp((c − 1)/σ)`` on [−1, 1] (truncated exponential).

    Args:
      u: [...] uniform numbers in [0, 1).
      smearing: σ > 0 (GeV-free), broadcast-compatible.

    Returns:
      [...] cos θ; differentiable in σ (pathwise).
    """
    smearing = jnp.asarray(smearing, u.dtype)
    return jnp.clip(1.0 + smearing * jnp.log1p(u * jnp.expm1(-2.0 / smearing)), -1.0, 1.0)


def smeared_cos_theta_log_prob(c: Array, smearing: Array) -> Array:
    """Log-density of the truncated exponential of :func:`smeared_cos_theta`.

    ``log p(c) = (c − 1)/σ − log σ − log(1 − exp(−2/σ))`` for c in [−1, 1].

    Args:
      c: [...] cos θ values in [−1, 1].
      smearing: σ > 0 (dimensionless), broadcast-compatible with ``c``.

    Returns:
      [...] log-density, dtype of ``c``; differentiable in σ.
    """
    smearing = jnp.asarray(smearing, c.dtype)
    return (c - 1.0) / smearing - jnp.log(smearing) - jnp.log(-jnp.expm1(-2.0 / smearing))


def reference_angles(*, isotropic: bool = False) -> AngleModel:
    """The reference angle model: smeared around the quark direction, or isotropic.

    Args:
      isotropic: ignore the smearing and sample cos θ ~ U(−1, 1).

    Returns:
      :class:`AngleModel` with params ``{"smearing": σ}`` (default 0.78, Herwig's ClSmrLight).
    """

    def init(key: Key) -> Params:
        del key
        return {"smearing": jnp.asarray(0.78)}

    def sample(params: Params, key: Key, p_cluster: Array, axis: Array) -> tuple[Array, Array]:
        del axis
        dtype = p_cluster.dtype
        u = uniform(key, (*p_cluster.shape[:-1], 2), dtype)
        if isotropic:
            cos = 2.0 * u[..., 0] - 1.0
        else:
            cos = smeared_cos_theta(u[..., 0], params["smearing"])
        return cos, (2.0 * u[..., 1] - 1.0) * jnp.pi

    return AngleModel(init=init, sample=sample, name="isotropic" if isotropic else "reference")


def two_body_decay(p_cluster: Array, axis: Array, cos_theta: Array, phi: Array, m1: Array, m2: Array):
    """Exact two-body decay M → m₁ m₂ at given angles, boosted to the lab.

    Args:
      p_cluster: [..., 4] parent momentum (E, px, py, pz), GeV, timelike.
      axis: [..., 3] unit vector in the parent rest frame from which θ is measured.
      cos_theta, phi: [...] direction of daughter 1 relative to ``axis``.
      m1, m2: [...] daughter masses, GeV (M ≥ m₁ + m₂; below threshold |p*| = 0).

    Returns:
      ``(p1, p2)``, [..., 4] lab momenta (PDG Kinematics eq. 49.17).
    """
    m = kin.mass(p_cluster)
    q = kin.two_body_momentum(m, m1, m2)
    sin = kin.safe_sqrt(1.0 - cos_theta**2)
    zero = jnp.zeros_like(q)
    local = jnp.stack([zero, sin * jnp.cos(phi), sin * jnp.sin(phi), cos_theta], axis=-1)
    direction = kin.rotate_from_z(local, axis)[..., 1:]
    k = q[..., None] * direction
    e1 = kin.safe_sqrt(q**2 + m1**2)
    e2 = kin.safe_sqrt(q**2 + m2**2)
    p1 = jnp.concatenate([e1[..., None], k], axis=-1)
    p2 = jnp.concatenate([e2[..., None], -k], axis=-1)
    return kin.boost_from_rest_frame(p1, p_cluster), kin.boost_from_rest_frame(p2, p_cluster)


def _choose_types(params: Params, u: Array, fq: Array, fqb: Array, m: Array, mask: Array, k_sum: int | None = None):
    """Hadron types of each cluster of one event with the threshold fallbacks; u [K, 3] uniforms
    (sums over k_sum slots, :func:`slot_sum`)."""
    dtype = m.dtype
    logits = popped_flavour_logits(jnp.asarray(params["gamma_s"], dtype))
    f = sample_flavour(u[:, 0], logits)
    p_vec = jnp.asarray(params["p_vector"], dtype)
    uv = u[:, 1:]
    v = (uv < p_vec).astype(jnp.int32)
    logp_v = jnp.where(v == 1, kin.safe_log(p_vec, -jnp.inf), kin.safe_log(1.0 - p_vec, -jnp.inf))
    fq1, fqb1 = jnp.clip(fq, 1, 5), jnp.clip(fqb, 1, 5)
    pid1 = H.meson_pid(fq1, f, v[:, 0])
    pid2 = H.meson_pid(f, fqb1, v[:, 1])
    m1, m2 = H.hadron_mass(pid1, dtype), H.hadron_mass(pid2, dtype)
    ok = m > m1 + m2
    flav = jnp.arange(1, 4, dtype=jnp.int32)
    c1 = H.meson_pid(fq1[:, None], flav[None, :], 0)
    c2 = H.meson_pid(flav[None, :], fqb1[:, None], 0)
    sums = H.hadron_mass(c1, dtype) + H.hadron_mass(c2, dtype)
    best = jnp.argmin(sums, axis=1)
    fb_ok = m > jnp.min(sums, axis=1)
    use_fb = ~ok & fb_ok
    pid1 = jnp.where(use_fb, jnp.take_along_axis(c1, best[:, None], 1)[:, 0], pid1)
    pid2 = jnp.where(use_fb, jnp.take_along_axis(c2, best[:, None], 1)[:, 0], pid2)
    light = mask & ~ok & ~fb_ok
    single = H.meson_pid(fq1, fqb1, 0)
    logp = slot_sum(jnp.where(mask & ok, jax.nn.log_softmax(logits)[f - 1] + logp_v[:, 0] + logp_v[:, 1], 0.0), k_sum)
    return pid1, pid2, light, single, logp


def _reshuffle(p: Array, light: Array, mass_single: Array, mask: Array, n_newton: int = 60, k_sum: int | None = None):
    """Put light clusters on their single-hadron mass shell by a common momentum rescaling.

    In the rest frame of the event's clusters (total mass W) every three-momentum is scaled
    by one factor ξ solving ``Σ_i sqrt(m_i² + ξ² |k_i|²) = W`` (Newton's method from ξ = 1 until
    the step is below a few ulps, at most ``n_newton`` steps; the function is convex and
    increasing), with m_i the single-hadron mass of a light cluster and the unchanged cluster
    mass otherwise (the constituent-mass reshuffling of Herwig, arXiv:0803.0883 §6.4). Applied
    only to events with a light cluster; fails (flagged, momenta kept) only if W < Σ m_i.
    The sums run over ``k_sum`` slots (:func:`slot_sum`).
    """
    m_target = jnp.where(light, mass_single, kin.mass(p))
    m_target = jnp.where(mask, m_target, 0.0)
    total = slot_sum(jnp.where(mask[:, None], p, 0.0), k_sum)
    w = kin.mass(total)
    k = jnp.where(mask[:, None], kin.boost_to_rest_frame(p, total[None, :]), 0.0)
    k2 = kin.p2(k)

    def newton(xi, m_target, k2, w):
        e = kin.safe_sqrt(m_target**2 + xi**2 * k2)
        f = slot_sum(jnp.where(mask, e, 0.0), k_sum) - w
        fp = slot_sum(jnp.where(mask, xi * kin.safe_div(k2, e), 0.0), k_sum)
        return jnp.maximum(xi - kin.safe_div(f, fp), 0.0)

    # Iterate to convergence without derivatives, then take one Newton step with them: at the
    # root the step's derivative is the implicit one, dξ = −(∂f/∂θ)/(∂f/∂ξ), so reverse mode
    # need not go through the loop (a while_loop, which it could not).
    consts = jax.lax.stop_gradient((m_target, k2, w))
    tol = 4 * jnp.finfo(p.dtype).eps

    def not_done(c):
        i, xi, prev = c
        return (i < n_newton) & (jnp.abs(xi - prev) > tol * jnp.maximum(xi, 1.0))

    def step(c):
        i, xi, _ = c
        return i + 1, newton(xi, *consts), xi

    one = jnp.ones((), p.dtype)
    _, xi, _ = jax.lax.while_loop(not_done, step, (jnp.int32(0), newton(one, *consts), one))
    xi = newton(xi, m_target, k2, w)
    ok = w > slot_sum(m_target, k_sum)
    e = kin.safe_sqrt(m_target**2 + xi**2 * k2)
    new = jnp.concatenate([e[:, None], xi * k[:, 1:]], axis=-1)
    new = kin.boost_from_rest_frame(new, total[None, :])
    any_light = jnp.any(light)
    p = jnp.where((any_light & ok & mask)[:, None], new, p)
    return p, any_light & ~ok


def _prepare_one(params, u, p_q, p_qb, fq, fqb, mask, k_sum: int | None = None):
    """Types, threshold rule and reshuffling of the clusters of one event (sums over k_sum slots)."""
    p_c = jnp.where(mask[:, None], p_q + p_qb, 0.0)
    m = kin.mass(p_c)
    pid1, pid2, light, single, logp = _choose_types(params, u, fq, fqb, m, mask, k_sum)
    dtype = p_c.dtype
    dummy = jnp.zeros_like(p_c).at[:, 0].set(1.0)
    axis = constituent_axis(jnp.where(mask[:, None], p_q, 0.0), jnp.where(mask[:, None], p_c, dummy))
    m_single = H.hadron_mass(single, dtype)
    p_c, failed = _reshuffle(p_c, light, m_single, mask, k_sum=k_sum)
    return p_c, axis, pid1, pid2, light, single, logp, failed


def _pad_prepared(out, k: int):
    """Outputs of :func:`_prepare_one` for the first K_w cluster slots, padded to K slots as
    the empty slots come out of it: no momentum, axis ẑ, not light (their types are not used)."""
    p_c, axis, pid1, pid2, light, single, logp, failed = out
    pad = k - p_c.shape[1]
    if not pad:
        return out

    def padded(x, fill=0):
        return jnp.pad(x, ((0, 0), (0, pad)) + ((0, 0),) * (x.ndim - 2), constant_values=fill)

    axis = jnp.concatenate([axis, jnp.zeros((axis.shape[0], pad, 3), axis.dtype).at[..., 2].set(1.0)], axis=1)
    return padded(p_c), axis, padded(pid1), padded(pid2), padded(light, False), padded(single), logp, failed


def _assemble(p_c, axis, cos, phi, pid1, pid2, light, single, mask):
    """Two-body kinematics of every cluster and the interleaved primary-hadron slots."""
    dtype = p_c.dtype
    two = mask & ~light
    # Padding and single-hadron clusters get a harmless dummy parent (at rest, 1 GeV) so that
    # the boosts stay finite; their outputs are masked below.
    dummy = jnp.zeros_like(p_c).at[..., 0].set(1.0)
    p_safe = jnp.where(two[..., None], p_c, dummy)
    m1 = jnp.where(two, H.hadron_mass(pid1, dtype), 0.0)
    m2 = jnp.where(two, H.hadron_mass(pid2, dtype), 0.0)
    h1, h2 = two_body_decay(p_safe, axis, cos, phi, m1, m2)
    slot1_p = jnp.where(two[..., None], h1, jnp.where((mask & light)[..., None], p_c, 0.0))
    slot2_p = jnp.where(two[..., None], h2, 0.0)
    slot1_pid = jnp.where(two, pid1, jnp.where(mask & light, single, 0))
    slot2_pid = jnp.where(two, pid2, 0)
    n = p_c.shape[0]
    p_out = jnp.stack([slot1_p, slot2_p], axis=2).reshape(n, -1, 4)
    pid_out = jnp.stack([slot1_pid, slot2_pid], axis=2).reshape(n, -1).astype(jnp.int32)
    mask_out = jnp.stack([mask, two], axis=2).reshape(n, -1)
    return p_out, pid_out, mask_out


def check_clusters(clusters: Clusters, params: Params) -> None:
    """Raise ``ValueError`` for concrete clusters with unknown flavours or below the two-hadron threshold.

    Args:
      clusters: the clusters to check.
      params: the decay params (``gamma_s``, ``p_vector`` are not needed; only the table).
    """
    del params
    if any(is_traced(x) for x in jax.tree_util.tree_leaves(clusters)):
        return
    mask = np.asarray(clusters.mask)
    for name in ("flav_q", "flav_qbar"):
        f = np.asarray(getattr(clusters, name))[mask]
        bad = (f < 1) | (f > 5)
        if bad.any():
            raise ValueError(
                f"decay_clusters: clusters.{name} must be a quark flavour code 1..5, got {sorted(set(f[bad].tolist()))}"
            )
    fq = np.asarray(clusters.flav_q)
    fqb = np.asarray(clusters.flav_qbar)
    try:
        m = np.asarray(clusters.mass)
    except jax.errors.TracerArrayConversionError:  # momenta traced while flavours are not
        return
    table = H.meson_table()[..., 0]
    mass = np.nan_to_num(H.TABLE["mass"])
    lightest = np.full(m.shape, np.inf)
    for f in (1, 2, 3):
        s = mass[np.abs(table[np.clip(fq, 1, 5) - 1, f - 1])] + mass[np.abs(table[f - 1, np.clip(fqb, 1, 5) - 1])]
        lightest = np.minimum(lightest, s)
    below = mask & ~(m > lightest)
    if below.any():
        e, k = np.argwhere(below)[0]
        raise ValueError(
            f"decay_clusters: cluster mass must exceed the two-hadron threshold; event {e} cluster {k} has "
            f"M = {m[e, k]:.4g} GeV < {lightest[e, k]:.4g} GeV ({int(below.sum())} clusters below threshold; "
            "use on_threshold='reshuffle' to turn them into single hadrons)"
        )


def decay_clusters(
    params: Params,
    key: Key,
    clusters: Clusters,
    angle_model: AngleModel | None = None,
    *,
    on_threshold: str = "error",
    record_history: bool = False,
    working_clusters: int | None = None,
) -> tuple[Array, Array, Array, dict[str, Array]]:
    """Decay every cluster into two hadrons (or one, by the threshold rule).

    Args:
      params: ``{"gamma_s", "p_vector", "decay": angle-model params}``.
      key: PRNG key.
      clusters: [N, K] clusters.
      angle_model: the angle model (default :func:`reference_angles`).
      on_threshold: ``"error"`` (concrete clusters below the lightest two-hadron threshold
        raise ``ValueError``) or ``"reshuffle"`` (the documented single-hadron rule).
      record_history: also return ``info["cluster_p"]`` [N, K, 4] (static): the cluster
        momenta that decay, after the reshuffling of the threshold rule (GeV).
      working_clusters: static K_w ≤ K (default K): the types, the reshuffling and the
        two-body decays of an event without clusters beyond slot K_w run on its first K_w
        slots, those of the few other events on all K (:func:`~diffgen.hadronization.formation.on_active_rows`;
        all events on all K when they are not few). The result is the same for every K_w
        (pids, masks, flags; momenta and log-probabilities to rounding, as XLA contracts
        multiply-adds differently for another width); one that holds the clusters of nearly
        every event (at the front of the slots, as
        :func:`~diffgen.hadronization.formation.form_clusters` leaves them) saves the work on
        the empty slots. The angle model always sees all K slots.

    Returns:
      ``(p, pid, mask, info)``: primary hadrons p [N, 2K, 4] (slots 2k, 2k+1 belong to
      cluster k), pid [N, 2K] int32, mask [N, 2K] bool, and ``info`` with ``"logp"`` [N]
      (log-probability of the flavour/multiplet choices), ``"reshuffle_failed"`` [N] bool,
      ``"n_single"`` [N] int32 (clusters turned into one hadron) and ``"angles"``
      [N, K, 2] (cos θ, φ of each cluster's decay).
    """
    if on_threshold not in ("error", "reshuffle"):
        raise ValueError(f"decay_clusters: on_threshold must be 'error' or 'reshuffle', got {on_threshold!r}")
    n, k = clusters.mask.shape
    kw = k if working_clusters is None else working_clusters
    if not isinstance(kw, int) or isinstance(kw, bool) or kw < 1:
        raise ValueError(f"decay_clusters: working_clusters must be an int >= 1 or None, got {working_clusters!r}")
    kw = min(kw, k)
    angle_model = reference_angles() if angle_model is None else angle_model
    check = check_clusters if on_threshold == "error" else _check_flavours
    check(clusters, params)
    k_types, k_angles = jax.random.split(key)
    dtype = clusters.p_q.dtype
    inputs = (clusters.p_q, clusters.p_qbar, clusters.flav_q, clusters.flav_qbar, clusters.mask)

    def prepare(rows, width, x):
        # Element (event, slot) of one draw of shape [N, K, 3], for the given events and slots.
        u = uniform_block(k_types, (n, k, 3), (0, 0, 0), (x[0].shape[0], width, 3), dtype, rows=rows)
        out = jax.vmap(lambda *a: _prepare_one(params, *a, k_sum=k))(u, *(y[:, :width] for y in x))
        return _pad_prepared(out, k)

    def assemble(width, c, prepared):
        p_c, axis, pid1, pid2, light, single = prepared[:6]
        cos, phi = c
        out = _assemble(*(y[:, :width] for y in (p_c, axis, cos, phi, pid1, pid2, light, single, prepared[-1])))
        return tuple(jnp.pad(y, ((0, 0), (0, 2 * (k - width))) + ((0, 0),) * (y.ndim - 2)) for y in out)

    events = jnp.arange(n, dtype=jnp.int32)
    sizes = active_row_capacities(n) if kw < k else ()
    big = jnp.any(clusters.mask[:, kw:], axis=-1)
    # Branch i < len(sizes): every event on the first K_w slots, those with clusters beyond on
    # all K in the rows of set i, the smallest that holds them; last branch: every event on all K.
    tier = active_rows_tier(big, sizes) if sizes else jnp.int32(-1)

    def split_work(width_fn):
        def few(size):
            def fn(*a):
                small = width_fn(kw, events, *a)
                return on_active_rows(lambda base, r: width_fn(k, r[0], *r[1:]), small, (events, *a), big, size)

            return fn

        def full(*a):
            return width_fn(k, events, *a)

        if not sizes:
            return full
        return lambda *a: jax.lax.switch(jnp.where(tier >= 0, tier, len(sizes)), [few(s) for s in sizes] + [full], *a)

    prepared = split_work(lambda w, rows, *x: prepare(rows, w, x))(*inputs)
    p_c, axis, pid1, pid2, light, single, logp, failed = prepared
    two = clusters.mask & ~light
    p_safe = jnp.where(two[..., None], p_c, jnp.zeros_like(p_c).at[..., 0].set(1.0))
    cos, phi = angle_model.sample(params["decay"], k_angles, p_safe, axis)
    cos, phi = cos.astype(dtype), phi.astype(dtype)
    per_event = (p_c, axis, pid1, pid2, light, single, clusters.mask)
    p, pid, mask = split_work(lambda w, rows, c, x: assemble(w, c, x))((cos, phi), per_event)
    info = {
        "logp": logp,
        "reshuffle_failed": failed,
        "n_single": jnp.sum(clusters.mask & light, axis=-1, dtype=jnp.int32),
        "angles": jnp.stack([cos, phi], axis=-1),
    }
    if record_history:
        info["cluster_p"] = jax.lax.stop_gradient(jnp.where(clusters.mask[..., None], p_c, 0.0))
    return p, pid, mask, info


def _check_flavours(clusters: Clusters, params: Params) -> None:
    del params
    if any(is_traced(x) for x in (clusters.flav_q, clusters.flav_qbar, clusters.mask)):
        return
    mask = np.asarray(clusters.mask)
    for name in ("flav_q", "flav_qbar"):
        f = np.asarray(getattr(clusters, name))[mask]
        bad = (f < 1) | (f > 5)
        if bad.any():
            raise ValueError(
                f"decay_clusters: clusters.{name} must be a quark flavour code 1..5, got {sorted(set(f[bad].tolist()))}"
            )


def decay_unstable(
    key: Key,
    p: Array,
    pid: Array,
    mask: Array,
    *,
    n_rounds: int = 8,
    history_labels: Array | None = None,
    history_capacity: int | None = None,
    working_capacity: int | None = None,
    capacity: int | None = None,
):
    """Decay unstable hadrons through the table's two-body channels, isotropically.

    The particles are first moved to the front of the slots (in slot order, so the free slots
    are the last ones). Each round then decays every unstable particle at once: daughter 1
    replaces the parent and the second daughters are appended after the last particle, in
    slot order of their parents (overflow is flagged, the parent then stays). A round works on
    a list of the unstable particles of a block of events (:func:`decay_list_lengths`), which
    the round before built from its decays, not on the slots of the events. Batches of fewer
    than ``formation.ACTIVE_ROW_MIN_EVENTS`` events (read when traced) have a shorter compile:
    two list lengths (:data:`SMALL_BATCH_ENTRIES` per event, and every slot) instead of those
    of :func:`decay_list_lengths`, on all C slots (``working_capacity`` is not used).

    Args:
      key: PRNG key.
      p: [N, S, 4] hadron momenta (on shell), GeV.
      pid: [N, S] int32.
      mask: [N, S] bool.
      n_rounds: static number of rounds (8 suffices for B* → B → D → K → K_S → π⁰ → γ).
      history_labels: optional int32 [N, S] label of every particle (e.g. its cluster index),
        moved with it; when given, the decays are recorded and returned as a fifth output
        (below); the momenta are the same either way.
      history_capacity: U, the size of the record of decayed hadrons (default C).
      working_capacity: static W ≤ C (default C): the decays run on the first W slots and
        are repeated on all C slots only when some event of the batch does not fit into W
        (then both are computed). The result is the same for every W; a W that holds the
        particles of nearly every event saves the work on the empty slots. Batches below
        ``formation.ACTIVE_ROW_MIN_EVENTS`` events run on all C slots.
      capacity: static C ≥ S, the slots of the output (default S). The result is that of
        inputs padded with empty slots to C, without writing and sorting those slots first.

    The uniforms of the k-th unstable particle (in slot order) of an event in round r are
    element (event, r, k) of one draw ``jax.random.uniform(key, (N, n_rounds, C, 3))``
    (channel, cos θ, φ in the parent's rest frame); only the entries used are hashed.

    Returns:
      ``(p, pid, mask, overflow)`` with C slots ([N, C, 4], [N, C], [N, C]; p and pid are
      zero in the empty slots) and overflow [N] bool; with ``history_labels`` also a dict:
      ``label`` [N, C] (the labels, inherited by decay products), ``parent`` [N, C] int32
      (row in the record of the hadron whose decay made the particle, −1 for none), the
      record of decayed hadrons ``decayed_p`` [N, U, 4] (momentum before the decay, GeV),
      ``decayed_pid``, ``decayed_parent``, ``decayed_label`` [N, U] int32, ``decayed_mask``
      [N, U] bool, and ``record_overflow`` [N] bool (more than U decays; the later ones are
      not recorded). A decay with one daughter (a relabelling such as K⁰ → K_S) is recorded
      like a two-body decay.
    """
    n, n_in = mask.shape
    if not isinstance(n_rounds, int) or n_rounds < 0:
        raise ValueError(f"decay_unstable: n_rounds must be an int >= 0, got {n_rounds!r}")
    cap = n_in if capacity is None else capacity
    if not isinstance(cap, int) or cap < n_in:
        raise ValueError(f"decay_unstable: capacity must be an int >= the {n_in} input slots or None, got {capacity!r}")
    width = cap if working_capacity is None else working_capacity
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"decay_unstable: working_capacity must be an int >= 1 or None, got {working_capacity!r}")
    width = min(width, cap)
    record = history_labels is not None
    cap_u = 0
    if record:
        cap_u = cap if history_capacity is None else history_capacity
        if not isinstance(cap_u, int) or cap_u < 1:
            raise ValueError(f"decay_unstable: history_capacity must be an int >= 1, got {history_capacity!r}")
        history_labels = jnp.asarray(history_labels, jnp.int32)
    pid = jnp.asarray(pid, jnp.int32)
    shape = (n, n_rounds, cap, 3)
    # A small batch takes less time to run than to compile the rounds for every list length
    # and the repetition on all C slots: two lengths (SMALL_BATCH_ENTRIES per event, and every
    # slot) on all C slots, no working capacity.
    small_batch = n < formation.ACTIVE_ROW_MIN_EVENTS

    def run(w: int, all_slots: bool = False):
        # Particles to the front (the caller checks that none is beyond W): the free slots of
        # an event are then the ones after its n particles, and no round has to search for them.
        # Only the input slots are sorted; the empty slots up to W follow them.
        s = min(w, n_in)
        front = to_front(mask[:, :s])

        def moved(x, fill=0):
            x = jnp.take_along_axis(
                x[:, :s], front.reshape(front.shape + (1,) * (x.ndim - 2)), axis=1, mode="promise_in_bounds"
            )
            return jnp.pad(x, ((0, 0), (0, w - s)) + ((0, 0),) * (x.ndim - 2), constant_values=fill)

        state = {
            "p": moved(p),
            "pid": moved(pid),
            # The particles of an event are its first n slots: the count stands for the mask.
            "n": jnp.sum(mask[:, :s], axis=-1, dtype=jnp.int32),
            "overflow": jnp.zeros((n,), bool),
        }
        if record:
            state.update(
                labels=moved(history_labels, -1),
                parent_of=jnp.full((n, w), -1, jnp.int32),
                decayed_p=jnp.zeros((n, cap_u, 4), p.dtype),
                decayed_pid=jnp.zeros((n, cap_u), jnp.int32),
                decayed_parent=jnp.full((n, cap_u), -1, jnp.int32),
                decayed_label=jnp.full((n, cap_u), -1, jnp.int32),
                decayed_mask=jnp.zeros((n, cap_u), bool),
                n_rec=jnp.zeros((n,), jnp.int32),
                record_overflow=jnp.zeros((n,), bool),
            )
        # The events in blocks (formation.row_blocks), each with one list of the unstable
        # particles of all its events, built once from the slots and then by every round from
        # its own decays: a round works on the block's unstable particles only, never on the
        # W slots of its events. A round runs on the shortest list length (decay_list_lengths)
        # that holds the particles of every block; one without unstable particles is skipped.
        b = row_blocks(n)
        rows = n // b
        state = jax.tree.map(lambda x: x.reshape(b, rows, *x.shape[1:]), state)
        first = jnp.arange(b, dtype=jnp.int32) * rows
        if all_slots:
            lengths = (rows * w,)
        elif small_batch:
            lengths = tuple(sorted({min(SMALL_BATCH_ENTRIES * rows, rows * w), rows * w}))
        else:
            lengths = decay_list_lengths(rows, w)

        def first_list(size):
            return lambda flags: jax.vmap(lambda f: _first_unstable_list(f, size))(flags)

        # The first list is computed on the shortest length that holds every block, too.
        live = jnp.arange(w, dtype=jnp.int32)[None, None, :] < state["n"][..., None]
        unstable = live & ~H.is_stable(state["pid"])
        most = jnp.max(jnp.sum(unstable, axis=(1, 2), dtype=jnp.int32))
        lists = jax.lax.switch(_shortest_holding(most, lengths), [first_list(m) for m in lengths], unstable)

        def branch(length: int):
            def fn(r, st, ls):
                return jax.vmap(
                    lambda f, s_, l_: _unstable_round(key, shape, f, s_, l_, r, length, cap_u),
                )(first, st, ls)

            return fn

        def one_round(carry, r):
            st, ls = carry
            most = jnp.max(ls["total"])
            # Branch 0 skips a round in which no block has an unstable particle.
            index = (most > 0).astype(jnp.int32) + _shortest_holding(most, lengths)
            branches = [lambda r, st, ls: (st, ls)] + [branch(m) for m in lengths]
            return jax.lax.switch(index, branches, r, st, ls), None

        (state, _), _ = jax.lax.scan(one_round, (state, lists), jnp.arange(n_rounds, dtype=jnp.int32))
        state = jax.tree.map(lambda x: x.reshape(n, *x.shape[2:]), state)
        pad = cap - w
        out_mask = jnp.arange(cap, dtype=jnp.int32)[None, :] < state["n"][:, None]
        # Zeros in the empty slots, written by the pass that pads to C: a caller's own masking
        # would be a second pass over the [N, C, 4] output.
        out = (
            jnp.where(out_mask[..., None], jnp.pad(state["p"], ((0, 0), (0, pad), (0, 0))), 0.0),
            jnp.where(out_mask, jnp.pad(state["pid"], ((0, 0), (0, pad))), 0),
            out_mask,
            state["overflow"],
        )
        if not record:
            return out
        hist = {
            "label": jnp.where(out_mask, jnp.pad(state["labels"], ((0, 0), (0, pad))), -1),
            "parent": jnp.where(out_mask, jnp.pad(state["parent_of"], ((0, 0), (0, pad))), -1),
            **{k: state[k] for k in ("decayed_p", "decayed_pid", "decayed_parent", "decayed_label", "decayed_mask")},
            "record_overflow": state["record_overflow"],
        }
        return (*out, hist)

    if width == cap or small_batch:
        return run(cap)
    small = run(width)
    # small[3] is the overflow at W: some daughter found no free slot among the first W. The
    # rare repetition on all C slots runs every round on the longest list (less to compile).
    redo = jnp.any(small[3])
    if n_in > width:
        redo = redo | jnp.any(mask[:, width:])
    return jax.lax.cond(redo, lambda: run(cap, all_slots=True), lambda: small)


def decay_list_lengths(rows: int, slots: int, factor: int = 2) -> tuple[int, ...]:
    """The static lengths of a block's list of unstable particles that a decay round can run on.

    Lengths ``rows · factor^k`` (k = −2 … ; at least 1) up to the longest possible list,
    ``rows · slots`` (every particle unstable): a round runs on the shortest that holds the
    unstable particles of every block, so that at most a factor of the list is empty work.
    At 91.2 GeV an event holds about 11, 5.5, 1.9 and 0.8 unstable hadrons before rounds 1–4.

    Args:
      rows: events per block (:func:`~diffgen.hadronization.formation.row_blocks`).
      slots: working slots per event W.
      factor: ratio of successive lengths (an int ≥ 2).

    Returns:
      The increasing lengths; the last is ``rows · slots``.
    """
    if not isinstance(factor, int) or factor < 2:
        raise ValueError(f"decay_list_lengths: factor must be an int >= 2, got {factor!r}")
    big = rows * slots
    lengths = {max(1, rows // factor**2), max(1, rows // factor)}
    m = rows
    while m < big:
        lengths.add(m)
        m *= factor
    return (*sorted(x for x in lengths if x < big), big)


def _shortest_holding(most: Array, lengths: tuple[int, ...]) -> Array:
    """Index (0-d int32) of the shortest of the increasing static ``lengths`` that is ≥ ``most``
    (the last one when none is)."""
    return sum((most > m).astype(jnp.int32) for m in lengths[:-1]) + jnp.int32(0)


def _first_unstable_list(unstable: Array, size: int) -> dict[str, Array]:
    """The list of unstable particles of a block of events, in event order and slot order within each.

    Entry j is found, not scattered: it is the j-th set bit of the block's flags packed into
    32-bit words (:func:`~diffgen.xla_ops.select_bit` within its word), so only the ``size``
    entries are computed.

    Args:
      unstable: [R, W] bool, the unstable particles among the first n slots of each event
        (the particles of an event are its first n slots).
      size: static entries computed (≥ the block's unstable particles; the rest up to R·W
        are padding).

    Returns:
      A dict: ``slot`` [R·W] int32 (the particle's index in the block's [R·W] slots) and
      ``event`` [R·W] int32 (its event in the block) of entry j < ``total`` (0-d int32);
      ``off`` [R] the entry of an event's first particle and ``count`` [R] its number of
      particles on the list.
    """
    rows, w = unstable.shape
    count = jnp.sum(unstable, axis=-1, dtype=jnp.int32)
    off = prefix_sum(count) - count
    # The block's R·W flags as one bit string: entry j is its j-th set bit. Its word is the
    # number of words after the first that start at or before j (a prefix sum over the list
    # of a histogram of the words' starts, instead of a binary search per entry).
    words, counts = packed_flags(unstable.reshape(-1))
    end = prefix_sum(counts)
    start = end - counts
    j = jnp.arange(size, dtype=jnp.int32)
    starts = jnp.zeros((size,), jnp.int32).at[start[1:]].add(1, mode="drop")
    word = jnp.minimum(prefix_sum(starts), words.shape[0] - 1)
    flat = 32 * word + select_bit(words[word], j - start[word])
    total = end[-1]
    valid = j < total
    pad = (0, rows * w - size)
    return {
        "slot": jnp.pad(jnp.where(valid, flat, 0), pad),
        "event": jnp.pad(jnp.where(valid, flat // w, 0), pad),
        "off": off,
        "count": count,
        "total": total,
    }


def _channel_and_direction(u0: Array, u1: Array, u2: Array) -> tuple[Array, Array, Array, Array]:
    """Three [...] uniforms → four [...]: the channel uniform u₀ and the unit vector (n_x, n_y, n_z)
    of cos θ = 2u₁ − 1, φ = π(2u₂ − 1) (isotropic)."""
    cos = 2.0 * u1 - 1.0
    # φ = 2π(u₂ − ½), with u₂ − ½ exact; cos_sin_2pi costs a fifth of jnp.cos and jnp.sin.
    cos_phi, sin_phi = cos_sin_2pi(u2 - 0.5)
    sin = kin.safe_sqrt(1.0 - cos**2)
    return u0, sin * cos_phi, sin * sin_phi, cos


def _boosted_pair(e_par, px, py, pz, m, placed, q, e1, e2, nx, ny, nz):
    """Daughters of two-body decays at rest (momentum ±q n̂), boosted with their parents.

    The boost of :func:`diffgen.kinematics.boost` (PDG Kinematics eq. 49.14) written on the
    components: the parents' (E, p_x, p_y, p_z) and table mass m, the momentum q and the
    daughters' energies e1, e2 = √(q² + m²) in the rest frame, and the direction
    (n_x, n_y, n_z), all [W]; returns two [W, 4] (daughter 2 along −n̂). Component arrays keep
    XLA's loops elementwise instead of recomputing the angles for every component of the
    stacked vectors. Parents not ``placed`` get β = 0.

    γ = E/m, not 1/√(1 − β²): for a fast light parent (a 45 GeV π⁰ has γ ≈ 330) 1 − β² loses
    all but a few bits in float32, and γ would be off by a few per mille; with E/m the
    daughters' momenta add up to the parent's (e1 + e2 = m) to rounding.
    """
    e_par = jnp.where(placed, e_par, 1.0)
    bx, by, bz = (kin.safe_div(jnp.where(placed, x, 0.0), e_par) for x in (px, py, pz))
    gamma = jnp.where(placed, e_par / jnp.where(placed, m, 1.0), 1.0)
    kx, ky, kz = q * nx, q * ny, q * nz
    bp = bx * kx + by * ky + bz * kz
    g2 = gamma * gamma / (1.0 + gamma)
    out = []
    for e, sign in ((e1, 1.0), (e2, -1.0)):
        bps = sign * bp
        coef = g2 * bps + gamma * e
        out.append(
            jnp.stack([gamma * (e + bps), sign * kx + coef * bx, sign * ky + coef * by, sign * kz + coef * bz], axis=-1)
        )
    return out[0], out[1]


def _unstable_round(key, shape, first, st, ls, r, size: int, cap_u: int):
    """One decay round of a block of events: every particle on the block's list decays.

    The particle on entry j < ``size`` of the list (:func:`_first_unstable_list`) is the k-th
    unstable particle of its event in slot order; its channel uniform and decay angles are
    element (first + event, r, k) of the draw of shape ``shape`` (:func:`decay_unstable`).
    Daughter 1 replaces the parent; the i-th two-body decay of an event appends its second
    daughter as particle n + i (if there is room: else the event's overflow is set and the
    parent stays); the record rows follow the list order. The list of the next round holds
    the unstable daughters (and the parents that stayed), again in slot order per event.

    Args:
      key: PRNG key of the decays.
      shape: (N, n_rounds, C, 3), the shape of the draw.
      first: 0-d int32, the batch index of the block's first event.
      st: the block's state ([R, W, 4] ``p``, [R, W] ``pid``, [R] ``n`` and ``overflow``, and
        the history record when kept).
      ls: the block's list (:func:`_first_unstable_list`); its ``total`` must be ≤ size.
      r: 0-d int32 round (≥ 0).
      size: static entries of the list worked on.
      cap_u: the record's rows per event U.

    Returns:
      ``(st, ls)`` after the round.
    """
    p, pid, n = st["p"], st["pid"], st["n"]
    rows, w = pid.shape
    slots = rows * w
    dtype = p.dtype
    record = "labels" in st
    j = jnp.arange(size, dtype=jnp.int32)
    valid = j < ls["total"]
    ev = jnp.where(valid, ls["event"][:size], 0)
    flat = jnp.where(valid, ls["slot"][:size], 0)
    off, count = ls["off"], ls["count"]
    start = off[ev]

    def per_event(flags):
        # Rank of each flagged entry among those of its event before it, and the flagged
        # entries per event: prefix sums over the list, read at the events' bounds.
        ext = jnp.concatenate([jnp.zeros((1,), jnp.int32), prefix_sum(flags.astype(jnp.int32))])
        return ext[:size] - ext[start], ext[off + count] - ext[off]

    k = jnp.where(valid, j - start, 0)

    def zeros(m):
        return lambda: (jnp.zeros((size,), dtype),) * m

    # Uniforms and directions through lax.conds (r is never negative), one array per
    # component, so that XLA keeps them in memory instead of hashing again for every use,
    # and its loops over them stay vectorised (as in decay_clusters).
    u = jax.lax.cond(
        r >= 0, lambda: tuple(uniform_at(key, shape, (first + ev, r, k, c), dtype) for c in range(3)), zeros(3)
    )
    u = jax.lax.cond(r >= 0, lambda: _channel_and_direction(*u), zeros(4))
    flat_p = p.reshape(slots, 4)
    flat_pid = pid.reshape(slots)
    p_par, pid_par = flat_p[flat], flat_pid[flat]
    br = jnp.asarray(H.TABLE["br"], dtype)
    a = jnp.clip(jnp.abs(pid_par), 0, H.MAX_ABS_PID - 1)
    ch = (u[0] >= br[a, 0]).astype(jnp.int32)
    d1 = jnp.take_along_axis(jnp.asarray(H.TABLE["d1"])[a], ch[:, None], 1, mode="promise_in_bounds")[:, 0]
    d2 = jnp.take_along_axis(jnp.asarray(H.TABLE["d2"])[a], ch[:, None], 1, mode="promise_in_bounds")[:, 0]
    d1 = jnp.where(pid_par < 0, H.conjugate_pid(d1), d1)
    d2 = jnp.where(pid_par < 0, H.conjugate_pid(d2), d2)
    relabel = valid & (d2 == 0)
    two = valid & (d2 != 0)
    # The i-th two-body decay of an event appends its second daughter, if there is room.
    rank, n_two = per_event(two)
    slot2 = n[ev] + rank
    placed = two & (slot2 < w)
    target = jnp.where(placed, ev * w + slot2, slots)

    def rest_frame():
        m = H.hadron_mass(pid_par, dtype)
        m1 = H.hadron_mass(d1, dtype)
        m2 = H.hadron_mass(jnp.where(placed, d2, 0), dtype)
        # The parent's table mass (not E² − p²) sets |p*|: exact on shell, robust in float32.
        q = kin.two_body_momentum(jnp.where(placed, m, 1.0), jnp.where(placed, m1, 0.0), m2)
        e1, e2 = kin.safe_sqrt(q**2 + m1**2), kin.safe_sqrt(q**2 + m2**2)
        return (*(p_par[:, i] for i in range(4)), m, q, e1, e2)

    # Through a cond, so that the parents' components and the table lookups reach the boost
    # as arrays of their own: XLA's CPU loops over a slice of the gathered [size, 4] parents,
    # or over a table gather, are not vectorised.
    rest = jax.lax.cond(r >= 0, rest_frame, zeros(8))
    lab_a, lab_b = _boosted_pair(*rest[:5], placed, *rest[5:], u[1], u[2], u[3])
    out = dict(st)
    if record:
        # Each decaying hadron becomes a record row; daughter 1 (in its slot) and
        # daughter 2 (in ``target``) point to that row.
        labels = st["labels"].reshape(slots)
        parent_of = st["parent_of"].reshape(slots)
        n_rec = st["n_rec"]
        decays = placed | relabel
        rank_d, n_decays = per_event(decays)
        row = n_rec[ev] + rank_d
        kept = decays & (row < cap_u)
        out["record_overflow"] = st["record_overflow"] | (n_rec + n_decays > cap_u)
        out["n_rec"] = n_rec + jnp.minimum(n_decays, jnp.maximum(cap_u - n_rec, 0))
        at = jnp.where(kept, ev * cap_u + row, rows * cap_u)

        def recorded(name, x):
            old = st[name]
            return old.reshape(rows * cap_u, *old.shape[2:]).at[at].set(x, mode="drop").reshape(old.shape)

        out["decayed_p"] = recorded("decayed_p", jax.lax.stop_gradient(p_par))
        out["decayed_pid"] = recorded("decayed_pid", pid_par)
        out["decayed_parent"] = recorded("decayed_parent", parent_of[flat])
        out["decayed_label"] = recorded("decayed_label", labels[flat])
        out["decayed_mask"] = recorded("decayed_mask", True)
        mine = jnp.where(kept, row, -1).astype(jnp.int32)
        parent_of = parent_of.at[jnp.where(decays, flat, slots)].set(mine, mode="drop")
        out["parent_of"] = parent_of.at[target].set(mine, mode="drop").reshape(rows, w)
        out["labels"] = labels.at[target].set(labels[flat], mode="drop").reshape(rows, w)
    flat_p = flat_p.at[jnp.where(placed, flat, slots)].set(lab_a, mode="drop")
    flat_pid = flat_pid.at[jnp.where(placed | relabel, flat, slots)].set(d1, mode="drop")
    out["p"] = flat_p.at[target].set(lab_b, mode="drop").reshape(rows, w, 4)
    out["pid"] = flat_pid.at[target].set(d2, mode="drop").astype(jnp.int32).reshape(rows, w)
    out["n"] = n + jnp.minimum(n_two, jnp.maximum(w - n, 0))
    out["overflow"] = st["overflow"] | (n + n_two > w)
    # The next list: per event the unstable first daughters (and the parents whose second
    # daughter found no slot) in their slots, then the unstable second daughters, which
    # follow all of them: slot order again.
    stay = ((placed | relabel) & ~H.is_stable(d1)) | (two & ~placed)
    new = placed & ~H.is_stable(d2)
    rank_s, n_stay = per_event(stay)
    rank_n, n_new = per_event(new)
    count = n_stay + n_new
    off = prefix_sum(count) - count
    big = ls["slot"].shape[0]
    at_s = jnp.where(stay, off[ev] + rank_s, big)
    at_n = jnp.where(new, off[ev] + n_stay[ev] + rank_n, big)
    lists = {
        "slot": ls["slot"].at[at_s].set(flat, mode="drop").at[at_n].set(target, mode="drop"),
        "event": ls["event"].at[at_s].set(ev, mode="drop").at[at_n].set(ev, mode="drop"),
        "off": off,
        "count": count,
        "total": jnp.sum(count, dtype=jnp.int32),
    }
    return out, lists
