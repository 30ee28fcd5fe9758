"""Training of the learned cluster-decay models against the reference decay.

The training set consists of reference clusters (:func:`diffgen.hadronization.samples.
reference_clusters`) decayed by the reference model; the condition is the cluster momentum
and quark direction, the target the decay angles.

- GAN: non-saturating loss (I. Goodfellow et al., arXiv:1406.2661) with the R1 gradient
  penalty ``(γ/2) E_real |∇_x D(x)|²`` on the discriminator's real inputs x = (cos θ, φ/π)
  (L. Mescheder et al., arXiv:1801.04406, eq. 9), which makes the game converge locally where
  the unregularised one oscillates; ``n_critic`` discriminator Adam steps (each on its own
  minibatch) per generator step.
- Flow: maximum likelihood.
- Both: Adam with a cosine learning-rate decay from ``lr`` to ``lr/100`` over the run
  (I. Loshchilov & F. Hutter, arXiv:1608.03983, without restarts). The decay is what lets the
  GAN settle: at a constant rate its metrics keep fluctuating by several times the
  statistical floor.

Validation computes :func:`diffgen.hadronization.metrics.decay_metrics` on held-out clusters;
checkpoints (params, optimizer state, step, config) are written atomically and a run resumes
from them. Minibatch keys are ``fold_in(key, step)``, so a resumed run follows the same path.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from diffgen.hadronization import learned as L
from diffgen.hadronization import metrics as M
from diffgen.hadronization.decay import decay_clusters, reference_angles, two_body_decay
from diffgen.hadronization.hadrons import hadron_mass
from diffgen.hadronization.samples import reference_clusters

__all__ = ["TrainConfig", "make_dataset", "model_decays", "plot_comparison", "train", "train_params"]


@dataclasses.dataclass
class TrainConfig:
    """Configuration of a training run (architecture keys as in :func:`learned.default_config`).

    Attributes:
      model: ``"gan"`` or ``"flow"``.
      n_train: reference clusters for training (≥ 10⁵ for the full run).
      n_val: held-out clusters per validation sample (two independent samples are drawn).
      steps: optimizer steps.
      batch: minibatch size.
      lr: initial Adam learning rate.
      schedule: ``"cosine"`` (decay to ``lr/100`` at ``steps``) or ``"constant"``.
      n_critic: discriminator steps per generator step (GAN).
      r1_gamma: weight γ of the R1 penalty (GAN; 0 switches it off).
      smearing: σ of the reference model.
      val_every, ckpt_every: validation / checkpoint intervals (steps).
      seed: seed of data, initialisation and minibatches.
      hidden, depth, noise_dim, n_bins, n_layers, param_dtype: architecture.
    """

    model: str = "gan"
    n_train: int = 100_000
    n_val: int = 20_000
    steps: int = 3000
    batch: int = 512
    lr: float = 1e-3
    schedule: str = "cosine"
    n_critic: int = 2
    r1_gamma: float = 1.0
    smearing: float = 0.78
    val_every: int = 500
    ckpt_every: int = 500
    seed: int = 0
    hidden: int = 64
    depth: int = 2
    noise_dim: int = 4
    n_bins: int = 8
    n_layers: int = 4
    param_dtype: str = "float32"

    def arch(self) -> dict[str, Any]:
        """The architecture config of :mod:`learned`."""
        return L.default_config(
            self.model,
            hidden=self.hidden,
            depth=self.depth,
            noise_dim=self.noise_dim,
            n_bins=self.n_bins,
            n_layers=self.n_layers,
            param_dtype=self.param_dtype,
            seed=self.seed,
        )

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first out-of-range field."""
        if self.model not in ("gan", "flow"):
            raise ValueError(f"model must be 'gan' or 'flow', got {self.model!r}")
        for name in (
            "n_train",
            "n_val",
            "steps",
            "batch",
            "val_every",
            "ckpt_every",
            "hidden",
            "depth",
            "n_bins",
            "n_critic",
        ):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be 'cosine' or 'constant', got {self.schedule!r}")
        if not self.r1_gamma >= 0:
            raise ValueError(f"r1_gamma must be >= 0, got {self.r1_gamma}")
        if not self.lr > 0 or not self.smearing > 0:
            raise ValueError(f"lr and smearing must be > 0, got lr={self.lr}, smearing={self.smearing}")
        if self.param_dtype not in ("float32", "float64"):
            raise ValueError(f"param_dtype must be 'float32' or 'float64', got {self.param_dtype!r}")


def make_dataset(key: jax.Array, n: int, smearing: float) -> dict[str, np.ndarray]:
    """Reference cluster decays: conditions, angles and lab hadron kinematics.

    Args:
      key: PRNG key.
      n: number of clusters.
      smearing: σ of the reference model.

    Returns:
      host arrays: ``p_cluster`` [n, 4], ``axis`` [n, 3], ``cond`` [n, 8], ``m1``, ``m2``
      [n] (hadron masses), ``cos_theta``, ``phi``, ``e1``, ``p1``, ``e2``, ``p2`` [n].
    """
    k1, k2 = jax.random.split(key)
    clusters = reference_clusters(k1, n)
    params = {"gamma_s": jnp.asarray(0.6), "p_vector": jnp.asarray(0.5), "decay": {"smearing": jnp.asarray(smearing)}}
    p, pid, info = _decay_in_chunks(params, k2, clusters)
    p_c = np.asarray(clusters.p)[:, 0]
    axis = np.asarray(clusters.axis())[:, 0]
    angles = np.asarray(info["angles"])[:, 0]
    out = {
        "p_cluster": p_c,
        "axis": axis,
        "cond": np.asarray(L.condition_features(jnp.asarray(p_c), jnp.asarray(axis))),
        "m1": np.asarray(hadron_mass(pid[:, 0])),
        "m2": np.asarray(hadron_mass(pid[:, 1])),
        "cos_theta": angles[:, 0],
        "phi": angles[:, 1],
    }
    out.update(_lab(np.asarray(p)[:, 0], np.asarray(p)[:, 1]))
    return out


_decay_jit = jax.jit(lambda params, key, clusters: decay_clusters(params, key, clusters, reference_angles()))

#: Clusters per call of the compiled reference decay: one shape, so one compilation for any n.
_DECAY_CHUNK = 1024


def _decay_in_chunks(params, key: jax.Array, clusters) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Reference decays of [n, 1] clusters in fixed-size chunks (chunk i uses ``fold_in(key, i)``).

    The last chunk is filled up with repeated clusters, whose decays are dropped.
    """
    n = clusters.mask.shape[0]
    n_chunks = -(-n // _DECAY_CHUNK)
    rows = np.arange(n_chunks * _DECAY_CHUNK) % n
    ps, pids, angles = [], [], []
    for i in range(n_chunks):
        idx = jnp.asarray(rows[i * _DECAY_CHUNK : (i + 1) * _DECAY_CHUNK])
        chunk = jax.tree.map(lambda x, idx=idx: x[idx], clusters)
        p, pid, _mask, info = _decay_jit(params, jax.random.fold_in(key, i), chunk)
        ps.append(np.asarray(p))
        pids.append(np.asarray(pid))
        angles.append(np.asarray(info["angles"]))
    return np.concatenate(ps)[:n], np.concatenate(pids)[:n], {"angles": np.concatenate(angles)[:n]}


def _lab(h1: np.ndarray, h2: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "e1": h1[:, 0],
        "p1": np.linalg.norm(h1[:, 1:], axis=1),
        "e2": h2[:, 0],
        "p2": np.linalg.norm(h2[:, 1:], axis=1),
    }


def model_decays(sample_angles: Callable, data: Mapping[str, np.ndarray], key: jax.Array) -> dict[str, np.ndarray]:
    """Decay the clusters of ``data`` with a model's angles: same keys as :func:`make_dataset`'s outputs.

    Args:
      sample_angles: ``(key, p_cluster [n,4], axis [n,3]) -> (cos θ, φ)``.
      data: a dataset from :func:`make_dataset` (its clusters and hadron masses are reused).
      key: PRNG key.
    """
    p_c = jnp.asarray(data["p_cluster"])
    axis = jnp.asarray(data["axis"])
    cos, phi = sample_angles(key, p_c, axis)
    cos = cos.astype(p_c.dtype)
    phi = phi.astype(p_c.dtype)
    h1, h2 = two_body_decay(p_c, axis, cos, phi, jnp.asarray(data["m1"]), jnp.asarray(data["m2"]))
    out = {"cos_theta": np.asarray(cos), "phi": np.asarray(phi)}
    out.update(_lab(np.asarray(h1), np.asarray(h2)))
    return out


# --------------------------------------------------------------------------- losses and steps


def _optax_promotion():
    # optax's Adam bias correction mixes its int32 step count with float decay rates, which
    # strict dtype promotion rejects; the update itself stays in the params' dtype.
    return jax.numpy_dtype_promotion("standard")


def _gan_fns(cfg: Mapping[str, Any], opt: optax.GradientTransformation, n_critic: int = 1, r1_gamma: float = 0.0):
    from flax import nnx

    gd = L._graphdefs(cfg)
    dtype = jnp.dtype(cfg["param_dtype"])

    def disc_logits(dp, cond, cos, phi):
        return nnx.merge(gd["discriminator"], dp)(cond, cos, phi)

    def d_loss(dp, gp, key, cond, cos, phi):
        fc, fp = L.generator_sample(cfg, gp, key, cond)
        real = disc_logits(dp, cond, cos, phi)
        fake = disc_logits(dp, cond, jax.lax.stop_gradient(fc), jax.lax.stop_gradient(fp))
        loss = jnp.mean(optax.sigmoid_binary_cross_entropy(real, jnp.ones_like(real))) + jnp.mean(
            optax.sigmoid_binary_cross_entropy(fake, jnp.zeros_like(fake))
        )
        if r1_gamma > 0:
            # R1 (arXiv:1801.04406 eq. 9): the logits are per sample, so the gradient of their sum
            # is the per-sample input gradient; taken w.r.t. the inputs the network sees, (cos θ, φ/π).
            g_cos, g_phi = jax.grad(lambda c, f: jnp.sum(disc_logits(dp, cond, c, f)), argnums=(0, 1))(cos, phi)
            loss = loss + 0.5 * r1_gamma * jnp.mean(g_cos**2 + (g_phi * jnp.pi) ** 2)
        return loss

    def g_loss(gp, dp, key, cond):
        fc, fp = L.generator_sample(cfg, gp, key, cond)
        fake = disc_logits(dp, cond, fc, fp)
        return jnp.mean(optax.sigmoid_binary_cross_entropy(fake, jnp.ones_like(fake)))

    @jax.jit
    def step(params, opt_state, key, cond, cos, phi):
        """``n_critic`` discriminator steps, then one generator step; batches [n_critic·B, …] split in n_critic."""
        cond = cond.astype(dtype).reshape(n_critic, -1, cond.shape[-1])
        cos = cos.astype(dtype).reshape(n_critic, -1)
        phi = phi.astype(dtype).reshape(n_critic, -1)
        keys = jax.random.split(key, n_critic + 1)
        dp, sd = params["discriminator"], opt_state["discriminator"]
        for i in range(n_critic):
            ld, gd_ = jax.value_and_grad(d_loss)(dp, params["generator"], keys[i], cond[i], cos[i], phi[i])
            with _optax_promotion():
                ud, sd = opt["discriminator"].update(gd_, sd, dp)
            dp = optax.apply_updates(dp, ud)
        # the generator step takes the last critic minibatch's conditions with fresh noise
        lg, gg = jax.value_and_grad(g_loss)(params["generator"], dp, keys[-1], cond[-1])
        with _optax_promotion():
            ug, sg = opt["generator"].update(gg, opt_state["generator"], params["generator"])
        gp = optax.apply_updates(params["generator"], ug)
        return (
            {"generator": gp, "discriminator": dp},
            {"generator": sg, "discriminator": sd},
            {"d_loss": ld, "g_loss": lg},
        )

    return step


def _flow_fns(cfg: Mapping[str, Any], opt):
    dtype = jnp.dtype(cfg["param_dtype"])

    def nll(fp, cond, cos, phi):
        return -jnp.mean(L.flow_log_prob(cfg, fp, cos, phi, cond))

    @jax.jit
    def step(params, opt_state, key, cond, cos, phi):
        del key
        cond, cos, phi = cond.astype(dtype), cos.astype(dtype), phi.astype(dtype)
        loss, g = jax.value_and_grad(nll)(params["flow"], cond, cos, phi)
        with _optax_promotion():
            u, s = opt["flow"].update(g, opt_state["flow"], params["flow"])
        return {"flow": optax.apply_updates(params["flow"], u)}, {"flow": s}, {"nll": loss}

    return step


def _learning_rate(cfg: TrainConfig):
    if cfg.schedule == "cosine":
        return optax.cosine_decay_schedule(cfg.lr, cfg.steps, alpha=0.01)
    return cfg.lr


def _optimizers(cfg: TrainConfig) -> dict[str, optax.GradientTransformation]:
    lr = _learning_rate(cfg)
    if cfg.model == "gan":
        return {
            "generator": optax.adam(lr, b1=0.5),
            "discriminator": optax.adam(lr, b1=0.5),
        }
    return {"flow": optax.adam(lr)}


def _step_fn(cfg: TrainConfig, arch: Mapping[str, Any], opt) -> tuple[Callable, int]:
    """The compiled training step of ``cfg.model`` and the minibatch rows it takes per call."""
    if cfg.model == "gan":
        return _gan_fns(arch, opt, n_critic=cfg.n_critic, r1_gamma=cfg.r1_gamma), cfg.n_critic * cfg.batch
    return _flow_fns(arch, opt), cfg.batch


_SAMPLE_JIT: dict[str, Callable] = {}


def _sampler(arch: Mapping[str, Any], params: Mapping[str, Any]) -> Callable:
    """``(key, p_cluster, axis) -> (cos θ, φ)`` of the model; compiled once per architecture (params are arguments)."""
    import json

    model = L.angle_model(arch, params)
    p = model.init(None)
    tag = json.dumps({k: arch[k] for k in L.ARCH_KEYS}, sort_keys=True)
    if tag not in _SAMPLE_JIT:
        _SAMPLE_JIT[tag] = jax.jit(model.sample)
    fn = _SAMPLE_JIT[tag]
    return lambda key, p_c, axis: fn(p, key, p_c, axis)


def train_params(
    cfg: TrainConfig, data: Mapping[str, np.ndarray], *, params: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Train on a given dataset, without validation, checkpoints or output files.

    Same optimizer, schedule and minibatch sequence as :func:`train` (keys from ``cfg.seed``),
    for tests and studies that make their own reference samples.

    Args:
      cfg: the run configuration (``n_train`` is ignored: every row of ``data`` is used).
      data: a dataset from :func:`make_dataset` (``cond`` [n, 8], ``cos_theta``, ``phi`` [n]).
      params: starting params (default: fresh ones from ``cfg.arch()``).

    Returns:
      the trained params (``{"generator", "discriminator"}`` or ``{"flow"}``).
    """
    cfg.validate()
    arch = cfg.arch()
    opt = _optimizers(cfg)
    params = L.init_params(arch) if params is None else params
    opt_state = {k: opt[k].init(params[k]) for k in opt}
    step_fn, n_batch = _step_fn(cfg, arch, opt)
    cond = jnp.asarray(data["cond"])
    cos = jnp.asarray(data["cos_theta"])
    phi = jnp.asarray(data["phi"])
    k_steps = jax.random.split(jax.random.key(cfg.seed), 5)[3]
    for step in range(cfg.steps):
        kb, kstep = jax.random.split(jax.random.fold_in(k_steps, step))
        idx = jax.random.randint(kb, (n_batch,), 0, cond.shape[0])
        params, opt_state, _ = step_fn(params, opt_state, kstep, cond[idx], cos[idx], phi[idx])
    return params


def train(
    cfg: TrainConfig,
    out_dir: str | os.PathLike,
    *,
    resume: bool = True,
    progress: bool = True,
    plot: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train a learned cluster-decay model; write checkpoint, metrics and plot to ``out_dir``.

    Args:
      cfg: the run configuration.
      out_dir: directory for ``checkpoint.npz``, ``metrics.json`` and ``comparison.png``.
      resume: continue from ``out_dir/checkpoint.npz`` if it exists (its architecture must match).
      progress: show a progress bar (rich).
      plot: write the comparison plot.
      log: where validation lines go.

    Returns:
      ``{"params", "config", "metrics", "baseline", "step", "checkpoint"}`` where ``metrics``
      compares the model on validation sample A with reference sample B and ``baseline``
      compares reference samples A and B (same sizes).
    """
    import json

    cfg.validate()
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    ckpt = os.path.join(out_dir, "checkpoint.npz")
    arch = cfg.arch()
    key = jax.random.key(cfg.seed)
    k_train, k_val_a, k_val_b, k_steps, k_eval = jax.random.split(key, 5)
    # the reference samples take tens of seconds the first time (compilation), so they get a bar too
    with _progress(progress) as prep:
        task = prep.add_task("reference clusters", total=cfg.n_train + 2 * cfg.n_val)
        train_data = make_dataset(k_train, cfg.n_train, cfg.smearing)
        prep.update(task, advance=cfg.n_train)
        val_a = make_dataset(k_val_a, cfg.n_val, cfg.smearing)
        prep.update(task, advance=cfg.n_val)
        val_b = make_dataset(k_val_b, cfg.n_val, cfg.smearing)
        prep.update(task, advance=cfg.n_val)
    opt = _optimizers(cfg)
    params = L.init_params(arch)
    opt_state = {k: opt[k].init(params[k]) for k in opt}
    start = 0
    if resume and os.path.exists(ckpt):
        state = L.load_checkpoint(ckpt, expected=arch)
        params = state["params"]
        if state["opt_leaves"] is not None:
            treedef = jax.tree_util.tree_structure(opt_state)
            opt_state = jax.tree_util.tree_unflatten(treedef, state["opt_leaves"])
        start = int(state["step"])
        log(f"resumed from {ckpt} at step {start}")
    step_fn, n_batch = _step_fn(cfg, arch, opt)
    cond = jnp.asarray(train_data["cond"])
    cos = jnp.asarray(train_data["cos_theta"])
    phi = jnp.asarray(train_data["phi"])
    full_cfg = {**arch, "train": dataclasses.asdict(cfg)}

    def validate(params, step):
        gen = model_decays(_sampler(arch, params), val_a, jax.random.fold_in(k_eval, step))
        return M.decay_metrics(gen, val_b), gen

    metrics: dict[str, float] = {}
    bar = _progress(progress)
    with bar:
        task = bar.add_task(f"train {cfg.model}", total=cfg.steps, completed=start)
        for step in range(start, cfg.steps):
            ks = jax.random.fold_in(k_steps, step)
            kb, kstep = jax.random.split(ks)
            idx = jax.random.randint(kb, (n_batch,), 0, cfg.n_train)
            params, opt_state, losses = step_fn(params, opt_state, kstep, cond[idx], cos[idx], phi[idx])
            done = step + 1
            bar.update(
                task,
                advance=1,
                description=f"train {cfg.model} " + " ".join(f"{k}={float(v):.3f}" for k, v in losses.items()),
            )
            if done % cfg.val_every == 0 or done == cfg.steps:
                metrics, _ = validate(params, done)
                log(f"step {done}: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
            if done % cfg.ckpt_every == 0 or done == cfg.steps:
                L.save_checkpoint(ckpt, full_cfg, params, opt_state=opt_state, step=done, metrics=metrics)
    final, gen = validate(params, cfg.steps)
    baseline = M.decay_metrics(_ref_as_model(val_a), val_b)
    result = {"metrics": final, "baseline": baseline, "step": cfg.steps}
    tmp = os.path.join(out_dir, f"metrics.json.tmp-{os.getpid()}")
    with open(tmp, "w") as fh:
        json.dump({"config": full_cfg, **result}, fh, indent=2)
    os.replace(tmp, os.path.join(out_dir, "metrics.json"))
    if plot:
        plot_comparison(os.path.join(out_dir, "comparison.png"), gen, val_b, label=cfg.model)
    return {**result, "params": params, "config": full_cfg, "checkpoint": ckpt}


def _ref_as_model(data: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: data[k] for k in M.JOINT_FEATURES}


class _NoBar:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add_task(self, *a, **k):
        return 0

    def update(self, *a, **k):
        pass


def _progress(enabled: bool):
    if not enabled:
        return _NoBar()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())


def plot_comparison(
    path: str, model: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray], *, label: str = "model"
) -> None:
    """Histograms of model vs reference (cos θ, φ, E₁, |p⃗₁|) with ratio panels, written atomically.

    Args:
      path: output image (``.png``).
      model, reference: decay samples (keys of :data:`metrics.JOINT_FEATURES`).
      label: legend label of the model.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("cos_theta", r"$\cos\theta$", (-1.0, 1.0)),
        ("phi", r"$\phi$ [rad]", (-np.pi, np.pi)),
        ("e1", r"$E_1$ [GeV]", (0.0, float(np.quantile(reference["e1"], 0.99)))),
        ("p1", r"$|\vec p_1|$ [GeV]", (0.0, float(np.quantile(reference["p1"], 0.99)))),
    ]
    fig, axes = plt.subplots(2, 4, figsize=(16, 5), gridspec_kw={"height_ratios": [3, 1]}, sharex="col")
    for j, (key, xlabel, rng) in enumerate(panels):
        bins = np.linspace(*rng, 41)
        hr, _ = np.histogram(reference[key], bins=bins)
        hm, _ = np.histogram(model[key], bins=bins)
        scale = len(reference[key]) / max(len(model[key]), 1)
        centers = 0.5 * (bins[1:] + bins[:-1])
        axes[0, j].stairs(hr, bins, label="reference")
        axes[0, j].stairs(hm * scale, bins, label=label)
        axes[0, j].legend(fontsize=8)
        ratio = np.divide(hm * scale, hr, out=np.full(hr.shape, np.nan, float), where=hr > 0)
        err = np.divide(np.sqrt(hm) * scale, hr, out=np.zeros(hr.shape, float), where=hr > 0)
        axes[1, j].errorbar(centers, ratio, yerr=err, fmt=".", ms=3)
        axes[1, j].axhline(1.0, color="grey", lw=0.8)
        axes[1, j].set_ylim(0.8, 1.2)
        axes[1, j].set_xlabel(xlabel)
        axes[1, j].set_ylabel(f"{label}/ref")
    fig.tight_layout()
    tmp = f"{path}.tmp-{os.getpid()}.png"
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)
