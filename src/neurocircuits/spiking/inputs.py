r"""External inputs of a spiking network, composed as a tuple field of the network.

* :class:`DC` -- a constant current (pA).
* :class:`PoissonInput` -- ``n_sources`` independent Poisson trains of ``rate`` Hz per neuron
  into a receptor, each spike of weight ``weight`` (the receptor's unit); the summed count per
  step is drawn directly, :math:`\mathrm{Poisson}(n\,\nu\,dt)`.
* :class:`NoiseInput` -- a Gaussian current: white, :math:`I = \mu + \sigma\,\xi(t)` with
  :math:`\sigma` in pA ms^1/2 (``tau=None``), or Ornstein--Uhlenbeck,
  :math:`\tau \dot I = \mu - I + \sigma\sqrt{2\tau}\,\xi(t)` with stationary s.d.
  :math:`\sigma` in pA (updated exactly).
* :class:`Stimulus` -- a current ``amplitude`` (pA) into chosen cells during ``[start, stop)``.

Anything time-varying beyond these goes through the ``inputs`` argument of
:func:`~neurocircuits.simulate` (a current in pA, scalar or ``(N,)``, or a function of time).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._core.errors import NeurocircuitsError, describe
from .lif import _arr, _check

__all__ = ["DC", "PoissonInput", "NoiseInput", "Stimulus", "white_noise_for_lif"]


class DC(eqx.Module):
    """A constant current ``amplitude`` (pA, scalar or ``(N,)``)."""

    amplitude: jax.Array

    def __init__(self, amplitude=0.0):
        self.amplitude = _arr(amplitude)

    def __check_init__(self):
        _check(self.amplitude, "DC.amplitude", unit="pA")


class PoissonInput(eqx.Module):
    """``n_sources`` Poisson trains of ``rate`` (Hz) per neuron into receptor ``receptor``.

    Args:
        rate: rate of each source (Hz, >= 0), scalar or ``(N,)``.
        n_sources: number of sources per neuron (>= 0), scalar or ``(N,)``.
        weight: weight of each input spike (nS, pA or mV, the receptor's unit).
        receptor: index of the receptor in the network's ``receptors``.
    """

    rate: jax.Array
    n_sources: jax.Array
    weight: jax.Array
    receptor: int = eqx.field(static=True)

    def __init__(self, rate, n_sources=1, weight=1.0, receptor=0):
        self.rate, self.n_sources, self.weight = _arr(rate), _arr(n_sources), _arr(weight)
        if isinstance(receptor, bool) or not isinstance(receptor, (int, np.integer)):
            raise NeurocircuitsError(f"PoissonInput.receptor must be an int index, got {receptor!r}.")
        self.receptor = int(receptor)

    def __check_init__(self):
        _check(self.rate, "PoissonInput.rate", low=0.0, strict=False, unit="Hz")
        _check(self.n_sources, "PoissonInput.n_sources", low=0.0, strict=False)
        _check(self.weight, "PoissonInput.weight")

    def sample(self, key, n, dt):
        lam = jnp.broadcast_to(self.rate * self.n_sources * dt * 1e-3, (n,))
        return self.weight * jax.random.poisson(key, lam, (n,)).astype(jnp.float32)


class NoiseInput(eqx.Module):
    """A Gaussian current: white (``tau=None``; ``sigma`` in pA ms^1/2) or OU (``tau`` in ms;
    ``sigma`` = stationary s.d. in pA). ``mean`` in pA. All scalars or ``(N,)``."""

    mean: jax.Array
    sigma: jax.Array
    tau: jax.Array | None = None

    def __init__(self, mean=0.0, sigma=0.0, tau=None):
        self.mean, self.sigma = _arr(mean), _arr(sigma)
        self.tau = None if tau is None else _arr(tau)

    def __check_init__(self):
        _check(self.mean, "NoiseInput.mean", unit="pA")
        _check(self.sigma, "NoiseInput.sigma", low=0.0, strict=False)
        if self.tau is not None:
            _check(self.tau, "NoiseInput.tau", low=0.0, unit="ms")

    @property
    def is_white(self) -> bool:
        return self.tau is None

    def init_state(self, n):
        return jnp.broadcast_to(self.mean, (n,)).astype(jnp.float32)

    def step_ou(self, I, key, dt):
        e = jnp.exp(-dt / self.tau)
        return self.mean + (I - self.mean) * e + self.sigma * jnp.sqrt(1 - e * e) * \
            jax.random.normal(key, I.shape)


class Stimulus(eqx.Module):
    """A current ``amplitude`` (pA) into ``cells`` (indices) during ``[start, stop)`` (ms)."""

    cells: jax.Array
    amplitude: jax.Array
    start: jax.Array
    stop: jax.Array

    def __init__(self, cells, amplitude, start=0.0, stop=float("inf")):
        self.cells = jnp.asarray(cells, jnp.int32)
        self.amplitude, self.start, self.stop = _arr(amplitude), _arr(start), _arr(stop)

    def __check_init__(self):
        if np.ndim(self.cells) != 1:
            raise NeurocircuitsError(f"Stimulus.cells must be a 1-d index array, got "
                                     f"{describe(self.cells)}.")
        _check(self.amplitude, "Stimulus.amplitude", unit="pA")

    def current(self, t, n):
        on = (t >= self.start) & (t < self.stop)
        return jnp.zeros((n,), jnp.float32).at[self.cells].add(jnp.where(on, self.amplitude, 0.0))


def white_noise_for_lif(neuron, mu, sigma) -> NoiseInput:
    r"""The white-noise current that gives a LIF neuron the free membrane potential
    :math:`\tau_m \dot V = -(V - \mu) + \sigma\sqrt{\tau_m}\,\xi(t)` (the diffusion of Siegert's
    formula): mean ``g_L (mu - E_L)`` pA, intensity ``g_L sigma sqrt(tau_m)`` pA ms^1/2.
    ``mu`` (mV, absolute) and ``sigma`` (mV) are scalars or ``(N,)``."""
    g_L, tau = neuron.g_L, neuron.C / neuron.g_L
    return NoiseInput(mean=g_L * (_arr(mu) - neuron.E_L), sigma=g_L * _arr(sigma) * jnp.sqrt(tau))
