"""Atomic output files: write to a hidden temporary file, rename on success.

A run that is interrupted (exception, Ctrl-C, SIGTERM, SIGKILL) never leaves a file under
the final name: either the complete file appears at once (``os.replace`` is atomic on one
file system) or only a hidden ``.<name>.partial-<pid>`` file, which no reader mistakes for
a finished output (it is removed on exceptions; only SIGKILL can leave it behind).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["AtomicFile", "atomic_write", "partial_path"]


def partial_path(path: str | os.PathLike[str]) -> Path:
    """The temporary name used while ``path`` is being written (same directory, hidden)."""
    path = Path(path)
    return path.with_name(f".{path.name}.partial-{os.getpid()}")


def _check_target(path: Path) -> None:
    if path.is_dir():
        raise IsADirectoryError(f"output path {str(path)!r} is a directory; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(f"output directory {str(parent)!r} does not exist")


class AtomicFile:
    """A file opened under a temporary name and renamed to ``path`` by :meth:`commit`.

    Args:
      path: final file name.
      mode: ``"w"`` (text, UTF-8) or ``"wb"`` (binary).

    ``commit()`` flushes, fsyncs and renames; ``abort()`` (or leaving a ``with`` block by
    an exception) closes and deletes the temporary file.
    """

    def __init__(self, path: str | os.PathLike[str], mode: str = "w") -> None:
        if mode not in ("w", "wb"):
            raise ValueError(f"AtomicFile: mode must be 'w' or 'wb', got {mode!r}")
        self.path = Path(path)
        _check_target(self.path)
        self.tmp_path = partial_path(self.path)
        self.file: IO[Any] = open(self.tmp_path, mode, encoding=None if "b" in mode else "utf-8")
        self.closed = False

    def commit(self) -> Path:
        """Flush, fsync and rename the temporary file to the final name; returns the path."""
        if self.closed:
            raise ValueError(f"AtomicFile: {str(self.path)!r} is already closed")
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.tmp_path, self.path)
        self.closed = True
        return self.path

    def abort(self) -> None:
        """Close and delete the temporary file (no output appears)."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp_path)

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Context manager yielding a file object whose content appears at ``path`` only on success.

    Args:
      path: final file name.
      mode: ``"w"`` (text, UTF-8) or ``"wb"`` (binary).

    Yields:
      the open temporary file; it is renamed to ``path`` when the block ends without an
      exception and deleted otherwise.

    Raises:
      ValueError: ``mode`` is not ``"w"`` or ``"wb"``.
      IsADirectoryError: ``path`` is a directory.
      FileNotFoundError: the directory of ``path`` does not exist.
    """
    f = AtomicFile(path, mode)
    try:
        yield f.file
    except BaseException:
        f.abort()
        raise
    f.commit()
