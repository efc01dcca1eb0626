"""Results on disk: observations streamed to Zarr per chunk, with an atomic checkpoint so an
interrupted run resumes and gives the same arrays as an uninterrupted one.

Layout of a :class:`RunStore` at ``path`` (a Zarr group readable by ``xarray.open_zarr``)::

    path/time, path/<variable> ...   observations, appended chunk by chunk
    path.checkpoint.npz              beside it: the state after the last complete chunk (atomic)

The checkpoint is written *after* the chunk's observations; on resume, observations beyond the
checkpoint (a crash between the two writes) are cut off, so what is on disk is always
consistent.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .errors import NeurocircuitsError, ResumeError

__all__ = ["RunStore", "dataset_to_zarr", "open_run"]

_CHECKPOINT_SUFFIX = ".checkpoint.npz"
_TIME_CHUNK = 1024


def _names(template: Any) -> tuple[list[str], Any]:
    """Variable names for the leaves of an observation pytree, and its treedef."""
    leaves, treedef = jax.tree.flatten(template)
    if isinstance(template, Mapping) and all(not isinstance(v, Mapping) for v in template.values()):
        names = [str(k) for k in template]  # jax sorts dict keys; so does this
        names = sorted(names)
    elif len(leaves) == 1 and treedef == jax.tree.structure(0):
        names = ["y"]
    else:
        names = [f"y{i}" for i in range(len(leaves))]
    return names, treedef


def _atomic_savez(path: Path, **arrays) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".npz")
    os.close(fd)
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class RunStore:
    """Streams a simulation's observations to Zarr and keeps a resumable checkpoint.

    Args:
        path: folder of the Zarr group (created; an existing one is replaced unless resuming).
        resume: continue from the checkpoint at ``path`` if there is one. A checkpoint of a
            different run (other model, state, key, dt, n_steps or record interval) raises
            :class:`~neurocircuits.ResumeError` instead of mixing two runs.

    Example:
        >>> store = nc.RunStore("run.zarr", resume=True)
        >>> traj = nc.simulate(net, u0, dt=0.1, n_steps=10**6, key=key,
        ...                    record=nc.Record(every=100, fn=obs), store=store)
    """

    def __init__(self, path: str | os.PathLike, *, resume: bool = False):
        self.path = Path(path)
        self.resume = bool(resume)
        self._group = None
        self._names: list[str] | None = None
        self._treedef = None
        self._time_axis = 0

    @property
    def _checkpoint_path(self) -> Path:
        return self.path.with_name(self.path.name + _CHECKPOINT_SUFFIX)

    # -- called by simulate -------------------------------------------------------------------
    def start(self, fingerprint: str, state0, bad0, *, n_steps: int, template: Any,
              record, batched: bool):
        """Open the store; return ``(step, state, bad)`` to continue from."""
        import zarr

        self._fingerprint = fingerprint
        self._names, self._treedef = _names(template)
        self._template = template
        self._record = record
        self._time_axis = 1 if batched else 0
        ckpt = self._checkpoint_path
        if self.resume and ckpt.exists():
            with np.load(ckpt) as z:
                saved = str(z["fingerprint"])
                if saved != fingerprint:
                    raise ResumeError(
                        f"The checkpoint in {self.path} belongs to another run (fingerprint "
                        f"{saved} != {fingerprint}): the model, initial state, key, dt, n_steps "
                        "or record interval differ. Resume with the original settings, or start "
                        "afresh without resume."
                    )
                step = int(z["step"])
                n_records = int(z["n_records"])
                leaves = [jnp.asarray(z[f"state_{i}"]) for i in range(int(z["n_leaves"]))]
                bad = jnp.asarray(z["bad"])
            state = jax.tree.unflatten(jax.tree.structure(state0), leaves)
            self._group = zarr.open_group(str(self.path), mode="a")
            for name in ["time", *self._names]:
                if name in self._group:
                    arr = self._group[name]
                    axis = 0 if name == "time" else self._time_axis
                    if arr.shape[axis] != n_records:
                        shape = list(arr.shape)
                        shape[axis] = n_records
                        arr.resize(tuple(shape))
            return step, state, bad
        if self.path.exists():
            shutil.rmtree(self.path)
        self._checkpoint_path.unlink(missing_ok=True)
        self.path.mkdir(parents=True)
        self._group = zarr.open_group(str(self.path), mode="w")
        return 0, state0, bad0

    def append(self, ts, ys, *, record, batched: bool) -> None:
        """Append one chunk of observations."""
        leaves = jax.tree.leaves(ys)
        dims = dict(record.dims)
        units = dict(record.units)
        for name, leaf in zip(["time", *self._names], [ts, *leaves]):
            data = np.asarray(leaf)
            axis = 0 if name == "time" else self._time_axis
            if name not in self._group:
                shape = list(data.shape)
                shape[axis] = 0
                chunks = list(data.shape)
                chunks[axis] = _TIME_CHUNK
                if name == "time":
                    dim_names = ("time",)
                else:
                    lead = ("batch", "time") if batched else ("time",)
                    rest = dims.get(name) or tuple(
                        f"{name}_dim{i}" for i in range(data.ndim - len(lead)))
                    dim_names = lead + tuple(rest)
                arr = self._group.create_array(name, shape=tuple(shape), chunks=tuple(chunks),
                                               dtype=data.dtype, dimension_names=dim_names)
                arr.attrs["units"] = "ms" if name == "time" else units.get(name, "")
            self._group[name].append(data, axis=axis)

    def checkpoint(self, state, bad, step: int) -> None:
        """Atomically record the state after ``step`` steps (after that chunk's append)."""
        leaves = jax.tree.leaves(state)
        n_records = self._group["time"].shape[0] if "time" in self._group else 0
        _atomic_savez(
            self._checkpoint_path,
            fingerprint=np.asarray(self._fingerprint),
            step=np.asarray(step),
            n_records=np.asarray(n_records),
            n_leaves=np.asarray(len(leaves)),
            bad=np.asarray(bad),
            **{f"state_{i}": np.asarray(x) for i, x in enumerate(leaves)},
        )
        _maybe_crash_for_tests(step)

    def load(self):
        """All observations so far: ``(ts, ys)`` as NumPy, ``ys`` in the recorded structure."""
        if "time" not in self._group:
            return np.zeros((0,)), None
        ts = self._group["time"][:]
        leaves = [self._group[name][:] for name in self._names]
        return ts, jax.tree.unflatten(self._treedef, leaves)

    def to_xarray(self):
        """The observations as a lazily loaded xarray Dataset."""
        return open_run(self.path)


def open_run(path: str | os.PathLike):
    """Open a :class:`RunStore` folder (or any run's ``data.zarr``) as an xarray Dataset."""
    import xarray as xr

    path = Path(path)
    if not path.exists():
        raise NeurocircuitsError(f"No run data at {path}.")
    return xr.open_zarr(path, consolidated=False)


def dataset_to_zarr(ds, path: str | os.PathLike) -> None:
    """Write an xarray Dataset to a new Zarr folder (replacing it), written beside and renamed."""
    path = Path(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        # Zarr format 2 with consolidated metadata: readable by every xarray/zarr version
        ds.to_zarr(tmp / "data", mode="w", consolidated=True, zarr_format=2)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp / "data", path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _maybe_crash_for_tests(step: int) -> None:
    """Fault injection for the resume test: a hard exit (no cleanup) after a checkpoint."""
    at = os.environ.get("NEUROCIRCUITS_TEST_CRASH_AFTER_STEP")
    if at is not None and step >= int(at):
        os._exit(137)
