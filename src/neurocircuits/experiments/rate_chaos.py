r"""``rate-chaos``: the Sompolinsky–Crisanti–Sommers transition to chaos, simulation vs DMFT.

The SCS network (:math:`\phi = \tanh`, :math:`J_0 = 0`, :math:`J_{ij} \sim \mathcal N(0, g^2/N)`)
is simulated over a grid of :math:`g` (batched over :math:`g` on a shared random matrix, one
random matrix per seed). Measured: :math:`\Delta_0 = \langle u_i(t)^2\rangle` (time and population
average after a transient) and the population autocorrelation :math:`\Delta(\tau)`; predicted by
the dynamic mean-field theory (:func:`neurocircuits.rate.theory.dmft_solve`).

Summary numbers: ``g_c_sim`` (where :math:`\Delta_0` departs from 0: the first upward crossing of
``onset_threshold``, linearly interpolated), ``delta0_rel_err_max`` and ``tau_ac_rel_err_max``
(the largest relative errors of :math:`\Delta_0` and of the autocorrelation half-time between
theory and simulation over :math:`g \in [1.5, 3]`).
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import Batch, Record, simulate
from ..rate import RateNetwork, tanh
from ..rate.theory import dmft_solve
from ._base import Context, Experiment, Result, param


@dataclasses.dataclass(frozen=True)
class Config:
    n: int = param(8000, quick=2000, low=10, high=200_000, help="number of units N")
    g_values: tuple[float, ...] = param(
        (0.5, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.5, 1.75, 2.0, 2.25, 2.5, 2.75, 3.0),
        low=0.0, high=10.0, help="gains g of the random coupling")
    n_seeds: int = param(6, quick=3, low=1, high=64, help="network realisations per g")
    tau: float = param(10.0, low=1e-3, unit="ms", help="time constant")
    dt: float = param(1.0, low=1e-4, unit="ms", help="integration step")
    t_transient: float = param(2000.0, quick=1000.0, low=0.0, unit="ms",
                               help="discarded transient")
    t_measure: float = param(10000.0, quick=2000.0, low=10.0, unit="ms", help="measured time")
    record_every: int = param(2, low=1, help="steps between recorded samples")
    n_recorded: int = param(500, quick=200, low=1, help="units whose traces give Delta(tau)")
    max_lag: float = param(400.0, quick=100.0, low=1.0, unit="ms", help="longest lag of the autocorrelation")
    onset_threshold: float = param(0.02, low=0.0, help="Delta0 above which chaos has set in")
    chunk_steps: int = param(1000, low=1, help="steps per chunk (progress, checkpoints)")

    def check(self):
        from .._core.errors import ConfigError

        if self.n_recorded > self.n:
            raise ConfigError(f"n_recorded={self.n_recorded} exceeds n={self.n}; allowed: "
                              f"n_recorded <= n")
        if self.dt > self.tau:
            raise ConfigError(f"dt={self.dt} exceeds tau={self.tau}; allowed: dt <= tau")


def _autocorrelation(traces: np.ndarray, n_lags: int) -> np.ndarray:
    """Mean over units of the time-averaged product u(t) u(t + lag); traces (time, unit)."""
    t = traces.shape[0]
    size = 1 << int(np.ceil(np.log2(2 * t)))
    spec = np.fft.rfft(traces, n=size, axis=0)
    acf = np.fft.irfft(np.abs(spec) ** 2, n=size, axis=0)[:n_lags]
    acf /= (t - np.arange(n_lags))[:, None]
    return acf.mean(axis=1)


def _half_time(lags: np.ndarray, corr: np.ndarray) -> float:
    """First lag where the normalised autocorrelation falls to 1/2 (linear interpolation)."""
    if not corr[0] > 0:
        return float("nan")
    c = corr / corr[0]
    below = np.nonzero(c <= 0.5)[0]
    if below.size == 0 or below[0] == 0:
        return float("nan")
    i = below[0]
    return float(lags[i - 1] + (c[i - 1] - 0.5) / (c[i - 1] - c[i]) * (lags[i] - lags[i - 1]))


def _onset(gs: np.ndarray, delta0: np.ndarray, threshold: float) -> float:
    order = np.argsort(gs)
    gs, d = gs[order], delta0[order]
    above = np.nonzero(d > threshold)[0]
    if above.size == 0:
        return float("nan")
    i = above[0]
    if i == 0:
        return float(gs[0])
    return float(gs[i - 1] + (threshold - d[i - 1]) / (d[i] - d[i - 1]) * (gs[i] - gs[i - 1]))


def simulate_sweep(config: Config, key: jax.Array, ctx: Context | None = None):
    """Delta0 per (g, seed) and the population autocorrelation per (g, seed)."""
    gs = jnp.asarray(config.g_values, jnp.float32)
    n_steps_transient = int(round(config.t_transient / config.dt))
    n_steps_measure = int(round(config.t_measure / config.dt))
    every = config.record_every
    n_steps = -(-(n_steps_transient + n_steps_measure) // every) * every
    skip = n_steps_transient // every
    n_lags = int(round(config.max_lag / (config.dt * every))) + 1
    n_rec = config.n_recorded

    record = Record(every=every,
                    fn=lambda u, t: {"msq": jnp.mean(u * u), "u": u[:n_rec]},
                    dims={"u": ("unit",)}, units={"msq": "1", "u": "1"})
    delta0 = np.zeros((len(gs), config.n_seeds))
    acf = np.zeros((len(gs), config.n_seeds, n_lags))
    for seed in range(config.n_seeds):
        k_net, k_init, k_run = jax.random.split(jax.random.fold_in(key, seed), 3)
        net = RateNetwork.random(k_net, config.n, g=1.0, phi=tanh, tau=config.tau)
        nets = eqx.tree_at(lambda m: m.coupling.g, net, gs)
        u0 = jax.random.normal(k_init, (len(gs), config.n))
        store = ctx.store(f"seed{seed}") if ctx is not None else None
        traj = simulate(nets, u0, dt=config.dt, n_steps=n_steps, key=jax.random.split(
            k_run, len(gs)), record=record, batch=Batch(model=lambda m: m.coupling.g),
            store=store, progress=None if ctx is None else ctx.progress,
            chunk_steps=max(every, config.chunk_steps // every * every))
        msq = np.asarray(traj.ys["msq"])[:, skip:]
        delta0[:, seed] = msq.mean(axis=1)
        traces = np.asarray(traj.ys["u"])[:, skip:]
        for i in range(len(gs)):
            acf[i, seed] = _autocorrelation(traces[i], n_lags)
    lags = np.arange(n_lags) * config.dt * every
    return np.asarray(gs), delta0, lags, acf


def run(config: Config, key: jax.Array, ctx: Context) -> Result:
    import xarray as xr

    gs, delta0, lags, acf = simulate_sweep(config, key, ctx)
    lag_units = lags / config.tau
    d0_sim = delta0.mean(axis=1)
    d0_sem = delta0.std(axis=1, ddof=1) / np.sqrt(delta0.shape[1]) if delta0.shape[1] > 1 \
        else np.full_like(d0_sim, np.nan)
    acf_sim = acf.mean(axis=1)

    theory = [dmft_solve(float(g), tanh, lags=lag_units) for g in gs]
    d0_th = np.array([r.delta0 for r in theory])
    acf_th = np.stack([np.asarray(r.delta) for r in theory])
    tau_sim = np.array([_half_time(lags, c) if d > config.onset_threshold else np.nan
                        for c, d in zip(acf_sim, d0_sim)])
    tau_th = np.array([r.autocorrelation_time * config.tau if d0 > 1e-9 else np.nan
                       for r, d0 in zip(theory, d0_th)])
    g_fine = np.linspace(min(gs.min(), 0.5), gs.max(), 101)
    d0_fine = np.array([dmft_solve(float(g), tanh).delta0 for g in g_fine])

    chaotic = (gs >= 1.5 - 1e-9) & (gs <= 3.0 + 1e-9)
    rel_d0 = np.abs(d0_sim - d0_th) / np.where(d0_th > 0, d0_th, np.nan)
    rel_tau = np.abs(tau_sim - tau_th) / tau_th
    summary = {
        "g_c_sim": _onset(gs, d0_sim, config.onset_threshold),
        "g_c_theory": _onset(g_fine, d0_fine, config.onset_threshold),
        "delta0_rel_err_max": float(np.nanmax(rel_d0[chaotic])) if chaotic.any() else None,
        "tau_ac_rel_err_max": float(np.nanmax(rel_tau[chaotic])) if chaotic.any() else None,
        "theory_converged": bool(all(r.converged for r in theory)),
        "g": gs.tolist(),
        "delta0_sim": d0_sim.tolist(),
        "delta0_sim_sem": d0_sem.tolist(),
        "delta0_theory": d0_th.tolist(),
        "tau_ac_sim_ms": tau_sim.tolist(),
        "tau_ac_theory_ms": tau_th.tolist(),
        "n": config.n,
        "n_seeds": config.n_seeds,
    }
    data = xr.Dataset(
        {
            "delta0_sim": (("g", "seed"), delta0, {"units": "1", "long_name": "<u^2>"}),
            "delta0_theory": (("g",), d0_th, {"units": "1"}),
            "acf_sim": (("g", "seed", "lag"), acf, {"units": "1"}),
            "acf_theory": (("g", "lag"), acf_th, {"units": "1"}),
            "delta0_theory_fine": (("g_fine",), d0_fine, {"units": "1"}),
        },
        coords={"g": gs, "seed": np.arange(config.n_seeds), "lag": ("lag", lags, {"units": "ms"}),
                "g_fine": g_fine},
        attrs={"experiment": "rate-chaos"},
    )
    return Result(summary=summary, data=data, figures=_figures(config, gs, delta0, d0_sem, g_fine,
                                                               d0_fine, lags, acf_sim, acf_th),
                  notes=f"SCS network, N = {config.n}, {config.n_seeds} seed(s) per g, "
                        f"dt = {config.dt} ms, tau = {config.tau} ms, exponential Euler, float32.")


def _figures(config, gs, delta0, d0_sem, g_fine, d0_fine, lags, acf_sim, acf_th):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ax = axes[0]
    ax.plot(g_fine, d0_fine, "k-", label="DMFT")
    ax.errorbar(gs, delta0.mean(axis=1), yerr=np.nan_to_num(d0_sem), fmt="o", color="C3",
                label=f"simulation, N = {config.n}")
    ax.axvline(1.0, color="0.7", ls=":")
    ax.set_xlabel("g")
    ax.set_ylabel(r"$\Delta_0 = \langle u^2 \rangle$")
    ax.set_title("Transition to chaos")
    ax.legend()
    ax = axes[1]
    for j, g in enumerate(gs):
        if np.isclose(g, [1.5, 2.0, 3.0]).any() and acf_sim[j, 0] > 0:
            color = f"C{int(np.argmin(np.abs(np.array([1.5, 2.0, 3.0]) - g)))}"
            ax.plot(lags / config.tau, acf_sim[j] / acf_sim[j, 0], "o", ms=3, color=color,
                    label=f"sim g = {g:g}")
            ax.plot(lags / config.tau, acf_th[j] / acf_th[j, 0], "-", color=color,
                    label=f"DMFT g = {g:g}")
    ax.set_xlabel(r"lag $\tau$ / $\tau_m$")
    ax.set_ylabel(r"$\Delta(\tau)/\Delta_0$")
    ax.set_title("Autocorrelation")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return {"delta0_vs_g": fig}


EXPERIMENT = Experiment(
    name="rate-chaos",
    title="SCS transition to chaos: Delta0(g) and autocorrelation, simulation vs DMFT",
    config=Config,
    run=run,
    headline=("g_c_sim", "delta0_rel_err_max", "tau_ac_rel_err_max"),
)
