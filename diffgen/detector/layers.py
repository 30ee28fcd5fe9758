"""Detector layers: resolution smearing, efficiency and acceptance, invisible particles.

Every layer is a :class:`diffgen.Layer` built by a factory that captures the static choices
(which particles it acts on, soft or stochastic acceptance) and returns default parameters
from ``init``; every continuous number is a parameter and can be differentiated.

Gradient modes (DESIGN.md §4):

- smearing layers (:func:`tracker`, :func:`calorimeter`, :func:`gaussian_smearing`) are
  **pathwise**: standard normal numbers ``z`` are drawn from the key alone and transformed
  as ``x_reco = x (1 + σ_rel(θ, x) z)`` (or ``x + σ z``), so with a fixed key the smeared
  momenta are smooth functions of the parameters (common random numbers);
- :func:`efficiency` in ``mode="soft"`` keeps every particle and multiplies its
  keep-probability into ``extra["detector_keep_prob"]`` (differentiable weights, pathwise);
  in ``mode="stochastic"`` it drops particles with that probability and adds the
  log-probability of the keep/drop decisions to ``extra["detector_logprob"]`` (score
  function, DESIGN.md §4.3).

Particles keep their slot: reconstructed slot i is particle-level slot i. A dropped
particle becomes padding (mask False, zero momentum, pid 0), so truth and reco can be
compared slot by slot.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from diffgen import kinematics as kin
from diffgen.core import Events, Layer
from diffgen.detector import pdg
from diffgen.typing import Array, Key, Params

__all__ = [
    "KEEP_PROB",
    "LOGPROB",
    "SELECTIONS",
    "acceptance_weight",
    "calorimeter",
    "calorimeter_sigma",
    "drop_invisible",
    "drop_particles",
    "efficiency",
    "efficiency_curve",
    "gaussian_smearing",
    "gaussian_sigma",
    "keep_probability",
    "select_particles",
    "sequential",
    "tracker",
    "tracker_sigma",
]

#: ``Events.extra`` key of the per-particle keep probability [N, P] written by soft-mode
#: :func:`efficiency` (product over all soft efficiency layers; 0 for padding).
KEEP_PROB = "detector_keep_prob"
#: ``Events.extra`` key of the log-probability [N] of the keep/drop decisions made by
#: stochastic-mode :func:`efficiency` (sum over layers), for score-function gradients.
LOGPROB = "detector_logprob"

#: Named particle selections a layer can act on (or pass a callable ``pid -> bool``).
SELECTIONS: dict[str, Callable[[Array], Array]] = {
    "all": lambda pid: pid != 0,
    "visible": lambda pid: (pid != 0) & ~pdg.is_invisible(pid),
    "charged": pdg.is_charged,
    "neutral": pdg.is_neutral_visible,
    "em_neutral": pdg.is_em_neutral,
    "hadronic_neutral": pdg.is_hadronic_neutral,
}


def _selector(select: str | Callable[[Array], Array], owner: str) -> Callable[[Array], Array]:
    if callable(select):
        return select
    if select not in SELECTIONS:
        raise ValueError(
            f"{owner}: select must be one of {sorted(SELECTIONS)} or a callable pid -> bool, got {select!r}"
        )
    return SELECTIONS[select]


def select_particles(events: Events, select: str | Callable[[Array], Array]) -> Array:
    """Real particles of a named class: ``events.mask`` and the selection.

    Args:
      events: N events with capacity P (padding has ``mask`` False).
      select: a name in ``SELECTIONS`` (``"all"``, ``"visible"``, ``"charged"``,
        ``"neutral"``, ``"em_neutral"``, ``"hadronic_neutral"``) or a callable
        ``pid [N, P] int -> [N, P] bool``.

    Returns:
      [N, P] bool, True for real particles in the selection.

    Raises:
      ValueError: ``select`` is neither a name in ``SELECTIONS`` nor a callable.
    """
    return events.mask & _selector(select, "select_particles")(events.pid)


def _dtype(dtype: Any) -> Any:
    return jnp.result_type(float) if dtype is None else jnp.dtype(dtype)


def _check_nonnegative(owner: str, **values: float) -> None:
    for name, value in values.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise TypeError(f"{owner}: {name} must be a real number, got {type(value).__name__}")
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{owner}: {name} must be a finite number >= 0, got {value}")


def _get(params: Params, name: str, dtype: Any) -> Array:
    # Params may be float64 while events are float32 (or the reverse): cast explicitly
    # (differentiable) instead of relying on promotion, which is strict in the tests.
    return jnp.asarray(params[name]).astype(dtype)


def drop_particles(events: Events, drop: Array) -> Events:
    """Turn the particles flagged in ``drop`` [N, P] bool into padding (slots are kept).

    Momentum, pid, colour and the soft keep-probability of a dropped particle are zeroed so
    the padding stays clean.

    Args:
      events: N events with capacity P.
      drop: [N, P] bool, True for the particles to remove.

    Returns:
      ``Events`` with the same capacity P; dropped slots are padding (mask False, zero
      momentum, pid 0).
    """
    keep = ~drop
    extra = dict(events.extra)
    if KEEP_PROB in extra:
        extra[KEEP_PROB] = jnp.where(keep, extra[KEEP_PROB], 0.0)
    return events.replace(
        p=jnp.where(keep[..., None], events.p, 0.0),
        mask=events.mask & keep,
        pid=jnp.where(keep, events.pid, 0),
        colour=None if events.colour is None else jnp.where(keep[..., None], events.colour, 0),
        extra=extra,
    )


def sequential(*stages: tuple[str, Layer]) -> Layer:
    """Compose named layers into one layer (params ``{name: params}``).

    Stage ``i`` gets ``jax.random.fold_in(key, i)``, as in :func:`diffgen.chain`.

    Args:
      *stages: ``(name, Layer)`` pairs with unique names.

    Returns:
      a ``Layer`` applying the stages in order.
    """
    names = [name for name, _ in stages]
    if len(set(names)) != len(names):
        raise ValueError(f"sequential: stage names must be unique, got {names}")
    for name, layer in stages:
        if not isinstance(layer, Layer):
            raise TypeError(f"sequential: stage {name!r} must be a Layer, got {type(layer).__name__}")

    def init(key: Key) -> dict[str, Params]:
        return {name: layer.init(jax.random.fold_in(key, i)) for i, (name, layer) in enumerate(stages)}

    def apply(params: Mapping[str, Params], key: Key, events: Events) -> Events:
        for i, (name, layer) in enumerate(stages):
            events = layer.apply(params[name], jax.random.fold_in(key, i), events)
        return events

    return Layer(init=init, apply=apply)


# --------------------------------------------------------------------------- resolution models


def tracker_sigma(params: Params, pt: Array) -> Array:
    """Relative transverse-momentum resolution of the tracker, ``σ(pT)/pT = a ⊕ b·pT``.

    ``⊕`` is the sum in quadrature. The ``b·pT`` term is the curvature (sagitta) error,
    ``a`` multiple scattering (R. L. Gluckstern, Nucl. Instrum. Meth. 24 (1963) 381; PDG
    Review "Passage of particles through matter" and "Particle detectors at accelerators").

    Args:
      params: ``{"a": dimensionless, "b": GeV⁻¹}``.
      pt: [...] GeV.

    Returns:
      [...] dimensionless, dtype of ``pt``.
    """
    a = _get(params, "a", pt.dtype)
    b = _get(params, "b", pt.dtype)
    return kin.safe_sqrt(a**2 + (b * pt) ** 2)


def calorimeter_sigma(params: Params, energy: Array) -> Array:
    """Relative energy resolution of a calorimeter, ``σ(E)/E = a/√E ⊕ b ⊕ c/E``.

    Stochastic (a, GeV^½), constant (b) and noise (c, GeV) terms in quadrature (C. W. Fabjan
    and F. Gianotti, Rev. Mod. Phys. 75 (2003) 1243, eq. 17). Zero for ``E ≤ 0``.

    Args:
      params: ``{"a": GeV^½, "b": dimensionless, "c": GeV}``.
      energy: [...] GeV.

    Returns:
      [...] dimensionless, dtype of ``energy``.
    """
    a = _get(params, "a", energy.dtype)
    b = _get(params, "b", energy.dtype)
    c = _get(params, "c", energy.dtype)
    positive = energy > 0
    e = jnp.where(positive, energy, 1.0)
    return jnp.where(positive, kin.safe_sqrt(a**2 / e + b**2 + (c / e) ** 2), 0.0)


def gaussian_sigma(params: Params, p: Array) -> Array:
    """Absolute per-component width of :func:`gaussian_smearing`, ``σ_μ = abs_μ ⊕ rel_μ·|p_μ|``.

    Args:
      params: ``{"rel": [4] dimensionless, "abs": [4] GeV}`` in (E, px, py, pz) order.
      p: [..., 4] GeV.

    Returns:
      [..., 4] GeV.
    """
    shape = (1,) * (p.ndim - 1) + (4,)
    rel = _get(params, "rel", p.dtype).reshape(shape)
    absolute = _get(params, "abs", p.dtype).reshape(shape)
    return kin.safe_sqrt(absolute**2 + (rel * jnp.abs(p)) ** 2)


def tracker(
    a: float = 0.005,
    b: float = 6e-4,
    sigma_eta: float = 1e-3,
    sigma_phi: float = 1e-3,
    *,
    select: str | Callable[[Array], Array] = "charged",
    dtype: Any = None,
) -> Layer:
    """Tracker smearing of charged particles: pT with ``σ(pT)/pT = a ⊕ b·pT``, η and φ Gaussian.

    ``pT' = pT·|1 + σ_rel z₁|``, ``η' = η + σ_η z₂``, ``φ' = φ + σ_φ z₃`` with independent
    standard normals; the particle's mass is kept (``E' = √(|p⃗'|² + m²)``). The absolute
    value only matters where ``σ_rel z₁ < −1`` (a fluctuation of ``1/σ_rel`` standard
    deviations). Particles with zero pT (along the beam) are left unchanged. Pathwise in
    all four parameters. Defaults are the LEP-like tracker (see ``docs/detector.md``).

    Args:
      a: constant term of σ(pT)/pT (dimensionless), ≥ 0.
      b: curvature term (GeV⁻¹), ≥ 0.
      sigma_eta: absolute η resolution, ≥ 0.
      sigma_phi: absolute φ resolution (rad), ≥ 0.
      select: particles smeared: a name in :data:`SELECTIONS` or a callable ``pid -> bool``.
      dtype: dtype of the default parameters (default: JAX's default float).

    Returns:
      ``Layer`` with params ``{"a", "b", "sigma_eta", "sigma_phi"}``; capacity unchanged.
    """
    _check_nonnegative("tracker", a=a, b=b, sigma_eta=sigma_eta, sigma_phi=sigma_phi)
    selector = _selector(select, "tracker")
    dtype = _dtype(dtype)
    defaults = {"a": a, "b": b, "sigma_eta": sigma_eta, "sigma_phi": sigma_phi}

    def init(key: Key) -> Params:
        del key
        return {k: jnp.asarray(v, dtype=dtype) for k, v in defaults.items()}

    def apply(params: Params, key: Key, events: Events) -> Events:
        z = jax.random.normal(key, events.p.shape[:2] + (3,), events.dtype)
        return _smear_tracker(params, z, events, selector)

    return Layer(init=init, apply=apply)


def _smear_tracker(params: Params, z: Array, events: Events, selector: Callable[[Array], Array]) -> Events:
    """The tracker smearing with given standard normals z [N, P, 3]."""
    p = events.p
    dt = p.dtype
    pt = kin.pt(p)
    ok = events.mask & selector(events.pid) & (pt > 0)
    eta = jnp.where(ok, kin.eta(p), 0.0)
    phi = kin.phi(p)
    m = jnp.maximum(kin.mass(p), 0.0)
    pt_new = pt * jnp.abs(1.0 + tracker_sigma(params, pt) * z[..., 0])
    eta_new = eta + _get(params, "sigma_eta", dt) * z[..., 1]
    phi_new = phi + _get(params, "sigma_phi", dt) * z[..., 2]
    p_new = kin.from_pt_eta_phi_m(pt_new, eta_new, phi_new, m)
    return events.replace(p=jnp.where(ok[..., None], p_new, p))


def calorimeter(
    a: float = 0.18,
    b: float = 0.009,
    c: float = 0.0,
    *,
    select: str | Callable[[Array], Array] = "neutral",
    dtype: Any = None,
) -> Layer:
    """Calorimeter energy smearing, ``σ(E)/E = a/√E ⊕ b ⊕ c/E``, direction kept.

    ``E' = E (1 + σ_rel z)``; the four-momentum is scaled by ``E'/E`` (direction and m/E
    kept). A deposit whose smeared energy is ≤ 0 is lost (becomes padding); for the shipped
    detectors this needs a fluctuation of more than 3.9 standard deviations above 0.5 GeV.
    Pathwise in a, b, c. Defaults are the LEP-like electromagnetic calorimeter.

    Args:
      a: stochastic term (GeV^½), ≥ 0.
      b: constant term (dimensionless), ≥ 0.
      c: noise term (GeV), ≥ 0.
      select: particles measured (default ``"neutral"``: visible neutrals; ``"all"`` for a
        calorimeter-only detector): a name in :data:`SELECTIONS` or a callable.
      dtype: dtype of the default parameters.

    Returns:
      ``Layer`` with params ``{"a", "b", "c"}``; capacity unchanged.
    """
    _check_nonnegative("calorimeter", a=a, b=b, c=c)
    selector = _selector(select, "calorimeter")
    dtype = _dtype(dtype)
    defaults = {"a": a, "b": b, "c": c}

    def init(key: Key) -> Params:
        del key
        return {k: jnp.asarray(v, dtype=dtype) for k, v in defaults.items()}

    def apply(params: Params, key: Key, events: Events) -> Events:
        z = jax.random.normal(key, events.p.shape[:2], events.dtype)
        return _smear_calorimeter(params, z, events, selector)

    return Layer(init=init, apply=apply)


def _smear_calorimeter(params: Params, z: Array, events: Events, selector: Callable[[Array], Array]) -> Events:
    """The calorimeter smearing with given standard normals z [N, P]."""
    p = events.p
    energy = p[..., 0]
    ok = events.mask & selector(events.pid) & (energy > 0)
    e_new = energy * (1.0 + calorimeter_sigma(params, energy) * z)
    scale = kin.safe_div(e_new, energy)
    smeared = events.replace(p=jnp.where(ok[..., None], p * scale[..., None], p))
    return drop_particles(smeared, ok & (e_new <= 0))


def gaussian_smearing(
    rel: Any = 0.01,
    abs: Any = 0.0,
    *,
    select: str | Callable[[Array], Array] = "all",
    dtype: Any = None,
) -> Layer:
    """Generic per-component Gaussian smearing of four-momenta, for toys.

    ``p'_μ = p_μ + σ_μ z_μ`` with ``σ_μ = abs_μ ⊕ rel_μ·|p_μ|`` and an independent standard
    normal per component (E, px, py, pz); the components are smeared independently, so the
    smeared vectors are in general off shell. Pathwise in ``rel`` and ``abs``. The default
    (1 % on every component) works for any process.

    Args:
      rel: relative width, a scalar or 4 values in (E, px, py, pz) order, ≥ 0.
      abs: absolute width (GeV), a scalar or 4 values, ≥ 0.
      select: particles smeared (default all real particles).
      dtype: dtype of the default parameters.

    Returns:
      ``Layer`` with params ``{"rel": [4], "abs": [4]}``; capacity unchanged.
    """
    values = {}
    for name, value in (("rel", rel), ("abs", abs)):
        try:
            arr = [float(v) for v in (value if hasattr(value, "__len__") else [value] * 4)]
        except (TypeError, ValueError) as err:
            raise TypeError(f"gaussian_smearing: {name} must be a number or 4 numbers, got {value!r}") from err
        if len(arr) != 4:
            raise ValueError(f"gaussian_smearing: {name} must have 4 entries (E, px, py, pz), got {len(arr)}")
        for i, v in enumerate(arr):
            _check_nonnegative("gaussian_smearing", **{f"{name}[{i}]": v})
        values[name] = arr
    selector = _selector(select, "gaussian_smearing")
    dtype = _dtype(dtype)

    def init(key: Key) -> Params:
        del key
        return {k: jnp.asarray(v, dtype=dtype) for k, v in values.items()}

    def apply(params: Params, key: Key, events: Events) -> Events:
        p = events.p
        ok = events.mask & selector(events.pid)
        z = jax.random.normal(key, p.shape, p.dtype)
        p_new = p + gaussian_sigma(params, p) * z
        return events.replace(p=jnp.where(ok[..., None], p_new, p))

    return Layer(init=init, apply=apply)


# --------------------------------------------------------------------------- efficiency


def _step(x: Array, slope: float) -> Array:
    """Logistic step ``σ(slope·x)``; the hard step ``x > 0`` for an infinite slope."""
    if math.isinf(slope):
        return (x > 0).astype(x.dtype)
    return jax.nn.sigmoid(slope * x)


def acceptance_weight(params: Params, p: Array, slope: float) -> Array:
    """Acceptance ``|η| < η_max`` and ``pT > pT_min``, as a product of logistic steps.

    ``A = σ(s·(pT − pT_min)/GeV) · σ(s·(η_max − |η|))``; as the slope s → ∞ it tends to the
    hard cut (``slope=inf`` gives the hard cut exactly). Particles with zero pT are outside.

    Args:
      params: ``{"eta_max", "pt_min" (GeV)}``.
      p: [..., 4] GeV.
      slope: s > 0 (GeV⁻¹ for pT, dimensionless for η), static.

    Returns:
      [...] in [0, 1], dtype of ``p``.
    """
    pt = kin.pt(p)
    inside = pt > 0
    abs_eta = jnp.where(inside, jnp.abs(kin.eta(jnp.where(inside[..., None], p, 1.0))), 0.0)
    a = _step(pt - _get(params, "pt_min", p.dtype), slope) * _step(_get(params, "eta_max", p.dtype) - abs_eta, slope)
    return jnp.where(inside, a, 0.0)


def efficiency_curve(params: Params, p: Array) -> Array:
    """Reconstruction efficiency ``ε(pT, η) = ε_max · σ((pT − pT₅₀)/w_pT) · σ((η₅₀ − |η|)/w_η)``.

    A logistic turn-on in pT and fall-off in |η| (each factor present only if its
    parameters are). Smooth in every parameter.

    Args:
      params: ``{"plateau"}`` and optionally ``{"pt_50", "pt_width"}`` (GeV) and
        ``{"eta_50", "eta_width"}``.
      p: [..., 4] GeV.

    Returns:
      [...] in [0, ε_max], dtype of ``p``.
    """
    dt = p.dtype
    eff = jnp.broadcast_to(_get(params, "plateau", dt), p.shape[:-1])
    pt = kin.pt(p)
    if "pt_50" in params:
        eff = eff * jax.nn.sigmoid(kin.safe_div(pt - _get(params, "pt_50", dt), _get(params, "pt_width", dt)))
    if "eta_50" in params:
        inside = pt > 0
        abs_eta = jnp.where(inside, jnp.abs(kin.eta(jnp.where(inside[..., None], p, 1.0))), 0.0)
        x = kin.safe_div(_get(params, "eta_50", dt) - abs_eta, _get(params, "eta_width", dt))
        eff = eff * jnp.where(inside, jax.nn.sigmoid(x), 0.0)
    return eff


def keep_probability(params: Params, p: Array, slope: float) -> Array:
    """Probability that a particle is reconstructed: acceptance × efficiency.

    The product of :func:`acceptance_weight` and :func:`efficiency_curve`.

    Args:
      params: ``{"eta_max", "pt_min" (GeV), "plateau"}`` and optionally
        ``{"pt_50", "pt_width"}`` (GeV) and ``{"eta_50", "eta_width"}``.
      p: [..., 4] momenta (E, px, py, pz) in GeV.
      slope: steepness s > 0 of the acceptance edges (GeV⁻¹ for pT, dimensionless for η),
        static; ``math.inf`` gives the hard cut.

    Returns:
      [...] in [0, 1], dtype of ``p``.
    """
    return acceptance_weight(params, p, slope) * efficiency_curve(params, p)


def efficiency(
    *,
    eta_max: float = 2.5,
    pt_min: float = 0.0,
    plateau: float = 1.0,
    pt_50: float | None = None,
    pt_width: float | None = None,
    eta_50: float | None = None,
    eta_width: float | None = None,
    mode: str = "soft",
    slope: float = 50.0,
    select: str | Callable[[Array], Array] = "all",
    dtype: Any = None,
) -> Layer:
    """Acceptance and efficiency: particles are kept with probability ``A(pT, η)·ε(pT, η)``.

    See :func:`acceptance_weight` and :func:`efficiency_curve` for the two factors.

    - ``mode="soft"``: no particle is removed; the keep probability is multiplied into
      ``extra["detector_keep_prob"]`` [N, P] (1 for real particles on input, 0 for padding),
      a differentiable per-particle weight (pathwise gradients). Observables weight
      particles with it; at large ``slope`` the acceptance factor is the hard cut.
    - ``mode="stochastic"``: each selected particle is dropped with probability ``1 − A·ε``
      (uniform random numbers from the key) and the log-probability of all keep/drop
      decisions of the event is added to ``extra["detector_logprob"]`` [N], so
      ``E[f] `` has the score-function gradient ``E[f ∇_θ log p]``.

    Args:
      eta_max: acceptance |η| < eta_max, > 0.
      pt_min: acceptance pT > pt_min (GeV), ≥ 0.
      plateau: efficiency plateau ε_max in (0, 1].
      pt_50, pt_width: turn-on point and width in pT (GeV, width > 0); both or neither.
      eta_50, eta_width: |η| fall-off point and width (width > 0); both or neither.
      mode: ``"soft"`` or ``"stochastic"``.
      slope: steepness s of the acceptance edges (> 0, GeV⁻¹ for pT); ``math.inf`` = hard cut.
      select: particles this acceptance applies to (others are untouched).
      dtype: dtype of the default parameters.

    Returns:
      ``Layer`` with params ``{"eta_max", "pt_min", "plateau"}`` plus the optional curve
      parameters given; capacity unchanged.
    """
    owner = "efficiency"
    _check_nonnegative(owner, pt_min=pt_min)
    if not (isinstance(eta_max, (int, float)) and eta_max > 0 and math.isfinite(eta_max)):
        raise ValueError(f"{owner}: eta_max must be a finite number > 0, got {eta_max!r}")
    if not (isinstance(plateau, (int, float)) and 0 < plateau <= 1):
        raise ValueError(f"{owner}: plateau must be in (0, 1], got {plateau!r}")
    if mode not in ("soft", "stochastic"):
        raise ValueError(f"{owner}: mode must be 'soft' or 'stochastic', got {mode!r}")
    if not (isinstance(slope, (int, float)) and slope > 0):
        raise ValueError(f"{owner}: slope must be > 0 (math.inf for a hard cut), got {slope!r}")
    defaults = {"eta_max": eta_max, "pt_min": pt_min, "plateau": plateau}
    for point, width, label in ((pt_50, pt_width, "pt"), (eta_50, eta_width, "eta")):
        if (point is None) != (width is None):
            raise ValueError(f"{owner}: give both {label}_50 and {label}_width or neither")
        if point is not None:
            _check_nonnegative(owner, **{f"{label}_50": point})
            if not (isinstance(width, (int, float)) and width > 0 and math.isfinite(width)):
                raise ValueError(f"{owner}: {label}_width must be a finite number > 0, got {width!r}")
            defaults[f"{label}_50"] = point
            defaults[f"{label}_width"] = width
    selector = _selector(select, owner)
    dtype = _dtype(dtype)
    slope = float(slope)

    def init(key: Key) -> Params:
        del key
        return {k: jnp.asarray(v, dtype=dtype) for k, v in defaults.items()}

    def apply(params: Params, key: Key, events: Events) -> Events:
        if mode == "soft":
            del key
            return _apply_efficiency(params, None, events, selector, slope)
        u = jax.random.uniform(key, events.mask.shape, events.dtype)
        return _apply_efficiency(params, u, events, selector, slope)

    return Layer(init=init, apply=apply)


def _apply_efficiency(
    params: Params, u: Array | None, events: Events, selector: Callable[[Array], Array], slope: float
) -> Events:
    """Soft (``u`` None) or stochastic (uniforms ``u`` [N, P]) acceptance × efficiency."""
    dt = events.dtype
    selected = events.mask & selector(events.pid)
    prob = keep_probability(params, events.p, slope)
    if u is None:
        previous = events.extra.get(KEEP_PROB, events.mask.astype(dt))
        return events.with_extra(**{KEEP_PROB: previous * jnp.where(selected, prob, 1.0)})
    keep = u < prob
    logp_particle = jnp.where(keep, kin.safe_log(prob), kin.safe_log(1.0 - prob))
    logp = jnp.sum(jnp.where(selected, logp_particle, 0.0), axis=1)
    previous = events.extra.get(LOGPROB, jnp.zeros(events.n_events, dt))
    dropped = drop_particles(events, selected & ~keep)
    return dropped.with_extra(**{LOGPROB: previous + logp})


def drop_invisible() -> Layer:
    """Remove neutrinos (they escape the detector); deterministic, no parameters."""

    def init(key: Key) -> Params:
        del key
        return {}

    def apply(params: Params, key: Key, events: Events) -> Events:
        del params, key
        return drop_particles(events, events.mask & pdg.is_invisible(events.pid))

    return Layer(init=init, apply=apply)
