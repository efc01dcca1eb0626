r"""Exponential integrate-and-fire (EIF) neurons and the adaptive EIF (AdEx).

.. math::

    C\,\frac{dV}{dt} = -g_L (V - E_L) + g_L \Delta_T\, e^{(V - V_T)/\Delta_T}
                       + \sum_r g_r (E_r - V) + I - w ,
    \qquad V \ge V_{peak} \Rightarrow V \to V_r ,

with the optional adaptation :math:`\tau_w \dot w = a(V - E_L) - w`, :math:`w \to w + b` at
spikes (:func:`AdEx`). Integrated with exponential Euler (the exponential current held over the
step), which is exact for the linear part. Units: ms, mV, pF, nS, pA.

References:
    Fourcaud-Trocmé, Hansel, van Vreeswijk & Brunel, J. Neurosci. 23, 11628 (2003);
    Brette & Gerstner, J. Neurophysiol. 94, 3637 (2005).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._core.errors import NeurocircuitsError, describe
from ._drive import Drive
from .lif import Adaptation, IFState, _arr, _check, if_update

__all__ = ["EIF", "AdEx"]


class EIF(eqx.Module):
    r"""Exponential integrate-and-fire neurons (scalars or arrays ``(N,)``).

    Args:
        C: capacitance (pF). g_L: leak (nS). E_L: leak reversal (mV).
        V_T: soft threshold (mV). delta_T: slope factor (mV, > 0).
        V_peak: spike cut-off (mV), > V_T. V_reset: reset (mV). t_ref: refractory period (ms).
        adaptation: :class:`~neurocircuits.spiking.Adaptation` or ``None``.

    Defaults are the AdEx values of Brette & Gerstner (2005): C = 281 pF, g_L = 30 nS,
    E_L = -70.6 mV, V_T = -50.4 mV, delta_T = 2 mV.
    """

    C: jax.Array
    g_L: jax.Array
    E_L: jax.Array
    V_T: jax.Array
    delta_T: jax.Array
    V_peak: jax.Array
    V_reset: jax.Array
    t_ref: jax.Array
    adaptation: Adaptation | None = None

    def __init__(self, C=281.0, g_L=30.0, E_L=-70.6, V_T=-50.4, delta_T=2.0, V_peak=0.0,
                 V_reset=-70.6, t_ref=0.0, adaptation=None):
        self.C, self.g_L, self.E_L = _arr(C), _arr(g_L), _arr(E_L)
        self.V_T, self.delta_T, self.V_peak = _arr(V_T), _arr(delta_T), _arr(V_peak)
        self.V_reset, self.t_ref = _arr(V_reset), _arr(t_ref)
        self.adaptation = adaptation

    def __check_init__(self):
        _check(self.C, "C", low=0.0, unit="pF")
        _check(self.g_L, "g_L", low=0.0, unit="nS")
        _check(self.delta_T, "delta_T", low=0.0, unit="mV")
        _check(self.t_ref, "t_ref", low=0.0, strict=False, unit="ms")
        try:
            vp, vt = np.asarray(self.V_peak), np.asarray(self.V_T)
        except Exception:
            return
        if np.any(vp <= vt):
            raise NeurocircuitsError(
                f"V_peak must be > V_T (mV), got V_peak = {describe(self.V_peak)}, "
                f"V_T = {describe(self.V_T)}.")

    @property
    def V_spike(self):
        return self.V_peak

    @property
    def tau_m(self):
        return self.C / self.g_L

    def init_state(self, n: int, key: jax.Array, V0=None) -> IFState:
        V = jnp.broadcast_to(self.E_L if V0 is None else _arr(V0), (n,)).astype(jnp.float32)
        z = jnp.zeros((n,), jnp.float32)
        return IFState(V, z, z)

    def voltage(self, state: IFState) -> jax.Array:
        return state.V

    def _exp(self, V):
        # the exponent is capped just above the cut-off: no overflow, same spike times
        x = jnp.minimum((V - self.V_T) / self.delta_T, (self.V_peak - self.V_T) / self.delta_T + 2)
        return self.g_L * self.delta_T * jnp.exp(x)

    def update(self, state: IFState, drive: Drive, dt, key):
        return if_update(state, drive, dt, key, C=self.C, g_L=self.g_L, E_L=self.E_L,
                         V_reset=self.V_reset, t_ref=self.t_ref, V_spike=self.V_peak,
                         adaptation=self.adaptation, exp_term=self._exp)


def AdEx(C=281.0, g_L=30.0, E_L=-70.6, V_T=-50.4, delta_T=2.0, V_peak=0.0, V_reset=-70.6,
         t_ref=0.0, a=4.0, b=80.5, tau_w=144.0) -> EIF:
    r"""The adaptive exponential integrate-and-fire neuron: an :class:`EIF` with an
    :class:`~neurocircuits.spiking.Adaptation` field (defaults: Brette & Gerstner 2005,
    a = 4 nS, b = 80.5 pA, tau_w = 144 ms)."""
    return EIF(C=C, g_L=g_L, E_L=E_L, V_T=V_T, delta_T=delta_T, V_peak=V_peak, V_reset=V_reset,
               t_ref=t_ref, adaptation=Adaptation(a, b, tau_w))
