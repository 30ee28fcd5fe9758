"""``diffgen plot``: histogram an observable from event files, with data points and a ratio panel."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from diffgen.cli import UsageError, _common

NAME = "plot"
HELP = "histogram an observable from event files (LHE/parquet) with MC errors, data points from a CSV and a ratio panel"

DEFAULTS: dict[str, Any] = {
    "files": [],
    "labels": None,
    "observable": "cos_theta",
    "bins": None,
    "edges": None,
    "range": None,
    "norm": "xsec",
    "data": None,
    "data_x": None,
    "data_y": None,
    "data_yerr": None,
    "data_label": None,
    "ratio": True,
    "logx": False,
    "logy": False,
    "xlabel": None,
    "ylabel": None,
    "title": None,
    "output": "plot.png",
    "chunk_size": 200_000,
}

_YLABELS = {
    "xsec": "dσ/dx [pb per unit of x]",
    "density": "1/σ dσ/dx",
    "fraction": "fraction of σ per bin",
    "sum": "Σ w per bin [pb]",
}


def _floats(text: str, option: str) -> list[float]:
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise UsageError(f"{option}: expected comma-separated numbers, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``diffgen plot``."""
    from diffgen.plotting import OBSERVABLES

    parser.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="event files (.lhe or .parquet); one histogram per file (default: none)",
    )
    parser.add_argument(
        "--observable",
        default=None,
        metavar="NAME",
        help=f"observable: {', '.join(OBSERVABLES)} (pt, energy in GeV; per-particle ones fill one entry per "
        "particle), extra/<name> for a stored per-event array, or a diffgen.observables function "
        f"(default: {DEFAULTS['observable']})",
    )
    parser.add_argument(
        "--bins",
        type=int,
        default=None,
        metavar="N",
        help="number of equal bins (default: the data's bins with --data, else 20)",
    )
    parser.add_argument(
        "--edges",
        default=None,
        metavar="E0,E1,...",
        help="bin edges in the observable's unit (default: none)",
    )
    parser.add_argument(
        "--range",
        type=float,
        nargs=2,
        default=None,
        metavar=("LOW", "HIGH"),
        help="histogram range in the observable's unit (default: the observable's natural range, else the data's)",
    )
    parser.add_argument(
        "--norm",
        choices=("xsec", "density", "fraction", "sum"),
        default=None,
        help="xsec: dσ/dx in pb per unit of x; density: 1/σ dσ/dx; fraction: Σw in the bin / Σw (e.g. P(N)); "
        "sum: Σw per bin in pb (default: xsec)",
    )
    parser.add_argument(
        "--data", default=None, metavar="CSV", help="data points with errors from a CSV (default: none)"
    )
    parser.add_argument("--data-x", default=None, metavar="COLUMN", help="CSV column of x (default: automatic)")
    parser.add_argument(
        "--data-y", default=None, metavar="COLUMN", help="CSV column of the values (default: automatic)"
    )
    parser.add_argument(
        "--data-yerr", default=None, metavar="COLUMN", help="CSV column of the errors (default: automatic)"
    )
    parser.add_argument(
        "--data-label", default=None, metavar="TEXT", help="legend label of the data (default: from the CSV)"
    )
    parser.add_argument(
        "--labels", default=None, metavar="L1,L2", help="legend labels of the files (default: file names)"
    )
    parser.add_argument(
        "--no-ratio",
        dest="ratio",
        action="store_const",
        const=False,
        default=None,
        help="no ratio panel (default: ratio panel on)",
    )
    parser.add_argument(
        "--logx", action="store_const", const=True, default=None, help="logarithmic x axis (default: off)"
    )
    parser.add_argument(
        "--logy", action="store_const", const=True, default=None, help="logarithmic y axis (default: off)"
    )
    parser.add_argument("--xlabel", default=None, help="x-axis label (default: the observable's)")
    parser.add_argument("--ylabel", default=None, help="y-axis label (default: from --norm)")
    parser.add_argument("--title", default=None, help="label above the top-right corner (default: process and √s)")
    parser.add_argument(
        "--output", "-o", default=None, metavar="FILE", help=f"image file, .png or .pdf (default: {DEFAULTS['output']})"
    )
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        metavar="N",
        help=f"events read per chunk (default: {DEFAULTS['chunk_size']})",
    )
    _common.add_common_options(parser, no_seed="plot draws no random numbers")


def run(args: argparse.Namespace) -> int:
    """Read the files chunk by chunk, histogram, draw, save the image and its configuration."""
    from diffgen import plotting
    from diffgen.config import PLOT_FIELDS

    if args.files:
        args.files = list(args.files)
    else:
        args.files = None
    if isinstance(args.edges, str):
        args.edges = _floats(args.edges, "--edges")  # parsed here so that errors are one line
    if args.labels is not None:
        args.labels = [s.strip() for s in args.labels.split(",")]
    cfg = _common.resolve(args, NAME, PLOT_FIELDS, DEFAULTS)
    files = [str(f) for f in cfg["files"]]
    if not files and not cfg["data"]:
        raise UsageError("give at least one event file or --data")
    for f in files:
        if not Path(f).is_file():
            raise UsageError(f"event file {f!r} does not exist")
    labels = cfg["labels"] or [Path(f).name for f in files]
    if len(labels) != len(files):
        raise UsageError(f"--labels gives {len(labels)} label(s) for {len(files)} file(s)")
    if cfg["range"] is not None and (len(cfg["range"]) != 2 or not cfg["range"][1] > cfg["range"][0]):
        raise UsageError(f"--range needs LOW HIGH with HIGH > LOW, got {cfg['range']}")
    if Path(cfg["output"]).suffix.lower() not in (".png", ".pdf"):
        raise UsageError(f"--output must end in .png or .pdf, got {cfg['output']!r}")

    data = None
    if cfg["data"]:
        data = plotting.read_data_csv(
            cfg["data"], x=cfg["data_x"], y=cfg["data_y"], yerr=cfg["data_yerr"], label=cfg["data_label"]
        )
    bins: Any = cfg["edges"] or cfg["bins"]
    if bins is None:
        # Compare bin by bin with the data when it has contiguous bins.
        bins = data.edges if data is not None and data.edges is not None else 20
    rng = tuple(cfg["range"]) if cfg["range"] else None

    hists = []
    meta: dict[str, Any] = {}
    with _common.progress(len(files), "histogramming", quiet=args.quiet, unit="files") as bar:
        for f, label in zip(files, labels, strict=True):
            h, meta = plotting.histogram_from_files(
                f, cfg["observable"], bins, rng, norm=cfg["norm"], chunk_size=cfg["chunk_size"]
            )
            if rng is None and not isinstance(bins, list) and not hasattr(bins, "shape"):
                edges = h.axes[0].edges
                rng = (float(edges[0]), float(edges[-1]))  # later files share the first file's binning
            hists.append((label, h))
            bar.advance(1)
    title = cfg["title"]
    if title is None and meta:
        title = f"{meta.get('process', '')}, √s = {float(meta.get('sqrt_s', 0)):.5g} GeV" if "sqrt_s" in meta else ""
    fig = plotting.plot_histograms(
        hists,
        data=data,
        ratio=cfg["ratio"],
        logx=cfg["logx"],
        logy=cfg["logy"],
        xlabel=cfg["xlabel"],
        ylabel=cfg["ylabel"]
        if cfg["ylabel"] is not None
        else (data.y_name if data and not hists else _YLABELS[cfg["norm"]]),
        title=title or "",
    )
    path = plotting.save(fig, cfg["output"])
    effective = {**cfg, "files": files, "labels": labels}
    if isinstance(bins, int):
        effective["bins"] = bins
        effective["range"] = list(rng) if rng else None
    else:
        effective["edges"] = [float(e) for e in bins]
    (cfg_path,) = _common.write_effective(path, NAME, effective)
    if not args.quiet:
        print(f"wrote {path} ({len(hists)} histogram(s)); configuration in {cfg_path}", file=sys.stderr)
    return 0
