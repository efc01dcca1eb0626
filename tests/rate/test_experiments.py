"""The rate gallery experiments run end to end at a tiny size and report their named numbers."""

import json

import pytest

from neurocircuits.cli import main

TINY = {
    "rate-balanced": ["sizes=150,300", "n_seeds=2", "t_measure=300", "t_transient=200",
                      "coherent_n=60", "coherent_trials=4", "coherent_J0=1,4",
                      "coherent_amplitudes=0,6", "coherent_window=300", "coherent_max_period=150",
                      "theory_grid=7", "theory_loops=20", "n_seeds_largest=3"],
    "rate-modular": ["module_sizes=40,80", "n_seeds=2", "t_measure=300", "t_transient=200",
                     "n_recorded=10", "theory_samples=12", "theory_loops=2"],
    "rate-learning": ["n=24", "duration=60", "period=30", "n_updates=6", "batch_size=2",
                      "heldout_trials=2", "relearn_max_updates=4", "relearn_repeats=2"],
}
KEYS = {
    "rate-balanced": ["h_std_exponent_critical", "h_std_exponent_inhibitory",
                      "h_std_theory_rel_err", "coherent_prob", "quiescent_fraction_critical",
                      "quiescent_fraction_critical_theory", "h_std_critical_median_theory"],
    "rate-modular": ["module_var_rel_err", "within_between_corr_ratio",
                     "within_between_corr_ratio_theory", "within_module_corr",
                     "module_var_theory_median"],
    "rate-learning": ["heldout_nrmse", "relearn_updates", "new_updates",
                      "scratch_changed_updates", "switch_updates"],
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_experiment_runs_and_reports(name, tmp_path, capsys):
    args = ["run", name, "--out", str(tmp_path / name)]
    for item in TINY[name]:
        args += ["--set", item]
    assert main(args) == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / name / "summary.json").read_text())
    for key in KEYS[name]:
        assert key in summary, key
    assert list((tmp_path / name).glob("*.png"))


def test_rate_balanced_coherence_classifier():
    """The coherent-state read-out: a periodic field is coherent, an irregular one asynchronous,
    a constant one a fixed point; units repeating with h's period are locked to it."""
    import numpy as np

    from neurocircuits.experiments import rate_balanced as rb

    config = rb.Config()  # dt = 1 ms: samples every 5 ms; periods up to 500 ms
    rng = np.random.default_rng(0)
    t = np.arange(400) * 5.0  # a 2 s window
    periodic = 0.5 * np.sin(2 * np.pi * t / 120.0) + 0.3 * np.sin(4 * np.pi * t / 120.0)
    # irregular: low-pass filtered noise with a 20 ms correlation time
    noise = rng.normal(size=(3, t.size))
    irregular = np.zeros_like(noise)
    for k in range(1, t.size):
        irregular[:, k] = 0.78 * irregular[:, k - 1] + noise[:, k]
    irregular *= 0.3 / irregular.std(axis=1, keepdims=True)
    h = np.vstack([periodic, irregular, np.full(t.size, 0.7) + 1e-4 * noise[0]])
    out = rb._classify(config, h)
    assert out["state"].tolist() == [rb.COHERENT, rb.ASYNC, rb.ASYNC, rb.ASYNC, rb.FIXED]
    assert out["periodicity"][0] > 0.95 and out["periodicity"][1:4].max() < 0.5
    assert abs(out["period"][0] - 120.0) <= 5.0
    # slower than coherent_max_period: not coherent
    slow = rb._classify(config, 0.5 * np.sin(2 * np.pi * t / 800.0)[None])
    assert slow["state"][0] != rb.COHERENT
    # locking: units that repeat with h's period vs independent noise
    units = np.stack([np.sin(2 * np.pi * t / 120.0 + p) for p in rng.uniform(0, 6, 8)], 1)
    lock = rb._unit_locking(np.stack([units, rng.normal(size=units.shape)]),
                            np.array([out["lag"][0]] * 2))
    assert lock[0] > 0.95 and abs(lock[1]) < 0.2


def test_rate_balanced_binomial():
    import numpy as np

    from neurocircuits.experiments import rate_balanced as rb

    p, err, ci = rb._binomial(np.array([0, 25, 100]), 100)
    assert np.allclose(p, [0, 0.25, 1]) and np.allclose(err, [0, np.sqrt(0.25 * 0.75 / 100), 0])
    assert np.all(ci[:, 0] <= p + 1e-12) and np.all(p <= ci[:, 1] + 1e-12)
    assert ci[0, 1] > 0 and ci[2, 0] < 1  # Wilson: a non-empty interval at 0 and 1


def test_rate_balanced_entrainment():
    """Entrainment counts, among networks whose twin copies differ at the pulse onset, those
    whose copies agree after it; no distinct network gives NaN, not a division by zero."""
    import numpy as np

    from neurocircuits.experiments import rate_balanced as rb

    onset = np.array([1.0, 0.5, 0.0, 2.0])  # network 2: copies already equal, not counted
    dist = [{"onset": onset, "after": np.array([1.0, 0.4, 0.0, 2.0])},     # A small: none
            {"onset": onset, "after": np.array([0.001, 0.4, 0.0, 0.002])}]  # A large: 2 of 3
    (p, err, ci), distinct = rb._entrainment(dist, 0.01, "after")
    assert distinct.tolist() == [True, True, False, True]
    assert np.allclose(p, [0.0, 2 / 3]) and np.allclose(err[1], np.sqrt(2 / 9 / 3))
    assert ci.shape == (2, 2) and np.all(ci[:, 0] <= p) and np.all(p <= ci[:, 1])
    (p0, _, ci0), d0 = rb._entrainment([{"onset": np.zeros(3), "after": np.zeros(3)}],
                                       0.01, "after")
    assert not d0.any() and np.isnan(p0).all() and np.isnan(ci0).all()


def test_rate_balanced_subset_pulses():
    """A pulse is an amplitude (to coherent_pulse_fraction of the units) or a pair (amplitude,
    fraction); a kick (read for entrainment only) is the same pulse from the same onset state
    as the one given among the amplitudes; a pulse to no unit is no pulse."""
    import dataclasses

    import jax
    import numpy as np

    from neurocircuits.experiments import rate_balanced as rb

    spec = rb._pulse_spec(rb.Config())  # coherent_pulse_fraction = 1: every unit
    assert spec(8) == (8.0, 1.0) and spec((4, 0.2)) == (4.0, 0.2)
    with pytest.raises(ValueError, match="fraction 1.5"):
        spec((4, 1.5))
    config = dataclasses.replace(rb.Config(), coherent_n=40, coherent_trials=3,
                                 t_transient=100.0, coherent_window=100.0,
                                 coherent_max_period=50.0, coherent_pulse=20.0, coherent_gap=20.0)
    out = rb._coherent_trials(config, 3.0, (0.0, (6.0, 0.0), (6.0, 0.25)), jax.random.PRNGKey(0),
                              twins=True, post_windows=False, kicks=[(6.0, 0.25)])
    d, k = out["distance"], out["kick_distance"]
    assert len(d) == 3 and len(k) == 1 and out["after"] == []
    assert np.allclose(d[1]["after"], d[0]["after"])  # fraction 0: no unit is pulsed
    assert np.allclose(k[0]["after"], d[2]["after"]) and np.allclose(k[0]["onset"], d[2]["onset"])
    with pytest.raises(ValueError, match="twins"):
        rb._coherent_trials(config, 3.0, (0.0,), jax.random.PRNGKey(0), kicks=[(6.0, 0.25)])


def test_coherent_window_too_short_for_the_period_is_refused(tmp_path, capsys):
    code = main(["run", "rate-balanced", "--scale", "quick", "--out", str(tmp_path / "x"),
                 "--set", "coherent_window=300"])
    assert code == 2
    err = capsys.readouterr().err
    assert "coherent_window=300" in err and "coherent_max_period" in err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("name,steps", [
    ("rate-balanced", ("_field_std", "_coherent_trials")),
    ("rate-modular", ("_simulate", "_theory")),
    ("rate-learning", ("fit",)),
])
def test_interrupted_run_resumes_from_its_finished_steps(name, steps, tmp_path, monkeypatch):
    """Every size (and every batch of coherent-state trials, every training run) is a
    resumable step: a resumed run loads the finished ones instead of recomputing them and
    reports the same numbers; a run of another configuration refuses those files."""
    import importlib

    import jax

    from neurocircuits._core.errors import ResumeError
    from neurocircuits.experiments import _base, get

    exp = get(name)
    module = importlib.import_module(exp.run.__module__)
    overrides = dict(item.split("=", 1) for item in TINY[name])
    config = _base.build_config(exp.config, "quick", overrides)
    key = jax.random.key(3)
    ctx = _base.Context(partial_dir=tmp_path / ".partial", progress=False)
    first = exp.run(config, key, ctx).summary

    def recomputed(*args, **kwargs):
        raise AssertionError("a finished step was recomputed on resume")

    for step in steps:
        monkeypatch.setattr(module, step, recomputed)
    again = _base.Context(partial_dir=ctx.partial_dir, resume=True, progress=False)
    resumed = exp.run(config, key, again).summary
    assert again.resumed and {r["device"] for r in again.resumed} == {
        _base.environment()["device"]}
    assert json.dumps(resumed, sort_keys=True, default=str) == json.dumps(
        first, sort_keys=True, default=str)
    with pytest.raises(ResumeError, match="another configuration"):
        exp.run(config, jax.random.key(4), _base.Context(partial_dir=ctx.partial_dir,
                                                         resume=True, progress=False))


def test_more_networks_at_the_largest_size_reuse_the_other_steps(tmp_path, monkeypatch):
    """n_seeds_largest adds networks at the largest N as steps of their own: a resumed run
    with more of them simulates only those (networks n_seeds ... n_seeds_largest - 1, the
    same couplings as a fresh run's) and keeps every other number."""
    import jax

    from neurocircuits._core.errors import ConfigError
    from neurocircuits.experiments import _base, get
    from neurocircuits.experiments import rate_balanced as rb

    exp = get("rate-balanced")
    overrides = dict(item.split("=", 1) for item in TINY["rate-balanced"])
    fewer = _base.build_config(exp.config, "quick", {**overrides, "n_seeds_largest": "0"})
    more = _base.build_config(exp.config, "quick", overrides)
    key = jax.random.key(5)
    ctx = _base.Context(partial_dir=tmp_path / ".partial", progress=False)
    first = exp.run(fewer, key, ctx).summary
    calls = []
    real = rb._field_std

    def counted(*args, **kwargs):
        calls.append(args[-2:])
        return real(*args, **kwargs)

    monkeypatch.setattr(rb, "_field_std", counted)
    again = exp.run(more, key, _base.Context(partial_dir=ctx.partial_dir, resume=True,
                                              progress=False)).summary
    assert calls == [(2, 1), (2, 1)]  # one extra network per case, nothing else simulated
    assert first["networks_per_size"] == [2, 2] and again["networks_per_size"] == [2, 3]
    for c in ("critical", "inhibitory"):
        assert again[f"h_std_{c}_median"][0] == first[f"h_std_{c}_median"][0]
    assert json.dumps(again["coherent_prob"]) == json.dumps(first["coherent_prob"])  # NaNs
    with pytest.raises(ConfigError, match="n_seeds_largest=1 is below n_seeds=2"):
        _base.build_config(exp.config, "quick", {**overrides, "n_seeds_largest": "1"})
