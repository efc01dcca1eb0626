r"""Izhikevich (2003) neurons with the regular-spiking, fast-spiking and low-threshold-spiking
presets.

.. math::

    \dot v = 0.04 v^2 + 5 v + 140 - u + I/C ,\qquad \dot u = a (b v - u),
    \qquad v \ge 30 \Rightarrow v \to c,\ u \to u + d ,

with :math:`v` in mV, time in ms, and the input current :math:`I` in pA divided by a nominal
capacitance ``C`` (default 1 pF, so that :math:`I` is in the model's own units, mV/ms).
Synaptic conductances enter as :math:`I = \sum_r g_r (E_r - v)`. Integrated with the explicit
Euler scheme (the model is nonlinear); use dt <= 0.5 ms (Izhikevich used two 0.5 ms half-steps).

Presets (a, b, c, d): RS (0.02, 0.2, -65, 8), FS (0.1, 0.2, -65, 2), LTS (0.02, 0.25, -65, 2).

Reference: Izhikevich, IEEE Trans. Neural Netw. 14, 1569 (2003).
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._core.errors import NeurocircuitsError
from ._drive import Drive
from .lif import _arr, _check

__all__ = ["Izhikevich", "IzhState", "PRESETS"]

#: (a, b, c, d) of Izhikevich (2003), Fig. 2
PRESETS = {
    "RS": (0.02, 0.2, -65.0, 8.0),
    "FS": (0.1, 0.2, -65.0, 2.0),
    "LTS": (0.02, 0.25, -65.0, 2.0),
}


class IzhState(NamedTuple):
    """``v`` (mV) and the recovery variable ``u`` (mV/ms), each ``(N,)``."""

    v: jax.Array
    u: jax.Array


class Izhikevich(eqx.Module):
    """Izhikevich neurons; ``a, b, c, d`` are scalars or arrays ``(N,)``.

    Args:
        a: recovery rate (1/ms). b: recovery sensitivity (1/ms... dimensionless in the model).
        c: reset of ``v`` (mV). d: reset increment of ``u``.
        C: nominal capacitance (pF) dividing input currents (default 1).
        v_peak: spike cut-off (mV, default 30).

    Example:
        >>> izh = Izhikevich.from_types(("RS", 800), ("FS", 100), ("LTS", 100))
        >>> izh.a.shape
        (1000,)
    """

    a: jax.Array
    b: jax.Array
    c: jax.Array
    d: jax.Array
    C: jax.Array
    v_peak: jax.Array

    def __init__(self, a=0.02, b=0.2, c=-65.0, d=8.0, C=1.0, v_peak=30.0):
        self.a, self.b, self.c, self.d = _arr(a), _arr(b), _arr(c), _arr(d)
        self.C, self.v_peak = _arr(C), _arr(v_peak)

    def __check_init__(self):
        _check(self.a, "a", low=0.0, unit="1/ms")
        _check(self.b, "b")
        _check(self.c, "c", unit="mV")
        _check(self.d, "d")
        _check(self.C, "C", low=0.0, unit="pF")
        _check(self.v_peak, "v_peak", unit="mV")

    @classmethod
    def preset(cls, name: str, **kw) -> Izhikevich:
        """One of ``"RS"``, ``"FS"``, ``"LTS"``."""
        if name not in PRESETS:
            raise NeurocircuitsError(
                f"Izhikevich preset {name!r} is unknown; allowed: {', '.join(PRESETS)}.")
        a, b, c, d = PRESETS[name]
        return cls(a, b, c, d, **kw)

    @classmethod
    def from_types(cls, *groups: tuple[str, int], **kw) -> Izhikevich:
        """A heterogeneous population from ``(preset, count)`` pairs, in that order."""
        rows = []
        for g in groups:
            if not (isinstance(g, tuple) and len(g) == 2 and g[0] in PRESETS):
                raise NeurocircuitsError(
                    f"each group must be (preset, count) with preset in {tuple(PRESETS)}, got "
                    f"{g!r}.")
            rows.append(np.repeat(np.asarray(PRESETS[g[0]])[None], int(g[1]), axis=0))
        p = np.concatenate(rows)
        return cls(p[:, 0], p[:, 1], p[:, 2], p[:, 3], **kw)

    def init_state(self, n: int, key: jax.Array, V0=None) -> IzhState:
        """``v = V0`` (default -65 mV), ``u = b v``."""
        v = jnp.broadcast_to(-65.0 if V0 is None else _arr(V0), (n,)).astype(jnp.float32)
        return IzhState(v, jnp.broadcast_to(self.b * v, (n,)).astype(jnp.float32))

    def voltage(self, state: IzhState) -> jax.Array:
        return state.v

    def update(self, state: IzhState, drive: Drive, dt, key):
        v, u = state
        v = v + drive.jump
        I = drive.I + drive.gE - drive.g * v  # noqa: E741
        if drive.I_exp.shape[0]:
            I = I + jnp.sum(drive.I_exp, axis=0)  # noqa: E741
        dv = 0.04 * v * v + 5.0 * v + 140.0 - u + I / self.C
        v1 = v + dt * dv
        if drive.noise is not None:
            v1 = v1 + drive.noise / self.C * jnp.sqrt(dt) * jax.random.normal(key, v.shape)
        u1 = u + dt * self.a * (self.b * v - u)
        spiked = v1 >= self.v_peak
        v1 = jnp.where(spiked, self.c, v1)
        u1 = jnp.where(spiked, u1 + self.d, u1)
        return IzhState(v1, u1), spiked
