"""The CLI: every bad-input path is one line, exit code 2 and nothing written; real runs write
the run folder; a killed run resumes to the same data."""

import json
import os
import subprocess
import sys

import pytest
import xarray as xr

from neurocircuits.cli import main

#: a rate-chaos configuration small enough for seconds on a CPU
TINY = ["--set", "n=80", "--set", "g_values=0.5,2.0", "--set", "n_seeds=1",
        "--set", "t_transient=100", "--set", "t_measure=400", "--set", "n_recorded=20",
        "--set", "max_lag=40"]


def _bad(capsys, tmp_path, args, match):
    out = tmp_path / "out"
    code = main([*args, "--out", str(out)] if args[0] == "run" else args)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.count("\n") == 0, f"expected one line, got:\n{err}"
    assert match in err, err
    assert not out.exists(), "nothing may be written on bad input"
    return err


@pytest.mark.parametrize("args, match", [
    (["run", "no-such-experiment"], "unknown experiment 'no-such-experiment'; known: rate-chaos, ising-plefka"),
    (["run", "rate-chaos", "--set", "nope=1"], "unknown key 'nope'"),
    (["run", "rate-chaos", "--set", "n=abc"], "n='abc' is not int"),
    (["run", "rate-chaos", "--set", "n=3.5"], "n='3.5' is not int"),
    (["run", "rate-chaos", "--set", "n=5"], "n=5 is out of range; allowed: 10 <= n <= 200000"),
    (["run", "rate-chaos", "--set", "g_values=1,x"], "is not a comma-separated list of float"),
    (["run", "rate-chaos", "--set", "g_values=1,-2"], "g_values=-2.0 is out of range"),
    (["run", "rate-chaos", "--set", "n"], "--set 'n' must look like key=value"),
    (["run", "rate-chaos", "--set", "n_recorded=5000", "--set", "n=100"], "n_recorded=5000"),
    (["run", "rate-chaos", "--scale", "huge"], "--scale 'huge' is unknown; allowed: quick, full"),
    (["run", "rate-chaos", "--seed", "-1"], "--seed -1 must be an integer >= 0"),
    (["run", "rate-chaos", "--seed", "x"], "Invalid value for '--seed'"),
    (["run", "rate-chaos", "--bogus"], "No such option"),
    (["gallery", "--scale", "huge"], "--scale 'huge' is unknown"),
    (["gallery", "--only", "nope"], "--only 'nope' is not an experiment"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(capsys, tmp_path, args, match):
    _bad(capsys, tmp_path, args, match)


def test_unwritable_out(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = main(["run", "rate-chaos", "--out", str(blocker / "sub")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "is not writable" in err and err.count("\n") == 0
    code = main(["run", "rate-chaos", "--out", str(blocker)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "exists and is not a directory" in err


def test_bad_config_files(capsys, tmp_path):
    missing = tmp_path / "missing.toml"
    _bad(capsys, tmp_path, ["run", "rate-chaos", "--config", str(missing)], "not a readable file")
    broken = tmp_path / "broken.toml"
    broken.write_text("n = = 3")
    _bad(capsys, tmp_path, ["run", "rate-chaos", "--config", str(broken)], "not valid TOML")
    other = tmp_path / "other.toml"
    other.write_text('experiment = "ising-plefka"\n[config]\nn = 10\n')
    _bad(capsys, tmp_path, ["run", "rate-chaos", "--config", str(other)],
         "is for experiment 'ising-plefka'")
    typed = tmp_path / "typed.toml"
    typed.write_text('[config]\nn = "many"\n')
    _bad(capsys, tmp_path, ["run", "rate-chaos", "--config", str(typed)], "n='many' is not int")


def test_list_and_info(capsys):
    assert main(["list"]) == 0
    assert "rate-chaos" in capsys.readouterr().out
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "jax" in out and "device" in out


def test_run_writes_the_run_folder_and_config_reproduces_it(capsys, tmp_path):
    out = tmp_path / "run1"
    assert main(["run", "rate-chaos", *TINY, "--out", str(out), "--seed", "3"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("rate-chaos: g_c_sim=") and "report.html" in line
    for name in ["summary.json", "config.toml", "report.html", "delta0_vs_g.png", "data.zarr"]:
        assert (out / name).exists(), name
    assert not (out / ".partial").exists()
    summary = json.loads((out / "summary.json").read_text())
    for key in ["g_c_sim", "delta0_rel_err_max", "config_hash", "environment", "seed"]:
        assert key in summary
    assert summary["seed"] == 3
    ds = xr.open_zarr(out / "data.zarr")
    assert ds["delta0_sim"].dims == ("g", "seed")
    html = (out / "report.html").read_text()
    assert "delta0_vs_g.png" in html and "delta0_rel_err_max" in html
    # the written config.toml repeats the run exactly
    out2 = tmp_path / "run2"
    assert main(["run", "rate-chaos", "--config", str(out / "config.toml"),
                 "--out", str(out2)]) == 0
    again = json.loads((out2 / "summary.json").read_text())
    assert again["config_hash"] == summary["config_hash"]
    assert again["delta0_sim"] == summary["delta0_sim"]


def test_python_dash_m_entry_point(tmp_path):
    res = subprocess.run([sys.executable, "-m", "neurocircuits", "run", "nope"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stderr.startswith("error: unknown experiment")


def test_killed_cli_run_resumes_to_the_same_data(tmp_path):
    """A hard kill mid-run, then --resume: same data as an uninterrupted run."""
    args = [sys.executable, "-m", "neurocircuits", "run", "rate-chaos", *TINY,
            "--set", "t_measure=4000", "--seed", "1"]
    env = dict(os.environ, NEUROCIRCUITS_TEST_CRASH_AFTER_STEP="1200")
    killed = subprocess.run([*args, "--out", str(tmp_path / "a")], env=env,
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == 137, killed.stderr
    assert not (tmp_path / "a" / "summary.json").exists()
    env.pop("NEUROCIRCUITS_TEST_CRASH_AFTER_STEP")
    resumed = subprocess.run([*args, "--out", str(tmp_path / "a"), "--resume"], env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert main(["run", "rate-chaos", *TINY, "--set", "t_measure=4000", "--seed", "1",
                 "--out", str(tmp_path / "b")]) == 0
    a = xr.open_zarr(tmp_path / "a" / "data.zarr").load()
    b = xr.open_zarr(tmp_path / "b" / "data.zarr").load()
    xr.testing.assert_identical(a, b)
