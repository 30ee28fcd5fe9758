"""``diffgen generate``: generate events and write them to an LHE, HepMC3 or parquet file.

Events are generated and written in chunks (``--chunk-size``), so memory is bounded for
any ``--n``; the output appears atomically when the run completes (an interrupted run
leaves no output file), followed by the effective configuration ``<output>.run.toml``.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
from collections.abc import Iterator
from typing import Any

from diffgen.cli import UsageError, _common

NAME = "generate"
HELP = "generate events (hard process [+ shower, hadronization, detector]) and write an LHE/HepMC3/parquet file"

#: Process name -> (factory in diffgen.processes, positional/keyword arguments, description).
PROCESSES: dict[str, tuple[str, dict[str, Any], str]] = {
    "ee_to_mumu": ("ee_to_ffbar", {"flavour": "mu"}, "e+e- -> gamma*/Z -> mu+mu-"),
    "ee_to_tautau": ("ee_to_ffbar", {"flavour": "tau"}, "e+e- -> gamma*/Z -> tau+tau-"),
    "ee_to_ee_s": ("ee_to_ffbar", {"flavour": "e"}, "e+e- -> gamma*/Z -> e+e- (s-channel only)"),
    **{
        f"ee_to_{q}{q}bar": ("ee_to_ffbar", {"flavour": q}, f"e+e- -> gamma*/Z -> {q} {q}bar")
        for q in ("d", "u", "s", "c", "b")
    },
    "ee_to_qqbar": ("ee_to_qqbar", {}, "e+e- -> gamma*/Z -> q qbar summed over udscb (input of the shower)"),
    "ee_to_qqbarg": ("ee_to_qqbarg", {}, "e+e- -> q qbar g"),
    "ee_to_ttbar_6f": ("ee_to_ttbar_6f", {}, "e+e- -> t tbar -> 6 fermions"),
}

LAYERS = ("shower", "hadronization", "detector")
DETECTORS = ("smearing", "lep_like", "toy")

DEFAULTS: dict[str, Any] = {
    "process": "ee_to_mumu",
    "sqrt_s": 91.1876,
    "n": 10_000,
    "layers": [],
    "detector": "smearing",
    "output": "events.parquet",
    "format": None,
    "seed": 0,
    "chunk_size": 100_000,
    "workers": 1,
    "dtype": "float64",
    "params": {},
    "alpha_s_variations": [],
}


def _layers(text: str) -> list[str]:
    items = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in items if s not in LAYERS]
    if bad:
        raise UsageError(f"unknown layer(s) {bad}; allowed: {', '.join(LAYERS)}")
    return items


def _floats(text: str, option: str) -> list[float]:
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise UsageError(f"{option}: expected comma-separated numbers, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``diffgen generate``."""
    names = ", ".join(PROCESSES)
    parser.add_argument(
        "--process",
        "-p",
        default=None,
        metavar="NAME",
        help=f"hard process, one of: {names} (default: {DEFAULTS['process']})",
    )
    parser.add_argument(
        "--sqrt-s",
        type=float,
        default=None,
        metavar="GEV",
        help=f"centre-of-mass energy √s in GeV, above the production threshold (default: {DEFAULTS['sqrt_s']})",
    )
    parser.add_argument(
        "--n", "-n", type=int, default=None, metavar="N", help=f"number of events, >= 1 (default: {DEFAULTS['n']})"
    )
    parser.add_argument(
        "--layers",
        default=None,
        metavar="L1,L2",
        help="comma-separated layers applied after the hard process, in order: shower, hadronization, "
        "detector (the shower needs a q qbar process such as ee_to_qqbar) (default: none)",
    )
    parser.add_argument(
        "--detector",
        default=None,
        metavar="NAME",
        help="detector of the 'detector' layer: smearing (1%% Gaussian smearing of every component), "
        f"lep_like, toy, or a detector TOML file (default: {DEFAULTS['detector']})",
    )
    parser.add_argument(
        "--output",
        "-o",
        default=None,
        metavar="FILE",
        help="output event file; the format follows the suffix (.lhe, .hepmc/.hepmc3, .parquet) unless "
        "--format is given; written atomically. HepMC3 files hold the event history: with the shower one "
        "vertex per emission, with the hadronization the gluon splittings, clusters (pid 81), cluster "
        f"fission and decays and the decays of unstable hadrons (default: {DEFAULTS['output']})",
    )
    parser.add_argument(
        "--format",
        choices=("lhe", "hepmc3", "parquet"),
        default=None,
        help="output format (default: from the output suffix)",
    )
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        metavar="N",
        help="events generated and written per chunk; bounds the memory use. The events depend on it "
        f"(each chunk has its own key) (default: {DEFAULTS['chunk_size']})",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="chunks generated at once, on host threads (on a multi-core CPU, more events/s than one "
        "chunk at a time); the events do not depend on it, the memory holds up to N + 1 chunks "
        f"(default: {DEFAULTS['workers']})",
    )
    parser.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default=None,
        help=f"floating dtype of momenta and weights (default: {DEFAULTS['dtype']})",
    )
    parser.add_argument(
        "--param",
        action="append",
        default=None,
        metavar="STAGE.NAME=VALUE",
        dest="param_overrides",
        help="override a parameter, e.g. source.m_z=91.19 (GeV) or shower.alpha_s_mz=0.12; stages are "
        "source, shower, hadronization, detector; repeatable (default: the process's PDG values)",
    )
    parser.add_argument(
        "--alpha-s-variations",
        default=None,
        metavar="A1,A2",
        help="with the shower: store exact shower reweighting weights for these αs(m_Z) values as named "
        "alternative weights rwgt/alpha_s_mz=<value> (pb; LHE <rwgt>, HepMC3 weight vector) (default: none)",
    )
    parser.add_argument(
        "--all-extra",
        action="store_true",
        help="keep every per-event bookkeeping array in parquet output; by default only per-event scalars "
        "(e.g. overflow flags, log-probabilities) are kept (default: off)",
    )
    _common.add_common_options(parser, seed_default=DEFAULTS["seed"])


# ---------------------------------------------------------------------------- building the chain


def build_source(process: str, sqrt_s: float, dtype: Any) -> Any:
    """The ``Source`` of a named process (see :data:`PROCESSES`)."""
    if process not in PROCESSES:
        raise UsageError(f"unknown process {process!r}; choose one of: {', '.join(PROCESSES)}")
    factory_name, kwargs, _ = PROCESSES[process]
    try:
        import diffgen.processes as processes
    except ImportError as err:  # pragma: no cover - depends on the installation
        raise UsageError(f"the hard processes are not available: {err}") from None
    factory = getattr(processes, factory_name, None)
    if factory is None:
        raise UsageError(f"process {process!r} is not available in this version of diffgen")
    return factory(sqrt_s=sqrt_s, dtype=dtype, **kwargs)


def build_layer(name: str, detector: str, dtype: Any, *, record_history: bool = False) -> Any:
    """The ``Layer`` of a named stage (shower, hadronization, detector).

    ``record_history`` makes the shower and the hadronization record their emission and
    cluster histories (``extra["shower_history/…"]``, ``extra["hadronization_history/…"]``)
    for the HepMC3 writer; the particles are the same either way.
    """
    if name == "shower":
        from diffgen.shower import final_state_shower

        return final_state_shower(record_history=record_history)
    if name == "hadronization":
        from diffgen.hadronization import hadronize

        return hadronize(record_history=record_history)
    if name == "detector":
        import diffgen.detector as det

        if detector == "smearing":
            return det.gaussian_smearing(dtype=dtype)
        if detector in ("lep_like", "toy"):
            return getattr(det, detector)(dtype=dtype)
        return det.detector(detector, dtype=dtype)
    raise UsageError(f"unknown layer {name!r}; allowed: {', '.join(LAYERS)}")


def apply_overrides(params: dict[str, Any], overrides: dict[str, dict[str, float]]) -> dict[str, Any]:
    """``params`` with ``{stage: {name: value}}`` replaced (same dtype); unknown names are errors."""
    import jax.numpy as jnp

    out = {stage: dict(p) if isinstance(p, dict) else p for stage, p in params.items()}
    for stage, values in overrides.items():
        if stage not in out:
            raise UsageError(f"--param: unknown stage {stage!r}; stages of this run: {sorted(out)}")
        for name, value in values.items():
            if not isinstance(out[stage], dict) or name not in out[stage]:
                allowed = sorted(out[stage]) if isinstance(out[stage], dict) else []
                raise UsageError(f"--param: stage {stage!r} has no scalar parameter {name!r}; allowed: {allowed}")
            old = out[stage][name]
            if getattr(old, "ndim", 1) != 0:
                raise UsageError(f"--param: {stage}.{name} is not a scalar parameter")
            if not math.isfinite(float(value)):
                raise UsageError(f"--param: {stage}.{name} must be finite, got {value!r}")
            out[stage][name] = jnp.asarray(value, dtype=old.dtype)
    return out


# ---------------------------------------------------------------------------- the run


def _sample_with_history(source: Any, stages: list[tuple[str, Any]]) -> Any:
    """``sample(params, key, n)`` of ``chain(("source", source), *stages)`` that also records the
    particles entering every layer as ``extra["history/<j>-<stage>/{p,pid,mask,colour}"]``
    (the HepMC3 writer turns them into vertices; see :mod:`diffgen.io.hepmc`).

    The keys are those of :func:`diffgen.core.chain` (stage ``i`` gets ``stage_key(key, i)``),
    so the final events are the chain's, bit for bit.
    """
    from diffgen.core import stage_key
    from diffgen.io.hepmc import HISTORY_PREFIX

    def sample(params: Any, key: Any, n: int) -> Any:
        events = source.sample(params["source"], stage_key(key, 0), n)
        history = {}
        for j, (name, layer) in enumerate(stages):
            label = f"{HISTORY_PREFIX}{j}-{'source' if j == 0 else stages[j - 1][0]}"
            history[f"{label}/p"], history[f"{label}/pid"], history[f"{label}/mask"] = (
                events.p,
                events.pid,
                events.mask,
            )
            if events.colour is not None:
                history[f"{label}/colour"] = events.colour
            events = layer.apply(params[name], stage_key(key, j + 1), events)
        return events.with_extra(**history)

    return sample


@functools.lru_cache(maxsize=8)
def _simulator(
    process: str, sqrt_s: float, layers: tuple[str, ...], detector: str, dtype: str, history: bool = False
) -> tuple[Any, Any]:
    """The chain and its jitted ``sample`` (cached, so repeated runs in one process compile once).

    With ``history`` the jitted function also records the particles entering each layer
    (:func:`_sample_with_history`), and the shower and hadronization their emission and
    cluster histories.
    """
    import jax.numpy as jnp

    from diffgen.core import chain, jit

    source = build_source(process, sqrt_s, jnp.dtype(dtype))
    stages = [(name, build_layer(name, detector, jnp.dtype(dtype), record_history=history)) for name in layers]
    sim = chain(("source", source), *stages)
    sample = _sample_with_history(source, stages) if history else sim.sample
    return sim, jit(sample, static_argnums=2)


class Generation:
    """A configured generation run: the chain, its params and the per-chunk keys.

    ``chunk(i)`` returns the ``Events`` of chunk ``i`` (the last one trimmed to the
    remaining events), exactly what ``diffgen generate`` writes; tests and benchmarks use it
    to reproduce a file in-process.

    Args:
      cfg: settings with the keys of :data:`DEFAULTS` (``params`` = overrides by stage).
      history: also record the particles entering every layer in ``extra["history/…"]`` and
        the shower's and hadronization's histories (``extra["shower_history/…"]``,
        ``extra["hadronization_history/…"]``) for HepMC3 output; the final particles are the
        same either way.
    """

    def __init__(self, cfg: dict[str, Any], *, history: bool = False) -> None:
        import jax

        if cfg["dtype"] == "float64":
            jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        from diffgen import io as dio

        layers = list(cfg["layers"])
        bad = [x for x in layers if x not in LAYERS]
        if bad:
            raise UsageError(f"unknown layer(s) {bad}; allowed: {', '.join(LAYERS)}")
        self.n = int(cfg["n"])
        self.chunk_size = min(int(cfg["chunk_size"]), self.n)
        self.n_chunks = -(-self.n // self.chunk_size)
        self.dtype = jnp.dtype(cfg["dtype"])
        self.sim, self._sample = _simulator(
            cfg["process"], float(cfg["sqrt_s"]), tuple(layers), cfg["detector"], cfg["dtype"], bool(history)
        )
        key = jax.random.key(int(cfg["seed"]))
        params = self.sim.init(jax.random.fold_in(key, 0))
        if "sqrt_s" in params["source"]:
            params["source"]["sqrt_s"] = jnp.asarray(cfg["sqrt_s"], dtype=params["source"]["sqrt_s"].dtype)
        self.params = apply_overrides(params, cfg["params"])
        self._key = jax.random.fold_in(key, 1)
        # The beams of LHE/HepMC3 files follow the generating √s (--param source.sqrt_s may change it).
        sqrt_s = float(self.params["source"].get("sqrt_s", cfg["sqrt_s"]))
        self.metadata: dict[str, Any] = {
            "process": cfg["process"],
            "sqrt_s": sqrt_s,
            "layers": layers,
            "seed": int(cfg["seed"]),
            "chunk_size": self.chunk_size,
            "dtype": cfg["dtype"],
            "params": dio.params_to_metadata(self.params),
        }
        if "detector" in layers:
            self.metadata["detector"] = cfg["detector"]
        self.alpha_s_variations = [float(a) for a in cfg.get("alpha_s_variations") or []]
        self._reweight = None
        if self.alpha_s_variations:
            if "shower" not in layers:
                raise UsageError("--alpha-s-variations needs the shower layer (--layers shower,...)")
            bad = [a for a in self.alpha_s_variations if not 0.0 < a < 1.0]
            if bad:
                raise UsageError(f"--alpha-s-variations: αs(m_Z) values must be in (0, 1), got {bad}")
            from diffgen.shower import reweight

            self._reweight = jax.jit(reweight)
            self.metadata["alpha_s_variations"] = self.alpha_s_variations

    def chunk(self, i: int) -> Any:
        """The ``Events`` of chunk ``i`` (0 ≤ i < n_chunks)."""
        import jax
        import jax.numpy as jnp

        if not 0 <= i < self.n_chunks:
            raise ValueError(f"chunk index must be in [0, {self.n_chunks}), got {i}")
        events = self._sample(self.params, jax.random.fold_in(self._key, i), self.chunk_size)
        if self._reweight is not None:
            # Exact veto-algorithm weights (NaN where the shower's trial record overflowed).
            events = events.with_extra(
                **{
                    f"rwgt/alpha_s_mz={a:g}": events.weight * self._reweight(events, jnp.asarray(a, events.dtype))
                    for a in self.alpha_s_variations
                }
            )
        k = min(self.chunk_size, self.n - i * self.chunk_size)
        return events[:k] if k < self.chunk_size else events

    def chunks(self, workers: int = 1) -> Iterator[Any]:
        """The ``Events`` of every chunk in order, ``workers`` of them computed at once.

        With ``workers`` > 1 the chunks are computed on host threads, up to ``workers`` ahead
        of the one handed out (``diffgen.parallel.ordered_map``; the same chunks as
        :meth:`chunk`; see ``diffgen.parallel.sample_chunks`` for why this is faster on a
        multi-core CPU).
        """
        import jax

        from diffgen.parallel import ordered_map

        if workers > 1 and self.n_chunks > 1:
            # Compiled once here, before the threads call it (none of them compiles it again).
            self._sample.lower(self.params, jax.random.fold_in(self._key, 0), self.chunk_size).compile()
        # Waiting inside the thread keeps the computation on it.
        yield from ordered_map(lambda i: jax.block_until_ready(self.chunk(i)), self.n_chunks, workers=workers)


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """The effective settings of ``diffgen generate``: options > run file > defaults, checked."""
    from diffgen.config import GENERATE_FIELDS

    # Comma lists are parsed here, not by argparse, so errors are one line.
    if isinstance(getattr(args, "layers", None), str):
        args.layers = _layers(args.layers)
    if isinstance(getattr(args, "alpha_s_variations", None), str):
        args.alpha_s_variations = _floats(args.alpha_s_variations, "--alpha-s-variations")
    cfg = _common.resolve(args, NAME, GENERATE_FIELDS, DEFAULTS)
    params = {stage: dict(values) for stage, values in cfg["params"].items()}
    for stage, values in params.items():
        if not isinstance(values, dict):
            raise UsageError(f"params.{stage} must be a table of name = number, got {values!r}")
    for stage, values in _common.parse_overrides(getattr(args, "param_overrides", None)).items():
        params.setdefault(stage, {}).update(values)
    cfg["params"] = params
    if cfg["process"] not in PROCESSES:
        raise UsageError(f"unknown process {cfg['process']!r}; choose one of: {', '.join(PROCESSES)}")
    return cfg


def _history(key: str) -> bool:
    """Whether an ``extra`` key belongs to the event history written to HepMC3 files."""
    return key.startswith(("history/", "shower_history/", "hadronization_history/"))


def run(args: argparse.Namespace) -> int:
    """Generate ``n`` events in chunks and stream them into the output file."""
    cfg = settings(args)
    from diffgen import io as dio

    fmt = dio.format_from_path(cfg["output"], cfg["format"])
    gen = Generation(cfg, history=fmt == "hepmc3")
    effective = {**cfg, "format": fmt, "params": gen.metadata["params"]}
    keep_all = bool(getattr(args, "all_extra", False)) and fmt == "parquet"
    quiet = bool(args.quiet)
    with (
        _common.sigterm_as_interrupt() as interrupt,
        _common.progress(gen.n, f"generating {cfg['process']}", quiet=quiet) as bar,
        dio.open_writer(cfg["output"], fmt, metadata=gen.metadata) as writer,
    ):
        for events in gen.chunks(int(cfg["workers"])):
            if not keep_all:
                events = events.replace(extra={k: v for k, v in events.extra.items() if v.ndim == 1 or _history(k)})
            interrupt.check()
            writer.write(events)
            bar.advance(events.n_events)
        # An interrupt swallowed during the last chunk must not publish the file either.
        interrupt.check()
    sigma, err = writer.metadata["cross_section_pb"], writer.metadata["cross_section_error_pb"]
    (cfg_path,) = _common.write_effective(cfg["output"], NAME, effective)
    if not quiet:
        print(
            f"wrote {gen.n} events to {cfg['output']} ({fmt}); σ = {sigma:.6g} ± {err:.2g} pb; "
            f"{bar.rate:,.0f} events/s; configuration in {cfg_path}",
            file=sys.stderr,
        )
    return 0
