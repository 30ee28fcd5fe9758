"""The ``diffgen`` command line.

Each subcommand lives in its own module ``diffgen/cli/<name>.py`` and is discovered
automatically. A subcommand module defines

- ``NAME``: the subcommand (``"generate"``),
- ``HELP``: one line for ``diffgen --help``,
- ``add_arguments(parser)``: its options (every option documents units and default),
- ``run(args) -> int``: the work; the exit code.

Module top levels must stay cheap (no JAX import) so that ``--help`` is instant. User
errors (bad options, unreadable files, out-of-range physics parameters) are raised as
:class:`UsageError` or ``ValueError`` and reported as one line with exit code 2, never
as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType

__all__ = ["UsageError", "build_parser", "main"]

EXIT_USAGE = 2


class UsageError(Exception):
    """A user error (bad option, file or value) reported without a traceback."""


def _subcommand_modules() -> list[ModuleType]:
    modules = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if all(hasattr(module, attr) for attr in ("NAME", "HELP", "add_arguments", "run")):
            modules.append(module)
    return modules


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every discovered subcommand."""
    from diffgen import __version__

    parser = argparse.ArgumentParser(
        prog="diffgen",
        description="Differentiable particle-physics event generation in JAX.",
    )
    parser.add_argument("--version", action="version", version=f"diffgen {__version__}")
    # an unknown subcommand or option is one line too, like the subcommands' own errors
    from diffgen.cli._common import one_line_errors

    one_line_errors(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _subcommand_modules():
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``diffgen`` console script.

    Args:
      argv: command-line arguments without the program name; None reads ``sys.argv[1:]``,
        and then a command first restarts the program with transparent huge pages where
        that helps (:func:`diffgen.host_memory.restart_with_huge_pages`).

    Returns:
      the exit code: 0 on success, ``EXIT_USAGE`` for usage, value and file errors,
      130 when interrupted.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return EXIT_USAGE
    if argv is None:
        # Run from the command line: XLA's per-call buffers with huge pages (diffgen.host_memory).
        from diffgen.host_memory import restart_with_huge_pages

        restart_with_huge_pages()
    try:
        return int(args._run(args) or 0)
    except (UsageError, ValueError, FileNotFoundError, IsADirectoryError, PermissionError) as err:
        prefix = f"diffgen {args.command}: "
        message = str(err).removeprefix(prefix)  # some checks already name the command
        print(f"{prefix}error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"diffgen {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
