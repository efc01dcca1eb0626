r"""``spiking-brunel``: Brunel's (2000) sparse E/I network at the textbook phase points.

LIF neurons with delta synapses (J = 0.1 mV, D = 1.5 ms, tau = 20 ms, theta = 20 mV, V_r = 10 mV,
t_ref = 2 ms), C_E = 1000 excitatory and C_I = 250 inhibitory inputs per neuron (fixed in-degree)
and C_E external Poisson inputs at eta nu_thr. Phase points (Brunel 2000, Fig. 8):
asynchronous irregular (AI, g = 5, eta = 2), synchronous regular (SR, g = 3, eta = 2), and
optionally the fast and slow synchronous irregular states (g = 6, eta = 4; g = 4.5, eta = 0.9).
The quick scale has fewer neurons (N_E = 8000) and C_E = 800 (connectivity 10%, as at full
scale); the theory is always computed for the simulated C_E.

Summary numbers: per state ``rate_<s>_hz`` (population mean), ``cv_<s>`` (mean ISI CV),
``sync_<s>`` (s.d. of the population rate in 1 ms bins over its mean: small, ~ Poisson noise
of the pooled count, for asynchronous states; O(1) when the population oscillates),
``freq_<s>_hz`` (peak of the population-rate spectrum), ``state_<s>`` (AI: CV > 0.5 and a
flat population rate; SR: the population rate oscillates and cells fire regularly on most cycles;
SI: it oscillates and cells skip cycles), ``rate_<s>_theory_hz`` (Siegert self-consistency) and ``rate_ai_rel_err`` (the
AI rate vs theory, the spec's 10% check).

Finding (issue 3): with the textbook parameters (J = 0.1 mV, D = 1.5 ms, dt = 0.1 ms) the point
g = 5, eta = 2 is not asynchronous in this implementation at any size tried: N_E = 4000/8000/10000
(C_E = 400/800/1000) all show a fast population oscillation at ~ 1/(4 D) (100--170 Hz) with cells
firing at ~40 Hz, i.e. skipping cycles (CV 0.2--0.4, sync 0.4--0.56, growing with N, so not a
finite-size effect), unchanged at dt = 0.05 ms; J = 0.2 mV raises the CV to 0.5 but keeps the
oscillation. The rate agrees with the Siegert self-consistency within 2--4% in every case. The
state is therefore labelled SI (fast), not SR: the former classifier called every synchronous
state with CV < 0.5 "SR".
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from ..spiking import SpikeRecorder, cv_isi, population_rates, run, spike_events
from ..spiking.circuits import brunel
from ..spiking.theory import brunel_rate
from ._base import Context, Experiment, Result, param

POINTS = {"ai": (5.0, 2.0), "sr": (3.0, 2.0), "si_fast": (6.0, 4.0), "si_slow": (4.5, 0.9)}


@dataclasses.dataclass(frozen=True)
class Config:
    n_e: int = param(10_000, quick=8000, low=100, high=10_000_000, help="excitatory neurons")
    C_E: int = param(1000, quick=800, low=1, help="excitatory in-degree (C_I = C_E / 4)")
    states: tuple[str, ...] = param(("ai", "sr", "si_fast", "si_slow"), quick=("ai", "sr"),
                                    choices=tuple(POINTS), help="phase points")
    duration: float = param(2000.0, quick=250.0, low=50.0, unit="ms", help="simulated time")
    t_transient: float = param(200.0, quick=100.0, low=0.0, unit="ms", help="discarded start")
    dt: float = param(0.1, low=1e-3, high=0.5, unit="ms", help="time step")
    n_recorded: int = param(2000, quick=1000, low=10, help="neurons whose spikes are recorded")

    def check(self):
        from .._core.errors import ConfigError

        if self.C_E > self.n_e:
            raise ConfigError(f"C_E={self.C_E} exceeds n_e={self.n_e}; allowed: C_E <= n_e")
        if self.t_transient >= self.duration:
            raise ConfigError("t_transient must be < duration")


def _classify(cv, chi, rate=None, freq=None):
    """AI: flat population rate, irregular cells; SR: oscillating population rate and cells
    that fire on most cycles (rate >= half the oscillation frequency) regularly; SI: oscillating
    population rate with cells skipping cycles (Brunel 2000's definition), whatever their CV."""
    if chi < 0.3:
        return "AI" if cv > 0.5 else "AR"
    locked = rate is None or freq is None or rate >= 0.5 * freq
    return "SR" if (cv < 0.5 and locked) else "SI"


def _peak_frequency(pop, bin_ms=1.0):
    """The frequency (Hz) of the largest peak of the population-rate spectrum above 5 Hz."""
    x = pop - pop.mean()
    f = np.fft.rfftfreq(len(x), bin_ms * 1e-3)
    p = np.abs(np.fft.rfft(x)) ** 2
    keep = f > 5.0
    return float(f[keep][np.argmax(p[keep])]) if keep.any() else float("nan")


def simulate_state(config: Config, key, g, eta):
    n = config.n_e + config.n_e // 4
    window = 10  # 1 ms bins of the population rate at dt = 0.1
    n_steps = int(round(config.duration / config.dt)) // window * window
    rec = SpikeRecorder(window=window, capacity=max(256, int(config.n_recorded * 0.5 * window
                                                              * config.dt) + 256),
                        n_record=config.n_recorded)
    k_net, k_init, k_run = jax.random.split(key, 3)
    net, init = brunel(k_net, n_e=config.n_e, C_E=config.C_E, g=g, eta=eta, dt=config.dt,
                       recorder=rec, max_spikes_per_step=n)
    traj = run(net, init(k_init), dt=config.dt, n_steps=n_steps, key=k_run,
               record=net.record(), progress=False)
    ev = spike_events(traj, net)
    skip = int(config.t_transient / (window * config.dt))
    pop = population_rates(traj, net, config.dt)[skip:]  # (windows, 2)
    total = (pop * net.population_sizes).sum(1) / net.n
    rate = float(total.mean())
    chi = float(total.std() / max(total.mean(), 1e-9))
    cvs = cv_isi(ev, config.n_recorded, dt=config.dt, t_start=config.t_transient)
    cv = float(np.nanmean(cvs)) if np.isfinite(cvs).any() else float("nan")
    return {"rate": rate, "chi": chi, "cv": cv, "pop": total, "ev": ev,
            "freq": _peak_frequency(total)}


def run_experiment(config: Config, key: jax.Array, ctx: Context) -> Result:
    import xarray as xr

    summary, traces, rasters = {}, {}, {}
    for i, s in enumerate(config.states):
        g, eta = POINTS[s]
        out = simulate_state(config, jax.random.fold_in(key, i), g, eta)
        th = brunel_rate(g=g, eta=eta, C_E=config.C_E)
        summary[f"rate_{s}_hz"] = out["rate"]
        summary[f"rate_{s}_theory_hz"] = th.rate_hz
        summary[f"cv_{s}"] = out["cv"]
        summary[f"sync_{s}"] = out["chi"]
        summary[f"freq_{s}_hz"] = out["freq"]
        summary[f"state_{s}"] = _classify(out["cv"], out["chi"], out["rate"], out["freq"])
        traces[s], rasters[s] = out["pop"], out["ev"]
    if "ai" in config.states:
        summary["rate_ai_rel_err"] = abs(summary["rate_ai_hz"] - summary["rate_ai_theory_hz"]) / \
            summary["rate_ai_theory_hz"]
    summary.update(n=config.n_e + config.n_e // 4, C_E=config.C_E,
                   expected={"ai": "AI", "sr": "SR", "si_fast": "SI", "si_slow": "SI"})
    length = min(len(v) for v in traces.values())
    data = xr.Dataset({f"pop_rate_{s}": (("time",), v[:length], {"units": "Hz"})
                       for s, v in traces.items()},
                      coords={"time": ("time", config.t_transient + np.arange(length) * 1.0,
                                       {"units": "ms"})},
                      attrs={"experiment": "spiking-brunel"})
    return Result(summary=summary, data=data, figures=_figures(config, traces, rasters),
                  notes=f"Brunel (2000) model A, N_E = {config.n_e}, C_E = {config.C_E}, "
                        f"dt = {config.dt} ms, {config.duration:g} ms per state, event-driven, "
                        "exact LIF propagator with delta synapses.")


def _figures(config, traces, rasters):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(traces)
    fig, axes = plt.subplots(2, k, figsize=(4.2 * k, 6), squeeze=False)
    for j, (s, tr) in enumerate(traces.items()):
        ev = rasters[s]
        t = ev.times(config.dt)
        sel = (ev.neurons < 200) & (t > config.duration - 200)
        axes[0, j].plot(t[sel], ev.neurons[sel], ",k")
        axes[0, j].set_title(f"{s.upper()}: g = {POINTS[s][0]}, eta = {POINTS[s][1]}")
        tt = config.t_transient + np.arange(len(tr))
        m = tt > config.duration - 200
        axes[1, j].plot(tt[m], tr[m])
        axes[1, j].set_xlabel("time (ms)")
        axes[1, j].set_ylabel("population rate (Hz)")
    fig.tight_layout()
    return {"brunel_states": fig}


EXPERIMENT = Experiment(
    name="spiking-brunel",
    title="Brunel (2000) phase points: AI vs SR, rates vs Siegert self-consistency",
    config=Config,
    run=run_experiment,
    headline=("rate_ai_hz", "rate_ai_rel_err", "state_ai", "state_sr"),
)
