"""Propagation paths agree exactly; delays shift responses by exactly the delay; recording bounds."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import neurocircuits as nc
from neurocircuits import spiking as sp
from neurocircuits.spiking.circuits import coba, coba_edges
from neurocircuits.spiking.propagation import spike_list


def _driven(prop, edges, n=400, delay=0.0, **kw):
    """COBA synapses plus a suprathreshold DC drive (activity never dies out)."""
    net, init = coba(jax.random.key(0), n, propagation=prop, edges=edges, delay=delay, **kw)
    net = sp.SpikingNetwork(net.neurons, n, receptors=net.receptors,
                            projections=net.projections, inputs=(sp.DC(200.0),),
                            labels=net.labels, populations=net.populations,
                            recorder=net.recorder, max_spikes_per_step=net.max_spikes_per_step)
    return net, lambda k: net.initial_state(k, V0=-60.0 + 10.0 * jax.random.uniform(k, (n,)))


def _coba_spikes(prop, edges, n=200, n_steps=600, delay=0.0):
    net, init = _driven(prop, edges, n, delay, max_spikes_per_step=n,
                        recorder=sp.SpikeRecorder(window=100, capacity=4096))
    tr = sp.run(net, init(jax.random.key(1)), dt=0.1, n_steps=n_steps, key=jax.random.key(2),
                record=net.record())
    ev = sp.spike_events(tr, net)
    return ev.steps, ev.neurons


@pytest.mark.parametrize("delay", [0.0, 0.7])
def test_event_dense_gather_identical_spikes(delay):
    # integer-valued weights: sums are exact in float32 in any order
    edges = coba_edges(jax.random.key(3), 200, p=0.1, dg_e=3.0, dg_i=20.0)
    ref = _coba_spikes("dense", edges, delay=delay)
    assert ref[0].size > 500  # the network is active
    for prop in ("event", "gather"):
        got = _coba_spikes(prop, edges, delay=delay)
        np.testing.assert_array_equal(got[0], ref[0])
        np.testing.assert_array_equal(got[1], ref[1])


def _delay_net(delays_ms, prop="event", hetero=False):
    """Neuron 0 is kicked once; neurons 1.. receive one delta synapse from it."""
    m = len(delays_ms)
    n = m + 1
    lif = sp.LIF.from_tau(20.0, C=250.0, E_L=0.0, V_th=[5.0] + [100.0] * m, V_reset=0.0,
                          t_ref=2.0)
    pre = jnp.zeros((m,), jnp.int32)
    post = jnp.arange(1, n, dtype=jnp.int32)
    e = sp.Edges(pre, post, jnp.full((m,), 2.0))
    if hetero:
        proj = sp.projection(e.with_delay(jnp.asarray(delays_ms)), n, receptor=0, dt=0.1,
                             propagation=prop)
    else:
        assert len(set(delays_ms)) == 1
        proj = sp.projection(e, n, receptor=0, dt=0.1, delay=delays_ms[0], propagation=prop)
    stim = sp.Stimulus([0], 10000.0, start=1.0, stop=1.3)
    return sp.SpikingNetwork(lif, n, receptors=(sp.Delta(),), projections=(proj,),
                             inputs=(stim,), recorder=sp.SpikeRecorder(window=1, capacity=8))


def _trace(net, n_steps=200):
    rec = nc.Record(every=1, fn=lambda s, t: (s.neuron.V, s.spiked[0]))
    tr = sp.run(net, net.initial_state(jax.random.key(0)), dt=0.1, n_steps=n_steps,
                key=jax.random.key(1), record=rec)
    return np.asarray(tr.ys[0]), np.asarray(tr.ys[1])


@pytest.mark.parametrize("prop", ["event", "dense", "gather"])
def test_delay_shifts_response_by_exactly_the_delay(prop):
    v1, spk = _trace(_delay_net([1.0], prop))
    v2, _ = _trace(_delay_net([2.5], prop))
    k = int(np.nonzero(spk)[0][0])  # the presynaptic spike (at t_{k+1})
    first = int(np.nonzero(v1[:, 1])[0][0])
    # arrival at t_{k+1} + d dt: the jump shows in the state after step k + 1 + d
    assert first == k + 1 + 10
    shift = 15
    np.testing.assert_array_equal(v2[shift:, 1], v1[:-shift, 1])
    assert not np.array_equal(v2[:, 1], v1[:, 1])


def test_heterogeneous_delays_event_path():
    delays = [0.0, 0.3, 1.2, 4.0]
    v, spk = _trace(_delay_net(delays, "event", hetero=True))
    k = int(np.nonzero(spk)[0][0])
    first = [int(np.nonzero(v[:, 1 + j])[0][0]) for j in range(4)]
    assert first == [k + 1 + round(d / 0.1) for d in delays]
    with pytest.raises(nc.NeurocircuitsError, match="heterogeneous delays"):
        _delay_net(delays, "dense", hetero=True)


def test_spike_capacity_overflow_says_what_to_change():
    edges = coba_edges(jax.random.key(3), 400, p=0.1, dg_e=3.0, dg_i=20.0)
    net, init = _driven("event", edges, max_spikes_per_step=2,
                        recorder=sp.SpikeRecorder(window=100, capacity=4096))
    with pytest.raises(nc.NeurocircuitsError, match=r"max_spikes_per_step = 2.*max_spikes_per_step="):
        sp.run(net, init(jax.random.key(1)), dt=0.1, n_steps=500, key=jax.random.key(2),
               record=net.record())


def test_recording_overflow_says_what_to_change():
    edges = coba_edges(jax.random.key(3), 400, p=0.1, dg_e=3.0, dg_i=20.0)
    net, init = _driven("event", edges, max_spikes_per_step=400,
                        recorder=sp.SpikeRecorder(window=100, capacity=5))
    with pytest.raises(nc.NeurocircuitsError, match=r"SpikeRecorder\(capacity=\d+\)"):
        sp.run(net, init(jax.random.key(1)), dt=0.1, n_steps=500, key=jax.random.key(2),
               record=net.record())


def test_population_rates_match_events():
    edges = coba_edges(jax.random.key(3), 400, p=0.1, dg_e=3.0, dg_i=20.0)
    net, init = _driven("event", edges, max_spikes_per_step=400,
                        recorder=sp.SpikeRecorder(window=50, capacity=4096))
    tr = sp.run(net, init(jax.random.key(1)), dt=0.1, n_steps=1000, key=jax.random.key(2),
                record=net.record(cells=[0, 399]))
    ev = sp.spike_events(tr, net)
    rates = sp.population_rates(tr, net, 0.1)
    win = ev.steps // 50
    lab = np.asarray(net.labels)[ev.neurons]
    counts = np.zeros((20, 2))
    np.add.at(counts, (win, lab), 1)
    np.testing.assert_allclose(rates, counts / net.population_sizes / 5e-3)
    assert tr.ys["V"].shape == (20, 2)


def _hetero_poisson_net(chunk=None, n=300):
    """Event projection with heterogeneous delays, Poisson drive (the microcircuit's parts)."""
    e = sp.fixed_total_number(jax.random.key(5), n, n, 20 * n, weight=60.0)
    d = 0.1 + 2.0 * jax.random.uniform(jax.random.key(6), (e.nnz,))
    proj = sp.projection(e.with_delay(d), n, receptor=0, dt=0.1, chunk=chunk)
    lif = sp.LIF.from_tau(10.0, C=250.0, E_L=-65.0, V_th=-50.0, V_reset=-65.0, t_ref=2.0)
    ext = sp.PoissonInput(rate=8.0, n_sources=2000.0, weight=90.0, receptor=0)
    return sp.SpikingNetwork(lif, n, receptors=(sp.CurrentExp(0.5),), projections=(proj,),
                             inputs=(ext,), max_spikes_per_step=n,
                             recorder=sp.SpikeRecorder(window=100, capacity=4096))


def _events_and_state(net, **kw):
    tr = sp.run(net, net.initial_state(jax.random.key(1), V0=-60.0), dt=0.1, n_steps=400,
                key=jax.random.key(2), record=net.record(), **kw)
    ev = sp.spike_events(tr, net)
    return ev, tr.final_state


def test_event_passes_and_unrolled_loop_give_identical_results():
    ref_ev, ref_s = _events_and_state(_hetero_poisson_net())
    assert ref_ev.steps.size > 300  # active
    # many scatter passes per step: bit-identical (the additions keep their order)
    ev, s = _events_and_state(_hetero_poisson_net(chunk=7))
    np.testing.assert_array_equal(ev.steps, ref_ev.steps)
    np.testing.assert_array_equal(ev.neurons, ref_ev.neurons)
    for a, b in zip(jax.tree.leaves(s), jax.tree.leaves(ref_s)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # an unrolled time loop: the same spikes; XLA's CPU exp (not correctly rounded) may be
    # evaluated in another fusion, so a float may differ in its last bit
    ev, s = _events_and_state(_hetero_poisson_net(), unroll=4)
    np.testing.assert_array_equal(ev.steps, ref_ev.steps)
    np.testing.assert_array_equal(ev.neurons, ref_ev.neurons)
    for a, b in zip(jax.tree.leaves(s), jax.tree.leaves(ref_s)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("size", [1, 5, 40])
def test_spike_list_matches_nonzero(size):
    spiked = jax.random.bernoulli(jax.random.key(size), 0.2, (40,))
    idx, count = spike_list(spiked, size)
    np.testing.assert_array_equal(idx, jnp.nonzero(spiked, size=size, fill_value=40)[0])
    assert int(count) == int(spiked.sum())


@pytest.mark.parametrize("cap_sds", [8.0, -8.0])
def test_fixed_probability_device_compaction_matches_host(monkeypatch, cap_sds):
    """The GPU path (compaction on the device; cap_sds < 0 forces the overflow redraw) gives the
    host path's synapses, and the counts are binomial (mean p n_pre n_post)."""
    from neurocircuits.spiking import connectivity as conn

    cases = [((3000, 2000, 0.05), {}), ((600, 600, 0.3), {"allow_autapses": False}),
             ((5, 7, 1.0), {"pre_offset": 4, "post_offset": 2})]
    host = [conn.fixed_probability(jax.random.key(3), *a, weight=1.5, **kw) for a, kw in cases]
    monkeypatch.setattr(conn, "_compact_on_device", lambda: True)
    monkeypatch.setattr(conn, "_CAP_SDS", cap_sds)
    for (a, kw), h in zip(cases, host):
        d = conn.fixed_probability(jax.random.key(3), *a, weight=1.5, **kw)
        for f in ("pre", "post", "weight"):
            np.testing.assert_array_equal(np.asarray(getattr(d, f)), np.asarray(getattr(h, f)))
    n_post, n_pre, p = cases[0][0]
    mean, sd = p * n_pre * n_post, np.sqrt(p * (1 - p) * n_pre * n_post)
    assert abs(host[0].nnz - mean) < 5 * sd
    pairs = np.asarray(host[1].pre) * 600 + np.asarray(host[1].post)
    assert np.all(np.diff(pairs) > 0)
    assert not np.any(np.asarray(host[1].pre) == np.asarray(host[1].post))
