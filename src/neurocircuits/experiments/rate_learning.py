r"""``rate-learning``: training module order parameters by BPTT, and the re-learning experiment.

A modular E/I rate network (:func:`~neurocircuits._core.connectivity.modular`, M modules,
critical balance within modules) is wrapped in a :class:`~neurocircuits.rate.train.RateCircuit`
whose outputs are the module order parameters :math:`m_a(t) = |a|^{-1}\sum_{i\in a}\phi(u_i)`,
and trained by backpropagation through time (:func:`~neurocircuits.rate.train.fit`, Adam) so that
they follow three targets: phase-shifted oscillations across modules, persistent activity of the
module that received a pulse, and a ramp after a cue. Reported: training curves and the NRMSE on
held-out trials (other keys: other cue/pulse times, initial states and noise).

**The re-learning experiment** (our definition; Hayakawa & Fukai 2020 report that re-learning
the probabilities carried by module synchrony is much faster than learning a new
representation, and we measure it, whichever way it comes out). A *representation* is a set of
K module co-activation patterns :math:`s^k \in \{0,1\}^M` (which modules are active together);
the *probabilities* :math:`\pi_k` are the fractions of each cycle that pattern :math:`k` is
expressed (:class:`~neurocircuits.rate.tasks.SynchronyPatterns`), so the module-synchrony
matrix :math:`C_{ab} = \sum_k \pi_k s^k_a s^k_b` (the fraction of time modules :math:`a, b` are
co-active) carries them. Task A has patterns :math:`s` and probabilities :math:`\pi`; task A'
the same patterns with probabilities :math:`\pi'`; task B new patterns :math:`s'` (no module
pair co-active in A is co-active in B) with the probabilities :math:`\pi`. For each network
realisation:

1. the naive network :math:`W_0` is trained on A for ``n_updates`` updates, giving
   :math:`W_A`;
2. ``relearn_updates``: updates needed from :math:`W_A` to reach the threshold on A' (only the
   probabilities carried by module synchrony change);
3. ``new_updates``: updates needed from the naive :math:`W_0` to reach the threshold on B (a
   new representation learned from scratch).

Controls (``controls=True``): ``scratch_changed_updates`` (from :math:`W_0` to A': is A' just
easier?) and ``switch_updates`` (from :math:`W_A` to B: does any pre-training help?).
"Updates needed" is the first update count after which the training NRMSE, averaged over the
last ``relearn_window`` batches (fresh trials each), is at most ``relearn_threshold``; each run
starts a fresh Adam state with the same settings and trains the same parts. Runs that never
reach it are reported as ``None`` (and counted at ``relearn_max_updates`` in the medians, with
``relearn_all_reached = False``).

References: Werbos, Proc. IEEE 78, 1550 (1990); Sussillo & Abbott, Neuron 63, 544 (2009);
Hayakawa & Fukai, Phys. Rev. Research 2, 013253 (2020) (our reconstruction).
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import numpy as np

from .._core.connectivity import modular
from .._core.errors import ConfigError
from ..rate import RateNetwork
from ..rate.tasks import PhaseShiftedOscillation, PulsePersistence, Ramp, SynchronyPatterns
from ..rate.train import RateCircuit, TrainHistory, evaluate, fit, prepare
from ._base import Context, Experiment, Result, param, run_fingerprint

TASKS = ("oscillation", "persistence", "ramp")


@dataclasses.dataclass(frozen=True)
class Config:
    n: int = param(400, quick=64, low=4, high=100_000, help="number of units N")
    n_modules: int = param(4, low=1, high=64, help="modules M (= input channels = outputs)")
    g: float = param(1.5, low=0.0, high=20.0, help="random-coupling gain g")
    J0_in: float = param(1.0, low=-50.0, high=50.0, help="mean coupling within modules")
    J0_out: float = param(0.0, low=-50.0, high=50.0, help="mean coupling between modules")
    tau: float = param(10.0, low=1e-3, unit="ms", help="time constant")
    dt: float = param(1.0, low=1e-3, unit="ms", help="integration step")
    sigma: float = param(0.05, quick=0.0, low=0.0, high=10.0,
                         help="noise amplitude (0: deterministic network)")
    duration: float = param(400.0, quick=200.0, low=10.0, unit="ms", help="trial length")
    record_every: int = param(2, low=1, help="steps between compared samples")
    period: float = param(100.0, low=1.0, unit="ms",
                          help="period of the oscillation and synchrony tasks")
    trainable: str = param("full", choices=("full", "low_rank"), help="trained part of J")
    rank: int = param(4, low=1, help="rank of the trained part when trainable=low_rank")
    # 2e-3 at N = 400 collapsed the persistence task onto its mean output (held-out NRMSE 1.00
    # after 1500 updates, gradient norm -> 0.004); 1e-3 gives 0.03 (persistence, 300 updates),
    # 0.09 (oscillation) and 0.04 (ramp) after 400 (CPU, 2026-12-07)
    learning_rate: float = param(1e-3, quick=3e-3, low=1e-7, high=1.0, help="Adam step size")
    n_updates: int = param(1500, quick=250, low=1, help="updates per task")
    batch_size: int = param(32, quick=8, low=1, help="trials per update")
    checkpoint: bool = param(False, help="gradient checkpointing")
    u0_scale: float = param(0.5, low=0.0, help="std of the random initial states")
    heldout_trials: int = param(128, quick=16, low=1, help="held-out trials per task")
    patterns_a: tuple[str, ...] = param(("1100", "0110", "0011"),
                                        help="co-activation patterns of representation A")
    probabilities_a: tuple[float, ...] = param((0.5, 0.3, 0.2), low=0.0,
                                               help="pattern probabilities of A")
    probabilities_changed: tuple[float, ...] = param((0.2, 0.3, 0.5), low=0.0,
                                                     help="pattern probabilities of A'")
    patterns_new: tuple[str, ...] = param(("1010", "0101", "1001"),
                                          help="patterns of the new representation B")
    relearn_threshold: float = param(0.15, quick=0.2, low=0.0, help="NRMSE to reach")
    relearn_window: int = param(5, quick=3, low=1, help="batches averaged for the threshold")
    relearn_max_updates: int = param(2000, quick=400, low=1, help="cap per re-learning run")
    relearn_repeats: int = param(3, quick=1, low=1, high=100,
                                 help="network realisations for the re-learning comparison")
    controls: bool = param(True, help="also run the two control comparisons")

    def check(self):
        if self.n < self.n_modules:
            raise ConfigError(f"n={self.n} is smaller than n_modules={self.n_modules}; allowed: "
                              "n >= n_modules")
        if self.dt > self.tau:
            raise ConfigError(f"dt={self.dt} exceeds tau={self.tau}; allowed: dt <= tau")
        for name in ("patterns_a", "patterns_new"):
            pats = getattr(self, name)
            if not pats or any(len(p) != self.n_modules or set(p) - {"0", "1"} for p in pats):
                raise ConfigError(
                    f"{name}={pats!r}: each pattern must be a string of n_modules="
                    f"{self.n_modules} characters 0/1")
        for name in ("probabilities_a", "probabilities_changed"):
            probs = getattr(self, name)
            if len(probs) != len(self.patterns_a) or sum(probs) <= 0:
                raise ConfigError(f"{name}={probs!r} needs one positive weight per pattern of "
                                  f"patterns_a ({len(self.patterns_a)})")
        if len(self.patterns_new) != len(self.patterns_a):
            raise ConfigError(f"patterns_new needs as many patterns as patterns_a "
                              f"({len(self.patterns_a)}), got {len(self.patterns_new)}")
        if self.duration / self.dt < 2 * self.record_every:
            raise ConfigError(f"duration={self.duration} is too short for dt={self.dt} and "
                              f"record_every={self.record_every}")


def _pats(strings):
    return tuple(tuple(int(c) for c in s) for s in strings)


def make_tasks(config: Config) -> dict:
    """The three training tasks and the three synchrony tasks (A, A', B) of ``config``."""
    common = dict(n_modules=config.n_modules, duration=config.duration, dt=config.dt,
                  record_every=config.record_every)
    d = config.duration
    cue = (0.0, 0.15 * d)
    sync = dict(duration=config.duration, dt=config.dt, record_every=config.record_every,
                period=config.period, cue_window=cue)
    return {
        "oscillation": PhaseShiftedOscillation(period=config.period, cue_window=cue, **common),
        "persistence": PulsePersistence(pulse_window=(0.15 * d, 0.6 * d), **common),
        "ramp": Ramp(cue_window=(0.1 * d, 0.3 * d), ramp_duration=0.5 * d, **common),
        "synchrony_A": SynchronyPatterns(patterns=_pats(config.patterns_a),
                                         probabilities=config.probabilities_a, **sync),
        "synchrony_A_changed": SynchronyPatterns(patterns=_pats(config.patterns_a),
                                                 probabilities=config.probabilities_changed,
                                                 **sync),
        "synchrony_B": SynchronyPatterns(patterns=_pats(config.patterns_new),
                                         probabilities=config.probabilities_a, **sync),
    }


def make_circuit(config: Config, key: jax.Array) -> RateCircuit:
    """The naive modular network of ``config`` as a :class:`RateCircuit`."""
    m = config.n_modules
    sizes = [config.n // m + (a < config.n % m) for a in range(m)]
    coupling = modular(key, sizes, J0_in=config.J0_in, J0_out=config.J0_out, g=config.g)
    net = RateNetwork(coupling, tau=config.tau, sigma=config.sigma if config.sigma > 0 else None)
    return RateCircuit.from_network(net)


def _fit_resumable(ctx: Context, fingerprint: str, name: str, start: RateCircuit, task,
                   **kwargs):
    """``fit`` as a resumable step of the run (:meth:`Context.resumable`): with ``ctx.resume`` a
    finished fit is loaded instead of recomputed, so an interrupted run (``neurocircuits run
    ... --resume``) continues after the last finished training run. The trained circuit is kept
    as its arrays (NumPy) and rebuilt on the structure of the untrained one."""
    template = prepare(start, kwargs["trainable"], key=jax.random.key(0), rank=kwargs.get("rank"))
    params, static = eqx.partition(template, eqx.is_array)

    def compute():
        circuit, hist = fit(start, task, **kwargs)
        leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(eqx.filter(circuit, eqx.is_array))]
        return {"leaves": leaves, "history": dataclasses.asdict(hist)}

    saved = ctx.resumable(name, fingerprint, compute)
    arrays = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(params),
                                          [jax.numpy.asarray(x) for x in saved["leaves"]])
    return eqx.combine(arrays, static), TrainHistory(**saved["history"])


def _median_updates(values, cap):
    arr = np.array([cap if v is None else v for v in values], float)
    return float(np.median(arr))


def run(config: Config, key: jax.Array, ctx: Context) -> Result:
    import xarray as xr

    tasks = make_tasks(config)
    progress = None if ctx.progress else False
    fit_kw = dict(batch_size=config.batch_size, trainable=config.trainable,
                  rank=config.rank if config.trainable == "low_rank" else None,
                  learning_rate=config.learning_rate, checkpoint=config.checkpoint,
                  u0_scale=config.u0_scale, progress=progress)
    fingerprint = run_fingerprint(config, key)
    k_net, k_train, k_eval, k_relearn = jax.random.split(key, 4)
    circuit0 = make_circuit(config, k_net)

    curves, heldout, final_train, examples = {}, {}, {}, {}
    n_show = min(4, config.heldout_trials)
    for i, name in enumerate(TASKS + ("synchrony_A",)):
        task = tasks[name]
        trained, hist = _fit_resumable(ctx, fingerprint, f"train_{name}", circuit0, task,
                                       key=jax.random.fold_in(k_train, i),
                                       n_updates=config.n_updates, **fit_kw)
        ev = evaluate(trained, task, key=jax.random.fold_in(k_eval, i),
                      n_trials=config.heldout_trials, u0_scale=config.u0_scale)
        curves[name] = hist.nrmse
        heldout[name] = ev.nrmse
        final_train[name] = float(np.mean(np.asarray(hist.nrmse, float)[-10:]))
        examples[name] = (np.asarray(ev.outputs[:n_show]), np.asarray(ev.trials.targets[:n_show]),
                          np.asarray(ev.trials.mask[:n_show]), np.asarray(ev.trials.inputs[:n_show]))
        if name == "synchrony_A":
            circuit_a0 = trained

    # ---- re-learning ----------------------------------------------------------------------
    thr, win, cap = config.relearn_threshold, config.relearn_window, config.relearn_max_updates
    runs = {"relearn": [], "new": [], "scratch_changed": [], "switch": [], "learn_A": []}
    rel_curves = {}
    for r in range(config.relearn_repeats):
        kr = jax.random.fold_in(k_relearn, r)
        if r == 0:
            base, trained_a, hist_a = circuit0, circuit_a0, None
        else:
            base = make_circuit(config, jax.random.fold_in(kr, 0))
            trained_a, hist_a = _fit_resumable(
                ctx, fingerprint, f"learn_A_r{r}", base, tasks["synchrony_A"],
                key=jax.random.fold_in(kr, 1), n_updates=config.n_updates, **fit_kw)
        a_curve = curves["synchrony_A"] if r == 0 else hist_a.nrmse
        hit = np.nonzero(np.convolve(a_curve, np.ones(win) / win, "valid") <= thr)[0]
        runs["learn_A"].append(int(hit[0] + win - 1) if hit.size else None)
        plan = [("relearn", trained_a, "synchrony_A_changed"), ("new", base, "synchrony_B")]
        if config.controls:
            plan += [("scratch_changed", base, "synchrony_A_changed"),
                     ("switch", trained_a, "synchrony_B")]
        for j, (label, start, task_name) in enumerate(plan):
            _, h = _fit_resumable(ctx, fingerprint, f"{label}_r{r}", start, tasks[task_name],
                                  key=jax.random.fold_in(kr, 10 + j), n_updates=cap,
                                  stop_below=thr, stop_window=win, **fit_kw)
            runs[label].append(h.n_updates if h.stopped_early else None)
            rel_curves[f"{label}_r{r}"] = h.nrmse

    relearn_med = _median_updates(runs["relearn"], cap)
    new_med = _median_updates(runs["new"], cap)
    reached = all(v is not None for k in ("relearn", "new") for v in runs[k])
    summary = {
        "heldout_nrmse": {k: heldout[k] for k in TASKS},
        "heldout_nrmse_synchrony_A": heldout["synchrony_A"],
        "final_train_nrmse": final_train,
        "relearn_updates": relearn_med,
        "new_updates": new_med,
        "relearn_speedup": new_med / max(relearn_med, 1.0),
        "relearn_updates_all": runs["relearn"],
        "new_updates_all": runs["new"],
        "learn_A_updates_all": runs["learn_A"],
        "relearn_all_reached": reached,
        "relearn_threshold": thr,
        "relearn_window": win,
        "relearn_max_updates": cap,
        "coactivation_A": tasks["synchrony_A"].coactivation().round(4).tolist(),
        "coactivation_A_changed": tasks["synchrony_A_changed"].coactivation().round(4).tolist(),
        "coactivation_B": tasks["synchrony_B"].coactivation().round(4).tolist(),
        "n": config.n,
        "n_modules": config.n_modules,
        "trainable": config.trainable,
        "n_updates": config.n_updates,
    }
    if config.controls:
        summary["scratch_changed_updates"] = _median_updates(runs["scratch_changed"], cap)
        summary["switch_updates"] = _median_updates(runs["switch"], cap)
        summary["scratch_changed_updates_all"] = runs["scratch_changed"]
        summary["switch_updates_all"] = runs["switch"]

    # ---- data -----------------------------------------------------------------------------
    all_curves = {**{f"train_{k}": v for k, v in curves.items()}, **rel_curves}
    length = max(len(v) for v in all_curves.values())
    curve_arr = np.full((len(all_curves), length), np.nan)
    for i, v in enumerate(all_curves.values()):
        curve_arr[i, :len(v)] = v
    ex_names = list(examples)
    times = np.asarray(tasks["oscillation"].record_times())
    data = xr.Dataset(
        {
            "train_nrmse": (("run", "update"), curve_arr,
                            {"units": "1", "long_name": "training-batch NRMSE"}),
            "heldout_output": (("task", "trial", "time", "module"),
                               np.stack([examples[k][0] for k in ex_names]), {"units": "1"}),
            "heldout_target": (("task", "trial", "time", "module"),
                               np.stack([examples[k][1] for k in ex_names]), {"units": "1"}),
            "heldout_mask": (("task", "trial", "time", "module"),
                             np.stack([examples[k][2] for k in ex_names]), {"units": "1"}),
            "heldout_nrmse": (("task",), np.array([heldout[k] for k in ex_names]),
                              {"units": "1"}),
        },
        coords={"run": list(all_curves), "update": np.arange(length), "task": ex_names,
                "trial": np.arange(n_show), "time": ("time", times, {"units": "ms"}),
                "module": np.arange(config.n_modules)},
        attrs={"experiment": "rate-learning"},
    )
    figures = _figures(config, tasks, examples, curves, heldout, rel_curves, runs, summary)
    notes = (
        f"Modular network, N = {config.n}, M = {config.n_modules} modules, g = {config.g}, "
        f"J0_in = {config.J0_in}, J0_out = {config.J0_out}, tau = {config.tau} ms, dt = "
        f"{config.dt} ms, sigma = {config.sigma}; trained part: {config.trainable}; Adam, "
        f"lr = {config.learning_rate}, {config.batch_size} trials per update, "
        f"{config.n_updates} updates per task; held-out NRMSE over {config.heldout_trials} "
        f"trials with other keys. Re-learning: updates until the NRMSE averaged over "
        f"{win} batches is <= {thr} (definitions in the module docstring), "
        f"{config.relearn_repeats} network realisation(s)."
    )
    return Result(summary=summary, data=data, figures=figures, notes=notes)


def _figures(config, tasks, examples, curves, heldout, rel_curves, runs, summary):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(examples)
    times = np.asarray(tasks["oscillation"].record_times())
    fig1, axes = plt.subplots(len(names), 1, figsize=(9, 2.3 * len(names)), sharex=True)
    for ax, name in zip(np.atleast_1d(axes), names):
        out, tgt, mask, _ = examples[name]
        for a in range(out.shape[-1]):
            valid = mask[0, :, a] > 0
            ax.plot(times, np.where(valid, tgt[0, :, a], np.nan), "--", color=f"C{a}", lw=1.2)
            ax.plot(times, out[0, :, a], "-", color=f"C{a}", lw=1.6, alpha=0.85,
                    label=f"module {a}")
        ax.set_ylabel("$m_a(t)$")
        ax.set_title(f"{name}: held-out NRMSE {heldout[name]:.3f}", fontsize=10)
    np.atleast_1d(axes)[0].legend(fontsize=7, ncol=config.n_modules, loc="upper right")
    np.atleast_1d(axes)[-1].set_xlabel("time (ms)  — dashed: target, solid: network")
    fig1.tight_layout()

    fig2, ax = plt.subplots(figsize=(7, 4))
    for name, c in curves.items():
        ax.semilogy(np.arange(len(c)), c, label=name, lw=1.2)
    ax.set_xlabel("update")
    ax.set_ylabel("training-batch NRMSE")
    ax.set_title("Training curves (BPTT, Adam)")
    ax.legend(fontsize=8)
    fig2.tight_layout()

    fig3 = plt.figure(figsize=(12, 7))
    gs = fig3.add_gridspec(2, 3, height_ratios=(1.4, 1))
    ax = fig3.add_subplot(gs[0, :2])
    colors = {"relearn": "C0", "new": "C3", "scratch_changed": "C1", "switch": "C2"}
    labels = {"relearn": "A → A' (probabilities change)", "new": "naive → B (new representation)",
              "scratch_changed": "naive → A' (control)", "switch": "A → B (control)"}
    seen = set()
    for key_, c in rel_curves.items():
        label = key_.rsplit("_r", 1)[0]
        ax.semilogy(np.arange(len(c)), c, color=colors[label], lw=1.0,
                    label=labels[label] if label not in seen else None)
        seen.add(label)
    ax.axhline(config.relearn_threshold, color="k", ls=":", lw=1, label="threshold")
    ax.set_xlabel("update")
    ax.set_ylabel("training-batch NRMSE")
    ax.set_title("Re-learning vs learning a new representation")
    ax.legend(fontsize=8)
    ax = fig3.add_subplot(gs[0, 2])
    order = [k for k in ("relearn", "new", "scratch_changed", "switch") if runs[k]]
    cap = config.relearn_max_updates
    for x, k in enumerate(order):
        vals = np.array([cap if v is None else v for v in runs[k]], float)
        ax.bar(x, np.median(vals), color=colors[k], alpha=0.6)
        ax.plot(np.full(vals.shape, x), vals, "ko", ms=4)
    ax.set_xticks(range(len(order)))
    ax.set_xticklabels(["A→A'", "naive→B", "naive→A'", "A→B"][:len(order)] if order == [
        "relearn", "new", "scratch_changed", "switch"] else order, fontsize=8)
    ax.set_ylabel(f"updates to NRMSE ≤ {config.relearn_threshold}")
    ax.set_title("Updates to threshold")
    for j, (name, title) in enumerate((("synchrony_A", "A"), ("synchrony_A_changed", "A'"),
                                       ("synchrony_B", "B"))):
        ax = fig3.add_subplot(gs[1, j])
        c = tasks[name].coactivation()
        im = ax.imshow(c, vmin=0, vmax=1, cmap="viridis")
        ax.set_title(f"{title}: co-activation $C_{{ab}}$", fontsize=9)
        ax.set_xlabel("module b")
        ax.set_ylabel("module a")
        fig3.colorbar(im, ax=ax, fraction=0.046)
    fig3.tight_layout()
    return {"heldout_outputs": fig1, "loss_curves": fig2, "relearning": fig3}


EXPERIMENT = Experiment(
    name="rate-learning",
    title="Training module order parameters by BPTT; re-learning probabilities vs a new "
          "representation",
    config=Config,
    run=run,
    headline=("heldout_nrmse", "relearn_updates", "new_updates"),
)
