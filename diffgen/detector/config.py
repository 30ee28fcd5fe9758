"""Detector configuration: a validated description of a parametric detector, and its TOML format.

A detector has a tracker (charged particles) and one or two calorimeters (neutral
particles), each with a resolution model and an acceptance × efficiency block, plus the
acceptance mode (soft or stochastic) and the slope of the soft acceptance edges. The TOML
format (read with the standard library's ``tomllib``) mirrors :meth:`DetectorConfig.to_dict`::

    name = "LEP-like"
    description = "..."
    mode = "soft"            # "soft" | "stochastic"
    slope = 50.0             # acceptance edge steepness (GeV⁻¹ for pT); inf = hard cut

    [tracker]                # σ(pT)/pT = a ⊕ b·pT; η, φ Gaussian
    a = 0.005
    b = 0.0006               # GeV⁻¹
    sigma_eta = 0.001
    sigma_phi = 0.001        # rad
    [tracker.acceptance]     # |η| < eta_max, pT > pt_min, efficiency curve
    eta_max = 1.83
    pt_min = 0.2             # GeV
    plateau = 0.98
    pt_50 = 0.15             # optional turn-on (with pt_width); eta_50/eta_width optional

    [ecal]                   # σ(E)/E = a/√E ⊕ b ⊕ c/E
    select = "em_neutral"
    a = 0.18                 # GeV^½
    b = 0.009
    c = 0.0                  # GeV
    [ecal.acceptance]
    ...
    [hcal]                   # optional second calorimeter, same keys
    ...

Unknown keys, wrong types, negative resolutions, ``eta_max ≤ 0`` and efficiencies outside
(0, 1] are rejected with a ``ValueError``/``TypeError`` naming the dotted key
(e.g. ``tracker.acceptance.eta_max``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from diffgen.detector.layers import SELECTIONS

__all__ = ["SHIPPED", "DetectorConfig", "Section", "load_config"]

#: Detectors shipped with the package: name → TOML file in ``diffgen/data/detectors``.
SHIPPED = {"lep_like": "lep_like.toml", "toy": "toy.toml"}

_TRACKER_KEYS = ("a", "b", "sigma_eta", "sigma_phi")
_CALO_KEYS = ("a", "b", "c")
_ACCEPTANCE_KEYS = ("eta_max", "pt_min", "plateau", "pt_50", "pt_width", "eta_50", "eta_width")
_CALO_DEFAULT_SELECT = {"ecal": "em_neutral", "hcal": "hadronic_neutral"}
_TOP_KEYS = ("name", "description", "mode", "slope", "tracker", "ecal", "hcal")


@dataclasses.dataclass(frozen=True)
class Section:
    """One subsystem: ``kind`` ("tracker" or "calorimeter"), the particles it measures
    (a name in ``SELECTIONS``), its resolution parameters and its acceptance block."""

    kind: str
    select: str
    resolution: Mapping[str, float]
    acceptance: Mapping[str, float]

    def to_dict(self, name: str) -> dict[str, Any]:
        del name
        out: dict[str, Any] = {"select": self.select}
        out.update(self.resolution)
        out["acceptance"] = dict(self.acceptance)
        return out


@dataclasses.dataclass(frozen=True)
class DetectorConfig:
    """A validated detector description (build it with :meth:`from_dict`/:meth:`from_toml`).

    Attributes:
      name: human-readable name.
      description: free text (sources of the numbers).
      mode: ``"soft"`` or ``"stochastic"`` acceptance × efficiency (see ``efficiency``).
      slope: steepness of the soft acceptance edges (> 0; ``inf`` = hard cut).
      sections: ``{"tracker": Section, "ecal": Section[, "hcal": Section]}``.
    """

    name: str
    description: str
    mode: str
    slope: float
    sections: Mapping[str, Section]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, origin: str = "detector config") -> DetectorConfig:
        """Validate a nested mapping (the parsed TOML) and build the configuration.

        Args:
          data: mapping with the keys described in the module docstring.
          origin: name used in error messages (e.g. the file name).

        Returns:
          ``DetectorConfig``.

        Raises:
          ValueError: a key is unknown or missing, or a value is out of range; the message
            names the offending dotted key.
          TypeError: a value has the wrong type (e.g. a string where a number is expected);
            the message names the offending dotted key.
        """
        _check_keys(data, _TOP_KEYS, "", origin)
        for required in ("tracker", "ecal"):
            if required not in data:
                raise ValueError(f"{origin}: missing required table [{required}]")
        name = _string(data, "name", origin, default="detector")
        description = _string(data, "description", origin, default="")
        mode = _string(data, "mode", origin, default="soft")
        if mode not in ("soft", "stochastic"):
            raise ValueError(f"{origin}: mode must be 'soft' or 'stochastic', got {mode!r}")
        slope = _number(data, "slope", "slope", origin, default=50.0, allow_inf=True)
        if not slope > 0:
            raise ValueError(f"{origin}: slope must be > 0 (inf for a hard cut), got {slope}")
        sections = {}
        for key in ("tracker", "ecal", "hcal"):
            if key in data:
                sections[key] = _section(data[key], key, origin)
        return cls(name=name, description=description, mode=mode, slope=slope, sections=sections)

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> DetectorConfig:
        """Read and validate a TOML detector file."""
        path = Path(path)
        with path.open("rb") as fh:
            try:
                data = tomllib.load(fh)
            except tomllib.TOMLDecodeError as err:
                raise ValueError(f"{path.name}: not valid TOML: {err}") from err
        return cls.from_dict(data, origin=path.name)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as a nested dict (the TOML layout)."""
        out: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "mode": self.mode,
            "slope": self.slope,
        }
        for key, section in self.sections.items():
            out[key] = section.to_dict(key)
        return out

    def to_toml(self, path: str | os.PathLike[str]) -> None:
        """Write the configuration as TOML, atomically (temp file + ``os.replace``)."""
        import tomli_w

        path = Path(path)
        text = tomli_w.dumps(self.to_dict())
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def replace(self, **changes: Any) -> DetectorConfig:
        """A copy with top-level fields replaced (re-validated)."""
        data = self.to_dict()
        data.update(changes)
        return DetectorConfig.from_dict(data, origin=self.name)


def load_config(name_or_path: str | os.PathLike[str]) -> DetectorConfig:
    """Load a shipped detector by name (``"lep_like"``, ``"toy"``) or a TOML file by path.

    Args:
      name_or_path: name of a shipped detector (a key of ``SHIPPED``, e.g. ``"lep_like"``)
        or the path of a TOML detector file.

    Returns:
      The validated ``DetectorConfig``.

    Raises:
      ValueError: ``name_or_path`` is neither a shipped detector nor an existing file, or
        the file is not valid TOML or not a valid detector description.
    """
    if isinstance(name_or_path, str) and name_or_path in SHIPPED:
        ref = resources.files("diffgen") / "data" / "detectors" / SHIPPED[name_or_path]
        with resources.as_file(ref) as path:
            return DetectorConfig.from_toml(path)
    path = Path(name_or_path)
    if not path.is_file():
        raise ValueError(
            f"load_config: {str(name_or_path)!r} is neither a shipped detector {sorted(SHIPPED)} nor a TOML file"
        )
    return DetectorConfig.from_toml(path)


# --------------------------------------------------------------------------- validation


def _check_keys(table: Any, allowed: tuple[str, ...], prefix: str, origin: str) -> None:
    if not isinstance(table, Mapping):
        raise TypeError(
            f"{origin}: {prefix.rstrip('.') or 'the top level'} must be a table, got {type(table).__name__}"
        )
    for key in table:
        if key not in allowed:
            raise ValueError(f"{origin}: unknown key {prefix}{key!r} (allowed: {', '.join(allowed)})")


def _string(table: Mapping[str, Any], key: str, origin: str, default: str) -> str:
    value = table.get(key, default)
    if not isinstance(value, str):
        raise TypeError(f"{origin}: {key} must be a string, got {type(value).__name__}")
    return value


def _number(
    table: Mapping[str, Any], key: str, dotted: str, origin: str, default: float | None = None, allow_inf: bool = False
) -> float:
    if key not in table:
        if default is None:
            raise ValueError(f"{origin}: missing required key {dotted}")
        return default
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{origin}: {dotted} must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ValueError(f"{origin}: {dotted} must be finite, got {value}")
    return value


def _section(table: Any, key: str, origin: str) -> Section:
    kind = "tracker" if key == "tracker" else "calorimeter"
    res_keys = _TRACKER_KEYS if kind == "tracker" else _CALO_KEYS
    _check_keys(table, (*res_keys, "select", "acceptance"), f"{key}.", origin)
    default_select = "charged" if kind == "tracker" else _CALO_DEFAULT_SELECT[key]
    select = _string(table, "select", origin, default=default_select)
    if select not in SELECTIONS:
        raise ValueError(f"{origin}: {key}.select must be one of {sorted(SELECTIONS)}, got {select!r}")
    resolution = {}
    for name in res_keys:
        value = _number(table, name, f"{key}.{name}", origin)
        if value < 0:
            raise ValueError(f"{origin}: {key}.{name} is a resolution and must be >= 0, got {value}")
        resolution[name] = value
    acc_table = table.get("acceptance")
    if acc_table is None:
        raise ValueError(f"{origin}: missing required table [{key}.acceptance]")
    prefix = f"{key}.acceptance."
    _check_keys(acc_table, _ACCEPTANCE_KEYS, prefix, origin)
    acceptance = {
        "eta_max": _number(acc_table, "eta_max", prefix + "eta_max", origin),
        "pt_min": _number(acc_table, "pt_min", prefix + "pt_min", origin, default=0.0),
        "plateau": _number(acc_table, "plateau", prefix + "plateau", origin, default=1.0),
    }
    if acceptance["eta_max"] <= 0:
        raise ValueError(f"{origin}: {prefix}eta_max must be > 0, got {acceptance['eta_max']}")
    if acceptance["pt_min"] < 0:
        raise ValueError(f"{origin}: {prefix}pt_min must be >= 0 GeV, got {acceptance['pt_min']}")
    if not 0 < acceptance["plateau"] <= 1:
        raise ValueError(
            f"{origin}: {prefix}plateau is an efficiency and must be in (0, 1], got {acceptance['plateau']}"
        )
    for label in ("pt", "eta"):
        point, width = f"{label}_50", f"{label}_width"
        if (point in acc_table) != (width in acc_table):
            raise ValueError(f"{origin}: give both {prefix}{point} and {prefix}{width} or neither")
        if point in acc_table:
            acceptance[point] = _number(acc_table, point, prefix + point, origin)
            acceptance[width] = _number(acc_table, width, prefix + width, origin)
            if acceptance[point] < 0:
                raise ValueError(f"{origin}: {prefix}{point} must be >= 0, got {acceptance[point]}")
            if acceptance[width] <= 0:
                raise ValueError(f"{origin}: {prefix}{width} must be > 0, got {acceptance[width]}")
    return Section(kind=kind, select=select, resolution=resolution, acceptance=acceptance)
