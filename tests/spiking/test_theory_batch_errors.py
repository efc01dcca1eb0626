"""Siegert vs simulated white-noise LIF; Brunel self-consistency; batched == looped; bad input."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import neurocircuits as nc
from neurocircuits import spiking as sp
from neurocircuits.spiking.theory import brunel_rate, siegert

TAU, TH, VR, TREF = 20.0, 20.0, 10.0, 2.0


def siegert_grid_error(mus, sigmas, *, per, duration, dt, seeds):
    """Max over the grid of |rate_sim / rate_Siegert - 1|, the simulated rate averaged over
    seeds; Siegert with the discrete-time boundary shift (tau_s = dt), and without."""
    M, S = np.meshgrid(mus, sigmas, indexing="ij")
    mu, sg = np.repeat(M.ravel(), per), np.repeat(S.ravel(), per)
    n = mu.size
    lif = sp.LIF.from_tau(TAU, C=250.0, E_L=0.0, V_th=TH, V_reset=VR, t_ref=TREF)
    net = sp.SpikingNetwork(lif, n, inputs=(sp.white_noise_for_lif(lif, mu, sg),),
                            labels=np.arange(n) // per,
                            recorder=sp.SpikeRecorder(window=500, capacity=1))
    rec = nc.Record(every=500, fn=lambda s, t: s.pop_counts)
    n_steps = int(round(duration / dt)) // 500 * 500
    rates = []
    for seed in range(seeds):
        s0 = net.initial_state(jax.random.key(seed), V0=jax.random.uniform(
            jax.random.key(100 + seed), (n,), minval=VR, maxval=TH))
        tr = sp.run(net, s0, dt=dt, n_steps=n_steps, key=jax.random.key(200 + seed),
                    record=rec)
        rates.append(np.asarray(tr.ys).sum(0) / per / (n_steps * dt * 1e-3))
    sim = np.mean(rates, axis=0).reshape(M.shape)
    th = siegert(M, S, tau_m=TAU, V_th=TH, V_r=VR, t_ref=TREF, tau_s=dt)
    th0 = siegert(M, S, tau_m=TAU, V_th=TH, V_r=VR, t_ref=TREF)
    return float(np.max(np.abs(sim / th - 1))), float(np.max(np.abs(sim / th0 - 1))), sim, th


def test_siegert_vs_simulation_small():
    err, err_plain, sim, th = siegert_grid_error([17.0, 22.0], [3.0, 6.0], per=150,
                                                 duration=2000.0, dt=0.1, seeds=2)
    assert err <= 0.05, (sim, th)
    assert err_plain > err  # the discrete-time correction matters at dt = 0.1 ms


@pytest.mark.slow
def test_siegert_vs_simulation_grid():
    err, _, sim, th = siegert_grid_error([16.0, 18.5, 21.0, 24.0], [3.0, 5.0, 7.0], per=300,
                                         duration=5000.0, dt=0.05, seeds=3)
    assert err <= 0.05, (sim, th)


def test_siegert_limits():
    # sigma -> 0: the deterministic rate 1/(t_ref + tau ln((mu - V_r)/(mu - theta)))
    mu = 25.0
    det = 1e3 / (TREF + TAU * np.log((mu - VR) / (mu - TH)))
    assert siegert(mu, 1e-3, tau_m=TAU, V_th=TH, V_r=VR, t_ref=TREF) == pytest.approx(det,
                                                                                         rel=1e-3)
    assert siegert(mu, 0.0, tau_m=TAU, V_th=TH, V_r=VR, t_ref=TREF) == pytest.approx(det)
    assert siegert(10.0, 0.0, tau_m=TAU, V_th=TH, V_r=VR, t_ref=TREF) == 0.0
    r = brunel_rate(g=5.0, eta=2.0)
    assert r.converged and r.residual < 1e-9
    # self-consistency: the rate reproduces itself through mu(nu), sigma(nu)
    assert siegert(r.mu, r.sigma, tau_m=TAU, V_th=TH, V_r=VR, t_ref=TREF) == pytest.approx(
        r.rate_hz, rel=1e-6)


def test_batched_equals_looped():
    lif = sp.LIF(C=200.0, g_L=10.0, E_L=-60.0, V_th=-50.0, V_reset=-60.0, t_ref=2.0)
    n = 50
    e = sp.fixed_probability(jax.random.key(0), n, n, 0.2, weight=2.0)
    net = sp.SpikingNetwork(lif, n, receptors=(sp.ConductanceExp(5.0, 0.0),),
                            projections=(sp.projection(e, n, receptor=0, dt=0.1, delay=0.5),),
                            inputs=(sp.DC(50.0), sp.NoiseInput(0.0, 300.0)),
                            recorder=sp.SpikeRecorder(window=50, capacity=2048))
    amps = jnp.array([50.0, 80.0, 120.0])
    nets = eqx.tree_at(lambda m: m.inputs[0].amplitude, net, amps)
    keys = jax.random.split(jax.random.key(1), 3)
    s0 = jax.vmap(lambda k: net.initial_state(k, V0=-60.0 + 10 * jax.random.uniform(k, (n,))))(
        keys)
    rec = net.record(cells=[0, 1])
    tb = sp.run(nets, s0, dt=0.1, n_steps=500, key=keys, record=rec,
                batch=nc.Batch(model=lambda m: m.inputs[0].amplitude))
    evs = sp.spike_events(tb, net)
    for b in range(3):
        one = eqx.tree_at(lambda m: m.inputs[0].amplitude, net, amps[b])
        tl = sp.run(one, jax.tree.map(lambda x: x[b], s0), dt=0.1, n_steps=500, key=keys[b],
                    record=rec)
        np.testing.assert_allclose(np.asarray(tb.ys["V"][b]), np.asarray(tl.ys["V"]),
                                   rtol=1e-5, atol=1e-4)
        el = sp.spike_events(tl, net)
        np.testing.assert_array_equal(evs[b].neurons, el.neurons)
        np.testing.assert_array_equal(evs[b].steps, el.steps)
    assert len(evs[2].steps) > len(evs[0].steps) > 0


@pytest.mark.parametrize("make, match", [
    (lambda: sp.LIF(C=-1.0), r"C must be > 0.0 pF, got -1.0"),
    (lambda: sp.LIF(V_th=-70.0, V_reset=-60.0), r"V_th must be finite and > V_reset"),
    (lambda: sp.LIF(t_ref=float("nan")), r"t_ref must be finite"),
    (lambda: sp.EIF(V_peak=-60.0, V_T=-50.0), r"V_peak must be > V_T"),
    (lambda: sp.TsodyksMarkram(U=1.5), r"U must lie in \(0, 1\], got 1.5"),
    (lambda: sp.ConductanceExp(tau=0.0), r"ConductanceExp.tau must be > 0.0 ms, got 0.0"),
    (lambda: sp.PoissonInput(rate=-1.0), r"PoissonInput.rate must be >= 0.0 Hz"),
    (lambda: sp.SpikeRecorder(window=0), r"SpikeRecorder.window must be an int >= 1, got 0"),
    (lambda: sp.fixed_probability(jax.random.key(0), 10, 10, 1.5), r"p must be a probability"),
    (lambda: sp.projection(sp.Edges(jnp.array([0]), jnp.array([5]), jnp.array([1.0])), 3,
                           receptor=0, dt=0.1), r"outside the network's \[0, 3\)"),
    (lambda: sp.projection(sp.Edges(jnp.array([0]), jnp.array([1]), jnp.array([1.0])), 3,
                           receptor=0, dt=0.1, propagation="magic"), r"propagation='magic'.*allowed"),
    (lambda: sp.projection(sp.Edges(jnp.array([0]), jnp.array([1]), jnp.array([1.0])), 3,
                           receptor=0, dt=0.1, delay=-1.0), r"delay must be finite and >= 0 ms"),
    (lambda: sp.SpikingNetwork(sp.LIF(), 3, projections=(sp.projection(
        sp.Edges(jnp.array([0]), jnp.array([1]), jnp.array([1.0])), 3, receptor=2, dt=0.1),),
        receptors=(sp.Delta(),)), r"targets receptor 2.*allowed: 0..0"),
    (lambda: sp.SpikingNetwork(sp.LIF(C=jnp.ones(4)), 3), r"shape \(n,\) = \(3,\)"),
    (lambda: sp.SpikingNetwork("lif", 3), r"neurons must be LIF, EIF \(AdEx\) or Izhikevich"),
])
def test_bad_input_raises_clear_errors(make, match):
    with pytest.raises(nc.NeurocircuitsError, match=match):
        make()


def test_wrong_state_and_dt_raise():
    e = sp.Edges(jnp.array([0]), jnp.array([1]), jnp.array([1.0]))
    net = sp.SpikingNetwork(sp.LIF(), 2, receptors=(sp.Delta(),),
                            projections=(sp.projection(e, 2, receptor=0, dt=0.1, delay=1.0),))
    other = sp.SpikingNetwork(sp.LIF(), 3)
    with pytest.raises(nc.NeurocircuitsError, match=r"voltages must have shape \(2,\)"):
        sp.run(net, other.initial_state(jax.random.key(0)), dt=0.1, n_steps=10,
               key=jax.random.key(0))
    with pytest.raises(nc.NeurocircuitsError, match=r"dt = 0.05 ms differs from the dt = 0.1"):
        sp.run(net, net.initial_state(jax.random.key(0)), dt=0.05, n_steps=10,
               key=jax.random.key(0))
