r"""``rate-modular``: module-wise synchrony of a modular E/I rate network, theory vs simulation.

M modules, each critically balanced, block mean strengths :math:`J_0^{\rm in}` within and
:math:`J_0^{\rm out}` between modules plus a random part of gain g
(:func:`neurocircuits.connectivity.modular`), :math:`\phi = 1 + \tanh`. Measured per network:
the variance over time of each module's order parameter :math:`m_a(t)` (mean rate), the mean
correlation of two units' rates within a module (from :math:`\mathrm{Var}\,m_a` and the units'
variances: :math:`\bar c = (N_a^2 \mathrm{Var}\,m_a - \sum_i \mathrm{Var}\,\phi_i)/(N_a(N_a-1))`)
and between modules (:math:`\mathrm{Cov}(m_a, m_b)`), normalised by the mean unit variance.
Predicted by :func:`neurocircuits.rate.macroscopic.modular_fluctuations` (mixture DMFT shared
by the modules, random loop-gain matrix with the gains averaged over the field-driven input,
solved self-consistently; variances over the same window as measured). The prediction does not
depend on N (beyond the 1/N_a term); the simulated module variance still grows with N up to
N = 4 x 2000 (finite-size chaos), so ``module_var_rel_err`` is read at the largest size. The
headline numbers are medians over networks and modules (module pairs) on both sides; means are
reported too. Networks at a fixed point (units' rate std below ``quiescent_threshold``) enter
the module variance (as ~0) but not the correlations, which are undefined for them.
"""

from __future__ import annotations

import dataclasses
import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import Batch, Record, simulate
from .._core import connectivity
from ..rate import RateNetwork, one_plus_tanh
from ..rate.macroscopic import modular_fluctuations
from ._base import Context, Experiment, Result, param, run_fingerprint


@dataclasses.dataclass(frozen=True)
class Config:
    n_modules: int = param(4, low=2, high=64, help="number of modules M")
    module_sizes: tuple[int, ...] = param((1000, 2000, 4000), quick=(200, 400), low=10,
                                          high=100_000, help="units per module, one run each")
    n_seeds: int = param(16, quick=3, low=2, high=1024, help="network realisations per size")
    g: float = param(3.0, low=0.0, high=20.0, help="random-coupling gain")
    J0_in: float = param(1.0, low=0.0, high=20.0, help="mean strength within modules")
    J0_out: float = param(0.3, low=0.0, high=20.0, help="mean strength between modules")
    f: float = param(0.8, low=0.01, high=0.99, help="excitatory fraction")
    tau: float = param(10.0, low=1e-3, unit="ms", help="time constant")
    dt: float = param(1.0, low=1e-4, unit="ms", help="integration step")
    t_transient: float = param(1000.0, low=0.0, unit="ms", help="discarded transient")
    t_measure: float = param(8000.0, quick=1500.0, low=10.0, unit="ms", help="measured time")
    n_recorded: int = param(200, quick=50, low=2, help="units per module whose variance is kept")
    max_batch_bytes: float = param(16e9, low=1e6, help="bytes of coupling matrices per batch")
    theory_samples: int = param(200, quick=40, low=10,
                                help="importance samples of the operating point in theory")
    theory_loops: int = param(16, quick=8, low=1, help="loop-gain draws per operating point")
    quiescent_threshold: float = param(0.02, low=0.0,
                                       help="unit rate std below which a network is frozen")

    def check(self):
        from .._core.errors import ConfigError

        if self.J0_in == self.J0_out:
            raise ConfigError(f"J0_in={self.J0_in} equals J0_out; allowed: J0_in != J0_out "
                              "(otherwise the modules are not distinguishable)")
        if self.n_recorded > min(self.module_sizes):
            raise ConfigError(f"n_recorded={self.n_recorded} exceeds the smallest module "
                              f"{min(self.module_sizes)}; allowed: n_recorded <= module size")


def _simulate(config: Config, n_mod: int, key, ctx):
    """Per seed: Var m_a (M,), mean unit variance per module (M,), Cov(m_a, m_b) (M, M)."""
    m_count = config.n_modules
    n = m_count * n_mod
    every = 5
    n_steps = int(round((config.t_transient + config.t_measure) / config.dt)) // every * every
    skip = int(round(config.t_transient / config.dt)) // every
    group = max(1, min(config.n_seeds, int(config.max_batch_bytes // (4 * n * n))))
    out = []
    for start in range(0, config.n_seeds, group):
        size = min(group, config.n_seeds - start)
        keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(start, start + size))
        nets = eqx.filter_vmap(lambda k: RateNetwork(connectivity.modular(
            k, (n_mod,) * m_count, J0_in=config.J0_in, J0_out=config.J0_out, g=config.g,
            f=config.f), tau=config.tau))(keys)
        labels = nets.coupling.module_labels[0]
        n_rec = config.n_recorded

        def observe(u, t):
            r = one_plus_tanh(u)
            return {"m": jax.ops.segment_sum(r, labels, m_count) / n_mod,
                    "r": r.reshape(m_count, n_mod)[:, :n_rec]}

        traj = simulate(nets, jax.random.normal(jax.random.fold_in(key, 10_000 + start),
                                                (size, n)),
                        dt=config.dt, n_steps=n_steps, key=jax.random.split(
                            jax.random.fold_in(key, 20_000 + start), size),
                        record=Record(every=every, fn=observe), batch=Batch(model=True),
                        progress=None if ctx is None else ctx.progress)
        m = np.asarray(traj.ys["m"], np.float64)[:, skip:]
        r = np.asarray(traj.ys["r"], np.float64)[:, skip:]
        dm = m - m.mean(axis=1, keepdims=True)
        cov = np.einsum("sta,stb->sab", dm, dm) / m.shape[1]
        out.append((m.var(axis=1), r.var(axis=1).mean(axis=-1), cov))
    return [np.concatenate(x) for x in zip(*out)]


def _theory(config: Config, n_mod: int):
    """The prediction for modules of ``n_mod`` units (minutes of host CPU at full scale; it
    does not depend on the run's key, so an interrupted run can be resumed with the theory
    steps computed elsewhere)."""
    m_count = config.n_modules
    j0 = np.full((m_count, m_count), config.J0_out)
    np.fill_diagonal(j0, config.J0_in)
    return modular_fluctuations(g=config.g, J0=j0, sizes=[n_mod] * m_count, f=config.f,
                                n_samples=config.theory_samples, n_loop=config.theory_loops,
                                t_window=config.t_measure / config.tau, seed=0)


def run(config: Config, key: jax.Array, ctx: Context) -> Result:
    import xarray as xr

    m_count = config.n_modules
    sizes = np.asarray(config.module_sizes)
    off = ~np.eye(m_count, dtype=bool)
    rows = []
    fingerprint = run_fingerprint(config, key)
    for i, n_mod in enumerate(sizes):
        # each size a resumable step: an interrupted run continues after its last finished size
        var_m, var_unit, cov = ctx.resumable(
            f"simulation_{int(n_mod)}", fingerprint,
            functools.partial(_simulate, config, int(n_mod), jax.random.fold_in(key, i), ctx))
        # a network at a fixed point has no temporal variance: its correlations are undefined
        frozen = np.sqrt(var_unit.mean(axis=1)) < config.quiescent_threshold
        safe = np.where(var_unit > 0, var_unit, 1.0)
        within = (n_mod**2 * var_m - n_mod * var_unit) / (n_mod * (n_mod - 1)) / safe
        between = cov / np.sqrt(safe[:, :, None] * safe[:, None, :])
        pred = ctx.resumable(f"theory_{int(n_mod)}", fingerprint,
                             functools.partial(_theory, config, int(n_mod)))
        rows.append({
            "var_m": var_m, "within": within[~frozen], "between": between[~frozen][:, off],
            "frozen": frozen.mean(),
            "theory_var": float(np.mean(pred.module_var)),
            "theory_var_median": pred.module_var_median,
            "theory_within": float(np.mean(pred.within_corr)),
            "theory_between": float(np.nanmean(pred.between_corr)),
            "theory_within_median": pred.within_corr_median,
            "theory_between_median": pred.between_corr_median,
            "theory_fixed_point": pred.fixed_point_fraction,
            "theory_converged": pred.converged, "theory_n_eff": pred.n_effective,
            "mean_cov": cov.mean(axis=0), "mean_var_unit": var_unit.mean(),
            "var_unit": var_unit.mean(), "theory_unit_var": float(np.mean(pred.unit_var)),
        })
    # Simulation and theory over the same population (all networks and modules): the headline
    # uses medians (robust to the heavy tail of networks whose loop is near instability, where
    # the linear theory overestimates); means are reported as well.
    sim_var = np.array([r["var_m"].mean() for r in rows])
    sim_var_sem = np.array([r["var_m"].mean(axis=1).std(ddof=1) / np.sqrt(config.n_seeds)
                            for r in rows])
    sim_var_med = np.array([np.median(r["var_m"]) for r in rows])
    sim_within = np.array([r["within"].mean() for r in rows])
    sim_between = np.array([r["between"].mean() for r in rows])
    sim_within_med = np.array([np.median(r["within"]) for r in rows])
    sim_between_med = np.array([np.median(r["between"]) for r in rows])
    th = {k: np.array([r[k] for r in rows]) for k in (
        "theory_var", "theory_var_median", "theory_within", "theory_between",
        "theory_within_median", "theory_between_median", "theory_fixed_point",
        "theory_unit_var")}
    th_var, th_within, th_between = th["theory_var"], th["theory_within"], th["theory_between"]

    def rel(a, b):
        return float(abs(a - b) / b)

    summary = {
        "module_var_rel_err": rel(sim_var_med[-1], th["theory_var_median"][-1]),
        "module_var_rel_err_of": "median over networks and modules at the largest size",
        "module_var_mean_rel_err": rel(sim_var[-1], th_var[-1]),
        "within_between_corr_ratio": float(sim_within_med[-1] / sim_between_med[-1]),
        "within_between_corr_ratio_theory": float(th["theory_within_median"][-1]
                                                  / th["theory_between_median"][-1]),
        "within_module_corr": float(sim_within_med[-1]),
        "between_module_corr": float(sim_between_med[-1]),
        "within_module_corr_theory": float(th["theory_within_median"][-1]),
        "between_module_corr_theory": float(th["theory_between_median"][-1]),
        "module_sizes": sizes.tolist(),
        "module_var_sim_median": sim_var_med.tolist(),
        "module_var_theory_median": th["theory_var_median"].tolist(),
        "module_var_sim": sim_var.tolist(),
        "module_var_sim_sem": sim_var_sem.tolist(),
        "module_var_theory": th_var.tolist(),
        "within_corr_sim_median": sim_within_med.tolist(),
        "between_corr_sim_median": sim_between_med.tolist(),
        "within_corr_theory_median": th["theory_within_median"].tolist(),
        "between_corr_theory_median": th["theory_between_median"].tolist(),
        "within_corr_sim": sim_within.tolist(),
        "between_corr_sim": sim_between.tolist(),
        "within_corr_theory": th_within.tolist(),
        "between_corr_theory": th_between.tolist(),
        "unit_var_sim": [r["var_unit"] for r in rows],
        "unit_var_theory": th["theory_unit_var"].tolist(),
        "frozen_fraction_sim": [float(r["frozen"]) for r in rows],
        "fixed_point_fraction_theory": th["theory_fixed_point"].tolist(),
        "theory_converged": bool(all(r["theory_converged"] for r in rows)),
        "theory_effective_samples": [r["theory_n_eff"] for r in rows],
    }
    data = xr.Dataset(
        {"module_var_sim": (("size", "seed", "module"), np.stack([r["var_m"] for r in rows])),
         "module_var_theory": (("size",), th_var),
         "within_corr_theory": (("size",), th_within),
         "between_corr_theory": (("size",), th_between)},
        coords={"size": sizes, "seed": np.arange(config.n_seeds), "module": np.arange(m_count)},
        attrs={"experiment": "rate-modular"},
    )
    return Result(summary=summary, data=data,
                  figures=_figures(config, sizes, sim_var_med, sim_var, th["theory_var_median"],
                                   th_var, sim_within_med, sim_between_med,
                                   th["theory_within_median"], th["theory_between_median"],
                                   rows[-1]),
                  notes=f"M = {m_count} modules, J0_in = {config.J0_in}, J0_out = "
                        f"{config.J0_out}, g = {config.g}; {config.n_seeds} networks per size.")


def _figures(config, sizes, sim_med, sim_mean, th_med, th_mean, sw, sb, tw, tb, last):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
    total = sizes * config.n_modules
    ax = axes[0]
    ax.plot(total, sim_med, "o", color="C0", label="simulation, median")
    ax.plot(total, sim_mean, "x", color="C0", alpha=0.6, label="simulation, mean")
    ax.plot(total, th_med, "k-", label="theory, median")
    ax.plot(total, th_mean, "k:", label="theory, mean")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("N")
    ax.set_ylabel(r"Var$_t$ $m_a$")
    ax.set_title("Module-activity variance")
    ax.legend()
    ax = axes[1]
    ax.plot(total, sw, "o", color="C3", label="within, sim (median)")
    ax.plot(total, tw, "-", color="C3", label="within, theory (median)")
    ax.plot(total, sb, "s", color="C0", label="between, sim (median)")
    ax.plot(total, tb, "-", color="C0", label="between, theory (median)")
    ax.set_xscale("log")
    ax.set_xlabel("N")
    ax.set_ylabel("mean pairwise rate correlation")
    ax.set_title("Module-wise synchrony")
    ax.legend(fontsize=8)
    ax = axes[2]
    cov = last["mean_cov"] / last["mean_var_unit"]
    im = ax.imshow(cov, cmap="viridis")
    fig.colorbar(im, ax=ax)
    ax.set_title("Cov(m_a, m_b) / unit variance (largest N)")
    ax.set_xlabel("module b")
    ax.set_ylabel("module a")
    fig.tight_layout()
    return {"modular_synchrony": fig}


EXPERIMENT = Experiment(
    name="rate-modular",
    title="Module-wise synchrony of a modular balanced network: theory vs simulation",
    config=Config,
    run=run,
    headline=("module_var_rel_err", "within_between_corr_ratio",
              "within_between_corr_ratio_theory"),
)
