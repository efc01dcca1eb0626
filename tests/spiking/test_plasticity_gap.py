"""Tsodyks--Markram steady state vs closed form; gap junctions; Poisson and OU inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import neurocircuits as nc
from neurocircuits import spiking as sp


@pytest.mark.parametrize("U,tau_D,tau_F", [(0.5, 200.0, 0.0), (0.1, 100.0, 300.0)])
def test_stp_steady_state_matches_closed_form(U, tau_D, tau_F):
    lif = sp.LIF(C=200.0, g_L=10.0, E_L=-60.0, V_th=[-50.0, 100.0], V_reset=-60.0, t_ref=5.0)
    stp = sp.TsodyksMarkram(U, tau_D, tau_F)
    e = sp.Edges(jnp.array([0], jnp.int32), jnp.array([1], jnp.int32), jnp.array([1.0]))
    proj = sp.projection(e, 2, receptor=0, dt=0.1, propagation="event", stp=stp)
    net = sp.SpikingNetwork(lif, 2, receptors=(sp.CurrentExp(1e6),), projections=(proj,),
                            inputs=(sp.DC(jnp.array([200.0, 0.0])),),
                            recorder=sp.SpikeRecorder(window=1, capacity=4))
    rec = nc.Record(every=1, fn=lambda s, t: (s.stp[0].u[0], s.stp[0].x[0], s.spiked[0],
                                              s.buf[0, 0, 1]))
    tr = sp.run(net, net.initial_state(jax.random.key(0)), dt=0.1, n_steps=20_000,
                key=jax.random.key(1), record=rec)
    u, x, spk, _ = (np.asarray(a) for a in tr.ys)
    k = np.nonzero(spk)[0]
    period = float(np.diff(k)[-1]) * 0.1
    assert np.all(np.diff(k)[-5:] == np.diff(k)[-1])  # regular train
    u_ss, x_ss = stp.steady_state(period)
    np.testing.assert_allclose(u[k[-1]], u_ss, rtol=1e-4)
    np.testing.assert_allclose(x[k[-1]], x_ss * (1 - u_ss), rtol=1e-4)  # x just after
    # the delivered efficacy (into the ring buffer) is u* x*
    eff = stp.update(sp.STPState(jnp.array([u[k[-1] - 1]]), jnp.array([x[k[-1] - 1]])),
                     jnp.array([True]), 0.1)[1]
    np.testing.assert_allclose(float(eff[0]), u_ss * x_ss, rtol=1e-4)
    # first spike: efficacy U
    np.testing.assert_allclose(u[k[0]], U, rtol=1e-6)


def test_gap_junctions_pull_voltages_together_symmetrically():
    lif = sp.LIF(C=200.0, g_L=10.0, E_L=-60.0, V_th=0.0, V_reset=-60.0, t_ref=2.0)
    gap = sp.GapJunctions([0, 1], [1, 0], g=5.0)
    net = sp.SpikingNetwork(lif, 3, gap=gap, inputs=(sp.DC(jnp.array([100.0, 0.0, 100.0])),))
    rec = nc.Record(every=10, fn=lambda s, t: s.neuron.V)
    V = np.asarray(sp.run(net, net.initial_state(jax.random.key(0)), dt=0.05, n_steps=4000,
                          key=jax.random.key(1), record=rec).ys)[-1]
    # steady state: g_L (V0 - E_L) - I0 + g (V0 - V1) = 0 etc.; cell 2 is uncoupled
    A = np.array([[10.0 + 5.0, -5.0], [-5.0, 10.0 + 5.0]])
    b = np.array([10.0 * -60.0 + 100.0, 10.0 * -60.0])
    np.testing.assert_allclose(V[:2], np.linalg.solve(A, b), atol=1e-3)
    np.testing.assert_allclose(V[2], -50.0, atol=1e-3)


def test_gap_junction_pairs_are_symmetric_within_members():
    members = np.arange(10, 30)
    src, dst = sp.gap_junction_pairs(jax.random.key(0), members, 3)
    pairs = set(zip(np.asarray(src).tolist(), np.asarray(dst).tolist()))
    assert all((b, a) in pairs for a, b in pairs)
    assert set(np.asarray(src)) <= set(members) and all(a != b for a, b in pairs)


def test_poisson_input_mean_and_ou_stationary_sd():
    n = 1000
    lif = sp.LIF(V_th=1e6)
    ou = sp.NoiseInput(mean=50.0, sigma=20.0, tau=5.0)
    pin = sp.PoissonInput(rate=10.0, n_sources=100, weight=1.0, receptor=0)
    net = sp.SpikingNetwork(lif, n, receptors=(sp.CurrentExp(1e9),), inputs=(ou, pin))
    rec = nc.Record(every=100, fn=lambda s, t: (s.ou[0], s.syn[0]))
    tr = sp.run(net, net.initial_state(jax.random.key(0)), dt=0.1, n_steps=3000,
                key=jax.random.key(1), record=rec)
    I_ou, syn = (np.asarray(a) for a in tr.ys)
    assert abs(I_ou[5:].mean() - 50.0) < 0.6 and abs(I_ou[5:].std() - 20.0) < 0.6
    # 100 sources x 10 Hz = 1 spike / ms -> 300 spikes in 300 ms (Poisson: s.d. ~ 17)
    assert abs(syn[-1].mean() - 300.0) < 2.5 and abs(syn[-1].var() / 300.0 - 1) < 0.15


@pytest.mark.parametrize("lam", [0.0, 0.4, 2.3, 9.99, 10.0, 37.0, "mixed"])
def test_loop_free_poisson_draws_the_numbers_of_jax_random_poisson(lam, monkeypatch):
    from neurocircuits.spiking import inputs

    n = 4000
    lv = (jnp.asarray(np.random.default_rng(0).uniform(0, 30, n), jnp.float32) if lam == "mixed"
          else jnp.full((n,), lam, jnp.float32))
    draw = jax.jit(lambda k, lv: inputs.poisson(k, lv, (n,), unrolled=True))
    for seed in range(3):
        key = jax.random.key(seed)
        np.testing.assert_array_equal(draw(key, lv), jax.random.poisson(key, lv, (n,)))
    # too few unrolled iterations: the rare continuation (JAX's loops) gives the same numbers
    monkeypatch.setattr(inputs, "POISSON_KNUTH_STEPS", 2)
    monkeypatch.setattr(inputs, "POISSON_REJECTION_STEPS", 1)
    draw = jax.jit(lambda k, lv: inputs.poisson(k, lv, (n,), unrolled=True))
    key = jax.random.key(9)
    np.testing.assert_array_equal(draw(key, lv), jax.random.poisson(key, lv, (n,)))
