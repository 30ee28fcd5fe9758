"""Helpers shared by the subcommands: common options, run files, progress bars, signals.

Usage in a subcommand module::

    from diffgen.cli import _common

    def add_arguments(parser):
        _common.add_common_options(parser)          # --seed, --config, --quiet
        ...

    def run(args):
        cfg = _common.resolve(args, "generate", FIELDS, DEFAULTS)   # command line > --config > defaults
        with _common.sigterm_as_interrupt() as interrupt, _common.progress(total, "generating") as bar:
            for chunk in chunks:
                ...
                interrupt.check()
                bar.advance(k)
        _common.write_effective(output, "generate", cfg)            # <output>.run.toml, atomically

Nothing here imports JAX (``--help`` stays instant).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NoReturn

from diffgen.cli import EXIT_USAGE, UsageError

__all__ = [
    "EventProgress",
    "Interrupt",
    "add_common_options",
    "add_config_option",
    "add_flag",
    "add_quiet_option",
    "add_seed_option",
    "handle_sigterm",
    "not_applicable",
    "one_line_errors",
    "output_directory",
    "parse_overrides",
    "progress",
    "resolve",
    "sigterm_as_interrupt",
    "write_effective",
]


def add_seed_option(parser: argparse.ArgumentParser, default: int = 0, *, what: str = "events") -> None:
    """``--seed N``: the random seed (default None on the parser, so a run file can set it)."""
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        metavar="N",
        help=f"random seed, an integer >= 0; the same seed gives the same {what} (default: {default})",
    )


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """``--config run.toml``: read the subcommand's table of a run file."""
    parser.add_argument(
        "--config",
        default=None,
        metavar="RUN.toml",
        help="run configuration (TOML, table named after the subcommand); command-line options override it. "
        "The effective configuration is written next to every output as <output>.run.toml (default: none)",
    )


def add_quiet_option(parser: argparse.ArgumentParser) -> None:
    """``--quiet``: no progress bars or summaries (errors are still printed)."""
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress bar and no summary; errors are still printed to stderr (default: off)",
    )


def add_common_options(
    parser: argparse.ArgumentParser,
    *,
    seed_default: int = 0,
    seed_what: str = "events",
    no_seed: str | None = None,
) -> None:
    """Add ``--seed``, ``--config`` and ``--quiet``, and make option errors one line.

    Args:
      parser: the subcommand's parser.
      seed_default: the seed used when neither the command line nor the run file sets one.
      seed_what: what the seed fixes, for the help text ("events", "fit", ...).
      no_seed: for a command that draws no random numbers: why it has no ``--seed``
        (said in its ``--help``) instead of adding the option.
    """
    if no_seed is None:
        add_seed_option(parser, seed_default, what=seed_what)
    else:
        not_applicable(parser, "--seed", no_seed)
    add_config_option(parser)
    add_quiet_option(parser)
    one_line_errors(parser)


def one_line_errors(parser: argparse.ArgumentParser) -> None:
    """Report option errors of a subcommand as one line ``<prog>: error: …`` with exit code 2.

    argparse prints the usage before the message; unrecognised arguments are otherwise
    reported by the top-level parser, so the subcommand parser checks for them itself.
    """

    def error(message: str) -> NoReturn:
        parser.exit(EXIT_USAGE, f"{parser.prog}: error: {message} (see `{parser.prog} --help`)\n")

    parse_known_args = parser.parse_known_args

    def parse_known_args_strict(args: Any = None, namespace: Any = None) -> tuple[argparse.Namespace, list[str]]:
        namespace, extras = parse_known_args(args, namespace)
        if extras:
            error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras

    parser.error = error  # type: ignore[method-assign]
    parser.parse_known_args = parse_known_args_strict  # type: ignore[method-assign]


def add_flag(parser: argparse.ArgumentParser, *flags: str, help: str, dest: str | None = None) -> None:
    """An on/off option whose default is None on the parser, so that a run file can set it.

    ``store_true`` would make "not given" indistinguishable from "off", and the command line
    would always override the run file.
    """
    kwargs: dict[str, Any] = {"dest": dest} if dest else {}
    parser.add_argument(*flags, action="store_const", const=True, default=None, help=help, **kwargs)


def not_applicable(parser: argparse.ArgumentParser, option: str, reason: str) -> None:
    """Say in ``--help`` that a common option does not exist for this subcommand, and why.

    Giving the option anyway is an error that repeats the reason.
    """
    note = f"{option} is not an option of this command: {reason}."
    parser.epilog = f"{parser.epilog} {note}" if parser.epilog else note

    class _Refuse(argparse.Action):
        def __call__(self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option_string: Any = None):
            del namespace, values, option_string
            parser.error(note.rstrip("."))

    parser.add_argument(option, nargs="?", action=_Refuse, help=argparse.SUPPRESS, dest=f"_refused_{option.strip('-')}")


def output_directory(path: Any, option: str) -> Any:
    """Create the output directory ``path`` (and its parents) before any work, or raise a one-line error.

    Args:
      path: the directory.
      option: the option or key that named it, for the message.

    Returns:
      the directory as a ``pathlib.Path``.

    Raises:
      UsageError: the path is an existing file, or a parent is a file, or it cannot be created.
    """
    from pathlib import Path

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option}: {str(path)!r} exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"{option}: cannot create the directory {str(path)!r} ({err.strerror})") from None
    return path


def write_effective(outputs: Any, section: str, values: Mapping[str, Any]) -> list[Any]:
    """Write the effective configuration ``{section: values}`` next to every output, atomically.

    Args:
      outputs: one output path or a list of them; each gets ``<output>.run.toml``.
      section: the run-file table (the subcommand name).
      values: every setting actually used (``None`` values are left out, TOML has no null).

    Returns:
      the written paths (``pathlib.Path``).
    """
    from diffgen.config import write_effective_config

    if isinstance(outputs, (str, bytes)) or not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    return [write_effective_config(out, section, values) for out in outputs]


def resolve(
    args: argparse.Namespace,
    section: str,
    fields: Mapping[str, Any],
    defaults: Mapping[str, Any],
    *,
    dest: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The effective settings: command line > run file (``args.config``) > defaults.

    Args:
      args: parsed arguments; options left at ``None`` count as not given.
      section: the run-file table to read (the subcommand name).
      fields: :class:`diffgen.config.Field` per key, to check the run file.
      defaults: value of every key when neither the command line nor the file sets it.
      dest: argparse destination of a key when it differs from the key.

    Returns:
      dict with every key of ``defaults`` (and any other key the file sets).
    """
    from diffgen.config import check_table, load_section

    from_file = load_section(getattr(args, "config", None), section, fields)
    out = {**defaults, **from_file}
    for key in set(defaults) | set(fields):
        value = getattr(args, (dest or {}).get(key, key), None)
        if value is not None:
            out[key] = value
    # Command-line values pass the same checks as file values.
    check_table({k: v for k, v in out.items() if k in fields and v is not None}, fields, f"diffgen {section}")
    return out


def parse_overrides(items: list[str] | None, option: str = "--param") -> dict[str, dict[str, float]]:
    """Parse ``STAGE.NAME=VALUE`` strings into ``{stage: {name: value}}``.

    Raises:
      UsageError: malformed item or non-numeric value.
    """
    out: dict[str, dict[str, float]] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        stage, dot, name = key.strip().rpartition(".")
        if not sep or not dot or not stage or not name:
            raise UsageError(f"{option} must look like STAGE.NAME=VALUE (e.g. source.m_z=91.19), got {item!r}")
        try:
            number = float(value)
        except ValueError:
            raise UsageError(f"{option} {key}: value must be a number, got {value!r}") from None
        out.setdefault(stage, {})[name] = number
    return out


def handle_sigterm() -> None:
    """Turn SIGTERM into ``KeyboardInterrupt``, so writers abort and leave no partial output.

    The CLI prints ``interrupted`` and exits with code 130. Only installable from the main thread.
    """

    def _raise(signum: int, frame: Any) -> None:
        del signum, frame
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise)


class Interrupt:
    """The state :func:`sigterm_as_interrupt` yields: which signal arrived, if any.

    Python raises the ``KeyboardInterrupt`` of a signal handler wherever the main thread
    happens to be, and where exceptions are ignored (a garbage-collection callback, a
    ``__del__``) it is printed and lost, so the run would go on. Long loops therefore call
    :meth:`check` at safe points (after each chunk, before publishing an output): it raises
    again if a signal arrived, whether or not the first exception got through.

    Attributes:
      signum: the number of the signal received, or None.
    """

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        """Whether SIGTERM or SIGINT arrived."""
        return self.signum is not None

    def check(self) -> None:
        """Raise ``KeyboardInterrupt`` if SIGTERM or SIGINT arrived."""
        if self.signum is not None:
            raise KeyboardInterrupt


@contextmanager
def sigterm_as_interrupt() -> Iterator[Interrupt]:
    """Within the block, SIGTERM (and SIGINT) raise ``KeyboardInterrupt``; restored after.

    Writers then abort and the CLI exits with 130. Yields an :class:`Interrupt`; call its
    ``check()`` between chunks so that an interrupt swallowed where exceptions are ignored
    still stops the run. Installs nothing outside the main thread (signal handlers can only
    be set there); ``check()`` then never raises.
    """
    state = Interrupt()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def _raise(signum: int, frame: Any) -> None:
        del frame
        state.signum = signum
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, _raise) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield state
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class EventProgress:
    """A rich progress bar with events/s that appears only if the step lasts over ``delay`` seconds.

    Args:
      total: number of items (events).
      description: what is being done.
      quiet: never show anything.
      unit: name of the items in the rate column.
      delay: seconds before the bar appears (short steps stay silent).
    """

    def __init__(self, total: int, description: str, *, quiet: bool = False, unit: str = "events", delay: float = 1.0):
        self.total = int(total)
        self.description = description
        self.quiet = quiet or not sys.stderr
        self.unit = unit
        self.delay = delay
        self.done = 0
        self._start = time.perf_counter()
        self._progress: Any = None
        self._task: Any = None
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def _show(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        unit, start = self.unit, self._start

        class _Rate(TextColumn):
            def render(self, task: Any) -> Any:
                elapsed = time.perf_counter() - start
                rate = task.completed / elapsed if elapsed > 0 else 0.0
                # Slow steps (sections, files) would read "0 sections/s" with a fixed format.
                self.text_format = f"{rate:,.0f} {unit}/s" if rate >= 100 else f"{rate:.3g} {unit}/s"
                return super().render(task)

        with self._lock:
            if self._progress is not None or self.quiet:
                return
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                _Rate(""),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._task = self._progress.add_task(self.description, total=self.total, completed=self.done)
            self._progress.start()

    def __enter__(self) -> EventProgress:
        if not self.quiet:
            self._timer = threading.Timer(self.delay, self._show)
            self._timer.daemon = True
            self._timer.start()
        return self

    def advance(self, n: int) -> None:
        """Record ``n`` more items done."""
        self.done += int(n)
        with self._lock:
            if self._progress is not None:
                self._progress.update(self._task, completed=self.done)

    @property
    def rate(self) -> float:
        """Items per second so far."""
        elapsed = time.perf_counter() - self._start
        return self.done / elapsed if elapsed > 0 else 0.0

    @property
    def elapsed(self) -> float:
        """Seconds since the step started."""
        return time.perf_counter() - self._start

    def __exit__(self, *exc: Any) -> None:
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            if self._progress is not None:
                self._progress.stop()


@contextmanager
def progress(total: int, description: str, *, quiet: bool = False, unit: str = "events") -> Iterator[EventProgress]:
    """Context manager form of :class:`EventProgress`."""
    with EventProgress(total, description, quiet=quiet, unit=unit) as bar:
        yield bar
