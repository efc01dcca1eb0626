r"""``spiking-coba``: the COBA benchmark network (Vogels & Abbott 2005; Brette et al. 2007,
benchmark 1).

4000 LIF neurons (80% E, p = 0.02), C = 200 pF, g_L = 10 nS, E_L = V_r = -60 mV, V_th = -50 mV,
t_ref = 5 ms, conductance synapses (E_e = 0 mV, tau_e = 5 ms, Delta g_e = 6 nS; E_i = -80 mV,
tau_i = 10 ms, Delta g_i = 67 nS), dt = 0.1 ms, activity self-sustained from the reference
script's random initial conditions. One network realisation per seed, event-driven propagation.

Summary numbers: ``rate_e_hz``, ``rate_i_hz`` (population-mean rates after ``t_transient``,
averaged over seeds), ``cv_isi_mean`` (mean ISI coefficient of variation over neurons with at
least 3 spikes, averaged over seeds), their per-seed values, and ``survived_fraction`` (seeds
whose activity lasted to the end). The same statistics from Brian2 on the same networks are in
``benchmarks/results/spiking_coba_*.json`` (``benchmarks/spiking_coba.py``).
"""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np

from ..spiking import SpikeRecorder, cv_isi, firing_rates, run, spike_events
from ..spiking.circuits import coba
from ._base import Context, Experiment, Result, param


@dataclasses.dataclass(frozen=True)
class Config:
    n: int = param(4000, low=10, high=1_000_000, help="number of neurons")
    n_seeds: int = param(8, quick=2, low=1, high=256, help="network realisations")
    duration: float = param(5000.0, quick=1000.0, low=10.0, unit="ms", help="simulated time")
    t_transient: float = param(100.0, low=0.0, unit="ms", help="discarded start")
    dt: float = param(0.1, low=1e-3, high=1.0, unit="ms", help="time step")
    propagation: str = param("event", choices=("event", "gather", "dense"),
                             help="spike propagation path")
    raster_neurons: int = param(400, low=1, help="neurons shown in the raster")

    def check(self):
        from .._core.errors import ConfigError

        if self.t_transient >= self.duration:
            raise ConfigError(f"t_transient={self.t_transient} must be < duration="
                              f"{self.duration}; allowed: t_transient < duration")


def simulate_seed(config: Config, key: jax.Array, *, ctx: Context | None = None, edges=None):
    """One realisation: returns (net, events, rates per neuron, cvs, elapsed seconds)."""
    k_net, k_init, k_run = jax.random.split(key, 3)
    n_steps = int(round(config.duration / config.dt))
    window = 100
    n_steps = max(window, n_steps // window * window)
    expected = int(config.n * 0.1 * window * config.dt * 1e-3 * 200) + 1024  # <= 200 Hz
    net, init = coba(k_net, config.n, dt=config.dt, propagation=config.propagation,
                     recorder=SpikeRecorder(window=window, capacity=expected), edges=edges)
    t0 = time.perf_counter()
    traj = run(net, init(k_init), dt=config.dt, n_steps=n_steps, key=k_run, record=net.record(),
               progress=None if ctx is None else ctx.progress)
    elapsed = time.perf_counter() - t0
    ev = spike_events(traj, net)
    t_stop = n_steps * config.dt
    rates = firing_rates(ev, config.n, dt=config.dt, t_start=config.t_transient, t_stop=t_stop)
    cvs = cv_isi(ev, config.n, dt=config.dt, t_start=config.t_transient)
    return net, ev, rates, cvs, elapsed, traj


def statistics(net, rates, cvs, ev, dt, t_stop):
    e = np.asarray(net.labels) == 0
    last = ev.times(dt).max() if ev.steps.size else 0.0
    return {
        "rate_e_hz": float(rates[e].mean()),
        "rate_i_hz": float(rates[~e].mean()),
        "cv_isi_mean": float(np.nanmean(cvs)) if np.isfinite(cvs).any() else float("nan"),
        "survived": bool(last > t_stop - 50.0),
    }


def run_experiment(config: Config, key: jax.Array, ctx: Context) -> Result:
    import xarray as xr

    per_seed, raster = [], None
    elapsed = []
    for seed in range(config.n_seeds):
        net, ev, rates, cvs, el, traj = simulate_seed(config, jax.random.fold_in(key, seed),
                                                      ctx=ctx)
        t_stop = traj.ts.shape[0] * net.recorder.window * config.dt
        per_seed.append(statistics(net, rates, cvs, ev, config.dt, t_stop))
        elapsed.append(el)
        if seed == 0:
            raster = (ev, net, rates, cvs, traj)
    rate_e = np.array([s["rate_e_hz"] for s in per_seed])
    rate_i = np.array([s["rate_i_hz"] for s in per_seed])
    cv = np.array([s["cv_isi_mean"] for s in per_seed])
    sim_s = config.duration * 1e-3
    summary = {
        "rate_e_hz": float(rate_e.mean()),
        "rate_i_hz": float(rate_i.mean()),
        "cv_isi_mean": float(np.nanmean(cv)),
        "rate_e_hz_per_seed": rate_e.tolist(),
        "rate_i_hz_per_seed": rate_i.tolist(),
        "cv_isi_mean_per_seed": cv.tolist(),
        "survived_fraction": float(np.mean([s["survived"] for s in per_seed])),
        "wall_s_per_sim_s": float(np.median(elapsed) / sim_s),
        "n": config.n,
        "n_seeds": config.n_seeds,
        "device": str(jax.devices()[0].device_kind),
    }
    ev, net, rates, cvs, traj = raster
    data = xr.Dataset(
        {"rate_e_hz": (("seed",), rate_e, {"units": "Hz"}),
         "rate_i_hz": (("seed",), rate_i, {"units": "Hz"}),
         "cv_isi_mean": (("seed",), cv, {"units": "1"}),
         "rate_seed0": (("neuron",), rates, {"units": "Hz"}),
         "cv_seed0": (("neuron",), cvs, {"units": "1"}),
         "spike_step_seed0": (("spike",), ev.steps), "spike_neuron_seed0": (("spike",), ev.neurons)},
        coords={"seed": np.arange(config.n_seeds)}, attrs={"experiment": "spiking-coba"})
    return Result(summary=summary, data=data,
                  figures=_figures(config, ev, net, rates, cvs, traj),
                  notes=f"COBA, N = {config.n}, {config.n_seeds} realisation(s) of "
                        f"{config.duration:g} ms, dt = {config.dt} ms, exponential Euler (exact "
                        f"for fixed conductances), {config.propagation} propagation, float32.")


def _figures(config, ev, net, rates, cvs, traj):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4), gridspec_kw={"width_ratios": [2, 1, 1]})
    ax = axes[0]
    sel = ev.neurons < config.raster_neurons
    t = ev.times(config.dt)[sel]
    t_show = min(config.duration, 1000.0)
    keep = t <= t_show
    e = ev.neurons[sel][keep] < int(np.sum(np.asarray(net.labels) == 0))
    ax.plot(t[keep][e], ev.neurons[sel][keep][e], ",", color="C0")
    ax.plot(t[keep][~e], ev.neurons[sel][keep][~e], ",", color="C3")
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("neuron")
    ax.set_title("COBA raster (seed 0)")
    ax = axes[1]
    lab = np.asarray(net.labels)
    ax.hist([rates[lab == 0], rates[lab == 1]], bins=40, label=["E", "I"], color=["C0", "C3"])
    ax.set_xlabel("rate (Hz)")
    ax.legend()
    ax = axes[2]
    ax.hist(cvs[np.isfinite(cvs)], bins=40, color="0.4")
    ax.set_xlabel("CV of ISI")
    fig.tight_layout()
    return {"coba_raster": fig}


EXPERIMENT = Experiment(
    name="spiking-coba",
    title="COBA benchmark (Vogels & Abbott 2005 / Brette et al. 2007): rates, CV, raster",
    config=Config,
    run=run_experiment,
    headline=("rate_e_hz", "rate_i_hz", "cv_isi_mean"),
)
