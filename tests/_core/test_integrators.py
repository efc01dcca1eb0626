"""Integrators: measured convergence orders against exact solutions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from neurocircuits import RK4, Euler, EulerMaruyama, ExponentialEuler, Terms
from neurocircuits._core.integrators import gaussian_increments
from tolerances import TOL


def _forced_decay():
    """dy/dt = -y + sin t, y(0) = 1; exact y = (sin t - cos t)/2 + 1.5 e^{-t}."""
    terms = Terms(drift=lambda t, y, a: -y + jnp.sin(t), linear=lambda t, y, a: -1.0)
    exact = lambda t: (np.sin(t) - np.cos(t)) / 2 + 1.5 * np.exp(-t)  # noqa: E731
    return terms, exact


def _integrate(integrator, terms, y0, t_end, n, key=None, dW=None):
    dt = t_end / n

    def body(carry, i):
        t, y = carry
        kwargs = {}
        if dW is not None:
            kwargs["dW"] = dW[i]
        elif key is not None:
            kwargs["key"] = jax.random.fold_in(key, i)
        return (t + dt, integrator.step(terms, t, y, dt, None, **kwargs)), None

    (t, y), _ = jax.lax.scan(body, (jnp.asarray(0.0), y0), jnp.arange(n))
    return y


def _fitted_order(dts, errors):
    return np.polyfit(np.log(dts), np.log(errors), 1)[0]


@pytest.mark.parametrize("integrator, expected", [
    (Euler(), 1.0), (RK4(), 4.0), (ExponentialEuler(), 1.0), (EulerMaruyama(), 1.0)])
def test_deterministic_order(x64, integrator, expected):
    terms, exact = _forced_decay()
    ns = np.array([16, 32, 64, 128])
    errors = [abs(float(_integrate(integrator, terms, jnp.asarray(1.0), 2.0, int(n)))
                  - exact(2.0)) for n in ns]
    order = _fitted_order(2.0 / ns, errors)
    assert abs(order - expected) < TOL["order_fit"] * expected, (order, errors)


def test_exponential_euler_is_exact_for_linear_decay(x64):
    terms = Terms(drift=lambda t, y, a: -0.7 * y, linear=lambda t, y, a: -0.7)
    y = _integrate(ExponentialEuler(), terms, jnp.asarray(2.0), 3.0, 3)  # dt = 1 >> nothing
    assert abs(float(y) - 2.0 * np.exp(-2.1)) < 1e-12


def test_exponential_euler_ou_variance_is_exact_for_any_dt(x64):
    """OU dX = -X dt + s dW: Var X_t = s^2/2 (1 - e^{-2t}) even with dt = 0.5."""
    s = 0.8
    terms = Terms(drift=lambda t, y, a: -y, diffusion=lambda t, y, a: s * jnp.ones_like(y),
                  linear=lambda t, y, a: -1.0)
    paths = 40_000
    y = _integrate(ExponentialEuler(), terms, jnp.zeros(paths), 2.0, 4, key=jax.random.key(0))
    var_exact = s**2 / 2 * (1 - np.exp(-4.0))
    se = var_exact * np.sqrt(2 / paths)
    assert abs(float(jnp.var(y)) - var_exact) < 4 * se
    # plain Euler–Maruyama at the same dt is visibly biased (the test can tell them apart)
    y_em = _integrate(EulerMaruyama(), terms, jnp.zeros(paths), 2.0, 4, key=jax.random.key(0))
    assert abs(float(jnp.var(y_em)) - var_exact) > 10 * se


def _brownian(key, paths, n_fine, t_end):
    return gaussian_increments(key, jnp.zeros((n_fine, paths)), t_end / n_fine)


def test_euler_maruyama_strong_order_half_multiplicative(x64):
    """GBM: exact X_T = exp((mu - s^2/2) T + s W_T) for the same Brownian path."""
    mu, s, t_end, paths, n_fine = 0.5, 1.0, 1.0, 4000, 512
    terms = Terms(drift=lambda t, y, a: mu * y, diffusion=lambda t, y, a: s * y)
    dw_fine = _brownian(jax.random.key(1), paths, n_fine, t_end)
    exact = np.exp((mu - s**2 / 2) * t_end + s * np.asarray(dw_fine.sum(0)))
    ns, errors = [16, 32, 64, 128], []
    for n in ns:
        dW = dw_fine.reshape(n, n_fine // n, paths).sum(1)
        y = _integrate(EulerMaruyama(), terms, jnp.ones(paths), t_end, n, dW=dW)
        errors.append(float(np.mean(np.abs(np.asarray(y) - exact))))
    order = _fitted_order(t_end / np.array(ns), errors)
    assert abs(order - 0.5) < TOL["order_fit"], (order, errors)


def test_euler_maruyama_strong_order_one_additive(x64):
    """OU with additive noise: strong order 1, against a fine-grid solution on the same path."""
    s, t_end, paths, n_fine = 0.5, 1.0, 2000, 4096
    terms = Terms(drift=lambda t, y, a: -2.0 * y + jnp.cos(3 * t),
                  diffusion=lambda t, y, a: s * jnp.ones_like(y))
    dw_fine = _brownian(jax.random.key(2), paths, n_fine, t_end)
    ref = _integrate(EulerMaruyama(), terms, jnp.ones(paths), t_end, n_fine, dW=dw_fine)
    ns, errors = [16, 32, 64, 128], []
    for n in ns:
        dW = dw_fine.reshape(n, n_fine // n, paths).sum(1)
        y = _integrate(EulerMaruyama(), terms, jnp.ones(paths), t_end, n, dW=dW)
        errors.append(float(np.sqrt(np.mean((np.asarray(y) - np.asarray(ref)) ** 2))))
    order = _fitted_order(t_end / np.array(ns), errors)
    assert abs(order - 1.0) < TOL["order_fit"], (order, errors)


def test_integrators_work_on_pytrees(x64):
    terms = Terms(drift=lambda t, y, a: {"x": y["v"], "v": -y["x"]})
    y = _integrate(RK4(), terms, {"x": jnp.asarray(1.0), "v": jnp.asarray(0.0)}, np.pi, 200)
    assert abs(float(y["x"]) + 1.0) < 1e-8 and abs(float(y["v"])) < 1e-8


def test_stochastic_step_without_key_is_a_clear_error():
    terms = Terms(drift=lambda t, y, a: -y, diffusion=lambda t, y, a: jnp.ones_like(y))
    with pytest.raises(ValueError, match="key"):
        EulerMaruyama().step(terms, 0.0, jnp.zeros(3), 0.1)
    with pytest.raises(ValueError, match="linear"):
        ExponentialEuler().step(Terms(drift=lambda t, y, a: -y), 0.0, jnp.zeros(3), 0.1)
