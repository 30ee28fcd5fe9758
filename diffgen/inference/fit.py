"""Minimise a loss over a params pytree with optax; Hessian covariance; 1-D profile scans.

``fit`` runs any optax optimiser (Adam, SGD, L-BFGS …) on a loss ``loss(params)`` or
``loss(params, key)``; it freezes parts of the pytree with ``optax.masked``, handles bounds and
positivity by optimising unconstrained variables (``positive()``, ``bounded(lo, hi)``,
``scaled(centre, scale)``), guards against NaN, records the history and shows a progress bar.

Random numbers of a stochastic loss (``key`` given):

- ``random_numbers="fixed"`` (common random numbers, the default): every step sees the same
  key, so the loss is a deterministic, smooth function of the parameters. Right for fits of a
  Monte Carlo estimate whose statistical error is small compared with the data errors (the
  Z-lineshape fit): fast, convergent, usable with L-BFGS and the Hessian. The optimum carries
  the (fixed) MC fluctuation of that one sample; estimate it by repeating with other seeds.
- ``random_numbers="refresh"``: step ``t`` uses ``fold_in(key, t)``. This is stochastic
  gradient descent on the *expected* loss: no bias from one particular sample, but the loss
  never settles, so use a decaying learning rate, Adam/SGD (not line searches) and judge
  convergence from the history. Right when each step can only afford a small sample or when
  the loss is an expectation over discrete choices (score-function gradients).

Uncertainties: ``hessian_covariance`` returns ``2·errordef·H⁻¹`` at the optimum, with
``errordef = 1`` for a χ² and ``0.5`` for a negative log-likelihood (F. James, M. Roos,
Comput. Phys. Commun. 10 (1975) 343; PDG Review "Statistics", eq. 40.30).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from diffgen.typing import Array, Key, Params

__all__ = [
    "Covariance",
    "FitResult",
    "ProfileScan",
    "Transform",
    "bounded",
    "fit",
    "hessian_covariance",
    "param_names",
    "positive",
    "profile_scan",
    "scaled",
]


# --------------------------------------------------------------------------- transforms


class Transform(NamedTuple):
    """A bijection from an unconstrained variable u to a constrained parameter θ.

    Attributes:
      forward: ``u -> θ``. inverse: ``θ -> u`` (raises ``ValueError`` outside the domain).
      name: description used in messages.
    """

    forward: Callable[[Array], Array]
    inverse: Callable[[Array], Array]
    name: str


def positive() -> Transform:
    """θ = softplus(u) > 0 (softplus rather than exp: linear growth, no overflow)."""

    def inverse(theta: Array) -> Array:
        theta = jnp.asarray(theta)
        if not isinstance(theta, jax.core.Tracer) and np.any(np.asarray(theta) <= 0):
            raise ValueError(f"positive(): the parameter must be > 0, got {theta}")
        return theta + jnp.log(-jnp.expm1(-theta))

    return Transform(jax.nn.softplus, inverse, "positive")


def bounded(low: float, high: float) -> Transform:
    """θ = low + (high − low)·sigmoid(u) ∈ (low, high)."""
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"bounded(low, high) needs finite low < high, got ({low}, {high})")

    def forward(u: Array) -> Array:
        return low + (high - low) * jax.nn.sigmoid(u)

    def inverse(theta: Array) -> Array:
        theta = jnp.asarray(theta)
        if not isinstance(theta, jax.core.Tracer) and (
            np.any(np.asarray(theta) <= low) or np.any(np.asarray(theta) >= high)
        ):
            raise ValueError(f"bounded({low}, {high}): the parameter must lie strictly inside, got {theta}")
        f = (theta - low) / (high - low)
        return jnp.log(f) - jnp.log1p(-f)

    return Transform(forward, inverse, f"bounded({low}, {high})")


def scaled(centre: float, scale: float) -> Transform:
    """θ = centre + scale·u: puts a parameter on an O(1) scale for the optimiser (scale > 0)."""
    if not (math.isfinite(centre) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"scaled(centre, scale) needs finite centre and scale > 0, got ({centre}, {scale})")
    return Transform(
        lambda u: centre + scale * u, lambda t: (jnp.asarray(t) - centre) / scale, f"scaled({centre}, {scale})"
    )


# --------------------------------------------------------------------------- pytree paths


def _path_str(path: tuple[Any, ...]) -> str:
    parts = []
    for p in path:
        if isinstance(p, jax.tree_util.DictKey):
            parts.append(str(p.key))
        elif isinstance(p, jax.tree_util.SequenceKey):
            parts.append(str(p.idx))
        elif isinstance(p, jax.tree_util.GetAttrKey):
            parts.append(p.name)
        else:
            parts.append(str(p))
    return "/".join(parts)


def param_names(params: Params) -> list[str]:
    """The leaf names of a params pytree as ``"stage/name"`` paths, in flattening order."""
    return [_path_str(path) for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]


def _match(name: str, patterns: Collection[str]) -> bool:
    return any(name == p or name.startswith(p + "/") for p in patterns)


def _check_params(params: Params, what: str = "params") -> None:
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    if not leaves:
        raise ValueError(f"{what} is empty: nothing to fit")
    for path, leaf in leaves:
        arr = np.asarray(leaf)
        if not np.issubdtype(arr.dtype, np.floating):
            raise TypeError(f"{what}[{_path_str(path)!r}] must be a floating array, got dtype {arr.dtype}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{what}[{_path_str(path)!r}] is not finite: {arr}")


def _frozen_mask(params: Params, frozen: Collection[str]) -> Params:
    names = param_names(params)
    unknown = [f for f in frozen if not any(n == f or n.startswith(f + "/") for n in names)]
    if unknown:
        raise ValueError(f"frozen names {unknown} are not parameters; known: {names}")
    treedef = jax.tree_util.tree_structure(params)
    return jax.tree_util.tree_unflatten(treedef, [not _match(n, frozen) for n in names])


def _transform_tree(params: Params, transforms: Mapping[str, Transform] | None) -> Params:
    names = param_names(params)
    transforms = dict(transforms or {})
    unknown = [t for t in transforms if not any(n == t or n.startswith(t + "/") for n in names)]
    if unknown:
        raise ValueError(f"transforms given for {unknown}, which are not parameters; known: {names}")
    for t, tr in transforms.items():
        if not isinstance(tr, Transform):
            raise TypeError(f"transforms[{t!r}] must be a Transform (positive(), bounded(), scaled()), got {tr!r}")
    chosen = []
    for n in names:
        match = [t for t in transforms if n == t or n.startswith(t + "/")]
        chosen.append(transforms[max(match, key=len)] if match else None)
    return chosen


# --------------------------------------------------------------------------- fit


@dataclasses.dataclass
class FitResult:
    """Outcome of :func:`fit`.

    Attributes:
      params: the best accepted parameters (constrained, same pytree as the input).
      loss: loss at ``params`` (with the base key for a stochastic loss).
      history: ``{"loss": [T], "grad_norm": [T]}`` NumPy arrays, one entry per accepted step
        (loss at the parameters *before* the step's update).
      n_steps: accepted steps.
      converged: True if the convergence criterion was met.
      status: ``"converged"``, ``"max_steps"`` or ``"nan"``.
      message: one-line human-readable summary (for ``"nan"``: which step and which leaves).
      time_s: wall time.
    """

    params: Params
    loss: float
    history: dict[str, np.ndarray]
    n_steps: int
    converged: bool
    status: str
    message: str
    time_s: float


def _nonfinite_leaves(tree: Params) -> list[str]:
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if not np.all(np.isfinite(np.asarray(leaf))):
            out.append(_path_str(path))
    return out


_FIT_CACHE: dict = {}


def _build_fit(loss, optimizer, treedef, trainable, chosen, has_key, refresh, steps, tol, patience, gtol, on_nan):
    """The compiled pieces of :func:`fit` (cached, so refitting the same loss does not recompile)."""

    def constrain(u: Params) -> Params:
        ls = jax.tree_util.tree_leaves(u)
        out = [x if tr is None else tr.forward(x) for x, tr in zip(ls, chosen, strict=True)]
        return jax.tree_util.tree_unflatten(treedef, out)

    if not has_key:

        def objective(u: Params, k: Any) -> Array:
            del k
            return loss(constrain(u))

    else:

        def objective(u: Params, k: Key) -> Array:
            return loss(constrain(u), k)

    opt = optax.chain(
        optax.masked(optimizer, trainable, mask_compatible_extra_args=True),
        optax.masked(optax.set_to_zero(), jax.tree.map(lambda t: not t, trainable)),
    )
    zero_frozen = lambda g: jax.tree.map(lambda x, t: x if t else jnp.zeros_like(x), g, trainable)  # noqa: E731
    gtol_v = -1.0 if gtol is None else float(gtol)
    max_skip = 10

    def raw_step(u, state, k):
        val, g = jax.value_and_grad(objective)(u, k)
        g = zero_frozen(g)

        def value_fn(v):
            # masked line searches hand over trees with MaskedNode leaves for frozen entries
            full = jax.tree.map(
                lambda m, cur: cur if isinstance(m, optax.MaskedNode) else m,
                v,
                u,
                is_leaf=lambda x: isinstance(x, optax.MaskedNode),
            )
            return objective(full, k)

        # optax mixes its int32 step count with floats; the user's loss stays under the caller's
        # promotion rules, only the optimiser's own arithmetic uses the standard ones
        with jax.numpy_dtype_promotion("standard"):
            updates, new_state = opt.update(g, state, u, value=val, grad=g, value_fn=value_fn)
        new_u = optax.apply_updates(u, updates)
        gnorm = optax.tree.norm(g)
        ok = jnp.isfinite(val) & jnp.isfinite(gnorm)
        return new_u, new_state, val, gnorm, ok, g

    def tree_where(c, a, b):
        return jax.tree.map(lambda x, y: jnp.where(c, x, y), a, b)

    def one(carry, t, base_key):
        # u: next point to evaluate (state belongs to it); good_*: last point with a finite
        # loss and gradient. A step is accepted when the loss and gradient at u are finite.
        u, state, good_u, good_state, done, code, calm, prev, nskip, bad_g, bad_val, bad_t = carry
        k = jax.random.fold_in(base_key, t) if refresh else base_key
        new_u, new_state, val, gnorm, ok, g = raw_step(u, state, k)
        active = ~done & (t < steps)
        accept = active & ok
        reject = active & ~ok
        first_bad = reject & (bad_t < 0)
        bad_g = tree_where(first_bad, g, bad_g)
        bad_val = jnp.where(first_bad, val, bad_val)
        bad_t = jnp.where(first_bad, t, bad_t)
        small = jnp.abs(val - prev) <= tol * (1.0 + jnp.abs(val))
        calm = jnp.where(accept, jnp.where(small, calm + 1, 0), calm)
        conv = accept & ((calm >= patience) | (gnorm <= gtol_v))
        nskip = jnp.where(reject, nskip + 1, jnp.where(accept, 0, nskip))
        stop_nan = reject & ((nskip > max_skip) if on_nan == "skip" else True)
        out_of_steps = active & (t == steps - 1)
        good_u = tree_where(accept, u, good_u)
        good_state = tree_where(accept, state, good_state)
        # accepted: move on; rejected: go back to the last good point (retried with new numbers
        # only in "skip" mode, otherwise the loop stops here)
        u = tree_where(accept, new_u, tree_where(reject, good_u, u))
        state = tree_where(accept, new_state, tree_where(reject, good_state, state))
        prev = jnp.where(accept, val, prev)
        code = jnp.where(conv, 1, jnp.where(stop_nan, 2, code))
        done = done | conv | stop_nan | out_of_steps
        return (u, state, good_u, good_state, done, code, calm, prev, nskip, bad_g, bad_val, bad_t), (
            val,
            gnorm,
            accept,
        )

    @functools.partial(jax.jit, static_argnames="length")
    def run_chunk(carry, start, base_key, length):
        carry, outs = jax.lax.scan(lambda c, t: one(c, t, base_key), carry, start + jnp.arange(length))
        # losses at the current and at the last good point, for the summary (one compilation)
        return carry, outs, objective(carry[0], base_key), objective(carry[2], base_key)

    return constrain, objective, opt, run_chunk


def fit(
    loss: Callable[..., Array],
    params: Params,
    optimizer: optax.GradientTransformation | None = None,
    *,
    steps: int = 1000,
    key: Key | None = None,
    random_numbers: str = "fixed",
    frozen: Collection[str] = (),
    transforms: Mapping[str, Transform] | None = None,
    tol: float = 1e-10,
    patience: int = 5,
    gtol: float | None = None,
    on_nan: str = "stop",
    progress: bool = False,
    description: str = "fit",
    chunk: int = 100,
) -> FitResult:
    """Minimise ``loss`` over ``params`` with an optax optimiser.

    Args:
      loss: ``loss(params) -> scalar``, or ``loss(params, key) -> scalar`` when ``key`` is given.
      params: starting point, a pytree (dict) of floating arrays, in constrained (physical) units.
      optimizer: any optax transformation; default ``optax.adam(1e-2)``. Line-search optimisers
        (``optax.lbfgs()``) receive ``value``, ``grad`` and ``value_fn``; use them only with
        ``random_numbers="fixed"``.
      steps: maximum number of steps (≥ 1).
      key: PRNG key of a stochastic loss (None for a deterministic loss).
      random_numbers: ``"fixed"`` (same key every step) or ``"refresh"`` (``fold_in(key, t)``);
        see the module docstring for when each is right.
      frozen: leaf names (``"stage/name"``, or a stage prefix) held fixed; implemented with
        ``optax.masked`` (no optimiser state is kept for them) plus zeroed updates.
      transforms: ``{"name": Transform}``; the optimiser works on ``u`` with θ = forward(u).
      tol: converged when ``|Δloss| ≤ tol·(1 + |loss|)`` for ``patience`` consecutive steps.
      patience: see ``tol``.
      gtol: also converged when the gradient norm (unconstrained variables) is ≤ ``gtol``.
      on_nan: what to do when a step gives a non-finite loss, gradient or update: ``"stop"``
        (keep the last good params, status ``"nan"``, report in ``message``), ``"raise"``
        (``FloatingPointError`` with the report) or ``"skip"`` (go back to the last good
        params and continue; useful with refreshed random numbers, where the retry draws new
        ones; at most 10 in a row).
      progress: show a rich progress bar with the current loss (on stderr).
      description: label of the progress bar.
      chunk: steps run per compiled ``lax.scan`` call between host checks (progress, stop).

    Returns:
      :class:`FitResult`.
    """
    if not callable(loss):
        raise TypeError(f"loss must be callable, got {type(loss).__name__}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if random_numbers not in ("fixed", "refresh"):
        raise ValueError(f"random_numbers must be 'fixed' or 'refresh', got {random_numbers!r}")
    if on_nan not in ("stop", "raise", "skip"):
        raise ValueError(f"on_nan must be 'stop', 'raise' or 'skip', got {on_nan!r}")
    if patience < 1:
        raise ValueError(f"patience must be >= 1, got {patience}")
    if isinstance(frozen, str):
        frozen = (frozen,)
    _check_params(params)
    params = jax.tree.map(jnp.asarray, params)
    optimizer = optax.adam(1e-2) if optimizer is None else optimizer

    trainable = _frozen_mask(params, frozen)
    if not any(jax.tree_util.tree_leaves(trainable)):
        raise ValueError("every parameter is frozen: nothing to fit")
    chosen = _transform_tree(params, transforms)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    u_leaves = [
        leaf if tr is None else jnp.asarray(tr.inverse(leaf), leaf.dtype)
        for leaf, tr in zip(leaves, chosen, strict=True)
    ]
    u0 = jax.tree_util.tree_unflatten(treedef, u_leaves)

    cache_key = (
        id(loss),
        id(optimizer),
        treedef,
        tuple(jax.tree_util.tree_leaves(trainable)),
        tuple(map(id, chosen)),
        key is not None,
        random_numbers,
        steps,
        tol,
        patience,
        gtol,
        on_nan,
    )
    hit = _FIT_CACHE.get(cache_key)
    same = hit is not None and hit[0] is loss and hit[1] is optimizer
    if same and all(x is y for x, y in zip(hit[2], chosen, strict=True)):
        constrain, _, opt, run_chunk = hit[3]
    else:
        refresh = key is not None and random_numbers == "refresh"
        built = _build_fit(
            loss, optimizer, treedef, trainable, chosen, key is not None, refresh, steps, tol, patience, gtol, on_nan
        )
        constrain, _, opt, run_chunk = built
        _FIT_CACHE[cache_key] = (loss, optimizer, chosen, built)
        while len(_FIT_CACHE) > 16:
            _FIT_CACHE.pop(next(iter(_FIT_CACHE)))
    base_key = jnp.zeros((), jnp.uint32) if key is None else key

    with jax.numpy_dtype_promotion("standard"):
        state0 = opt.init(u0)
    dtype0 = jax.tree_util.tree_leaves(u0)[0].dtype
    carry = (
        u0,
        state0,
        u0,
        state0,
        jnp.asarray(False),
        jnp.asarray(0),
        jnp.asarray(0),
        jnp.asarray(jnp.inf, dtype0),
        jnp.asarray(0),
        jax.tree.map(jnp.zeros_like, u0),
        jnp.asarray(0.0, dtype0),
        jnp.asarray(-1),
    )
    hist_loss: list[np.ndarray] = []
    hist_g: list[np.ndarray] = []
    t0 = time.perf_counter()
    bar = None
    if progress:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        bar.start()
        task = bar.add_task(description, total=steps, loss="-")
    length = max(1, min(int(chunk), steps))
    start = 0
    try:
        while start < steps:
            carry, (vals, gnorms, accepted), loss_u, loss_good = run_chunk(carry, jnp.asarray(start), base_key, length)
            acc = np.asarray(accepted)
            hist_loss.append(np.asarray(vals)[acc])
            hist_g.append(np.asarray(gnorms)[acc])
            start += length
            if bar is not None:
                last = float(hist_loss[-1][-1]) if acc.any() else float("nan")
                bar.update(task, completed=min(start, steps), loss=f"{last:.8g}")
            if bool(carry[4]):
                break
    finally:
        if bar is not None:
            bar.stop()

    u, _, good_u, _, _, code, _, _, _, bad_g, bad_val, bad_t = carry
    history = {"loss": np.concatenate(hist_loss), "grad_norm": np.concatenate(hist_g)}
    n_acc = len(history["loss"])
    code = int(code)
    status = {0: "max_steps", 1: "converged", 2: "nan"}[code]
    message = ""
    if code != 2:
        final_loss = float(loss_u)
        if not np.isfinite(final_loss):
            # the last update left the finite region: report it like a rejected step
            code, status, bad_t = 2, "nan", min(start, steps)
            bad_val, bad_g = jnp.asarray(final_loss), jax.tree.map(jnp.zeros_like, u)
    if code == 2:
        bad = _nonfinite_leaves(bad_g)
        report = (
            f"step {int(bad_t)} rejected: "
            + ("loss is non-finite; " if not np.isfinite(float(bad_val)) else f"loss = {float(bad_val):.6g}; ")
            + (f"non-finite gradient for {bad}; " if bad else "")
            + f"kept the last good params (after {n_acc} accepted steps)"
        )
        if on_nan == "raise":
            raise FloatingPointError(report)
        u = good_u
        final_loss = float(loss_good)
        message = report
    elif code == 1:
        message = f"converged after {n_acc} steps; loss {final_loss:.10g}"
    else:
        message = f"stopped after {n_acc} steps without meeting tol={tol:g}; loss {final_loss:.10g}"
    return FitResult(
        params=constrain(u),
        loss=final_loss,
        history=history,
        n_steps=n_acc,
        converged=code == 1,
        status=status,
        message=message,
        time_s=time.perf_counter() - t0,
    )


# --------------------------------------------------------------------------- covariance


@dataclasses.dataclass
class Covariance:
    """Covariance of the free parameters at an optimum.

    Attributes:
      names: [K] parameter names (``"stage/name"``; array leaves as ``name[i]``).
      values: [K] parameter values.
      matrix: [K, K] covariance ``2·errordef·H⁻¹``.
      hessian: [K, K] Hessian of the loss.
      errors: ``{name: σ}``.
      correlation: [K, K] correlation matrix.
    """

    names: list[str]
    values: np.ndarray
    matrix: np.ndarray
    hessian: np.ndarray
    errors: dict[str, float]
    correlation: np.ndarray

    def error(self, name: str) -> float:
        """σ of one parameter by name."""
        if name not in self.errors:
            raise KeyError(f"{name!r} is not a free parameter; known: {self.names}")
        return self.errors[name]

    def propagate(self, fn: Callable[[Params], Array], params: Params) -> float:
        """σ of a derived scalar ``fn(params)`` by linear error propagation ``√(gᵀ C g)``."""
        g = jax.jit(jax.grad(fn))(params)
        flat = _flat_named(g)
        vec = np.array([flat[n] for n in self.names])
        return float(np.sqrt(vec @ self.matrix @ vec))


def _flat_named(params: Params) -> dict[str, float]:
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        arr = np.asarray(leaf)
        name = _path_str(path)
        if arr.ndim == 0:
            out[name] = float(arr)
        else:
            for i, v in enumerate(arr.reshape(-1)):
                out[f"{name}[{i}]"] = float(v)
    return out


_HESS_CACHE: dict = {}


def hessian_covariance(
    loss: Callable[..., Array],
    params: Params,
    *,
    errordef: float = 1.0,
    frozen: Collection[str] = (),
    key: Key | None = None,
) -> Covariance:
    """Covariance ``2·errordef·H⁻¹`` of the free parameters from the Hessian of ``loss`` at ``params``.

    The compiled Hessian is cached per ``loss`` object, so repeated calls (e.g. over pseudo-data
    held in frozen leaves, or over seeds passed as ``key``) do not recompile.

    Args:
      loss: ``loss(params) -> scalar``, or ``loss(params, key)`` with ``key`` given (evaluated
        at that fixed key); a χ² (``errordef=1``) or a negative log-likelihood (``errordef=0.5``).
      params: the optimum (e.g. ``FitResult.params``), physical units.
      errordef: the loss change that defines one standard deviation.
      frozen: leaf names excluded (held fixed at their values in ``params``).
      key: PRNG key of a stochastic loss.

    Returns:
      :class:`Covariance`.

    Raises:
      ValueError: if the Hessian is not finite or not positive definite (not at a minimum,
        or a parameter the loss does not depend on).
    """
    if not errordef > 0:
        raise ValueError(f"errordef must be > 0, got {errordef}")
    if isinstance(frozen, str):
        frozen = (frozen,)
    _check_params(params)
    params = jax.tree.map(jnp.asarray, params)
    _frozen_mask(params, frozen)  # validates the names
    names_all = param_names(params)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    pairs = zip(names_all, leaves, strict=True)
    free = {n: v for n, v in pairs if not _match(n, frozen)}
    if not free:
        raise ValueError("every parameter is frozen: no covariance to compute")
    flat, unravel = ravel_pytree(free)
    shapes = tuple((np.shape(x), np.asarray(x).dtype.str) for x in leaves)
    cache_key = (id(loss), treedef, tuple(names_all), tuple(sorted(free)), shapes, key is not None)
    hit = _HESS_CACHE.get(cache_key)
    if hit is not None and hit[0] is loss:
        hess = hit[1]
    else:

        def f(x: Array, all_leaves: list[Array], k: Any) -> Array:
            d = unravel(x)
            full = [d[n] if n in d else leaf for n, leaf in zip(names_all, all_leaves, strict=True)]
            p = jax.tree_util.tree_unflatten(treedef, full)
            return loss(p) if key is None else loss(p, k)

        hess = jax.jit(jax.hessian(f))
        _HESS_CACHE[cache_key] = (loss, hess)
        while len(_HESS_CACHE) > 16:
            _HESS_CACHE.pop(next(iter(_HESS_CACHE)))
    h = np.asarray(hess(flat, leaves, jnp.zeros((), jnp.uint32) if key is None else key), dtype=np.float64)
    names = list(_flat_named(free).keys())
    if not np.all(np.isfinite(h)):
        raise ValueError(f"the Hessian of the loss is not finite at params (parameters {names})")
    h = 0.5 * (h + h.T)
    eig = np.linalg.eigvalsh(h)
    if not np.all(eig > 0):
        raise ValueError(
            f"the Hessian is not positive definite at params (eigenvalues {eig}); not at a minimum, "
            f"or the loss does not depend on some of {names}"
        )
    cov = 2.0 * errordef * np.linalg.inv(h)
    cov = 0.5 * (cov + cov.T)
    sig = np.sqrt(np.diag(cov))
    return Covariance(
        names=names,
        values=np.asarray(flat, dtype=np.float64),
        matrix=cov,
        hessian=h,
        errors=dict(zip(names, map(float, sig), strict=True)),
        correlation=cov / np.outer(sig, sig),
    )


# --------------------------------------------------------------------------- profile scan


@dataclasses.dataclass
class ProfileScan:
    """Result of :func:`profile_scan`.

    Attributes:
      name: scanned parameter. values: [M] scanned values. loss: [M] profiled loss.
      delta: [M] ``loss − min(loss)``. interval: (low, high) where ``delta`` crosses
        ``errordef`` (linear interpolation; NaN if not crossed inside the scan range).
      best: the scanned value with the smallest loss.
    """

    name: str
    values: np.ndarray
    loss: np.ndarray
    delta: np.ndarray
    interval: tuple[float, float]
    best: float


def profile_scan(
    loss: Callable[[Params], Array],
    params: Params,
    name: str,
    values: Any,
    *,
    iterations: int = 30,
    errordef: float = 1.0,
    frozen: Collection[str] = (),
) -> ProfileScan:
    """1-D profile of a deterministic loss: at each value of ``name`` minimise over the other free parameters.

    The inner minimisation is a damped Newton method (Hessian with absolute eigenvalues, best
    of a set of step lengths including zero, so the loss never increases), compiled once for
    the whole scan; each point starts from the previous point's optimum. Suited to the few
    parameters of a physics fit (the Hessian is formed in full). With no other free parameter
    the profile is a plain scan.

    Args:
      loss: ``loss(params) -> scalar``, twice differentiable.
      params: starting point (ideally the global optimum).
      name: the scalar leaf to scan (``"stage/name"``).
      values: [M] values of that parameter.
      iterations: Newton iterations per point.
      errordef: loss change defining 1σ (1 for χ², 0.5 for NLL).
      frozen: further leaves held fixed.

    Returns:
      :class:`ProfileScan`.
    """
    if isinstance(frozen, str):
        frozen = (frozen,)
    _check_params(params)
    params = jax.tree.map(jnp.asarray, params)
    names = param_names(params)
    if name not in names:
        raise ValueError(f"profile_scan: {name!r} is not a parameter; known: {names}")
    _frozen_mask(params, frozen)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size < 2 or not np.all(np.isfinite(values)):
        raise ValueError(f"values must be a 1-d finite array of at least 2 points, got shape {values.shape}")
    if not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be an int >= 1, got {iterations!r}")
    leaves, treedef = jax.tree_util.tree_flatten(params)
    scanned_leaf = leaves[names.index(name)]
    if np.ndim(scanned_leaf) != 0:
        raise ValueError(f"profile_scan: {name!r} must be a scalar parameter, got shape {np.shape(scanned_leaf)}")
    free = {n: v for n, v in zip(names, leaves, strict=True) if n != name and not _match(n, frozen)}
    x0, unravel = ravel_pytree(free) if free else (jnp.zeros((0,), scanned_leaf.dtype), None)

    def f(x: Array, v: Array) -> Array:
        d = unravel(x) if free else {}
        full = [v if n == name else d.get(n, leaf) for n, leaf in zip(names, leaves, strict=True)]
        return loss(jax.tree_util.tree_unflatten(treedef, full))

    alphas = jnp.concatenate([jnp.zeros((1,), x0.dtype), 2.0 ** -jnp.arange(0, 14, dtype=x0.dtype)])

    @jax.jit
    def minimise(x: Array, v: Array) -> tuple[Array, Array]:
        def body(x, _):
            g = jax.grad(f)(x, v)
            h = jax.hessian(f)(x, v)
            w, q = jnp.linalg.eigh(0.5 * (h + h.T))
            w = jnp.maximum(jnp.abs(w), 1e-12 * jnp.max(jnp.abs(w)) + jnp.finfo(x.dtype).tiny)
            step = -(q @ ((q.T @ g) / w))
            vals = jax.vmap(lambda a: f(x + a * step, v))(alphas)
            vals = jnp.where(jnp.isfinite(vals), vals, jnp.inf)
            return x + alphas[jnp.argmin(vals)] * step, None

        x, _ = jax.lax.scan(body, x, None, length=iterations)
        return x, f(x, v)

    out = []
    x = x0
    for v in values:
        vv = jnp.asarray(v, scanned_leaf.dtype)
        if free:
            x, lv = minimise(x, vv)
        else:
            lv = jax.jit(f)(x, vv)
        out.append(float(lv))
    lossv = np.asarray(out)
    delta = lossv - lossv.min()
    i0 = int(np.argmin(lossv))

    def crossing(indices) -> float:
        for a, b in indices:
            if (delta[a] - errordef) * (delta[b] - errordef) <= 0 and delta[a] != delta[b]:
                return float(values[a] + (errordef - delta[a]) * (values[b] - values[a]) / (delta[b] - delta[a]))
        return float("nan")

    low = crossing([(i, i + 1) for i in range(i0 - 1, -1, -1)])
    high = crossing([(i, i + 1) for i in range(i0, len(values) - 1)])
    return ProfileScan(name=name, values=values, loss=lossv, delta=delta, interval=(low, high), best=float(values[i0]))
