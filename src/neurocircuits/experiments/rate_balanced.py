r"""``rate-balanced``: macroscopic fluctuations of critically balanced vs inhibition-dominated
E/I rate networks, and the transition to a coherent state.

Networks: :math:`\phi = 1 + \tanh`, :math:`J_{ij} = s_j J_0/\sqrt N + g z_{ij}/\sqrt N`,
:math:`f = 0.8` excitatory. *Critical*: :math:`\gamma = f/(1-f)`, no drive. *Inhibition-
dominated*: :math:`\gamma` larger, driven by :math:`I = I_0\sqrt N` so that it stays active.

1. Scaling: the time-std of the macroscopic field :math:`h = (J_0/\sqrt N)\sum_j s_j\phi(u_j)`
   over the measured window, per network, over sizes N, against
   :func:`neurocircuits.rate.macroscopic.macroscopic_fluctuations` for the same window. Both
   sides describe the same population of networks: every realisation, including the ones at a
   fixed point (about a quarter of the critical networks at every N; the theory predicts the
   fraction, reported as ``quiescent_fraction_*`` and ``..._theory``). The headline comparison
   and the fitted exponents of std(h) ∝ N^a use the median over networks; means over all
   networks and over the fluctuating ones are reported as well.
2. Coherent state. Hayakawa & Fukai (2020) report "a probabilistic transition to a coherent
   state" as J0 or the input grows; their definition was not available to us, so ours comes
   from what the dynamics of this model do. A critical network started from random initial
   conditions ends, within about a second, in one of three states, one per network (a
   later window or a pulse rarely changes it):

   - *fixed point*: h constant (std(h) < ``quiescent_threshold``); the units sit at a
     saturated (mean rate ~1.9) or near-silent (~0.1) state, or at intermediate static rates;
   - *asynchronous*: h irregular (the "spontaneous irregular macroscopic rhythm"), the units
     chaotic, each weakly correlated with h;
   - *coherent*: a macroscopic oscillation: h periodic (periods 60–500 ms at N = 500), every
     fluctuating unit repeating with h's period (median autocorrelation of the units' rates at
     that lag 0.99, against 0.09 in asynchronous trials, N = 500): the microscopic chaos is
     replaced by a network-wide limit cycle locked to the macroscopic rhythm.

   A trial is *coherent* when the periodicity of h (the highest autocorrelation peak after the
   first zero crossing, at lags up to ``coherent_max_period``) is at least
   ``periodicity_threshold`` and h fluctuates. Over fluctuating trials the periodicity is
   bimodal (N = 500, 640 trials: 98 of 323 fluctuating ones in [0.9, 1], a broad mode at
   0.1–0.4, 8–11 per 0.1 bin in 0.5–0.8; the summary keeps the histogram), so the threshold
   sits in the gap; the Golomb–Hansel synchrony chi used before is not bimodal. Oscillations
   slower than ``coherent_max_period`` count as asynchronous (the window must hold several
   periods). The state is read in a window of ``coherent_window`` ms:

   - vs J0 (spontaneous, no input): the window after ``t_transient``;
   - vs pulse amplitude A (J0 = ``coherent_J0_amp``): the same networks, continued from their
     state at the end of that window, get a pulse of amplitude A for ``coherent_pulse`` ms
     (to every unit by default, ``coherent_pulse_fraction``), and the state is read in the
     window starting ``coherent_gap`` ms after it ("right after") and in the next one
     ("late"). Besides P(coherent) the summary gives the probability of entering the coherent
     state (not coherent before → coherent right after) and of leaving it, all with binomial
     errors and 68% Wilson intervals. Right after a pulse, a network relaxing back to its
     fixed point counts as asynchronous (h is not constant yet).
   - entrainment (a different, trial-to-trial notion of coherence): every network of the
     amplitude sweep also runs from a second initial condition; among the networks whose two
     copies differ at the pulse onset, ``entrained_vs_amplitude`` is the fraction whose copies
     are within ``entrain_tol`` (r.m.s. distance of u) ``coherent_gap`` ms after the pulse: the
     response no longer depends on the state the pulse met. Entrainment vs J0
     (``entrain_vs_J0``): the networks of the spontaneous sweep, each also run from a second
     initial condition, get one pulse of amplitude ``entrain_amplitude`` at the end of their
     window, read the same way, and (``entrain_vs_J0_scaled``), from the same state, one of
     amplitude ``entrain_amplitude_per_J0`` × J0, and (``entrain_vs_J0_subset``) one of
     amplitude ``entrain_subset_amplitude`` to the first ``entrain_subset_fraction`` of the
     units only (excitatory). The networks of the amplitude sweep also get, from their onset
     state, the pulses of every amplitude to that subset (``entrained_vs_amplitude_subset``;
     entrainment only, no windows after them).

   The theory's fraction of networks at a fixed point vs J0
   (:func:`~neurocircuits.rate.macroscopic.macroscopic_fluctuations`) is reported next to the
   measured one. We have no tested prediction of the coherent fraction, so none is reported
   (the theory's Nyquist-unstable share of operating points, 0.26–0.33 for J0 = 1–5, is a
   share of operating-point weight, not of networks, and is flat too).

   What it gives (CPU, g = 3, 2 s windows; ± binomial s.e.): the coherent state is reached
   *spontaneously* and is a property of the network (its attractor), not of the input.
   P(coherent) vs J0 = 1…5 is flat: 0.20, 0.23, 0.15, 0.13, 0.17 (± 0.03; N = 500, 128
   trials) and 0.11, 0.12, 0.12, 0.16, 0.09 (± 0.03; N = 1000, 100 trials). What rises with
   J0 is the fixed-point fraction (0.24, 0.43, 0.48, 0.51, 0.63 at N = 1000; theory 0.24,
   0.45, 0.57, 0.64, 0.66), at the expense of the asynchronous state (0.65 → 0.28). A common
   pulse does not induce coherence: right after it P(coherent) is 0.11, 0.09, 0.08, 0.06, 0.07
   for A = 0, 1, 2, 4, 8 (N = 1000, J0 = 3, the same 100 networks; 0.09 before), the
   probability of entering the coherent state is 0.01–0.04 at every A (0.04 at A = 0: the
   spontaneous rate over the same 2 s), a pulse breaks 44% of the coherent trials (4 of 9),
   and one window later the networks are back in their former state (P(coherent) 0.09–0.13;
   8–14% changed state at every A). A pulse to 5% of the units (excitatory) gives the same
   (N = 500, 64 trials). What does rise with the amplitude is entrainment: at N = 500, J0 = 3
   (128 networks, 71 with distinct copies at the onset) the two copies agree 100 ms after the
   pulse in 0, 0.01, 0.01, 0.09, 0.49 (± 0.06) of the networks for A = 0, 1, 2, 4, 8 (median
   distance 1.16, 1.10, 1.04, 0.23, 0.01); a strong pulse saturates the units and resets the
   network, and the chaos then separates part of the copies again (0.24 still agree at the
   end of the late window at A = 8). Entrainment does *not* rise with J0 at a fixed
   amplitude; it falls: with the same pulse (100 ms, every unit, read 100 ms after it) of
   A = 8, at N = 500 (128 networks per J0, of which 87, 80, 64, 63, 63 have distinct copies
   at the onset) the copies agree in 0.89, 0.62, 0.42, 0.37, 0.29 (± 0.03, 0.05, 0.06, 0.06,
   0.06; 68% Wilson [0.85, 0.91] at J0 = 1, [0.23, 0.35] at J0 = 5) of the networks for
   J0 = 1…5. The whole J0 × A table (the same networks) says the same: A = 4 gives 0.22,
   0.10, 0.12, 0.14, 0.10 (± 0.03–0.04), A = 16 gives 1, 1, 1, 0.92, 0.89; below A = 4 the
   fraction is 0–0.06 at every J0 (at A = 0, 2 of 63 networks at J0 = 5, copies that
   converge without a pulse). The amplitude that entrains half of the networks grows with J0
   (interpolated: A ≈ 6 at J0 = 1, ≈ 10 at J0 = 5), but more slowly than J0: a pulse of a
   fixed size in units of J0 entrains more at larger J0. With A = 3 J0 (the same networks
   and onset states) the fraction rises, 0.06, 0.28, 0.52, 0.75, 0.78 (± 0.02, 0.05, 0.06,
   0.05, 0.05) for J0 = 1…5; A = 2 J0 gives 0.02, 0.10, 0.19, 0.37, 0.44 and A = 4 J0 0.22,
   0.62, 0.84, 0.92, 1. A pulse to every unit drives excitatory and inhibitory units alike:
   under critical balance (:math:`\sum_j s_j = 0`) equal rate changes cancel in h.

   The reference's input goes to "a small number of neurons". A pulse to n_s excitatory units
   moves h by about J0 n_s Δφ/√N, so J0 amplifies it; with such a *subset* pulse of a fixed
   amplitude, entrainment *rises* with J0. Measured on the CPU on 2026-12-07 (the same 100 ms
   pulse, to the first units, read 100 ms after it, tolerance 0.01; a new sample of networks,
   every pulse from the same onset states). At N = 500, 128 networks per J0 (79, 83, 71, 59,
   60 with distinct copies at the onset), for J0 = 1…5:

   ========================  ====  ====  ====  ====  ====
   pulse                     J0=1  J0=2  J0=3  J0=4  J0=5
   ========================  ====  ====  ====  ====  ====
   A = 8, every unit         0.87  0.67  0.44  0.41  0.35
   A = 8, fraction 0.2       0.27  0.40  0.37  0.53  0.67
   A = 16, fraction 0.2      0.29  0.47  0.51  0.61  0.70
   A = 4, fraction 0.4       0.38  0.66  0.73  0.76  0.80
   A = 8, fraction 0.1       0.11  0.10  0.10  0.20  0.33
   A = 8, fraction 0.05      0.04  0.04  0.06  0.07  0.22
   A = 0 (no pulse)          0.03  0     0.01  0     0.02
   ========================  ====  ====  ====  ====  ====

   (s.e. 0.02–0.07; fraction 0.2 at A = 8: 68% Wilson [0.22, 0.32] at J0 = 1, [0.60, 0.72] at
   J0 = 5). At J0 = 3 the same subset pulse (fraction 0.2) entrains 0.01, 0.04, 0.13, 0.37,
   0.51 of the networks for A = 0, 2, 4, 8, 16: it rises with the amplitude too. Fractions
   0.05 and 0.1 (25 and 50 units) entrain little below J0 = 5 at any A up to 16 (≤ 0.2); 0.4
   (200 of the 400 excitatory units) saturates (0.87–0.98 from A = 8). At N = 1000 (100
   networks per J0; 71, 67, 50, 53, 40 distinct) a pulse of A = 8 to a fraction 0.2 entrains
   0.28, 0.57, 0.52, 0.60, 0.80 (± 0.05–0.07), one to a fraction 0.141 (n_s ∝ √N: 141 units,
   as 100 at N = 500) 0.15, 0.36, 0.30, 0.49, 0.57 (± 0.04–0.08), one to every unit 0.86,
   0.66, 0.34, 0.34, 0.45. So the probabilistic transition rises with the input, as
   reported, and with J0 at a fixed input when the input is local (a subset of the excitatory
   units), as in the reference; for an input to every unit it falls with J0 at a fixed
   amplitude. The experiment reports the subset pulse (``entrain_subset_fraction`` 0.2,
   ``entrain_subset_amplitude`` 8) vs J0 and vs amplitude.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import Batch, Record, simulate
from .._core.errors import NeurocircuitsError
from ..rate import RateNetwork, one_plus_tanh
from ..rate.macroscopic import macroscopic_fluctuations
from ._base import Context, Experiment, Result, param, run_fingerprint


@dataclasses.dataclass(frozen=True)
class Config:
    sizes: tuple[int, ...] = param((1000, 2000, 4000, 8000, 16000), quick=(500, 1000, 2000),
                                   low=20, high=100_000, help="network sizes N")
    n_seeds: int = param(16, quick=4, low=2, high=1024, help="network realisations per N")
    n_seeds_largest: int = param(64, quick=0, low=0, high=4096,
                                 help="network realisations at the largest N, where simulation "
                                 "and theory are compared (0: n_seeds)")
    g: float = param(3.0, low=0.0, high=20.0, help="random-coupling gain")
    J0: float = param(1.0, low=0.0, high=20.0, help="mean-coupling strength")
    f: float = param(0.8, low=0.01, high=0.99, help="excitatory fraction")
    gamma_inhibitory: float = param(5.0, low=0.0, help="gamma of the inhibition-dominated net")
    drive_inhibitory: float = param(0.2, low=0.0, help="I0 of the drive I = I0 sqrt(N)")
    tau: float = param(10.0, low=1e-3, unit="ms", help="time constant")
    dt: float = param(1.0, low=1e-4, unit="ms", help="integration step")
    t_transient: float = param(1000.0, low=0.0, unit="ms", help="discarded transient")
    t_measure: float = param(4000.0, quick=1500.0, low=10.0, unit="ms", help="measured time")
    max_batch_bytes: float = param(16e9, low=1e6, help="bytes of coupling matrices per batch")
    coherent_n: int = param(2000, quick=300, low=20, help="N of the coherent-state trials")
    coherent_trials: int = param(200, quick=32, low=2, help="trials (networks) per point")
    coherent_J0: tuple[float, ...] = param((1.0, 2.0, 3.0, 4.0, 5.0), quick=(1.0, 3.0, 5.0),
                                           low=0.0, help="J0 values (spontaneous)")
    coherent_amplitudes: tuple[float, ...] = param((0.0, 1.0, 2.0, 4.0, 8.0),
                                                   quick=(0.0, 2.0, 8.0), low=0.0,
                                                   help="pulse amplitudes at J0 = coherent_J0_amp")
    coherent_J0_amp: float = param(3.0, low=0.0, help="J0 of the amplitude sweep")
    coherent_window: float = param(2000.0, quick=1500.0, low=20.0, unit="ms",
                                   help="window in which a trial's state is read")
    coherent_pulse: float = param(100.0, low=5.0, unit="ms", help="pulse duration")
    coherent_pulse_fraction: float = param(1.0, low=0.0, high=1.0,
                                           help="fraction of units pulsed (excitatory first)")
    coherent_gap: float = param(100.0, low=0.0, unit="ms",
                                help="delay from the pulse's end to the window after it")
    entrain_amplitude: float = param(8.0, quick=8.0, low=0.0,
                                     help="pulse amplitude of the entrainment sweep vs J0")
    entrain_amplitude_per_J0: float = param(3.0, quick=3.0, low=0.0,
                                            help="second entrainment sweep vs J0: amplitude "
                                            "this times J0")
    entrain_subset_fraction: float = param(0.2, low=0.0, high=1.0,
                                           help="third entrainment sweep vs J0, and one vs "
                                           "amplitude: fraction of the units pulsed "
                                           "(excitatory first; 0.8 are excitatory)")
    entrain_subset_amplitude: float = param(8.0, low=0.0,
                                            help="pulse amplitude of the subset entrainment "
                                            "sweep vs J0 (entrain_subset_fraction of the units)")
    entrain_tol: float = param(0.01, low=0.0, help="r.m.s. distance of u below which two "
                               "copies of a network count as entrained by the pulse")
    coherent_max_period: float = param(500.0, low=10.0, unit="ms",
                                       help="longest period of a coherent oscillation")
    periodicity_threshold: float = param(0.8, low=0.0, high=1.0,
                                         help="autocorrelation of h at its period for coherence")
    quiescent_threshold: float = param(0.02, low=0.0,
                                       help="std(h) below which a network is at a fixed point")
    theory_grid: int = param(41, quick=15, low=5, high=201, help="operating points in theory")
    theory_loops: int = param(300, quick=100, low=10, high=10_000,
                              help="loop-gain samples per operating point in theory")

    def check(self):
        from .._core.errors import ConfigError

        if len(self.sizes) < 2:
            raise ConfigError(f"sizes={self.sizes} needs at least 2 sizes to fit an exponent")
        if self.dt > self.tau:
            raise ConfigError(f"dt={self.dt} exceeds tau={self.tau}; allowed: dt <= tau")
        if 0 < self.n_seeds_largest < self.n_seeds:
            raise ConfigError(
                f"n_seeds_largest={self.n_seeds_largest} is below n_seeds={self.n_seeds}; "
                "allowed: 0 (the same as n_seeds) or >= n_seeds")
        if self.coherent_window < 2 * self.coherent_max_period:
            raise ConfigError(
                f"coherent_window={self.coherent_window} ms cannot show a period up to "
                f"coherent_max_period={self.coherent_max_period} ms: the window must hold two; "
                f"use coherent_window >= {2 * self.coherent_max_period:g} or a smaller "
                "coherent_max_period"
            )


def _field_std(config: Config, n: int, gamma: float, bias: float, key, ctx,
               first: int = 0, count: int | None = None) -> np.ndarray:
    """Time-std of h for networks ``first, ..., first + count - 1`` (default: the ``n_seeds``
    first) of size n, batched in groups (network i's coupling does not depend on the batch)."""
    n_steps = int(round((config.t_transient + config.t_measure) / config.dt)) // 10 * 10
    skip = int(round(config.t_transient / config.dt)) // 10
    count = config.n_seeds if count is None else count
    group = max(1, min(count, int(config.max_batch_bytes // (4 * n * n))))
    stds = []
    for start in range(first, first + count, group):
        size = min(group, first + count - start)
        keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(start, start + size))
        nets = eqx.filter_vmap(lambda k: RateNetwork.random(
            k, n, g=config.g, J0=config.J0, f=config.f, gamma=gamma, tau=config.tau,
            bias=bias))(keys)
        signs = nets.coupling.signs[0]
        scale = config.J0 / math.sqrt(n)
        record = Record(every=10, fn=lambda u, t: scale * jnp.sum(signs * one_plus_tanh(u)))
        u0 = jax.random.normal(jax.random.fold_in(key, 10_000 + start), (size, n))
        traj = simulate(nets, u0, dt=config.dt, n_steps=n_steps,
                        key=jax.random.split(jax.random.fold_in(key, 20_000 + start), size),
                        record=record, batch=Batch(model=True),
                        progress=None if ctx is None else ctx.progress)
        stds.append(np.asarray(traj.ys)[:, skip:].std(axis=1))
    return np.concatenate(stds)


def _periodicity(h: np.ndarray, max_lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Periodicity of each row of ``h`` (trials, samples): the height of the highest peak of its
    normalised autocorrelation after the first zero crossing, at lags up to ``max_lag`` samples,
    and that lag (the period). ~1 for a periodic signal, small for an irregular one; 0 (lag 0)
    when the autocorrelation does not cross zero within ``max_lag`` or the row is constant."""
    x = h - h.mean(axis=1, keepdims=True)
    n = x.shape[1]
    max_lag = int(max(1, min(max_lag, n // 2)))
    spec = np.fft.rfft(x, n=2 * n, axis=1)
    ac = np.fft.irfft(np.abs(spec) ** 2, n=2 * n, axis=1)[:, :max_lag + 1]
    ac = ac / (n - np.arange(max_lag + 1))  # unbiased estimate at every lag
    ac = ac / np.maximum(ac[:, :1], 1e-30)
    crossed = np.maximum.accumulate(ac < 0, axis=1)
    masked = np.where(crossed, ac, -np.inf)
    lag = np.argmax(masked, axis=1)
    peak = masked[np.arange(len(x)), lag]
    ok = np.isfinite(peak) & (x.std(axis=1) > 1e-6)
    return np.where(ok, peak, 0.0), np.where(ok, lag, 0)


def _unit_locking(r: np.ndarray, lag: np.ndarray) -> np.ndarray:
    """Mean over the fluctuating recorded units of their rate's autocorrelation at lag ``lag``
    (h's period): ~1 when every unit repeats with the macroscopic rhythm. NaN where no unit
    fluctuates or no period was found. ``r``: (trials, samples, units)."""
    out = np.full(len(r), np.nan)
    for i, (ri, li) in enumerate(zip(r, lag)):
        x = ri - ri.mean(axis=0)
        var = x.var(axis=0)
        ok = var > 1e-6
        if li > 0 and ok.any():
            out[i] = float(np.mean((x[:-li, ok] * x[li:, ok]).mean(axis=0) / var[ok]))
    return out


# states of a trial in a window
FIXED, ASYNC, COHERENT = 0, 1, 2
STATE_NAMES = ("fixed_point", "asynchronous", "coherent")


def _classify(config: Config, h: np.ndarray) -> dict:
    """State of each trial from its macroscopic field ``h`` (trials, samples every 5 dt) over
    one window: fixed point (std h < ``quiescent_threshold``), coherent (h periodic: its
    periodicity >= ``periodicity_threshold`` with a period <= ``coherent_max_period``), or
    asynchronous (the rest: irregular h)."""
    per, lag = _periodicity(h, int(config.coherent_max_period / (5 * config.dt)))
    std = h.std(axis=1)
    state = np.where(std < config.quiescent_threshold, FIXED,
                     np.where(per >= config.periodicity_threshold, COHERENT, ASYNC))
    return {"state": state, "periodicity": per, "period": lag * 5 * config.dt, "h_std": std,
            "lag": lag}


def _pulse_spec(config: Config):
    """A function mapping an entry of ``amplitudes`` (:func:`_coherent_trials`) to a pair
    (amplitude, pulsed fraction): a number A is (A, ``coherent_pulse_fraction``), a pair
    (A, fraction) is itself. The fraction must be in [0, 1]."""
    def spec(entry):
        a, fraction = ((entry, config.coherent_pulse_fraction) if np.ndim(entry) == 0
                       else tuple(entry))
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"pulse {entry!r}: the pulsed fraction {fraction!r} is not in "
                             "[0, 1]; give a pulse as an amplitude A or a pair (A, fraction)")
        return float(a), float(fraction)
    return spec


def _coherent_trials(config: Config, J0: float, amplitudes, key, twins: bool = False,
                     post_windows: bool = True, kicks=()) -> dict:
    """Batched trials (a fresh network and initial condition each) at ``J0``: the state in the
    window [t_transient, t_transient + coherent_window] (spontaneous, "before"), then for each
    pulse (the same networks, continued from the same state) a pulse of amplitude A to the
    first fraction of the units (excitatory first) for ``coherent_pulse`` ms, and the state in
    the window that starts ``coherent_gap`` ms after the pulse ("after") and in the next window
    ("late"). Each entry of ``amplitudes`` is an amplitude A (pulsed fraction
    ``coherent_pulse_fraction``, all units by default) or a pair (A, fraction).

    ``twins``: every network also runs from a second initial condition; the r.m.s. distance
    between the two copies' ``u`` is returned at the pulse onset, at the start of the window
    after the pulse and at the end of the late window (is the response to the pulse the same
    whatever the state it met?). ``post_windows=False`` stops ``coherent_gap`` ms after the
    pulse: no state after it (``after`` is empty), only the twins' distances (``end`` NaN).
    ``kicks``: further pulses (entries as in ``amplitudes``), each also from the state at the
    onset, read as with ``post_windows=False``: only the twins' distances, returned under
    ``kick_distance`` (needs ``twins``)."""
    if kicks and not twins:
        raise ValueError("kicks are read from the twins' distances: pass twins=True")
    spec = _pulse_spec(config)  # checked before any simulation
    pulses = [(spec(e), post_windows, "distance") for e in amplitudes]
    pulses += [(spec(e), False, "kick_distance") for e in kicks]
    n, trials, dt = config.coherent_n, config.coherent_trials, config.dt
    every = 5
    steps = lambda t: max(every, int(round(t / dt)) // every * every)  # noqa: E731
    n_pre, n_win = steps(config.t_transient + config.coherent_window), steps(config.coherent_window)
    n_pulse, n_gap = steps(config.coherent_pulse), steps(config.coherent_gap)
    keys = jax.random.split(key, trials)
    nets = eqx.filter_vmap(lambda k: RateNetwork.random(k, n, g=config.g, J0=J0, f=config.f,
                                                        tau=config.tau))(keys)
    signs = nets.coupling.signs[0]
    scale = J0 / math.sqrt(n)
    n_rec = min(n, 50)
    record = Record(every=every, fn=lambda u, t: {
        "h": scale * jnp.sum(signs * one_plus_tanh(u)), "r": one_plus_tanh(u[:n_rec])})
    u0 = jax.random.normal(jax.random.fold_in(key, 1), (trials, n))
    sim_keys = jax.random.split(jax.random.fold_in(key, 2), trials)
    if twins:
        nets = jax.tree_util.tree_map(
            lambda x: jnp.concatenate([x, x]) if eqx.is_array(x) else x, nets)
        u0 = jnp.concatenate([u0, jax.random.normal(jax.random.fold_in(key, 3), (trials, n))])
        sim_keys = jnp.concatenate([sim_keys, sim_keys])
    batch = Batch(model=True)

    def distance(u):
        u = np.asarray(u)
        return np.sqrt(np.mean((u[:trials] - u[trials:]) ** 2, axis=1))

    pre = simulate(nets, u0, dt=dt, n_steps=n_pre, key=sim_keys, record=record, batch=batch,
                   progress=False)
    w = n_win // every
    before = _classify(config, np.asarray(pre.ys["h"])[:trials, -w:])
    before["locking"] = _unit_locking(np.asarray(pre.ys["r"])[:trials, -w:], before["lag"])
    t_on = n_pre * dt
    after, dists = [], {"distance": [], "kick_distance": []}
    for (a, fraction), windows, into in pulses:
        target = (jnp.arange(n) < round(fraction * n)).astype(jnp.float32)
        pulse = lambda t, a=a, target=target: (  # noqa: E731
            a * ((t >= t_on) & (t < t_on + n_pulse * dt)) * target)
        kick = simulate(nets, pre.final_state, dt=dt, n_steps=n_pulse + n_gap, key=sim_keys,
                        t0=t_on, inputs=pulse, batch=batch, progress=False)
        if not windows:
            if twins:
                dists[into].append({"onset": distance(pre.final_state),
                                    "after": distance(kick.final_state),
                                    "end": np.full(trials, np.nan)})
            continue
        post = simulate(nets, kick.final_state, dt=dt, n_steps=2 * n_win, key=sim_keys,
                        t0=t_on + (n_pulse + n_gap) * dt, inputs=pulse, record=record,
                        batch=batch, progress=False)
        h_post = np.asarray(post.ys["h"])[:trials]
        r_post = np.asarray(post.ys["r"])[:trials]
        res = []
        for lo in (0, w):  # right after; a window later
            r = _classify(config, h_post[:, lo:lo + w])
            r["locking"] = _unit_locking(r_post[:, lo:lo + w], r["lag"])
            res.append(r)
        after.append(res)
        if twins:
            dists[into].append({"onset": distance(pre.final_state),
                                "after": distance(kick.final_state),
                                "end": distance(post.final_state)})
    return {"before": before, "after": after, **dists}


def _binomial(k: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Proportion k/n, its binomial standard error and the 68% Wilson score interval."""
    k = np.asarray(k, float)
    p = k / n
    z = 1.0
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    ci = np.clip(np.stack([centre - half, centre + half], axis=-1), 0.0, 1.0)
    return p, np.sqrt(p * (1 - p) / n), ci


def _fit_exponent(sizes, values) -> float:
    """Slope of log(values) vs log(sizes) over the finite, positive values (NaN if < 2)."""
    sizes, values = np.asarray(sizes, float), np.asarray(values, float)
    ok = np.isfinite(values) & (values > 0)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(sizes[ok]), np.log(values[ok]), 1)[0])


def _median_ci(values) -> tuple[float, float]:
    """A 68% confidence interval of the median from order statistics (binomial ranks)."""
    v = np.sort(np.asarray(values, float))
    n = v.size
    half = 0.5 * math.sqrt(n)
    lo = int(max(math.floor(n / 2 - half), 0))
    hi = int(min(math.ceil(n / 2 + half), n - 1))
    return float(v[lo]), float(v[hi])


def _entrainment(dist: list[dict], tol: float, when: str):
    """Entrainment from the twins' distances (one dict per amplitude, as returned by
    :func:`_coherent_trials`): over the networks whose two copies differ at the pulse onset
    (r.m.s. distance of u > ``tol``; the onset does not depend on the amplitude), the fraction
    whose copies are within ``tol`` at ``when`` ("after": ``coherent_gap`` ms after the pulse;
    "end": end of the late window). Returns ((p, s.e., 68% Wilson interval) per amplitude, the
    mask of distinct networks); NaN where no network is distinct."""
    distinct = dist[0]["onset"] > tol
    n = int(distinct.sum())
    if not n:
        nan = np.full(len(dist), np.nan)
        return (nan, nan, np.full((len(dist), 2), np.nan)), distinct
    return _binomial([(d[when][distinct] < tol).sum() for d in dist], n), distinct


def _coherent_state(config: Config, key, ctx: Context | None = None,
                    fingerprint: str = "") -> tuple[dict, dict]:
    """Spontaneous coherence vs J0 and the effect of a pulse vs amplitude: the summary entry
    ``coherent_prob`` and the per-trial data. With ``ctx``, each batch of trials is a
    resumable step of the run."""
    trials = config.coherent_trials

    def step(name, compute):
        return compute() if ctx is None else ctx.resumable(name, fingerprint, compute)

    # the spontaneous trials vs J0; their networks, each also run from a second initial
    # condition, then get a pulse of amplitude entrain_amplitude, one of
    # entrain_amplitude_per_J0 * J0, and one of entrain_subset_amplitude to a fraction
    # entrain_subset_fraction of the units (entrainment vs J0; each pulse from the same state)
    subset = config.entrain_subset_fraction
    out_j0 = [step(f"coherent_J0_{i}", lambda i=i, j0=j0: _coherent_trials(
        config, j0, (config.entrain_amplitude, config.entrain_amplitude_per_J0 * j0,
                     (config.entrain_subset_amplitude, subset)),
        jax.random.fold_in(key, i), twins=True, post_windows=False))
        for i, j0 in enumerate(config.coherent_J0)]
    res_j0 = [r["before"] for r in out_j0]
    # the amplitude sweep; the same networks and onset states also get the subset pulses (read
    # for entrainment only: no windows after them)
    res_amp = step("coherent_amplitude", lambda: _coherent_trials(
        config, config.coherent_J0_amp, config.coherent_amplitudes, jax.random.fold_in(key, 100),
        twins=True, kicks=[(a, subset) for a in config.coherent_amplitudes]))
    before = res_amp["before"]
    right = [r[0] for r in res_amp["after"]]
    late = [r[1] for r in res_amp["after"]]

    def stack(results, name):
        return np.stack([r[name] for r in results])

    st_j0, st_right, st_late = (stack(x, "state") for x in (res_j0, right, late))

    def frac(states, code):
        return _binomial((states == code).sum(axis=-1), trials)

    p_j0, e_j0, ci_j0 = frac(st_j0, COHERENT)
    p_amp, e_amp, ci_amp = frac(st_right, COHERENT)
    p_late, e_late, _ = frac(st_late, COHERENT)
    p_before, e_before, _ = frac(before["state"], COHERENT)
    was = before["state"] == COHERENT
    n_not, n_was = int((~was).sum()), int(was.sum())
    nan = np.full(len(config.coherent_amplitudes), np.nan)
    p_enter, e_enter, _ = (_binomial((st_right[:, ~was] == COHERENT).sum(axis=1), n_not)
                           if n_not else (nan, nan, None))
    p_leave, e_leave, _ = (_binomial((st_right[:, was] != COHERENT).sum(axis=1), n_was)
                           if n_was else (nan, nan, None))
    # entrainment: do the two copies of a network (different states at the onset) leave the
    # pulse in the same state?
    tol = config.entrain_tol
    dist = res_amp["distance"]
    ent, distinct = _entrainment(dist, tol, "after")
    n_distinct = int(distinct.sum())
    ent_end, _ = _entrainment(dist, tol, "end")
    p_ent, e_ent, ci_ent = ent
    p_ent_end, e_ent_end, _ = ent_end
    (p_ent_sub, e_ent_sub, ci_ent_sub), _ = _entrainment(res_amp["kick_distance"], tol, "after")
    # entrainment vs J0 at one amplitude: one pulse per J0, its own networks
    ent_j0 = [_entrainment(r["distance"], tol, "after") for r in out_j0]
    n_distinct_j0 = [int(d.sum()) for _, d in ent_j0]

    def entrained_vs_j0(pulse: int, **fields) -> dict:
        # pulse: 0 the common pulse, 1 the one scaled with J0, 2 the one to a subset
        p, err, ci = (np.array([e[0][i][pulse] for e in ent_j0]) for i in range(3))
        return {"J0": list(config.coherent_J0), **fields, "p": p.tolist(), "err": err.tolist(),
                "ci68": ci.tolist(), "n_distinct": n_distinct_j0}

    def distance_after(pulse: int) -> list[float]:
        return [float(np.median(r["distance"][pulse]["after"][d])) if d.any() else float("nan")
                for r, (_, d) in zip(out_j0, ent_j0)]

    # evidence for the definition: periodicity is bimodal over fluctuating trials, and in a
    # coherent trial every unit repeats with h's period (locking ~1), unlike asynchronous ones
    per = np.concatenate([stack(res_j0, "periodicity").ravel(), before["periodicity"]])
    fluct = np.concatenate([st_j0.ravel(), before["state"]]) != FIXED
    lock = np.concatenate([stack(res_j0, "locking").ravel(), before["locking"]])
    states = np.concatenate([st_j0.ravel(), before["state"]])
    hist, edges = np.histogram(per[fluct], bins=10, range=(0.0, 1.0))

    def median_of(values, mask):
        v = values[mask & np.isfinite(values)]
        return float(np.median(v)) if v.size else float("nan")

    fp_theory = []
    for j0 in config.coherent_J0:
        try:
            fp_theory.append(macroscopic_fluctuations(
                g=config.g, J0=j0, f=config.f, gamma=config.f / (1 - config.f),
                n=config.coherent_n, n_grid=config.theory_grid, n_loop=config.theory_loops,
                t_window=config.coherent_window / config.tau).fixed_point_fraction)
        except NeurocircuitsError:  # e.g. J0 = 0: no macroscopic field, no prediction
            fp_theory.append(float("nan"))
    subset_vs_j0 = entrained_vs_j0(
        2, amplitude=config.entrain_subset_amplitude, fraction=subset,
        distance_after_median=distance_after(2),
        of=("as entrain_vs_J0 (the same networks and onset states), with a pulse of "
            f"amplitude {config.entrain_subset_amplitude:g} to a fraction {subset:g} of "
            f"the units (the first {round(subset * config.coherent_n)} of "
            f"{config.coherent_n}{', excitatory' if subset <= config.f else ''}): a "
            "local input, which moves the field h by about J0 times the summed rate "
            "change of the pulsed units / sqrt(N)"))
    summary = {
        # the headline: the probabilistic transition of Hayakawa & Fukai, read as entrainment
        # of the whole network by an input to a subset of its units (details below)
        "transition": {
            "measure": (
                f"entrainment of the whole network (N = {config.coherent_n}) by a "
                f"{config.coherent_pulse:g} ms pulse to a fraction {subset:g} of its units: the "
                "fraction of networks whose two copies, in different states at the onset, agree "
                f"(r.m.s. distance of u < {tol:g}) {config.coherent_gap:g} ms after it; err: "
                "binomial s.e. (entrain_vs_J0_subset, entrained_vs_amplitude_subset)"),
            "J0": list(config.coherent_J0),
            "vs_J0": subset_vs_j0["p"],
            "vs_J0_err": subset_vs_j0["err"],
            "vs_J0_amplitude": config.entrain_subset_amplitude,
            "amplitude": list(config.coherent_amplitudes),
            "vs_amplitude": np.asarray(p_ent_sub).tolist(),
            "vs_amplitude_err": np.asarray(e_ent_sub).tolist(),
            "vs_amplitude_J0": config.coherent_J0_amp,
        },
        "definition": (
            "coherent: a macroscopic oscillation. The field h = (J0/sqrt N) sum_j s_j phi(u_j), "
            "sampled every 5 dt over a window of coherent_window ms, is periodic: the highest "
            "peak of its autocorrelation after the first zero crossing, at lags <= "
            "coherent_max_period, is >= periodicity_threshold, and std(h) >= "
            "quiescent_threshold. fixed_point: std(h) < quiescent_threshold. asynchronous: "
            "the rest (irregular h)."),
        "N": config.coherent_n,
        "trials_per_point": trials,
        "J0": list(config.coherent_J0),
        "p_vs_J0": p_j0.tolist(),
        "p_vs_J0_err": e_j0.tolist(),
        "p_vs_J0_ci68": ci_j0.tolist(),
        "p_vs_J0_read": (f"spontaneous: no input, window [{config.t_transient:g}, "
                         f"{config.t_transient + config.coherent_window:g}] ms"),
        "fixed_point_fraction_vs_J0": frac(st_j0, FIXED)[0].tolist(),
        "fixed_point_fraction_vs_J0_theory": fp_theory,
        "asynchronous_fraction_vs_J0": frac(st_j0, ASYNC)[0].tolist(),
        "J0_amplitude_sweep": config.coherent_J0_amp,
        "amplitude": list(config.coherent_amplitudes),
        "p_vs_amplitude": p_amp.tolist(),
        "p_vs_amplitude_err": e_amp.tolist(),
        "p_vs_amplitude_ci68": ci_amp.tolist(),
        "p_vs_amplitude_read": (
            f"window of {config.coherent_window:g} ms starting {config.coherent_gap:g} ms after "
            f"a {config.coherent_pulse:g} ms pulse to a fraction "
            f"{config.coherent_pulse_fraction:g} of the units; the same networks at every "
            "amplitude"),
        "p_before_pulse": float(p_before),
        "p_before_pulse_err": float(e_before),
        "p_vs_amplitude_late": p_late.tolist(),
        "p_vs_amplitude_late_err": e_late.tolist(),
        "enter_prob_vs_amplitude": p_enter.tolist(),
        "enter_prob_vs_amplitude_err": e_enter.tolist(),
        "enter_prob_of": (f"P(coherent right after | not coherent before), over the {n_not} "
                          "trials not coherent before the pulse"),
        "leave_prob_vs_amplitude": p_leave.tolist(),
        "leave_prob_vs_amplitude_err": e_leave.tolist(),
        "leave_prob_of": (f"P(not coherent right after | coherent before), over the {n_was} "
                          "trials coherent before the pulse"),
        "fixed_point_fraction_vs_amplitude": frac(st_right, FIXED)[0].tolist(),
        "asynchronous_fraction_vs_amplitude": frac(st_right, ASYNC)[0].tolist(),
        "state_changed_late_vs_amplitude": (st_late != before["state"][None]).mean(1).tolist(),
        "entrained_vs_amplitude": np.asarray(p_ent).tolist(),
        "entrained_vs_amplitude_err": np.asarray(e_ent).tolist(),
        "entrained_vs_amplitude_ci68": np.asarray(ci_ent).tolist(),
        "entrained_end_vs_amplitude": np.asarray(p_ent_end).tolist(),
        "entrained_end_vs_amplitude_err": np.asarray(e_ent_end).tolist(),
        "entrained_of": (
            f"each network also runs from a second initial condition; over the {n_distinct} "
            f"networks whose two copies differ at the pulse onset (r.m.s. distance of u > "
            f"{tol:g}): the fraction whose copies are within {tol:g} {config.coherent_gap:g} ms "
            "after the pulse (entrained: the response does not depend on the state the pulse "
            "met), and at the end of the late window (_end)"),
        "entrain_vs_J0": entrained_vs_j0(
            0, amplitude=config.entrain_amplitude, distance_after_median=distance_after(0),
            of=(f"the spontaneous networks at each J0 (N = {config.coherent_n}), each also run "
                f"from a second initial condition, get a {config.coherent_pulse:g} ms pulse of "
                f"amplitude {config.entrain_amplitude:g} to a fraction "
                f"{config.coherent_pulse_fraction:g} of the units at the end of the spontaneous "
                f"window; over the n_distinct networks whose copies differ at the onset "
                f"(r.m.s. distance of u > {tol:g}), the fraction whose copies are within "
                f"{tol:g} {config.coherent_gap:g} ms after the pulse; err: binomial s.e., "
                "ci68: Wilson")),
        "entrain_vs_J0_scaled": entrained_vs_j0(
            1, amplitude_per_J0=config.entrain_amplitude_per_J0,
            amplitude=[config.entrain_amplitude_per_J0 * j0 for j0 in config.coherent_J0],
            of=("as entrain_vs_J0 (the same networks and onset states), with a pulse of "
                f"amplitude {config.entrain_amplitude_per_J0:g} J0: the input measured in "
                "units of the mean coupling")),
        "entrain_vs_J0_subset": subset_vs_j0,
        "entrained_vs_amplitude_subset": {
            "amplitude": list(config.coherent_amplitudes),
            "fraction": subset,
            "J0": config.coherent_J0_amp,
            "p": np.asarray(p_ent_sub).tolist(),
            "err": np.asarray(e_ent_sub).tolist(),
            "ci68": np.asarray(ci_ent_sub).tolist(),
            "n_distinct": n_distinct,
            "of": ("as entrained_vs_amplitude (the same networks and onset states), with the "
                   f"pulse to a fraction {subset:g} of the units (excitatory first) only; read "
                   f"{config.coherent_gap:g} ms after the pulse"),
        },
        "distance_after_median_vs_amplitude": [float(np.median(d["after"][distinct]))
                                               if n_distinct else float("nan") for d in dist],
        "periodicity_histogram": {"edges": edges.tolist(), "counts": hist.tolist(),
                                  "of": "fluctuating spontaneous trials (all J0)"},
        "unit_locking_median": {"coherent": median_of(lock, states == COHERENT),
                                "asynchronous": median_of(lock, states == ASYNC)},
    }
    data = {
        "coherent_state_vs_J0": (("J0", "trial"), st_j0),
        "periodicity_vs_J0": (("J0", "trial"), stack(res_j0, "periodicity")),
        "h_std_vs_J0": (("J0", "trial"), stack(res_j0, "h_std")),
        "coherent_state_before_pulse": (("trial",), before["state"]),
        "coherent_state_vs_amplitude": (("amplitude", "trial"), st_right),
        "coherent_state_vs_amplitude_late": (("amplitude", "trial"), st_late),
        "periodicity_vs_amplitude": (("amplitude", "trial"), stack(right, "periodicity")),
        "period_vs_J0": (("J0", "trial"), stack(res_j0, "period")),
        "twin_distance_onset": (("trial",), dist[0]["onset"]),
        "twin_distance_after": (("amplitude", "trial"), np.stack([d["after"] for d in dist])),
        "twin_distance_end": (("amplitude", "trial"), np.stack([d["end"] for d in dist])),
        "twin_distance_onset_vs_J0": (("J0", "trial"),
                                      np.stack([r["distance"][0]["onset"] for r in out_j0])),
        "twin_distance_after_vs_J0": (("J0", "trial"),
                                      np.stack([r["distance"][0]["after"] for r in out_j0])),
        "twin_distance_after_vs_J0_scaled": (
            ("J0", "trial"), np.stack([r["distance"][1]["after"] for r in out_j0])),
        "twin_distance_after_vs_J0_subset": (
            ("J0", "trial"), np.stack([r["distance"][2]["after"] for r in out_j0])),
        "twin_distance_after_subset": (
            ("amplitude", "trial"), np.stack([d["after"] for d in res_amp["kick_distance"]])),
    }
    return summary, data


def run(config: Config, key: jax.Array, ctx: Context) -> Result:
    import xarray as xr

    sizes = np.asarray(config.sizes)
    cases = {"critical": (config.f / (1 - config.f), 0.0),
             "inhibitory": (config.gamma_inhibitory, config.drive_inhibitory)}
    n_largest = max(config.n_seeds, config.n_seeds_largest)
    sim = {c: [None] * len(sizes) for c in cases}  # per size, std(h) of each network
    th_keys = ("h_std", "h_std_median", "h_std_fluctuating", "fixed_point_fraction",
               "quiescent_fraction", "h_std_q25", "h_std_q75")
    theory = {c: {k: np.zeros(len(sizes)) for k in th_keys} for c in cases}
    theory_conv = []
    # the networks beyond n_seeds at the largest N are steps of their own, so the other steps
    # do not depend on n_seeds_largest (a run with more of them reuses the rest)
    fingerprint = run_fingerprint(config, key, ignore=("n_seeds_largest",))
    fingerprint_largest = run_fingerprint(config, key)

    def size_key(case_index, i):
        return jax.random.fold_in(key, 1000 * case_index + i)

    def one_size(case_index, i, n, gamma, bias):
        stds = _field_std(config, n, gamma, bias, size_key(case_index, i), ctx)
        pred = macroscopic_fluctuations(
            g=config.g, J0=config.J0, f=config.f, gamma=gamma, n=n, bias=bias,
            n_grid=config.theory_grid, t_window=config.t_measure / config.tau,
            quiescent_threshold=config.quiescent_threshold, n_loop=config.theory_loops)
        th = {k: float(getattr(pred, k)) for k in th_keys[:5]}
        th["h_std_q25"], th["h_std_q75"] = (float(q) for q in pred.h_std_quartiles)
        return stds, th, bool(pred.converged)

    for ci, (case, (gamma, drive)) in enumerate(cases.items()):
        for i, n in enumerate(sizes):
            bias = drive * math.sqrt(n)
            sim[case][i], th, conv = ctx.resumable(
                f"{case}_N{int(n)}", fingerprint,
                functools.partial(one_size, ci, i, int(n), gamma, bias))
            if i == len(sizes) - 1 and n_largest > config.n_seeds:
                more = ctx.resumable(
                    f"{case}_N{int(n)}_networks_{config.n_seeds}_to_{n_largest}",
                    fingerprint_largest,
                    functools.partial(_field_std, config, int(n), gamma, bias, size_key(ci, i),
                                      ctx, config.n_seeds, n_largest - config.n_seeds))
                sim[case][i] = np.concatenate([sim[case][i], more])
            for k, v in th.items():
                theory[case][k][i] = v
            theory_conv.append(conv)
    # Simulation and theory describe the same population of networks: all realisations,
    # networks at a fixed point included (their std(h) is ~0 in both). The comparison uses the
    # median over networks: the distribution has a heavy tail (networks whose loop is close to
    # instability), where the linear theory overestimates and the sample mean of 16 networks
    # is noisy. Means (all networks, and fluctuating ones only) are reported too.
    # one row per size, padded with NaN beyond its networks (more of them at the largest N)
    sim = {c: np.stack([np.pad(np.asarray(r, float), (0, n_largest - len(r)),
                               constant_values=np.nan) for r in sim[c]]) for c in cases}
    counts = np.isfinite(sim["critical"]).sum(axis=1)
    quiescent = {c: sim[c] < config.quiescent_threshold for c in cases}
    quiescent_frac = {c: quiescent[c].sum(axis=1) / counts for c in cases}
    median = {c: np.nanmedian(sim[c], axis=1) for c in cases}
    ci = {c: np.array([_median_ci(row[np.isfinite(row)]) for row in sim[c]]) for c in cases}
    mean = {c: np.nanmean(sim[c], axis=1) for c in cases}
    sem = {c: np.nanstd(sim[c], axis=1, ddof=1) / np.sqrt(counts) for c in cases}
    with warnings.catch_warnings():  # a size with no fluctuating network gives NaN, not noise
        warnings.simplefilter("ignore", RuntimeWarning)
        mean_fluct = {c: np.nanmean(np.where(quiescent[c], np.nan, sim[c]), axis=1)
                      for c in cases}
    exps = {c: _fit_exponent(sizes, median[c]) for c in cases}
    exps_th = {c: _fit_exponent(sizes, theory[c]["h_std_median"]) for c in cases}
    exps_mean = {c: _fit_exponent(sizes, mean_fluct[c]) for c in cases}
    exps_mean_th = {c: _fit_exponent(sizes, theory[c]["h_std_fluctuating"]) for c in cases}

    def rel(a, b):
        return float(abs(a - b) / b) if b > 0 else float("nan")

    rel_err = {c: rel(median[c][-1], theory[c]["h_std_median"][-1]) for c in cases}
    rel_err_mean = {c: rel(mean[c][-1], theory[c]["h_std"][-1]) for c in cases}
    rel_err_fluct = {c: rel(mean_fluct[c][-1], theory[c]["h_std_fluctuating"][-1])
                     for c in cases}

    coherent, coherent_data = _coherent_state(config, jax.random.fold_in(key, 99), ctx,
                                              fingerprint)

    summary = {
        "h_std_exponent_critical": exps["critical"],
        "h_std_exponent_inhibitory": exps["inhibitory"],
        "h_std_exponent_critical_theory": exps_th["critical"],
        "h_std_exponent_inhibitory_theory": exps_th["inhibitory"],
        "h_std_exponent_of": "median over networks (fixed points included) of std(h) vs N",
        "h_std_exponent_fluctuating": exps_mean,
        "h_std_exponent_fluctuating_theory": exps_mean_th,
        "h_std_theory_rel_err": max(rel_err.values()),
        "h_std_theory_rel_err_by_network": rel_err,
        "h_std_theory_rel_err_of": "median over all networks at the largest N",
        "networks_per_size": counts.tolist(),
        "h_std_mean_theory_rel_err_by_network": rel_err_mean,
        "h_std_fluctuating_theory_rel_err_by_network": rel_err_fluct,
        "sizes": sizes.tolist(),
        "theory_converged": bool(all(theory_conv)),
    }
    for c in cases:
        summary.update({
            f"h_std_{c}_median": median[c].tolist(),
            f"h_std_{c}_median_ci68": ci[c].tolist(),
            f"h_std_{c}_median_theory": theory[c]["h_std_median"].tolist(),
            f"h_std_{c}_quartiles": np.nanquantile(sim[c], [0.25, 0.75], axis=1).T.tolist(),
            f"h_std_{c}_quartiles_theory": np.stack([theory[c]["h_std_q25"],
                                                     theory[c]["h_std_q75"]], 1).tolist(),
            f"h_std_{c}": mean[c].tolist(),
            f"h_std_{c}_sem": sem[c].tolist(),
            f"h_std_{c}_theory": theory[c]["h_std"].tolist(),
            f"h_std_{c}_fluctuating": mean_fluct[c].tolist(),
            f"h_std_{c}_fluctuating_theory": theory[c]["h_std_fluctuating"].tolist(),
            f"quiescent_fraction_{c}": quiescent_frac[c].tolist(),
            f"quiescent_fraction_{c}_theory": theory[c]["quiescent_fraction"].tolist(),
            f"fixed_point_fraction_{c}_theory": theory[c]["fixed_point_fraction"].tolist(),
        })
    summary.update({"coherent_prob": coherent,
                    "coherent_trials_per_point": config.coherent_trials})
    data = xr.Dataset(
        {
            "h_std_critical": (("N", "seed"), sim["critical"]),
            "h_std_inhibitory": (("N", "seed"), sim["inhibitory"]),
            "h_std_critical_median_theory": (("N",), theory["critical"]["h_std_median"]),
            "h_std_inhibitory_median_theory": (("N",), theory["inhibitory"]["h_std_median"]),
            "h_std_critical_theory": (("N",), theory["critical"]["h_std"]),
            "h_std_inhibitory_theory": (("N",), theory["inhibitory"]["h_std"]),
            **coherent_data,
        },
        coords={"N": sizes, "seed": np.arange(n_largest), "J0": list(config.coherent_J0),
                "amplitude": list(config.coherent_amplitudes),
                "trial": np.arange(config.coherent_trials)},
        attrs={"experiment": "rate-balanced",
               "units": "h and periodicity are dimensionless; period in ms",
               "state_codes": "0 fixed point, 1 asynchronous, 2 coherent"},
    )
    figs = _figures(config, sizes, median, ci, mean, sem, theory, exps, exps_th, coherent,
                    coherent_data)
    return Result(summary=summary, data=data, figures=figs,
                  notes="Theory: Kac–Rice average over operating points of the DMFT-based "
                        "closed-loop field fluctuations, with the loop gain propagated through "
                        "the random coupling (neurocircuits.rate.macroscopic). Simulation and "
                        "theory: medians over all networks (fixed points included) of the "
                        "time-std of h over the measured window. "
                        "Coherent state: a macroscopic oscillation (h periodic, every unit "
                        "locked to it), read in a window without input (spontaneous, vs J0) and "
                        "right after a common pulse (vs amplitude, the same networks).")


def _figures(config, sizes, median, ci, mean, sem, theory, exps, exps_th, coherent,
             coherent_data):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(20, 4.3))
    ax = axes[0]
    for c, color in (("critical", "C3"), ("inhibitory", "C0")):
        lower = np.clip(median[c] - ci[c][:, 0], 0, 0.9 * median[c])  # log axis: keep bars > 0
        ax.errorbar(sizes, median[c], yerr=(lower, np.clip(ci[c][:, 1] - median[c], 0, None)),
                    fmt="o", color=color, label=f"{c}: sim median, exponent {exps[c]:+.2f}")
        ax.plot(sizes, mean[c], "x", color=color, alpha=0.6, label=f"{c}: sim mean")
        ax.plot(sizes, theory[c]["h_std_median"], "-", color=color,
                label=f"{c}: theory median, exponent {exps_th[c]:+.2f}")
        ax.fill_between(sizes, theory[c]["h_std_q25"], theory[c]["h_std_q75"], color=color,
                        alpha=0.12, lw=0)
        ax.plot(sizes, theory[c]["h_std"], ":", color=color, label=f"{c}: theory mean")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("N")
    ax.set_ylabel("std over time of h")
    ax.set_title("Macroscopic field fluctuations")
    ax.legend(fontsize=8)
    co = coherent
    ax = axes[1]
    ax.errorbar(co["J0"], co["p_vs_J0"], yerr=co["p_vs_J0_err"], fmt="o-", color="C3",
                label="coherent (periodic h)")
    ax.plot(co["J0"], co["fixed_point_fraction_vs_J0"], "s-", color="k", label="fixed point")
    ax.plot(co["J0"], co["fixed_point_fraction_vs_J0_theory"], "--", color="k",
            label="fixed point, theory")
    ax.plot(co["J0"], co["asynchronous_fraction_vs_J0"], "^-", color="C0",
            label="asynchronous")
    ej = co["entrain_vs_J0"]
    ax.errorbar(ej["J0"], ej["p"], yerr=ej["err"], fmt="D-", color="C4",
                label=f"entrained by a pulse A = {ej['amplitude']:g} (two copies agree)")
    es = co["entrain_vs_J0_scaled"]
    ax.errorbar(es["J0"], es["p"], yerr=es["err"], fmt="D--", color="C4", alpha=0.6,
                mfc="none", label=f"entrained by a pulse A = {es['amplitude_per_J0']:g} J0")
    eb = co["entrain_vs_J0_subset"]
    ax.errorbar(eb["J0"], eb["p"], yerr=eb["err"], fmt="P-", color="C1",
                label=f"entrained by a pulse A = {eb['amplitude']:g} to a fraction "
                      f"{eb['fraction']:g}")
    ax.set_xlabel("J0")
    ax.set_ylabel("fraction of trials")
    ax.set_title(f"Spontaneous states and entrainment, N = {config.coherent_n}, "
                 f"{config.coherent_trials} trials", fontsize=10)
    ax.set_ylim(-0.05, 1.05)
    ax.legend(fontsize=8)
    ax = axes[2]
    amp = co["amplitude"]
    ax.errorbar(amp, co["p_vs_amplitude"], yerr=co["p_vs_amplitude_err"], fmt="o-", color="C3",
                label="coherent right after the pulse")
    ax.errorbar(amp, co["p_vs_amplitude_late"], yerr=co["p_vs_amplitude_late_err"], fmt="x:",
                color="C3", alpha=0.6, label="coherent one window later")
    ax.errorbar(amp, co["enter_prob_vs_amplitude"], yerr=co["enter_prob_vs_amplitude_err"],
                fmt="v-", color="C2", label="entered (not coherent before)")
    ax.errorbar(amp, co["entrained_vs_amplitude"], yerr=co["entrained_vs_amplitude_err"],
                fmt="D-", color="C4", label="entrained (two copies agree)")
    ea = co["entrained_vs_amplitude_subset"]
    ax.errorbar(amp, ea["p"], yerr=ea["err"], fmt="P-", color="C1",
                label=f"entrained, pulse to a fraction {ea['fraction']:g}")
    ax.axhline(co["p_before_pulse"], color="gray", lw=1, label="coherent before the pulse")
    ax.set_xlabel("pulse amplitude A")
    ax.set_ylabel("probability")
    ax.set_title(f"Pulse, J0 = {config.coherent_J0_amp:g}")
    ax.set_ylim(-0.05, 1.05)
    ax.legend(fontsize=8)
    ax = axes[3]
    hist = co["periodicity_histogram"]
    edges = np.asarray(hist["edges"])
    ax.bar(edges[:-1], hist["counts"], width=np.diff(edges), align="edge", color="C7")
    ax.axvline(config.periodicity_threshold, color="C3", ls="--", label="threshold")
    ax.set_xlabel("periodicity of h (autocorrelation at its period)")
    ax.set_ylabel("fluctuating trials")
    ax.set_title("Spontaneous trials, all J0")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return {"balanced_scaling_and_coherence": fig}


EXPERIMENT = Experiment(
    name="rate-balanced",
    title="Critical vs inhibition-dominated balance: std(h) vs N with theory; coherent states",
    config=Config,
    run=run,
    headline=("h_std_exponent_critical", "h_std_exponent_inhibitory", "h_std_theory_rel_err"),
)
