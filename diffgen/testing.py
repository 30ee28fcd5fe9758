"""Assertions for physics invariants and gradients, for diffgen's tests and for users' layers.

Every assertion works on concrete (non-traced) values, raises ``AssertionError`` with the
offending event/parameter named, and returns nothing on success (``check_layer_grads``
returns its comparison table so a test can print or inspect it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diffgen import kinematics as kin
from diffgen.core import Events, Layer, Source
from diffgen.typing import Array, Key, Params

__all__ = [
    "assert_compatible",
    "assert_finite_grads",
    "assert_momentum_conserved",
    "assert_on_shell",
    "assert_padding_clean",
    "check_layer_grads",
]


def assert_momentum_conserved(events: Events, initial: Events | Any, *, rtol: float = 1e-9) -> None:
    """Assert that each event's summed four-momentum equals the initial one.

    The deviation ``max_μ |ΣP_μ − P⁰_μ|`` is compared with ``rtol`` times the initial
    energy of that event.

    Args:
      events: the events to check.
      initial: the ``Events`` they were made from, or the expected totals as [N, 4] or [4]
        (E, px, py, pz) GeV.
      rtol: allowed deviation relative to the event's total energy.
    """
    total = np.asarray(events.momentum_sum())
    if isinstance(initial, Events):
        expected = np.asarray(initial.momentum_sum())
    else:
        expected = np.broadcast_to(np.asarray(initial, dtype=total.dtype), total.shape)
    scale = np.maximum(np.abs(expected[:, 0]), np.finfo(total.dtype).tiny)
    dev = np.max(np.abs(total - expected), axis=-1) / scale
    worst = int(np.argmax(dev))
    if not dev[worst] <= rtol:
        raise AssertionError(
            f"four-momentum not conserved: event {worst} has total {total[worst]} vs expected "
            f"{expected[worst]} (relative deviation {dev[worst]:.3g} > rtol {rtol:.3g}; "
            f"{int(np.sum(dev > rtol))} of {len(dev)} events fail)"
        )


def assert_on_shell(
    events: Events,
    masses: Mapping[int, float] | Callable[[np.ndarray], np.ndarray] | None = None,
    *,
    rtol: float = 1e-10,
) -> None:
    """Assert that every real particle satisfies ``E² − |p⃗|² = m²`` for its species.

    Args:
      events: events to check; padding is ignored.
      masses: ``{|pid|: mass in GeV}``, or a function from a pid array to a mass array;
        ``None`` means every particle is massless. A pid missing from the mapping fails.
      rtol: allowed ``|m²_measured − m²|`` relative to ``E²``.
    """
    p = np.asarray(events.p)
    mask = np.asarray(events.mask)
    pid = np.asarray(events.pid)
    if masses is None:
        expected = np.zeros(pid.shape, dtype=p.dtype)
    elif callable(masses):
        expected = np.asarray(masses(pid), dtype=p.dtype)
    else:
        unknown = sorted(set(np.abs(pid[mask]).tolist()) - set(masses))
        if unknown:
            raise AssertionError(f"assert_on_shell: no mass given for pid(s) {unknown}")
        lookup = np.vectorize(lambda x: masses.get(abs(int(x)), 0.0), otypes=[p.dtype])
        expected = lookup(pid) if pid.size else np.zeros(pid.shape, p.dtype)
    m2 = np.asarray(kin.mass2(p))
    scale = np.maximum(p[..., 0] ** 2, np.finfo(p.dtype).tiny)
    dev = np.where(mask, np.abs(m2 - expected**2) / scale, 0.0)
    worst = np.unravel_index(int(np.argmax(dev)), dev.shape)
    if not dev[worst] <= rtol:
        raise AssertionError(
            f"particle off shell: event {worst[0]}, slot {worst[1]} (pid {pid[worst]}) has m² = "
            f"{m2[worst]:.12g} GeV², expected {expected[worst] ** 2:.12g} (relative to E² "
            f"{dev[worst]:.3g} > rtol {rtol:.3g}; {int(np.sum(dev > rtol))} particles fail)"
        )


def assert_padding_clean(events: Events) -> None:
    """Assert that padding slots hold zero momentum, pid 0 and (if present) colour 0.

    Args:
      events: the events to check; padding slots are those with ``mask`` False.

    Raises:
      AssertionError: a padding slot carries a non-zero momentum, pid or colour.
    """
    mask = np.asarray(events.mask)
    pad = ~mask
    checks = {
        "p": np.any(np.asarray(events.p)[pad] != 0),
        "pid": np.any(np.asarray(events.pid)[pad] != 0),
    }
    if events.colour is not None:
        checks["colour"] = np.any(np.asarray(events.colour)[pad] != 0)
    dirty = [k for k, v in checks.items() if v]
    if dirty:
        raise AssertionError(f"padding slots carry non-zero {dirty}")


def assert_compatible(value: Any, expected: Any, sigma: Any, *, n_sigma: float = 3.0, what: str = "value") -> None:
    """Assert ``|value − expected| ≤ n_sigma·σ`` element-wise (Monte Carlo tolerances).

    Args:
      value: measured value(s).
      expected: reference value(s), broadcast-compatible.
      sigma: the combined standard error of ``value − expected`` (must be > 0).
      n_sigma: number of standard deviations allowed.
      what: name used in the message.
    """
    value, expected, sigma = (np.asarray(x, dtype=float) for x in (value, expected, sigma))
    if np.any(sigma <= 0) or not np.all(np.isfinite(sigma)):
        raise AssertionError(f"{what}: the uncertainty must be positive and finite, got {sigma}")
    pull = np.abs(value - expected) / sigma
    if not np.all(pull <= n_sigma):
        raise AssertionError(
            f"{what} incompatible with reference: {value} vs {expected} ± {sigma} (pull {np.max(pull):.2f} > {n_sigma})"
        )


def assert_finite_grads(fn: Callable[..., Array], *args: Any) -> None:
    """Assert that ``jax.grad(fn)`` at ``args`` has only finite entries (all arguments)."""
    grads = jax.jit(jax.grad(fn, argnums=tuple(range(len(args)))))(*args)
    for path, leaf in jax.tree_util.tree_leaves_with_path(grads):
        leaf = np.asarray(leaf)
        if not np.all(np.isfinite(leaf)):
            raise AssertionError(
                f"non-finite gradient at argument{jax.tree_util.keystr(path)}: "
                f"{int(np.sum(~np.isfinite(leaf)))} entries"
            )


def check_layer_grads(
    layer: Layer | Source,
    params: Params,
    key: Key,
    events: Events | int,
    observable: Callable[[Events], Array],
    *,
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-10,
    max_elements: int = 8,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Compare ``jax.grad`` with central finite differences using common random numbers.

    The scalar ``f(θ) = observable(layer.apply(θ, key, events))`` (or
    ``observable(source.sample(θ, key, n))``) is evaluated with the *same* key at every
    θ, so both derivatives see the same random numbers. For each floating leaf of
    ``params`` with at most ``max_elements`` entries every entry is checked; for larger
    leaves one random unit direction is checked (directional derivative).

    Args:
      layer: a ``Layer`` or a ``Source``.
      params: the parameter pytree at which to differentiate.
      key: PRNG key used for every evaluation.
      events: input ``Events`` for a layer, or the static number of events for a source.
      observable: ``Events -> scalar`` (must be smooth in θ for the check to be meaningful).
      eps: finite-difference step relative to ``max(1, |θ|)``.
      rtol, atol: tolerance ``|AD − FD| ≤ atol + rtol·max(|AD|, |FD|)``.
      max_elements: leaves up to this size are checked entry by entry.
      seed: seed of the random directions for large leaves.

    Returns:
      ``{"<path>[i]": (ad, fd)}`` for every check made.
    """
    if isinstance(layer, Source):
        if not isinstance(events, int):
            raise TypeError("check_layer_grads: a Source needs the number of events as an int")

        def f(theta: Params) -> Array:
            return observable(layer.sample(theta, key, events))
    elif isinstance(layer, Layer):
        if not isinstance(events, Events):
            raise TypeError("check_layer_grads: a Layer needs input Events")

        def f(theta: Params) -> Array:
            return observable(layer.apply(theta, key, events))
    else:
        raise TypeError(f"check_layer_grads: expected a Layer or Source, got {type(layer).__name__}")

    f_jit = jax.jit(f)
    grads = jax.jit(jax.grad(f))(params)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    grad_leaves = jax.tree_util.tree_leaves(grads)
    rng = np.random.default_rng(seed)
    results: dict[str, tuple[float, float]] = {}
    failures = []

    def with_leaf(index: int, value: Array) -> Params:
        new = [leaf for _, leaf in leaves]
        new[index] = value
        return jax.tree_util.tree_unflatten(treedef, new)

    for i, ((path, leaf), g) in enumerate(zip(leaves, grad_leaves, strict=True)):
        leaf = jnp.asarray(leaf)
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            continue
        name = jax.tree_util.keystr(path)
        g = np.asarray(g)
        if leaf.size <= max_elements:
            directions = []
            for j in range(leaf.size):
                d = np.zeros(leaf.size)
                d[j] = 1.0
                directions.append((f"{name}[{j}]", d.reshape(leaf.shape)))
        else:
            d = rng.normal(size=leaf.shape)
            directions = [(f"{name}·v", d / np.linalg.norm(d))]
        for label, d in directions:
            h = eps * max(1.0, float(np.max(np.abs(np.asarray(leaf)))))
            d_arr = jnp.asarray(d, dtype=leaf.dtype)
            fd = (float(f_jit(with_leaf(i, leaf + h * d_arr))) - float(f_jit(with_leaf(i, leaf - h * d_arr)))) / (2 * h)
            ad = float(np.sum(g * d))
            results[label] = (ad, fd)
            if not (np.isfinite(ad) and abs(ad - fd) <= atol + rtol * max(abs(ad), abs(fd))):
                failures.append(f"{label}: grad {ad:.10g} vs finite difference {fd:.10g}")
    if failures:
        raise AssertionError("gradient check failed:\n  " + "\n  ".join(failures))
    return results
