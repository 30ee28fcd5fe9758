"""Density-based unfolding: a conditional normalizing flow for p(particle level | detector level).

The cINN approach of Bellagente, Butter, Kasieczka, Plehn, Rousselot, Winterhalder, Ardizzone,
Köthe (arXiv:2006.06685): learn the posterior ``p(t | x)`` of the particle-level features t
given the detector-level features x on paired simulation by maximum likelihood, then sample
many particle-level events per measured event. The flow is

    t = T_L ∘ … ∘ T_1 ∘ A(z; x),   z ~ N(0, 1_D),

with ``A`` a conditional affine map (shift and log-scale networks of x; exact for Gaussian
posteriors) and ``T_l`` rational-quadratic spline couplings (Durkan et al., arXiv:1906.04032,
``distrax.RationalQuadraticSpline`` with identity tails) whose conditioner sees the
untransformed half of t (alternating masks) and x. For D = 1 the couplings transform the
single dimension conditioned on x only. t and x are standardised first.

``log p(t|x) = log N(z) + Σ log|det ∂z/∂t|`` (change of variables); training minimises the
weighted negative log-likelihood with optax Adam and keeps the parameters of the best
validation loss.

Calibration (:func:`coverage`): for held-out pairs, the posterior quantile of the true value,
``u = P_flow(t' < t_true | x)``, is uniform for a calibrated posterior, so the fraction of
truths inside the central α interval must be α (a coverage plot, arXiv:2006.06685 §3.3).

Scope: the flow is trained on events that pass both levels (it models migrations); the
efficiency and the fakes are corrected separately (e.g. by IBU's binned factors or by
OmniFold), and, as the paper notes, the posterior depends on the simulation's prior.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from diffgen.unfolding.classifier import _numpy_rng, check_weights

with warnings.catch_warnings():
    # distrax imports the TFP JAX substrate when TFP is installed; that substrate touches a
    # deprecated jax.core attribute at import time. Nothing we call depends on it.
    warnings.filterwarnings("ignore", message=r"jax\.core\..* is deprecated", category=DeprecationWarning)
    import distrax

__all__ = ["FlowConfig", "ConditionalFlow", "train_flow", "sample_posterior", "log_prob", "coverage", "Coverage"]


@dataclasses.dataclass(frozen=True)
class FlowConfig:
    """Hyper-parameters of the conditional flow.

    Attributes:
      layers: number of spline coupling layers (≥ 1).
      bins: spline bins K per dimension.
      hidden: conditioner MLP widths.
      bound: the splines act on ``[-bound, bound]`` (standardised units), identity outside.
      epochs, batch_size, learning_rate, val_fraction, patience: training (as TrainConfig).
      dtype: network dtype.
    """

    layers: int = 2
    bins: int = 8
    hidden: tuple[int, ...] = (32, 32)
    bound: float = 5.0
    epochs: int = 30
    batch_size: int = 512
    learning_rate: float = 3e-3
    val_fraction: float = 0.2
    patience: int = 4
    dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        for name in ("layers", "bins", "epochs", "batch_size", "patience"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 1):
                raise ValueError(f"FlowConfig.{name} must be an integer >= 1, got {v!r}")
        if not self.bound > 0:
            raise ValueError(f"FlowConfig.bound must be > 0, got {self.bound!r}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"FlowConfig.val_fraction must be in (0, 1), got {self.val_fraction!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"FlowConfig.learning_rate must be > 0, got {self.learning_rate!r}")


class _Net(nnx.Module):
    def __init__(self, n_in: int, n_out: int, hidden: tuple[int, ...], *, rngs: nnx.Rngs, dtype: Any):
        widths = [n_in, *hidden]
        kw = {"rngs": rngs, "dtype": dtype, "param_dtype": dtype}
        self.layers = nnx.List([nnx.Linear(a, b, **kw) for a, b in itertools.pairwise(widths)])
        # Zero-initialised output: every layer starts as the identity map.
        self.out = nnx.Linear(widths[-1], n_out, kernel_init=nnx.initializers.zeros, **kw)

    def __call__(self, h: jax.Array) -> jax.Array:
        for layer in self.layers:
            h = jax.nn.gelu(layer(h))
        return self.out(h)


class _FlowNet(nnx.Module):
    def __init__(self, d: int, c: int, config: FlowConfig, *, rngs: nnx.Rngs):
        self.affine = _Net(c, 2 * d, config.hidden, rngs=rngs, dtype=config.dtype)
        n_params = 3 * config.bins + 1
        self.couplings = nnx.List(
            [_Net(d + c, d * n_params, config.hidden, rngs=rngs, dtype=config.dtype) for _ in range(config.layers)]
        )


def _masks(d: int, layers: int) -> np.ndarray:
    if d == 1:
        return np.zeros((layers, 1), bool)
    base = np.arange(d) % 2 == 0
    return np.stack([base if i % 2 == 0 else ~base for i in range(layers)])


def _bijectors(net: _FlowNet, cond: jax.Array, d: int, config: FlowConfig) -> tuple[Any, list[Any]]:
    """The affine map's (shift, log-scale) and the coupling bijectors, conditioned on ``cond`` [N, C]."""
    sl = net.affine(cond)
    shift, log_scale = sl[..., :d], jnp.tanh(sl[..., d:] / 3.0) * 3.0
    n_params = 3 * config.bins + 1
    couplings = []
    for layer, mask in zip(net.couplings, _masks(d, config.layers), strict=True):

        def conditioner(z: jax.Array, layer=layer) -> jax.Array:
            p = layer(jnp.concatenate([z, cond], axis=-1))
            return p.reshape(p.shape[:-1] + (d, n_params))

        def spline(params: jax.Array) -> distrax.Bijector:
            return distrax.RationalQuadraticSpline(params, -config.bound, config.bound, boundary_slopes="identity")

        couplings.append(distrax.MaskedCoupling(jnp.asarray(mask), conditioner, spline, event_ndims=1))
    return (shift, log_scale), couplings


def _log_prob(net: _FlowNet, t: jax.Array, cond: jax.Array, d: int, config: FlowConfig) -> jax.Array:
    (shift, log_scale), couplings = _bijectors(net, cond, d, config)
    z, ldj = t, jnp.zeros(t.shape[:1], t.dtype)
    for bij in reversed(couplings):
        z, ld = bij.inverse_and_log_det(z)
        ldj = ldj + ld
    z = (z - shift) * jnp.exp(-log_scale)
    ldj = ldj - jnp.sum(log_scale, axis=-1)
    base = -0.5 * jnp.sum(z * z, axis=-1) - 0.5 * d * np.log(2 * np.pi)
    return base + ldj


def _sample(net: _FlowNet, z: jax.Array, cond: jax.Array, d: int, config: FlowConfig) -> jax.Array:
    (shift, log_scale), couplings = _bijectors(net, cond, d, config)
    t = shift + jnp.exp(log_scale) * z
    for bij in couplings:
        t = bij.forward(t)
    return t


@dataclasses.dataclass(frozen=True, eq=False)
class ConditionalFlow:
    """A trained conditional flow ``p(t | x)``.

    Attributes:
      graphdef, params: NNX graph definition and parameter state.
      config: :class:`FlowConfig`.
      t_shift, t_scale: [D] standardisation of the particle level.
      x_shift, x_scale: [C] standardisation of the detector level.
      history: [epochs] validation losses (NLL per unit weight, standardised units).
    """

    graphdef: Any
    params: Any
    config: FlowConfig
    t_shift: np.ndarray
    t_scale: np.ndarray
    x_shift: np.ndarray
    x_scale: np.ndarray
    history: np.ndarray

    @property
    def dims(self) -> tuple[int, int]:
        """(D, C): particle- and detector-level feature counts."""
        return int(self.t_shift.shape[0]), int(self.x_shift.shape[0])


def _as2d(a: Any, name: str, n: int | None = None, dims: int | None = None) -> np.ndarray:
    arr = np.asarray(a, dtype=float)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected shape [N] or [N, D], got {list(arr.shape)}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name}: needs at least one event, got N = 0")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name}: expected N = {n} rows (paired with the other level), got {arr.shape[0]}")
    if dims is not None and arr.shape[1] != dims:
        raise ValueError(f"{name}: expected {dims} features, got {arr.shape[1]}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: {int((~np.isfinite(arr)).sum())} NaN/inf values")
    return arr


@functools.lru_cache(maxsize=8)
def _flow_epoch(graphdef: Any, d: int, config: FlowConfig) -> tuple[Any, Any]:
    opt = optax.adam(config.learning_rate)

    def loss_fn(params, t, x, w):
        net = nnx.merge(graphdef, params)
        return -jnp.sum(w * _log_prob(net, t, x, d, config))

    def epoch(params, opt_state, t, x, w, batches, valid, tv, xv, wv):
        def step(carry, batch):
            params, opt_state = carry
            idx, ok = batch
            wb = w[idx] * ok.astype(w.dtype)
            loss, g = jax.value_and_grad(loss_fn)(params, t[idx], x[idx], wb)
            upd, opt_state = opt.update(g, opt_state, params)
            return (optax.apply_updates(params, upd), opt_state), loss

        (params, opt_state), _ = jax.lax.scan(step, (params, opt_state), (batches, valid))
        return params, opt_state, loss_fn(params, tv, xv, wv) / jnp.sum(jnp.abs(wv))

    return jax.jit(epoch), opt


def train_flow(
    gen: Any,
    reco: Any,
    *,
    key: jax.Array,
    weights: Any = None,
    config: FlowConfig | None = None,
) -> ConditionalFlow:
    """Fit ``p(gen | reco)`` on paired MC events (both levels present) by weighted maximum likelihood.

    Args:
      gen: [N] or [N, D] particle-level features.
      reco: [N] or [N, C] detector-level features of the same events.
      key: PRNG key.
      weights: [N] MC weights (default 1; may be non-uniform).
      config: :class:`FlowConfig`.

    Returns:
      :class:`ConditionalFlow`.
    """
    config = config or FlowConfig()
    t = _as2d(gen, "gen")
    x = _as2d(reco, "reco", n=t.shape[0])
    n, d = t.shape
    w = np.ones(n) if weights is None else check_weights(weights, n, "weights")
    t_shift, t_scale = t.mean(0), np.where(t.std(0) > 0, t.std(0), 1.0)
    x_shift, x_scale = x.mean(0), np.where(x.std(0) > 0, x.std(0), 1.0)
    dtype = config.dtype
    ts = jnp.asarray((t - t_shift) / t_scale, dtype)
    xs = jnp.asarray((x - x_shift) / x_scale, dtype)
    k_init, k_np = jax.random.split(key)
    rng = _numpy_rng(k_np)
    seed = int(jax.random.randint(k_init, (), 0, 2**31 - 1))
    graphdef, params = nnx.split(_FlowNet(d, x.shape[1], config, rngs=nnx.Rngs(params=seed)), nnx.Param)
    perm = rng.permutation(n)
    n_val = max(1, round(config.val_fraction * n))
    if n - n_val < 1:
        raise ValueError(f"train_flow: too few events ({n}) for a validation split")
    vi, ti = perm[:n_val], perm[n_val:]
    wj = jnp.asarray(w / np.abs(w).sum() * n, dtype)
    epoch, opt = _flow_epoch(graphdef, d, config)
    with jax.numpy_dtype_promotion("standard"):
        opt_state = opt.init(params)
    n_train = ti.shape[0]
    bs = min(config.batch_size, n_train)
    n_batches = -(-n_train // bs)
    pad = n_batches * bs - n_train
    valid = jnp.asarray(np.concatenate([np.ones(n_train, bool), np.zeros(pad, bool)]).reshape(n_batches, bs))
    t_tr, x_tr, w_tr = ts[ti], xs[ti], wj[ti]
    t_v, x_v, w_v = ts[vi], xs[vi], wj[vi]
    best, best_loss, waited, history = jax.tree.map(np.asarray, params), np.inf, 0, []
    for _ in range(config.epochs):
        order = rng.permutation(n_train)
        batches = jnp.asarray(np.concatenate([order, np.zeros(pad, order.dtype)]).reshape(n_batches, bs))
        with jax.numpy_dtype_promotion("standard"):
            params, opt_state, val = epoch(params, opt_state, t_tr, x_tr, w_tr, batches, valid, t_v, x_v, w_v)
        val = float(val)
        history.append(val)
        if val < best_loss - 1e-4 * abs(best_loss) if np.isfinite(best_loss) else np.isfinite(val):
            best, best_loss, waited = jax.tree.map(np.asarray, params), val, 0
        else:
            waited += 1
            if waited >= config.patience:
                break
    best = jax.tree.map(jnp.asarray, best)
    return ConditionalFlow(graphdef, best, config, t_shift, t_scale, x_shift, x_scale, np.asarray(history))


@functools.partial(jax.jit, static_argnames=("graphdef", "d", "config", "n_samples"))
def _sample_impl(graphdef, params, xs, key, *, d, config, n_samples):
    net = nnx.merge(graphdef, params)
    z = jax.random.normal(key, (n_samples,) + xs.shape[:1] + (d,), xs.dtype)
    return jax.vmap(lambda zz: _sample(net, zz, xs, d, config))(z)


def sample_posterior(flow: ConditionalFlow, reco: Any, *, key: jax.Array, n_samples: int = 100) -> np.ndarray:
    """Draw particle-level unfoldings for each detector-level event.

    Args:
      flow: a trained :class:`ConditionalFlow`.
      reco: [N] or [N, C] detector-level features.
      key: PRNG key.
      n_samples: S posterior samples per event (≥ 1).

    Returns:
      [S, N, D] particle-level samples (original units).
    """
    if not (isinstance(n_samples, int) and n_samples >= 1):
        raise ValueError(f"sample_posterior: n_samples must be an integer >= 1, got {n_samples!r}")
    d, c = flow.dims
    x = _as2d(reco, "reco", dims=c)
    xs = jnp.asarray((x - flow.x_shift) / flow.x_scale, flow.config.dtype)
    with jax.numpy_dtype_promotion("standard"):
        s = _sample_impl(flow.graphdef, flow.params, xs, key, d=d, config=flow.config, n_samples=n_samples)
    return np.asarray(s, dtype=float) * flow.t_scale + flow.t_shift


def log_prob(flow: ConditionalFlow, gen: Any, reco: Any) -> np.ndarray:
    """Conditional log density ``log p(gen | reco)`` of the flow.

    Args:
      flow: a trained :class:`ConditionalFlow`.
      gen: [N] or [N, D] particle-level values (original units).
      reco: [N] or [N, C] detector-level features, paired row by row with ``gen``.

    Returns:
      [N] ``log p(gen | reco)`` in the original units of ``gen``.
    """
    d, c = flow.dims
    t = _as2d(gen, "gen", dims=d)
    x = _as2d(reco, "reco", n=t.shape[0], dims=c)
    net = nnx.merge(flow.graphdef, flow.params)
    ts = jnp.asarray((t - flow.t_shift) / flow.t_scale, flow.config.dtype)
    xs = jnp.asarray((x - flow.x_shift) / flow.x_scale, flow.config.dtype)
    with jax.numpy_dtype_promotion("standard"):
        lp = _log_prob(net, ts, xs, d, flow.config)
    return np.asarray(lp, dtype=float) - float(np.sum(np.log(flow.t_scale)))


@dataclasses.dataclass(frozen=True)
class Coverage:
    """Calibration of the posterior on held-out pairs.

    Attributes:
      levels: [L] nominal central-interval probabilities α.
      observed: [L, D] fraction of true values inside the central α interval, per dimension.
      error: [L, D] binomial standard error ``sqrt(α(1−α)/N)``.
      quantiles: [N, D] posterior quantile ``u`` of each true value (uniform if calibrated).
    """

    levels: np.ndarray
    observed: np.ndarray
    error: np.ndarray
    quantiles: np.ndarray


def coverage(
    flow: ConditionalFlow,
    gen: Any,
    reco: Any,
    *,
    key: jax.Array,
    n_samples: int = 200,
    levels: Any = (0.68, 0.95),
) -> Coverage:
    """Coverage check: how often the truth lies inside the flow's central posterior intervals.

    Args:
      flow: a trained :class:`ConditionalFlow`.
      gen: [N] / [N, D] true particle-level values of held-out pairs (not used in training).
      reco: [N] / [N, C] their detector-level values.
      key: PRNG key.
      n_samples: posterior samples per event.
      levels: central-interval probabilities in (0, 1).

    Returns:
      :class:`Coverage`.
    """
    d, c = flow.dims
    t = _as2d(gen, "gen", dims=d)
    x = _as2d(reco, "reco", n=t.shape[0], dims=c)
    lv = np.asarray(levels, dtype=float).reshape(-1)
    if not np.all((lv > 0) & (lv < 1)):
        raise ValueError(f"coverage: levels must be in (0, 1), got {lv}")
    s = sample_posterior(flow, x, key=key, n_samples=n_samples)  # [S, N, D]
    u = (np.sum(s < t[None], axis=0) + 0.5 * np.sum(s == t[None], axis=0)) / n_samples
    inside = np.abs(u[None] - 0.5) <= lv[:, None, None] / 2
    observed = inside.mean(axis=1)
    err = np.sqrt(lv * (1 - lv) / t.shape[0])[:, None] * np.ones((1, d))
    return Coverage(lv, observed, err, u)
