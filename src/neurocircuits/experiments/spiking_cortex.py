r"""``spiking-cortex``: a modular cortical circuit of Izhikevich regular-spiking (RS, excitatory),
fast-spiking (FS) and low-threshold-spiking (LTS) cells, with and without modular structure.

``n_modules`` modules (80% RS, 10% FS, 10% LTS); every cell receives ``k_in`` excitatory synapses
from the RS cells of its own module and ``k_out`` from RS cells of other modules, and local
inhibition from the FS and LTS cells of its module (conductance synapses, E_e = 0 mV,
tau_e = 5 ms, E_i = -80 mV, tau_i = 10 ms; Poisson background into the excitatory receptor;
:func:`neurocircuits.spiking.circuits.modular_cortex`). The control network has the same
in-degrees with the excitatory inputs spread evenly over all modules (no modular structure).

Summary numbers: ``rate_<class>_hz`` (simulation, after ``t_transient``),
``rate_<class>_theory_hz`` (mean-field theory: independent Poisson inputs at the
self-consistent rates through the simulated single-cell transfer function,
:func:`neurocircuits.spiking.theory.conductance_mean_field`), ``theory_rate_rel_err_max`` (max
over classes of |sim - theory| / theory), ``within_module_corr`` and ``between_module_corr``
(mean Pearson correlation of RS spike counts in ``bin_ms`` bins over pairs of distinct cells in
the same / in different modules), the same for the control network (``*_control``), and the
theory's prediction of those correlations (``within_module_corr_theory``,
``between_module_corr_theory``: zero-frequency linear response of the population rates to their
finite-size noise) with ``theory_predicts_ordering``.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from ..spiking import SpikeRecorder, cv_isi, firing_rates, run, spike_events
from ..spiking.circuits import modular_cortex, modular_cortex_indegrees
from ..spiking.stats import binned_counts
from ..spiking.theory import conductance_mean_field
from ._base import Context, Experiment, Result, param

CLASSES = ("RS", "FS", "LTS")


@dataclasses.dataclass(frozen=True)
class Config:
    n_modules: int = param(8, quick=4, low=1, high=1000, help="modules")
    n_per_module: int = param(1000, quick=150, low=10, help="cells per module")
    k_in: int = param(100, quick=50, low=1, help="excitatory in-degree from the own module")
    k_out: int = param(20, quick=10, low=0, help="excitatory in-degree from other modules")
    duration: float = param(5000.0, quick=600.0, low=100.0, unit="ms", help="simulated time")
    t_transient: float = param(200.0, quick=100.0, low=0.0, unit="ms", help="discarded start")
    dt: float = param(0.1, low=1e-3, high=0.5, unit="ms", help="time step (Euler)")
    bin_ms: float = param(20.0, low=1.0, unit="ms", help="spike-count bin for correlations")
    control: bool = param(True, help="also simulate the network without modular structure")
    theory_cells: int = param(400, quick=100, low=10, help="cells per class for the transfer function")

    def check(self):
        from .._core.errors import ConfigError

        if self.t_transient + 2 * self.bin_ms > self.duration:
            raise ConfigError("duration must exceed t_transient + 2 bin_ms")


def _simulate(config, key, k_in, k_out):
    n = config.n_modules * config.n_per_module
    window = 100
    n_steps = int(round(config.duration / config.dt)) // window * window
    rec = SpikeRecorder(window=window, capacity=int(n * window * config.dt * 1e-3 * 200) + 1024)
    k_net, k_init, k_run = jax.random.split(key, 3)
    net, init = modular_cortex(k_net, n_modules=config.n_modules,
                               n_per_module=config.n_per_module, k_in=k_in, k_out=k_out,
                               dt=config.dt, recorder=rec, max_spikes_per_step=n)
    traj = run(net, init(k_init), dt=config.dt, n_steps=n_steps, key=k_run, record=net.record(),
               progress=False)
    ev = spike_events(traj, net)
    t_stop = n_steps * config.dt
    lab = np.asarray(net.labels)
    rates = firing_rates(ev, n, dt=config.dt, t_start=config.t_transient, t_stop=t_stop)
    cvs = cv_isi(ev, n, dt=config.dt, t_start=config.t_transient)
    X = binned_counts(ev, n, dt=config.dt, bin_ms=config.bin_ms, t_start=config.t_transient,
                      t_stop=t_stop)
    rs = np.nonzero(lab % 3 == 0)[0]
    Xr = X[rs]
    ok = Xr.std(1) > 0
    C = np.corrcoef(Xr[ok]) if ok.sum() > 1 else np.full((1, 1), np.nan)
    mod = (lab // 3)[rs][ok]
    same = mod[:, None] == mod[None, :]
    off = ~np.eye(len(mod), dtype=bool)
    within = float(np.mean(C[same & off])) if (same & off).any() else float("nan")
    between = float(np.mean(C[~same])) if (~same).any() else float("nan")
    # module x module mean correlation matrix
    M = config.n_modules
    Cm = np.full((M, M), np.nan)
    for a in range(M):
        for b in range(M):
            sel = (mod[:, None] == a) & (mod[None, :] == b) & off
            if sel.any():
                Cm[a, b] = C[sel].mean()
    return dict(net=net, ev=ev, rates=rates, cvs=cvs, lab=lab, within=within, between=between,
                Cm=Cm, C=C, n_steps=n_steps)


def correlation_theory(config, mf, K_e, K_i, sizes):
    """Zero-frequency linear response of the (module, class) population rates to their
    finite-size Poisson noise: pairwise count correlations of RS cells within / between
    modules (see the module docstring)."""
    P = K_e.shape[0]
    cls = np.arange(P) % 3
    nu = mf.rates_hz[cls] * 1e-3  # 1/ms
    G = mf.gain[cls]  # Hz per Hz
    W = G[:, 0:1] * K_e + G[:, 1:2] * K_i
    T = config.bin_ms
    D = np.diag(nu / (sizes * T))  # variance of population-mean rates (1/ms^2) over a bin
    A = np.linalg.inv(np.eye(P) - W)
    S = A @ D @ A.T * T * T  # covariance of population-mean counts
    v = nu * T  # single-cell count variance (Poisson)
    rs = np.arange(0, P, 3)
    within = np.mean([(S[a, a] - v[a] / sizes[a]) / (1 - 1 / sizes[a]) / v[a] for a in rs])
    between = np.mean([S[a, b] / np.sqrt(v[a] * v[b]) for a in rs for b in rs if a != b]) \
        if len(rs) > 1 else float("nan")
    return float(within), float(between), float(np.max(np.abs(np.linalg.eigvals(W))))


def run_experiment(config: Config, key: jax.Array, ctx: Context) -> Result:
    import xarray as xr

    k_sim, k_ctl, k_th = jax.random.split(key, 3)
    out = _simulate(config, k_sim, config.k_in, config.k_out)
    lab = out["lab"]
    summary = {}
    for c, name in enumerate(CLASSES):
        summary[f"rate_{name.lower()}_hz"] = float(out["rates"][lab % 3 == c].mean())
        summary[f"cv_{name.lower()}"] = float(np.nanmean(out["cvs"][lab % 3 == c]))
    summary["within_module_corr"] = out["within"]
    summary["between_module_corr"] = out["between"]
    # theory: per class (the modules are statistically identical)
    K_e, K_i = modular_cortex_indegrees(n_modules=config.n_modules,
                                        n_per_module=config.n_per_module, k_in=config.k_in,
                                        k_out=config.k_out)
    K3_e = np.stack([K_e[:3, d::3].sum(1) for d in range(3)], 1)
    K3_i = np.stack([K_i[:3, d::3].sum(1) for d in range(3)], 1)
    net = out["net"]
    ext = net.inputs[0]
    rec_e, rec_i = net.receptors
    mf = conductance_mean_field(CLASSES, K_e=K3_e, K_i=K3_i, w_e=float(net.projections[0].weight[0]),
                                w_i=float(net.projections[1].weight[0]), tau_e=float(rec_e.tau),
                                tau_i=float(rec_i.tau), E_e=float(rec_e.E_rev),
                                E_i=float(rec_i.E_rev), ext_rate=float(ext.rate),
                                w_ext=float(ext.weight), key=k_th, n_cells=config.theory_cells,
                                dt=config.dt)
    sim = np.array([summary[f"rate_{c.lower()}_hz"] for c in CLASSES])
    for c, th in zip(CLASSES, mf.rates_hz):
        summary[f"rate_{c.lower()}_theory_hz"] = float(th)
    summary["theory_rate_rel_err_max"] = float(np.max(np.abs(sim - mf.rates_hz) /
                                                      np.maximum(mf.rates_hz, 1e-9)))
    summary["theory_converged"] = mf.converged
    sizes = np.maximum(net.population_sizes, 1).astype(float)
    w_th, b_th, radius = correlation_theory(config, mf, K_e, K_i, sizes)
    summary["within_module_corr_theory"] = w_th
    summary["between_module_corr_theory"] = b_th
    summary["theory_spectral_radius"] = radius
    summary["theory_predicts_ordering"] = bool((w_th > b_th) == (out["within"] > out["between"]))
    ctl = None
    if config.control and config.n_modules > 1:
        tot = config.k_in + config.k_out
        k_loc = max(1, int(round(tot / config.n_modules)))
        ctl = _simulate(config, k_ctl, k_loc, tot - k_loc)
        summary["within_module_corr_control"] = ctl["within"]
        summary["between_module_corr_control"] = ctl["between"]
    summary.update(n=int(net.n), bin_ms=config.bin_ms, n_modules=config.n_modules)
    data = xr.Dataset(
        {"rate_sim_hz": (("cls",), sim, {"units": "Hz"}),
         "rate_theory_hz": (("cls",), mf.rates_hz, {"units": "Hz"}),
         "module_corr": (("module", "module_b"), out["Cm"], {"units": "1"}),
         "spike_step": (("spike",), out["ev"].steps), "spike_neuron": (("spike",), out["ev"].neurons)},
        coords={"cls": list(CLASSES), "module": np.arange(config.n_modules),
                "module_b": np.arange(config.n_modules)},
        attrs={"experiment": "spiking-cortex"})
    return Result(summary=summary, data=data, figures=_figures(config, out, ctl, sim, mf),
                  notes=f"{config.n_modules} modules x {config.n_per_module} Izhikevich cells, "
                        f"k_in = {config.k_in}, k_out = {config.k_out}, dt = {config.dt} ms "
                        f"(Euler), {config.duration:g} ms; correlations of RS spike counts in "
                        f"{config.bin_ms:g} ms bins. Theory: mean-field with the simulated "
                        f"single-cell transfer function ({config.theory_cells} cells per class).")


def _figures(config, out, ctl, sim, mf):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = {}
    fig, ax = plt.subplots(figsize=(10, 5))
    ev, lab = out["ev"], out["lab"]
    t = ev.times(config.dt)
    keep = t > max(config.t_transient, config.duration - 500.0)
    colors = np.array(["C0", "C3", "C2"])
    ax.scatter(t[keep], ev.neurons[keep], s=1, c=colors[lab[ev.neurons[keep]] % 3])
    for a in range(1, config.n_modules):
        ax.axhline(a * config.n_per_module - 0.5, color="0.6", lw=0.5)
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("cell (by module; RS blue, FS red, LTS green)")
    ax.set_title("modular cortex raster")
    figs["cortex_raster"] = fig
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.bar(np.arange(3) - 0.2, sim, 0.4, label="simulation")
    ax.bar(np.arange(3) + 0.2, mf.rates_hz, 0.4, label="mean-field theory")
    ax.set_xticks(range(3), CLASSES)
    ax.set_ylabel("rate (Hz)")
    ax.legend()
    figs["cortex_rates"] = fig
    n_pan = 2 if ctl is not None else 1
    fig, axes = plt.subplots(1, n_pan, figsize=(4.5 * n_pan, 4), squeeze=False)
    for j, (o, title) in enumerate([(out, "modular"), (ctl, "control")][:n_pan]):
        im = axes[0, j].imshow(o["Cm"], cmap="viridis")
        axes[0, j].set_title(f"RS count corr. ({title}, {config.bin_ms:g} ms)")
        axes[0, j].set_xlabel("module")
        axes[0, j].set_ylabel("module")
        fig.colorbar(im, ax=axes[0, j])
    figs["cortex_correlations"] = fig
    return figs


EXPERIMENT = Experiment(
    name="spiking-cortex",
    title="Modular RS/FS/LTS Izhikevich cortex: module-wise synchrony, mean-field theory",
    config=Config,
    run=run_experiment,
    headline=("within_module_corr", "between_module_corr", "theory_rate_rel_err_max"),
)
