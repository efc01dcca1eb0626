"""The one time loop: :func:`simulate` runs any model over ``lax.scan`` in chunks.

Chunking gives progress bars, bounded memory for recordings, incremental writes to disk and
resumable runs. Per-step randomness is ``fold_in(key, step)`` with the *global* step index, so a
run's result does not depend on how it is chunked or whether it was interrupted and resumed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import sys
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .errors import DivergenceError, NeurocircuitsError, describe
from .model import AbstractModel
from .record import Record, Trajectory, tree_nbytes
from .sharding import active as sharding_context
from .sharding import gather_neurons

__all__ = ["simulate", "Batch"]

#: Steps per chunk when ``chunk_steps`` is not given (also capped by recording memory).
DEFAULT_CHUNK_STEPS = 10_000
#: Device memory a chunk's recordings may take when ``chunk_steps`` is not given.
CHUNK_RECORD_BYTES = 64 * 2**20


@dataclasses.dataclass(frozen=True)
class Batch:
    """Which arguments of :func:`simulate` carry a leading batch axis (axis 0).

    Batched runs are ``vmap`` inside the compiled chunk: trials, seeds and parameter sweeps become
    one program. Models stay unbatched in code; you batch their *leaves*.

    Args:
        model: ``None`` (the model is shared by every batch element), ``True`` (every array leaf
            of the model has a batch axis 0), or a function ``where(model) -> leaf or tuple of
            leaves/submodules`` naming the batched parts (as in ``equinox.tree_at``), e.g.
            ``lambda m: m.coupling.g`` to sweep ``g`` over a shared random matrix.
        state: whether ``state0``'s leaves have a batch axis 0 (default ``True``).
        key: whether ``key`` is a batch of keys (default ``True``).
        inputs: whether array ``inputs`` carry a batch axis 1, after time (default ``False``).
    """

    model: Any = None
    state: bool = True
    key: bool = True
    inputs: bool = False


def _is_key(key) -> bool:
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return True
    return hasattr(key, "dtype") and key.dtype == jnp.uint32 and key.shape[-1:] == (2,)


def _check_key(key, batched: bool, batch_size: int | None):
    if not _is_key(key):
        raise NeurocircuitsError(
            f"key must be a JAX PRNG key (jax.random.key(seed)), got {describe(key)}. "
            "Every stochastic function takes an explicit key; there is no default."
        )
    typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    shape = key.shape if typed else key.shape[:-1]
    if batched:
        if len(shape) != 1 or (batch_size is not None and shape[0] != batch_size):
            raise NeurocircuitsError(
                f"batch.key=True needs one key per batch element, shape ({batch_size},), got "
                f"key shape {tuple(shape)}; use jax.random.split(key, {batch_size})."
            )
    elif len(shape) != 0:
        raise NeurocircuitsError(
            f"key must be a single PRNG key, got a batch of shape {tuple(shape)}; pass "
            "batch=Batch(...) for batched runs."
        )


def _is_traced(*trees) -> bool:
    return any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(trees))


def _all_finite(state) -> jax.Array:
    leaves = [x for x in jax.tree.leaves(state)
              if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
    if not leaves:
        return jnp.array(True)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def _make_chunk_fn(step_fn: Callable, record: Record, inputs_is_fn: bool, checkpoint: bool,
                   unroll: int = 1):
    """The unbatched chunk: ``n_rec`` observations, ``every`` steps each.

    ``j`` counts steps within the chunk (array inputs are sliced per chunk on the host and
    indexed by ``j``); ``step0 + j`` is the global step that keys and times depend on.
    """
    every = record.every

    def chunk(model, state, key, inputs, step0, dt, t0, bad, n_rec):
        def one_step(carry, j):
            state, bad = carry
            k = step0 + j
            t = t0 + k.astype(dt.dtype) * dt
            if inputs is None:
                inp = None
            elif inputs_is_fn:
                inp = inputs(t)
            else:
                inp = jax.tree.map(lambda x: x[j], inputs)
            new = step_fn(model, state, t, dt, jax.random.fold_in(key, k), inp)
            bad = jnp.where((bad < 0) & ~_all_finite(model.watched(new)), k, bad)
            return (new, bad), None

        def interval(carry, r):
            return jax.lax.scan(one_step, carry, r * every + jnp.arange(every, dtype=jnp.int32),
                                unroll=min(unroll, every))[0]

        if checkpoint:
            interval = jax.checkpoint(interval)

        def one_record(carry, r):
            carry = interval(carry, r)
            t_obs = t0 + (step0 + (r + 1) * every).astype(dt.dtype) * dt
            return carry, (t_obs, record.observe(gather_neurons(carry[0]), t_obs))

        if record.fn is _no_observation:
            (state, bad), _ = jax.lax.scan(one_step, (state, bad),
                                           jnp.arange(n_rec, dtype=jnp.int32),
                                           unroll=max(1, min(unroll, n_rec)))
            return state, bad, jnp.zeros((0,), dt.dtype), ()
        (state, bad), (ts, ys) = jax.lax.scan(one_record, (state, bad),
                                              jnp.arange(n_rec, dtype=jnp.int32))
        return state, bad, ts, ys

    return chunk


def _no_observation(state, t):
    return ()


#: ``record=None``: no observations, one flat scan over steps (no nested observation loop)
_FINAL_STATE_ONLY = Record(every=1, fn=_no_observation)


def _model_step(model, state, t, dt, key, inputs):
    return model.step(state, t, dt, key, inputs)


@eqx.filter_jit
def _run_chunk(model, state, key, inputs, step0, dt, t0, bad, *, n_rec, record, inputs_is_fn,
               checkpoint, batch_spec, model_filter, sharding=None, unroll=1):
    with sharding_context(sharding):
        return _run_chunk_body(model, state, key, inputs, step0, dt, t0, bad, n_rec, record,
                               inputs_is_fn, checkpoint, batch_spec, model_filter, unroll)


def _run_chunk_body(model, state, key, inputs, step0, dt, t0, bad, n_rec, record, inputs_is_fn,
                    checkpoint, batch_spec, model_filter, unroll=1):
    chunk = _make_chunk_fn(_model_step, record, inputs_is_fn, checkpoint, unroll)
    if batch_spec is None:
        return chunk(model, state, key, inputs, step0, dt, t0, bad, n_rec)
    state_ax, key_ax, inputs_ax = batch_spec
    batched_model, shared_model = eqx.partition(model, model_filter)

    def one(bm, s, k, inp, b):
        return chunk(eqx.combine(bm, shared_model), s, k, inp, step0, dt, t0, b, n_rec)

    in_axes = (0, 0 if state_ax else None, 0 if key_ax else None,
               (1 if inputs_ax else None) if not inputs_is_fn else None, 0)
    out = jax.vmap(one, in_axes=in_axes)(batched_model, state, key, inputs, bad)
    state, bad, ts, ys = out
    return state, bad, ts[0], ys


def _model_filter(model, spec) -> Any:
    """A bool pytree for ``eqx.partition``: True on batched array leaves."""
    if spec is None:
        return jax.tree.map(lambda _: False, model)
    if spec is True:
        return jax.tree.map(eqx.is_array, model)
    if callable(spec):
        falses = jax.tree.map(lambda _: False, model)
        try:
            return eqx.tree_at(spec, falses, replace_fn=lambda node: jax.tree.map(
                lambda _: True, node) if node is not None else True)
        except Exception as err:
            raise NeurocircuitsError(
                f"Batch(model=...) could not select parts of the model: {err}"
            ) from err
    raise NeurocircuitsError(
        f"Batch(model=...) must be None, True or a function model -> parts, got {spec!r}."
    )


def _batch_size(state, model, model_filter, batch: Batch) -> int:
    sizes = set()
    if batch.state:
        sizes |= {np.shape(x)[0] if np.ndim(x) else None for x in jax.tree.leaves(state)}
    batched_model, _ = eqx.partition(model, model_filter)
    sizes |= {np.shape(x)[0] if np.ndim(x) else None for x in jax.tree.leaves(batched_model)}
    if None in sizes or len(sizes) != 1:
        raise NeurocircuitsError(
            f"Batched leaves must share one leading batch axis; found leading sizes {sizes} "
            "(None = a scalar leaf marked as batched)."
        )
    return sizes.pop()


def _fingerprint(model, state0, key, dt, n_steps, record, t0) -> str:
    """A cheap identity of a run, to refuse resuming a different one."""
    h = hashlib.sha256()
    h.update(repr((float(dt), int(n_steps), record.every, float(t0))).encode())
    # the tree structure without memory addresses of static callables
    h.update(re.sub(r" at 0x[0-9a-f]+", "", str(jax.tree.structure((model, state0)))).encode())
    for leaf in jax.tree.leaves((model, state0)):
        if eqx.is_array(leaf):
            h.update(repr((tuple(leaf.shape), str(leaf.dtype))).encode())
            size = int(np.prod(leaf.shape))
            # a strided sample, taken on the device: never copy a large matrix to the host
            sample = jnp.ravel(leaf)[:: max(1, size // 4096)]
            h.update(np.ascontiguousarray(np.asarray(sample)).tobytes())
    kd = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    h.update(np.asarray(kd).tobytes())
    return h.hexdigest()[:16]


def _default_chunk_steps(n_steps, every, bytes_per_record):
    per_chunk = max(1, CHUNK_RECORD_BYTES // max(1, bytes_per_record))
    steps = min(n_steps, max(every, DEFAULT_CHUNK_STEPS), per_chunk * every)
    return max(every, (steps // every) * every)


def _host_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        return 2**40


def _raise_divergence(model, state, bad_step, dt, t0, batched):
    names = []
    flat, _ = jax.tree_util.tree_flatten_with_path(state)
    for path, leaf in flat:
        if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact) and not np.all(
            np.isfinite(np.asarray(leaf))
        ):
            names.append(jax.tree_util.keystr(path) or "state")
    where = ""
    if batched:
        first = int(np.argmax(np.where(bad_step >= 0, 1, 0)))
        where = f" in batch element {first}"
        bad_step = np.asarray(bad_step)[first]
    k = int(bad_step)
    hint = getattr(model, "divergence_hint", "")
    raise DivergenceError(
        f"Simulation diverged{where}: the state became NaN/Inf at step {k} "
        f"(t = {t0 + (k + 1) * dt:g} ms) in {', '.join(names) or 'the state'}. Likely causes: "
        f"dt = {dt:g} ms is too large for the fastest time scale, or the parameters make the "
        f"dynamics unstable. {hint}".rstrip()
    )


def simulate(
    model: AbstractModel,
    state0: Any,
    *,
    dt: float,
    n_steps: int,
    key: jax.Array,
    inputs: Any = None,
    record: Record | None = None,
    t0: float = 0.0,
    chunk_steps: int | None = None,
    batch: Batch | None = None,
    progress: bool | None = None,
    store: Any = None,
    checkpoint: bool = False,
    sharding: Any = None,
    unroll: int = 1,
) -> Trajectory:
    """Run ``model`` from ``state0`` for ``n_steps`` steps of ``dt`` ms.

    The loop is a ``lax.scan`` compiled once per chunk length. Step ``k`` (global, from 0) uses
    the key ``fold_in(key, k)`` and time ``t0 + k * dt``; inputs are ``inputs(t)`` (a function)
    or ``inputs[k]`` (arrays with a leading time axis of length ``n_steps``).

    Args:
        model: any :class:`~neurocircuits.AbstractModel`.
        state0: the initial state (a pytree, see the model's docs).
        dt: step size in ms (> 0).
        n_steps: number of steps (>= 1, a multiple of ``record.every``).
        key: a PRNG key (``jax.random.key(seed)``), required even for deterministic models so
            that results never depend on hidden state.
        inputs: ``None``, a function ``t -> pytree``, or a pytree of arrays ``(n_steps, ...)``.
        record: which observables to keep (:class:`Record`); ``None`` keeps only the final
            state (the fastest loop: no observations).
        t0: start time in ms.
        chunk_steps: steps per compiled chunk (a multiple of ``record.every``); the default keeps
            a chunk's recordings under 64 MiB.
        batch: a :class:`Batch` to run many instances in one program (``vmap``).
        progress: show a progress bar (default: when there is more than one chunk and stderr is
            a terminal).
        store: a :class:`~neurocircuits.RunStore` that receives each chunk's observations and a
            checkpoint of the state, so an interrupted run can resume (``RunStore(path,
            resume=True)``) with identical results.
        checkpoint: rematerialise each observation interval in the backward pass
            (``jax.checkpoint``): memory for gradients grows with ``n_steps / every``, not
            ``n_steps``.
        sharding: a :class:`~neurocircuits.NeuronSharding` to split one network's neurons
            over several devices (results identical to the single-device run).
        unroll: steps per iteration of the compiled time loop (``lax.scan(unroll=)``; within an
            observation interval, at most ``record.every``). Every loop iteration costs a few
            microseconds on a GPU, so for small, latency-bound steps ``unroll=4..16`` is faster;
            compile time grows with it. The default (1) is the plain loop. Other values compute
            the same steps, but the compiler may fuse consecutive steps and evaluate a
            transcendental function (XLA's ``exp`` on the CPU is not correctly rounded) in
            another context, so the last bit of a float can differ (tests: identical spikes,
            states equal to float32 rounding; bit-identical for rate networks).

    Returns:
        A :class:`Trajectory`.

    Raises:
        DivergenceError: the state became NaN/Inf (host-driven runs; under ``jit``/``vmap``/
            ``grad`` the step is reported in ``Trajectory.diverged_at`` instead).

    Under a JAX transformation (``jit``, ``vmap``, ``grad``) the whole run is one scan: no
    chunks, no progress bar and no store.

    Example:
        >>> import jax, neurocircuits as nc
        >>> net = nc.rate.RateNetwork.random(jax.random.key(0), 200, g=2.0)
        >>> traj = nc.simulate(net, net.initial_state(jax.random.key(1)), dt=1.0, n_steps=500,
        ...                    key=jax.random.key(2), record=nc.Record(every=10))
    """
    record = _FINAL_STATE_ONLY if record is None else record
    if not isinstance(record, Record):
        raise NeurocircuitsError(f"record must be a neurocircuits.Record, got {describe(record)}.")
    if not isinstance(model, AbstractModel):
        raise NeurocircuitsError(
            f"model must be a neurocircuits model (AbstractModel), got {type(model).__name__}."
        )
    if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or n_steps < 1:
        raise NeurocircuitsError(f"n_steps must be an integer >= 1, got {n_steps!r}.")
    n_steps = int(n_steps)
    if n_steps % record.every:
        raise NeurocircuitsError(
            f"n_steps = {n_steps} is not a multiple of record.every = {record.every}; choose "
            f"n_steps = {n_steps - n_steps % record.every or record.every} or another interval."
        )
    traced = _is_traced(model, state0, key, inputs, dt, t0)
    if not traced:
        dt_val = np.asarray(dt)
        if dt_val.shape != () or not np.isfinite(dt_val) or dt_val <= 0:
            raise NeurocircuitsError(f"dt must be a finite number > 0 (ms), got {describe(dt)}.")
    inputs_is_fn = callable(inputs) and not eqx.is_array(inputs)
    if inputs is not None and not inputs_is_fn:
        for leaf in jax.tree.leaves(inputs):
            if np.shape(leaf)[:1] != (n_steps,):
                raise NeurocircuitsError(
                    f"array inputs need a leading time axis of length n_steps = {n_steps}, got "
                    f"shape {np.shape(leaf)}; pass a function t -> input for time-continuous "
                    "inputs."
                )
    batch_spec, model_filter, batch_size = None, None, None
    if batch is not None:
        if not isinstance(batch, Batch):
            raise NeurocircuitsError(f"batch must be a neurocircuits.Batch, got {batch!r}.")
        model_filter = _model_filter(model, batch.model)
        batch_size = _batch_size(state0, model, model_filter, batch)
        batch_spec = (batch.state, batch.key, batch.inputs)
    _check_key(key, batch is not None and batch.key, batch_size)
    if not traced and batch is None:
        model.check_state(state0)
    if sharding is not None:
        if traced:
            raise NeurocircuitsError(
                "sharding= cannot be used under jit/vmap/grad; place the arrays with "
                "NeuronSharding.place(...) before the transformation instead."
            )
        model, state0 = sharding.place(model, state0,
                                       batched_state=batch is not None and batch.state)

    dt_arr = jnp.asarray(dt, dtype=jnp.result_type(float))
    t0_arr = jnp.asarray(t0, dtype=dt_arr.dtype)
    bad0 = jnp.full((batch_size,) if batch_size else (), -1, jnp.int32)
    if isinstance(unroll, bool) or not isinstance(unroll, (int, np.integer)) or unroll < 1:
        raise NeurocircuitsError(f"unroll must be an int >= 1 (steps per loop iteration), got "
                                 f"{unroll!r}.")
    kwargs = dict(record=record, inputs_is_fn=inputs_is_fn, checkpoint=checkpoint,
                  batch_spec=batch_spec, model_filter=model_filter, sharding=sharding,
                  unroll=int(unroll))

    if traced:
        state, bad, ts, ys = _run_chunk(model, state0, key, inputs, jnp.int32(0), dt_arr, t0_arr,
                                        bad0, n_rec=n_steps // record.every, **kwargs)
        return Trajectory(ts, ys, state, bad, record, batch is not None)

    # ---- host-driven, chunked ----
    one_obs = jax.eval_shape(lambda s: record.observe(s, t0_arr), _unbatched_state(state0, batch))
    bytes_per_record = tree_nbytes(one_obs) * (batch_size or 1)
    n_records = n_steps // record.every
    if chunk_steps is None:
        chunk_steps = _default_chunk_steps(n_steps, record.every, bytes_per_record)
    elif (isinstance(chunk_steps, bool) or not isinstance(chunk_steps, (int, np.integer))
          or chunk_steps < 1 or chunk_steps % record.every):
        raise NeurocircuitsError(
            f"chunk_steps must be a positive multiple of record.every = {record.every}, got "
            f"{chunk_steps!r}."
        )
    total_record_bytes = bytes_per_record * n_records
    if store is None and total_record_bytes > 0.5 * _host_memory_bytes():
        raise NeurocircuitsError(
            f"The recordings would take {total_record_bytes / 2**30:.1f} GiB of host memory "
            f"({n_records} observations x {bytes_per_record / 2**20:.2f} MiB), more than half "
            "of this machine's memory. Record less often (Record(every=...)), record fewer "
            "variables or neurons (Record(fn=...)), run fewer trials, or stream to disk "
            "(store=RunStore(path))."
        )

    step, state, bad = 0, state0, bad0
    fingerprint = None
    if store is not None:
        fingerprint = _fingerprint(model, state0, key, dt, n_steps, record, t0)
        step, state, bad = store.start(fingerprint, state0, bad0, n_steps=n_steps,
                                       template=one_obs, record=record, batched=batch is not None)

    ts_parts, ys_parts = [], []
    n_chunks = -(-(n_steps - step) // chunk_steps)
    show = progress if progress is not None else (n_chunks > 1 and sys.stderr.isatty())
    bar = _Progress(n_steps, step, enabled=show)
    try:
        while step < n_steps:
            n = min(chunk_steps, n_steps - step)
            inp = inputs
            if inputs is not None and not inputs_is_fn:
                inp = jax.tree.map(lambda x: jnp.asarray(x[step:step + n]), inputs)
            state, bad, ts, ys = _run_chunk(model, state, key, inp, jnp.int32(step), dt_arr,
                                            t0_arr, bad, n_rec=n // record.every, **kwargs)
            if np.any(np.asarray(bad) >= 0):
                _raise_divergence(model, state, np.asarray(bad), float(dt), float(t0),
                                  batch is not None)
            step += n
            if store is not None:
                store.append(ts, ys, record=record, batched=batch is not None)
                store.checkpoint(state, bad, step)
            else:
                ts_parts.append(np.asarray(ts))
                ys_parts.append(jax.tree.map(np.asarray, ys))
            bar.advance(n)
    finally:
        bar.close()

    if store is not None:
        ts_all, ys_all = store.load()
    else:
        axis = 1 if batch is not None else 0
        ts_all = np.concatenate(ts_parts) if ts_parts else np.zeros((0,))
        ys_all = jax.tree.map(lambda *xs: np.concatenate(xs, axis=axis), *ys_parts) \
            if ys_parts else None
    if record.fn is _no_observation:
        ys_all = None
    return Trajectory(jnp.asarray(ts_all), ys_all, state, bad, record, batch is not None)


def _unbatched_state(state0, batch):
    if batch is None or not batch.state:
        return state0
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x)[1:], jnp.result_type(x)),
                        state0)


class _Progress:
    """A rich progress bar over steps, drawn between chunks."""

    def __init__(self, total: int, done: int, *, enabled: bool):
        self._bar = None
        if enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress("simulate", BarColumn(), MofNCompleteColumn(), "steps",
                                 TimeElapsedColumn(), TimeRemainingColumn(),
                                 console=Console(stderr=True), transient=False)
            self._task = self._bar.add_task("simulate", total=total, completed=done)
            self._bar.start()

    def advance(self, n: int):
        if self._bar is not None:
            self._bar.advance(self._task, n)

    def close(self):
        if self._bar is not None:
            self._bar.stop()
