r"""Spike propagation: how the spikes of one step reach the synaptic ring buffer.

Every projection adds, for each presynaptic spike of step ``k`` (emitted at time
:math:`t_{k+1}`), its synaptic weights (times the short-term-plasticity efficacy) into the ring
buffer slot of step :math:`k + 1 + d`, where :math:`d = \mathrm{round}(\text{delay}/dt)`: the
input is applied at the start of that step, at time :math:`t_{k+1} + d\,dt`, so delays are exact
multiples of ``dt`` (``delay = 0`` is the next step, as in Brian2). The buffer has
``max delay + 1`` slots.

Three interchangeable paths, all fed from the same :class:`~neurocircuits.spiking.connectivity.Edges`
(:func:`projection`):

* :class:`DenseProjection` -- ``W @ s``, O(N^2) per step: small networks, tests.
* :class:`GatherProjection` -- fixed in-degree layout by postsynaptic neuron (``(N, K_max)``
  indices, padded), O(N K) per step without scatter: the GPU-friendly path for dense activity.
* :class:`EventProjection` -- event-driven: outgoing synapses grouped by presynaptic neuron (CSR),
  only the rows of the neurons that spiked are touched, O(spikes x max out-degree) per step.
  Supports per-synapse (heterogeneous) delays. Up to the network's ``max_spikes_per_step``
  spiking neurons are processed per step; more raise an error after the run (see
  :func:`neurocircuits.spiking.check_run`).

Dense and gather paths need a homogeneous delay per projection.
"""

from __future__ import annotations

import functools
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._core.errors import NeurocircuitsError, describe
from .connectivity import Edges
from .synapses import TsodyksMarkram

__all__ = ["DenseProjection", "GatherProjection", "EventProjection", "projection",
           "PROPAGATIONS"]

PROPAGATIONS = ("dense", "gather", "event")


def _delay_steps(delay, dt, name="delay"):
    d = np.asarray(delay, np.float64)
    if not np.all(np.isfinite(d)) or np.any(d < 0):
        raise NeurocircuitsError(f"{name} must be finite and >= 0 ms, got {describe(delay)}.")
    return np.rint(d / dt).astype(np.int64)


def _add_delayed(buf, x, k, delay, receptor):
    """Add the input ``x`` of step ``k`` to the ring-buffer slot read at step ``k + 1 + delay``."""
    return buf.at[(k + 1 + delay) % buf.shape[0], receptor].add(x)


class DenseProjection(eqx.Module):
    """A dense weight matrix ``(N, N)`` into one receptor with one delay (steps)."""

    matrix: jax.Array
    receptor: int = eqx.field(static=True)
    delay: int = eqx.field(static=True)
    dt: float = eqx.field(static=True)
    stp: TsodyksMarkram | None = None

    @property
    def max_delay(self) -> int:
        return self.delay

    def deliver(self, buf, spiked, eff, k, idx=None, n_spikes=None):
        x = jnp.matmul(self.matrix, eff, precision="highest")
        return _add_delayed(buf, x, k, self.delay, self.receptor)


class GatherProjection(eqx.Module):
    """Synapses by postsynaptic neuron: ``indices``/``weights`` of shape ``(N, K_max)``
    (padded with weight 0), one delay (steps)."""

    indices: jax.Array
    weights: jax.Array
    receptor: int = eqx.field(static=True)
    delay: int = eqx.field(static=True)
    dt: float = eqx.field(static=True)
    stp: TsodyksMarkram | None = None

    @property
    def max_delay(self) -> int:
        return self.delay

    def deliver(self, buf, spiked, eff, k, idx=None, n_spikes=None):
        x = jnp.sum(self.weights * eff[self.indices], axis=1)
        return _add_delayed(buf, x, k, self.delay, self.receptor)


class EventProjection(eqx.Module):
    """Synapses by presynaptic neuron (CSR): row ``j`` is ``post[indptr[j]:indptr[j+1]]``.

    ``post``, ``weight`` and ``delays`` carry one padding element at the end (weight 0);
    ``indptr`` has ``N + 2`` entries (the last row is the empty padding row). The spiking
    neurons of a step (at most the network's ``max_spikes_per_step``) are processed in blocks of
    ``block``: on the CPU a loop runs only as many blocks as there are spikes; with ``block``
    equal to the capacity (the default on GPUs) the step is one fixed-size scatter.
    """

    indptr: jax.Array
    post: jax.Array
    weight: jax.Array
    delays: jax.Array | None
    receptor: int = eqx.field(static=True)
    delay: int = eqx.field(static=True)  # homogeneous delay (steps) when ``delays`` is None
    max_delay_steps: int = eqx.field(static=True)
    max_out: int = eqx.field(static=True)
    dt: float = eqx.field(static=True)
    block: int | None = eqx.field(static=True, default=None)
    stp: TsodyksMarkram | None = None

    @property
    def max_delay(self) -> int:
        return self.max_delay_steps

    def _block(self, buf, idx, eff_ext, k):
        n_slots, n_rec, n = buf.shape
        nnz = self.post.shape[0] - 1
        start = self.indptr[idx]
        stop = self.indptr[idx + 1]
        pos = start[:, None] + jnp.arange(self.max_out, dtype=start.dtype)[None, :]
        valid = pos < stop[:, None]
        pos = jnp.where(valid, pos, nnz)
        w = self.weight[pos] * eff_ext[idx][:, None]
        if self.delays is None:
            slot = (k + 1 + self.delay) % n_slots
        else:
            slot = (k + 1 + self.delays[pos].astype(jnp.int32)) % n_slots
        flat = (slot * n_rec + self.receptor) * n + self.post[pos]
        return buf.reshape(-1).at[flat].add(w).reshape(buf.shape)

    def deliver(self, buf, spiked, eff, k, idx=None, n_spikes=None):
        n = spiked.shape[0]
        if idx is None:
            idx = jnp.nonzero(spiked, size=n, fill_value=n)[0]
            n_spikes = jnp.sum(spiked, dtype=jnp.int32)
        eff_ext = jnp.concatenate([eff, jnp.zeros((1,), eff.dtype)])
        cap = idx.shape[0]
        block = cap if self.block is None else min(self.block, cap)
        if block >= cap:
            return self._block(buf, idx, eff_ext, k)
        n_blocks = -(-cap // block)
        idx = jnp.concatenate([idx, jnp.full((n_blocks * block - cap,), n, idx.dtype)])
        todo = jnp.minimum((n_spikes + block - 1) // block, n_blocks)

        def body(b, buf):
            j = jax.lax.dynamic_slice(idx, (b * block,), (block,))
            return self._block(buf, j, eff_ext, k)

        return jax.lax.fori_loop(0, todo, body, buf)


@functools.partial(jax.jit, static_argnames=("n", "presorted"))
def _csr_by_pre(pre, post, weight, delays, n, presorted=False):
    order = jnp.arange(pre.shape[0]) if presorted else jnp.argsort(pre, stable=True)
    counts = jnp.bincount(pre, length=n)
    indptr = jnp.concatenate([jnp.zeros((1,), jnp.int32), jnp.cumsum(counts).astype(jnp.int32)])
    nnz = pre.shape[0]
    indptr = jnp.concatenate([indptr, jnp.full((1,), nnz, jnp.int32)])
    pad = lambda a, v: jnp.concatenate([a, jnp.full((1,), v, a.dtype)])  # noqa: E731
    post_s = pad(post[order].astype(jnp.int32), 0)
    w_s = pad(weight[order], 0.0)
    d_s = None if delays is None else pad(delays[order], 0)
    return indptr, post_s, w_s, d_s, jnp.max(counts) if nnz else jnp.ones((), jnp.int32)


def projection(edges: Edges, n: int, *, receptor: int, dt: float, delay: Any = None,
               propagation: str = "event", stp: TsodyksMarkram | None = None,
               block: int | None = None):
    """Build a projection of ``edges`` (global indices into a network of ``n`` neurons).

    Args:
        edges: the synapses (:class:`Edges`); per-synapse delays in ``edges.delay`` (ms).
        n: number of neurons of the network.
        receptor: index of the target receptor in the network's ``receptors``.
        dt: the step (ms) that delays are counted in; simulate with the same ``dt``.
        delay: homogeneous delay (ms, >= 0) when ``edges.delay`` is ``None`` (default 0).
        propagation: ``"event"`` (event-driven, CSR by presynaptic neuron), ``"dense"`` or
            ``"gather"``.
        stp: optional :class:`~neurocircuits.spiking.TsodyksMarkram`.
        block: event path only -- spiking neurons processed per scatter (default 32 on the
            CPU, where a loop runs only over the blocks needed; on GPUs all of the network's
            ``max_spikes_per_step`` in one scatter).
    """
    if propagation not in PROPAGATIONS:
        raise NeurocircuitsError(
            f"propagation={propagation!r} is unknown; allowed: {', '.join(PROPAGATIONS)}.")
    if not isinstance(edges, Edges):
        raise NeurocircuitsError(f"edges must be an Edges, got {type(edges).__name__}.")
    if isinstance(receptor, bool) or not isinstance(receptor, (int, np.integer)) or receptor < 0:
        raise NeurocircuitsError(f"receptor must be an int index >= 0, got {receptor!r}.")
    dt_ = float(dt)
    if not dt_ > 0:
        raise NeurocircuitsError(f"dt must be > 0 ms, got {dt!r}.")
    if edges.nnz:
        lo, hi = int(jnp.min(jnp.minimum(edges.pre, edges.post))), \
            int(jnp.max(jnp.maximum(edges.pre, edges.post)))
        if lo < 0 or hi >= n:
            raise NeurocircuitsError(
                f"edges index neurons in [{lo}, {hi}], outside the network's [0, {n}).")
    hetero = edges.delay is not None
    if hetero and delay is not None:
        raise NeurocircuitsError("give either edges.delay (per synapse) or delay=, not both.")
    d_const = int(_delay_steps(0.0 if delay is None else delay, dt_))
    if propagation in ("dense", "gather") and hetero:
        dsteps = _delay_steps(np.asarray(edges.delay), dt_, "edges.delay")
        if dsteps.size and dsteps.min() != dsteps.max():
            raise NeurocircuitsError(
                f"propagation={propagation!r} needs one delay per projection, but the synapses' "
                f"delays span {dsteps.min()}..{dsteps.max()} steps; use propagation='event' for "
                "heterogeneous delays, or one projection per delay.")
        d_const, hetero = (int(dsteps[0]) if dsteps.size else 0), False
    if propagation == "dense":
        m = edges.to_dense(n, n)
        return DenseProjection(m, int(receptor), d_const, dt_, stp)
    if propagation == "gather":
        post = np.asarray(edges.post)
        order = np.argsort(post, kind="stable")
        counts = np.bincount(post, minlength=n)
        k_max = max(1, int(counts.max()) if counts.size else 1)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        slot = np.arange(post.size) - np.repeat(starts, counts)
        rows = post[order]
        idx = np.zeros((n, k_max), np.int32)
        w = np.zeros((n, k_max), np.float32)
        idx[rows, slot] = np.asarray(edges.pre)[order]
        w[rows, slot] = np.asarray(edges.weight)[order]
        return GatherProjection(jnp.asarray(idx), jnp.asarray(w), int(receptor), d_const, dt_, stp)
    delays = None
    max_d = d_const
    if hetero:
        dmin, dmax = (float(v) for v in (jnp.min(edges.delay), jnp.max(edges.delay)))
        _delay_steps(np.array([dmin, dmax]), dt_, "edges.delay")  # finite and >= 0
        max_d = int(np.rint(dmax / dt_)) if edges.nnz else 0
        delays = jnp.rint(edges.delay / dt_).astype(jnp.int16 if max_d < 2**15 else jnp.int32)
    presorted = bool(jnp.all(edges.pre[1:] >= edges.pre[:-1])) if edges.nnz > 1 else True
    indptr, post_s, w_s, d_s, max_out = _csr_by_pre(edges.pre, edges.post, edges.weight, delays,
                                                    n, presorted)
    if block is None:
        block = 32 if jax.default_backend() == "cpu" else None
    elif isinstance(block, bool) or not isinstance(block, (int, np.integer)) or block < 1:
        raise NeurocircuitsError(f"block must be an int >= 1 (spiking neurons per scatter), got "
                                 f"{block!r}.")
    return EventProjection(indptr, post_s, w_s, d_s, int(receptor), d_const, max_d,
                           max(1, int(max_out)), dt_, block, stp)
