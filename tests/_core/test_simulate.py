"""simulate(): determinism, chunk invariance, transforms, batching, divergence, bad input."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import neurocircuits as nc
from neurocircuits import Batch, Record, simulate
from neurocircuits.rate import RateNetwork, tanh


def _net(key, n=30, g=1.8, sigma=None, **kw):
    return RateNetwork.random(key, n, g=g, phi=tanh, tau=10.0, sigma=sigma, **kw)


REC = Record(every=5, fn=lambda u, t: {"mean": jnp.mean(u), "u": u[:4]},
             dims={"u": ("unit",)}, units={"mean": "1", "u": "1"})


def test_same_key_same_result_and_keys_matter(getkey):
    net = _net(getkey(), sigma=0.3)
    u0 = net.initial_state(getkey())
    k = getkey()
    a = simulate(net, u0, dt=0.5, n_steps=200, key=k, record=REC)
    b = simulate(net, u0, dt=0.5, n_steps=200, key=k, record=REC)
    c = simulate(net, u0, dt=0.5, n_steps=200, key=getkey(), record=REC)
    assert np.array_equal(a.ys["u"], b.ys["u"])
    assert not np.allclose(a.ys["u"], c.ys["u"])


@pytest.mark.parametrize("chunk", [5, 35, 100, 200])
def test_chunk_size_invariance(getkey, chunk):
    net = _net(getkey(), sigma=0.2)
    u0 = net.initial_state(getkey())
    k = getkey()
    drive = jnp.sin(jnp.arange(200) * 0.1)[:, None] * jnp.ones((200, net.n))
    whole = simulate(net, u0, dt=0.5, n_steps=200, key=k, record=REC, inputs=drive)
    parts = simulate(net, u0, dt=0.5, n_steps=200, key=k, record=REC, inputs=drive,
                     chunk_steps=chunk)
    assert np.array_equal(whole.ys["u"], parts.ys["u"])
    assert np.array_equal(whole.final_state, parts.final_state)
    np.testing.assert_allclose(whole.ts, 0.5 * 5 * np.arange(1, 41), rtol=1e-6)


@pytest.mark.parametrize("unroll", [2, 3, 8])
def test_unrolled_time_loop_is_bit_identical(getkey, unroll):
    # unroll=1 is the default; 3 divides neither every=5 nor the 2-step no-record tail
    net = _net(getkey(), sigma=0.2)
    u0 = net.initial_state(getkey())
    k = getkey()
    drive = jnp.sin(jnp.arange(200) * 0.1)[:, None] * jnp.ones((200, net.n))
    for record in (REC, None):
        ref = simulate(net, u0, dt=0.5, n_steps=200, key=k, record=record, inputs=drive)
        got = simulate(net, u0, dt=0.5, n_steps=200, key=k, record=record, inputs=drive,
                       unroll=unroll, chunk_steps=100)
        assert np.array_equal(ref.final_state, got.final_state)
        if record is not None:
            assert np.array_equal(ref.ys["u"], got.ys["u"])


def test_function_inputs_match_array_inputs(getkey):
    net = _net(getkey())
    u0 = net.initial_state(getkey())
    fn = lambda t: 0.3 * jnp.cos(t / 7.0) * jnp.ones(net.n)  # noqa: E731
    arr = jax.vmap(fn)(0.5 * jnp.arange(100))
    a = simulate(net, u0, dt=0.5, n_steps=100, key=getkey(), inputs=fn, chunk_steps=30 - 5)
    b = simulate(net, u0, dt=0.5, n_steps=100, key=getkey(), inputs=arr)
    np.testing.assert_allclose(a.final_state, b.final_state, rtol=1e-5, atol=1e-6)


def test_jit_matches_host_driven_run(getkey):
    net = _net(getkey(), sigma=0.1)
    u0 = net.initial_state(getkey())
    k = getkey()
    host = simulate(net, u0, dt=0.5, n_steps=100, key=k, record=REC, chunk_steps=25)
    jitted = jax.jit(lambda m, s, key: simulate(m, s, dt=0.5, n_steps=100, key=key,
                                                record=REC))(net, u0, k)
    np.testing.assert_allclose(host.ys["u"], jitted.ys["u"], rtol=1e-5, atol=1e-6)
    assert int(jitted.diverged_at) == -1


def test_vmap_over_keys_and_parameters_matches_loop(getkey):
    net = _net(getkey(), sigma=0.2)
    u0 = net.initial_state(getkey())
    keys = jax.random.split(getkey(), 3)
    gs = jnp.array([0.5, 1.5, 2.5])

    def one(g, key):
        m = eqx.tree_at(lambda m: m.coupling.g, net, g)
        return simulate(m, u0, dt=0.5, n_steps=60, key=key, record=REC).ys["u"]

    vmapped = jax.vmap(one)(gs, keys)
    looped = np.stack([one(g, k) for g, k in zip(gs, keys)])
    np.testing.assert_allclose(vmapped, looped, rtol=1e-5, atol=1e-6)
    # the Batch path (chunked, host-driven) gives the same numbers
    batched = simulate(eqx.tree_at(lambda m: m.coupling.g, net, gs), jnp.stack([u0] * 3),
                       dt=0.5, n_steps=60, key=keys, record=REC, chunk_steps=20,
                       batch=Batch(model=lambda m: m.coupling.g))
    np.testing.assert_allclose(batched.ys["u"], looped, rtol=1e-5, atol=1e-6)
    assert batched.ys["u"].shape == (3, 12, 4)


def test_grad_through_simulate_matches_finite_differences(getkey, x64):
    net = RateNetwork.random(getkey(), 12, g=1.2, phi=tanh, tau=10.0, dtype=jnp.float64)
    u0 = jnp.asarray(net.initial_state(getkey()), jnp.float64)
    k = getkey()

    def loss(g):
        m = eqx.tree_at(lambda m: m.coupling.g, net, g)
        tr = simulate(m, u0, dt=0.5, n_steps=80, key=k,
                      record=Record(every=4, fn=lambda u, t: jnp.mean(u**2)), checkpoint=True)
        return jnp.mean(tr.ys)

    g0 = jnp.asarray(1.2)
    grad = jax.grad(loss)(g0)
    eps = 1e-5
    fd = (loss(g0 + eps) - loss(g0 - eps)) / (2 * eps)
    np.testing.assert_allclose(grad, fd, rtol=1e-5)


def test_divergence_error_names_step_and_variable(getkey):
    n = 5
    net = RateNetwork(3.0 * jnp.eye(n), phi=lambda u: u, tau=10.0)  # grows like e^{0.2 t}
    with pytest.raises(nc.DivergenceError, match=r"step \d+.*dt = 5") as info:
        simulate(net, jnp.ones(n), dt=5.0, n_steps=2000, key=getkey(), chunk_steps=100)
    assert "NaN/Inf" in str(info.value) and "too large" in str(info.value)
    # under jit the step is reported in the trajectory instead
    tr = jax.jit(lambda m, s, k: simulate(m, s, dt=5.0, n_steps=2000, key=k))(
        net, jnp.ones(n), getkey())
    assert 100 < int(tr.diverged_at) < 2000


def test_to_xarray_has_named_dims_and_units(getkey):
    net = _net(getkey())
    tr = simulate(net, net.initial_state(getkey()), dt=0.5, n_steps=50, key=getkey(),
                  record=REC)
    ds = tr.to_xarray(attrs={"model": "rate"})
    assert ds["u"].dims == ("time", "unit") and ds["u"].shape == (10, 4)
    assert ds["u"].attrs["units"] == "1" and ds["time"].attrs["units"] == "ms"
    assert ds.attrs["model"] == "rate"


def test_record_whole_state_by_default(getkey):
    net = _net(getkey())
    tr = simulate(net, net.initial_state(getkey()), dt=0.5, n_steps=20, key=getkey(),
                  record=Record(every=10))
    assert tr.ys.shape == (2, net.n)
    np.testing.assert_array_equal(tr.ys[-1], tr.final_state)


class TestBadInput:
    def setup_method(self):
        self.net = _net(jax.random.key(0))
        self.u0 = self.net.initial_state(jax.random.key(1))
        self.key = jax.random.key(2)

    def run(self, **kw):
        args = dict(dt=0.5, n_steps=20, key=self.key)
        args.update(kw)
        state = args.pop("state", self.u0)
        return simulate(args.pop("model", self.net), state, **args)

    @pytest.mark.parametrize("dt", [0.0, -1.0, float("nan"), float("inf")])
    def test_dt(self, dt):
        with pytest.raises(nc.NeurocircuitsError, match="dt must be"):
            self.run(dt=dt)

    @pytest.mark.parametrize("n", [0, -3, 2.5, True])
    def test_n_steps(self, n):
        with pytest.raises(nc.NeurocircuitsError, match="n_steps"):
            self.run(n_steps=n)

    def test_n_steps_not_multiple_of_every(self):
        with pytest.raises(nc.NeurocircuitsError, match="multiple of record.every = 3"):
            self.run(record=Record(every=3))

    @pytest.mark.parametrize("every", [0, -1, 1.5])
    def test_record_every(self, every):
        with pytest.raises(nc.NeurocircuitsError, match="every"):
            Record(every=every)

    def test_key(self):
        with pytest.raises(nc.NeurocircuitsError, match="PRNG key"):
            self.run(key=0)
        with pytest.raises(nc.NeurocircuitsError, match="single PRNG key"):
            self.run(key=jax.random.split(self.key, 2))

    def test_state_shape(self):
        with pytest.raises(nc.NeurocircuitsError, match=r"shape \(30,\)"):
            self.run(state=jnp.zeros(7))

    def test_inputs_length(self):
        with pytest.raises(nc.NeurocircuitsError, match="leading time axis"):
            self.run(inputs=jnp.zeros((19, 30)))

    def test_chunk_steps(self):
        with pytest.raises(nc.NeurocircuitsError, match="chunk_steps"):
            self.run(record=Record(every=5), chunk_steps=7)

    @pytest.mark.parametrize("unroll", [0, -1, 1.5, True])
    def test_unroll(self, unroll):
        with pytest.raises(nc.NeurocircuitsError, match="unroll"):
            self.run(unroll=unroll)

    def test_not_a_model(self):
        with pytest.raises(nc.NeurocircuitsError, match="model must be"):
            self.run(model=lambda u: u)

    def test_batch_sizes_disagree(self):
        nets = eqx.tree_at(lambda m: m.coupling.g, self.net, jnp.ones(3))
        with pytest.raises(nc.NeurocircuitsError, match="leading batch axis"):
            self.run(model=nets, state=jnp.zeros((4, 30)), key=jax.random.split(self.key, 4),
                     batch=Batch(model=lambda m: m.coupling.g))
        with pytest.raises(nc.NeurocircuitsError, match="one key per batch element"):
            self.run(model=nets, state=jnp.zeros((3, 30)), key=self.key,
                     batch=Batch(model=lambda m: m.coupling.g))

    def test_recording_too_large_for_memory(self):
        big = _net(jax.random.key(0), n=500)
        with pytest.raises(nc.NeurocircuitsError, match=r"Record\(every=...\)"):
            simulate(big, jnp.zeros(500), dt=0.5, n_steps=10**9, key=self.key,
                     record=Record(every=1))


class TestRateNetworkConstruction:
    def test_bad_parameters(self):
        z = jnp.eye(4)
        with pytest.raises(nc.NeurocircuitsError, match="tau must be finite and > 0"):
            RateNetwork(z, tau=0.0)
        with pytest.raises(nc.NeurocircuitsError, match="sigma"):
            RateNetwork(z, sigma=-1.0)
        with pytest.raises(nc.NeurocircuitsError, match="square"):
            RateNetwork(jnp.ones((3, 4)))
        with pytest.raises(nc.NeurocircuitsError, match="bias"):
            RateNetwork(z, bias=jnp.ones(5))
        with pytest.raises(nc.NeurocircuitsError, match="phi must be a callable"):
            RateNetwork(z, phi=3.0)
        with pytest.raises(nc.NeurocircuitsError, match="f must lie in"):
            RateNetwork.random(jax.random.key(0), 10, g=1.0, f=1.5)
        with pytest.raises(nc.NeurocircuitsError, match="n must be an integer"):
            RateNetwork.random(jax.random.key(0), 10.5, g=1.0)

    def test_uncoupled_noise_has_ou_variance(self, getkey):
        net = RateNetwork(jnp.zeros((400, 400)), tau=10.0, sigma=1.0, phi=tanh)
        tr = simulate(net, jnp.zeros(400), dt=2.0, n_steps=5000, key=getkey(),
                      record=Record(every=10, fn=lambda u, t: jnp.mean(u**2)))
        # stationary Var u = sigma^2 / 2, exact for the exponential integrator at any dt
        assert abs(float(np.mean(tr.ys[50:])) - 0.5) < 0.02
