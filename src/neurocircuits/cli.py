"""The ``neurocircuits`` command: list, run, gallery, info.

Bad input (unknown experiment or key, a value of the wrong type or out of range, an unwritable
``--out``) prints one line naming what was wrong and what is allowed, exits with code 2, and
writes nothing.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import tomllib
from pathlib import Path
from typing import Annotated

import typer

from ._core.errors import ConfigError, NeurocircuitsError


def _kind(err: BaseException) -> str | None:
    """Classify click/typer exceptions by name: typer vendors click in recent versions and uses
    the click package in older ones, so the classes differ between installations."""
    names = {cls.__name__ for cls in type(err).__mro__}
    for kind in ("UsageError", "Exit", "Abort"):
        if kind in names:
            return kind
    return None

app = typer.Typer(
    name="neurocircuits",
    help="Simulate, train and analyse recurrent neural-circuit models; run the gallery.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class UsageFailure(Exception):
    """Bad command-line input: reported as one line, exit code 2."""


def _fail(message: str):
    raise UsageFailure(message)


# --------------------------------------------------------------------------------------------
# validation helpers (all run before anything is written)


def _parse_sets(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            _fail(f"--set {item!r} must look like key=value")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def _read_config_file(path: Path, name: str) -> tuple[dict, str | None, int | None]:
    if not path.is_file():
        _fail(f"--config {str(path)!r} is not a readable file")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        _fail(f"--config {str(path)!r} is not valid TOML: {err}")
    if "experiment" in data and data["experiment"] != name:
        _fail(f"--config {str(path)!r} is for experiment {data['experiment']!r}, not {name!r}")
    values = data.get("config", {k: v for k, v in data.items()
                                 if k not in ("experiment", "scale", "seed")})
    return values, data.get("scale"), data.get("seed")


def _check_out(out: Path) -> None:
    """Refuse an --out that cannot be created or written."""
    if out.exists() and not out.is_dir():
        _fail(f"--out {str(out)!r} exists and is not a directory")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        _fail(f"--out {str(out)!r} is not writable (no write permission on {str(probe)!r})")


def _build(name: str, scale: str, sets: list[str], config_file: Path | None, seed: int | None):
    from .experiments import _base, get

    experiment = get(name)
    overrides: dict = {}
    file_scale, file_seed = None, None
    if config_file is not None:
        values, file_scale, file_seed = _read_config_file(config_file, name)
        overrides.update(values)
    scale = scale or file_scale or "quick"
    if file_scale is not None and not isinstance(file_scale, str):
        _fail(f"scale={file_scale!r} in --config is not one of quick, full")
    text_overrides = _parse_sets(sets)
    config = _base.build_config(experiment.config, scale,
                                {k: v for k, v in overrides.items()}, from_text=False)
    if text_overrides:
        merged = {**_base.config_to_dict(config), **text_overrides}
        merged = {k: (tuple(v) if isinstance(v, list) else v) for k, v in merged.items()}
        config = _base.build_config(experiment.config, scale, merged, from_text=True)
    seed = seed if seed is not None else (file_seed if file_seed is not None else 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        _fail(f"--seed {seed!r} must be an integer >= 0")
    return experiment, config, scale, seed


def _run_one(experiment, config, scale: str, seed: int, out: Path, resume: bool,
             progress: bool = True) -> dict:
    import jax

    from .experiments import _base

    partial = out / ".partial"
    if not resume and partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    ctx = _base.Context(partial_dir=partial, resume=resume, progress=progress)
    start = time.perf_counter()
    result = experiment.run(config, jax.random.key(seed), ctx)
    summary = _base.write_run(out, experiment, config, seed, scale, result,
                              time.perf_counter() - start, resumed_steps=ctx.resumed)
    shutil.rmtree(partial, ignore_errors=True)
    return summary


def _headline(experiment, summary: dict) -> str:
    keys = getattr(experiment, "headline", ()) or [
        k for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
        and k not in ("seed", "elapsed_s")][:4]
    parts = []
    for k in keys:
        v = summary.get(k)
        parts.append(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}")
    return " ".join(parts)


# --------------------------------------------------------------------------------------------
# commands


@app.command("list")
def list_experiments():
    """The experiments, one line each."""
    from .experiments import REGISTRY, get

    width = max(map(len, REGISTRY))
    for name in REGISTRY:
        try:
            title = get(name).title
        except ImportError as err:  # an optional dependency is missing
            title = f"(unavailable: {err})"
        typer.echo(f"{name:<{width}}  {title}")


@app.command()
def run(
    name: Annotated[str, typer.Argument(help="experiment name (see `neurocircuits list`)")],
    scale: Annotated[str | None, typer.Option(help="quick (seconds, CPU) or full (paper scale)")]
    = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a parameter: key=value")]
    = None,
    config: Annotated[Path | None, typer.Option(help="a TOML file of parameters (e.g. a run's "
                                                     "config.toml)")] = None,
    out: Annotated[Path | None, typer.Option(help="output folder (default runs/NAME)")] = None,
    seed: Annotated[int | None, typer.Option(help="random seed (default 0)")] = None,
    resume: Annotated[bool, typer.Option(help="continue an interrupted run in --out")] = False,
):
    """Run one experiment; write summary.json, config.toml, data.zarr, figures, report.html."""
    experiment, cfg, scale, seed = _build(name, scale, set_ or [], config, seed)
    out = out or Path("runs") / name
    _check_out(out)
    summary = _run_one(experiment, cfg, scale, seed, out, resume)
    typer.echo(f"{name}: {_headline(experiment, summary)} -> {out / 'report.html'} "
               f"({summary['elapsed_s']:.1f} s)")


@app.command()
def gallery(
    scale: Annotated[str, typer.Option(help="quick or full")] = "quick",
    out: Annotated[Path, typer.Option(help="output folder")] = Path("gallery"),
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    only: Annotated[list[str] | None, typer.Option(help="run only these experiments")] = None,
):
    """Run every experiment and write OUT/index.html."""
    from .experiments import REGISTRY, _base, get
    from .experiments.report import render_index

    if scale not in _base.SCALES:
        _fail(f"--scale {scale!r} is unknown; allowed: {', '.join(_base.SCALES)}")
    if seed < 0:
        _fail(f"--seed {seed!r} must be an integer >= 0")
    names = list(only) if only else list(REGISTRY)
    for n in names:
        if n not in REGISTRY:
            _fail(f"--only {n!r} is not an experiment; known: {', '.join(REGISTRY)}")
    _check_out(out)
    entries, failed = [], []
    for n in names:
        typer.echo(f"[gallery] {n} ({scale}) ...")
        try:
            experiment = get(n)
            cfg = _base.build_config(experiment.config, scale)
            summary = _run_one(experiment, cfg, scale, seed, out / n, resume=False)
            figures = sorted(p.name for p in (out / n).glob("*.png"))
            entries.append({"name": n, "status": "ok", "headline": _headline(experiment, summary),
                            "figures": figures})
            typer.echo(f"[gallery] {n}: {_headline(experiment, summary)}")
        except Exception as err:  # one failing experiment must not hide the others
            failed.append(n)
            entries.append({"name": n, "status": f"failed: {type(err).__name__}: {err}"})
            typer.echo(f"[gallery] {n} FAILED: {type(err).__name__}: {err}", err=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "index.html").write_text(render_index(entries))
    typer.echo(f"gallery: {len(names) - len(failed)}/{len(names)} ok -> {out / 'index.html'}")
    if failed:
        raise typer.Exit(1)


@app.command()
def info():
    """Versions, devices and precision settings."""
    import jax

    from .experiments._base import environment

    for k, v in environment().items():
        typer.echo(f"{k:>14}: {v}")
    typer.echo(f"{'devices':>14}: {', '.join(str(d) for d in jax.devices())}")
    typer.echo(f"{'matmul prec.':>14}: {jax.config.jax_default_matmul_precision or 'default'}"
               " (library couplings default to 'highest' = float32)")


def main(argv: list[str] | None = None) -> int:
    """Entry point: one line and exit code 2 for any bad input."""
    try:
        app(args=argv, standalone_mode=False)
    except UsageFailure as err:
        typer.echo(f"error: {err}", err=True)
        return 2
    except (ConfigError, NeurocircuitsError) as err:
        typer.echo(f"error: {err}", err=True)
        return 2
    except Exception as err:
        kind = _kind(err)
        if kind == "UsageError":
            typer.echo(f"error: {err.format_message()}", err=True)
            return 2
        if kind == "Exit":
            return int(getattr(err, "exit_code", getattr(err, "code", 1)) or 0)
        if kind == "Abort":
            typer.echo("aborted", err=True)
            return 130
        raise
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
