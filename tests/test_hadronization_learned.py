"""Learned cluster-decay models against the reference decay, in a small configuration.

Both models (conditional GAN and distrax flow) are trained on 10⁴ reference clusters and their
decay samples compared with held-out reference samples by W₁(cos θ)/2, W₁(φ)/2π and the sliced
W₁ of :func:`diffgen.hadronization.metrics.decay_metrics`. The thresholds come from the same
statistics: the distances between K independent pairs of reference samples of the same size give
the statistical floor (mean m) and its spread (standard deviation s) at that size; a model passes
a metric when its distance is at most m + 4 s (one-sided; 4 rather than 3 because s comes from 10
pairs, a ~25 % uncertainty, and W₁ is skewed to the right). The validation size is a fifth of the
training size, so the finite training set's own fluctuation stays below the floor being tested.
An untrained model must fail the same thresholds. The full-size acceptance run (10⁵ clusters,
W₁ < 0.01 and SW < 2× the floor) is in docs/hadronization.md.
"""

import jax
import numpy as np
import pytest

from diffgen.hadronization import learned as L
from diffgen.hadronization.metrics import decay_metrics
from diffgen.hadronization.train import TrainConfig, make_dataset, model_decays, train_params

pytestmark = pytest.mark.filterwarnings("ignore:jax.core.pytype_aval_mappings is deprecated:DeprecationWarning")

N_TRAIN = 10_000
#: size of every validation sample (model sample and reference samples alike), N_TRAIN / 5
N_VAL = 2000
#: independent reference-vs-reference pairs for the statistical floor and its spread
K_PAIRS = 10
#: a model distance may exceed the mean floor by K_SIGMA standard deviations of the floor
K_SIGMA = 4.0
METRICS = ("w1_cos_theta", "w1_phi", "sliced_w1")
#: small, fast configurations (the full-size defaults are in TrainConfig)
CONFIGS = {
    "gan": {"steps": 600, "batch": 256, "lr": 1e-3},
    "flow": {"steps": 300, "batch": 256, "hidden": 32, "n_layers": 2, "lr": 3e-3},
}


@pytest.fixture(scope="module")
def samples():
    """One reference sample cut into the training set, the model's clusters and 1 + 2·K_PAIRS references."""
    n_pieces = 2 + 2 * K_PAIRS
    data = make_dataset(jax.random.key(11), N_TRAIN + n_pieces * N_VAL, 0.78)
    train = {k: v[:N_TRAIN] for k, v in data.items()}
    pieces = [{k: v[N_TRAIN + i * N_VAL : N_TRAIN + (i + 1) * N_VAL] for k, v in data.items()} for i in range(n_pieces)]
    return train, pieces


@pytest.fixture(scope="module")
def thresholds(samples):
    """m + K_SIGMA·s per metric from K_PAIRS independent reference pairs of N_VAL each."""
    _, pieces = samples
    base = [decay_metrics(pieces[2 + 2 * i], pieces[3 + 2 * i]) for i in range(K_PAIRS)]
    values = {k: np.array([b[k] for b in base]) for k in METRICS}
    return {k: float(v.mean() + K_SIGMA * v.std(ddof=1)) for k, v in values.items()}


def _distances(cfg, params, pieces):
    arch = cfg.arch()
    model = L.angle_model(arch, params)
    p = model.init(None)
    sample = jax.jit(model.sample)
    gen = model_decays(lambda k, pc, ax: sample(p, k, pc, ax), pieces[0], jax.random.key(3))
    return decay_metrics(gen, pieces[1])


@pytest.mark.slow
@pytest.mark.parametrize("model", ["gan", "flow"])
def test_learned_model_reaches_reference_floor(model, samples, thresholds):
    train, pieces = samples
    cfg = TrainConfig(model=model, n_train=N_TRAIN, n_val=N_VAL, seed=1, **CONFIGS[model])
    untrained = _distances(cfg, L.init_params(cfg.arch()), pieces)
    trained = _distances(cfg, train_params(cfg, train), pieces)
    report = {k: (round(untrained[k], 4), round(trained[k], 4), round(thresholds[k], 4)) for k in METRICS}
    # the untrained model is far from the reference in cos θ and in the joint space (the untrained
    # flow is close to uniform in φ, which the reference is, so φ alone is not asked to fail)
    assert untrained["w1_cos_theta"] > thresholds["w1_cos_theta"], report
    assert untrained["sliced_w1"] > thresholds["sliced_w1"], report
    for k in METRICS:
        assert trained[k] <= thresholds[k], (k, report)
