r"""Fixed-step integrators: Euler, Euler–Maruyama, exponential Euler and RK4.

Integrators are stateless equinox modules. Each advances a system described by *terms* by one
step of size ``dt``:

.. math::

    dy = f(t, y)\,dt + b(t, y)\,dW_t ,\qquad f(t, y) = a \odot y + N(t, y)

where ``terms`` provides

* ``terms.drift(t, y, args)`` — :math:`f`, a pytree like ``y`` (required);
* ``terms.diffusion(t, y, args)`` — :math:`b`, diagonal noise, a pytree like ``y`` (optional;
  ``None`` or absent means deterministic);
* ``terms.linear(t, y, args)`` — :math:`a`, the diagonal linear part of the drift, a pytree like
  ``y`` or broadcastable to it (needed by :class:`ExponentialEuler` only).

:class:`Terms` wraps plain functions into such an object. Orders (measured in the tests against
exact solutions): Euler 1, RK4 4, exponential Euler 1 (exact for linear drift), Euler–Maruyama
strong order 1/2 (1 for additive noise), weak order 1.

References: Kloeden & Platen, *Numerical Solution of Stochastic Differential Equations* (1992);
Hochbruck & Ostermann, *Exponential integrators*, Acta Numerica 19 (2010).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

__all__ = [
    "AbstractIntegrator",
    "Euler",
    "EulerMaruyama",
    "ExponentialEuler",
    "RK4",
    "Terms",
    "gaussian_increments",
]


class Terms(eqx.Module):
    """Plain functions ``(t, y, args) -> pytree`` bundled as integrator terms."""

    drift: Callable[..., Any] = eqx.field(static=True)
    diffusion: Callable[..., Any] | None = eqx.field(static=True, default=None)
    linear: Callable[..., Any] | None = eqx.field(static=True, default=None)


def _axpy(a, x, y):
    """``y + a * x`` leafwise over pytrees (``a`` a scalar)."""
    return jax.tree.map(lambda xi, yi: yi + a * xi, x, y)


def gaussian_increments(key: jax.Array, like: Any, dt: Any) -> Any:
    """Independent Wiener increments ``sqrt(dt) * N(0, 1)`` shaped like the pytree ``like``."""
    leaves, treedef = jax.tree.flatten(like)
    keys = jax.random.split(key, len(leaves))
    draws = [
        jnp.sqrt(dt) * jax.random.normal(k, jnp.shape(leaf), jnp.result_type(leaf))
        for k, leaf in zip(keys, leaves)
    ]
    return jax.tree.unflatten(treedef, draws)


def _diffusion(terms, t, y, args):
    fn = getattr(terms, "diffusion", None)
    return None if fn is None else fn(t, y, args)


class AbstractIntegrator(eqx.Module):
    """One step ``y(t) -> y(t + dt)``; ``key`` is used only by stochastic schemes."""

    order: ClassVar[float]

    def step(self, terms, t, y, dt, args=None, *, key=None, dW=None):  # pragma: no cover
        raise NotImplementedError


class Euler(AbstractIntegrator):
    """Explicit Euler: :math:`y_{n+1} = y_n + f(t_n, y_n)\\,dt` (order 1). Ignores diffusion."""

    order: ClassVar[float] = 1.0

    def step(self, terms, t, y, dt, args=None, *, key=None, dW=None):
        return _axpy(dt, terms.drift(t, y, args), y)


class EulerMaruyama(AbstractIntegrator):
    r"""Euler–Maruyama: :math:`y_{n+1} = y_n + f\,dt + b \odot \Delta W`.

    Strong order 1/2 (1 when :math:`b` does not depend on :math:`y`), weak order 1. The Wiener
    increment :math:`\Delta W \sim \mathcal N(0, dt)` is drawn from ``key`` unless given as ``dW``
    (used to hold several step sizes to one Brownian path in convergence tests).
    """

    order: ClassVar[float] = 0.5

    def step(self, terms, t, y, dt, args=None, *, key=None, dW=None):
        drift = terms.drift(t, y, args)
        b = _diffusion(terms, t, y, args)
        y_new = _axpy(dt, drift, y)
        if b is None:
            return y_new
        if dW is None:
            if key is None:
                raise ValueError(
                    "EulerMaruyama.step needs `key` (or explicit increments `dW`) because the "
                    "terms have a diffusion part."
                )
            dW = gaussian_increments(key, y, dt)
        return jax.tree.map(lambda yn, bi, dwi: yn + bi * dwi, y_new, b, dW)


def _phi1(x):
    """:math:`(e^x - 1)/x`, continuous at 0."""
    small = jnp.abs(x) < 1e-6
    safe = jnp.where(small, 1.0, x)
    return jnp.where(small, 1.0 + 0.5 * x, jnp.expm1(safe) / safe)


class ExponentialEuler(AbstractIntegrator):
    r"""Exponential Euler for :math:`dy = (a \odot y + N(t,y))\,dt + b\,dW`.

    .. math::

        y_{n+1} = y_n + \varphi_1(a\,dt)\,dt\; f(t_n, y_n)
                  + b \odot \sqrt{\frac{e^{2 a\,dt} - 1}{2a}}\;\xi_n ,
        \qquad \varphi_1(x) = \frac{e^x - 1}{x}.

    Exact for linear drift with additive noise (the Ornstein–Uhlenbeck process); order 1 in
    general. It stays stable for ``dt`` larger than the fastest time constant, which is why
    leaky (``-y/tau``) models use it by default. Needs ``terms.linear``.
    """

    order: ClassVar[float] = 1.0

    def step(self, terms, t, y, dt, args=None, *, key=None, dW=None):
        linear = getattr(terms, "linear", None)
        if linear is None:
            raise ValueError(
                "ExponentialEuler needs `terms.linear(t, y, args)` (the diagonal linear part of "
                "the drift); use Euler or RK4 for terms without one."
            )
        a = linear(t, y, args)
        drift = terms.drift(t, y, args)
        same = jax.tree.structure(a) == jax.tree.structure(y)
        a_tree = a if same else jax.tree.map(lambda _: a, y)
        y_new = jax.tree.map(lambda yi, fi, ai: yi + _phi1(ai * dt) * dt * fi, y, drift, a_tree)
        b = _diffusion(terms, t, y, args)
        if b is None:
            return y_new
        if dW is None:
            if key is None:
                raise ValueError("ExponentialEuler.step needs `key` when there is a diffusion part.")
            dW = gaussian_increments(key, y, dt)
        # exact OU variance over the step: dW/sqrt(dt) is a unit normal
        return jax.tree.map(
            lambda yn, bi, ai, dwi: yn
            + bi * jnp.sqrt(_phi1(2 * ai * dt)) * dwi,
            y_new,
            b,
            a_tree,
            dW,
        )


class RK4(AbstractIntegrator):
    """Classical fourth-order Runge–Kutta (order 4). Ignores diffusion."""

    order: ClassVar[float] = 4.0

    def step(self, terms, t, y, dt, args=None, *, key=None, dW=None):
        f = terms.drift
        k1 = f(t, y, args)
        k2 = f(t + dt / 2, _axpy(dt / 2, k1, y), args)
        k3 = f(t + dt / 2, _axpy(dt / 2, k2, y), args)
        k4 = f(t + dt, _axpy(dt, k3, y), args)
        incr = jax.tree.map(lambda a, b, c, d: (a + 2 * b + 2 * c + d) / 6, k1, k2, k3, k4)
        return _axpy(dt, incr, y)
