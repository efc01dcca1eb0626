"""Spike-train statistics from recorded events: firing rates and ISI coefficients of variation."""

from __future__ import annotations

import numpy as np

from .._core.errors import NeurocircuitsError

__all__ = ["firing_rates", "cv_isi", "binned_counts"]


def _times_by_neuron(events, dt, t_start):
    steps, neurons = np.asarray(events.steps), np.asarray(events.neurons)
    t = (steps + 1) * dt
    keep = t > t_start
    return t[keep], neurons[keep]


def firing_rates(events, n: int, *, dt: float, t_start: float = 0.0,
                 t_stop: float) -> np.ndarray:
    """Per-neuron rates (Hz) over ``(t_start, t_stop]`` (ms) from :class:`SpikeEvents`."""
    if not t_stop > t_start:
        raise NeurocircuitsError(f"t_stop must exceed t_start, got {t_start}..{t_stop} ms.")
    t, i = _times_by_neuron(events, dt, t_start)
    i = i[t <= t_stop]
    return np.bincount(i, minlength=n)[:n] / ((t_stop - t_start) * 1e-3)


def cv_isi(events, n: int, *, dt: float, t_start: float = 0.0, min_spikes: int = 3) -> np.ndarray:
    """Per-neuron coefficient of variation of the inter-spike intervals (NaN for neurons with
    fewer than ``min_spikes`` spikes after ``t_start``)."""
    t, i = _times_by_neuron(events, dt, t_start)
    order = np.lexsort((t, i))
    t, i = t[order], i[order]
    cv = np.full(n, np.nan)
    if t.size < 2:
        return cv
    same = i[1:] == i[:-1]
    isi = np.diff(t)[same]
    who = i[1:][same]
    cnt = np.bincount(who, minlength=n)[:n]
    s1 = np.bincount(who, isi, minlength=n)[:n]
    s2 = np.bincount(who, isi * isi, minlength=n)[:n]
    ok = cnt >= max(2, min_spikes - 1)
    mean = s1[ok] / cnt[ok]
    var = np.maximum(s2[ok] / cnt[ok] - mean ** 2, 0.0) * cnt[ok] / np.maximum(cnt[ok] - 1, 1)
    cv[ok] = np.sqrt(var) / mean
    return cv


def binned_counts(events, n: int, *, dt: float, bin_ms: float, t_start: float,
                  t_stop: float) -> np.ndarray:
    """Spike counts per neuron and time bin, shape ``(n, n_bins)``."""
    t, i = _times_by_neuron(events, dt, t_start)
    keep = t <= t_stop
    n_bins = int(np.floor((t_stop - t_start) / bin_ms))
    b = np.minimum(((t[keep] - t_start) / bin_ms).astype(np.int64), n_bins - 1)
    out = np.zeros((n, n_bins))
    np.add.at(out, (i[keep], b), 1)
    return out
