"""The experiment contract: a typed configuration with quick/full defaults, a ``run`` function, and
the writer of a run directory (summary.json, config.toml, data.zarr, figures, report.html).

An experiment module defines a frozen dataclass of :func:`param` fields and an
:class:`Experiment` named ``EXPERIMENT``::

    @dataclasses.dataclass(frozen=True)
    class Config:
        n: int = param(8000, quick=1000, low=10, help="number of units")

    def run(config: Config, key: jax.Array, ctx: Context) -> Result: ...

    EXPERIMENT = Experiment("rate-chaos", "SCS chaos transition vs DMFT", Config, run)
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._core.errors import ConfigError

__all__ = ["param", "Experiment", "Result", "Context", "build_config", "write_run"]

SCALES = ("quick", "full")


def param(full: Any, *, quick: Any = dataclasses.MISSING, help: str = "", low: float | None = None,
          high: float | None = None, choices: tuple | None = None, unit: str = "") -> Any:
    """A configuration field: its ``full``-scale default, the ``quick`` one, and its bounds."""
    meta = dict(quick=full if quick is dataclasses.MISSING else quick, help=help, low=low,
                high=high, choices=choices, unit=unit)
    if isinstance(full, (list, dict, set)):
        raise TypeError("use tuples for sequence parameters (configs are immutable)")
    return dataclasses.field(default=full, metadata=meta)


@dataclasses.dataclass(frozen=True)
class Result:
    """What ``run`` returns: named numbers, labelled arrays and figures."""

    summary: dict[str, Any]
    data: Any = None  # xarray.Dataset
    figures: dict[str, Any] = dataclasses.field(default_factory=dict)  # name -> matplotlib Figure
    notes: str = ""  # a paragraph for the report


@dataclasses.dataclass
class Context:
    """Services a run may use: where to keep resumable partial work, and progress reporting."""

    partial_dir: Path
    resume: bool = False
    progress: bool = True
    #: the steps loaded by :meth:`resumable` (name, and the device and date they were computed
    #: on): a resumed run's summary lists them as ``resumed_steps``
    resumed: list = dataclasses.field(default_factory=list)

    def store(self, name: str):
        """A :class:`~neurocircuits.RunStore` for one resumable simulation of this run."""
        from .._core.results import RunStore

        return RunStore(self.partial_dir / f"{name}.zarr", resume=self.resume)

    def resumable(self, name: str, fingerprint: str, compute: Callable[[], Any]) -> Any:
        """``compute()``, kept in ``partial_dir`` as one finished step of the run.

        With ``resume`` (``neurocircuits run ... --resume``), a step that an interrupted run of
        the same configuration and key (``fingerprint``, see :func:`run_fingerprint`) finished
        is loaded instead of recomputed, so a long experiment cut by a time limit continues
        after its last finished step. The value must be picklable (numbers, NumPy arrays,
        dicts, tuples, dataclasses); the file is written atomically after ``compute`` returns.
        """
        import pickle

        from .._core.errors import ResumeError

        path = self.partial_dir / f"{name}.pkl"
        if self.resume and path.exists():
            with path.open("rb") as fh:
                saved = pickle.load(fh)
            if saved.get("fingerprint") != fingerprint:
                raise ResumeError(
                    f"{path} was written by a run with another configuration or seed; resume "
                    "with the same --set values and --seed, or start afresh (without --resume)."
                )
            where = saved.get("environment", {})
            self.resumed.append({"step": name, "device": where.get("device", "not recorded"),
                                 "date": where.get("date", "not recorded")})
            return saved["value"]
        value = compute()
        self.partial_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as fh:
            pickle.dump({"fingerprint": fingerprint, "value": value,
                         "environment": environment()}, fh)
        tmp.replace(path)
        return value


@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    config: type
    run: Callable[..., Result]
    description: str = ""  # default: the second paragraph of the run function's module doc
    headline: tuple[str, ...] = ()  # summary keys printed on the one-line result

    def __post_init__(self):
        if not self.description:
            doc = getattr(sys.modules.get(self.run.__module__), "__doc__", None) or ""
            paragraphs = doc.split("\n\n")
            if len(paragraphs) > 1:
                object.__setattr__(self, "description", paragraphs[1].replace("\n", " "))


# ---------------------------------------------------------------------------------------------
# configuration: defaults per scale, --set overrides, TOML files


def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(name: str, value: Any, tp: Any, from_text: bool) -> Any:
    """Convert ``value`` to the field type ``tp`` or raise a one-line ConfigError."""
    origin = typing.get_origin(tp)
    allowed = _type_name(tp)
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            if from_text and str(value).lower() in ("true", "1", "yes", "on"):
                return True
            if from_text and str(value).lower() in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if tp is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, int):
                return value
            if from_text:
                return int(str(value).replace("_", ""))
            raise ValueError
        if tp is float:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, (int, float)):
                return float(value)
            if from_text:
                return float(value)
            raise ValueError
        if tp is str:
            if isinstance(value, str):
                return value
            raise ValueError
        if origin is tuple:
            (item,) = {a for a in typing.get_args(tp) if a is not Ellipsis}
            allowed = f"a comma-separated list of {_type_name(item)}"
            items = value
            if isinstance(value, str):
                items = [v for v in value.strip("()[] ").split(",") if v.strip()]
            elif not isinstance(value, (list, tuple)):
                raise ValueError
            return tuple(_coerce(name, v.strip() if isinstance(v, str) else v, item, True)
                         for v in items)
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if value is None or (from_text and str(value).lower() == "none"):
                return None
            return _coerce(name, value, args[0], from_text)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{name}={value!r} is not {allowed}") from err
    raise ConfigError(f"{name}: unsupported configuration type {tp!r}")  # pragma: no cover


def _check_bounds(name: str, value: Any, meta: dict) -> None:
    values = value if isinstance(value, tuple) else (value,)
    low, high, choices = meta.get("low"), meta.get("high"), meta.get("choices")
    for v in values:
        if v is None:
            continue
        if choices is not None and v not in choices:
            raise ConfigError(f"{name}={v!r} is not allowed; choose one of {', '.join(map(str, choices))}")
        if (low is not None and v < low) or (high is not None and v > high):
            lo = "-inf" if low is None else low
            hi = "inf" if high is None else high
            raise ConfigError(f"{name}={v!r} is out of range; allowed: {lo} <= {name} <= {hi}")


def build_config(cls, scale: str = "quick", overrides: dict[str, Any] | None = None,
                 *, from_text: bool = True):
    """The configuration at ``scale`` with ``overrides`` applied, validated."""
    if scale not in SCALES:
        raise ConfigError(f"--scale {scale!r} is unknown; allowed: {', '.join(SCALES)}")
    types_ = _field_types(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {name: (f.metadata.get("quick", f.default) if scale == "quick" else f.default)
              for name, f in fields.items()}
    for key, raw in (overrides or {}).items():
        if key not in fields:
            raise ConfigError(
                f"unknown key {key!r} for this experiment; allowed keys: {', '.join(fields)}"
            )
        values[key] = _coerce(key, raw, types_[key], from_text)
    for name, value in values.items():
        _check_bounds(name, value, fields[name].metadata)
    config = cls(**values)
    check = getattr(config, "check", None)
    if check is not None:
        check()
    return config


def config_to_dict(config) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(config):
        v = getattr(config, f.name)
        out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


def run_fingerprint(config, key, ignore: tuple[str, ...] = ()) -> str:
    """A short hash of a run's configuration and PRNG key: partial results of an interrupted
    run are reused only by a run with the same fingerprint. ``ignore`` names configuration
    fields a step does not depend on (its results are then reused whatever their values)."""
    import jax
    import numpy as np

    fields = {k: v for k, v in config_to_dict(config).items() if k not in ignore}
    payload = [fields, np.asarray(jax.random.key_data(key)).tolist()]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:16]


def config_hash(config, seed: int) -> str:
    blob = json.dumps({"config": config_to_dict(config), "seed": seed}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def environment() -> dict[str, Any]:
    """Versions and device, for every summary."""
    import jax

    import neurocircuits

    devices = jax.devices()
    return {
        "neurocircuits": neurocircuits.__version__,
        "jax": jax.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": f"{devices[0].platform}: {devices[0].device_kind}",
        "n_devices": len(devices),
        "x64": bool(jax.config.jax_enable_x64),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


# ---------------------------------------------------------------------------------------------
# writing a run directory atomically


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _json_default(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_run(out: Path, experiment: Experiment, config, seed: int, scale: str, result: Result,
              elapsed_s: float, resumed_steps: list | None = None) -> dict[str, Any]:
    """Write summary.json, config.toml, data.zarr, figures and report.html into ``out``.

    ``resumed_steps`` (:attr:`Context.resumed`): steps an interrupted run had finished, loaded
    instead of recomputed; listed in the summary with the device that computed them, because
    ``elapsed_s`` and ``environment`` describe only the resumed part.

    Everything is first written to a temporary folder beside ``out`` and then moved in, so an
    interrupted write never leaves a truncated file under its final name.
    """
    import tomli_w

    from .report import render_report

    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out, prefix=".staging-"))
    try:
        summary = {
            "experiment": experiment.name,
            "scale": scale,
            "seed": seed,
            "config_hash": config_hash(config, seed),
            **result.summary,
            "elapsed_s": round(elapsed_s, 3),
            "environment": environment(),
        }
        if resumed_steps:
            summary["resumed_steps"] = list(resumed_steps)
        (staging / "summary.json").write_text(
            json.dumps(summary, indent=2, default=_json_default) + "\n")
        cfg = {"experiment": experiment.name, "scale": scale, "seed": seed,
               "config": {k: v for k, v in config_to_dict(config).items() if v is not None}}
        (staging / "config.toml").write_text(tomli_w.dumps(cfg))
        figure_files = []
        for name, fig in result.figures.items():
            fig.savefig(staging / f"{name}.png", dpi=110, bbox_inches="tight")
            figure_files.append(f"{name}.png")
            import matplotlib.pyplot as plt

            plt.close(fig)
        if result.data is not None:
            from .._core.results import dataset_to_zarr

            dataset_to_zarr(result.data, staging / "data.zarr")
        (staging / "report.html").write_text(
            render_report(experiment, summary, cfg, figure_files, result.notes))
        for item in staging.iterdir():
            target = out / item.name
            if item.is_dir():
                if target.exists():
                    shutil.rmtree(target)
                os.replace(item, target)
            else:
                os.replace(item, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return summary
