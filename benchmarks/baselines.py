"""Same-run baselines for the benchmark suite: vectorised NumPy e⁺e⁻ → μ⁺μ⁻, and Pythia 8.

- :func:`numpy_mumu` — the Born e⁺e⁻ → γ*/Z → μ⁺μ⁻ generator of ``diffgen.processes``
  (full γ–Z interference, muon mass, fixed-width Z propagator, cos θ sampled ∝ 1 + cos²θ,
  φ flat) written as plain vectorised NumPy: random numbers, momenta and weights in pb.
  Matrix element as in ``diffgen/processes/born.py`` (J. Jersák, E. Laermann, P.M. Zerwas,
  Phys. Rev. D 25 (1982) 1218; R.K. Ellis, W.J. Stirling, B.R. Webber, "QCD and collider
  physics", eqs. 1.2–1.8).
- :func:`pythia_rate` — Pythia 8 (``pythia8mc``, the optional extra ``bench``) for
  e⁺e⁻ → γ*/Z → μ⁺μ⁻ (hard process only) and e⁺e⁻ → γ*/Z → hadrons (shower +
  hadronization), with the electroweak settings of the diffgen run; ``None`` when Pythia
  is not installed. :func:`pythia_generator` gives the initialised generator itself, whose
  batches the suite times in alternation with diffgen's calls.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from benchmarks.common import best_time_and_cores

__all__ = [
    "GEV2_PB",
    "PYTHIA_MODES",
    "PythiaGenerator",
    "numpy_mumu",
    "numpy_mumu_sigma",
    "pythia_available",
    "pythia_generator",
    "pythia_rate",
]

#: (ħc)² in pb·GeV² (PDG).
GEV2_PB = 3.89379372e8
M_MU = 0.1056583755
Q_E, T3_E = -1.0, -0.5
Q_MU, T3_MU = -1.0, -0.5


def _couplings(s: float, params: Mapping[str, float]) -> tuple[np.ndarray, ...]:
    """|V_i|², |A_i|², Re(V_i A_i*) for electron chirality i = L, R (fixed width)."""
    mz, gz, sw2 = params["m_z"], params["gamma_z"], params["sin2_theta_w"]
    chi = s / complex(s - mz * mz, mz * gz) / (sw2 * (1.0 - sw2))
    g_e = np.array([T3_E - Q_E * sw2, -Q_E * sw2])
    g_l, g_r = T3_MU - Q_MU * sw2, -Q_MU * sw2
    v_f, a_f = (g_l + g_r) / 2.0, (g_l - g_r) / 2.0
    v = Q_E * Q_MU + g_e * v_f * chi
    a = g_e * a_f * chi
    return np.abs(v) ** 2, np.abs(a) ** 2, np.real(v * np.conj(a))


def numpy_mumu(
    params: Mapping[str, float], n: int, rng: np.random.Generator, dtype: type = np.float64
) -> tuple[np.ndarray, np.ndarray]:
    """n weighted e⁺e⁻ → μ⁺μ⁻ events with NumPy.

    Written the way NumPy is fastest (one library call per step: ``np.cbrt`` for the
    Cardano root, ``np.cos``/``np.sin`` for the azimuth); diffgen computes the same
    numbers with Newton steps and a polynomial ``sincos``, which pay off only when fused.

    Args:
      params: ``sqrt_s``, ``m_z``, ``gamma_z`` (GeV), ``sin2_theta_w``, ``alpha_em`` (floats).
      n: number of events.
      rng: NumPy generator (PCG64).
      dtype: ``np.float64`` or ``np.float32``, the dtype of the random numbers and results.

    Returns:
      ``(p, weight)``: p [n, 2, 4] (E, px, py, pz) GeV, slot 0 = μ⁻ along the angle θ to
      the e⁻ beam (+z); weight [n] pb with ``mean(weight)`` = σ.
    """
    sqrt_s = float(params["sqrt_s"])
    s = sqrt_s * sqrt_s
    u = rng.random((n, 2), dtype=dtype)
    # cos θ from the density 3/8 (1 + c²): c³ + 3c = 3y with y = 8u/3 − 4/3; Cardano for |y|
    # with the sign of y restored, which avoids the cancellation of the two-cbrt form.
    y = dtype(8 / 3) * u[:, 0] - dtype(4 / 3)
    ay = np.abs(y)
    t = np.cbrt(dtype(1.5) * ay + np.sqrt(dtype(2.25) * ay * ay + 1))
    c = np.sign(y) * (t - 1 / t)
    density = dtype(0.375) * (1 + c * c)
    phi = dtype(2 * math.pi) * u[:, 1]
    beta = math.sqrt(1.0 - 4.0 * M_MU * M_MU / s)
    vv, aa, va = (x.astype(dtype) for x in _couplings(s, params))
    sin2 = 1 - c * c
    bracket = (
        2 * (vv[0] + vv[1]) * (2 - dtype(beta * beta) * sin2)
        + 2 * (aa[0] + aa[1]) * dtype(beta * beta) * (1 + c * c)
        + 8 * dtype(beta) * c * (va[0] - va[1])
    )
    me2 = dtype((4.0 * math.pi * params["alpha_em"]) ** 2 / 4.0) * bracket
    # dσ/dcosθ = 2π β |M|²/(64π² s); weight = (dσ/dcosθ) / density, in pb.
    weight = dtype(GEV2_PB * beta / (32.0 * math.pi * s)) * me2 / density
    pabs = dtype(0.5 * sqrt_s * beta)
    sin_t = np.sqrt(sin2)
    p = np.empty((n, 2, 4), dtype=dtype)
    p[:, :, 0] = 0.5 * sqrt_s
    p[:, 0, 1] = pabs * sin_t * np.cos(phi)
    p[:, 0, 2] = pabs * sin_t * np.sin(phi)
    p[:, 0, 3] = pabs * c
    p[:, 1, 1:] = -p[:, 0, 1:]
    return p, weight


def numpy_mumu_sigma(params: Mapping[str, float]) -> float:
    """Analytic Born σ(e⁺e⁻ → μ⁺μ⁻) in pb for the same settings (integral of the weight)."""
    s = float(params["sqrt_s"]) ** 2
    beta = math.sqrt(1.0 - 4.0 * M_MU * M_MU / s)
    vv, aa, _ = _couplings(s, params)
    bracket = (8.0 / 3.0) * (3.0 - beta * beta) * (vv[0] + vv[1]) + (16.0 / 3.0) * beta * beta * (aa[0] + aa[1])
    return float(GEV2_PB * math.pi * params["alpha_em"] ** 2 * beta / (8.0 * s) * bracket)


# --------------------------------------------------------------------------- Pythia 8

#: ``mode -> (description, Pythia settings)``; electroweak settings are added per run.
PYTHIA_MODES: dict[str, tuple[str, list[str]]] = {
    "mumu": (
        "e+e- -> gamma*/Z -> mu+mu-, hard process only",
        ["23:onMode = off", "23:onIfAny = 13", "PartonLevel:all = off", "HadronLevel:all = off"],
    ),
    "hadrons": (
        "e+e- -> gamma*/Z -> q qbar (udscb), final-state shower + string hadronization",
        ["23:onMode = off", "23:onIfAny = 1 2 3 4 5", "PartonLevel:ISR = off", "PartonLevel:MPI = off"],
    ),
}


def pythia_available() -> bool:
    """True if the official Pythia 8 Python bindings (``pythia8mc``) import."""
    try:
        import pythia8mc  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def _quiet_fd1():
    # Pythia prints its banner from C++ on file descriptor 1; redirect it for the run.
    try:
        fd = os.dup(1)
    except OSError:
        yield
        return
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        try:
            yield
        finally:
            os.dup2(fd, 1)
            os.close(fd)


#: The range Pythia 8 accepts for ``StandardModel:alphaEMmZ``.
PYTHIA_ALPHA_EM_RANGE = (0.00780, 0.00800)


def pythia_alpha_em(alpha_em: float) -> float:
    """α_em(m_Z) as given to Pythia: diffgen's value clipped to the range Pythia accepts.

    diffgen's default 1/128.95 lies just below Pythia's minimum 0.00780; the rate does not
    depend on it, and :func:`pythia_rate` rescales Pythia's σ by ``(α/α_Pythia)²`` so the
    cross sections printed side by side refer to the same coupling.
    """
    lo, hi = PYTHIA_ALPHA_EM_RANGE
    return min(max(float(alpha_em), lo), hi)


def pythia_settings(mode: str, params: Mapping[str, float]) -> list[str]:
    """The full Pythia settings of a mode with the diffgen electroweak parameters."""
    if mode not in PYTHIA_MODES:
        raise ValueError(f"mode must be one of {sorted(PYTHIA_MODES)}, got {mode!r}")
    return [
        "Beams:idA = 11",
        "Beams:idB = -11",
        f"Beams:eCM = {float(params['sqrt_s'])!r}",
        "PDF:lepton = off",  # no ISR photons: Born beams, as in diffgen
        "WeakSingleBoson:ffbar2gmZ = on",
        "WeakZ0:gmZmode = 0",  # full gamma*/Z interference
        f"23:m0 = {float(params['m_z'])!r}",
        f"23:mWidth = {float(params['gamma_z'])!r}",
        f"StandardModel:sin2thetaW = {float(params['sin2_theta_w'])!r}",
        f"StandardModel:sin2thetaWbar = {float(params['sin2_theta_w'])!r}",
        f"StandardModel:alphaEMmZ = {pythia_alpha_em(params['alpha_em'])!r}",
        "SigmaProcess:alphaEMorder = -1",  # alpha_em fixed at its m_Z value, as diffgen's params
        "Next:numberCount = 0",
        "Print:quiet = on",
        *PYTHIA_MODES[mode][1],
    ]


class PythiaGenerator:
    """Pythia 8 initialised for one mode, generating batches of events (:func:`pythia_generator`).

    Attributes:
      mode: a key of :data:`PYTHIA_MODES`.
      settings: the Pythia settings it was initialised with.
      init_s: initialisation time (s).
    """

    def __init__(self, pythia: Any, mode: str, params: Mapping[str, float], settings: list[str], init_s: float):
        self.pythia, self.mode, self.settings, self.init_s = pythia, mode, settings, init_s
        self._alpha_em = float(params["alpha_em"])

    def generate(self, n: int) -> None:
        """Generate ``n`` events (the timed work)."""
        with _quiet_fd1():
            for _ in range(n):
                self.pythia.next()

    def rate(self, n: int, repeat: int = 1) -> dict[str, Any]:
        """Events/s of the fastest of ``repeat`` batches of ``n`` events and :meth:`summary` (:func:`pythia_rate`)."""
        if not isinstance(repeat, int) or repeat < 1:
            raise ValueError(f"pythia_rate: repeat must be an int >= 1, got {repeat!r}")
        wall, cores = best_time_and_cores(self.generate, n, repeat=repeat)
        return {"events_per_s": n / wall, "repeat": repeat, "cores": cores, **self.summary()}

    def summary(self, n_count: int = 20) -> dict[str, Any]:
        """Cross section and mean multiplicity after the events generated so far (see :func:`pythia_rate`)."""
        # Multiplicity from a few further events, kept out of any timing (a Python loop per
        # particle would charge Pythia for binding overhead).
        n_final = 0
        with _quiet_fd1():
            for _ in range(n_count):
                self.pythia.next()
                # With PartonLevel:all = off the event record stays empty; the process record
                # then holds the final state.
                event = self.pythia.event if self.pythia.event.size() > 0 else self.pythia.process
                n_final += sum(1 for i in range(event.size()) if event[i].isFinal())
        info = self.pythia.infoPython()
        alpha_py = pythia_alpha_em(self._alpha_em)
        return {
            "init_s": self.init_s,
            # mb -> pb, and from Pythia's alpha_em to diffgen's (sigma ∝ alpha_em²)
            "sigma_pb": float(info.sigmaGen()) * 1e9 * (self._alpha_em / alpha_py) ** 2,
            "alpha_em_pythia": alpha_py,
            "mean_multiplicity": n_final / n_count,
            "settings": self.settings,
        }


def pythia_generator(mode: str, params: Mapping[str, float], *, seed: int = 1) -> PythiaGenerator | None:
    """Pythia 8 initialised for ``mode`` with the diffgen parameters; ``None`` without Pythia.

    Args:
      mode: a key of :data:`PYTHIA_MODES` (``"mumu"`` or ``"hadrons"``).
      params: diffgen's electroweak parameters as floats (``sqrt_s``, ``m_z``, ``gamma_z``,
        ``sin2_theta_w``, ``alpha_em``), written into the settings by :func:`pythia_settings`.
      seed: Pythia's random seed.

    Returns:
      a :class:`PythiaGenerator`, or ``None`` if ``pythia8mc`` does not import.

    Raises:
      RuntimeError: Pythia rejected a setting or failed to initialise.
    """
    try:
        import pythia8mc
    except ImportError:
        return None
    settings = [*pythia_settings(mode, params), "Random:setSeed = on", f"Random:seed = {int(seed)}"]
    t0 = time.perf_counter()
    with _quiet_fd1():
        pythia = pythia8mc.Pythia("", False)
        for line in settings:
            if not pythia.readString(line):
                raise RuntimeError(f"Pythia rejected the setting {line!r}")
        if not pythia.init():
            raise RuntimeError(f"Pythia failed to initialise for mode {mode!r}")
    return PythiaGenerator(pythia, mode, params, settings, time.perf_counter() - t0)


def pythia_rate(
    mode: str, params: Mapping[str, float], n: int, *, seed: int = 1, repeat: int = 1
) -> dict[str, Any] | None:
    """Events/s of Pythia 8 generating ``n`` events of ``mode``; ``None`` without Pythia.

    With ``repeat`` > 1 it generates ``repeat`` batches of ``n`` events and keeps the fastest,
    as the suite keeps diffgen's best of ``repeat`` calls: on a machine whose speed drifts,
    a single short run gives the ratio of two moments rather than of two programs.

    Returns:
      dict with ``events_per_s`` (of the fastest batch), ``repeat``, ``cores`` (process CPU
      time / wall time of that batch, ≈ 1:
      Pythia runs in one thread), ``init_s`` (initialisation time), ``alpha_em_pythia`` (the
      α_em Pythia ran with, :func:`pythia_alpha_em`), ``sigma_pb`` (Pythia's
      cross-section estimate), ``mean_multiplicity`` (final-state particles) and the
      ``settings`` used.
    """
    if not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"pythia_rate: repeat must be an int >= 1, got {repeat!r}")
    gen = pythia_generator(mode, params, seed=seed)
    return None if gen is None else gen.rate(n, repeat)
