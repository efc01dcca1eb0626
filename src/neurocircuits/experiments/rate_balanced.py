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
2. Coherent state: a trial is *coherent* when the Golomb–Hansel synchrony
   :math:`\chi = \sqrt{\mathrm{Var}_t\,m / \langle \mathrm{Var}_t\,\phi_i\rangle_i}` of the
   population rate :math:`m(t)` after a common input pulse of amplitude A exceeds
   ``chi_threshold`` (our operational definition). Its probability over many batched trials is
   reported against :math:`J_0` (spontaneous) and against A, with binomial error bars.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import Batch, Record, simulate
from ..rate import RateNetwork, one_plus_tanh
from ..rate.macroscopic import macroscopic_fluctuations
from ._base import Context, Experiment, Result, param


@dataclasses.dataclass(frozen=True)
class Config:
    sizes: tuple[int, ...] = param((1000, 2000, 4000, 8000, 16000), quick=(500, 1000, 2000),
                                   low=20, high=100_000, help="network sizes N")
    n_seeds: int = param(16, quick=4, low=2, high=1024, help="network realisations per N")
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
    coherent_n: int = param(2000, quick=200, low=20, help="N of the coherent-state trials")
    coherent_trials: int = param(200, quick=16, low=2, help="trials per point")
    coherent_J0: tuple[float, ...] = param((1.0, 2.0, 3.0, 4.0, 5.0), quick=(1.0, 5.0),
                                           low=0.0, help="J0 values (spontaneous)")
    coherent_amplitudes: tuple[float, ...] = param((0.0, 1.0, 2.0, 4.0, 8.0),
                                                   quick=(0.0, 8.0), low=0.0,
                                                   help="pulse amplitudes at J0 = coherent_J0_amp")
    coherent_J0_amp: float = param(3.0, low=0.0, help="J0 of the amplitude sweep")
    chi_threshold: float = param(0.3, low=0.0, high=1.0, help="synchrony of a coherent trial")
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


def _field_std(config: Config, n: int, gamma: float, bias: float, key, ctx) -> np.ndarray:
    """Time-std of h for each of ``n_seeds`` networks of size n (batched in groups)."""
    n_steps = int(round((config.t_transient + config.t_measure) / config.dt)) // 10 * 10
    skip = int(round(config.t_transient / config.dt)) // 10
    group = max(1, min(config.n_seeds, int(config.max_batch_bytes // (4 * n * n))))
    stds = []
    for start in range(0, config.n_seeds, group):
        size = min(group, config.n_seeds - start)
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


def _coherent_trials(config: Config, J0: float, amplitude: float, key):
    """Synchrony chi after a pulse and the r.m.s. temporal std of the units' rates (a fixed
    point has ~0: its chi is a ratio of rounding errors), one value per trial (network +
    initial condition)."""
    n, trials = config.coherent_n, config.coherent_trials
    t_on = config.t_transient
    n_steps = int(round((t_on + 100.0 + config.t_measure) / config.dt)) // 10 * 10
    keys = jax.random.split(key, trials)
    nets = eqx.filter_vmap(lambda k: RateNetwork.random(k, n, g=config.g, J0=J0, f=config.f,
                                                        tau=config.tau))(keys)
    n_rec = min(n, 200)
    record = Record(every=5, fn=lambda u, t: {"m": jnp.mean(one_plus_tanh(u)),
                                               "r": one_plus_tanh(u[:n_rec])})
    pulse = lambda t: amplitude * ((t >= t_on) & (t < t_on + 100.0)) * jnp.ones(n)  # noqa: E731
    traj = simulate(nets, jax.random.normal(jax.random.fold_in(key, 1), (trials, n)),
                    dt=config.dt, n_steps=n_steps, key=jax.random.split(
                        jax.random.fold_in(key, 2), trials),
                    inputs=pulse, record=record, batch=Batch(model=True), progress=False)
    after = int(round((t_on + 300.0) / (5 * config.dt)))
    m = np.asarray(traj.ys["m"])[:, after:]
    r = np.asarray(traj.ys["r"])[:, after:]
    unit_var = r.var(axis=1).mean(axis=1)
    return np.sqrt(m.var(axis=1) / np.maximum(unit_var, 1e-30)), np.sqrt(unit_var)


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


def run(config: Config, key: jax.Array, ctx: Context) -> Result:
    import xarray as xr

    sizes = np.asarray(config.sizes)
    cases = {"critical": (config.f / (1 - config.f), 0.0),
             "inhibitory": (config.gamma_inhibitory, config.drive_inhibitory)}
    sim = {c: np.zeros((len(sizes), config.n_seeds)) for c in cases}
    th_keys = ("h_std", "h_std_median", "h_std_fluctuating", "fixed_point_fraction",
               "quiescent_fraction", "h_std_q25", "h_std_q75")
    theory = {c: {k: np.zeros(len(sizes)) for k in th_keys} for c in cases}
    theory_conv = []
    for ci, (case, (gamma, drive)) in enumerate(cases.items()):
        for i, n in enumerate(sizes):
            bias = drive * math.sqrt(n)
            sim[case][i] = _field_std(config, int(n), gamma, bias,
                                      jax.random.fold_in(key, 1000 * ci + i), ctx)
            pred = macroscopic_fluctuations(
                g=config.g, J0=config.J0, f=config.f, gamma=gamma, n=int(n), bias=bias,
                n_grid=config.theory_grid, t_window=config.t_measure / config.tau,
                quiescent_threshold=config.quiescent_threshold, n_loop=config.theory_loops)
            for k in th_keys[:5]:
                theory[case][k][i] = getattr(pred, k)
            theory[case]["h_std_q25"][i], theory[case]["h_std_q75"][i] = pred.h_std_quartiles
            theory_conv.append(pred.converged)
    # Simulation and theory describe the same population of networks: all realisations,
    # networks at a fixed point included (their std(h) is ~0 in both). The comparison uses the
    # median over networks: the distribution has a heavy tail (networks whose loop is close to
    # instability), where the linear theory overestimates and the sample mean of 16 networks
    # is noisy. Means (all networks, and fluctuating ones only) are reported too.
    quiescent = {c: sim[c] < config.quiescent_threshold for c in cases}
    median = {c: np.median(sim[c], axis=1) for c in cases}
    ci = {c: np.array([_median_ci(row) for row in sim[c]]) for c in cases}
    mean = {c: sim[c].mean(axis=1) for c in cases}
    sem = {c: sim[c].std(axis=1, ddof=1) / math.sqrt(config.n_seeds) for c in cases}
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

    # coherent state
    coh_key = jax.random.fold_in(key, 99)
    res_j0 = [_coherent_trials(config, j0, 0.0, jax.random.fold_in(coh_key, i))
              for i, j0 in enumerate(config.coherent_J0)]
    res_amp = [_coherent_trials(config, config.coherent_J0_amp, a,
                                jax.random.fold_in(coh_key, 100 + i))
               for i, a in enumerate(config.coherent_amplitudes)]
    chi_j0, sd_j0 = (np.stack(x) for x in zip(*res_j0))
    chi_amp, sd_amp = (np.stack(x) for x in zip(*res_amp))
    # a trial at a fixed point is not coherent (its chi is a ratio of rounding errors)
    frozen_j0 = sd_j0 < config.quiescent_threshold
    frozen_amp = sd_amp < config.quiescent_threshold
    p_j0 = ((chi_j0 > config.chi_threshold) & ~frozen_j0).mean(axis=1)
    p_amp = ((chi_amp > config.chi_threshold) & ~frozen_amp).mean(axis=1)
    err = lambda p: np.sqrt(p * (1 - p) / config.coherent_trials)  # noqa: E731

    def among_fluctuating(chi, frozen):
        n_fl = np.maximum((~frozen).sum(axis=1), 1)
        return (((chi > config.chi_threshold) & ~frozen).sum(axis=1) / n_fl).tolist()

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
            f"h_std_{c}_quartiles": np.quantile(sim[c], [0.25, 0.75], axis=1).T.tolist(),
            f"h_std_{c}_quartiles_theory": np.stack([theory[c]["h_std_q25"],
                                                     theory[c]["h_std_q75"]], 1).tolist(),
            f"h_std_{c}": mean[c].tolist(),
            f"h_std_{c}_sem": sem[c].tolist(),
            f"h_std_{c}_theory": theory[c]["h_std"].tolist(),
            f"h_std_{c}_fluctuating": mean_fluct[c].tolist(),
            f"h_std_{c}_fluctuating_theory": theory[c]["h_std_fluctuating"].tolist(),
            f"quiescent_fraction_{c}": quiescent[c].mean(axis=1).tolist(),
            f"quiescent_fraction_{c}_theory": theory[c]["quiescent_fraction"].tolist(),
            f"fixed_point_fraction_{c}_theory": theory[c]["fixed_point_fraction"].tolist(),
        })
    summary.update({
        "coherent_prob": {"J0": list(config.coherent_J0), "p_vs_J0": p_j0.tolist(),
                          "p_vs_J0_err": err(p_j0).tolist(),
                          "amplitude": list(config.coherent_amplitudes),
                          "p_vs_amplitude": p_amp.tolist(),
                          "p_vs_amplitude_err": err(p_amp).tolist(),
                          "fixed_point_fraction_vs_J0": frozen_j0.mean(axis=1).tolist(),
                          "fixed_point_fraction_vs_amplitude": frozen_amp.mean(axis=1).tolist(),
                          "p_vs_J0_among_fluctuating": among_fluctuating(chi_j0, frozen_j0),
                          "p_vs_amplitude_among_fluctuating": among_fluctuating(chi_amp,
                                                                                frozen_amp)},
        "coherent_trials_per_point": config.coherent_trials,
    })
    data = xr.Dataset(
        {
            "h_std_critical": (("N", "seed"), sim["critical"]),
            "h_std_inhibitory": (("N", "seed"), sim["inhibitory"]),
            "h_std_critical_median_theory": (("N",), theory["critical"]["h_std_median"]),
            "h_std_inhibitory_median_theory": (("N",), theory["inhibitory"]["h_std_median"]),
            "h_std_critical_theory": (("N",), theory["critical"]["h_std"]),
            "h_std_inhibitory_theory": (("N",), theory["inhibitory"]["h_std"]),
            "chi_vs_J0": (("J0", "trial"), chi_j0),
            "chi_vs_amplitude": (("amplitude", "trial"), chi_amp),
        },
        coords={"N": sizes, "seed": np.arange(config.n_seeds), "J0": list(config.coherent_J0),
                "amplitude": list(config.coherent_amplitudes),
                "trial": np.arange(config.coherent_trials)},
        attrs={"experiment": "rate-balanced", "units": "h and chi are dimensionless"},
    )
    figs = _figures(config, sizes, median, ci, mean, sem, theory, exps, exps_th, p_j0, p_amp,
                    err)
    return Result(summary=summary, data=data, figures=figs,
                  notes="Theory: Kac–Rice average over operating points of the DMFT-based "
                        "closed-loop field fluctuations, with the loop gain propagated through "
                        "the random coupling (neurocircuits.rate.macroscopic). Simulation and "
                        "theory: medians over all networks (fixed points included) of the "
                        "time-std of h over the measured window. "
                        "Coherent state: synchrony chi above chi_threshold after the pulse.")


def _figures(config, sizes, median, ci, mean, sem, theory, exps, exps_th, p_j0, p_amp, err):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
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
    ax = axes[1]
    ax.errorbar(config.coherent_J0, p_j0, yerr=err(p_j0), fmt="o-")
    ax.set_xlabel("J0")
    ax.set_ylabel("P(coherent)")
    ax.set_title(f"Spontaneous coherence, N = {config.coherent_n}")
    ax.set_ylim(-0.05, 1.05)
    ax = axes[2]
    ax.errorbar(config.coherent_amplitudes, p_amp, yerr=err(p_amp), fmt="o-", color="C2")
    ax.set_xlabel("pulse amplitude A")
    ax.set_ylabel("P(coherent)")
    ax.set_title(f"Stimulus-induced coherence, J0 = {config.coherent_J0_amp:g}")
    ax.set_ylim(-0.05, 1.05)
    fig.tight_layout()
    return {"balanced_scaling_and_coherence": fig}


EXPERIMENT = Experiment(
    name="rate-balanced",
    title="Critical vs inhibition-dominated balance: std(h) vs N with theory; coherent states",
    config=Config,
    run=run,
    headline=("h_std_exponent_critical", "h_std_exponent_inhibitory", "h_std_theory_rel_err"),
)
