r"""``ising-plefka``: the Plefka family of mean-field methods against Monte Carlo on an SK network.

An asymmetric SK kinetic Ising network (:math:`H_i\sim U(-H_0,H_0)`,
:math:`J_{ij}\sim\mathcal N(J_0/N,\Delta J^2/N)`, :math:`J_0 = 1`, :math:`\Delta J = 0.1`,
:math:`H_0 = 0.5`) is run from :math:`\mathbf s_0 = \mathbf 1` for ``T`` steps at several
:math:`\beta/\beta_c`; the truth is the Rao–Blackwellised Monte Carlo average over many
trajectories. :math:`\beta_c` is the maximally fluctuating point of the exact asymmetric-SK
theory (:func:`neurocircuits.ising.sk_theory.max_fluctuation_beta`; 1.1108 for these values,
the value used by Aguilera et al. 2021). Measured, per method: the forward errors
:math:`\epsilon_m, \epsilon_C, \epsilon_D` (mean squared error over entries and over
``t = 1..T``; ``C`` over off-diagonal pairs), the inverse errors :math:`\epsilon_H, \epsilon_J`
of moment matching at :math:`\beta_c` (data moments averaged over ``t = 3..T`` as in the paper)
plus exact maximum likelihood from a subset of the trajectories, the reconstruction of the
entropy production when the inferred model is rescaled by :math:`\beta`, and the time per
forward step and per inverse fit.

Every forward prediction is checked against the bounds that moments of ±1 spins obey
(``forward_valid``; :attr:`~neurocircuits.ising.meanfield.MFTrajectory.in_bounds`): Plefka[t]
order 2 can diverge at and above :math:`\beta_c` (an instability of its equations, see
:mod:`neurocircuits.ising.meanfield`), and that is reported, not hidden. Moment matching uses the
preconditioned update of :func:`~neurocircuits.ising.inverse.fit_meanfield`; the paper's
fixed-rate update is run alongside (``inverse_paper_update``), as it does not converge for every
method at ``N = 512`` near :math:`\beta_c`. Each fit also reports whether the moments it matched
attract the inferred model's own mean-field dynamics (``inverse_stable``,
``inverse_mean_map_radius``; :attr:`~neurocircuits.ising.inverse.MFInverseFit.stable`): nMF and
TAP moment matching ignore the correlations at ``t - 1`` and, on correlated data, converge to a
solution that does not (for nMF the radius is ~ the largest eigenvalue of the correlation
matrix: 38.5 at ``N = 512``, :math:`\beta_c`; 9.9 for TAP). A
reconstruction is ``reconstruction_valid`` only if its forward runs stay in bounds, the fit
converged and is stable, and no spin saturated in floating point
(``reconstruction_saturated``); otherwise its sigma error is reported with the reason in the
notes, not as a measure of the method.

Reference: Aguilera, Moosavi & Shimazaki, Nat. Commun. 12, 1197 (2021), Figs. 3-6.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from ..ising import KineticIsing, entropy_production, sample, simulate_moments, sk_theory
from ..ising import inverse as inv
from ..ising import meanfield as mf
from ._base import Context, Experiment, Result, param

METHOD_NAMES = tuple(mf.METHODS)


@dataclasses.dataclass(frozen=True)
class Config:
    n: int = param(512, quick=32, low=2, high=8192, help="number of spins N")
    J0: float = param(1.0, help="mean coupling times N")
    dJ: float = param(0.1, low=0.0, help="coupling s.d. times sqrt(N)")
    H0: float = param(0.5, low=0.0, help="half-width of the uniform fields")
    beta_c: float | None = param(None, help="critical beta (None: from the SK theory)")
    beta_rel: tuple[float, ...] = param(
        tuple(np.round(1 + np.linspace(-1, 1, 11) * 0.3, 3).tolist()), quick=(0.8, 1.0, 1.2),
        low=0.0, high=10.0, help="beta / beta_c values of the forward sweep")
    n_steps: int = param(128, quick=16, low=4, high=100_000, help="time steps T from s_0 = 1")
    n_trajectories: int = param(100_000, quick=2000, low=10, help="Monte Carlo trajectories")
    batch_size: int = param(4096, quick=2000, low=1, help="trajectories per compiled batch")
    ml_trajectories: int = param(8000, quick=300, low=1,
                                 help="trajectories used for the exact-ML inverse")
    inverse_max_iter: int = param(10000, quick=1000, low=1, help="moment-matching iteration cap")
    methods: tuple[str, ...] = param(METHOD_NAMES, choices=METHOD_NAMES,
                                     help="forward methods to compare")
    network_seed: int = param(0, low=0, help="seed of the network draw (separate from the run key)")

    def check(self):
        from .._core.errors import ConfigError

        if 1.0 not in self.beta_rel:
            raise ConfigError(f"beta_rel={self.beta_rel} must contain 1.0 (the critical point "
                              "where inverse errors are measured)")


def _errors(mom, tr):
    n = mom.m.shape[-1]
    off = ~np.eye(n, dtype=bool)
    em = float(np.mean((np.asarray(tr.m[1:]) - np.asarray(mom.m[1:])) ** 2))
    dC = (np.asarray(tr.C[1:]) - np.asarray(mom.C[1:]))[:, off]
    eC = float(np.mean(dC**2))
    eD = float(np.mean((np.asarray(tr.D[1:]) - np.asarray(mom.D[1:])) ** 2))
    return em, eC, eD


def _time_per_step(method, H, J, s0, n_steps):
    mf.run(method, H, J, s0, n_steps=n_steps).m.block_until_ready()  # compile
    t0 = time.perf_counter()
    mf.run(method, H, J, s0, n_steps=n_steps).m.block_until_ready()
    return (time.perf_counter() - t0) / n_steps


def _window_moments(mom, t_from=3):
    """Data moments averaged over t = t_from..T and the matching t - 1 moments."""
    m = np.asarray(mom.m)
    C = np.asarray(mom.C)
    D = np.asarray(mom.D)
    sl, slp = slice(t_from, None), slice(t_from - 1, -1)
    # averages of non-connected moments, then connected with the averaged means (as the paper)
    m_t, m_p = m[sl].mean(0), m[slp].mean(0)
    m_pp = m[t_from - 2:-2].mean(0)
    c_t = (C[sl] + m[sl, :, None] * m[sl, None, :]).mean(0) - np.outer(m_t, m_t)
    c_p = (C[slp] + m[slp, :, None] * m[slp, None, :]).mean(0) - np.outer(m_p, m_p)
    d_t = (D[sl] + m[sl, :, None] * m[slp, None, :]).mean(0) - np.outer(m_t, m_p)
    d_p = (D[slp] + m[slp, :, None] * m[t_from - 2:-2, None, :]).mean(0) - np.outer(m_p, m_pp)
    return m_t, c_t, d_t, m_p, c_p, d_p


def run(config: Config, key: jax.Array, ctx: Context) -> Result:
    import xarray as xr

    n, T = config.n, config.n_steps
    beta_c = config.beta_c if config.beta_c is not None else sk_theory.max_fluctuation_beta(
        config.J0, config.dJ, config.H0)
    base = KineticIsing.sk(jax.random.key(config.network_seed), n, J0=config.J0, dJ=config.dJ,
                           H0=config.H0, beta=1.0)
    s0 = jnp.ones(n)
    betas_rel = np.asarray(config.beta_rel, float)
    methods = list(config.methods)
    eps = np.full((len(methods), len(betas_rel), 3), np.nan)
    valid = np.zeros((len(methods), len(betas_rel)), bool)
    first_invalid = np.full((len(methods), len(betas_rel)), -1, int)
    mean_traj = {}  # at beta_c: population means over time
    sigma_mc = np.zeros(len(betas_rel))
    C_mc = np.zeros(len(betas_rel))
    D_mc = np.zeros(len(betas_rel))
    mom_c = None
    t_mc = 0.0
    for b, br in enumerate(betas_rel):
        beta = br * beta_c
        model = KineticIsing(base.H, base.J, beta=beta)
        t0 = time.perf_counter()
        mom = simulate_moments(model, s0, n_steps=T, n_trajectories=config.n_trajectories,
                               key=jax.random.fold_in(key, b), batch_size=config.batch_size)
        mom = jax.tree.map(np.asarray, mom)
        t_mc += time.perf_counter() - t0
        off = ~np.eye(n, dtype=bool)
        w = slice(T // 2, None)
        D_avg = mom.D[w].mean(0)
        sigma_mc[b] = float(entropy_production(np.asarray(model.J), D_avg))
        C_mc[b] = float(mom.C[w][:, off].mean())
        D_mc[b] = float(D_avg.mean())
        if np.isclose(br, 1.0):
            mom_c = mom
            mean_traj["MC"] = (mom.m.mean(1), mom.C[:, off].mean(1), mom.D.mean((1, 2)))
        for k, name in enumerate(methods):
            tr = mf.run(name, model.H, model.J, s0, n_steps=T)
            valid[k, b] = bool(tr.valid)
            first_invalid[k, b] = int(tr.first_invalid_step)
            tr = jax.tree.map(np.asarray, tr)
            eps[k, b] = _errors(mom, tr)
            if np.isclose(br, 1.0):
                mean_traj[name] = (tr.m.mean(1), tr.C[:, off].mean(1), tr.D.mean((1, 2)))

    # ---- timing of the forward methods at beta_c ----
    model_c = KineticIsing(base.H, base.J, beta=beta_c)
    t_step = {name: _time_per_step(name, model_c.H, model_c.J, s0, T)
              for name in methods}

    # ---- inverse problem at beta_c ----
    m_t, c_t, d_t, m_p, c_p, d_p = _window_moments(mom_c)
    H_true, J_true = np.asarray(model_c.H), np.asarray(model_c.J)
    inv_err, inv_time, inv_iter, inv_conv, fits, paper = {}, {}, {}, {}, {}, {}
    for name in methods:
        t0 = time.perf_counter()
        fit = inv.fit_meanfield(name, m_t, d_t, m_p, c_p, d_p,
                                max_iter=config.inverse_max_iter)
        fit.J.block_until_ready()
        inv_time[name] = time.perf_counter() - t0
        inv_err[name] = (inv.mse(fit.H, H_true), inv.mse(fit.J, J_true))
        inv_iter[name] = int(fit.n_iter)
        inv_conv[name] = bool(fit.converged)
        fits[name] = fit
        # the published fixed-rate update (eta_H = 0.1, eta_J = 1/sqrt(N)), for comparison
        t0 = time.perf_counter()
        pf = inv.fit_meanfield(name, m_t, d_t, m_p, c_p, d_p, update="paper",
                               max_iter=config.inverse_max_iter)
        pf.J.block_until_ready()
        paper[name] = {"converged": bool(pf.converged), "iterations": int(pf.n_iter),
                       "eps_H": inv.mse(pf.H, H_true), "eps_J": inv.mse(pf.J, J_true),
                       "time_s": time.perf_counter() - t0}
    closed = {"nmf_closed": inv.nmf_inverse(m_t, c_p, d_t, m_p),
              "tap_closed": inv.tap_inverse(m_t, c_p, d_t, m_p),
              "emf_closed": inv.emf_inverse(m_t, c_p, d_t, m_p)}
    for name, f in closed.items():
        inv_err[name] = (inv.mse(f.H, H_true), inv.mse(f.J, J_true))
        inv_conv[name] = bool(f.converged)
    # exact maximum likelihood from a subset of trajectories (after the transient t >= 3)
    spins = sample(model_c, s0, n_steps=T, key=jax.random.fold_in(key, 10_000),
                   n_trajectories=min(config.ml_trajectories, config.n_trajectories))
    t0 = time.perf_counter()
    ml = inv.fit_ml(spins[:, 2:])
    ml.J.block_until_ready()
    inv_time["ml"] = time.perf_counter() - t0
    inv_err["ml"] = (inv.mse(ml.H, H_true), inv.mse(ml.J, J_true))
    inv_conv["ml"] = bool(ml.converged)
    inv_iter["ml"] = int(ml.n_iter)

    # ---- reconstruction: rescale the inferred model by beta_rel, predict sigma ----
    # A reconstruction is valid only if the forward runs stay inside the +-1-spin bounds, the
    # inverse converged to a state its own mean-field dynamics is attracted to (fit.stable),
    # and no spin froze in floating point (1 - m^2 == 0 makes sigma exactly 0 by rounding).
    recon, rec_valid, rec_bounds, rec_sat, rec_why = {}, {}, {}, {}, {}
    for name in methods:
        fit = fits[name]
        rec = inv.reconstruct(name, fit.H, fit.J, jnp.asarray(betas_rel), s0=s0, n_steps=T,
                              window=T - T // 2)
        recon[name] = np.asarray(rec.sigma)
        rec_bounds[name] = bool(np.all(np.asarray(rec.valid)))
        rec_sat[name] = float(np.max(np.asarray(rec.saturated)))
        why = [w for w, bad in (("forward run out of bounds", not rec_bounds[name]),
                                ("inverse not converged", not inv_conv[name]),
                                ("inverse fixed point unstable", not bool(fit.stable)),
                                ("saturated", rec_sat[name] > 0)) if bad]
        rec_valid[name] = not why
        rec_why[name] = why
    rec_err = {name: float(np.mean((recon[name] - sigma_mc) ** 2 / np.maximum(sigma_mc, 1e-12)
                                   ** 2)) for name in methods}

    ib = int(np.argmin(np.abs(betas_rel - 1.0)))
    # "best" among the predictions that are admissible moments of +-1 spins at all
    ok = valid[:, ib]
    best = {q: (methods[int(np.nanargmin(np.where(ok, eps[:, ib, i], np.inf)))]
                if ok.any() else None) for i, q in enumerate("mCD")}
    summary = {
        "beta_c": beta_c,
        "n": n,
        "n_steps": T,
        "n_trajectories": config.n_trajectories,
        "eps_m": {name: eps[k, ib, 0] for k, name in enumerate(methods)},
        "eps_C": {name: eps[k, ib, 1] for k, name in enumerate(methods)},
        "eps_D": {name: eps[k, ib, 2] for k, name in enumerate(methods)},
        "forward_valid": {name: bool(valid[k, ib]) for k, name in enumerate(methods)},
        "forward_first_invalid_step": {name: int(first_invalid[k, ib])
                                       for k, name in enumerate(methods)},
        "forward_valid_all_betas": {name: bool(valid[k].all()) for k, name in enumerate(methods)},
        "best_eps_C": best["C"],
        "best_eps_D": best["D"],
        "eps_H": {k: v[0] for k, v in inv_err.items()},
        "eps_J": {k: v[1] for k, v in inv_err.items()},
        "inverse_converged": inv_conv,
        "inverse_stable": {name: bool(fits[name].stable) for name in methods},
        "inverse_mean_map_radius": {name: float(fits[name].mean_map_radius)
                                    for name in methods},
        "inverse_iterations": inv_iter,
        "time_per_step_s": t_step,
        "inverse_time_s": inv_time,
        "inverse_paper_update": paper,
        "monte_carlo_time_s": t_mc,
        "sigma_mc": sigma_mc.tolist(),
        "reconstruction_sigma_rel_mse": rec_err,
        "reconstruction_valid": rec_valid,
        "reconstruction_saturated": rec_sat,
    }
    data = xr.Dataset(
        {
            "eps": (("method", "beta_rel", "moment"), eps),
            "valid": (("method", "beta_rel"), valid),
            "first_invalid_step": (("method", "beta_rel"), first_invalid),
            "sigma_mc": (("beta_rel",), sigma_mc),
            "sigma_reconstructed": (("method", "beta_rel"), np.stack([recon[m] for m in methods])),
            "C_mc": (("beta_rel",), C_mc),
            "D_mc": (("beta_rel",), D_mc),
        },
        coords={"method": methods, "beta_rel": betas_rel, "moment": ["m", "C", "D"]},
        attrs={"experiment": "ising-plefka", "beta_c": beta_c},
    )
    figures = _figures(methods, betas_rel, eps, mean_traj, inv_err, sigma_mc, recon, t_step,
                       rec_valid)
    notes = (f"SK network N = {n}, J0 = {config.J0}, dJ = {config.dJ}, H0 = {config.H0}, "
             f"beta_c = {beta_c:.6g}; truth from {config.n_trajectories} trajectories of T = {T} "
             f"steps (Rao-Blackwellised); device {jax.devices()[0].device_kind}, float32 with "
             "highest matmul precision.")
    for k, name in enumerate(methods):
        bad = [f"{br:g}" for br, v in zip(betas_rel, valid[k], strict=True) if not v]
        if bad:
            notes += (f" Forward {name}: the prediction leaves the bounds of +-1-spin moments "
                      f"(|C| or |D| > 1, or non-finite) at beta/beta_c = {', '.join(bad)}"
                      + (f" (at beta_c from step {first_invalid[k, ib]})" if not valid[k, ib]
                         else "")
                      + "; its errors there are those of a diverged recursion"
                      + (" (Plefka[t] o2's correlation recursion is unstable once "
                         "rho((1-m^2)J) > 1, see neurocircuits.ising.meanfield)."
                         if name == "plefka_t_o2" else "."))
    notes += (" Inverse: moment matching with the preconditioned update (moment differences "
              "times the inverse input covariance; stable for any N); 'inverse_paper_update' "
              "has the published fixed-rate update (eta_H = 0.1, eta_J = 1/sqrt(N)) for "
              "comparison, which converged for "
              + (", ".join(k for k, v in paper.items() if v["converged"]) or "none")
              + " and not for "
              + (", ".join(k for k, v in paper.items() if not v["converged"]) or "none")
              + ". nMF and TAP (Plefka[t-1,t]) moment matching ignore the correlations at t-1 "
              "(D_hat = A J diag(1 - m_{t-1}^2)), so on correlated data their unique solution is "
              "far from the true couplings (J ~ J C_{t-1} / (1 - m_{t-1}^2)); nmf_closed and "
              "tap_closed are the Roudi-Hertz inverses, which use C_{t-1} (the closed form of "
              "Plefka[t] o1 matching, not of nMF matching).")
    not_conv = [k for k, v in inv_conv.items() if not v]
    if not_conv:
        notes += f" Not converged: {', '.join(not_conv)}."
    unstable = [k for k in methods if not bool(fits[k].stable)]
    if unstable:
        notes += (" Unstable inverse solutions (the matched moments repel the inferred model's "
                  "own mean-field dynamics; spectral radius of d m_t / d m_{t-1}: "
                  + ", ".join(f"{k} {float(fits[k].mean_map_radius):.3g}" for k in unstable)
                  + "): running that model forward cannot return to the data.")
    not_rec = [k for k, v in rec_valid.items() if not v]
    if not_rec:
        notes += (" Reconstruction not valid for "
                  + "; ".join(f"{k} ({', '.join(rec_why[k])})" for k in not_rec)
                  + ": its sigma error is not a measure of the method (a saturated run predicts "
                  "sigma = 0 by rounding, relative error 1).")
    return Result(summary=summary, data=data, figures=figures, notes=notes)


def _figures(methods, betas_rel, eps, mean_traj, inv_err, sigma_mc, recon, t_step, rec_valid):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = mf.LABELS
    figs = {}
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for q, ax in enumerate(axes):
        for k, name in enumerate(methods):
            ax.semilogy(betas_rel, eps[k, :, q], "o-", ms=3, label=labels.get(name, name))
        ax.set_xlabel(r"$\beta/\beta_c$")
        ax.set_ylabel(rf"$\epsilon_{'mCD'[q]}$")
        ax.axvline(1.0, color="0.7", ls=":")
    axes[0].legend(fontsize=7)
    fig.suptitle("Forward errors vs Monte Carlo")
    fig.tight_layout()
    figs["forward_errors"] = fig

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for key, (m, C, D) in mean_traj.items():
        style = dict(color="k", lw=2) if key == "MC" else {}
        for ax, y in zip(axes, (m, C, D), strict=False):
            ax.plot(np.arange(len(y)), y, label=labels.get(key, key), **style)
    for ax, name in zip(axes, ("mean m", "mean C (off-diag)", "mean D")):
        ax.set_xlabel("t")
        ax.set_ylabel(name)
    axes[0].legend(fontsize=7)
    fig.suptitle(r"Population averages at $\beta_c$")
    fig.tight_layout()
    figs["time_course_beta_c"] = fig

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    names = list(inv_err)
    axes[0].bar(range(len(names)), [inv_err[k][0] for k in names])
    axes[1].bar(range(len(names)), [inv_err[k][1] for k in names])
    for ax, t in zip(axes[:2], (r"$\epsilon_H$", r"$\epsilon_J$"), strict=False):
        ax.set_xticks(range(len(names)), [labels.get(k, k) for k in names], rotation=60,
                      fontsize=7)
        ax.set_yscale("log")
        ax.set_title(t)
    axes[2].plot(betas_rel, sigma_mc, "ko-", lw=2, label="MC")
    for name in methods:
        ok = rec_valid[name]
        axes[2].plot(betas_rel, recon[name], ".-" if ok else ".:",
                     label=labels.get(name, name) + ("" if ok else " (not valid)"))
    axes[2].set_xlabel(r"$\beta/\beta_c$")
    axes[2].set_ylabel(r"$\sigma$ per step")
    axes[2].set_title("Reconstruction (inferred model rescaled)")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    figs["inverse_and_reconstruction"] = fig

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(range(len(methods)), [t_step[m] * 1e3 for m in methods])
    ax.set_xticks(range(len(methods)), [labels.get(m, m) for m in methods], rotation=45,
                  fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("ms per step")
    ax.set_title("Forward time per step")
    fig.tight_layout()
    figs["timing"] = fig
    return figs


EXPERIMENT = Experiment(
    name="ising-plefka",
    title="Plefka mean-field family vs Monte Carlo on an asymmetric SK kinetic Ising network",
    config=Config,
    run=run,
    headline=("beta_c", "best_eps_C", "best_eps_D"),
)
