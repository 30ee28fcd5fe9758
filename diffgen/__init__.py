"""diffgen: differentiable particle-physics event generation in JAX.

One jit-compiled, differentiable chain of pure functions from theory parameters to
detector-level observables. The public API is re-exported here; see ``docs/concepts.md``
for the data type (:class:`Events`) and the layer contract (:class:`Source`,
:class:`Layer`, :func:`chain`).

Attributes are loaded on first use, so that ``import diffgen`` (and ``diffgen --help``)
does not pay for importing JAX until something needs it.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("diffgen")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

_CORE = ("Events", "Layer", "Source", "chain", "jit", "stage_key")
_SUBMODULES = (
    "core",
    "detector",
    "hadronization",
    "host_memory",
    "inference",
    "io",
    "kinematics",
    "observables",
    "parallel",
    "phasespace",
    "plotting",
    "processes",
    "shower",
    "testing",
    "unfolding",
)

__all__ = ["__version__", *_CORE, *_SUBMODULES]


def __getattr__(name: str):
    if name in _CORE:
        return getattr(import_module("diffgen.core"), name)
    if name in _SUBMODULES:
        return import_module(f"diffgen.{name}")
    raise AttributeError(f"module 'diffgen' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
