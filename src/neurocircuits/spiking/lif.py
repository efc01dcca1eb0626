r"""Leaky integrate-and-fire neurons, with optional spike-triggered adaptation.

.. math::

    C\,\frac{dV}{dt} = -g_L (V - E_L) + \sum_r g_r(t)\,(E_r - V) + I(t) - w ,
    \qquad V \ge V_{th} \Rightarrow \text{spike},\ V \to V_r \text{ for } t_{ref},

and, with an :class:`Adaptation` field,
:math:`\tau_w \dot w = a (V - E_L) - w`, :math:`w \to w + b` at each spike. ``a = 0`` is the
spike-triggered adaptation current of regular-spiking cells.

Integration (exact where the subthreshold dynamics are linear): over a step the conductances
and the constant currents are held fixed, so :math:`V` relaxes exactly to
:math:`V_\infty = (g_L E_L + \sum_r g_r E_r + I - w)/(g_L + \sum_r g_r)` with
:math:`\tau_{\rm eff} = C/(g_L + \sum_r g_r)`; exponentially decaying synaptic currents are
integrated exactly (the ``iaf_psc_exp`` propagator of Rotter & Diesmann 1999); white noise gets
the exact Ornstein--Uhlenbeck variance. For current-based synapses and DC/white-noise input the
update is therefore exact; with conductances it is the exponential Euler scheme.

Units: ms, mV, pF, nS, pA (so :math:`C/g_L` is in ms and pA/pF = mV/ms).

References:
    Brunel, J. Comput. Neurosci. 8, 183 (2000); Rotter & Diesmann, Biol. Cybern. 81, 381 (1999);
    Brette et al., J. Comput. Neurosci. 23, 349 (2007).
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._core.errors import NeurocircuitsError, describe
from ._drive import Drive, phi1

__all__ = ["LIF", "Adaptation", "IFState"]


class IFState(NamedTuple):
    """State of integrate-and-fire neurons: ``V`` (mV), adaptation ``w`` (pA), remaining
    refractory time ``ref`` (ms); each of shape ``(N,)``."""

    V: jax.Array
    w: jax.Array
    ref: jax.Array


def _arr(x):
    return jnp.asarray(x, jnp.float32)


def _check(value, name, *, low=None, strict=True, unit=""):
    """Raise a NeurocircuitsError naming ``name``, the value and what is allowed."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except Exception:  # traced: checked by the caller's shapes only
        return
    u = f" {unit}" if unit else ""
    if not np.all(np.isfinite(arr)):
        raise NeurocircuitsError(f"{name} must be finite{u}, got {describe(value)}.")
    if low is not None:
        bad = arr <= low if strict else arr < low
        if np.any(bad):
            op = ">" if strict else ">="
            raise NeurocircuitsError(
                f"{name} must be {op} {low}{u}, got {describe(value)}"
                + (f" (smallest value {arr.min():g})" if arr.size > 1 else "") + ".")


class Adaptation(eqx.Module):
    r"""Adaptation current :math:`\tau_w \dot w = a (V - E_L) - w`, :math:`w \to w + b` at spikes.

    Args:
        a: subthreshold coupling (nS); 0 gives pure spike-triggered adaptation.
        b: spike-triggered increment (pA).
        tau_w: time constant (ms, > 0).

    Reference: Brette & Gerstner, J. Neurophysiol. 94, 3637 (2005).
    """

    a: jax.Array
    b: jax.Array
    tau_w: jax.Array

    def __init__(self, a=0.0, b=0.0, tau_w=100.0):
        self.a, self.b, self.tau_w = _arr(a), _arr(b), _arr(tau_w)

    def __check_init__(self):
        _check(self.a, "Adaptation.a", unit="nS")
        _check(self.b, "Adaptation.b", unit="pA")
        _check(self.tau_w, "Adaptation.tau_w", low=0.0, unit="ms")


def if_update(state: IFState, drive: Drive, dt, key, *, C, g_L, E_L, V_reset, t_ref, V_spike,
              adaptation: Adaptation | None, exp_term=None):
    """One step of an integrate-and-fire neuron (see the module docstring); returns the new
    state and the boolean spike vector. ``exp_term(V) -> pA`` adds a nonlinear current held
    over the step (the EIF exponential)."""
    V0, w0, ref = state
    refractory = ref > 0.5 * dt
    V0 = V0 + jnp.where(refractory, 0.0, drive.jump)
    g_all = g_L + drive.g
    tau_eff = C / g_all
    decay = jnp.exp(-dt / tau_eff)
    I_tot = drive.I - w0
    if exp_term is not None:
        I_tot = I_tot + exp_term(V0)
    V_inf = (g_L * E_L + drive.gE + I_tot) / g_all
    V1 = V_inf + (V0 - V_inf) * decay
    if drive.I_exp.shape[0]:
        x = dt / tau_eff[None, :] - dt / drive.tau_exp[:, None]
        p21 = (dt / C) * decay * phi1(x)
        V1 = V1 + jnp.sum(p21 * drive.I_exp, axis=0)
    if drive.noise is not None:
        var = 0.5 * tau_eff * (1.0 - decay * decay)
        V1 = V1 + drive.noise / C * jnp.sqrt(var) * jax.random.normal(key, V1.shape, V1.dtype)
    V1 = jnp.where(refractory, V_reset, V1)
    spiked = V1 >= V_spike
    V1 = jnp.where(spiked, V_reset, V1)
    ref = jnp.where(spiked, t_ref, jnp.maximum(ref - dt, 0.0))
    if adaptation is not None:
        a, b, tau_w = adaptation.a, adaptation.b, adaptation.tau_w
        w_inf = a * (state.V - E_L)
        w1 = w_inf + (w0 - w_inf) * jnp.exp(-dt / tau_w) + b * spiked
    else:
        w1 = w0
    return IFState(V1, w1, ref), spiked


class LIF(eqx.Module):
    r"""Leaky integrate-and-fire neurons (see the module docstring for the equations).

    Every parameter is a scalar or an array ``(N,)`` (heterogeneous populations).

    Args:
        C: membrane capacitance (pF, > 0).
        g_L: leak conductance (nS, > 0); :math:`\tau_m = C/g_L` (ms).
        E_L: leak reversal potential (mV).
        V_th: threshold (mV), > ``V_reset``.
        V_reset: reset potential (mV).
        t_ref: absolute refractory period (ms, >= 0): ``V`` is clamped to ``V_reset``.
        adaptation: an :class:`Adaptation` or ``None``.

    Example:
        >>> lif = LIF(C=200.0, g_L=10.0, E_L=-60.0, V_th=-50.0, V_reset=-60.0, t_ref=5.0)
        >>> float(lif.tau_m)
        20.0
    """

    C: jax.Array
    g_L: jax.Array
    E_L: jax.Array
    V_th: jax.Array
    V_reset: jax.Array
    t_ref: jax.Array
    adaptation: Adaptation | None = None

    def __init__(self, C=200.0, g_L=10.0, E_L=-60.0, V_th=-50.0, V_reset=-60.0, t_ref=5.0,
                 adaptation=None):
        self.C, self.g_L, self.E_L = _arr(C), _arr(g_L), _arr(E_L)
        self.V_th, self.V_reset, self.t_ref = _arr(V_th), _arr(V_reset), _arr(t_ref)
        self.adaptation = adaptation

    def __check_init__(self):
        _check(self.C, "C", low=0.0, unit="pF")
        _check(self.g_L, "g_L", low=0.0, unit="nS")
        _check(self.E_L, "E_L", unit="mV")
        _check(self.V_reset, "V_reset", unit="mV")
        _check(self.t_ref, "t_ref", low=0.0, strict=False, unit="ms")
        try:
            th, vr = np.asarray(self.V_th), np.asarray(self.V_reset)
        except Exception:
            return
        if np.any(~np.isfinite(th)) or np.any(th <= vr):
            raise NeurocircuitsError(
                f"V_th must be finite and > V_reset (mV), got V_th = {describe(self.V_th)} and "
                f"V_reset = {describe(self.V_reset)}.")
        if self.adaptation is not None and not isinstance(self.adaptation, Adaptation):
            raise NeurocircuitsError(
                f"adaptation must be an Adaptation(a, b, tau_w) or None, got "
                f"{type(self.adaptation).__name__}.")

    @classmethod
    def from_tau(cls, tau_m=20.0, *, C=250.0, **kw) -> LIF:
        """Parameterised by the membrane time constant ``tau_m`` (ms): ``g_L = C / tau_m``."""
        _check(tau_m, "tau_m", low=0.0, unit="ms")
        return cls(C=C, g_L=_arr(C) / _arr(tau_m), **kw)

    @property
    def tau_m(self) -> jax.Array:
        """Membrane time constant C/g_L (ms)."""
        return self.C / self.g_L

    @property
    def V_spike(self):
        return self.V_th

    def init_state(self, n: int, key: jax.Array, V0=None) -> IFState:
        """``V = V0`` (default ``E_L``), ``w = 0``, not refractory."""
        V = jnp.broadcast_to(self.E_L if V0 is None else _arr(V0), (n,)).astype(jnp.float32)
        z = jnp.zeros((n,), jnp.float32)
        return IFState(V, z, z)

    def voltage(self, state: IFState) -> jax.Array:
        return state.V

    def update(self, state: IFState, drive: Drive, dt, key):
        return if_update(state, drive, dt, key, C=self.C, g_L=self.g_L, E_L=self.E_L,
                         V_reset=self.V_reset, t_ref=self.t_ref, V_spike=self.V_th,
                         adaptation=self.adaptation)
