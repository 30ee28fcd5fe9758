"""Fit of the reference smearing parameter from hadron-level data only (no matched clusters).

The setting of arXiv:2305.17169 (HADML): the target sample holds only the hadrons of each event;
which hadrons came from which cluster, and the clusters themselves, are unknown. A
permutation-invariant discriminator — DeepSets (M. Zaheer et al., arXiv:1703.06114),
``D(event) = ρ(mean_i φ(x_i))`` over the hadrons of an event — is trained to separate target
events from events simulated with the current smearing σ, and log σ follows the pathwise
gradient of the non-saturating generator loss (I. Goodfellow et al., arXiv:1406.2661)
through the reference decay (DESIGN.md §4 mode 1).

Which observable carries σ. σ smears the decay direction of each cluster around its
quark constituent (:func:`diffgen.hadronization.decay.reference_angles`). In a lone cluster the
constituent direction is not observed, so its two hadrons say little about σ (a first version
fitted single-cluster events and did not converge). In whole events the constituents of the
fission chain of a q q̄ string (arXiv:0803.0883 §7.2) point along the event axis, so small σ
gives hadrons collimated around that axis and large σ gives them transverse momentum: the
distribution of the hadrons' transverse momentum p_T with respect to the event's sphericity
axis (an axis computed from the hadrons alone) is the σ-sensitive observable, and it is a
feature of the discriminator.

Stabilisation of the adversarial dynamics (following the practice reviewed in L. Mescheder et
al., arXiv:1801.04406): several discriminator steps per σ step, Adam on log σ (momentum
β₁ = 0.9 by default, averaging its noisy gradient) with an exponentially decaying learning
rate, an R1 gradient penalty on the target events, common random numbers on the simulated side
(fixed model minibatches with fixed keys, so the simulated sample is a deterministic function
of σ), and the estimate is the average of log σ over the last iterations (Polyak averaging).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from diffgen import kinematics as kin
from diffgen.hadronization.decay import decay_clusters, decay_unstable, reference_angles
from diffgen.hadronization.formation import Clusters, form_clusters
from diffgen.hadronization.layer import DEFAULT_PARAMS
from diffgen.hadronization.learned import MLP
from diffgen.hadronization.samples import parton_chains
from diffgen.typing import Array, Key

__all__ = [
    "DeepSets",
    "N_FEATURES",
    "event_clusters",
    "fit_smearing",
    "hadron_features",
    "simulate_hadrons",
    "sphericity_axis",
]

#: Per-hadron features of the discriminator (see :func:`hadron_features`).
N_FEATURES = 3


class DeepSets(nnx.Module):
    """Permutation-invariant discriminator ``ρ(mean_i φ(x_i))`` over the hadrons of an event (arXiv:1703.06114)."""

    def __init__(self, n_features: int = N_FEATURES, hidden: int = 32, *, rngs: nnx.Rngs, dtype: Any = jnp.float32):
        self.phi = MLP(n_features, hidden, hidden, 2, rngs=rngs, dtype=dtype)
        self.rho = MLP(hidden, 1, hidden, 1, rngs=rngs, dtype=dtype)

    def __call__(self, x: Array, mask: Array) -> Array:
        """Logits of "target" per event.

        Args:
          x: [N, H, F] hadron features; mask: [N, H] bool (padding is ignored).

        Returns:
          [N] logits.
        """
        w = mask.astype(x.dtype)
        h = jax.nn.silu(self.phi(x)) * w[..., None]
        pooled = kin.safe_div(jnp.sum(h, axis=1), jnp.sum(w, axis=1)[:, None])
        return self.rho(pooled)[..., 0]


def sphericity_axis(p: Array, mask: Array, *, n_iter: int = 30) -> Array:
    """Leading eigenvector of the event's momentum tensor ``S_ab = Σ_i p_ia p_ib`` (sphericity axis).

    Found by power iteration from the direction of the hardest hadron (a smooth function of the
    momenta, unlike a general eigensolver whose gradient is singular at degenerate eigenvalues);
    convergence is geometric in λ₂/λ₁, fast for two-jet events. Sphericity: J.D. Bjorken and
    S.J. Brodsky, Phys. Rev. D1 (1970) 1416.

    Args:
      p: [N, H, 4] hadron momenta (E, px, py, pz), GeV.
      mask: [N, H] bool.
      n_iter: static number of power iterations.

    Returns:
      [N, 3] unit axis (sign arbitrary).
    """
    k = jnp.where(mask[..., None], p[..., 1:], 0.0)
    s = jnp.einsum("nia,nib->nab", k, k)
    pmag2 = jnp.sum(k * k, axis=-1)
    hardest = jnp.take_along_axis(k, jnp.argmax(pmag2, axis=1)[:, None, None], axis=1)[:, 0]
    # a small fixed tilt keeps the start off an exact eigenvector orthogonal to the leading one
    v = hardest + 1e-3 * jnp.sqrt(jnp.sum(pmag2, axis=1))[:, None]

    def body(_, v):
        w = jnp.einsum("nab,nb->na", s, v)
        return kin.safe_div(w, kin.safe_sqrt(jnp.sum(w * w, axis=-1))[:, None])

    return jax.lax.fori_loop(0, n_iter, body, v)


def hadron_features(p: Array, mask: Array) -> Array:
    """Per-hadron features relative to the event's sphericity axis (:func:`sphericity_axis`).

    Args:
      p: [N, H, 4] hadron momenta (E, px, py, pz), GeV.
      mask: [N, H] bool.

    Returns:
      [N, H, 3] ``(p_T, log(1 + |p_L|), log(1 + E))`` with p_T and p_L the momentum components
      transverse and longitudinal to the axis, all in GeV before the logarithm (zero in padding).
    """
    axis = sphericity_axis(p, mask)
    k = p[..., 1:]
    pl = jnp.einsum("nia,na->ni", k, axis)
    pt = kin.safe_sqrt(jnp.sum(k * k, axis=-1) - pl * pl)
    x = jnp.stack([pt, jnp.log1p(jnp.abs(pl)), jnp.log1p(jnp.maximum(p[..., 0], 0.0))], axis=-1)
    return jnp.where(mask[..., None], x, 0.0)


def event_clusters(
    key: Key,
    n_events: int,
    *,
    sqrt_s: float = 30.0,
    n_gluons: int = 0,
    max_clusters: int = 16,
    n_fission_rounds: int = 4,
    dtype: Any = None,
) -> Clusters:
    """Clusters of whole events: q g^n q̄ parton chains (:func:`~diffgen.hadronization.samples.parton_chains`)
    through cluster formation and fission (:func:`~diffgen.hadronization.formation.form_clusters`).

    Cluster formation does not depend on σ, so these are computed once and decayed at every σ.

    Args:
      key: PRNG key.
      n_events: static N.
      sqrt_s: energy of the chains (GeV).
      n_gluons: gluons per chain (0: a q q̄ string, the fission chain along the event axis).
      max_clusters: static cluster capacity K per event (4 fission rounds of one q q̄ cluster
        give at most 16).
      n_fission_rounds: static number of fission rounds.
      dtype: floating dtype (default: JAX's default float).

    Returns:
      ``Clusters`` [N, K] (uds quarks; cl_max and γ_s from
      :data:`diffgen.hadronization.layer.DEFAULT_PARAMS`).

    Raises:
      ValueError: ``n_events < 1``, ``n_gluons < 0``, ``sqrt_s <= 0`` or a cluster overflow.
    """
    if not isinstance(n_events, int) or n_events < 1:
        raise ValueError(f"event_clusters: n_events must be a positive int, got {n_events!r}")
    if not isinstance(n_gluons, int) or n_gluons < 0:
        raise ValueError(f"event_clusters: n_gluons must be an int >= 0, got {n_gluons!r}")
    if not sqrt_s > 0:
        raise ValueError(f"event_clusters: sqrt_s must be > 0 GeV, got {sqrt_s!r}")
    k_p, k_f = jax.random.split(key)
    ev = parton_chains(k_p, n_events, n_gluons=n_gluons, sqrt_s=sqrt_s, flavours="uds", dtype=dtype)
    params = {k: jnp.asarray(DEFAULT_PARAMS[k], ev.dtype) for k in ("cl_max", "gamma_s")}
    clusters, info = _form_jit(params, k_f, ev, max_clusters, n_fission_rounds)
    if bool(jnp.any(info["overflow"])):
        raise ValueError(
            f"event_clusters: max_clusters={max_clusters} is too small for sqrt_s={sqrt_s} GeV "
            f"({int(jnp.sum(info['overflow']))} events overflow)"
        )
    return clusters


_form_jit = jax.jit(
    lambda params, key, ev, k, r: form_clusters(params, key, ev, max_clusters=k, n_fission_rounds=r),
    static_argnums=(3, 4),
)


def simulate_hadrons(smearing: Array, key: Key, clusters: Clusters, *, final_state: bool = False):
    """Hadrons of the reference cluster decay at smearing σ (differentiable in σ).

    Args:
      smearing: σ > 0 (0-d array).
      key: PRNG key.
      clusters: [N, K] clusters.
      final_state: also decay unstable hadrons
        (:func:`~diffgen.hadronization.decay.decay_unstable`); otherwise primary hadrons.

    Returns:
      ``(p [N, H, 4] GeV, mask [N, H] bool)`` with H = 2K (primary) or 4K (final state).
    """
    dtype = clusters.p_q.dtype
    params = {k: jnp.asarray(DEFAULT_PARAMS[k], dtype) for k in ("gamma_s", "p_vector")}
    params["decay"] = {"smearing": jnp.asarray(smearing, dtype)}
    k_dec, k_unst = jax.random.split(key)
    p, pid, mask, _ = decay_clusters(params, k_dec, clusters, reference_angles(), on_threshold="reshuffle")
    if final_state:
        h = p.shape[1]
        p = jnp.pad(p, ((0, 0), (0, h), (0, 0)))
        pid = jnp.pad(pid, ((0, 0), (0, h)))
        mask = jnp.pad(mask, ((0, 0), (0, h)))
        p, pid, mask, _ = decay_unstable(k_unst, p, pid, mask)
    return jnp.where(mask[..., None], p, 0.0), mask


def fit_smearing(
    target_p: Array,
    target_mask: Array,
    clusters: Clusters,
    *,
    sigma0: float = 2.0,
    steps: int = 200,
    batch: int = 256,
    n_disc: int = 3,
    lr_sigma: float = 0.1,
    lr_sigma_final: float = 0.005,
    momentum: float = 0.9,
    lr_disc: float = 2e-3,
    r1: float = 1.0,
    hidden: int = 32,
    average_last: float = 0.3,
    final_state: bool = False,
    seed: int = 0,
) -> dict[str, Any]:
    """Adversarial fit of the smearing σ to hadron-level target events.

    Each step makes ``n_disc`` discriminator updates (binary cross-entropy, target = 1, model = 0,
    plus ``r1/2 · E_target |∇_x D|²`` on the features of target events, arXiv:1801.04406) and one
    Adam update of log σ on the non-saturating loss ``E_model softplus(−D)``, with the learning
    rate decaying exponentially from ``lr_sigma`` to ``lr_sigma_final``. The model events are
    ``len(clusters) // batch`` fixed minibatches, each decayed with its own fixed key (common random
    numbers).

    Args:
      target_p: [N_t, H, 4] target hadrons (GeV); target_mask: [N_t, H] bool.
      clusters: [N_c, K] clusters of the model events, independent of the target's
        (:func:`event_clusters`); N_c ≥ batch.
      sigma0: starting σ (> 0).
      steps: number of σ updates (≥ 1).
      batch: events per minibatch from each side.
      n_disc: discriminator updates per σ update (≥ 1).
      lr_sigma, lr_sigma_final: initial and final Adam learning rates of log σ.
      momentum: Adam's β₁ for log σ (0 ≤ β₁ < 1); 0.9 averages the σ-gradient over ~10 steps (its
        sign is noisy where the hadrons depend weakly on σ, at large σ), lower values damp the
        oscillation around the optimum in short fits.
      lr_disc: Adam learning rate of the discriminator.
      r1: weight of the R1 gradient penalty (≥ 0).
      hidden: width of the DeepSets networks.
      average_last: fraction of the last steps whose log σ is averaged (0 < f ≤ 1).
      final_state: simulate final-state hadrons (must match how the target was made).
      seed: seed of the discriminator initialisation, the minibatches and the model-side keys.

    Returns:
      dict with ``"sigma"`` [steps] σ after each step, ``"d_loss"`` [steps] discriminator loss
      (log 4 ≈ 1.386 when it cannot separate the samples), ``"estimate"`` exp of the mean log σ
      over the last ``average_last`` fraction of steps, ``"spread"`` the standard deviation of σ
      over those steps (the residual oscillation; the statistical error of the estimate is
      measured separately from independent pseudo-data samples, see the example script).

    Raises:
      ValueError: arguments out of range or shapes that do not match.
    """
    if target_p.ndim != 3 or target_p.shape[-1] != 4 or target_mask.shape != target_p.shape[:2]:
        raise ValueError(
            f"fit_smearing: target_p must be [N, H, 4] and target_mask [N, H], got {target_p.shape} and "
            f"{target_mask.shape}"
        )
    n_t, n_c = target_p.shape[0], clusters.mask.shape[0]
    checks = (
        ("sigma0", sigma0 > 0, "> 0"),
        ("steps", isinstance(steps, int) and steps >= 1, "an int >= 1"),
        ("batch", isinstance(batch, int) and 1 <= batch <= min(n_t, n_c), f"an int in [1, {min(n_t, n_c)}]"),
        ("n_disc", isinstance(n_disc, int) and n_disc >= 1, "an int >= 1"),
        ("lr_sigma", lr_sigma > 0 and lr_sigma_final > 0, "> 0 (and lr_sigma_final > 0)"),
        ("momentum", 0 <= momentum < 1, "in [0, 1)"),
        ("r1", r1 >= 0, ">= 0"),
        ("average_last", 0 < average_last <= 1, "in (0, 1]"),
    )
    for name, ok, allowed in checks:
        if not ok:
            raise ValueError(f"fit_smearing: {name} must be {allowed}, got {locals()[name]!r}")
    dtype = target_p.dtype
    _, opt_d, opt_s, step = _step_fn(
        batch,
        n_disc,
        float(r1),
        float(lr_disc),
        float(lr_sigma),
        float(lr_sigma_final),
        float(momentum),
        steps,
        hidden,
        final_state,
        jnp.dtype(dtype).name,
    )
    dparams = nnx.to_pure_dict(nnx.split(DeepSets(hidden=hidden, rngs=nnx.Rngs(seed), dtype=dtype))[1])
    log_sigma = jnp.log(jnp.asarray(sigma0, dtype))
    sd, ss = opt_d.init(dparams), opt_s.init(log_sigma)
    n_mb = n_c // batch
    model_cl = jax.tree.map(lambda x: x[: n_mb * batch].reshape(n_mb, batch, *x.shape[1:]), clusters)
    target_x = _features_jit(target_p, target_mask)
    k_model, k_loop = jax.random.split(jax.random.key(seed))
    data = (k_model, target_x, target_mask, model_cl)

    sig, dl = [], []
    for i in range(steps):
        dparams, sd, log_sigma, ss, ld = step(dparams, sd, log_sigma, ss, jax.random.fold_in(k_loop, i), *data)
        sig.append(float(jnp.exp(log_sigma)))
        dl.append(float(ld))
    sig_a = np.asarray(sig)
    tail = sig_a[-max(1, round(average_last * steps)) :]
    return {
        "sigma": sig_a,
        "d_loss": np.asarray(dl),
        "estimate": float(np.exp(np.mean(np.log(tail)))),
        "spread": float(np.std(tail)),
    }


_features_jit = jax.jit(hadron_features)


@functools.lru_cache(maxsize=8)
def _step_fn(batch, n_disc, r1, lr_disc, lr_sigma, lr_sigma_final, momentum, steps, hidden, final_state, dtype_name):
    """The jitted training step for one static configuration (cached: fits with new seeds or data
    of the same shapes reuse the compiled step)."""
    dtype = jnp.dtype(dtype_name)
    graph, _ = nnx.split(DeepSets(hidden=hidden, rngs=nnx.Rngs(0), dtype=dtype))
    opt_d = optax.adam(lr_disc, b1=0.5)
    schedule = optax.exponential_decay(lr_sigma, transition_steps=steps, decay_rate=lr_sigma_final / lr_sigma)
    opt_s = optax.adam(schedule, b1=momentum)

    def logits(dp, x, mask):
        return nnx.merge(graph, dp)(x, mask)

    def simulate(ls, j, k_model, model_cl):
        cl = jax.tree.map(lambda a: a[j], model_cl)
        p, mask = simulate_hadrons(jnp.exp(ls), jax.random.fold_in(k_model, j), cl, final_state=final_state)
        return hadron_features(p, mask), mask

    def d_loss(dp, xt, mt, xm, mm):
        lt, lm = logits(dp, xt, mt), logits(dp, xm, mm)
        bce = jnp.mean(jax.nn.softplus(-lt)) + jnp.mean(jax.nn.softplus(lm))
        grad_x = jax.grad(lambda x: jnp.sum(logits(dp, x, mt)))(xt)
        penalty = jnp.mean(jnp.sum(grad_x**2, axis=(1, 2)))
        return bce + 0.5 * r1 * penalty, bce

    def g_loss(ls, dp, j, k_model, model_cl):
        xm, mm = simulate(ls, j, k_model, model_cl)
        return jnp.mean(jax.nn.softplus(-logits(dp, xm, mm)))

    @jax.jit
    def step(dp, sd, ls, ss, key, k_model, target_x, target_mask, model_cl):
        n_t, n_mb = target_x.shape[0], model_cl.mask.shape[0]
        k_d, k_g = jax.random.split(key)

        def disc_step(i, carry):
            dp, sd, _ = carry
            k1, k2 = jax.random.split(jax.random.fold_in(k_d, i))
            it = jax.random.randint(k1, (batch,), 0, n_t)
            j = jax.random.randint(k2, (), 0, n_mb)
            xm, mm = simulate(jax.lax.stop_gradient(ls), j, k_model, model_cl)
            (_, bce), gd = jax.value_and_grad(d_loss, has_aux=True)(dp, target_x[it], target_mask[it], xm, mm)
            with jax.numpy_dtype_promotion("standard"):  # optax's int32 step count meets floats
                ud, sd = opt_d.update(gd, sd, dp)
            return optax.apply_updates(dp, ud), sd, bce

        dp, sd, bce = jax.lax.fori_loop(0, n_disc, disc_step, (dp, sd, jnp.zeros((), dtype)))
        j = jax.random.randint(k_g, (), 0, n_mb)
        gs = jax.grad(g_loss)(ls, dp, j, k_model, model_cl)
        with jax.numpy_dtype_promotion("standard"):
            us, ss = opt_s.update(gs, ss, ls)
        return dp, sd, optax.apply_updates(ls, us), ss, bce

    return graph, opt_d, opt_s, step
