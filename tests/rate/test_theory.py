"""DMFT of the random rate network (neurocircuits.rate.theory): exact limits, the ODE and energy
conditions, the static fixed point, and theory vs simulation of the SCS network."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.polynomial.legendre import leggauss
from scipy import integrate

import neurocircuits as nc
from neurocircuits._core.errors import NeurocircuitsError
from neurocircuits.rate import RateNetwork, one_plus_tanh, tanh
from neurocircuits.rate.theory import DMFTResult, delta0_curve, dmft, dmft_solve


def _quad(f):
    """E[f(z)], z ~ N(0, 1), by adaptive quadrature (independent of the library's)."""
    return integrate.quad(lambda z: f(z) * np.exp(-z * z / 2) / np.sqrt(2 * np.pi), -12, 12,
                          limit=400, epsabs=1e-13)[0]


def _gauss(f, mu, var):
    """E[f(mu + sqrt(var) z)]."""
    return _quad(lambda z: f(mu + np.sqrt(var) * z))


# --- (1) the SCS transition ------------------------------------------------------------------
@pytest.mark.parametrize("g", [0.0, 0.5, 0.9])
def test_scs_zero_solution_below_one(g):
    res = dmft_solve(g)
    assert res.kind == "zero"
    assert res.delta0 == 0.0 and res.delta_inf == 0.0
    assert res.converged
    np.testing.assert_array_equal(res.delta, 0.0)


def test_scs_chaos_above_one_grows_linearly_from_zero():
    gs = np.array([1.01, 1.03, 1.5, 2.0, 2.5, 3.0])
    curve = delta0_curve(gs)
    assert curve.all_converged
    assert list(curve.kind) == ["chaotic"] * len(gs)
    assert np.all(np.diff(curve.delta0) > 0)
    np.testing.assert_allclose(curve.delta_inf, 0.0, atol=1e-12)
    # onset: Delta0 = (g^2 - 1) / (2 g^2) + O((g-1)^2) ~ g - 1
    np.testing.assert_allclose(curve.delta0[:2] / (gs[:2] - 1), 1.0, rtol=0.05)
    # the autocorrelation time diverges at the transition
    assert np.all(np.diff(curve.autocorrelation_time) < 0)
    assert curve.autocorrelation_time[0] > 10 * curve.autocorrelation_time[-1]


@pytest.mark.parametrize("g", [1.5, 3.0])
def test_scs_delta0_matches_log_cosh_energy_condition(g):
    # independent route for tanh, mu = 0 (Delta_inf = 0): with Phi = log cosh,
    # -Delta0^2/2 + g^2 (E[Phi^2] - E[Phi]^2) = 0, by adaptive quadrature.
    d0 = dmft_solve(g).delta0
    lc = lambda u: np.logaddexp(u, -u) - np.log(2.0)  # noqa: E731
    a = _quad(lambda z: lc(np.sqrt(d0) * z) ** 2)
    b = _quad(lambda z: lc(np.sqrt(d0) * z))
    assert abs(-d0**2 / 2 + g * g * (a - b * b)) < 1e-8 * d0**2


# --- (2) the curve solves the ODE and the energy condition ----------------------------------
def _ode_and_energy_checks(res: DMFTResult, step: float):
    d = res.delta
    # Delta'' = Delta - g^2 C(Delta; Delta0) for s > 0
    d2 = (d[2:] - 2 * d[1:-1] + d[:-2]) / step**2
    rhs = d[1:-1] - res.g**2 * res.correlation(d[1:-1])
    scale = max(1.0, res.delta0)
    np.testing.assert_allclose(d2, rhs, atol=2e-4 * scale)
    # Delta(0) = Delta0, Delta'(0+) = -sigma^2/2, monotone decay to Delta_inf
    assert d[0] == pytest.approx(res.delta0, rel=1e-10)
    slope0 = (-3 * d[0] + 4 * d[1] - d[2]) / (2 * step)
    assert slope0 == pytest.approx(-res.sigma**2 / 2, abs=1e-3 * scale)
    assert np.all(np.diff(d) <= 1e-12)
    assert d[-1] - res.delta_inf < 0.01 * (res.delta0 - res.delta_inf)
    # Delta_inf = g^2 C(Delta_inf), a maximum of V (decay rate > 0)
    assert res.g**2 * res.correlation([res.delta_inf])[0] == pytest.approx(
        res.delta_inf, abs=1e-8 * scale)
    assert res.decay_rate > 0
    # ... approached as exp(-decay_rate * s)
    tail = np.log(d[-500:] - res.delta_inf)
    assert -(tail[-1] - tail[0]) / (499 * step) == pytest.approx(res.decay_rate, rel=0.02)
    # energy: V(Delta0) + (sigma^2/2)^2 / 2 = V(Delta_inf), V = -D^2/2 + g^2 int_0^D C
    x, w = leggauss(60)
    dd = res.delta_inf + 0.5 * (res.delta0 - res.delta_inf) * (x + 1)
    v_diff = (-(res.delta0**2 - res.delta_inf**2) / 2
              + res.g**2 * 0.5 * (res.delta0 - res.delta_inf) * np.sum(w * res.correlation(dd)))
    assert v_diff + res.sigma**4 / 8 == pytest.approx(0.0, abs=1e-8 * scale**2)
    # the half-decay lag is where the normalised curve crosses 1/2
    r = res.normalized()
    k = int(np.argmax(r <= 0.5))
    assert res.lags[k - 1] <= res.autocorrelation_time <= res.lags[k]


@pytest.mark.parametrize(
    "g, phi, mu, sigma",
    [
        (2.0, tanh, 0.0, 0.0),           # SCS chaos
        (2.5, one_plus_tanh, -1.0, 0.0),  # chaos around a quenched offset (Delta_inf > 0)
        (1.5, tanh, 0.0, 0.7),           # noise + coupling
    ],
)
def test_curve_solves_ode_and_energy_condition(g, phi, mu, sigma):
    step = 0.01
    res = dmft_solve(g, phi, mu=mu, sigma=sigma, lags=np.arange(0.0, 30.0, step))
    assert res.converged and res.residual < 1e-8
    assert res.kind == ("noisy" if sigma else "chaotic")
    if mu != 0.0:
        assert res.delta_inf > 0.5 * res.delta0
    _ode_and_energy_checks(res, step)


# --- (3) the static solution ----------------------------------------------------------------
_NP = {  # NumPy phi and phi' for the independent checks
    tanh: (np.tanh, lambda u: 1.0 - np.tanh(u) ** 2),
    one_plus_tanh: (lambda u: 1.0 + np.tanh(u), lambda u: 1.0 - np.tanh(u) ** 2),
}


@pytest.mark.parametrize(
    "g, phi, mu",
    [(1.5, one_plus_tanh, 0.0), (2.0, one_plus_tanh, -1.0), (0.8, tanh, 0.5),
     (3.0, one_plus_tanh, 2.0)],
)
def test_static_solution_matches_fixed_point_iteration(g, phi, mu):
    f, df = _NP[phi]
    d = new = 0.0
    for _ in range(500):
        new = g * g * _gauss(lambda u: f(u) ** 2, mu, d)
        if abs(new - d) < 1e-12:
            break
        d = 0.5 * (d + new)  # damped: converges for |slope| < 1 either side
    d = new
    assert g * g * _gauss(lambda u: df(u) ** 2, mu, d) < 1  # a stable fixed point
    res = dmft_solve(g, phi, mu=mu)
    assert res.kind == "static" and res.converged
    assert res.delta0 == pytest.approx(d, rel=1e-8)
    assert res.delta_inf == res.delta0
    np.testing.assert_array_equal(res.delta, res.delta0)
    assert np.isnan(res.autocorrelation_time)
    assert res.mean_rate == pytest.approx(_gauss(f, mu, d), rel=1e-8)


def test_numpy_phi_gives_the_same_answer():
    a = dmft_solve(1.5, one_plus_tanh, mu=-0.5)
    b = dmft_solve(1.5, lambda u: 1.0 + np.tanh(np.asarray(u)), mu=-0.5)
    assert b.delta0 == pytest.approx(a.delta0, rel=1e-10)


# --- (4) theory vs simulation (SCS, g = 2) -------------------------------------------------
def _autocorrelation(x, max_k):
    """<x_i(t) x_i(t+k)> averaged over neurons and t (unbiased), x of shape (T, N)."""
    t = x.shape[0]
    f = np.fft.rfft(x, n=2 * t, axis=0)
    a = np.fft.irfft(f * np.conj(f), axis=0)[:max_k].mean(axis=1)
    return a / (t - np.arange(max_k))


def _half_time(a, step):
    r = a / a[0]
    k = int(np.argmax(r <= 0.5))
    return step * (k - 1 + (r[k - 1] - 0.5) / (r[k - 1] - r[k]))


@pytest.fixture(scope="module")
def scs_simulation():
    """N = 1000, g = 2, tau = 1: 4 networks, 50 tau transient, 300 tau recorded every 0.2 tau."""
    n, g, dt, every = 1000, 2.0, 0.1, 2
    d0s, acfs = [], []
    for seed in range(4):
        k1, k2, k3, k4 = jax.random.split(jax.random.key(seed), 4)
        net = RateNetwork.random(k1, n, g=g, phi=tanh, tau=1.0)
        warm = nc.simulate(net, net.initial_state(k2), dt=dt, n_steps=500, key=k3)
        traj = nc.simulate(net, warm.final_state, dt=dt, n_steps=3000, key=k4,
                           record=nc.Record(every=every))
        x = np.asarray(traj.ys, dtype=np.float64)
        d0s.append(np.mean(x**2))
        acfs.append(_autocorrelation(x, 150))
    return dict(g=g, lag_step=dt * every, delta0=float(np.mean(d0s)),
                acf=np.mean(acfs, axis=0))


def test_dmft_delta0_matches_simulation(scs_simulation):
    res = dmft_solve(scs_simulation["g"])
    assert res.delta0 == pytest.approx(scs_simulation["delta0"], rel=0.05)


def test_dmft_autocorrelation_matches_simulation(scs_simulation):
    step = scs_simulation["lag_step"]
    acf = scs_simulation["acf"]
    res = dmft_solve(scs_simulation["g"], lags=step * np.arange(acf.size))
    assert res.autocorrelation_time == pytest.approx(_half_time(acf, step), rel=0.15)
    # and the whole normalised curve
    np.testing.assert_allclose(acf / acf[0], res.normalized(), atol=0.12)  # finite N = 1000


# --- (5) noise only: Ornstein-Uhlenbeck -----------------------------------------------------
@pytest.mark.parametrize("sigma", [0.3, 1.4])
def test_noise_only_is_ornstein_uhlenbeck(sigma):
    lags = np.linspace(0.0, 25.0, 251)
    res = dmft_solve(0.0, sigma=sigma, lags=lags)
    assert res.kind == "noisy" and res.converged
    np.testing.assert_allclose(res.delta, sigma**2 / 2 * np.exp(-lags), rtol=1e-7, atol=1e-15)
    assert res.delta0 == pytest.approx(sigma**2 / 2, rel=1e-10)
    assert res.autocorrelation_time == pytest.approx(np.log(2.0), rel=1e-8)
    assert res.decay_rate == pytest.approx(1.0, rel=1e-8)


# --- the model entry point --------------------------------------------------------------------
def test_dmft_of_a_model_uses_its_parameters_and_ms():
    tau = 10.0
    net = RateNetwork.random(jax.random.key(0), 30, g=1.5, phi=tanh, tau=tau, bias=0.2,
                             sigma=0.5)
    lags_ms = np.array([0.0, 5.0, 20.0, 80.0])
    res = dmft(net, lags=lags_ms)
    # (the model stores its parameters in float32)
    ref = dmft_solve(float(net.coupling.g), tanh, mu=float(net.bias), sigma=float(net.sigma),
                     lags=lags_ms / tau)
    assert res.time_unit == "ms" and res.tau == tau
    np.testing.assert_array_equal(res.lags, lags_ms)
    np.testing.assert_allclose(res.delta, ref.delta, rtol=1e-12)
    assert res.delta0 == pytest.approx(ref.delta0, rel=1e-12)
    assert res.autocorrelation_time == pytest.approx(tau * ref.autocorrelation_time, rel=1e-12)
    assert res.decay_rate == pytest.approx(ref.decay_rate / tau, rel=1e-12)
    assert dmft(net, mu=0.0).mu == 0.0
    default = dmft(net)
    assert default.lags[-1] == pytest.approx(20 * tau)


# --- (6) bad input ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(g=-1.0), "g must be >= 0"),
        (dict(g=float("nan")), "g must be finite"),
        (dict(g=2.0, sigma=-0.1), "sigma must be >= 0"),
        (dict(g=2.0, mu=float("inf")), "mu must be finite"),
        (dict(g=2.0, phi="tanh"), "phi must be a callable"),
        (dict(g=2.0, phi=lambda u: jnp.log(u)), "phi returned non-finite"),
        (dict(g=2.0, phi=lambda u: jnp.sum(u)), "phi must act elementwise"),
        (dict(g=np.array([1.0, 2.0])), "g must be a scalar"),
        (dict(g=2.0, lags=np.array([0.0, -1.0])), "lags must be finite and >= 0"),
        (dict(g=2.0, lags=np.zeros((2, 2))), "lags must be a non-empty 1-d array"),
        (dict(g=2.0, max_lag=0.0), "max_lag must be > 0"),
    ],
)
def test_dmft_solve_rejects_bad_input(kwargs, match):
    g = kwargs.pop("g")
    with pytest.raises(NeurocircuitsError, match=match):
        dmft_solve(g, **kwargs)


def test_dmft_rejects_unsupported_models():
    key = jax.random.key(0)
    with pytest.raises(NeurocircuitsError, match="RateNetwork"):
        dmft("not a model")
    dense = RateNetwork(jnp.eye(4), phi=tanh)
    with pytest.raises(NeurocircuitsError, match="GaussianPlusMean coupling"):
        dmft(dense)
    balanced = RateNetwork.random(key, 20, g=2.0, J0=1.0, phi=one_plus_tanh)
    with pytest.raises(NeurocircuitsError, match="mean part"):
        dmft(balanced)
    assert dmft(balanced, ignore_mean_part=True).g == pytest.approx(2.0)
    uneven = RateNetwork.random(key, 20, g=2.0, phi=tanh, bias=jnp.linspace(0, 1, 20))
    with pytest.raises(NeurocircuitsError, match="bias is not uniform"):
        dmft(uneven)
    assert dmft(uneven, mu=0.5).mu == 0.5
    with pytest.raises(NeurocircuitsError, match="gs must be a non-empty 1-d array"):
        delta0_curve(2.0)
