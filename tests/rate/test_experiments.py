"""The rate gallery experiments run end to end at a tiny size and report their named numbers."""

import json

import pytest

from neurocircuits.cli import main

TINY = {
    "rate-balanced": ["sizes=150,300", "n_seeds=2", "t_measure=300", "t_transient=200",
                      "coherent_n=60", "coherent_trials=4", "coherent_J0=1,4",
                      "coherent_amplitudes=0,6", "coherent_window=300", "theory_grid=7",
                      "theory_loops=20"],
    "rate-modular": ["module_sizes=40,80", "n_seeds=2", "t_measure=300", "t_transient=200",
                     "n_recorded=10", "theory_samples=12", "theory_loops=2"],
}
KEYS = {
    "rate-balanced": ["h_std_exponent_critical", "h_std_exponent_inhibitory",
                      "h_std_theory_rel_err", "coherent_prob", "quiescent_fraction_critical",
                      "quiescent_fraction_critical_theory", "h_std_critical_median_theory"],
    "rate-modular": ["module_var_rel_err", "within_between_corr_ratio",
                     "within_between_corr_ratio_theory", "within_module_corr",
                     "module_var_theory_median"],
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
