r"""``spiking-microcircuit``: the Potjans & Diesmann (2014) cortical microcircuit.

77,169 LIF neurons in 8 populations (L2/3, L4, L5, L6 x E, I), exponential current synapses
(tau_s = 0.5 ms, exact propagator), ~0.3e9 synapses (fixed total number per projection),
heterogeneous delays, Poisson background at 8 Hz, dt = 0.1 ms, event-driven propagation
(:func:`neurocircuits.spiking.circuits.microcircuit`). The quick scale shrinks every population
(``scale``) but keeps the in-degrees, so the rates stay close to the full model's.

Summary numbers: ``rates_hz`` per population (after ``t_transient``), ``rates_reference_hz``
(the full-scale rates of the reference NEST implementation), ``rate_rel_err`` per population
and its maximum ``rate_rel_err_max``, ``construction_s`` (network build time) and
``real_time_factor`` (wall time / simulated time of the run, including compilation at quick
scale; the benchmark measures it without).
"""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np

from ..spiking import SpikeRecorder, population_rates, run
from ..spiking.circuits import PD14, microcircuit
from ._base import Context, Experiment, Result, param


@dataclasses.dataclass(frozen=True)
class Config:
    scale: float = param(1.0, quick=0.05, low=0.001, high=1.0,
                         help="fraction of the neurons (in-degrees kept)")
    duration: float = param(5000.0, quick=400.0, low=50.0, unit="ms", help="simulated time")
    t_transient: float = param(500.0, quick=100.0, low=0.0, unit="ms", help="discarded start")
    dt: float = param(0.1, low=0.01, high=0.5, unit="ms", help="time step")


def run_experiment(config: Config, key: jax.Array, ctx: Context) -> Result:
    import xarray as xr

    k_net, k_init, k_run = jax.random.split(key, 3)
    t0 = time.perf_counter()
    window = 100
    net, init = microcircuit(k_net, scale=config.scale, dt=config.dt,
                             recorder=SpikeRecorder(window=window, capacity=1))
    jax.block_until_ready(jax.tree.leaves(net))
    construction = time.perf_counter() - t0
    n_steps = int(round(config.duration / config.dt)) // window * window
    t0 = time.perf_counter()
    traj = run(net, init(k_init), dt=config.dt, n_steps=n_steps, key=k_run,
               record=net.record(spikes=False), progress=ctx.progress)
    wall = time.perf_counter() - t0
    skip = int(config.t_transient / (window * config.dt))
    rates_t = population_rates(traj, net, config.dt)
    rates = rates_t[skip:].mean(axis=0)
    ref = np.asarray(PD14.rates_reference)
    rel = np.abs(rates - ref) / ref
    summary = {
        "populations": list(net.populations),
        "rates_hz": rates.round(4).tolist(),
        "rates_reference_hz": ref.tolist(),
        "rate_rel_err": rel.round(4).tolist(),
        "rate_rel_err_max": float(rel.max()),
        "construction_s": construction,
        "real_time_factor": wall / (n_steps * config.dt * 1e-3),
        "n": net.n,
        "n_synapses": int(net.projections[0].post.shape[0] - 1),
        "scale": config.scale,
        "device": str(jax.devices()[0].device_kind),
    }
    data = xr.Dataset(
        {"pop_rate": (("time", "population"), rates_t, {"units": "Hz"}),
         "rate": (("population",), rates, {"units": "Hz"}),
         "rate_reference": (("population",), ref, {"units": "Hz"})},
        coords={"population": list(net.populations),
                "time": ("time", (np.arange(rates_t.shape[0]) + 1) * window * config.dt,
                         {"units": "ms"})},
        attrs={"experiment": "spiking-microcircuit"})
    return Result(summary=summary, data=data, figures=_figures(net, rates, ref),
                  notes=f"Potjans & Diesmann (2014), scale {config.scale} (N = {net.n}, "
                        f"in-degrees of the full model), {config.duration:g} ms, dt = "
                        f"{config.dt} ms, float32, event-driven with per-synapse delays. "
                        "Reference rates: the full-scale NEST implementation.")


def _figures(net, rates, ref):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    x = np.arange(len(rates))
    ax.bar(x - 0.2, rates, 0.4, label="neurocircuits")
    ax.bar(x + 0.2, ref, 0.4, label="published (NEST, full scale)")
    ax.set_xticks(x, net.populations)
    ax.set_ylabel("rate (Hz)")
    ax.legend()
    fig.tight_layout()
    return {"layer_rates": fig}


EXPERIMENT = Experiment(
    name="spiking-microcircuit",
    title="Potjans & Diesmann (2014) microcircuit: layer-wise rates vs published",
    config=Config,
    run=run_experiment,
    headline=("rate_rel_err_max", "construction_s", "real_time_factor"),
)
