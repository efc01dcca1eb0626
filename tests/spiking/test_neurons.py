"""Neuron models against exact solutions: LIF relaxation, ISI, exact PSP; AdEx/Izhikevich."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import neurocircuits as nc
from neurocircuits import spiking as sp


def _one(neuron, n=1, **kw):
    return sp.SpikingNetwork(neuron, n, recorder=sp.SpikeRecorder(window=10, capacity=256), **kw)


def test_lif_subthreshold_relaxation_is_exact():
    lif = sp.LIF(C=200.0, g_L=10.0, E_L=-60.0, V_th=-40.0, V_reset=-60.0, t_ref=2.0)
    amps = np.array([0.0, 50.0, 150.0])  # V_inf = -60, -55, -45 (below threshold)
    net = _one(lif, 3, inputs=(sp.DC(amps),))
    s0 = net.initial_state(jax.random.key(0), V0=jnp.array([-70.0, -50.0, -60.0]))
    dt, n = 0.25, 400
    tr = sp.run(net, s0, dt=dt, n_steps=n, key=jax.random.key(1),
                record=net.record(cells=[0, 1, 2], spikes=False))
    t = np.asarray(tr.ts)
    v_inf = -60.0 + amps / 10.0
    exact = v_inf + (np.array([-70.0, -50.0, -60.0]) - v_inf) * np.exp(-t[:, None] / 20.0)
    np.testing.assert_allclose(np.asarray(tr.ys["V"]), exact, rtol=0, atol=2e-5)


@pytest.mark.parametrize("amp", [120.0, 200.0, 400.0])
def test_lif_isi_matches_closed_form(amp):
    """T = t_ref + tau ln((mu - V_r)/(mu - theta)); the first step end past threshold."""
    lif = sp.LIF(C=200.0, g_L=10.0, E_L=-60.0, V_th=-50.0, V_reset=-60.0, t_ref=5.0)
    net = _one(lif, inputs=(sp.DC(amp),))
    dt = 0.01
    tr = sp.run(net, net.initial_state(jax.random.key(0)), dt=dt, n_steps=20_000,
                key=jax.random.key(1), record=net.record())
    times = sp.spike_events(tr, net).times(dt)
    isi = np.diff(times)
    mu = -60.0 + amp / 10.0
    T = 5.0 + 20.0 * np.log((mu + 60.0) / (mu + 50.0))
    assert len(isi) >= 3
    assert np.all(np.abs(isi - T) <= dt + 1e-6), (isi[:3], T)
    # and a wrong closed form (no refractoriness) is rejected
    assert not np.all(np.abs(isi - (T - 5.0)) <= dt)


def test_current_exp_psp_is_exact():
    """One input spike into an exponential current synapse: the LIF propagator is exact."""
    C, tau_m, tau_s, w = 250.0, 10.0, 0.5, 87.8
    lif = sp.LIF.from_tau(tau_m, C=C, E_L=0.0, V_th=100.0, V_reset=0.0, t_ref=2.0)
    net = _one(lif, 1, receptors=(sp.CurrentExp(tau_s),))
    dt = 0.1
    s0 = net.initial_state(jax.random.key(0), syn0=jnp.array([[w]]))  # I_s(0) = w
    tr = sp.run(net, s0, dt=dt, n_steps=300, key=jax.random.key(1),
                record=nc.Record(every=1, fn=lambda s, t: s.neuron.V))
    t = np.asarray(tr.ts)
    exact = w / C * tau_s * tau_m / (tau_m - tau_s) * (np.exp(-t / tau_m) - np.exp(-t / tau_s))
    np.testing.assert_allclose(np.asarray(tr.ys)[:, 0], exact, rtol=1e-4, atol=1e-6)


def test_adex_adaptation_jumps_and_decays_exactly():
    adex = sp.AdEx(a=0.0, b=60.0, tau_w=100.0)
    net = _one(adex, inputs=(sp.DC(800.0),))
    dt = 0.05
    tr = sp.run(net, net.initial_state(jax.random.key(0)), dt=dt, n_steps=8000,
                key=jax.random.key(1),
                record=nc.Record(every=1, fn=lambda s, t: (s.neuron.w[0], s.spiked[0])))
    w, spk = (np.asarray(x) for x in tr.ys)
    k = np.nonzero(spk)[0]
    assert len(k) >= 4
    isi = np.diff(k)
    assert isi[-1] > isi[0]  # spike-frequency adaptation
    # at a spike w jumps by b on top of the exact decay; between spikes it decays exactly
    e = np.exp(-dt / 100.0)
    np.testing.assert_allclose(w[k[1:]], w[k[1:] - 1] * e + 60.0, rtol=1e-5)
    quiet = np.setdiff1d(np.arange(1, len(w)), k)
    np.testing.assert_allclose(w[quiet], w[quiet - 1] * e, rtol=1e-5)


def test_izhikevich_presets_fire_as_published():
    izh = sp.Izhikevich.from_types(("RS", 1), ("FS", 1), ("LTS", 1))
    np.testing.assert_allclose(np.asarray(izh.d), [8.0, 2.0, 2.0])
    net = _one(izh, 3, inputs=(sp.DC(10.0),))
    dt = 0.1
    tr = sp.run(net, net.initial_state(jax.random.key(0)), dt=dt, n_steps=10_000,
                key=jax.random.key(1), record=net.record())
    ev = sp.spike_events(tr, net)
    counts = np.bincount(ev.neurons, minlength=3)
    assert counts[1] > counts[0] > 0  # FS fires faster than RS at the same input
    rs = np.diff(ev.times(dt)[ev.neurons == 0])
    assert rs[0] < rs[-1]  # RS adapts
    with pytest.raises(nc.NeurocircuitsError, match="preset 'XX' is unknown"):
        sp.Izhikevich.preset("XX")


def test_eif_spikes_at_v_peak_and_resets():
    eif = sp.EIF(V_peak=-30.0, t_ref=1.0)
    net = _one(eif, inputs=(sp.DC(1000.0),))
    tr = sp.run(net, net.initial_state(jax.random.key(0)), dt=0.05, n_steps=4000,
                key=jax.random.key(1), record=nc.Record(every=1, fn=lambda s, t: s.neuron.V[0]))
    v = np.asarray(tr.ys)
    assert np.isfinite(v).all() and v.max() < -30.0 and (v == eif.V_reset).sum() > 5
