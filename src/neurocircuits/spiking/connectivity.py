r"""Synapse lists for spiking networks: keyed builders that return :class:`Edges`.

An :class:`Edges` is a flat list of synapses ``(pre, post, weight, delay)`` in *global* neuron
indices of one network; lists from several builders are joined with :func:`concat` and turned
into a projection (dense, gather or event-driven, see :mod:`neurocircuits.spiking.propagation`).
Builders run on the device from a key, with memory O(number of synapses):

* :func:`fixed_probability` -- every pair is connected independently with probability ``p``
  (Bernoulli; as ``connect(p=...)`` in Brian2), as in the COBA benchmark (Brette et al. 2007).
* :func:`fixed_total_number` -- ``n_syn`` synapses with uniformly drawn pre and post neurons
  (multapses allowed), as in the Potjans & Diesmann (2014) microcircuit.
* :func:`from_fixed_in_degree` -- the synapses of a
  :class:`~neurocircuits._core.connectivity.SparseFixedInDegree` (Brunel 2000), built with
  :func:`neurocircuits._core.connectivity.fixed_in_degree`.
* :func:`gap_junction_pairs` -- symmetric pairs within one class of cells.

Units: weights carry the unit of the receptor they feed (nS conductance, pA current, mV jump);
delays are in ms and are turned into steps by the projections.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._core.connectivity import SparseFixedInDegree, fixed_in_degree
from .._core.errors import NeurocircuitsError, check_int, describe

__all__ = [
    "Edges",
    "concat",
    "fixed_probability",
    "fixed_total_number",
    "from_fixed_in_degree",
    "fixed_in_degree_edges",
    "gap_junction_pairs",
]


class Edges(eqx.Module):
    """A list of synapses in global neuron indices.

    Attributes:
        pre, post: int32 arrays ``(nnz,)``.
        weight: float array ``(nnz,)`` (unit of the receptor: nS, pA or mV).
        delay: float array ``(nnz,)`` in ms, or ``None`` (the projection's homogeneous delay).
    """

    pre: jax.Array
    post: jax.Array
    weight: jax.Array
    delay: jax.Array | None = None

    def __check_init__(self):
        n = np.shape(self.pre)
        for name in ("post", "weight") + (("delay",) if self.delay is not None else ()):
            if np.shape(getattr(self, name)) != n:
                raise NeurocircuitsError(
                    f"Edges.{name} must have the shape of Edges.pre {n}, got "
                    f"{describe(getattr(self, name))}."
                )

    @property
    def nnz(self) -> int:
        return int(np.shape(self.pre)[0])

    def with_delay(self, delay: Any) -> Edges:
        """The same synapses with ``delay`` (ms): a scalar or an array ``(nnz,)``."""
        d = jnp.broadcast_to(jnp.asarray(delay, jnp.float32), (self.nnz,))
        return Edges(self.pre, self.post, self.weight, d)

    def to_dense(self, n_post: int, n_pre: int) -> jax.Array:
        """The weight matrix ``(n_post, n_pre)`` (multapses add up)."""
        return jnp.zeros((n_post, n_pre), self.weight.dtype).at[self.post, self.pre].add(
            self.weight)


def concat(*edges: Edges) -> Edges:
    """Join synapse lists (delays must be all given or all ``None``)."""
    if not edges:
        raise NeurocircuitsError("concat needs at least one Edges.")
    has = {e.delay is not None for e in edges}
    if len(has) != 1:
        raise NeurocircuitsError(
            "concat: some Edges have per-synapse delays and some do not; give every list a "
            "delay with Edges.with_delay(ms) first."
        )
    cat = lambda name: jnp.concatenate([getattr(e, name) for e in edges])  # noqa: E731
    return Edges(cat("pre").astype(jnp.int32), cat("post").astype(jnp.int32),
                 cat("weight"), cat("delay") if has.pop() else None)


def _weights(key, weight, n, dtype):
    if callable(weight):
        w = jnp.asarray(weight(key, n), dtype)
        if w.shape != (n,):
            raise NeurocircuitsError(
                f"weight(key, n) must return an array of shape (n,) = ({n},), got {describe(w)}."
            )
        return w
    w = jnp.asarray(weight, dtype)
    if w.ndim != 0:
        raise NeurocircuitsError(
            f"weight must be a scalar or a callable weight(key, n) -> (n,), got {describe(w)}."
        )
    return jnp.full((n,), w, dtype)


def _check_p(p):
    arr = np.asarray(p)
    if arr.shape != () or not np.isfinite(arr) or not 0.0 <= arr <= 1.0:
        raise NeurocircuitsError(f"p must be a probability in [0, 1], got {describe(p)}.")
    return float(arr)


@functools.partial(jax.jit, static_argnames=("n_post", "rows", "cap", "exclude_self"))
def _bernoulli_block(key, p, r0, valid_rows, *, n_post, rows, cap, exclude_self):
    """One block of ``rows`` presynaptic rows: flat indices ``row * n_post + post`` of the
    connected pairs (row-major order, padded with -1 to ``cap``; the mask itself when ``cap``
    is None) and their number."""
    mask = jax.random.uniform(key, (rows, n_post)) < p
    r = jnp.arange(rows)[:, None]
    mask = mask & (r < valid_rows)
    if exclude_self:
        mask = mask & (r + r0 != jnp.arange(n_post)[None, :])
    if cap is None:
        return mask, jnp.sum(mask)
    return jnp.flatnonzero(mask, size=cap, fill_value=-1).astype(jnp.int32), jnp.sum(mask)


@functools.partial(jax.jit, static_argnames=("n_post",))
def _compact_blocks(flat, starts, *, n_post):
    """The valid entries of the padded blocks ``flat`` (n_blocks, cap) as (pre, post), first
    in the returned arrays (the rest is padding): compiled once per block layout, not once per
    synapse count."""
    cap = flat.shape[1]
    pos = jnp.flatnonzero(flat.reshape(-1) >= 0, size=flat.size, fill_value=0)
    sel = flat.reshape(-1)[pos]
    return sel // n_post + starts[pos // cap], sel % n_post


_CAP_SDS = 8.0  # room per block for the synapse count: mean + _CAP_SDS s.d.


def _compact_on_device() -> bool:
    return jax.default_backend() != "cpu"


def fixed_probability(key: jax.Array, n_post: int, n_pre: int, p: float, *, weight: Any = 1.0,
                      pre_offset: int = 0, post_offset: int = 0, allow_autapses: bool = True,
                      dtype=jnp.float32) -> Edges:
    r"""Connect every (pre, post) pair independently with probability ``p`` (Bernoulli).

    Built on the device in blocks of presynaptic rows (memory O(block x n_post + nnz)); only the
    number of synapses of each block crosses to the host (it sets the array sizes). Synapses are
    ordered by presynaptic, then postsynaptic index. Use :func:`fixed_total_number` for
    networks too large for ``n_pre x n_post`` uniform draws.

    Args:
        key: PRNG key.
        n_post, n_pre: population sizes (ints >= 1).
        p: connection probability in [0, 1].
        weight: a scalar, or ``weight(key, n) -> (n,)`` for random weights (unit of the receptor).
        pre_offset, post_offset: global index of the first neuron of each population.
        allow_autapses: when ``False`` and both populations are the same (same offset and size),
            ``i -> i`` synapses are dropped.
        dtype: weight dtype.

    Example:
        >>> e = fixed_probability(jax.random.key(0), 4000, 3200, 0.02, weight=6.0)  # COBA E
    """
    n_post = check_int(n_post, "n_post", minimum=1)
    n_pre = check_int(n_pre, "n_pre", minimum=1)
    p = _check_p(p)
    k_adj, k_w = jax.random.split(key)
    rows = max(1, min(n_pre, (1 << 24) // n_post))
    exclude_self = n_post == n_pre and pre_offset == post_offset and not allow_autapses
    # room for the block's binomial count up to mean + 8 s.d. (a larger count redraws the
    # block's pairs with room for all of them: same numbers)
    mean = p * rows * n_post
    cap = min(rows * n_post,
              max(1024, -(-int(mean + _CAP_SDS * math.sqrt(mean) + 64) // 1024) * 1024))
    on_device = _compact_on_device()
    if not on_device:
        cap = None
    starts = list(range(0, n_pre, rows))
    blocks = [_bernoulli_block(jax.random.fold_in(k_adj, b), p, r0, n_pre - r0, n_post=n_post,
                               rows=rows, cap=cap, exclude_self=exclude_self)
              for b, r0 in enumerate(starts)]
    counts = [int(c) for _, c in blocks]
    if on_device and max(counts) > cap:
        blocks = [_bernoulli_block(jax.random.fold_in(k_adj, b), p, r0, n_pre - r0,
                                   n_post=n_post, rows=rows, cap=rows * n_post,
                                   exclude_self=exclude_self)
                  for b, r0 in enumerate(starts)]
    total = sum(counts)
    if on_device:
        flat = jnp.stack([f for f, _ in blocks])
        pre, post = _compact_blocks(flat, jnp.asarray(starts, jnp.int32), n_post=n_post)
        pre, post = pre[:total], post[:total]
    else:  # the CPU backend: the device is the host, where numpy compacts without compiling
        nz = [np.nonzero(np.asarray(mask)) for mask, _ in blocks]
        pre = jnp.asarray(np.concatenate([i + r0 for (i, _), r0 in zip(nz, starts)]))
        post = jnp.asarray(np.concatenate([j for _, j in nz]))
    return Edges((pre + pre_offset).astype(jnp.int32), (post + post_offset).astype(jnp.int32),
                 _weights(k_w, weight, total, dtype))


def fixed_total_number(key: jax.Array, n_post: int, n_pre: int, n_syn: int, *,
                       weight: Any = 1.0, pre_offset: int = 0, post_offset: int = 0,
                       dtype=jnp.float32) -> Edges:
    r"""``n_syn`` synapses whose pre and post neurons are drawn uniformly and independently
    (multapses and autapses allowed), the rule of the Potjans & Diesmann (2014) microcircuit.

    Args:
        key: PRNG key.
        n_post, n_pre: population sizes.
        n_syn: number of synapses (int >= 0).
        weight: a scalar or ``weight(key, n) -> (n,)``.
        pre_offset, post_offset: global index of each population's first neuron.
        dtype: weight dtype.
    """
    n_post = check_int(n_post, "n_post", minimum=1)
    n_pre = check_int(n_pre, "n_pre", minimum=1)
    n_syn = check_int(n_syn, "n_syn", minimum=0)
    k1, k2, k3 = jax.random.split(key, 3)
    pre = jax.random.randint(k1, (n_syn,), 0, n_pre, jnp.int32) + pre_offset
    post = jax.random.randint(k2, (n_syn,), 0, n_post, jnp.int32) + post_offset
    return Edges(pre.astype(jnp.int32), post.astype(jnp.int32), _weights(k3, weight, n_syn, dtype))


def from_fixed_in_degree(sparse: SparseFixedInDegree, *, pre_offset: int = 0,
                         post_offset: int = 0) -> Edges:
    """The synapses of a :class:`~neurocircuits._core.connectivity.SparseFixedInDegree`."""
    if not isinstance(sparse, SparseFixedInDegree):
        raise NeurocircuitsError(
            f"from_fixed_in_degree needs a SparseFixedInDegree, got {type(sparse).__name__}.")
    n_post, k = sparse.indices.shape
    post = jnp.repeat(jnp.arange(n_post, dtype=jnp.int32), k) + post_offset
    pre = sparse.indices.reshape(-1).astype(jnp.int32) + pre_offset
    return Edges(pre, post, sparse.synapse_weights().reshape(-1))


def fixed_in_degree_edges(key: jax.Array, n_post: int, n_pre: int, k: int, *,
                          weight: Any = 1.0, pre_offset: int = 0, post_offset: int = 0,
                          allow_autapses: bool = True, allow_multapses: bool = False) -> Edges:
    """Every post neuron receives exactly ``k`` synapses (Brunel 2000): :func:`fixed_in_degree`
    of the core, returned as :class:`Edges` in global indices. ``weight`` is a scalar."""
    w = jnp.asarray(weight, jnp.float32)
    if w.ndim != 0:
        raise NeurocircuitsError(f"weight must be a scalar here, got {describe(weight)}.")
    same = n_post == n_pre and pre_offset == post_offset
    sp = fixed_in_degree(key, n_post, n_pre, k, weight=w,
                         allow_autapses=allow_autapses or not same,
                         allow_multapses=allow_multapses)
    return from_fixed_in_degree(sp, pre_offset=pre_offset, post_offset=post_offset)


def gap_junction_pairs(key: jax.Array, members: Any, k: int) -> tuple[jax.Array, jax.Array]:
    """Symmetric electrical coupling within one class: each member picks ``k`` partners
    uniformly among the other members and every pair is made bidirectional.

    Returns:
        ``(src, dst)`` int32 arrays listing each directed pair (both directions present), for
        :class:`~neurocircuits.spiking.synapses.GapJunctions`.
    """
    members = jnp.asarray(members, jnp.int32)
    if members.ndim != 1 or members.shape[0] < 2:
        raise NeurocircuitsError(
            f"members must list at least 2 neuron indices (1-d int array), got {describe(members)}.")
    m = int(members.shape[0])
    k = check_int(k, "k", minimum=1)
    if k > m - 1:
        raise NeurocircuitsError(f"k={k} gap-junction partners exceed the {m - 1} other members.")
    sp = fixed_in_degree(key, m, m, k, allow_autapses=False)
    a = jnp.repeat(jnp.arange(m, dtype=jnp.int32), k)
    b = sp.indices.reshape(-1).astype(jnp.int32)
    src = jnp.concatenate([members[b], members[a]])
    dst = jnp.concatenate([members[a], members[b]])
    return src, dst
