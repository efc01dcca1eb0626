"""Macroscopic-field theory of E/I rate networks: the loop filter against direct integration,
and the predictions against simulation at small size."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import quad

import neurocircuits as nc
from neurocircuits.rate import RateNetwork, one_plus_tanh
from neurocircuits.rate.macroscopic import closed_loop_variance, macroscopic_fluctuations


@pytest.mark.parametrize("gain", [0.0, 0.6, -2.0, -15.0])
def test_closed_loop_variance_matches_frequency_integral(gain):
    """Input autocovariance e^{-|s|/tc}: spectrum 2 tc / (1 + w^2 tc^2)."""
    tc, step = 1.7, 0.02
    lags = np.arange(0, 60, step)
    numeric = closed_loop_variance(np.exp(-lags / tc), step, gain)

    def integrand(w):
        spec = 2 * tc / (1 + (w * tc) ** 2)
        return spec * abs((1 + 1j * w) / (1 + 1j * w - gain)) ** 2 / (2 * math.pi)

    exact = 2 * quad(integrand, 0, np.inf, limit=400)[0]
    assert numeric == pytest.approx(exact, rel=2e-2)
    if gain == 0.0:
        assert numeric == pytest.approx(1.0, rel=1e-9)


def _simulate_field(n, gamma, bias, seeds, key, t_measure=3000.0):
    keys = jax.random.split(key, seeds)
    nets = eqx.filter_vmap(lambda k: RateNetwork.random(k, n, g=3.0, J0=1.0, f=0.8,
                                                        gamma=gamma, tau=10.0, bias=bias))(keys)
    s = nets.coupling.signs[0]
    rec = nc.Record(every=10, fn=lambda u, t: {
        "h": jnp.sum(s * one_plus_tanh(u)) / jnp.sqrt(n),
        "K": jnp.sum(s * (1 - jnp.tanh(u) ** 2)) / jnp.sqrt(n)})
    steps = int(1000 + t_measure)
    tr = nc.simulate(nets, jax.random.normal(jax.random.fold_in(key, 1), (seeds, n)), dt=1.0,
                     n_steps=steps, key=jax.random.split(jax.random.fold_in(key, 2), seeds),
                     record=rec, batch=nc.Batch(model=True))
    h = np.asarray(tr.ys["h"])[:, 100:]
    return h.std(1), h.mean(1), np.asarray(tr.ys["K"])[:, 100:].mean(1)


def test_inhibition_dominated_field_matches_simulation():
    """N = 1000, gamma = 5, I = 0.2 sqrt(N): the balanced operating point, the size of the static
    field, the loop gain and the filtered fluctuations."""
    n = 1000
    bias = 0.2 * math.sqrt(n)
    pred = macroscopic_fluctuations(g=3.0, J0=1.0, f=0.8, gamma=5.0, n=n, bias=bias, n_grid=11)
    assert pred.converged
    std, mean, gain = _simulate_field(n, 5.0, bias, 8, jax.random.key(3))
    assert np.sqrt(np.mean(mean**2)) == pytest.approx(pred.h_mean_rms, rel=0.05)
    assert np.mean(gain) == pytest.approx(pred.gain_mean, abs=0.5)
    # at this size some networks fall into a fixed point (std ~ 0): the theory describes the
    # chaotic state, so it is held against the chaotic realisations
    chaotic = std > 0.05
    assert chaotic.sum() >= 4
    assert np.mean(std[chaotic]) == pytest.approx(pred.h_std, rel=0.35)
    # the loop suppresses the open-loop fluctuations by more than half at this size
    assert pred.h_std < 0.5 * pred.h_std_open_loop


def test_critical_field_prediction_is_size_independent_and_selects_negative_gain():
    a = macroscopic_fluctuations(g=3.0, J0=1.0, f=0.8, gamma=4.0, n=1000, n_grid=11)
    b = macroscopic_fluctuations(g=3.0, J0=1.0, f=0.8, gamma=4.0, n=64000, n_grid=11)
    assert a.h_std == pytest.approx(b.h_std, rel=1e-6)
    assert a.gain_mean < -0.1  # Kac–Rice: stable crossings favour negative slopes
    assert 0.1 < a.h_std < a.h_std_open_loop


def test_bad_input():
    with pytest.raises(nc.NeurocircuitsError, match="f must lie in"):
        macroscopic_fluctuations(g=3.0, J0=1.0, f=1.2, gamma=4.0, n=100)
    with pytest.raises(nc.NeurocircuitsError, match="gamma"):
        macroscopic_fluctuations(g=3.0, J0=1.0, f=0.8, gamma=-1.0, n=100)
    with pytest.raises(nc.NeurocircuitsError, match="n must be an integer"):
        macroscopic_fluctuations(g=3.0, J0=1.0, f=0.8, gamma=4.0, n=1.5)
    with pytest.raises(nc.NeurocircuitsError, match="silent or saturated"):
        macroscopic_fluctuations(g=3.0, J0=1.0, f=0.8, gamma=5.0, n=10000, bias=-500.0)


def test_modular_theory_with_one_module_reduces_to_the_single_population_theory():
    from neurocircuits.rate.macroscopic import modular_fluctuations

    one = macroscopic_fluctuations(g=3.0, J0=1.0, f=0.8, gamma=4.0, n=4000)
    mod = modular_fluctuations(g=3.0, J0=[[1.0]], sizes=[4000], n_samples=3000, seed=1)
    assert mod.converged
    # importance sampling vs quadrature of the same Kac–Rice average
    assert mod.field_std[0] == pytest.approx(one.h_std, rel=0.1)


def test_modular_theory_orders_within_above_between_and_rejects_bad_input():
    from neurocircuits.rate.macroscopic import modular_fluctuations

    j0 = np.full((3, 3), 0.2)
    np.fill_diagonal(j0, 1.0)
    p = modular_fluctuations(g=3.0, J0=j0, sizes=[500] * 3, n_samples=800)
    assert np.all(p.within_corr > np.nanmax(p.between_corr))
    with pytest.raises(nc.NeurocircuitsError, match="singular"):
        modular_fluctuations(g=3.0, J0=np.ones((2, 2)), sizes=[100, 100])
    with pytest.raises(nc.NeurocircuitsError, match=r"\(2, 2\) matrix"):
        modular_fluctuations(g=3.0, J0=np.eye(3), sizes=[100, 100])
