"""Argument checks shared by the process factories (concrete values only)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from diffgen.core import is_traced

__all__ = ["check_dtype", "check_n", "check_params"]


def check_n(where: str, n: Any) -> int:
    """``n`` must be a positive Python/NumPy integer (static number of events)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise ValueError(f"{where}: n must be a positive integer (number of events, >= 1), got {n!r}")
    return int(n)


def check_dtype(where: str, dtype: Any) -> Any:
    """``dtype`` must be float32 or float64."""
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"{where}: dtype must be float32 or float64, got {dt}")
    return dt


def check_params(where: str, params: Mapping[str, Any], ranges: Mapping[str, tuple[float, float, str]]) -> None:
    """Check that ``params`` holds every name of ``ranges`` with a value in its range.

    Args:
      where: function name for the message.
      params: the parameter dict.
      ranges: ``{name: (low, high, text)}``; the value must be finite with
        ``low < value < high`` (``low``/``high`` may be ±inf); ``text`` describes the range.
        Traced values (inside ``jit``/``vmap``/``grad``) are not checked.
    """
    if not isinstance(params, Mapping):
        raise TypeError(f"{where}: params must be a dict of scalars, got {type(params).__name__}")
    missing = [k for k in ranges if k not in params]
    if missing:
        raise ValueError(f"{where}: params lack {missing}; expected keys {sorted(ranges)}")
    for name, (low, high, text) in ranges.items():
        value = params[name]
        if is_traced(value):
            continue
        arr = np.asarray(value)
        if arr.shape != ():
            raise ValueError(f"{where}: params[{name!r}] must be a scalar (0-d array), got shape {arr.shape}")
        if not jnp.issubdtype(arr.dtype, jnp.floating):
            raise TypeError(f"{where}: params[{name!r}] must be a floating-point scalar, got dtype {arr.dtype}")
        x = float(arr)
        if not math.isfinite(x) or not (low < x < high):
            raise ValueError(f"{where}: params[{name!r}] = {x!r} is outside the allowed range {text}")
