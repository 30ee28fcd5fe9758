"""Run configurations: TOML files that make a run reproducible.

A run file has one table per subcommand (``[generate]``, ``[fit]``, …); a subcommand reads
its own table, checks every key (unknown keys and wrong types are errors that name the
key and list the allowed ones) and lets command-line options override the file. After a
run, the *effective* configuration — every value actually used, defaults included — is
written next to each output as ``<output>.run.toml`` (with tomli-w), so
``diffgen <command> --config <output>.run.toml`` repeats the run.

Example ``run.toml``::

    [generate]
    process = "ee_to_mumu"
    sqrt_s = 91.1876       # GeV
    n = 100000
    output = "mumu.lhe"
    seed = 7

    [generate.params.source]
    m_z = 91.19            # GeV
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomli_w

from diffgen.io._atomic import atomic_write
from diffgen.io._base import jsonable

__all__ = [
    "SECTIONS",
    "Field",
    "GENERATE_FIELDS",
    "PLOT_FIELDS",
    "check_table",
    "effective_config_path",
    "load_run_config",
    "load_section",
    "write_effective_config",
]

#: Top-level tables a run file may contain (one per subcommand).
SECTIONS = ("generate", "fit", "unfold", "plot", "train-hadronization", "bench", "demo")


@dataclasses.dataclass(frozen=True)
class Field:
    """One allowed key of a configuration table.

    Attributes:
      types: accepted Python types after TOML parsing (``int`` is accepted for ``float``).
      help: meaning with unit, shown in error messages and docs.
      minimum: smallest allowed value for numbers (inclusive), or None.
      choices: allowed values, or None.
    """

    types: tuple[type, ...]
    help: str = ""
    minimum: float | None = None
    choices: tuple[Any, ...] | None = None


#: Keys of the ``[generate]`` table (``diffgen generate``).
GENERATE_FIELDS: dict[str, Field] = {
    "process": Field((str,), "hard process name (see `diffgen generate --help`)"),
    "sqrt_s": Field((float,), "centre-of-mass energy √s in GeV", minimum=0.0),
    "n": Field((int,), "number of events", minimum=1),
    "layers": Field((list,), "layers after the hard process, in order, e.g. ['shower', 'hadronization', 'detector']"),
    "detector": Field((str,), "detector used by the 'detector' layer: smearing, lep_like, toy or a TOML path"),
    "output": Field((str,), "output event file"),
    "format": Field((str,), "output format", choices=("lhe", "hepmc3", "parquet")),
    "seed": Field((int,), "random seed", minimum=0),
    "chunk_size": Field((int,), "events generated and written per chunk", minimum=1),
    "workers": Field((int,), "chunks generated at once on host threads (the events do not depend on it)", minimum=1),
    "dtype": Field((str,), "floating dtype", choices=("float32", "float64")),
    "params": Field((dict,), "parameter overrides: {stage: {name: value}}"),
    "alpha_s_variations": Field((list,), "αs(m_Z) values of the shower reweighting weights rwgt/alpha_s_mz=<value>"),
}


#: Keys of the ``[plot]`` table (``diffgen plot``).
PLOT_FIELDS: dict[str, Field] = {
    "files": Field((list,), "event files (LHE or parquet), one histogram each"),
    "labels": Field((list,), "legend label of each file"),
    "observable": Field((str,), "observable name (see `diffgen plot --help`)"),
    "bins": Field((int,), "number of bins", minimum=1),
    "edges": Field((list,), "bin edges (instead of bins and range)"),
    "range": Field((list,), "histogram range [low, high] in the observable's unit"),
    "norm": Field((str,), "normalisation", choices=("xsec", "density", "fraction", "sum")),
    "data": Field((str,), "CSV file with data points"),
    "data_x": Field((str,), "CSV column of the data x values"),
    "data_y": Field((str,), "CSV column of the data values"),
    "data_yerr": Field((str,), "CSV column of the data errors"),
    "data_label": Field((str,), "legend label of the data"),
    "ratio": Field((bool,), "draw the ratio panel"),
    "logx": Field((bool,), "logarithmic x axis"),
    "logy": Field((bool,), "logarithmic y axis"),
    "xlabel": Field((str,), "x-axis label"),
    "ylabel": Field((str,), "y-axis label"),
    "title": Field((str,), "label above the top-right corner"),
    "output": Field((str,), "output image (.png or .pdf)"),
    "chunk_size": Field((int,), "events read per chunk", minimum=1),
}


def check_table(table: Any, fields: Mapping[str, Field], where: str) -> dict[str, Any]:
    """Validate a configuration table against ``fields``.

    Args:
      table: the parsed TOML table.
      fields: allowed keys.
      where: where the table comes from (file and section), for messages.

    Returns:
      the table as a dict, with ints converted to float where a float is expected.

    Raises:
      ValueError: unknown key, wrong type, value below the minimum or not among the choices.
    """
    if not isinstance(table, Mapping):
        raise ValueError(f"{where}: expected a table, got {type(table).__name__}")
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(fields)}")
    out: dict[str, Any] = {}
    for key, value in table.items():
        field = fields[key]
        if float in field.types and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if (isinstance(value, bool) and bool not in field.types) or not isinstance(value, field.types):
            names = "/".join("table" if t is dict else "array" if t is list else t.__name__ for t in field.types)
            raise ValueError(f"{where}: {key} must be {names} ({field.help}), got {value!r}")
        if field.minimum is not None and isinstance(value, (int, float)):
            if not (math.isfinite(value) and value >= field.minimum):
                raise ValueError(f"{where}: {key} must be >= {field.minimum} ({field.help}), got {value!r}")
        if field.choices is not None and value not in field.choices:
            raise ValueError(f"{where}: {key} must be one of {list(field.choices)}, got {value!r}")
        out[key] = value
    return out


def load_run_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse a run file and check its top-level tables are subcommand names.

    Args:
      path: the TOML run file.

    Returns:
      the parsed TOML document as a dict of tables keyed by subcommand name.

    Raises:
      FileNotFoundError: the file does not exist.
      ValueError: invalid TOML or unknown top-level key.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"configuration file {str(path)!r} does not exist")
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{str(path)!r} is not valid TOML: {err}") from None
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ValueError(f"{str(path)!r}: unknown top-level key(s) {unknown}; allowed tables: {list(SECTIONS)}")
    return data


def load_section(path: str | os.PathLike[str] | None, section: str, fields: Mapping[str, Field]) -> dict[str, Any]:
    """The checked table ``section`` of the run file ``path``.

    Args:
      path: the TOML run file, or None.
      section: name of the table (a subcommand name).
      fields: allowed keys of the table.

    Returns:
      the checked table as a dict (see ``check_table``); empty if ``path`` is None or
      the file lacks the table.

    Raises:
      FileNotFoundError: the file does not exist.
      ValueError: invalid TOML, unknown top-level key or an invalid table.
    """
    if path is None:
        return {}
    data = load_run_config(path)
    return check_table(data.get(section, {}), fields, f"{path} [{section}]")


def effective_config_path(output: str | os.PathLike[str]) -> Path:
    """Where the effective configuration of an output is written: ``<output>.run.toml``."""
    output = Path(output)
    return output.with_name(output.name + ".run.toml")


def write_effective_config(output: str | os.PathLike[str], section: str, values: Mapping[str, Any]) -> Path:
    """Write ``{section: values}`` as TOML next to ``output`` atomically; returns its path.

    ``None`` values are left out (TOML has no null); arrays become lists.
    """
    if section not in SECTIONS:
        raise ValueError(f"write_effective_config: section must be one of {list(SECTIONS)}, got {section!r}")

    def drop_none(x: Any) -> Any:
        if isinstance(x, Mapping):
            return {k: drop_none(v) for k, v in x.items() if v is not None}
        return x

    path = effective_config_path(output)
    text = tomli_w.dumps({section: drop_none(jsonable(dict(values)))})
    with atomic_write(path) as fh:
        fh.write(text)
    return path
