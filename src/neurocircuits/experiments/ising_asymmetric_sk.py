r"""``ising-asymmetric-sk``: exact theory of the asymmetric SK kinetic Ising model vs simulation.

The N -> infinity theory (:mod:`neurocircuits.ising.sk_theory`) gives the stationary
magnetisation ``m``, the delayed self-correlation ``q``, the entropy production per spin
:math:`\sigma/N = \beta^2\Delta J^2(1-q)k`, the conditional entropy ``S/N`` and the reverse
cross-entropy. It is held against batched finite-N simulations (parallel Glauber, several
disorder draws, Rao–Blackwellised population averages after a burn-in) at several
:math:`\beta` below and above the transition, and against sequential (asynchronous) dynamics
for the magnetisation relaxation. Also: the transition :math:`\beta_c(\Delta J)` at
:math:`H_0 = 0` (no ordered phase for :math:`\Delta J > \sqrt{2/\pi}J_0`) and heatmaps of
``m, q, sigma, S`` over :math:`(\Delta J, \beta)` and :math:`(H_0, \beta)`.

Summary: ``sigma_rel_err`` (largest relative error of sigma between theory and simulation over
the disordered-phase points), the same for the ordered points, ``beta_c`` per ``dJ``.

Reference: Aguilera, Igarashi & Shimazaki, Nat. Commun. 14, 3685 (2023).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from ..ising import KineticIsing, population_observables, sample
from ..ising import sk_theory as sk
from ._base import Context, Experiment, Result, param


@dataclasses.dataclass(frozen=True)
class Config:
    n: int = param(2048, quick=256, low=8, high=65536, help="spins N in the simulations")
    J0: float = param(1.0, help="mean coupling times N")
    dJ: float = param(0.5, low=0.0, help="coupling s.d. times sqrt(N) for the simulations")
    H0: float = param(0.5, low=0.0, help="field half-width for the simulations")
    sim_beta_rel: tuple[float, ...] = param(
        (0.3, 0.5, 0.7, 1.3, 1.6, 2.0), quick=(0.5, 0.7, 1.6), low=0.0, high=20.0,
        help="simulated beta / beta_transition (closer to 1, finite-N effects grow: at 0.85 "
             "and N = 1024 sigma is off by 3.6%)")
    n_disorder: int = param(16, quick=2, low=1, help="disorder draws per beta")
    n_trajectories: int = param(32, quick=8, low=1, help="trajectories per draw")
    n_burn: int = param(500, quick=100, low=0, help="burn-in steps")
    n_measure: int = param(500, quick=100, low=1, help="measured steps")
    dJ_list: tuple[float, ...] = param((0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8),
                                       low=0.0, help="dJ values for the transition beta_c")
    n_grid: int = param(60, quick=12, low=2, high=400, help="heatmap resolution per axis")
    beta_max: float = param(3.0, low=0.1, help="largest beta of the heatmaps")
    async_n: int = param(1024, quick=128, low=8, help="spins for the asynchronous check")
    async_sweeps: int = param(12, quick=6, low=1, help="sweeps of the asynchronous check")


def _simulate_point(config: Config, beta: float, key):
    n = config.n
    keys = jax.random.split(key, config.n_disorder)

    def one(k):
        kn, k1, k2 = jax.random.split(k, 3)
        model = KineticIsing.sk(kn, n, J0=config.J0, dJ=config.dJ, H0=config.H0, beta=beta)
        s = jnp.ones((config.n_trajectories, n))
        if config.n_burn > 0:
            s = sample(model, s[0], n_steps=config.n_burn, key=k1,
                       n_trajectories=config.n_trajectories)[:, -1].astype(model.J.dtype)
        sp = sample(model, s, n_steps=config.n_measure, key=k2,
                    n_trajectories=config.n_trajectories)
        obs = population_observables(model, sp)
        return {k: v.mean() for k, v in obs.items()}

    out = jax.lax.map(one, keys)  # one draw at a time: bounded memory
    return {k: np.asarray(v) for k, v in out.items()}


def run(config: Config, key: jax.Array, ctx: Context) -> Result:
    import xarray as xr

    p_sim = dict(J0=config.J0, dJ=config.dJ, H0=config.H0)
    beta_t = sk.max_fluctuation_beta(**p_sim)
    betas = np.asarray(config.sim_beta_rel) * beta_t
    theory = sk.stationary(sk.SKParams(betas, **p_sim))
    sims = [_simulate_point(config, float(b), jax.random.fold_in(key, i))
            for i, b in enumerate(betas)]
    obs = {k: np.array([s[k] for s in sims]) for k in ("m", "q", "sigma", "S")}
    mean = {k: v.mean(1) for k, v in obs.items()}
    sem = {k: v.std(1, ddof=1) / np.sqrt(v.shape[1]) if v.shape[1] > 1 else np.full(len(v), np.nan)
           for k, v in obs.items()}
    th = {"m": theory.m, "q": theory.q, "sigma": theory.sigma, "S": theory.S}
    rel = np.abs(mean["sigma"] - theory.sigma) / theory.sigma
    disordered = np.asarray(config.sim_beta_rel) < 1.0

    # transition at H0 = 0 for several dJ
    beta_c = {f"{d:g}": sk.critical_beta(config.J0, d) for d in config.dJ_list}
    beta_c_json = {k: (v if np.isfinite(v) else None) for k, v in beta_c.items()}

    # asynchronous dynamics: magnetisation relaxation from s0 = 1 in the ordered phase
    b_async = 1.5 * sk.critical_beta(config.J0, config.dJ) if np.isfinite(
        sk.critical_beta(config.J0, config.dJ)) else 1.0
    p_async = sk.SKParams(b_async, config.J0, config.dJ, 0.0)
    m_async_th = sk.m_trajectory(p_async, 1.0, n_steps=config.async_sweeps, update="sequential")
    ka = jax.random.fold_in(key, 999)
    m_async_sim = []
    for d in range(max(2, config.n_disorder // 4)):
        model = KineticIsing.sk(jax.random.fold_in(ka, d), config.async_n, J0=config.J0,
                                dJ=config.dJ, H0=0.0, beta=b_async, update="sequential")
        sp = sample(model, model.ones(), n_steps=config.async_sweeps,
                    key=jax.random.fold_in(ka, 100 + d), n_trajectories=8)
        m_async_sim.append(np.asarray(sp, float).mean((0, 2)))
    m_async_sim = np.mean(m_async_sim, 0)

    # heatmaps
    g = config.n_grid
    beta_grid = np.linspace(config.beta_max / g, config.beta_max, g)
    dJ_grid = np.linspace(0.02, 1.2, g)
    H0_grid = np.linspace(0.0, 1.5, g)
    pd_dJ = sk.phase_diagram(beta_grid, dJ_grid, axis="dJ", J0=config.J0, H0=0.0)
    pd_H0 = sk.phase_diagram(beta_grid, H0_grid, axis="H0", J0=config.J0, dJ=config.dJ)

    summary = {
        "sigma_rel_err": float(rel[disordered].max()) if disordered.any() else None,
        "sigma_rel_err_ordered": float(rel[~disordered].max()) if (~disordered).any() else None,
        "sigma_rel_err_per_beta": rel.tolist(),
        "m_abs_err_max": float(np.max(np.abs(mean["m"] - theory.m))),
        "q_abs_err_max": float(np.max(np.abs(mean["q"] - theory.q))),
        "S_rel_err_max": float(np.max(np.abs(mean["S"] - theory.S) / theory.S)),
        "beta_transition_sim_params": beta_t,
        "beta_c_H0_0": beta_c_json,  # None: no ordered phase
        "dJ_no_order": float(np.sqrt(2 / np.pi) * config.J0),
        "async_m_abs_err_max": float(np.max(np.abs(m_async_sim - m_async_th))),
        "theory_converged": bool(np.all(theory.converged) and np.all(pd_dJ["converged"])
                                 and np.all(pd_H0["converged"])),
        "beta": betas.tolist(),
        "sigma_theory": theory.sigma.tolist(),
        "sigma_sim": mean["sigma"].tolist(),
        "m_theory": theory.m.tolist(),
        "m_sim": mean["m"].tolist(),
        "n": config.n,
        "n_disorder": config.n_disorder,
    }
    data = xr.Dataset(
        {
            **{f"{k}_sim": (("beta", "draw"), v) for k, v in obs.items()},
            **{f"{k}_theory": (("beta",), np.asarray(v)) for k, v in th.items()},
            **{f"{k}_dJ_beta": (("dJ", "beta_grid"), pd_dJ[k]) for k in ("m", "q", "sigma", "S")},
            **{f"{k}_H0_beta": (("H0", "beta_grid"), pd_H0[k]) for k in ("m", "q", "sigma", "S")},
            "m_async_theory": (("sweep",), m_async_th),
            "m_async_sim": (("sweep",), m_async_sim),
        },
        coords={"beta": betas, "draw": np.arange(config.n_disorder), "dJ": dJ_grid,
                "H0": H0_grid, "beta_grid": beta_grid,
                "sweep": np.arange(config.async_sweeps + 1)},
        attrs={"experiment": "ising-asymmetric-sk"},
    )
    figs = _figures(config, betas, beta_t, mean, sem, th, beta_grid, dJ_grid, H0_grid, pd_dJ,
                    pd_H0, beta_c, m_async_th, m_async_sim)
    notes = (f"Simulations: N = {config.n}, {config.n_disorder} disorder draws x "
             f"{config.n_trajectories} trajectories, {config.n_burn} burn-in + "
             f"{config.n_measure} measured steps, J0 = {config.J0}, dJ = {config.dJ}, "
             f"H0 = {config.H0}; beta_transition = {beta_t:.5g} (theory). Theory in float64, "
             "simulation in float32.")
    return Result(summary=summary, data=data, figures=figs, notes=notes)


def _figures(config, betas, beta_t, mean, sem, th, beta_grid, dJ_grid, H0_grid, pd_dJ, pd_H0,
             beta_c, m_async_th, m_async_sim):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = {}
    fine = np.linspace(0.05, max(betas.max(), 1.2 * beta_t), 120)
    st = sk.stationary(sk.SKParams(fine, config.J0, config.dJ, config.H0))
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
    for ax, k, curve in zip(axes, ("m", "q", "sigma", "S"), (st.m, st.q, st.sigma, st.S)):
        ax.plot(fine, curve, "k-", label="theory (N = inf)")
        ax.errorbar(betas, mean[k], yerr=np.nan_to_num(sem[k]), fmt="o", color="C3",
                    label=f"simulation N = {config.n}")
        ax.axvline(beta_t, color="0.7", ls=":")
        ax.set_xlabel(r"$\beta$")
        ax.set_title({"m": "m", "q": "q = C(t, t-1)", "sigma": r"$\sigma/N$",
                      "S": "S/N"}[k])
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Asymmetric SK: J0 = {config.J0}, dJ = {config.dJ}, H0 = {config.H0}")
    fig.tight_layout()
    figs["theory_vs_simulation"] = fig

    for name, grid, pd, ylabel in (("heatmap_dJ_beta", dJ_grid, pd_dJ, r"$\Delta J$ (H0 = 0)"),
                                   ("heatmap_H0_beta", H0_grid, pd_H0,
                                    rf"$H_0$ ($\Delta J$ = {config.dJ})")):
        fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
        for ax, k in zip(axes, ("m", "q", "sigma", "S"), strict=False):
            im = ax.pcolormesh(beta_grid, grid, pd[k], shading="auto", cmap="viridis")
            fig.colorbar(im, ax=ax)
            ax.set_xlabel(r"$\beta$")
            ax.set_ylabel(ylabel)
            ax.set_title(k)
        if name == "heatmap_dJ_beta":
            ds = np.linspace(0.02, min(1.2, 0.999 * np.sqrt(2 / np.pi) * config.J0), 60)
            bc = np.array([sk.critical_beta(config.J0, d) for d in ds])
            for ax in axes:
                ax.plot(bc, ds, "w--", lw=1)
                ax.set_xlim(beta_grid[0], beta_grid[-1])
        fig.tight_layout()
        figs[name] = fig

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    ds = np.array([float(d) for d in beta_c])
    axes[0].plot(ds, [beta_c[k] for k in beta_c], "o-")
    axes[0].axvline(np.sqrt(2 / np.pi) * config.J0, color="0.6", ls=":",
                    label=r"$\sqrt{2/\pi}J_0$")
    axes[0].set_xlabel(r"$\Delta J$")
    axes[0].set_ylabel(r"$\beta_c$ (H0 = 0)")
    axes[0].set_yscale("log")
    axes[0].legend()
    axes[1].plot(m_async_th, "k-", label="theory")
    axes[1].plot(m_async_sim, "o", color="C3", label=f"sim N = {config.async_n}")
    axes[1].set_xlabel("sweeps")
    axes[1].set_ylabel("m")
    axes[1].set_title("asynchronous dynamics")
    axes[1].legend()
    fig.tight_layout()
    figs["beta_c_and_async"] = fig
    return figs


EXPERIMENT = Experiment(
    name="ising-asymmetric-sk",
    title="Asymmetric SK kinetic Ising: exact phase diagram and entropy production vs simulation",
    config=Config,
    run=run,
    headline=("sigma_rel_err", "beta_transition_sim_params", "async_m_abs_err_max"),
)
