r"""Synaptic receptors, short-term plasticity and gap junctions.

Receptors (the targets of projections; a network has a tuple of them):

* :class:`Delta` -- a presynaptic spike makes the membrane potential jump by ``w`` (mV)
  (Brunel 2000). Jumps that arrive during the refractory period are lost.
* :class:`CurrentExp` -- :math:`I_r` (pA) jumps by ``w`` (pA) and decays,
  :math:`\tau_r \dot I_r = -I_r` (Potjans & Diesmann 2014; Brette et al. 2007, benchmark 2).
* :class:`ConductanceExp` -- :math:`g_r` (nS) jumps by ``w`` (nS) and decays,
  :math:`\tau_r \dot g_r = -g_r`; current :math:`g_r (E_r - V)` (Vogels & Abbott 2005; Brette et
  al. 2007, benchmark 1).

:class:`TsodyksMarkram` short-term plasticity scales each presynaptic spike by
:math:`u^+ x^-`:

.. math::

    \dot x = (1 - x)/\tau_D,\quad \dot u = -u/\tau_F,\quad
    \text{at a spike: } u^+ = u^- + U(1 - u^-),\ x^+ = x^- - u^+ x^-

(``tau_F = 0``: depression only, :math:`u^+ = U`). The variables are kept per presynaptic neuron
(all its synapses in one projection share them) and relax exactly between steps. For a regular
train of period :math:`\Delta` the steady state is

.. math::

    u^* = \frac{U}{1 - (1 - U)e^{-\Delta/\tau_F}},\qquad
    x^* = \frac{1 - e^{-\Delta/\tau_D}}{1 - (1 - u^*) e^{-\Delta/\tau_D}}

(:meth:`TsodyksMarkram.steady_state`).

:class:`GapJunctions`: :math:`I_i = g_{gap} \sum_{j \sim i} (V_j - V_i)` over symmetric pairs.

References:
    Tsodyks & Markram, PNAS 94, 719 (1997); Tsodyks, Pawelzik & Markram, Neural Comput. 10, 821
    (1998); Vogels & Abbott, J. Neurosci. 25, 10786 (2005); Brunel (2000).
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._core.errors import NeurocircuitsError, describe
from .lif import _arr, _check

__all__ = ["Delta", "CurrentExp", "ConductanceExp", "TsodyksMarkram", "STPState", "GapJunctions"]


class Delta(eqx.Module):
    """Instantaneous voltage jump (weights in mV)."""

    kind: ClassVar[str] = "delta"
    tau = None


class CurrentExp(eqx.Module):
    """Exponentially decaying current (weights in pA), time constant ``tau`` (ms)."""

    kind: ClassVar[str] = "current"
    tau: jax.Array

    def __init__(self, tau=5.0):
        self.tau = _arr(tau)

    def __check_init__(self):
        _check(self.tau, "CurrentExp.tau", low=0.0, unit="ms")


class ConductanceExp(eqx.Module):
    """Exponentially decaying conductance (weights in nS), time constant ``tau`` (ms) and
    reversal potential ``E_rev`` (mV)."""

    kind: ClassVar[str] = "conductance"
    tau: jax.Array
    E_rev: jax.Array

    def __init__(self, tau=5.0, E_rev=0.0):
        self.tau, self.E_rev = _arr(tau), _arr(E_rev)

    def __check_init__(self):
        _check(self.tau, "ConductanceExp.tau", low=0.0, unit="ms")
        _check(self.E_rev, "ConductanceExp.E_rev", unit="mV")


class STPState(NamedTuple):
    """Tsodyks--Markram variables per presynaptic neuron, shape ``(N,)`` each."""

    u: jax.Array
    x: jax.Array


class TsodyksMarkram(eqx.Module):
    """Tsodyks--Markram short-term plasticity (see the module docstring).

    Args:
        U: utilisation increment in (0, 1].
        tau_D: recovery from depression (ms, > 0).
        tau_F: facilitation decay (ms, >= 0; 0 = depression only).
    """

    U: jax.Array
    tau_D: jax.Array
    tau_F: jax.Array

    def __init__(self, U=0.5, tau_D=800.0, tau_F=0.0):
        self.U, self.tau_D, self.tau_F = _arr(U), _arr(tau_D), _arr(tau_F)

    def __check_init__(self):
        try:
            u = np.asarray(self.U)
        except Exception:
            u = None
        if u is not None and (not np.all(np.isfinite(u)) or np.any(u <= 0) or np.any(u > 1)):
            raise NeurocircuitsError(
                f"TsodyksMarkram.U must lie in (0, 1], got {describe(self.U)}.")
        _check(self.tau_D, "TsodyksMarkram.tau_D", low=0.0, unit="ms")
        _check(self.tau_F, "TsodyksMarkram.tau_F", low=0.0, strict=False, unit="ms")

    def init_state(self, n: int) -> STPState:
        return STPState(jnp.zeros((n,), jnp.float32), jnp.ones((n,), jnp.float32))

    def update(self, state: STPState, spiked, dt):
        """Relax over the step, then apply the spikes; returns the state and the efficacy
        ``u+ x-`` of every neuron that spiked (0 elsewhere)."""
        u, x = state
        x = 1.0 - (1.0 - x) * jnp.exp(-dt / self.tau_D)
        f = jnp.where(self.tau_F > 0, jnp.exp(-dt / jnp.where(self.tau_F > 0, self.tau_F, 1.0)),
                      0.0)
        u = u * f
        u_plus = u + self.U * (1.0 - u)
        eff = u_plus * x
        u = jnp.where(spiked, u_plus, u)
        x = jnp.where(spiked, x - eff, x)
        return STPState(u, x), jnp.where(spiked, eff, 0.0)

    def steady_state(self, period):
        """``(u*, x*)`` just after / just before a spike of a regular train of ``period`` ms:
        the efficacy is ``u* x*``."""
        U, tD, tF = (np.asarray(v, np.float64) for v in (self.U, self.tau_D, self.tau_F))
        eF = np.exp(-period / tF) if tF > 0 else 0.0
        eD = np.exp(-period / tD)
        u = U / (1 - (1 - U) * eF)
        x = (1 - eD) / (1 - (1 - u) * eD)
        return float(u), float(x)


class GapJunctions(eqx.Module):
    r"""Electrical synapses :math:`I_i = g \sum_{(j \to i)} (V_j - V_i)` (pA), over directed
    pairs ``(src, dst)`` that should list both directions of each junction (see
    :func:`~neurocircuits.spiking.connectivity.gap_junction_pairs`).

    Args:
        src, dst: int arrays ``(n_pairs,)``.
        g: junction conductance (nS, >= 0), scalar.
    """

    src: jax.Array
    dst: jax.Array
    g: jax.Array

    def __init__(self, src, dst, g=1.0):
        self.src, self.dst, self.g = jnp.asarray(src, jnp.int32), jnp.asarray(dst, jnp.int32), \
            _arr(g)

    def __check_init__(self):
        if np.shape(self.src) != np.shape(self.dst) or np.ndim(self.src) != 1:
            raise NeurocircuitsError(
                f"GapJunctions src and dst must be 1-d arrays of one length, got "
                f"{describe(self.src)} and {describe(self.dst)}.")
        _check(self.g, "GapJunctions.g", low=0.0, strict=False, unit="nS")

    def current(self, V):
        return self.g * jax.ops.segment_sum(V[self.src] - V[self.dst], self.dst,
                                            num_segments=V.shape[0])
