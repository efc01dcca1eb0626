"""The model interface every family implements.

A model is an immutable equinox module holding parameters (array leaves) and configuration
(static fields). It advances its own state by one step; the time loop lives in
:func:`neurocircuits.simulate`. Continuous-time models that are ODEs/SDEs subclass
:class:`AbstractSDEModel` and only provide the drift (and diffusion, and the diagonal linear part
for the exponential integrator): the integrator is a composed field, not a subclass.
"""

from __future__ import annotations

from typing import Any, ClassVar

import equinox as eqx
import jax

from .integrators import AbstractIntegrator

__all__ = ["AbstractModel", "AbstractSDEModel"]


class AbstractModel(eqx.Module):
    """Anything :func:`~neurocircuits.simulate` can run.

    Subclasses implement ``step(state, t, dt, key, inputs) -> state`` (house units: ms) and may
    set ``divergence_hint``: a sentence added to the error when a run produces NaN/Inf.
    """

    divergence_hint: ClassVar[str] = ""

    def step(self, state: Any, t: jax.Array, dt: Any, key: jax.Array, inputs: Any) -> Any:
        raise NotImplementedError  # pragma: no cover

    def check_state(self, state: Any) -> None:
        """Raise a clear error when ``state`` does not fit this model (shape, dtype)."""

    def watched(self, state: Any) -> Any:
        """The part of ``state`` that :func:`~neurocircuits.simulate` checks for NaN/Inf after
        every step (default: all of it). A model may leave out large leaves that only feed
        watched ones (a spike ring buffer): the check reads every watched byte every step."""
        return state


class AbstractSDEModel(AbstractModel):
    """An ODE/SDE model :math:`dy = f(t, y; I)\\,dt + b(t, y)\\,dW`, stepped by ``integrator``.

    Subclasses define ``drift(t, y, inputs)``, optionally ``diffusion(t, y, inputs)`` (``None``
    for deterministic models) and ``linear(t, y, inputs)`` (the diagonal linear part, for
    :class:`~neurocircuits.ExponentialEuler`), and a field ``integrator``.
    """

    integrator: eqx.AbstractVar[AbstractIntegrator]

    def drift(self, t, y, inputs):  # pragma: no cover
        raise NotImplementedError

    def diffusion(self, t, y, inputs):
        return None

    def linear(self, t, y, inputs):  # pragma: no cover
        raise NotImplementedError

    def step(self, state, t, dt, key, inputs):
        return self.integrator.step(self, t, state, dt, inputs, key=key)
