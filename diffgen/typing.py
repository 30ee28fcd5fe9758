"""Type aliases used across diffgen's signatures."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

__all__ = ["Array", "ArrayLike", "DType", "Key", "Params", "PyTree", "Scalar"]

#: A JAX array (possibly a tracer inside ``jit``/``grad``).
Array = jax.Array
#: Anything ``jnp.asarray`` accepts: JAX or NumPy arrays, Python scalars and sequences.
ArrayLike = jax.typing.ArrayLike
#: A JAX PRNG key (new-style typed key or legacy ``uint32[2]``).
Key = jax.Array
#: A pytree of (mostly floating-point) arrays holding a layer's continuous parameters.
Params = Any
#: Any pytree.
PyTree = Any
#: A 0-d array or Python number.
Scalar = jax.typing.ArrayLike
#: A NumPy/JAX floating dtype (``jnp.float32`` or ``jnp.float64``).
DType = np.dtype | type
