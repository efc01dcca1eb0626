"""Error classes and message helpers.

Every error the library raises for bad input says three things: *what* was wrong (the argument
name and the value or shape received), *why* it is not allowed, and *how* to fix it. Helpers here
keep those messages uniform across families.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "NeurocircuitsError",
    "ConfigError",
    "DivergenceError",
    "ResumeError",
    "describe",
    "check_positive",
    "check_nonnegative",
    "check_in_range",
    "check_int",
    "check_shape",
]


class NeurocircuitsError(ValueError):
    """Base class of the library's errors (a ``ValueError``, so bad input is caught as such)."""


class ConfigError(NeurocircuitsError):
    """An experiment configuration or CLI value is unknown, of the wrong type or out of range."""


class DivergenceError(NeurocircuitsError, FloatingPointError):
    """A simulation produced NaN or Inf."""


class ResumeError(NeurocircuitsError):
    """A run cannot be resumed from what is on disk (missing, or from another configuration)."""


def describe(value: Any) -> str:
    """A short description of a value for error messages (shape and dtype for arrays)."""
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        shape = tuple(value.shape)
        if shape == ():
            try:
                return f"{value.item()!r} ({value.dtype})"
            except Exception:  # traced value
                return f"a scalar {value.dtype} array"
        return f"an array of shape {shape} and dtype {value.dtype}"
    return repr(value)


def _scalar(value: Any, name: str) -> float | None:
    """The value as a Python float when it is concrete, None when traced (checked later)."""
    try:
        arr = np.asarray(value)
    except Exception:  # a JAX tracer: cannot be checked at construction
        return None
    if arr.dtype == object:
        raise NeurocircuitsError(f"{name} must be a number, got {describe(value)}.")
    return arr


def check_positive(value: Any, name: str, *, unit: str = "") -> None:
    """Raise unless every element of ``value`` is finite and > 0."""
    arr = _scalar(value, name)
    if arr is None:
        return
    if not np.all(np.isfinite(arr)) or not np.all(arr > 0):
        u = f" {unit}" if unit else ""
        raise NeurocircuitsError(
            f"{name} must be finite and > 0{u}, got {describe(value)}."
            + (f" Values received: {arr.ravel()[:5]}..." if arr.size > 1 else "")
        )


def check_nonnegative(value: Any, name: str, *, unit: str = "") -> None:
    """Raise unless every element of ``value`` is finite and >= 0."""
    arr = _scalar(value, name)
    if arr is None:
        return
    if not np.all(np.isfinite(arr)) or not np.all(arr >= 0):
        u = f" {unit}" if unit else ""
        raise NeurocircuitsError(f"{name} must be finite and >= 0{u}, got {describe(value)}.")


def check_in_range(
    value: Any, name: str, low: float, high: float, *, inclusive: bool = True
) -> None:
    """Raise unless ``low <= value <= high`` (or strict bounds when ``inclusive=False``)."""
    arr = _scalar(value, name)
    if arr is None:
        return
    ok = (arr >= low) & (arr <= high) if inclusive else (arr > low) & (arr < high)
    if not np.all(np.isfinite(arr)) or not np.all(ok):
        br = ("[", "]") if inclusive else ("(", ")")
        raise NeurocircuitsError(
            f"{name} must lie in {br[0]}{low}, {high}{br[1]}, got {describe(value)}."
        )


def check_int(value: Any, name: str, *, minimum: int | None = None) -> int:
    """Return ``value`` as an int; raise unless it is an integer (>= ``minimum`` if given)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise NeurocircuitsError(
            f"{name} must be an integer, got {describe(value)} of type {type(value).__name__}."
        )
    if minimum is not None and value < minimum:
        raise NeurocircuitsError(f"{name} must be an integer >= {minimum}, got {value}.")
    return int(value)


def check_shape(value: Any, name: str, expected: tuple[int | None, ...], *, hint: str = "") -> None:
    """Raise unless ``value.shape`` matches ``expected`` (``None`` matches any length)."""
    shape = tuple(np.shape(value))
    ok = len(shape) == len(expected) and all(e is None or e == s for e, s in zip(expected, shape))
    if not ok:
        exp = "(" + ", ".join("any" if e is None else str(e) for e in expected) + ")"
        raise NeurocircuitsError(
            f"{name} must have shape {exp}, got shape {shape}." + (f" {hint}" if hint else "")
        )
