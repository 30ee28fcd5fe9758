"""Learned cluster-decay angle models (HADML in JAX) and their checkpoints.

Two conditional models of the decay angles (cos θ, φ) of hadron 1 in the cluster rest frame
(θ measured from the quark constituent, as in :mod:`diffgen.hadronization.decay`), given the
cluster four-momentum and the constituent direction:

- a conditional GAN generator (flax NNX MLP: condition ⊕ noise → (cos θ, φ)), as HADML's
  cluster-decay GAN (A. Ghosh et al., arXiv:2203.12660; J. Chan et al., arXiv:2305.17169);
- a conditional normalizing flow built from distrax rational-quadratic spline bijectors
  (C. Durkan et al., arXiv:1906.04032) in a two-dimensional coupling architecture
  (L. Dinh et al., arXiv:1605.08803) on a uniform base, trained by maximum likelihood and
  exposing ``log_prob``.

Both sit behind ``nnx.split``/``nnx.merge`` (DESIGN.md §3): their params are plain nested
dicts of arrays. The condition features are ``[log M, log E, p⃗/E, n̂]`` (8 numbers) with the
cluster mass M and energy E in GeV.

Checkpoints are single ``.npz`` files (no pickle) holding the params, optionally the optimizer
state and step, and the JSON config, written atomically.
"""

from __future__ import annotations

import itertools
import json
import os
import warnings
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from diffgen import kinematics as kin
from diffgen.hadronization.decay import AngleModel
from diffgen.typing import Array, Key, Params

__all__ = [
    "ARCH_KEYS",
    "Discriminator",
    "FlowNet",
    "Generator",
    "angle_model",
    "condition_features",
    "default_config",
    "flow_log_prob",
    "flow_sample",
    "generator_sample",
    "init_params",
    "load_checkpoint",
    "save_checkpoint",
]

N_COND = 8

#: Config keys that fix the architecture (a checkpoint must match them).
ARCH_KEYS = ("model", "hidden", "depth", "noise_dim", "n_bins", "n_layers", "param_dtype")


def default_config(model: str = "gan", **overrides: Any) -> dict[str, Any]:
    """Architecture and training defaults of a learned model.

    Args:
      model: ``"gan"`` or ``"flow"``.
      **overrides: any key of the returned dict.

    Returns:
      dict with ``model, hidden, depth, noise_dim, n_bins, n_layers, param_dtype`` (architecture)
      and ``seed``.
    """
    if model not in ("gan", "flow"):
        raise ValueError(f"learned model must be 'gan' or 'flow', got {model!r}")
    cfg = {
        "model": model,
        "hidden": 64,
        "depth": 2,
        "noise_dim": 4,
        "n_bins": 8,
        "n_layers": 4,
        "param_dtype": "float32",
        "seed": 0,
    }
    unknown = set(overrides) - set(cfg)
    if unknown:
        raise ValueError(f"unknown config key(s) {sorted(unknown)}; allowed {sorted(cfg)}")
    cfg.update(overrides)
    return cfg


def condition_features(p_cluster: Array, axis: Array) -> Array:
    """Network condition ``[log M, log E, p⃗/E, n̂]``.

    Args:
      p_cluster: [..., 4] cluster momentum (E, px, py, pz), GeV.
      axis: [..., 3] unit quark direction in the cluster rest frame.

    Returns:
      [..., 8].
    """
    m = kin.mass(p_cluster)
    e = p_cluster[..., 0]
    return jnp.concatenate(
        [
            kin.safe_log(m)[..., None],
            kin.safe_log(e)[..., None],
            kin.safe_div(p_cluster[..., 1:], e[..., None]),
            axis,
        ],
        axis=-1,
    )


class MLP(nnx.Module):
    """A multilayer perceptron with SiLU activations."""

    def __init__(self, n_in: int, n_out: int, hidden: int, depth: int, *, rngs: nnx.Rngs, dtype: Any):
        sizes = [n_in] + [hidden] * depth
        self.hidden = nnx.List(
            [nnx.Linear(a, b, rngs=rngs, param_dtype=dtype, dtype=dtype) for a, b in itertools.pairwise(sizes)]
        )
        self.out = nnx.Linear(sizes[-1], n_out, rngs=rngs, param_dtype=dtype, dtype=dtype)

    def __call__(self, x: Array) -> Array:
        for layer in self.hidden:
            x = jax.nn.silu(layer(x))
        return self.out(x)


class Generator(nnx.Module):
    """Conditional generator: (condition [..., 8], noise [..., d]) → (cos θ, φ)."""

    def __init__(self, cfg: Mapping[str, Any], *, rngs: nnx.Rngs):
        dtype = jnp.dtype(cfg["param_dtype"])
        self.net = MLP(N_COND + cfg["noise_dim"], 2, cfg["hidden"], cfg["depth"], rngs=rngs, dtype=dtype)

    def __call__(self, cond: Array, noise: Array) -> tuple[Array, Array]:
        out = self.net(jnp.concatenate([cond, noise], axis=-1))
        return jnp.tanh(out[..., 0]), jnp.pi * jnp.tanh(out[..., 1])


class Discriminator(nnx.Module):
    """Conditional discriminator: (condition [..., 8], cos θ, φ/π) → logit."""

    def __init__(self, cfg: Mapping[str, Any], *, rngs: nnx.Rngs):
        dtype = jnp.dtype(cfg["param_dtype"])
        self.net = MLP(N_COND + 2, 1, cfg["hidden"], cfg["depth"], rngs=rngs, dtype=dtype)

    def __call__(self, cond: Array, cos: Array, phi: Array) -> Array:
        x = jnp.concatenate([cond, cos[..., None], (phi / jnp.pi)[..., None]], axis=-1)
        return self.net(x)[..., 0]


class FlowNet(nnx.Module):
    """Conditioners of the coupling flow: one MLP per layer, (other coordinate, condition) → spline params."""

    def __init__(self, cfg: Mapping[str, Any], *, rngs: nnx.Rngs):
        dtype = jnp.dtype(cfg["param_dtype"])
        n_par = 3 * cfg["n_bins"] + 1
        self.layers = nnx.List(
            [
                MLP(1 + N_COND, n_par, cfg["hidden"], cfg["depth"], rngs=rngs, dtype=dtype)
                for _ in range(cfg["n_layers"])
            ]
        )


def _graphdef(cfg: Mapping[str, Any]):
    modules = _build(cfg, 0)
    return {k: nnx.split(v)[0] for k, v in modules.items()}


def _build(cfg: Mapping[str, Any], seed: int) -> dict[str, nnx.Module]:
    rngs = nnx.Rngs(seed)
    if cfg["model"] == "gan":
        return {"generator": Generator(cfg, rngs=rngs), "discriminator": Discriminator(cfg, rngs=rngs)}
    return {"flow": FlowNet(cfg, rngs=rngs)}


def init_params(cfg: Mapping[str, Any], seed: int | None = None) -> dict[str, Any]:
    """Fresh params of the model described by ``cfg``.

    Args:
      cfg: model config, as from :func:`default_config` (``model`` selects ``"gan"`` or
        ``"flow"``; the architecture keys fix the shapes).
      seed: initialisation seed (default: ``cfg["seed"]``).

    Returns:
      Pure nested dicts of arrays: ``{"generator", "discriminator"}`` for the GAN or
      ``{"flow"}`` for the flow.
    """
    modules = _build(cfg, cfg["seed"] if seed is None else seed)
    return {k: nnx.to_pure_dict(nnx.split(v)[1]) for k, v in modules.items()}


_GRAPHDEFS: dict[str, Any] = {}


def _graphdefs(cfg: Mapping[str, Any]):
    key = json.dumps({k: cfg[k] for k in ARCH_KEYS}, sort_keys=True)
    if key not in _GRAPHDEFS:
        _GRAPHDEFS[key] = _graphdef(cfg)
    return _GRAPHDEFS[key]


def _cast(x: Array, dtype: Any) -> Array:
    return x.astype(dtype)


def generator_sample(cfg: Mapping[str, Any], gen_params: Params, key: Key, cond: Array) -> tuple[Array, Array]:
    """Sample (cos θ, φ) from the GAN generator.

    Args:
      cfg: model config.
      gen_params: the generator's params (pure dict).
      key: PRNG key (noise).
      cond: [..., 8] condition features.

    Returns:
      ``(cos θ, φ)`` [...] in the generator's param dtype.
    """
    dtype = jnp.dtype(cfg["param_dtype"])
    gen = nnx.merge(_graphdefs(cfg)["generator"], gen_params)
    noise = jax.random.normal(key, (*cond.shape[:-1], cfg["noise_dim"]), dtype=dtype)
    return gen(_cast(cond, dtype), noise)


def _distrax():
    with warnings.catch_warnings():
        # distrax imports TFP's JAX substrate, which touches a deprecated jax.core name.
        warnings.filterwarnings(
            "ignore", message="jax.core.pytype_aval_mappings is deprecated", category=DeprecationWarning
        )
        import distrax
    return distrax


def _spline(distrax, params: Array, n_bins: int):
    return distrax.RationalQuadraticSpline(params, range_min=-1.0, range_max=1.0, boundary_slopes="identity")


def flow_sample(cfg: Mapping[str, Any], flow_params: Params, key: Key, cond: Array) -> tuple[Array, Array]:
    """Sample (cos θ, φ) from the conditional flow (pathwise in the flow params).

    Args:
      cfg: model config.
      flow_params: the flow's params (pure dict).
      key: PRNG key.
      cond: [..., 8] condition features.

    Returns:
      ``(cos θ, φ)`` [...].
    """
    distrax = _distrax()
    dtype = jnp.dtype(cfg["param_dtype"])
    net = nnx.merge(_graphdefs(cfg)["flow"], flow_params)
    cond = _cast(cond, dtype)
    with jax.numpy_dtype_promotion("standard"):
        base = distrax.Uniform(low=jnp.asarray(-1.0, dtype), high=jnp.asarray(1.0, dtype))
        y = base.sample(seed=key, sample_shape=(*cond.shape[:-1], 2))
        for i, layer in enumerate(net.layers):
            d = i % 2
            other = y[..., 1 - d : 2 - d]
            sp = layer(jnp.concatenate([other, cond], axis=-1))
            yd = _spline(distrax, sp, cfg["n_bins"]).forward(y[..., d])
            y = y.at[..., d].set(yd)
    return y[..., 0], jnp.pi * y[..., 1]


def flow_log_prob(cfg: Mapping[str, Any], flow_params: Params, cos: Array, phi: Array, cond: Array) -> Array:
    """Log-density of (cos θ, φ) under the conditional flow.

    ``log p(cos θ, φ) = log p_base(u) + Σ log|det ∂u/∂y| − log π`` (the last term from φ = π y₂).

    Args:
      cfg: model config.
      flow_params: the flow's params.
      cos, phi: [...] angles.
      cond: [..., 8] condition features.

    Returns:
      [...] log-density (per unit cos θ per radian).
    """
    distrax = _distrax()
    dtype = jnp.dtype(cfg["param_dtype"])
    net = nnx.merge(_graphdefs(cfg)["flow"], flow_params)
    cond = _cast(cond, dtype)
    y = jnp.stack([_cast(cos, dtype), _cast(phi, dtype) / jnp.pi], axis=-1)
    y = jnp.clip(y, -1.0, 1.0)
    logdet = jnp.zeros(y.shape[:-1], dtype)
    with jax.numpy_dtype_promotion("standard"):
        for i in reversed(range(len(net.layers))):
            d = i % 2
            other = y[..., 1 - d : 2 - d]
            sp = net.layers[i](jnp.concatenate([other, cond], axis=-1))
            x, ld = _spline(distrax, sp, cfg["n_bins"]).inverse_and_log_det(y[..., d])
            y = y.at[..., d].set(x)
            logdet = logdet + ld
        base_logp = 2.0 * jnp.log(jnp.asarray(0.5, dtype))
    return base_logp + logdet - jnp.log(jnp.asarray(jnp.pi, dtype))


def angle_model(cfg: Mapping[str, Any], params: Params | None = None) -> AngleModel:
    """The learned model as an :class:`AngleModel` for :func:`diffgen.hadronization.hadronize`.

    Args:
      cfg: model config (``cfg["model"]`` is ``"gan"`` or ``"flow"``).
      params: trained params (``{"generator": …}`` or ``{"flow": …}``); ``init`` returns
        them (default: freshly initialised ones).

    Returns:
      ``AngleModel`` whose params are the generator's (GAN) or the flow's params.
    """
    cfg = dict(cfg)
    name = "generator" if cfg["model"] == "gan" else "flow"
    trained = None if params is None else params[name]

    def init(key: Key) -> Params:
        del key
        return trained if trained is not None else init_params(cfg)[name]

    def sample(p: Params, key: Key, p_cluster: Array, axis: Array) -> tuple[Array, Array]:
        cond = condition_features(p_cluster, axis)
        if cfg["model"] == "gan":
            cos, phi = generator_sample(cfg, p, key, cond)
        else:
            cos, phi = flow_sample(cfg, p, key, cond)
        return cos.astype(p_cluster.dtype), phi.astype(p_cluster.dtype)

    return AngleModel(init=init, sample=sample, name=cfg["model"])


# --------------------------------------------------------------------------- checkpoints


def _flatten(tree: Any, prefix: str) -> dict[str, np.ndarray]:
    out = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        name = prefix + "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
        out[name] = np.asarray(leaf)
    return out


def save_checkpoint(
    path: str | os.PathLike,
    cfg: Mapping[str, Any],
    params: Params,
    *,
    opt_state: Any = None,
    step: int = 0,
    metrics: Mapping[str, float] | None = None,
) -> None:
    """Write params (+ optimizer state, step, metrics) and the config to one ``.npz``, atomically.

    Args:
      path: output file (``.npz``).
      cfg: the model config (JSON-serialisable).
      params: ``{"generator", "discriminator"}`` or ``{"flow"}`` pure dicts.
      opt_state: optional optimizer state pytree (stored leaf by leaf).
      step: training step reached.
      metrics: optional last validation metrics.
    """
    path = os.fspath(path)
    arrays = _flatten(params, "params/")
    if opt_state is not None:
        for i, leaf in enumerate(jax.tree_util.tree_leaves(opt_state)):
            arrays[f"opt/{i:05d}"] = np.asarray(leaf)
    meta = {"config": dict(cfg), "step": int(step), "metrics": dict(metrics or {}), "format": "diffgen-hadml-1"}
    arrays["__meta__"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}.npz"
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike, expected: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` and check its architecture.

    Args:
      path: the ``.npz`` file.
      expected: optional config; its architecture keys must match the checkpoint's.

    Returns:
      ``{"config", "params", "opt_leaves" (list or None), "step", "metrics"}``.

    Raises:
      FileNotFoundError: no such file.
      ValueError: not a diffgen checkpoint, or its architecture differs from ``expected``
        or from the arrays it holds.
    """
    path = os.fspath(path)
    with np.load(path, allow_pickle=False) as data:
        if "__meta__" not in data:
            raise ValueError(f"load_checkpoint: {path} is not a diffgen hadronization checkpoint (no __meta__)")
        meta = json.loads(bytes(data["__meta__"]).decode())
        arrays = {k: data[k] for k in data.files if k != "__meta__"}
    cfg = meta["config"]
    if expected is not None:
        diff = {k: (cfg.get(k), expected.get(k)) for k in ARCH_KEYS if cfg.get(k) != expected.get(k)}
        if diff:
            raise ValueError(
                "load_checkpoint: checkpoint architecture differs from the requested one: "
                + ", ".join(f"{k} = {a!r} in the checkpoint, {b!r} requested" for k, (a, b) in diff.items())
            )
    template = jax.eval_shape(lambda: init_params(cfg))
    want = {k: v for k, v in _flatten_shapes(template).items()}
    have = {k[len("params/") :]: v for k, v in arrays.items() if k.startswith("params/")}
    if set(want) != set(have) or any(tuple(have[k].shape) != want[k] for k in want):
        missing = sorted(set(want) - set(have))[:3]
        extra = sorted(set(have) - set(want))[:3]
        shapes = [k for k in set(want) & set(have) if tuple(have[k].shape) != want[k]][:3]
        raise ValueError(
            f"load_checkpoint: arrays in {path} do not match the architecture of its config "
            f"(missing {missing}, unexpected {extra}, wrong shape {shapes})"
        )
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    names = ["/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in p) for p, _ in leaves]
    params = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(have[n]) for n in names])
    opt_keys = sorted(k for k in arrays if k.startswith("opt/"))
    opt_leaves = [jnp.asarray(arrays[k]) for k in opt_keys] if opt_keys else None
    return {"config": cfg, "params": params, "opt_leaves": opt_leaves, "step": meta["step"], "metrics": meta["metrics"]}


def _flatten_shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    out = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        out["/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)] = tuple(leaf.shape)
    return out
