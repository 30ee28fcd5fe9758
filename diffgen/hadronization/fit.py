"""Fit of the reference smearing parameter from hadron-level data only (no matched clusters).

The setting of arXiv:2305.17169: the target sample holds only hadrons. A permutation-invariant
discriminator — DeepSets (M. Zaheer et al., arXiv:1703.06114): ``D(event) = ρ(Σ_i φ(h_i))``
over the hadrons h_i of an event — is trained to separate target events from events simulated
with the current smearing σ, and σ is updated by the pathwise gradient of the generator loss
through the reference decay (DESIGN.md §4 mode 1). Model events are made from clusters that are
independent of the target's. σ is optimised as log σ.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from diffgen.hadronization.decay import decay_clusters, reference_angles
from diffgen.hadronization.formation import Clusters
from diffgen.hadronization.learned import MLP
from diffgen.typing import Array, Key

__all__ = ["DeepSets", "fit_smearing", "hadron_features"]


class DeepSets(nnx.Module):
    """Permutation-invariant discriminator ``ρ(Σ_i φ(h_i))`` over the hadrons of an event."""

    def __init__(self, n_features: int = 4, hidden: int = 32, *, rngs: nnx.Rngs, dtype: Any = jnp.float32):
        self.phi = MLP(n_features, hidden, hidden, 1, rngs=rngs, dtype=dtype)
        self.rho = MLP(hidden, 1, hidden, 1, rngs=rngs, dtype=dtype)

    def __call__(self, x: Array, mask: Array) -> Array:
        """x: [N, H, F] hadron features, mask: [N, H] → [N] logits."""
        h = jax.nn.silu(self.phi(x)) * mask[..., None].astype(x.dtype)
        return self.rho(jnp.sum(h, axis=1))[..., 0]


def hadron_features(p: Array) -> Array:
    """Per-hadron features for the discriminator: the four-momentum scaled by 1/(10 GeV).

    Args:
      p: [..., 4] hadron momenta (E, px, py, pz) in GeV.

    Returns:
      [..., 4] dimensionless features ``p / 10 GeV``.
    """
    return p / 10.0


def _simulate(sigma: Array, key: Key, clusters: Clusters):
    base = {"gamma_s": jnp.asarray(0.6, sigma.dtype), "p_vector": jnp.asarray(0.5, sigma.dtype)}
    p, _pid, mask, _ = decay_clusters({**base, "decay": {"smearing": sigma}}, key, clusters, reference_angles())
    return p, mask


def fit_smearing(
    target_p: Array,
    target_mask: Array,
    clusters: Clusters,
    *,
    sigma0: float = 2.0,
    steps: int = 400,
    batch: int = 512,
    lr_sigma: float = 0.02,
    lr_disc: float = 2e-3,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Adversarial fit of the smearing σ to hadron-level target events.

    Args:
      target_p: [N_t, H, 4] target hadrons (GeV); target_mask: [N_t, H] bool.
      clusters: [N_c, K] clusters used to simulate model events (independent of the target).
      sigma0: starting σ.
      steps: alternating discriminator / σ steps.
      batch: events per step from each side.
      lr_sigma, lr_disc: Adam learning rates of log σ and of the discriminator.
      seed: seed of initialisation and minibatches.

    Returns:
      ``{"sigma": [steps] σ after each step, "d_loss": [steps]}``.
    """
    dtype = target_p.dtype
    disc = DeepSets(rngs=nnx.Rngs(seed), dtype=dtype)
    graph, dparams = nnx.split(disc)
    dparams = nnx.to_pure_dict(dparams)
    log_sigma = jnp.log(jnp.asarray(sigma0, dtype))
    opt_d, opt_s = optax.adam(lr_disc), optax.adam(lr_sigma)
    sd, ss = opt_d.init(dparams), opt_s.init(log_sigma)
    n_t, n_c = target_p.shape[0], clusters.mask.shape[0]

    def logits(dp, p, mask):
        return nnx.merge(graph, dp)(hadron_features(p), mask)

    def d_loss(dp, pt, mt, pm, mm):
        lt, lm = logits(dp, pt, mt), logits(dp, pm, mm)
        return jnp.mean(optax.sigmoid_binary_cross_entropy(lt, jnp.ones_like(lt))) + jnp.mean(
            optax.sigmoid_binary_cross_entropy(lm, jnp.zeros_like(lm))
        )

    def g_loss(ls, dp, key, cl):
        pm, mm = _simulate(jnp.exp(ls), key, cl)
        lm = logits(dp, pm, mm)
        return jnp.mean(optax.sigmoid_binary_cross_entropy(lm, jnp.ones_like(lm)))

    @jax.jit
    def step(dp, sd, ls, ss, key):
        k1, k2, k3 = jax.random.split(key, 3)
        it = jax.random.randint(k1, (batch,), 0, n_t)
        ic = jax.random.randint(k2, (batch,), 0, n_c)
        cl = jax.tree.map(lambda x: x[ic], clusters)
        pm, mm = _simulate(jnp.exp(ls), k3, cl)
        ld, gd = jax.value_and_grad(d_loss)(dp, target_p[it], target_mask[it], pm, mm)
        ud, sd = opt_d.update(gd, sd, dp)
        dp = optax.apply_updates(dp, ud)
        gs = jax.grad(g_loss)(ls, dp, k3, cl)
        us, ss = opt_s.update(gs, ss, ls)
        return dp, sd, optax.apply_updates(ls, us), ss, ld

    key = jax.random.key(seed)
    sig, dl = [], []
    for i in range(steps):
        dparams, sd, log_sigma, ss, ld = step(dparams, sd, log_sigma, ss, jax.random.fold_in(key, i))
        sig.append(float(jnp.exp(log_sigma)))
        dl.append(float(ld))
    return {"sigma": np.asarray(sig), "d_loss": np.asarray(dl)}
