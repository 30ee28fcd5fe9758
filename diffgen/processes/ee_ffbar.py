"""e⁺e⁻ → γ*/Z → f f̄ (one flavour) and e⁺e⁻ → q q̄ (flavours summed): Born sources.

Events (capacity 2): slot 0 is the fermion f (pid > 0), slot 1 the antifermion f̄, in the
centre-of-mass frame with the e⁻ beam along +z. For quarks ``colour`` is set to
(501, 0) for q and (0, 501) for q̄. ``weight`` is in pb: ``mean(weight)`` estimates σ.

Weights are ``flux × |M̄|² × phase-space weight`` with flux ``1/(2s)``, |M̄|² from
:func:`diffgen.processes.born.born_me2` and the two-body weight of
:func:`diffgen.phasespace.two_to_two`. The phase-space point depends only on the random
numbers and √s, so ``jax.grad`` with respect to ``m_z``, ``gamma_z``, ``sin2_theta_w``,
``alpha_em`` (and ``alpha_s``) flows through the weights (DESIGN.md §4, mode 2) and, for
√s, also through the momenta (mode 1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from diffgen import kinematics as kin
from diffgen.core import Events, Source
from diffgen.phasespace import COS_THETA_SAMPLINGS, cos_sin_2pi, cos_theta_and_jacobian
from diffgen.processes import constants as C
from diffgen.processes._validation import check_dtype, check_n, check_params
from diffgen.processes.born import WIDTH_SCHEMES, born_me2, born_sigma_total
from diffgen.typing import Array, Key

__all__ = ["QUARK_FLAVOURS", "default_params", "ee_to_ffbar", "ee_to_qqbar"]

#: Flavours accepted by :func:`ee_to_ffbar`.
FFBAR_FLAVOURS = ("e", "mu", "tau", "d", "u", "s", "c", "b")
#: Quark flavours accepted by :func:`ee_to_qqbar` (as a string such as ``"udscb"``).
QUARK_FLAVOURS = "udscb"


def default_params(sqrt_s: float, *, qcd: bool, dtype) -> dict[str, Array]:
    """The electroweak (and α_s) default parameters of the Born sources, as 0-d arrays.

    Args:
      sqrt_s: centre-of-mass energy √s, GeV.
      qcd: also include ``alpha_s`` (α_s(m_Z)), for the q q̄ source.
      dtype: floating dtype of the arrays.

    Returns:
      dict with ``sqrt_s``, ``m_z``, ``gamma_z`` (GeV), ``sin2_theta_w``, ``alpha_em`` and,
      if ``qcd``, ``alpha_s``.
    """
    values = {
        "sqrt_s": sqrt_s,
        "m_z": C.M_Z,
        "gamma_z": C.GAMMA_Z,
        "sin2_theta_w": C.SIN2_THETA_W,
        "alpha_em": C.ALPHA_EM_MZ,
    }
    if qcd:
        values["alpha_s"] = C.ALPHA_S_MZ
    return {k: jnp.asarray(v, dtype=dtype) for k, v in values.items()}


def _ranges(threshold: float, qcd: bool) -> dict[str, tuple[float, float, str]]:
    inf = math.inf
    r = {
        "sqrt_s": (threshold, inf, f"({threshold:g}, inf) GeV (above the 2m_f threshold)"),
        "m_z": (0.0, inf, "(0, inf) GeV"),
        "gamma_z": (0.0, inf, "(0, inf) GeV (a width must be positive)"),
        "sin2_theta_w": (0.0, 1.0, "(0, 1)"),
        "alpha_em": (0.0, 1.0, "(0, 1)"),
    }
    if qcd:
        r["alpha_s"] = (0.0, 1.0, "(0, 1)")
    return r


def _check_options(where: str, sqrt_s: float, width: str, sampling: str, dtype) -> None:
    if width not in WIDTH_SCHEMES:
        raise ValueError(f"{where}: width must be one of {WIDTH_SCHEMES}, got {width!r}")
    if sampling not in COS_THETA_SAMPLINGS:
        raise ValueError(f"{where}: sampling must be one of {COS_THETA_SAMPLINGS}, got {sampling!r}")
    if not isinstance(sqrt_s, (int, float, np.floating, np.integer)) or not math.isfinite(float(sqrt_s)):
        raise ValueError(f"{where}: sqrt_s must be a finite number in GeV, got {sqrt_s!r}")
    check_dtype(where, dtype)


def _back_to_back(sqrt_s: Array, beta: Array, c: Array, cos_ph: Array, sin_ph: Array) -> Array:
    """[N, 2, 4] momenta of f (direction (c, φ)) and f̄ (opposite), each with energy √s/2."""
    e = 0.5 * sqrt_s
    pabs = e * beta
    sin_t = kin.safe_sqrt(1.0 - c * c)
    ee = jnp.broadcast_to(e, c.shape)
    p_f = jnp.stack([ee, pabs * sin_t * cos_ph, pabs * sin_t * sin_ph, pabs * c], -1)
    # f̄ = parity image of f; one broadcast multiply writes both slots in a single pass.
    parity = jnp.array([[1.0, 1.0, 1.0, 1.0], [1.0, -1.0, -1.0, -1.0]], dtype=p_f.dtype)
    return p_f[:, None, :] * parity[None, :, :]


def _born_events(
    params: Mapping[str, Array],
    key: Key,
    n: int,
    *,
    mass: Array,
    charge: Array,
    t3: Array,
    colours: Array,
    width: str,
    qcd_correction: bool,
    sampling: str,
) -> tuple[Array, Array]:
    """Momenta [n, 2, 4] and weights [n] (pb, before flavour-selection factors)."""
    sqrt_s = params["sqrt_s"]
    dtype = sqrt_s.dtype
    s = sqrt_s * sqrt_s
    u = jax.random.uniform(key, (n, 2), dtype)
    c, jac = cos_theta_and_jacobian(u[:, 0], sampling)
    cos_ph, sin_ph = cos_sin_2pi(u[:, 1])
    beta = kin.safe_sqrt(1.0 - 4.0 * mass * mass / s)
    p = _back_to_back(sqrt_s, beta, c, cos_ph, sin_ph)
    if all(np.ndim(x) == 0 for x in (mass, charge, t3)):
        # one flavour: |M̄|² is a quadratic polynomial in cos θ, so its coefficients are
        # computed once from the values at c = −1, 0, 1 and each event costs a polynomial;
        # reverse mode then needs only the sums of jac·cᵏ instead of per-event cotangents.
        ends = born_me2(jnp.asarray([-1.0, 0.0, 1.0], dtype), s, mass, charge, t3, colours, params, width)
        m_minus, m_zero, m_plus = ends[0], ends[1], ends[2]
        lin, quad = 0.5 * (m_plus - m_minus), 0.5 * (m_plus + m_minus) - m_zero
        me2 = m_zero + c * (lin + quad * c)
    else:
        me2 = born_me2(c, s, mass, charge, t3, colours, params, width)
    if qcd_correction:
        me2 = me2 * (1.0 + params["alpha_s"] / math.pi)
    # two_to_two weight |p*|/(8π√s)·|dc/du| = β/(16π)·|dc/du|; flux 1/(2s).
    weight = (C.GEV2_PB / (32.0 * math.pi)) * me2 * beta * jac / s
    return p, weight


def ee_to_ffbar(
    flavour: str = "mu",
    sqrt_s: float = 91.1876,
    *,
    width: str = "fixed",
    qcd_correction: bool = False,
    sampling: str = "born",
    dtype=jnp.float64,
) -> Source:
    """e⁺e⁻ → γ*/Z → f f̄ at Born level, a ``Source`` of weighted events.

    Args:
      flavour: one of ``"e"`` (s-channel only, no Bhabha t-channel), ``"mu"``, ``"tau"``,
        ``"d"``, ``"u"``, ``"s"``, ``"c"``, ``"b"`` (static).
      sqrt_s: default centre-of-mass energy in GeV (``params["sqrt_s"]``), above 2m_f.
      width: ``"fixed"`` (``i m_Z Γ_Z``) or ``"running"`` (``i s Γ_Z/m_Z``, the LEP
        definition of m_Z and Γ_Z) in the Z propagator (static).
      qcd_correction: multiply quark cross sections by ``1 + α_s/π`` (adds ``alpha_s``
        to the params; quarks only).
      sampling: cos θ sampling, ``"born"`` (density ∝ 1 + cos²θ, smaller weight variance)
        or ``"flat"`` (static).
      dtype: float32 or float64; the dtype of the params and hence of the events.

    Returns:
      ``Source``; ``init(key)`` gives ``{"sqrt_s", "m_z", "gamma_z", "sin2_theta_w",
      "alpha_em"[, "alpha_s"]}`` (0-d arrays of ``dtype``; PDG values, see
      :mod:`diffgen.processes.constants`); ``sample(params, key, n)`` gives ``Events``
      with p [n, 2, 4] (slot 0 = f, slot 1 = f̄), weight [n] pb, pid [n, 2]
      (``[pid_f, −pid_f]``), colour [n, 2, 2] for quarks (``None`` for leptons).
      Events below threshold (possible only under tracing) get weight 0.

    Example:
      >>> src = ee_to_ffbar("mu", sqrt_s=91.1876)
      >>> events = src.sample(src.init(jax.random.key(0)), jax.random.key(1), 1000)
    """
    where = "ee_to_ffbar"
    if flavour not in FFBAR_FLAVOURS:
        raise ValueError(f"{where}: flavour must be one of {FFBAR_FLAVOURS}, got {flavour!r}")
    _check_options(where, sqrt_s, width, sampling, dtype)
    f = C.FERMIONS[flavour]
    threshold = 2.0 * f.mass
    if not float(sqrt_s) > threshold:
        raise ValueError(
            f"{where}: sqrt_s must be above the {flavour} pair threshold {threshold:g} GeV, got {sqrt_s!r}"
        )
    if qcd_correction and f.colours == 1:
        raise ValueError(f"{where}: qcd_correction applies to quarks only (flavour in 'udscb'), got {flavour!r}")
    ranges = _ranges(threshold, qcd_correction)

    def init(key: Key) -> dict[str, Array]:
        del key
        return default_params(float(sqrt_s), qcd=qcd_correction, dtype=dtype)

    def sample(params: Mapping[str, Array], key: Key, n: int) -> Events:
        n = check_n(f"{where}.sample", n)
        check_params(f"{where}.sample", params, ranges)
        p, weight = _born_events(
            params,
            key,
            n,
            mass=f.mass,
            charge=f.charge,
            t3=f.t3,
            colours=float(f.colours),
            width=width,
            qcd_correction=qcd_correction,
            sampling=sampling,
        )
        pid = jnp.broadcast_to(jnp.array([f.pid, -f.pid], dtype=jnp.int32), (n, 2))
        mask = jnp.ones((n, 2), dtype=bool)
        col = None
        if f.colours == 3:
            col = jnp.broadcast_to(jnp.array([[501, 0], [0, 501]], dtype=jnp.int32), (n, 2, 2))
        return Events(p=p, weight=weight, mask=mask, pid=pid, colour=col)

    return Source(init=init, sample=sample)


def _parse_quark_flavours(where: str, flavours: str | Sequence[str]) -> list[str]:
    names = list(flavours)
    if not names or any(q not in QUARK_FLAVOURS for q in names) or len(set(names)) != len(names):
        raise ValueError(f"{where}: flavours must be distinct quark names from {QUARK_FLAVOURS!r}, got {flavours!r}")
    return names


def flavour_probabilities(names: Sequence[str], sqrt_s: float, width: str, massless: bool = False) -> np.ndarray:
    """Static flavour-selection probabilities ∝ the default-parameter Born σ_q at ``sqrt_s``.

    Computed once at construction (NumPy), independent of the params, so the flavour
    choice never depends on what is differentiated.
    """
    params = {k: float(v) for k, v in default_params(float(sqrt_s), qcd=False, dtype=jnp.float64).items()}
    sig = []
    for q in names:
        f = C.FERMIONS[q]
        mass = 0.0 if massless else f.mass
        sig.append(float(born_sigma_total(float(sqrt_s) ** 2, mass, f.charge, f.t3, 3.0, params, width)))
    sig = np.asarray(sig)
    return sig / sig.sum()


def ee_to_qqbar(
    sqrt_s: float = 91.1876,
    *,
    flavours: str | Sequence[str] = QUARK_FLAVOURS,
    width: str = "fixed",
    qcd_correction: bool = False,
    sampling: str = "born",
    dtype=jnp.float64,
) -> Source:
    """e⁺e⁻ → γ*/Z → q q̄ summed over quark flavours, a ``Source`` (the shower's input).

    The flavour of each event is drawn with fixed probabilities ``P_q`` (∝ the Born σ_q at
    the default parameters and the construction ``sqrt_s``) and the weight is
    ``w_q / P_q``, so ``mean(weight)`` estimates ``Σ_q σ_q`` and the choice never depends
    on the params (gradients flow through the weights only). Quark masses enter the
    threshold factors; a flavour below threshold for the sampled √s gets weight 0.

    Args:
      sqrt_s: default centre-of-mass energy, GeV; above twice the heaviest selected quark.
      flavours: quark flavours to sum, e.g. ``"udscb"`` (default) or ``"udsc"``.
      width, qcd_correction, sampling, dtype: as in :func:`ee_to_ffbar`.

    Returns:
      ``Source`` with the params of :func:`ee_to_ffbar`; events as there with pid
      ``[q, −q]`` per event and colour ``[[501, 0], [0, 501]]``; ``extra["flavour_log_prob"]``
      [n] holds ``log P_q`` of the chosen flavour (constant in the params).
    """
    where = "ee_to_qqbar"
    names = _parse_quark_flavours(where, flavours)
    _check_options(where, sqrt_s, width, sampling, dtype)
    threshold = max(2.0 * C.FERMIONS[q].mass for q in names)
    if not float(sqrt_s) > threshold:
        raise ValueError(f"{where}: sqrt_s must be above the heaviest pair threshold {threshold:g} GeV, got {sqrt_s!r}")
    probs = flavour_probabilities(names, float(sqrt_s), width)
    ranges = _ranges(min(2.0 * C.FERMIONS[q].mass for q in names), qcd_correction)
    table = np.array([[C.FERMIONS[q].mass, C.FERMIONS[q].charge, C.FERMIONS[q].t3] for q in names])
    pids = np.array([C.FERMIONS[q].pid for q in names], dtype=np.int32)

    def init(key: Key) -> dict[str, Array]:
        del key
        return default_params(float(sqrt_s), qcd=qcd_correction, dtype=dtype)

    def sample(params: Mapping[str, Array], key: Key, n: int) -> Events:
        n = check_n(f"{where}.sample", n)
        check_params(f"{where}.sample", params, ranges)
        dt = params["sqrt_s"].dtype
        k_flav, k_kin = jax.random.split(key)
        log_p = jnp.log(jnp.asarray(probs, dtype=dt))
        idx = jax.random.categorical(k_flav, log_p, shape=(n,))
        props = jnp.asarray(table, dtype=dt)[idx]
        p, weight = _born_events(
            params,
            k_kin,
            n,
            mass=props[:, 0],
            charge=props[:, 1],
            t3=props[:, 2],
            colours=3.0,
            width=width,
            qcd_correction=qcd_correction,
            sampling=sampling,
        )
        chosen_log_p = log_p[idx]
        weight = weight * jnp.exp(-chosen_log_p)
        pid_q = jnp.asarray(pids)[idx]
        pid = jnp.stack([pid_q, -pid_q], axis=1)
        mask = jnp.ones((n, 2), dtype=bool)
        col = jnp.broadcast_to(jnp.array([[501, 0], [0, 501]], dtype=jnp.int32), (n, 2, 2))
        return Events(p=p, weight=weight, mask=mask, pid=pid, colour=col, extra={"flavour_log_prob": chosen_log_p})

    return Source(init=init, sample=sample)
