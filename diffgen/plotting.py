"""Histograms of observables with Monte Carlo errors, data points, ratio panels — HEP-style plots.

Built on ``hist`` (weighted histograms: Σw and Σw² per bin) and ``mplhep`` (step histograms,
experiment-style labels); figures are plain ``matplotlib.figure.Figure`` objects (no pyplot
state), saved atomically as PNG or PDF.

Normalisations of a weighted sample of N events with weights w_i in pb (σ = Σw/N):

- ``"xsec"``: dσ/dx = Σ_{i∈bin} w_i / (N Δx), in pb per unit of x; MC error
  sqrt(Σ w_i²) / (N Δx).
- ``"density"``: (1/σ) dσ/dx = Σ_{i∈bin} w_i / (Σ_all w Δx), integrates to one over the
  range (the normalisation of the LEP event-shape data); the error neglects the
  (small) correlation with the total.
- ``"fraction"``: Σ_{i∈bin} w_i / Σ_all w, the fraction of σ per bin (e.g. the probability
  P(N) of a multiplicity bin).
- ``"sum"``: Σ_{i∈bin} w_i per bin (no division).

Example::

    from diffgen import plotting
    h = plotting.histogram(cos_theta, weights, bins=20, range=(-1, 1), norm="xsec")
    data = plotting.read_data_csv("aleph1996_1minusT_charged_91GeV.csv")
    fig = plotting.plot_histograms({"diffgen": h}, data=data, ratio=True, logy=True,
                                   xlabel="cos θ", ylabel="dσ/dcos θ [pb]")
    plotting.save(fig, "costheta.pdf")
"""

from __future__ import annotations

import csv
import dataclasses
import io as _io
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "NORMS",
    "OBSERVABLES",
    "DataPoints",
    "HistogramFiller",
    "Observable",
    "compute_observable",
    "histogram",
    "histogram_from_files",
    "plot_histograms",
    "read_data_csv",
    "save",
]

NORMS = ("xsec", "density", "fraction", "sum")


# ---------------------------------------------------------------------------- observables


@dataclasses.dataclass(frozen=True)
class Observable:
    """A named observable computed from events on the host.

    Attributes:
      fn: ``fn(data, meta) -> (values, weights_index)``; ``data`` is ``Events.to_numpy()``,
        ``meta`` the file metadata. Returns values [N] (one per event) or [N, P] with the
        event mask applied by the caller (one per particle).
      label: axis label (with unit).
      per_particle: True if ``fn`` returns [N, P] values.
      range: default histogram range, or None (from the data).
    """

    fn: Callable[[Mapping[str, np.ndarray], Mapping[str, Any]], np.ndarray]
    label: str
    per_particle: bool = False
    range: tuple[float, float] | None = None


def _p3(d: Mapping[str, np.ndarray]) -> np.ndarray:
    return np.asarray(d["p"], np.float64)[..., 1:]


def _first_positive(d: Mapping[str, np.ndarray]) -> np.ndarray:
    """Index of the first real particle with pid > 0 in each event (the fermion of f f̄)."""
    ok = d["mask"] & (d["pid"] > 0)
    return np.argmax(ok, axis=1)


def _cos_theta(d: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> np.ndarray:
    del meta
    i = _first_positive(d)
    p3 = _p3(d)[np.arange(len(i)), i]
    norm = np.linalg.norm(p3, axis=-1)
    return np.divide(p3[:, 2], norm, out=np.zeros_like(norm), where=norm > 0)


def _mass(d: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> np.ndarray:
    del meta
    p = np.where(d["mask"][..., None], np.asarray(d["p"], np.float64), 0.0).sum(axis=1)
    return np.sqrt(np.maximum(p[:, 0] ** 2 - np.sum(p[:, 1:] ** 2, axis=-1), 0.0))


def _multiplicity(d: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> np.ndarray:
    del meta
    return d["mask"].sum(axis=1).astype(np.float64)


def _n_charged(d: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> np.ndarray:
    del meta
    from diffgen.detector.pdg import is_charged

    return (d["mask"] & np.asarray(is_charged(d["pid"]))).sum(axis=1).astype(np.float64)


def _pt(d: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> np.ndarray:
    del meta
    return np.hypot(_p3(d)[..., 0], _p3(d)[..., 1])


def _energy(d: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> np.ndarray:
    del meta
    return np.asarray(d["p"], np.float64)[..., 0]


def _eta(d: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> np.ndarray:
    del meta
    p3 = _p3(d)
    pt = np.hypot(p3[..., 0], p3[..., 1])
    # η = asinh(pz/pT); particles along the beam (pT = 0) get 0 instead of ±inf.
    return np.arcsinh(np.divide(p3[..., 2], pt, out=np.zeros_like(pt), where=pt > 0))


def _xp(d: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> np.ndarray:
    sqrt_s = meta.get("sqrt_s")
    if sqrt_s is None:
        raise ValueError("observable xp = |p|/(√s/2) needs 'sqrt_s' in the file metadata")
    return np.linalg.norm(_p3(d), axis=-1) / (float(sqrt_s) / 2)


def _one_minus_thrust(d: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> np.ndarray:
    del meta
    from diffgen.core import Events
    from diffgen.observables import thrust

    return 1.0 - np.asarray(thrust(Events.from_numpy(d)), np.float64)


#: Built-in observables; names of functions in ``diffgen.observables`` (Events -> [N]) and
#: ``extra/<name>`` (a per-event array stored with the events) work too.
OBSERVABLES: dict[str, Observable] = {
    "cos_theta": Observable(_cos_theta, r"$\cos\theta$ of the fermion", range=(-1.0, 1.0)),
    "mass": Observable(_mass, r"invariant mass of the final state $m$ [GeV]"),
    "multiplicity": Observable(_multiplicity, r"multiplicity $N$"),
    "n_charged": Observable(_n_charged, r"charged multiplicity $N_{\mathrm{ch}}$"),
    "pt": Observable(_pt, r"particle $p_{\mathrm{T}}$ [GeV]", per_particle=True),
    "energy": Observable(_energy, r"particle energy $E$ [GeV]", per_particle=True),
    "eta": Observable(_eta, r"particle pseudorapidity $\eta$", per_particle=True),
    "one_minus_thrust": Observable(_one_minus_thrust, r"$1 - T$ (thrust)", range=(0.0, 0.5)),
    "xp": Observable(_xp, r"scaled momentum $x_p = 2|\vec p|/\sqrt{s}$", per_particle=True, range=(0.0, 1.0)),
}


def _lookup(name: str) -> Observable:
    if name in OBSERVABLES:
        return OBSERVABLES[name]
    if name.startswith("extra/"):
        key = name[len("extra/") :]

        def extra(d: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> np.ndarray:
            del meta
            if f"extra/{key}" not in d:
                raise ValueError(f"observable {name!r}: the events have no extra array {key!r}")
            return np.asarray(d[f"extra/{key}"], np.float64)

        return Observable(extra, key)
    try:
        import diffgen.observables as obs_module
    except ImportError:
        obs_module = None
    fn = getattr(obs_module, name, None) if obs_module is not None else None
    if callable(fn):

        def from_module(d: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> np.ndarray:
            del meta
            from diffgen.core import Events

            return np.asarray(fn(Events.from_numpy(d)), np.float64)

        return Observable(from_module, name)
    raise ValueError(
        f"unknown observable {name!r}; built in: {', '.join(OBSERVABLES)}; also extra/<name> and the "
        "functions of diffgen.observables"
    )


def compute_observable(
    name: str, data: Mapping[str, np.ndarray], meta: Mapping[str, Any] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Values of an observable and the matching event weights.

    Args:
      name: a key of :data:`OBSERVABLES`, ``extra/<name>`` or a ``diffgen.observables`` function.
      data: ``Events.to_numpy()`` of a chunk.
      meta: file metadata (``sqrt_s`` for ``xp``).

    Returns:
      ``(values, weights)``, both 1-D: one entry per event, or per real particle (the
      particle carries its event's weight) for per-particle observables.
    """
    obs = _lookup(name)
    values = np.asarray(obs.fn(data, meta or {}), np.float64)
    weight = np.asarray(data["weight"], np.float64)
    if obs.per_particle:
        mask = np.asarray(data["mask"], bool)
        return values[mask], np.broadcast_to(weight[:, None], mask.shape)[mask]
    return values.reshape(len(weight), -1)[:, 0] if values.ndim > 1 else values, weight


# ---------------------------------------------------------------------------- histograms


def _axis(bins: int | Sequence[float] | np.ndarray, range: tuple[float, float] | None, label: str = "") -> Any:
    import hist

    if isinstance(bins, (int, np.integer)):
        if int(bins) < 1:
            raise ValueError(f"bins must be >= 1 or a sequence of edges, got {bins}")
        if range is None:
            raise ValueError("range=(low, high) is needed with an integer number of bins")
        lo, hi = float(range[0]), float(range[1])
        if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
            raise ValueError(f"range must be finite with high > low, got {range}")
        return hist.axis.Regular(int(bins), lo, hi, label=label)
    edges = np.asarray(bins, np.float64)
    if edges.ndim != 1 or edges.size < 2 or not np.all(np.diff(edges) > 0) or not np.all(np.isfinite(edges)):
        raise ValueError("bins given as edges must be a finite, strictly increasing sequence of at least 2 values")
    return hist.axis.Variable(edges, label=label)


class HistogramFiller:
    """Fills a weighted histogram chunk by chunk (constant memory), then normalises it.

    Args:
      bins: number of bins (with ``range``) or bin edges.
      range: (low, high) for a number of bins.
      label: axis label.
    """

    def __init__(self, bins: int | Sequence[float], range: tuple[float, float] | None = None, label: str = ""):
        import hist

        self.hist = hist.Hist(_axis(bins, range, label), storage=hist.storage.Weight())
        self.n_events = 0
        self.sum_w = 0.0

    def fill(self, values: np.ndarray, weights: np.ndarray, *, n_events: int | None = None, sum_w: float | None = None):
        """Add entries; ``n_events``/``sum_w`` count the events of the chunk (defaults: len/sum of weights)."""
        values = np.asarray(values, np.float64)
        weights = np.asarray(weights, np.float64)
        if values.shape != weights.shape or values.ndim != 1:
            raise ValueError(f"values and weights must be 1-D of one length, got {values.shape} and {weights.shape}")
        top = self.hist.axes[0].edges[-1]
        # The last bin is closed (as in numpy.histogram): x = high, e.g. x_p = 1, is kept.
        values = np.where(values == top, np.nextafter(top, -np.inf), values)
        self.hist.fill(values, weight=weights)
        self.n_events += len(values) if n_events is None else int(n_events)
        self.sum_w += float(weights.sum()) if sum_w is None else float(sum_w)

    def result(self, norm: str = "xsec") -> Any:
        """The histogram normalised by ``norm`` (see the module docstring)."""
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {list(NORMS)}, got {norm!r}")
        h = self.hist.copy()
        if norm == "sum":
            return h
        widths = np.diff(h.axes[0].edges)
        if norm == "xsec":
            scale = 1.0 / (max(self.n_events, 1) * widths)
        else:
            if self.sum_w == 0:
                raise ValueError(f"{norm} normalisation needs a non-zero sum of weights")
            scale = 1.0 / (self.sum_w * widths) if norm == "density" else np.full(widths.shape, 1.0 / self.sum_w)
        view = h.view()
        view.value = view.value * scale
        view.variance = view.variance * scale**2
        return h


def histogram(
    values: Any,
    weights: Any = None,
    bins: int | Sequence[float] = 20,
    range: tuple[float, float] | None = None,
    *,
    norm: str = "xsec",
    n_events: int | None = None,
    label: str = "",
) -> Any:
    """A weighted histogram (``hist.Hist`` with Weight storage: values and MC variances).

    Args:
      values: [M] observable values.
      weights: [M] weights in pb (default ones).
      bins: number of bins (then ``range`` is required) or [B+1] edges.
      range: (low, high).
      norm: ``"xsec"`` (dσ/dx, pb per unit), ``"density"`` ((1/σ) dσ/dx), ``"fraction"``
        (Σ_bin w / Σw) or ``"sum"`` (Σw).
      n_events: N for ``"xsec"`` (default M; give it for per-particle observables).
      label: axis label.

    Returns:
      ``hist.Hist``; ``h.values()`` and ``np.sqrt(h.variances())`` are the normalised bin
      contents and their MC errors.
    """
    values = np.asarray(values, np.float64).reshape(-1)
    weights = np.ones_like(values) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    if range is None and isinstance(bins, (int, np.integer)) and values.size:
        range = (float(values.min()), float(values.max()) + 1e-12 * max(1.0, abs(float(values.max()))))
    filler = HistogramFiller(bins, range, label)
    filler.fill(values, weights, n_events=n_events)
    return filler.result(norm)


def histogram_from_files(
    paths: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    observable: str,
    bins: int | Sequence[float] = 20,
    range: tuple[float, float] | None = None,
    *,
    norm: str = "xsec",
    chunk_size: int = 200_000,
) -> tuple[Any, dict[str, Any]]:
    """Histogram an observable over one or more event files (LHE/parquet), streaming in chunks.

    The files are treated as one sample (e.g. the parts of a split run); N for ``"xsec"``
    is their total number of events. Without ``range`` for an integer ``bins``, the
    observable's default range is used, else that of the first chunk.

    Args:
      paths: one event file or a sequence of them (LHE or parquet).
      observable: a key of :data:`OBSERVABLES`, ``extra/<name>`` or a ``diffgen.observables``
        function name (see :func:`compute_observable`).
      bins: number of bins or [B+1] edges.
      range: (low, high) for a number of bins; default as described above.
      norm: ``"xsec"``, ``"density"``, ``"fraction"`` or ``"sum"`` (see :func:`histogram`).
      chunk_size: events read per chunk.

    Returns:
      ``(hist, metadata)`` with the metadata of the first file.
    """
    from diffgen import io as dio

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    obs = _lookup(observable)
    if range is None and isinstance(bins, (int, np.integer)):
        range = obs.range
    filler: HistogramFiller | None = None
    first_meta: dict[str, Any] | None = None
    for path in paths:
        for events, meta in dio.iter_events(path, chunk_size):
            data = events.to_numpy()
            values, weights = compute_observable(observable, data, meta)
            if filler is None:
                if range is None and isinstance(bins, (int, np.integer)):
                    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
                    range = (lo, hi + 1e-9 * max(1.0, abs(hi)) if hi > lo else lo + 1.0)
                filler = HistogramFiller(bins, range, obs.label)
                first_meta = meta
            w_event = np.asarray(data["weight"], np.float64)
            filler.fill(values, weights, n_events=len(w_event), sum_w=float(w_event.sum()))
    if filler is None or first_meta is None:
        raise ValueError("no events in the given files")
    return filler.result(norm), first_meta


# ---------------------------------------------------------------------------- data points


@dataclasses.dataclass(frozen=True)
class DataPoints:
    """Measured points with errors (e.g. from a HEPData/Rivet CSV).

    Attributes:
      x: [K] bin centres (or points).
      y: [K] values.
      yerr: [K] total errors (symmetric).
      xlow, xhigh: [K] bin edges, or None for points without bins.
      label: legend label.
      x_name, y_name: the CSV column names.
    """

    x: np.ndarray
    y: np.ndarray
    yerr: np.ndarray
    xlow: np.ndarray | None = None
    xhigh: np.ndarray | None = None
    xerr: np.ndarray | None = None
    label: str = "data"
    x_name: str = "x"
    y_name: str = "y"

    @property
    def edges(self) -> np.ndarray | None:
        """Bin edges [K+1] if the bins are contiguous, else None."""
        if self.xlow is None or self.xhigh is None or not np.allclose(self.xlow[1:], self.xhigh[:-1]):
            return None
        return np.append(self.xlow, self.xhigh[-1])


def read_data_csv(
    path: str | os.PathLike[str],
    *,
    x: str | None = None,
    y: str | None = None,
    yerr: str | None = None,
    label: str | None = None,
) -> DataPoints:
    """Read data points from a CSV with ``#`` comment lines and a header row.

    Columns are found automatically when not given: bins from ``*_low``/``*_high`` (and
    ``*_center``) columns, otherwise x is the first column and ``<x>_err`` its error; y is
    the first remaining numeric column and ``yerr`` the next column containing ``err``.

    Args:
      path: the CSV file (e.g. ``shared/data/aleph1996_1minusT_charged_91GeV.csv``).
      x, y, yerr: column names to use instead.
      label: legend label (default: the first words of the first comment line).

    Returns:
      :class:`DataPoints`.

    Raises:
      FileNotFoundError, ValueError: missing file, unknown column, non-numeric entries.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file {str(path)!r} does not exist")
    text = path.read_text(encoding="utf-8")
    comments = [ln[1:].strip() for ln in text.splitlines() if ln.startswith("#")]
    rows = list(
        csv.reader(_io.StringIO("\n".join(ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#"))))
    )
    if len(rows) < 2:
        raise ValueError(f"{str(path)!r}: expected a header row and at least one data row")
    header = [h.strip() for h in rows[0]]

    def column(name: str) -> np.ndarray:
        if name not in header:
            raise ValueError(f"{str(path)!r}: no column {name!r}; columns: {header}")
        j = header.index(name)
        try:
            return np.array([float(r[j]) for r in rows[1:]], np.float64)
        except (ValueError, IndexError):
            raise ValueError(f"{str(path)!r}: column {name!r} is not numeric in every row") from None

    def numeric(name: str) -> bool:
        try:
            column(name)
            return True
        except ValueError:
            return False

    lows = [h for h in header if h.endswith("_low")]
    xlow = xhigh = xerr = None
    used: set[str] = set()
    if x is None and lows and lows[0][:-4] + "_high" in header:
        stem = lows[0][:-4]
        xlow, xhigh = column(stem + "_low"), column(stem + "_high")
        x = stem + "_center" if stem + "_center" in header else None
        xs = column(x) if x else (xlow + xhigh) / 2
        used |= {stem + "_low", stem + "_high", stem + "_center"}
        x_name = stem
    else:
        x = x or header[0]
        xs = column(x)
        used.add(x)
        x_name = x
        for cand in (x + "_err", x.removesuffix("_GeV") + "_err_GeV"):
            if cand in header:
                xerr = column(cand)
                used.add(cand)
    if y is None:
        candidates = [h for h in header if h not in used and "err" not in h.lower() and numeric(h)]
        if not candidates:
            raise ValueError(f"{str(path)!r}: no numeric value column found; columns: {header}")
        y = candidates[0]
    ys = column(y)
    if yerr is None:
        after = header[header.index(y) + 1 :]
        errs = [h for h in after if "err" in h.lower() and numeric(h)]
        if not errs:
            raise ValueError(f"{str(path)!r}: no error column after {y!r}; give yerr=")
        yerr = errs[0]
    ye = column(yerr)
    if label is None:
        label = comments[0].split(",")[0].split('"')[0].strip() if comments else path.stem
        label = label or path.stem
    return DataPoints(xs, ys, ye, xlow, xhigh, xerr, label, x_name, y)


# ---------------------------------------------------------------------------- figures


def _style() -> Any:
    import matplotlib as mpl

    return mpl.rc_context(
        {
            "font.size": 11,
            "axes.linewidth": 1.0,
            "xtick.direction": "in",
            "ytick.direction": "in",
            "xtick.top": True,
            "ytick.right": True,
            "xtick.minor.visible": True,
            "ytick.minor.visible": True,
            "legend.frameon": False,
        }
    )


def plot_histograms(
    hists: Mapping[str, Any] | Sequence[tuple[str, Any]],
    *,
    data: DataPoints | None = None,
    ratio: bool = True,
    logx: bool = False,
    logy: bool = False,
    xlabel: str | None = None,
    ylabel: str = "",
    title: str = "",
    experiment: str = "diffgen",
    figsize: tuple[float, float] = (6.0, 5.5),
) -> Any:
    """A HEP-style figure: step histograms with MC error bars, optional data points and ratio panel.

    Args:
      hists: ``{label: hist.Hist}`` (or pairs), drawn as steps with ±1σ MC error bars.
      data: measured points drawn as black markers with error bars (and x bins).
      ratio: add a lower panel with each histogram divided by the reference: the data if
        given (interpolated bin by bin, so binning must match), else the first histogram; the
        reference's relative errors are the grey band.
      logx, logy: logarithmic axes.
      xlabel: x label (default the first histogram's axis label).
      ylabel: y label (e.g. ``"dσ/dx [pb]"``).
      title: right-hand label above the frame (e.g. ``"e⁺e⁻, √s = 91.2 GeV"``).
      experiment: bold left-hand label (followed by "Simulation").
      figsize: (width, height) of the figure in inches.

    Returns:
      ``matplotlib.figure.Figure``.
    """
    import mplhep
    from matplotlib.figure import Figure

    items = list(hists.items()) if isinstance(hists, Mapping) else list(hists)
    if not items and data is None:
        raise ValueError("plot_histograms needs at least one histogram or data")
    ratio = ratio and bool(items)  # a ratio needs at least one histogram
    with _style():
        fig = Figure(figsize=figsize, layout="constrained")
        if ratio:
            ax, rax = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
        else:
            ax, rax = fig.subplots(), None
        colours = ["#3f90da", "#ffa90e", "#bd1f01", "#94a4a2", "#832db6", "#a96b59"]
        for i, (label, h) in enumerate(items):
            err = np.sqrt(h.variances())
            mplhep.histplot(
                h.values(), h.axes[0].edges, yerr=err, ax=ax, label=label, color=colours[i % len(colours)], edges=False
            )
        if data is not None:
            xerr = None
            if data.xlow is not None and data.xhigh is not None:
                xerr = np.stack([data.x - data.xlow, data.xhigh - data.x])
            elif data.xerr is not None:
                xerr = data.xerr
            ax.errorbar(data.x, data.y, yerr=data.yerr, xerr=xerr, fmt="o", color="black", ms=4, label=data.label)
        if logy:
            ax.set_yscale("log")
        if logx:
            ax.set_xscale("log")
        ax.set_ylabel(ylabel)
        ax.legend()
        mplhep.label.exp_label(exp=experiment, llabel="Simulation" if items else "", rlabel=title, ax=ax)
        xlabel = xlabel if xlabel is not None else (items[0][1].axes[0].label if items else data.x_name if data else "")
        if rax is not None:
            _ratio_panel(rax, items, data, colours)
            rax.set_xlabel(xlabel)
        else:
            ax.set_xlabel(xlabel)
    return fig


def _ratio_panel(rax: Any, items: list[tuple[str, Any]], data: DataPoints | None, colours: list[str]) -> None:
    import mplhep

    if data is not None:
        ref_x, ref, ref_err = data.x, data.y, data.yerr
        rax.set_ylabel("MC / data")
    elif items:
        h0 = items[0][1]
        ref_x, ref, ref_err = h0.axes[0].centers, h0.values(), np.sqrt(h0.variances())
        name = items[0][0]
        rax.set_ylabel(f"ratio to {name}" if len(name) <= 12 else "ratio to first")
    else:
        return
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(ref != 0, ref_err / np.abs(ref), np.nan)
    if data is not None and data.xlow is not None and data.xhigh is not None:
        for lo, hi, r in zip(data.xlow, data.xhigh, rel, strict=True):
            rax.fill_between([lo, hi], 1 - r, 1 + r, color="0.85", lw=0)
    elif items:
        edges = items[0][1].axes[0].edges
        rax.stairs(1 + np.nan_to_num(rel), edges, baseline=1 - np.nan_to_num(rel), fill=True, color="0.85", lw=0)
    rax.axhline(1.0, color="black", lw=0.8)
    shown = [np.ones(1)]
    for i, (_label, h) in enumerate(items):
        centers = h.axes[0].centers
        ref_here = np.interp(centers, ref_x, ref) if data is not None else ref
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(ref_here != 0, h.values() / ref_here, np.nan)
            e = np.where(ref_here != 0, np.sqrt(h.variances()) / np.abs(ref_here), np.nan)
        mplhep.histplot(r, h.axes[0].edges, yerr=e, ax=rax, color=colours[i % len(colours)], edges=False)
        shown += [r - e, r + e]
    finite = np.concatenate(shown)
    finite = finite[np.isfinite(finite)]
    if finite.size:
        spread = min(max(np.max(np.abs(finite - 1.0)) * 1.2, 0.05), 1.0)
        rax.set_ylim(1 - spread, 1 + spread)


def save(fig: Any, path: str | os.PathLike[str], *, dpi: int = 150) -> Path:
    """Save a figure as PNG or PDF (from the suffix), atomically.

    Args:
      fig: a ``matplotlib.figure.Figure``.
      path: output file ending in ``.png`` or ``.pdf``.
      dpi: resolution in dots per inch (for PNG).

    Returns:
      the path of the written file.

    Raises:
      ValueError: the suffix is not ``.png`` or ``.pdf``.
    """
    from diffgen.io import atomic_write

    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("png", "pdf"):
        raise ValueError(f"plot file must end in .png or .pdf, got {str(path)!r}")
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format=fmt, dpi=dpi)
    return path
