"""Strict test configuration (DESIGN.md §8): float64, strict dtype promotion, rank promotion raises.

Warnings are errors (pyproject ``filterwarnings``). Statistical tests are seeded; long ones
are marked ``slow`` and still run in CI.
"""

import os
from pathlib import Path

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
# One persistent compilation cache for the whole run: the two xdist workers, the CLI
# subprocesses and the notebook kernels (which inherit the environment) compile many of the
# same programs; executables that took over a second to compile are stored and reused.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".pytest_cache" / "jax"))
# The suite is dominated by XLA compilation of large programs that then run for milliseconds;
# LLVM's optimisation passes cost more than they save there (measured: the hadronization gradient
# test 74 s → 46 s CPU, runtime-heavy tests unchanged). For the same reason the CPU backend's
# older fusion emitters: measured on the 300-event hadron chain, compilation 12.9 s → 8.4 s,
# running 0.34 s → 0.43 s. The library itself keeps XLA's defaults.
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()
if "--xla_cpu_use_fusion_emitters" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " --xla_cpu_use_fusion_emitters=false"

import jax
import pytest
from hypothesis import HealthCheck, settings

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")

# JIT compilation makes the first example slow; deadlines would only measure the compiler.
settings.register_profile("diffgen", deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("diffgen")


@pytest.fixture
def key():
    """A fixed PRNG key; tests derive sub-keys from it."""
    return jax.random.key(20261122)
