"""diffgen: differentiable particle-physics event generation in JAX.

One jit-compiled, differentiable chain of pure functions from theory parameters to
detector-level observables. The public API is re-exported here; see ``DESIGN.md`` and
the documentation for the data type (:class:`Events`) and the layer contract
(:class:`Source`, :class:`Layer`, :func:`chain`).
"""

from importlib.metadata import PackageNotFoundError, version

from diffgen import kinematics
from diffgen.core import Events, Layer, Source, chain, stage_key

try:
    __version__ = version("diffgen")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = ["Events", "Layer", "Source", "__version__", "chain", "kinematics", "stage_key"]
