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
  only the synapses of the neurons that spiked are touched. Supports per-synapse (heterogeneous)
  delays. The synapses of a step's spikes form one flat work list (no padding to the largest
  out-degree) that is scattered into the ring buffer in passes of ``chunk`` synapse events: the
  first pass always runs, further passes only when a step has more events (on GPUs each further
  pass, and the check for it, costs a device-to-host synchronisation, so ``chunk`` should cover
  a typical step; when ``max_spikes_per_step`` x the largest out-degree fits in one pass there
  is no loop). Up to the network's ``max_spikes_per_step`` spiking neurons are processed per
  step; more raise an error after the run (see :func:`neurocircuits.spiking.check_run`).

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
           "spike_list", "default_chunk", "PROPAGATIONS"]

PROPAGATIONS = ("dense", "gather", "event")


def _delay_steps(delay, dt, name="delay"):
    d = np.asarray(delay, np.float64)
    if not np.all(np.isfinite(d)) or np.any(d < 0):
        raise NeurocircuitsError(f"{name} must be finite and >= 0 ms, got {describe(delay)}.")
    return np.rint(d / dt).astype(np.int64)


def _add_delayed(buf, x, k, delay, receptor):
    """Add the input ``x`` of step ``k`` to the ring-buffer slot read at step ``k + 1 + delay``
    (an in-place dynamic-update-slice of one ``(1, 1, N)`` row)."""
    slot = ((k + 1 + delay) % buf.shape[0]).astype(jnp.int32)
    zero = jnp.zeros((), jnp.int32)
    row = jax.lax.dynamic_slice(buf, (slot, jnp.asarray(receptor, jnp.int32), zero),
                                (1, 1, buf.shape[2]))
    return jax.lax.dynamic_update_slice(buf, row + x.reshape(row.shape),
                                        (slot, jnp.asarray(receptor, jnp.int32), zero))


def spike_list(spiked, size: int):
    """The indices of the neurons that spiked, ascending, padded with ``n`` to length ``size``
    (the first ``size`` spikes when more spiked), and the number that spiked.

    The same as ``jnp.nonzero(spiked, size=size, fill_value=n)``, without its ``bincount``
    (a scatter-add of all N neurons into ``size`` bins, which serialises on GPU atomics): a
    cumulative sum gives each spike its position and one scatter writes the spikes only."""
    n = spiked.shape[0]
    csum = jnp.cumsum(spiked, dtype=jnp.int32)
    ar = jnp.arange(n, dtype=jnp.int32)
    # distinct out-of-range targets for silent neurons (dropped)
    tgt = jnp.where(spiked, csum - 1, size + n + ar)
    idx = jnp.full((size,), n, jnp.int32).at[tgt].set(ar, mode="drop")
    return idx, csum[-1]


def _upper_bound(cum, x):
    """For each ``x``, the number of entries of the ascending ``cum`` that are ``<= x``
    (a branch-free binary search, unrolled: one fused kernel, no loop)."""
    size = cum.shape[0]
    lo = jnp.zeros(x.shape, jnp.int32)
    step = 1 << (size.bit_length() - 1)
    while step:
        cand = lo + step
        ok = (cand <= size) & (cum[jnp.minimum(cand, size) - 1] <= x)
        lo = jnp.where(ok, cand, lo)
        step >>= 1
    return lo


def default_chunk(nnz: int, backend: str | None = None) -> int:
    """Synapse events per scatter pass of an event projection with ``nnz`` synapses: about the
    events of one step when the network fires at 10 Hz with dt = 0.1 ms (``nnz / 1000``),
    rounded to a power of two, within [2^17, 2^20] on GPUs and [256, 4096] on the CPU.

    On a GPU a pass is one kernel whose cost hardly depends on its size up to ~10^5 lanes,
    while every further pass (and the check whether one is needed) waits for the host; when
    ``max_spikes_per_step x`` the largest out-degree fits in one pass (COBA: 200 x ~110) the
    step has no loop at all. On the CPU the cost is linear in the lanes."""
    backend = jax.default_backend() if backend is None else backend
    lo, hi = (256, 4096) if backend == "cpu" else (1 << 17, 1 << 20)
    e = 1 << max(0, int(round(np.log2(max(1.0, nnz / 1000.0)))))
    return int(min(hi, max(lo, e)))


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
    ``indptr`` has ``N + 2`` entries (the last row is the empty padding row). Per step, the
    synapses of the spiking neurons (at most the network's ``max_spikes_per_step``) are laid out
    as one flat work list -- event ``i`` belongs to the spike whose cumulative out-degree first
    exceeds ``i`` -- and scattered into the ring buffer in passes of ``chunk`` events; unused
    slots of a pass are dropped (no writes). The first pass always runs; further passes run only
    when the step has more than ``chunk`` events. Per spike and synapse the additions happen in
    the same order as a row-by-row loop (spikes ascending, CSR order), so on the CPU the result
    does not depend on ``chunk``.
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
    chunk: int = eqx.field(static=True, default=4096)
    stp: TsodyksMarkram | None = None

    @property
    def max_delay(self) -> int:
        return self.max_delay_steps

    def deliver(self, buf, spiked, eff, k, idx=None, n_spikes=None):
        n = spiked.shape[0]
        if idx is None:
            idx, n_spikes = spike_list(spiked, n)
        n_slots = buf.shape[0]
        nnz = self.post.shape[0] - 1
        n_cap = idx.shape[0]
        start = self.indptr[idx]
        length = self.indptr[idx + 1] - start  # 0 for the padding index n
        cum = jnp.cumsum(length, dtype=jnp.int32)  # events up to and including each spike
        first = cum - length
        total = cum[-1]
        gain = jnp.concatenate([eff, jnp.zeros((1,), eff.dtype)])[idx]
        chunk = int(min(self.chunk, max(1, n_cap * self.max_out)))
        lane = jnp.arange(chunk, dtype=jnp.int32)

        def one_pass(c, buf):
            i = c * chunk + lane
            s = jnp.minimum(_upper_bound(cum, i), n_cap - 1)
            valid = i < total
            pos = jnp.where(valid, start[s] + (i - first[s]), nnz)
            w = self.weight[pos] * gain[s]
            if self.delays is None:
                slot = (k + 1 + self.delay) % n_slots
            else:
                slot = (k + 1 + self.delays[pos].astype(jnp.int32)) % n_slots
            # unused lanes target neuron n: out of range, dropped (no write, no atomic).
            # Indexing the (L, R, N) buffer itself, not a flattened view: XLA then updates it
            # in place (a reshape between the in-place updates made it copy the buffer)
            post = jnp.where(valid, self.post[pos], n)
            return buf.at[slot, self.receptor, post].add(w, mode="drop")

        buf = one_pass(jnp.zeros((), jnp.int32), buf)
        if n_cap * self.max_out > chunk:  # a step can have more events than one pass
            n_pass = (total + chunk - 1) // chunk
            buf = jax.lax.fori_loop(jnp.ones((), jnp.int32), n_pass, one_pass, buf)
        return buf


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
               chunk: int | None = None):
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
        chunk: event path only -- synapse events per scatter pass (default
            :func:`default_chunk`: about the events of a step at 10 Hz; a step with more events
            runs further passes).
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
    if chunk is None:
        chunk = default_chunk(edges.nnz)
    elif isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise NeurocircuitsError(f"chunk must be an int >= 1 (synapse events per scatter pass), "
                                 f"got {chunk!r}.")
    return EventProjection(indptr, post_s, w_s, d_s, int(receptor), d_const, max_d,
                           max(1, int(max_out)), dt_, int(chunk), stp)
