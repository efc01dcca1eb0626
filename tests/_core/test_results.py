"""Results on disk: streaming to Zarr, hard-kill + resume equivalence, refusal to mix runs."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

import neurocircuits as nc
from neurocircuits import Record, simulate
from neurocircuits._core.results import RunStore, dataset_to_zarr, open_run

SCRIPT = textwrap.dedent("""
    import sys, jax, jax.numpy as jnp, numpy as np
    import neurocircuits as nc
    from neurocircuits._core.results import RunStore
    net = nc.rate.RateNetwork.random(jax.random.key(0), 40, g=2.0, phi=nc.rate.tanh, sigma=0.1)
    u0 = net.initial_state(jax.random.key(1))
    rec = nc.Record(every=10, fn=lambda u, t: {"m": jnp.mean(u * u), "u": u[:6]},
                    dims={"u": ("unit",)})
    tr = nc.simulate(net, u0, dt=0.5, n_steps=1000, key=jax.random.key(2), chunk_steps=100,
                     record=rec, store=RunStore(sys.argv[1], resume=sys.argv[2] == "resume"))
    np.save(sys.argv[3], np.asarray(tr.final_state))
""")


def _run(tmp_path, args, crash_after=None):
    env = dict(os.environ)
    env.pop("NEUROCIRCUITS_TEST_CRASH_AFTER_STEP", None)
    if crash_after is not None:
        env["NEUROCIRCUITS_TEST_CRASH_AFTER_STEP"] = str(crash_after)
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    return subprocess.run([sys.executable, str(script), *args], env=env, capture_output=True,
                          text=True, timeout=300)


def test_killed_run_resumes_to_identical_arrays(tmp_path):
    killed = _run(tmp_path, [str(tmp_path / "a.zarr"), "resume", str(tmp_path / "a.npy")],
                  crash_after=400)
    assert killed.returncode == 137, killed.stderr  # died hard after the 4th chunk
    partial = open_run(tmp_path / "a.zarr")
    assert partial.sizes["time"] == 40  # 4 chunks x 10 observations, nothing half-written
    resumed = _run(tmp_path, [str(tmp_path / "a.zarr"), "resume", str(tmp_path / "a.npy")])
    assert resumed.returncode == 0, resumed.stderr
    fresh = _run(tmp_path, [str(tmp_path / "b.zarr"), "fresh", str(tmp_path / "b.npy")])
    assert fresh.returncode == 0, fresh.stderr
    a, b = open_run(tmp_path / "a.zarr").load(), open_run(tmp_path / "b.zarr").load()
    assert a.sizes["time"] == 100
    xr.testing.assert_identical(a, b)
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))


def test_observations_beyond_the_checkpoint_are_cut_on_resume(tmp_path, getkey):
    net = nc.rate.RateNetwork.random(getkey(), 10, g=1.5, phi=nc.rate.tanh)
    u0, k = net.initial_state(getkey()), getkey()
    rec = Record(every=5, fn=lambda u, t: u[:3])
    full = simulate(net, u0, dt=0.5, n_steps=100, key=k, record=rec)
    store = RunStore(tmp_path / "r.zarr")
    simulate(net, u0, dt=0.5, n_steps=100, key=k, record=rec, store=store, chunk_steps=20)
    # simulate a crash between a chunk's append and its checkpoint: extra rows on disk
    import zarr

    g = zarr.open_group(str(tmp_path / "r.zarr"), mode="a")
    g["time"].append(np.zeros(3))
    g["y"].append(np.zeros((3, 3), np.float32))
    again = simulate(net, u0, dt=0.5, n_steps=100, key=k, record=rec,
                     store=RunStore(tmp_path / "r.zarr", resume=True))
    np.testing.assert_array_equal(again.ys, full.ys)


def test_resume_refuses_another_run(tmp_path, getkey):
    net = nc.rate.RateNetwork.random(getkey(), 10, g=1.5, phi=nc.rate.tanh)
    u0 = net.initial_state(getkey())
    simulate(net, u0, dt=0.5, n_steps=40, key=getkey(), record=Record(every=5),
             store=RunStore(tmp_path / "r.zarr"))
    with pytest.raises(nc.ResumeError, match="another run"):
        simulate(net, u0, dt=0.25, n_steps=40, key=getkey(), record=Record(every=5),
                 store=RunStore(tmp_path / "r.zarr", resume=True))


def test_store_round_trips_through_xarray(tmp_path, getkey):
    net = nc.rate.RateNetwork.random(getkey(), 10, g=1.5, phi=nc.rate.tanh)
    rec = Record(every=5, fn=lambda u, t: {"u": u[:2], "m": jnp.mean(u)},
                 dims={"u": ("unit",)}, units={"u": "1"})
    tr = simulate(net, net.initial_state(getkey()), dt=0.5, n_steps=40, key=getkey(),
                  record=rec, store=RunStore(tmp_path / "r.zarr"), chunk_steps=10)
    ds = open_run(tmp_path / "r.zarr")
    assert ds["u"].dims == ("time", "unit") and ds["u"].attrs["units"] == "1"
    np.testing.assert_array_equal(ds["u"].values, tr.ys["u"])
    xr.testing.assert_identical(ds.load(), ds.load())
    dataset_to_zarr(tr.to_xarray(), tmp_path / "copy.zarr")
    np.testing.assert_array_equal(open_run(tmp_path / "copy.zarr")["m"].values, tr.ys["m"])


def test_batched_runs_stream_with_batch_axis(tmp_path, getkey):
    import equinox as eqx

    net = nc.rate.RateNetwork.random(getkey(), 10, g=1.0, phi=nc.rate.tanh)
    nets = eqx.tree_at(lambda m: m.coupling.g, net, jnp.array([0.5, 2.0]))
    u0 = jnp.ones((2, 10))
    keys = jax.random.split(getkey(), 2)
    rec = Record(every=5, fn=lambda u, t: u[:3], dims={"y": ("unit",)})
    kw = dict(dt=0.5, n_steps=50, key=keys, record=rec,
              batch=nc.Batch(model=lambda m: m.coupling.g))
    mem = simulate(nets, u0, **kw)
    disk = simulate(nets, u0, store=RunStore(tmp_path / "b.zarr"), chunk_steps=20, **kw)
    np.testing.assert_array_equal(mem.ys, disk.ys)
    assert open_run(tmp_path / "b.zarr")["y"].dims == ("batch", "time", "unit")
