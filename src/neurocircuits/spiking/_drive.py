"""What a neuron model receives each step (shared by the neuron models and the network)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class Drive(NamedTuple):
    r"""The synaptic and external drive of every neuron over one step (held over the step).

    Attributes:
        g: total synaptic conductance (nS), shape ``(N,)``.
        gE: :math:`\sum_r g_r E_r` (nS mV = pA), shape ``(N,)``.
        I: current held constant over the step (pA): DC, OU, stimulation, gap junctions,
            external inputs.
        I_exp: currents of exponential current synapses (pA), shape ``(R_c, N)``, decaying with
            ``tau_exp`` during the step (integrated exactly by the LIF model).
        tau_exp: their time constants (ms), shape ``(R_c,)``.
        jump: voltage jumps of delta synapses arriving at the start of the step (mV).
        noise: white-noise intensity (pA ms^1/2), shape ``(N,)``, or ``None``.
    """

    g: jax.Array
    gE: jax.Array
    I: jax.Array  # noqa: E741
    I_exp: jax.Array
    tau_exp: jax.Array
    jump: jax.Array
    noise: jax.Array | None


def phi1(x):
    r""":math:`(e^x - 1)/x`, continuous at 0."""
    small = jnp.abs(x) < 1e-5
    safe = jnp.where(small, 1.0, x)
    return jnp.where(small, 1.0 + 0.5 * x, jnp.expm1(safe) / safe)
