"""What a simulation keeps: :class:`Record` chooses observables, :class:`Trajectory` holds them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .errors import NeurocircuitsError

__all__ = ["Record", "Trajectory"]


def _freeze(mapping: Mapping | None) -> tuple:
    return tuple(sorted((k, tuple(v) if isinstance(v, (list, tuple)) else v)
                        for k, v in (mapping or {}).items()))


@dataclasses.dataclass(frozen=True)
class Record:
    """Which observables to keep, and how often.

    Args:
        every: record once every ``every`` steps (after the step). Memory for recordings is
            ``n_steps / every`` times the size of one observation.
        fn: ``fn(state, t) -> pytree of arrays`` (a dict gives named variables); ``None`` records
            the whole state. Keep observables small: record population averages or a subset of
            neurons, not the full state of a large network.
        dims: names of the non-time dimensions of each recorded variable, e.g.
            ``{"u": ("neuron",)}``; used by :meth:`Trajectory.to_xarray`.
        units: unit strings per variable, e.g. ``{"u": "1"}``; stored as xarray attributes.

    Example:
        >>> Record(every=10, fn=lambda u, t: {"mean_rate": u.mean()})
    """

    every: int = 1
    fn: Callable[[Any, Any], Any] | None = None
    dims: Any = None
    units: Any = None

    def __post_init__(self):
        if isinstance(self.every, bool) or not isinstance(self.every, (int, np.integer)) \
                or self.every < 1:
            raise NeurocircuitsError(
                f"Record(every=...) must be an integer >= 1 (steps between observations), "
                f"got {self.every!r}."
            )
        object.__setattr__(self, "dims", _freeze(self.dims))
        object.__setattr__(self, "units", _freeze(self.units))

    def observe(self, state: Any, t: Any) -> Any:
        return state if self.fn is None else self.fn(state, t)


class Trajectory(eqx.Module):
    """The result of :func:`~neurocircuits.simulate`.

    Attributes:
        ts: times of the observations (ms), shape ``(n_records,)``; observation ``j`` is taken
            after step ``(j + 1) * every``.
        ys: the recorded observables, a pytree whose leaves have a leading axis of length
            ``n_records`` (after the batch axis when the run is batched).
        final_state: the state after the last step.
        diverged_at: the first step whose result was not finite, ``-1`` if none (per batch
            element when batched). Host-driven runs raise :class:`DivergenceError` instead;
            this field matters for runs under ``jit``/``vmap``/``grad``.
    """

    ts: jax.Array
    ys: Any
    final_state: Any
    diverged_at: jax.Array
    record: Record = eqx.field(static=True)
    batched: bool = eqx.field(static=True, default=False)

    def to_xarray(self, *, attrs: Mapping[str, Any] | None = None):
        """The observables as an :class:`xarray.Dataset` with named dims and units in attrs."""
        import xarray as xr

        dims = dict(self.record.dims)
        units = dict(self.record.units)
        ys = self.ys
        if not isinstance(ys, Mapping):
            ys = {"y": ys}
        data_vars = {}
        for name, value in ys.items():
            arr = np.asarray(value)
            lead = ("batch", "time") if self.batched else ("time",)
            rest = dims.get(name)
            if rest is None:
                rest = tuple(f"{name}_dim{i}" for i in range(arr.ndim - len(lead)))
            if len(lead) + len(rest) != arr.ndim:
                raise NeurocircuitsError(
                    f"Record dims for {name!r} name {len(rest)} dimension(s) {rest}, but the "
                    f"recorded array has shape {arr.shape} (leading {lead})."
                )
            var_attrs = {"units": units[name]} if name in units else {}
            data_vars[name] = xr.Variable(lead + tuple(rest), arr, attrs=var_attrs)
        ds = xr.Dataset(data_vars, coords={"time": ("time", np.asarray(self.ts))})
        ds["time"].attrs["units"] = "ms"
        ds.attrs.update(attrs or {})
        return ds


def tree_nbytes(tree: Any) -> int:
    """Bytes held by the array leaves of a pytree (works on ShapeDtypeStructs)."""
    return int(sum(np.prod(x.shape) * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)))
