"""Transparent huge pages for XLA's large host buffers (Linux with glibc).

On the CPU, every call of a compiled program allocates its temporary buffer afresh (for the
e⁺e⁻ → hadrons chain at N = 10⁴ in float32, 169 MB) and frees it when the call returns.
glibc serves an allocation that large with a fresh ``mmap`` and returns it with ``munmap``,
so every call touches new memory, and the kernel maps it one 4 KiB page at a time: ≈ 2·10⁴
page faults per call. With glibc's tunable ``glibc.malloc.hugetlb=1`` (glibc ≥ 2.35), glibc
asks the kernel for transparent huge pages (``madvise(MADV_HUGEPAGE)``) on such mappings,
which are then mapped 2 MiB at a time, with far fewer faults; the numbers computed are the
same. ``benchmarks/host_memory.py`` measures the effect (docs/performance.md, "Huge pages").

glibc reads its tunables once, when the process starts, so the setting has to be in the
environment of the process: :func:`restart_with_huge_pages` restarts the running program
(same interpreter, same command line) with it added. The ``diffgen`` command and
``python -m benchmarks`` do that themselves; a script can call it as its first statement, or
be started with ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` in its environment. Setting the
environment variable ``DIFFGEN_HUGE_PAGES=0`` turns the restart off.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

__all__ = [
    "HUGE_PAGES_TUNABLE",
    "OPT_OUT_VARIABLE",
    "huge_page_environment",
    "huge_pages_enabled",
    "restart_with_huge_pages",
    "transparent_huge_page_mode",
    "with_huge_pages",
]

#: The glibc tunable (glibc ≥ 2.35) that makes malloc advise transparent huge pages.
HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb=1"
#: Environment variable: ``0`` keeps :func:`restart_with_huge_pages` from restarting.
OPT_OUT_VARIABLE = "DIFFGEN_HUGE_PAGES"
_THP_ENABLED = "/sys/kernel/mm/transparent_hugepage/enabled"
# glibc.malloc.hugetlb appeared in glibc 2.35; older versions ignore it.
_MIN_GLIBC = (2, 35)


def transparent_huge_page_mode(path: str = _THP_ENABLED) -> str | None:
    """The kernel's transparent-huge-page mode (``always``, ``madvise`` or ``never``).

    Args:
      path: the sysfs file that holds the mode, e.g. ``always [madvise] never``.

    Returns:
      The selected (bracketed) mode, or None where the file cannot be read (not Linux, or a
      kernel without transparent huge pages).
    """
    try:
        with open(path, encoding="ascii") as f:
            text = f.read()
    except OSError:
        return None
    start, end = text.find("["), text.find("]")
    return text[start + 1 : end] if 0 <= start < end else None


def _glibc_version() -> tuple[int, ...] | None:
    try:
        name, version = os.confstr("CS_GNU_LIBC_VERSION").split()  # e.g. "glibc 2.36"
        return tuple(int(x) for x in version.split(".")[:2]) if name == "glibc" else None
    except (AttributeError, ValueError, OSError):
        return None


def _tunables(environ: Mapping[str, str]) -> list[str]:
    return [t for t in environ.get("GLIBC_TUNABLES", "").split(":") if t]


def _is_hugetlb(tunable: str) -> bool:
    """Whether one ``name=value`` entry of ``GLIBC_TUNABLES`` sets ``glibc.malloc.hugetlb`` (any value)."""
    return tunable.split("=")[0].strip() == HUGE_PAGES_TUNABLE.split("=")[0]


def with_huge_pages(environ: Mapping[str, str], on: bool) -> dict[str, str]:
    """A copy of ``environ`` whose ``GLIBC_TUNABLES`` has :data:`HUGE_PAGES_TUNABLE` set or removed.

    Args:
      environ: the environment.
      on: True to end ``GLIBC_TUNABLES`` with the tunable, False to leave it out; any other
        ``glibc.malloc.hugetlb`` entry is dropped either way, the other tunables are kept
        in their order.

    Returns:
      The new environment (unconditional; :func:`huge_page_environment` decides whether
      the change helps).
    """
    kept = [t for t in _tunables(environ) if not _is_hugetlb(t)]
    return {**environ, "GLIBC_TUNABLES": ":".join([*kept, HUGE_PAGES_TUNABLE] if on else kept)}


def huge_pages_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether an environment sets :data:`HUGE_PAGES_TUNABLE` in ``GLIBC_TUNABLES``.

    Args:
      environ: the environment (default: this process's).

    Returns:
      True if it does. For the running process this says whether its allocations advise
      huge pages, provided the variable was set when it started (glibc reads it only then).
    """
    environ = os.environ if environ is None else environ
    return any(t.replace(" ", "") == HUGE_PAGES_TUNABLE for t in _tunables(environ))


def huge_page_environment(
    environ: Mapping[str, str] | None = None,
    *,
    thp_path: str = _THP_ENABLED,
    glibc: tuple[int, ...] | None = None,
) -> dict[str, str] | None:
    """``environ`` with :data:`HUGE_PAGES_TUNABLE` added to ``GLIBC_TUNABLES``, where that helps.

    Args:
      environ: the environment (default: this process's).
      thp_path: the file of the kernel's mode (:func:`transparent_huge_page_mode`).
      glibc: the C library's (major, minor) version (default: this process's; None if the
        C library is not glibc).

    Returns:
      A new environment, or None when there is nothing to change: the tunable (any value of
      ``glibc.malloc.hugetlb``) is already set, ``DIFFGEN_HUGE_PAGES=0``, the C library is
      not glibc ≥ 2.35, or the kernel's mode is not ``madvise`` (``always`` gives huge pages
      without advice, ``never`` not at all).
    """
    environ = dict(os.environ if environ is None else environ)
    if environ.get(OPT_OUT_VARIABLE, "").strip() == "0":
        return None
    if any(_is_hugetlb(t) for t in _tunables(environ)):
        return None
    glibc = _glibc_version() if glibc is None else glibc
    if glibc is None or tuple(glibc) < _MIN_GLIBC:
        return None
    if transparent_huge_page_mode(thp_path) != "madvise":
        return None
    return with_huge_pages(environ, True)


def _interactive() -> bool:
    # A restart would lose the session: the interpreter's prompt, IPython or a Jupyter kernel.
    interactive = bool(sys.flags.interactive) or hasattr(sys, "ps1") or "IPython" in sys.modules
    return interactive or not sys.argv or not sys.argv[0]


def restart_with_huge_pages() -> None:
    """Restart this program with :data:`HUGE_PAGES_TUNABLE` in its environment, where that helps.

    Replaces the process (``os.execve``) by the same interpreter with the same command line
    (``sys.orig_argv``) and :func:`huge_page_environment`; returns without doing anything when
    that is None, in an interactive session, and in a program that embeds Python without
    saying how it was started. Call it before any other work, since nothing
    of this process survives: standard output and error are flushed first.
    """
    environ = huge_page_environment()
    # An embedding program may not say how it was started (no interpreter path or
    # sys.orig_argv): there is nothing to re-run.
    if environ is None or _interactive() or not sys.executable or not getattr(sys, "orig_argv", None):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, list(sys.orig_argv), environ)
