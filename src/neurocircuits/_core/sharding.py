"""One network over several devices: neurons partitioned across a 1-d device mesh.

Every matrix of the model whose first axis has length ``N`` (the model's ``n``) and every state
leaf with a neuron axis is split along it into contiguous blocks, one per device; per-neuron
vectors of the model (N floats) and everything else are replicated. A dense coupling is thereby split by *rows* (postsynaptic neurons): each device owns
``J[rows, :]`` and the state of its neurons, and the one communication a step needs is the
all-gather of the presynaptic activity ``phi(u)`` (``N`` values, ``4 N (D - 1) / D`` bytes
received per device in float32), which the compiler inserts where the local rows meet the full
vector. Sparse fixed in-degree couplings split their ``(N, K)`` index/weight arrays by rows the
same way and gather from the all-gathered activity.

Randomness stays identical to the single-device run: JAX's partitionable threefry draws each
shard's share of ``normal(key, (N,))`` locally, bit for bit the numbers the unsharded run draws.
Single networks then give bit-identical trajectories (tested on 4 virtual devices for dense,
E/I and sparse couplings). Batched runs multiply row blocks of ``J`` by a matrix of trials, and
a matrix-matrix kernel may block its sums differently for a block than for the whole matrix:
agreement there is to float32 rounding (tested to 1e-5).

Usage::

    sharding = nc.NeuronSharding()               # all local devices
    traj = nc.simulate(net, u0, ..., sharding=sharding)
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from typing import Any

import equinox as eqx
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .errors import NeurocircuitsError

__all__ = ["NeuronSharding", "gather_neurons"]

_ACTIVE: contextvars.ContextVar[NeuronSharding | None] = contextvars.ContextVar(
    "neurocircuits_neuron_sharding", default=None)


def gather_neurons(x):
    """The full neuron vector on every device: the explicit communication point of a step.

    Couplings call this on the presynaptic activity before using it; it is the identity when
    no :class:`NeuronSharding` is active. Gathering before any reduction keeps results bit for
    bit those of the single-device run (a sum of partial sums would round differently).
    """
    sharding = _ACTIVE.get()
    if sharding is None:
        return x
    return jax.tree.map(
        lambda a: jax.lax.with_sharding_constraint(a, NamedSharding(sharding.mesh(),
                                                                    PartitionSpec())), x)


@contextlib.contextmanager
def active(sharding: NeuronSharding | None):
    """Make ``sharding`` the one :func:`gather_neurons` uses while a chunk is traced."""
    token = _ACTIVE.set(sharding)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


@dataclasses.dataclass(frozen=True)
class NeuronSharding:
    """Partition neurons over ``devices`` (default: all devices of the default backend).

    Args:
        devices: the devices to use, in order; neuron block ``d`` lives on ``devices[d]``.
        axis_name: the mesh axis name.
    """

    devices: tuple | None = None
    axis_name: str = "neurons"

    def mesh(self) -> Mesh:
        devices = self.devices if self.devices is not None else tuple(jax.devices())
        return Mesh(np.asarray(devices, dtype=object), (self.axis_name,))

    @property
    def n_devices(self) -> int:
        return len(self.devices) if self.devices is not None else jax.device_count()

    def spec_for(self, leaf: Any, n: int, neuron_axis: int, min_ndim: int = 1) -> NamedSharding:
        mesh = self.mesh()
        shape = np.shape(leaf)
        if len(shape) >= max(min_ndim, neuron_axis + 1) and shape[neuron_axis] == n:
            spec = [None] * len(shape)
            spec[neuron_axis] = self.axis_name
            return NamedSharding(mesh, PartitionSpec(*spec))
        return NamedSharding(mesh, PartitionSpec())

    def place(self, model, state, *, batched_state: bool):
        """``(model, state)`` with neuron-axis leaves split across the devices."""
        n = getattr(model, "n", None)
        if not isinstance(n, (int, np.integer)):
            raise NeurocircuitsError(
                f"sharding needs a model with an integer `n` (number of neurons); "
                f"{type(model).__name__} has none."
            )
        d = self.n_devices
        if n % d:
            raise NeurocircuitsError(
                f"sharding {n} neurons over {d} devices needs N divisible by the device count; "
                f"use N = {n - n % d} or {n + d - n % d}, or fewer devices."
            )

        def put(tree, axis, min_ndim):
            def one(x):
                if not eqx.is_array(x):
                    return x
                return jax.device_put(x, self.spec_for(x, n, axis, min_ndim))

            return jax.tree.map(one, tree)

        # model: matrices split by rows, per-neuron vectors (N floats) replicated, so that
        # reductions over presynaptic neurons run in one place, in the single-device order
        return put(model, 0, 2), put(state, 1 if batched_state else 0, 1)
