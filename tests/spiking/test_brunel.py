"""Brunel (2000) model A: the network as the paper and NEST define it (in-degrees, external
Poisson drive, refractory input, delay), the CV and the linear stability of the asynchronous
state against simulation, and the state classification of the spiking-brunel experiment."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import neurocircuits as nc
from neurocircuits import spiking as sp
from neurocircuits.experiments.spiking_brunel import (
    Config,
    _classify,
    rate_autocorrelation,
    simulate_state,
)
from neurocircuits.spiking.circuits import brunel, brunel_edges
from neurocircuits.spiking.theory import (
    _threshold_integration,
    brunel_rate,
    brunel_stability,
    lif_cv,
    siegert,
    siegert_derivative,
)

TAU, TH, VR, TREF, J, DT = 20.0, 20.0, 10.0, 2.0, 0.1, 0.1


def test_brunel_in_degrees_weights_and_external_drive():
    """Every neuron: exactly C_E distinct E and C_I distinct I inputs of J and -gJ (times
    exp(dt/tau), the exact rewriting of NEST's end-of-step jumps), and C_E independent Poisson
    trains at eta nu_thr: the input of every neuron has the mean and variance of the theory."""
    n_e, C_E, g, eta = 800, 100, 5.0, 2.0
    n, C_I = 1000, 25
    ee, ei = brunel_edges(jax.random.key(0), n_e=n_e, C_E=C_E)
    for e, lo, hi, k in ((ee, 0, n_e, C_E), (ei, n_e, n, C_I)):
        pre, post = np.asarray(e.pre), np.asarray(e.post)
        assert (np.bincount(post, minlength=n) == k).all()
        assert pre.min() >= lo and pre.max() < hi
        pairs = post.astype(np.int64) * n + pre
        assert np.unique(pairs).size == pairs.size  # no multapses
    # presynaptic choice is uniform: out-degrees have the binomial spread
    out = np.bincount(np.asarray(ee.pre), minlength=n_e)
    assert out.mean() == pytest.approx(n * C_E / n_e)
    assert out.var() == pytest.approx(n * (C_E / n_e) * (1 - C_E / n_e), rel=0.2)
    net, _ = brunel(jax.random.key(0), n_e=n_e, C_E=C_E, g=g, eta=eta, propagation="dense")
    W = np.asarray(net.projections[0].matrix)
    w = J * np.exp(DT / TAU)
    assert np.allclose((W > 0).sum(1), C_E) and np.allclose((W < 0).sum(1), C_I)
    assert np.allclose(W[W > 0], w, rtol=1e-6) and np.allclose(W[W < 0], -g * w, rtol=1e-6)
    assert (W[:, :n_e] >= 0).all() and (W[:, n_e:] <= 0).all()
    assert net.projections[0].delay == 14  # D - dt: a spike at t acts at t + D (NEST timing)
    ext = net.inputs[0]
    nu_thr = TH / (J * C_E * TAU)  # 1/ms
    assert float(ext.rate * ext.n_sources) * 1e-3 == pytest.approx(eta * nu_thr * C_E, rel=1e-6)
    x = np.stack([np.asarray(ext.sample(jax.random.key(i), n, DT)) for i in range(400)]) / w
    lam = eta * nu_thr * C_E * DT
    assert x.mean() == pytest.approx(lam, rel=0.02) and x.var() == pytest.approx(lam, rel=0.05)
    c = np.corrcoef(x.T)[np.triu_indices(n, 1)]  # independent across neurons
    assert abs(c.mean()) < 0.005 and c.std() == pytest.approx(1 / np.sqrt(400), rel=0.15)


def test_brunel_timing_and_refractory_input_as_in_nest():
    """A spike at t_s moves its targets by exactly J at t_s + D: V(t_s + D) = e^{-dt/tau}
    V(t_s + D - dt) + J, nothing earlier; targets that are refractory ignore it."""
    net, _ = brunel(jax.random.key(0), n_e=4, C_E=4, g=5.0, eta=0.0,
                    recorder=sp.SpikeRecorder(window=1, capacity=8))
    n = net.n  # 5: every neuron receives all four E neurons and the one I neuron
    s0 = net.initial_state(jax.random.key(1), V0=jnp.array([19.0, 19.0, 5.0, 5.0, 5.0]))
    kick = jnp.zeros(n).at[:2].set(20000.0)  # pA into neurons 0 and 1 during the first step

    def current(t):
        return jnp.where(t < 0.05, kick, 0.0)

    tr = sp.run(net, s0, dt=DT, n_steps=40, key=jax.random.key(2),
                record=net.record(cells=[0, 1, 2, 4]), inputs=current)
    ev = sp.spike_events(tr, net)
    assert ev.steps.tolist() == [0, 0] and ev.neurons.tolist() == [0, 1]
    V = np.asarray(tr.ys["V"], np.float64)  # V[k] at t_{k+1}
    P = np.exp(-DT / TAU)
    d = int(round(1.5 / DT))
    jump = V[1:] - P * V[:-1]
    for c in (2, 3):  # two E spikes arrive at t_s + D = t_{1 + d}: V[d]
        assert jump[d - 1, c] == pytest.approx(2 * J, abs=1e-5)
        assert np.abs(np.delete(jump[:, c], d - 1)).max() < 1e-5
    for c in (0, 1):  # refractory until t_s + t_ref: held at V_r, the input is lost
        assert np.all(V[: int(round(TREF / DT)) + 1, c] == VR)
        assert np.abs(V[int(round(TREF / DT)) + 1:, c] - VR * P ** np.arange(
            1, V.shape[0] - int(round(TREF / DT)))).max() < 1e-4


@pytest.mark.parametrize("kw, match", [
    (dict(delay=0.05), r"delay = 0.05 ms is shorter than one step"),
    (dict(n_e=100, C_E=200), r"C_E = 200, C_I = 50 need C_E <= N_E = 100"),
    (dict(J=-0.1), r"J must be finite and > 0"),
    (dict(gamma=0.0), r"gamma = N_I/N_E must lie in \(0, 1\]"),
    (dict(edges="x"), r"edges must be the pair \(E, I\) of Edges"),
])
def test_brunel_bad_input(kw, match):
    with pytest.raises(nc.NeurocircuitsError, match=match):
        brunel(jax.random.key(0), **{"n_e": 400, "C_E": 100, **kw})


def test_brunel_edges_must_fit():
    e = brunel_edges(jax.random.key(0), n_e=400, C_E=100)
    with pytest.raises(nc.NeurocircuitsError, match=r"edges do not fit this network"):
        brunel(jax.random.key(0), n_e=400, C_E=50, edges=e)


def test_lif_cv_vs_white_noise_simulation():
    """The ISI CV of uncoupled LIF neurons under white noise against lif_cv (the CV of Brunel's
    asynchronous state with Poisson input)."""
    mus, sigmas, per = np.array([21.0, 16.0]), np.array([7.7, 4.0]), 150
    mu, sg = np.repeat(mus, per), np.repeat(sigmas, per)
    n = mu.size
    lif = sp.LIF.from_tau(TAU, C=250.0, E_L=0.0, V_th=TH, V_reset=VR, t_ref=TREF)
    net = sp.SpikingNetwork(lif, n, inputs=(sp.white_noise_for_lif(lif, mu, sg),),
                            labels=np.arange(n) // per,
                            recorder=sp.SpikeRecorder(window=100, capacity=1024))
    s0 = net.initial_state(jax.random.key(0), V0=VR)
    dt = 0.1
    tr = sp.run(net, s0, dt=dt, n_steps=25_000, key=jax.random.key(1), record=net.record())
    cv = sp.cv_isi(sp.spike_events(tr, net), n, dt=dt, t_start=100.0)
    for a in range(2):
        got = np.nanmean(cv[a * per:(a + 1) * per])
        want = lif_cv(mus[a], sigmas[a], tau_m=TAU, V_th=TH, V_r=VR, t_ref=TREF)
        assert got == pytest.approx(want, rel=0.06), (mus[a], sigmas[a], got, want)
    # limits: a Poisson-like subthreshold neuron, a regular suprathreshold one
    assert lif_cv(5.0, 3.0, tau_m=TAU, V_th=TH, V_r=VR, t_ref=0.0) == pytest.approx(1.0, abs=0.05)
    assert lif_cv(40.0, 0.5, tau_m=TAU, V_th=TH, V_r=VR, t_ref=TREF) < 0.05
    with pytest.raises(nc.NeurocircuitsError, match=r"sigma must be finite and >= 0"):
        lif_cv(20.0, -1.0, tau_m=TAU, V_th=TH, V_r=VR, t_ref=TREF)


def test_threshold_integration_reproduces_siegert():
    mu, sig = 21.0, 7.7
    nu0, Rm, Rs = _threshold_integration(mu, sig, TAU, TH, VR, TREF, np.array([1e-9 + 0j]),
                                         4000)
    assert nu0 * 1e3 == pytest.approx(siegert(mu, sig, tau_m=TAU, V_th=TH, V_r=VR, t_ref=TREF),
                                      rel=3e-3)
    d_mu, d_sig = siegert_derivative(mu, sig, tau_m=TAU, V_th=TH, V_r=VR, t_ref=TREF)
    assert Rm[0].real * 1e3 == pytest.approx(d_mu, rel=5e-3)
    assert Rs[0].real * 1e3 == pytest.approx(d_sig / (2 * sig), rel=5e-3)  # d/d(sigma^2)


def test_brunel_stability_at_the_phase_points():
    """Brunel's Fig. 8 points with C_E = 1000, J = 0.1 mV, D = 1.5 ms: the asynchronous state
    is stable at the AI point (a damped ~120 Hz mode), unstable at the fast SI point (~190 Hz,
    near 1/(4D)) and at the slow SI point (tens of Hz)."""
    ai = brunel_stability(g=5.0, eta=2.0)
    assert ai.converged and ai.stable and ai.residual < 1e-8
    assert -200 < ai.growth_rate < -80 and 105 < ai.frequency_hz < 145
    assert ai.rate_hz == pytest.approx(brunel_rate(g=5.0, eta=2.0).rate_hz)
    fast = brunel_stability(g=6.0, eta=4.0)
    assert not fast.stable and fast.growth_rate > 0 and 160 < fast.frequency_hz < 220
    slow = brunel_stability(g=4.5, eta=0.9)
    assert not slow.stable and slow.frequency_hz < 60
    # more inhibition at the AI drive stays asynchronous; a longer delay slows the fast mode
    assert brunel_stability(g=8.0, eta=2.0).stable
    assert brunel_stability(g=6.0, eta=4.0, delay=3.0).frequency_hz < fast.frequency_hz
    with pytest.raises(nc.NeurocircuitsError, match=r"delay must be finite and >= 0"):
        brunel_stability(g=5.0, eta=2.0, delay=-1.0)


def _config(n_e, duration):
    return Config(n_e=n_e, C_E=1000, states=("ai",), duration=duration, sr_duration=duration,
                  t_transient=50.0, n_recorded=500, finite_size=False)


def test_brunel_stability_vs_simulation_small():
    """The fast SI point at N_E = 1250 (C_E = 1000): a sustained oscillation (coherence >= 1.5)
    at the frequency of the unstable eigenvalue."""
    out = simulate_state(_config(1250, 250.0), jax.random.key(3), 6.0, 4.0)
    th = brunel_stability(g=6.0, eta=4.0)
    assert out["coherence"] >= 1.5
    assert out["freq"] == pytest.approx(th.frequency_hz, rel=0.15)


@pytest.mark.slow
def test_brunel_ai_and_si_vs_theory():
    """N_E = 2500, C_E = 1000, 400 ms: at the AI point the population rate rings the damped
    mode of the stable asynchronous state (coherence < 1.5, frequency of the leading eigenvalue)
    and the rate is the self-consistent one; at the fast SI point the oscillation is sustained."""
    cfg = _config(2500, 400.0)
    ai = simulate_state(cfg, jax.random.key(4), 5.0, 2.0)
    th = brunel_stability(g=5.0, eta=2.0)
    assert ai["coherence"] < 1.5 and ai["cv"] > 0.3
    assert ai["freq"] == pytest.approx(th.frequency_hz, rel=0.25)
    assert ai["rate"] == pytest.approx(th.rate_hz, rel=0.05)
    si = simulate_state(cfg, jax.random.key(5), 6.0, 4.0)
    assert si["coherence"] >= 1.5 and si["coherence"] > 2 * ai["coherence"]
    assert _classify(ai["cv"], ai["coherence"]) == "AI"
    assert _classify(si["cv"], si["coherence"]) == "SI"


def test_rate_autocorrelation_separates_damped_from_sustained_oscillations():
    rng = np.random.default_rng(0)
    dt, n, f = 0.5, 4000, 120.0  # ms, bins, Hz
    w = 2 * np.pi * f * 1e-3 * dt
    out = {}
    for name, gamma in (("damped", 250.0), ("sustained", 8.0)):  # decay rates, 1/s
        # AR(2) with poles r e^{+-iw}: autocorrelation ~ r^k cos(w k + phi), r = e^{-gamma dt}
        r = np.exp(-gamma * 1e-3 * dt)
        x = np.zeros(n)
        e = rng.normal(size=n)
        for k in range(2, n):
            x[k] = 2 * r * np.cos(w) * x[k - 1] - r * r * x[k - 2] + e[k]
        freq, coh, lags, acf = rate_autocorrelation(40.0 + x, dt)
        out[name] = (freq, coh, f / gamma)
        assert acf[0] == 1.0 and lags[1] == dt
    # a strongly damped mode has a broad spectral peak (below f for AR(2)); a sustained one a
    # sharp peak at f
    assert out["damped"][0] == pytest.approx(f, rel=0.25)
    assert out["sustained"][0] == pytest.approx(f, rel=0.03)
    assert out["damped"][1] == pytest.approx(out["damped"][2], rel=0.5) and out["damped"][1] < 1.5
    assert out["sustained"][1] > 5
    assert _classify(0.5, 0.6) == "AI" and _classify(0.01, 50.0) == "SR"
    assert _classify(0.6, 3.0) == "SI" and _classify(0.1, 0.5) == "AR"


def test_experiment_config_checks():
    from neurocircuits._core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"finite_size simulates n_e / 2 = 750"):
        Config(n_e=1500, C_E=1000, finite_size=True).check()
    with pytest.raises(ConfigError, match=r"t_transient must be at least 20 ms shorter"):
        Config(n_e=2000, C_E=1000, duration=100.0, t_transient=90.0, finite_size=False).check()
