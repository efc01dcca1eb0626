"""One network over several devices: identical results sharded vs unsharded.

Runs in a subprocess with 4 virtual CPU devices (XLA's host-platform device count must be set
before JAX starts).
"""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import pytest

import neurocircuits as nc

SCRIPT = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np, equinox as eqx
    import neurocircuits as nc
    from neurocircuits._core import connectivity as conn
    assert jax.device_count() == 4, jax.devices()
    sh = nc.NeuronSharding()
    rec = nc.Record(every=5, fn=lambda u, t: {"u": u, "m": jnp.mean(u), "q": jnp.sum(u * u)})

    def check(name, net, u0, key, exact=True, **kw):
        a = nc.simulate(net, u0, dt=0.5, n_steps=200, key=key, record=rec, chunk_steps=50, **kw)
        b = nc.simulate(net, u0, dt=0.5, n_steps=200, key=key, record=rec, chunk_steps=50,
                        sharding=sh, **kw)
        assert len(b.final_state.sharding.device_set) == 4, name
        for var in ("u", "m", "q"):
            x, y = np.asarray(a.ys[var]), np.asarray(b.ys[var])
            if exact:
                assert np.array_equal(x, y), (name, var, np.abs(x - y).max())
            else:  # a row-split matrix-matrix product may block its sums differently
                np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5, err_msg=name)
        print("identical:", name)

    k = jax.random.key
    net = nc.rate.RateNetwork.random(k(0), 64, g=2.0, J0=1.0, sigma=0.3)
    check("dense E/I + noise", net, net.initial_state(k(1)), k(2))
    dense = nc.rate.RateNetwork(nc.Dense(jax.random.normal(k(3), (64, 64)) / 8.0), sigma=0.1)
    check("Dense matrix", dense, jnp.zeros(64), k(4))
    sparse = nc.rate.RateNetwork(conn.fixed_in_degree(k(5), 64, 64, 8, weight=0.4), sigma=0.2)
    check("sparse fixed in-degree", sparse, jnp.zeros(64), k(6))
    nets = eqx.tree_at(lambda m: m.coupling.g, net, jnp.array([1.5, 2.5]))
    check("batched over g", nets, jnp.zeros((2, 64)) + 0.1, jax.random.split(k(7), 2),
          exact=False, batch=nc.Batch(model=lambda m: m.coupling.g))
""")


def test_sharded_runs_are_identical_to_single_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    res = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    assert res.stdout.count("identical:") == 4, res.stdout


def test_sharding_needs_divisible_n():
    net = nc.rate.RateNetwork.random(jax.random.key(0), 10, g=1.0)
    sh = nc.NeuronSharding(devices=tuple(jax.devices()) * 3)  # 3 "devices" (the same one)
    with pytest.raises(nc.NeurocircuitsError, match="divisible by the device count"):
        nc.simulate(net, jnp.zeros(10), dt=0.5, n_steps=10, key=jax.random.key(1), sharding=sh)


def test_sharding_refused_under_jit():
    net = nc.rate.RateNetwork.random(jax.random.key(0), 8, g=1.0)
    with pytest.raises(nc.NeurocircuitsError, match="cannot be used under jit"):
        jax.jit(lambda u: nc.simulate(net, u, dt=0.5, n_steps=4, key=jax.random.key(1),
                                      sharding=nc.NeuronSharding()).final_state)(jnp.zeros(8))
