r"""Tasks for training the module order parameters of rate networks: keyed trial generators.

Every task describes trials of ``duration`` ms on a grid of ``dt`` ms. A network of ``M`` modules
receives ``M`` input channels (channel ``a`` drives module ``a``, see
:class:`~neurocircuits.rate.train.RateCircuit`) and its ``M`` outputs, by default the **module
order parameters**

.. math::

    m_a(t) = \frac{1}{|a|} \sum_{i \in a} \phi(u_i(t)),

must follow the task's targets :math:`m^*_a(t)`. Targets are given at the observation times
:math:`t_j = (j + 1)\,\text{record\_every}\,dt` (after each ``record_every`` steps, as in
:class:`~neurocircuits.Record`), inputs at the step times :math:`t_k = k\,dt` (step ``k`` uses
``inputs[k]``). A ``mask`` in [0, 1] weights every target (0 during transients and before cues).

Tasks (all frozen dataclasses: hashable, usable as static arguments under ``jit``):

* :class:`PhaseShiftedOscillation` -- after a cue, :math:`m^*_a(t) = b + A \sin(2\pi (t -
  t_c)/P - a\,\Delta)`: oscillations phase-shifted by :math:`\Delta` across modules.
* :class:`PulsePersistence` -- a pulse into one random module switches its :math:`m_a` from
  ``low`` to a sustained ``high`` (persistent activity after a pulse, a working memory of which
  module was stimulated).
* :class:`Ramp` -- after a cue, every :math:`m_a` ramps linearly from ``low`` to ``high`` over
  ``ramp_duration`` ms and stays there (interval timing).
* :class:`SynchronyPatterns` -- after a cue, the modules cycle through co-activation patterns
  :math:`s^k \in \{0,1\}^M` expressed for fractions :math:`\pi_k` of each period: the
  probabilities carried by module synchrony (used by the re-learning experiment).

Sampling: ``task.sample(key, n_trials)`` returns a :class:`Trials` (inputs ``(B, n_steps,
n_inputs)``, targets and mask ``(B, n_records, M)``, observation times ``(n_records,)``); trial
``i`` depends only on ``(key, i)`` and the same key gives the same trials. Held-out trials are
just other keys. Units: ms for every time, dimensionless rates and inputs.

References:
    Sussillo & Abbott, Neuron 63, 544 (2009) (trained rate networks, context);
    Hayakawa & Fukai, Phys. Rev. Research 2, 013253 (2020) (module synchrony in balanced
    networks; the tasks here are our reconstruction).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._core.errors import NeurocircuitsError, check_int, describe

__all__ = [
    "AbstractTask",
    "PhaseShiftedOscillation",
    "PulsePersistence",
    "Ramp",
    "SynchronyPatterns",
    "Trials",
    "nrmse",
]


class Trials(eqx.Module):
    """A batch of trials of a task.

    Attributes:
        inputs: ``(B, n_steps, n_inputs)``: the input of every channel at every step.
        targets: ``(B, n_records, n_outputs)``: the target outputs at the observation times.
        mask: ``(B, n_records, n_outputs)``: weights in [0, 1] of every target in the loss.
        times: ``(n_records,)``: the observation times in ms.
    """

    inputs: Float[Array, "batch n_steps n_inputs"]
    targets: Float[Array, "batch n_records n_outputs"]
    mask: Float[Array, "batch n_records n_outputs"]
    times: Float[Array, " n_records"]

    @property
    def n_trials(self) -> int:
        return self.inputs.shape[0]


def nrmse(outputs, targets, mask=None) -> jax.Array:
    r"""Normalised root-mean-square error, pooled over trials, times and outputs:

    .. math::

        \mathrm{NRMSE} = \sqrt{\frac{\sum w\,(y - y^*)^2}{\sum w\,(y^* - \bar y^*_o)^2}},

    with weights :math:`w` (``mask``, default 1) and :math:`\bar y^*_o` the weighted mean of the
    target of output ``o`` over trials and time. 0 is perfect; 1 is as good as predicting each
    output's mean. Arrays ``(..., n_records, n_outputs)``.
    """
    outputs = jnp.asarray(outputs)
    targets = jnp.asarray(targets)
    if outputs.shape != targets.shape:
        raise NeurocircuitsError(
            f"outputs and targets must have the same shape, got {outputs.shape} and "
            f"{targets.shape}."
        )
    w = jnp.ones_like(targets) if mask is None else jnp.broadcast_to(mask, targets.shape)
    axes = tuple(range(targets.ndim - 1))
    wsum = jnp.maximum(jnp.sum(w, axis=axes), 1e-12)
    mean = jnp.sum(w * targets, axis=axes) / wsum
    var = jnp.sum(w * (targets - mean) ** 2)
    return jnp.sqrt(jnp.sum(w * (outputs - targets) ** 2) / jnp.maximum(var, 1e-12))


def _check_window(window, name: str, duration: float) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in window)
    except (TypeError, ValueError):
        raise NeurocircuitsError(
            f"{name} must be a pair (earliest, latest) of times in ms, got {window!r}."
        ) from None
    if not (0.0 <= lo <= hi < duration):
        raise NeurocircuitsError(
            f"{name} = {window!r} must satisfy 0 <= earliest <= latest < duration = {duration} ms."
        )
    return lo, hi


def _check_number(value, name: str, *, low: float | None = None, strict: bool = True,
                  unit: str = "") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise NeurocircuitsError(f"{name} must be a number, got {describe(value)}.")
    value = float(value)
    bad = not math.isfinite(value) or (
        low is not None and (value <= low if strict else value < low))
    if bad:
        rel = ">" if strict else ">="
        u = f" {unit}" if unit else ""
        raise NeurocircuitsError(f"{name} must be finite{'' if low is None else f' and {rel} {low}'}"
                                 f"{u}, got {value!r}.")
    return value


@dataclasses.dataclass(frozen=True, kw_only=True)
class AbstractTask:
    """The common time grid and interface of the tasks.

    Args:
        n_modules: number of modules M (= input channels = outputs).
        duration: trial length in ms; ``n_steps = round(duration / dt)`` rounded down to a
            multiple of ``record_every``.
        dt: step in ms (must equal the ``dt`` the network is simulated with: the trainer uses it).
        record_every: steps between observations (targets are compared every ``record_every``
            steps: the loss resolution and, with checkpointing, the rematerialisation interval).
    """

    n_modules: int = 4
    duration: float = 300.0
    dt: float = 1.0
    record_every: int = 2

    #: short name of the task (figure labels, summaries)
    name: ClassVar[str] = "task"

    def __post_init__(self):
        check_int(self.n_modules, "n_modules", minimum=1)
        _check_number(self.duration, "duration", low=0.0, unit="ms")
        _check_number(self.dt, "dt", low=0.0, unit="ms")
        check_int(self.record_every, "record_every", minimum=1)
        if self.n_records < 1:
            raise NeurocircuitsError(
                f"duration = {self.duration} ms is shorter than one observation interval "
                f"(record_every * dt = {self.record_every * self.dt} ms); lengthen the trial "
                "or record more often."
            )

    # --- the grid ---------------------------------------------------------------------
    @property
    def n_records(self) -> int:
        """Observations per trial."""
        return int(round(self.duration / self.dt)) // self.record_every

    @property
    def n_steps(self) -> int:
        """Steps per trial (a multiple of ``record_every``)."""
        return self.n_records * self.record_every

    @property
    def n_inputs(self) -> int:
        return self.n_modules

    @property
    def n_outputs(self) -> int:
        return self.n_modules

    def step_times(self) -> np.ndarray:
        """``t_k = k dt`` (ms), the times at which ``inputs[k]`` acts."""
        return self.dt * np.arange(self.n_steps)

    def record_times(self) -> np.ndarray:
        """``t_j = (j + 1) record_every dt`` (ms), the observation times."""
        return self.dt * self.record_every * np.arange(1, self.n_records + 1)

    # --- sampling ---------------------------------------------------------------------
    def trial(self, key: jax.Array):
        """One trial: ``(inputs (n_steps, n_inputs), targets (n_records, M), mask (n_records,
        M))``. Subclasses implement this (traceable, keyed)."""
        raise NotImplementedError  # pragma: no cover

    def sample(self, key: jax.Array, n_trials: int) -> Trials:
        """``n_trials`` trials; trial ``i`` uses ``fold_in(key, i)``. Same key, same trials."""
        n_trials = check_int(n_trials, "n_trials", minimum=1)
        if not (isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)):
            raise NeurocircuitsError(
                f"key must be a typed JAX PRNG key (jax.random.key(seed)), got {describe(key)}."
            )
        if key.shape != ():
            raise NeurocircuitsError(f"key must be a single key, got shape {key.shape}.")
        return _sample(self, key, n_trials)


@functools.partial(jax.jit, static_argnums=(0, 2))
def _sample(task: AbstractTask, key, n_trials: int) -> Trials:
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(n_trials))
    inputs, targets, mask = jax.vmap(task.trial)(keys)
    return Trials(inputs.astype(jnp.result_type(float)), targets.astype(jnp.result_type(float)),
                  mask.astype(jnp.result_type(float)),
                  jnp.asarray(task.record_times(), jnp.result_type(float)))


def _uniform(key, window):
    lo, hi = window
    return lo + (hi - lo) * jax.random.uniform(key)


def _pulse(times, start, width, amplitude):
    """``amplitude`` on ``[start, start + width)``, 0 elsewhere (per step time)."""
    return amplitude * ((times >= start) & (times < start + width))


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Cued(AbstractTask):
    """A cue pulse into every channel at a random time ``t_c`` uniform in ``cue_window``; the
    targets after the cue are masked for ``settle`` ms (the network cannot jump) and before it
    entirely."""

    cue_window: tuple[float, float] = (0.0, 50.0)
    cue_duration: float = 10.0
    cue_amplitude: float = 2.0
    settle: float = 20.0

    def __post_init__(self):
        super().__post_init__()
        _check_window(self.cue_window, "cue_window", self.duration)
        _check_number(self.cue_duration, "cue_duration", low=0.0, unit="ms")
        _check_number(self.cue_amplitude, "cue_amplitude")
        _check_number(self.settle, "settle", low=0.0, strict=False, unit="ms")

    def _cue(self, key):
        t_c = _uniform(key, self.cue_window)
        ts = jnp.asarray(self.step_times())
        cue = _pulse(ts, t_c, self.cue_duration, self.cue_amplitude)
        inputs = jnp.broadcast_to(cue[:, None], (self.n_steps, self.n_inputs))
        tr = jnp.asarray(self.record_times())
        mask = jnp.broadcast_to((tr >= t_c + self.settle)[:, None],
                                (self.n_records, self.n_outputs)).astype(float)
        return t_c, inputs, tr, mask


@dataclasses.dataclass(frozen=True, kw_only=True)
class PhaseShiftedOscillation(_Cued):
    r"""Phase-shifted oscillations of the module order parameters after a cue.

    .. math::

        m^*_a(t) = b + A \sin\!\left(\frac{2\pi (t - t_c)}{P} - a\,\Delta\right),
        \qquad t \ge t_c + t_{\rm settle},

    with the cue time :math:`t_c` uniform in ``cue_window`` (a pulse of ``cue_amplitude`` for
    ``cue_duration`` ms into every channel), period :math:`P` (ms), amplitude :math:`A`, baseline
    :math:`b` and phase lag :math:`\Delta` between consecutive modules (default
    :math:`2\pi/M`: a travelling wave around the modules). Targets before
    :math:`t_c + t_{\rm settle}` are masked.

    Example:
        >>> task = PhaseShiftedOscillation(n_modules=4, period=100.0, duration=300.0)
        >>> tr = task.sample(jax.random.key(0), 8)
        >>> tr.inputs.shape, tr.targets.shape
        ((8, 300, 4), (8, 150, 4))
    """

    period: float = 100.0
    amplitude: float = 0.4
    baseline: float = 1.0
    phase_lag: float | None = None

    name: ClassVar[str] = "oscillation"

    def __post_init__(self):
        super().__post_init__()
        _check_number(self.period, "period", low=0.0, unit="ms")
        _check_number(self.amplitude, "amplitude")
        _check_number(self.baseline, "baseline")
        if self.phase_lag is not None:
            _check_number(self.phase_lag, "phase_lag")

    @property
    def lag(self) -> float:
        """The phase lag between consecutive modules in radians."""
        return 2 * math.pi / self.n_modules if self.phase_lag is None else float(self.phase_lag)

    def trial(self, key):
        t_c, inputs, tr, mask = self._cue(key)
        a = jnp.arange(self.n_modules)
        phase = 2 * jnp.pi * (tr[:, None] - t_c) / self.period - a[None, :] * self.lag
        targets = self.baseline + self.amplitude * jnp.sin(phase)
        return inputs, targets, mask


@dataclasses.dataclass(frozen=True, kw_only=True)
class PulsePersistence(AbstractTask):
    r"""Persistent activity after a pulse: a working memory of which module was stimulated.

    A pulse of ``pulse_amplitude`` for ``pulse_duration`` ms enters channel :math:`a^*` (uniform
    over modules) at :math:`t_p` (uniform in ``pulse_window``). Targets:

    .. math::

        m^*_a(t) = \ell + (h - \ell)\,\delta_{a a^*}\,
                   \left(1 - e^{-(t - t_p)/\tau_r}\right)\Theta(t - t_p),

    i.e. every module rests at ``low`` :math:`\ell`; the pulsed one rises to ``high`` :math:`h`
    with time constant ``rise_time`` :math:`\tau_r` (ms) and stays there to the end of the trial.
    With ``p_no_pulse > 0`` that fraction of trials has no pulse (all modules stay low). The
    first ``settle`` ms (transient from the random initial state) are masked.
    """

    low: float = 0.5
    high: float = 1.5
    pulse_window: tuple[float, float] = (50.0, 150.0)
    pulse_duration: float = 10.0
    pulse_amplitude: float = 2.0
    rise_time: float = 10.0
    settle: float = 20.0
    p_no_pulse: float = 0.0

    name: ClassVar[str] = "persistence"

    def __post_init__(self):
        super().__post_init__()
        _check_number(self.low, "low")
        _check_number(self.high, "high")
        _check_window(self.pulse_window, "pulse_window", self.duration)
        _check_number(self.pulse_duration, "pulse_duration", low=0.0, unit="ms")
        _check_number(self.pulse_amplitude, "pulse_amplitude")
        _check_number(self.rise_time, "rise_time", low=0.0, unit="ms")
        _check_number(self.settle, "settle", low=0.0, strict=False, unit="ms")
        p = _check_number(self.p_no_pulse, "p_no_pulse", low=0.0, strict=False)
        if p > 1.0:
            raise NeurocircuitsError(f"p_no_pulse must lie in [0, 1], got {p}.")

    def trial(self, key):
        draw = jax.random.uniform(key, (3,))  # one draw: pulse time, module, pulse or not
        lo, hi = self.pulse_window
        t_p = lo + (hi - lo) * draw[0]
        a_star = jnp.minimum(jnp.floor(draw[1] * self.n_modules), self.n_modules - 1)
        pulsed = draw[2] >= self.p_no_pulse
        onehot = (jnp.arange(self.n_modules) == a_star) * pulsed
        ts = jnp.asarray(self.step_times())
        pulse = _pulse(ts, t_p, self.pulse_duration, self.pulse_amplitude)
        inputs = pulse[:, None] * onehot[None, :]
        tr = jnp.asarray(self.record_times())
        rise = jnp.where(tr >= t_p, -jnp.expm1(-(tr - t_p) / self.rise_time), 0.0)
        targets = self.low + (self.high - self.low) * rise[:, None] * onehot[None, :]
        mask = jnp.broadcast_to((tr >= self.settle)[:, None], targets.shape).astype(float)
        return inputs, targets, mask


@dataclasses.dataclass(frozen=True, kw_only=True)
class Ramp(_Cued):
    r"""A ramp of population activity after a cue (interval timing).

    .. math::

        m^*_a(t) = \ell + (h - \ell)\,\mathrm{clip}\!\left(\frac{t - t_c}{T_r}, 0, 1\right),

    from ``low`` :math:`\ell` before the cue at :math:`t_c` (uniform in ``cue_window``; a pulse
    into every channel) to ``high`` :math:`h` after ``ramp_duration`` :math:`T_r` ms, held
    thereafter. The first ``settle`` ms of the trial (transient from the random initial state)
    are masked; the level before the cue is part of the task.
    """

    low: float = 0.5
    high: float = 1.5
    ramp_duration: float = 150.0
    cue_window: tuple[float, float] = (20.0, 100.0)

    name: ClassVar[str] = "ramp"

    def __post_init__(self):
        super().__post_init__()
        _check_number(self.low, "low")
        _check_number(self.high, "high")
        _check_number(self.ramp_duration, "ramp_duration", low=0.0, unit="ms")

    def trial(self, key):
        t_c, inputs, tr, _ = self._cue(key)
        frac = jnp.clip((tr - t_c) / self.ramp_duration, 0.0, 1.0)
        targets = jnp.broadcast_to((self.low + (self.high - self.low) * frac)[:, None],
                                   (self.n_records, self.n_outputs))
        mask = jnp.broadcast_to((tr >= self.settle)[:, None], targets.shape).astype(float)
        return inputs, targets, mask


@dataclasses.dataclass(frozen=True, kw_only=True)
class SynchronyPatterns(_Cued):
    r"""Module co-activation patterns cycled with given probabilities: synchrony carries them.

    ``K`` patterns :math:`s^k \in \{0, 1\}^M` (which modules are active together) are expressed
    in turn, pattern :math:`k` for the fraction :math:`\pi_k` of every period :math:`P`,
    starting at the cue :math:`t_c`:

    .. math::

        m^*_a(t) = \ell + (h - \ell) \sum_k s^k_a\, w_k\!\left(\frac{t - t_c}{P} \bmod 1\right),

    where :math:`w_k` is the indicator of the segment
    :math:`[\sum_{l<k}\pi_l, \sum_{l\le k}\pi_l)` of the unit circle with logistic edges of
    width ``edge`` ms (the :math:`w_k` sum to 1). Over a period the fraction of time in which
    modules :math:`a` and :math:`b` are active together is
    :math:`C_{ab} = \sum_k \pi_k s^k_a s^k_b` (:meth:`coactivation`): the module-synchrony
    matrix carries the pattern probabilities :math:`\pi`. *Changing only the probabilities*
    keeps the patterns (the representation) and changes :math:`\pi`; a *new representation*
    changes the patterns. Targets before :math:`t_c + t_{\rm settle}` are masked.

    Args:
        patterns: ``K`` tuples of ``M`` zeros/ones (``n_modules`` is taken from them).
        probabilities: ``K`` positive numbers, normalised to sum to 1.
        period: cycle period :math:`P` in ms.
        low, high: order-parameter levels of inactive / active modules.
        edge: width (ms) of the smooth transitions between patterns.
    """

    patterns: tuple[tuple[int, ...], ...] = ((1, 1, 0, 0), (0, 1, 1, 0), (0, 0, 1, 1))
    probabilities: tuple[float, ...] = (0.5, 0.3, 0.2)
    period: float = 150.0
    low: float = 0.5
    high: float = 1.5
    edge: float = 4.0
    n_modules: int = -1  # taken from the patterns

    name: ClassVar[str] = "synchrony"

    def __post_init__(self):
        try:
            pats = tuple(tuple(int(v) for v in p) for p in self.patterns)
        except (TypeError, ValueError):
            raise NeurocircuitsError(
                f"patterns must be a sequence of 0/1 tuples (one per pattern, one entry per "
                f"module), got {self.patterns!r}."
            ) from None
        if not pats or len({len(p) for p in pats}) != 1 or any(v not in (0, 1) for p in pats
                                                                for v in p):
            raise NeurocircuitsError(
                f"patterns must be K >= 1 tuples of equal length M with entries 0 or 1, got "
                f"{self.patterns!r}."
            )
        m = len(pats[0])
        if self.n_modules not in (-1, m):
            raise NeurocircuitsError(
                f"n_modules = {self.n_modules} disagrees with the patterns' length M = {m}; "
                "leave n_modules out (it is taken from the patterns)."
            )
        object.__setattr__(self, "patterns", pats)
        object.__setattr__(self, "n_modules", m)
        probs = tuple(self.probabilities)
        if len(probs) != len(pats):
            raise NeurocircuitsError(
                f"probabilities must have one entry per pattern (K = {len(pats)}), got "
                f"{len(probs)}: {self.probabilities!r}."
            )
        probs = tuple(_check_number(p, f"probabilities[{k}]", low=0.0)
                      for k, p in enumerate(probs))
        total = sum(probs)
        object.__setattr__(self, "probabilities", tuple(p / total for p in probs))
        super().__post_init__()
        _check_number(self.period, "period", low=0.0, unit="ms")
        _check_number(self.low, "low")
        _check_number(self.high, "high")
        _check_number(self.edge, "edge", low=0.0, unit="ms")

    def coactivation(self) -> np.ndarray:
        r""":math:`C_{ab} = \sum_k \pi_k s^k_a s^k_b`, shape ``(M, M)``: the fraction of time
        modules ``a`` and ``b`` are active together (diagonal: each module's activation
        probability)."""
        s = np.asarray(self.patterns, float)
        return np.einsum("k,ka,kb->ab", np.asarray(self.probabilities), s, s)

    def weights(self, phase):
        """The smooth segment indicators :math:`w_k(\\varphi)`, shape ``phase.shape + (K,)``."""
        edges = np.concatenate([[0.0], np.cumsum(self.probabilities)])
        eps = self.edge / self.period
        x = phase[..., None]
        start, end = jnp.asarray(edges[:-1]), jnp.asarray(edges[1:])
        w = 0.0
        for shift in (-1.0, 0.0, 1.0):  # periodic images
            w = w + jax.nn.sigmoid((x + shift - start) / eps) - jax.nn.sigmoid(
                (x + shift - end) / eps)
        return w

    def trial(self, key):
        t_c, inputs, tr, mask = self._cue(key)
        phase = jnp.mod((tr - t_c) / self.period, 1.0)
        w = self.weights(phase)  # (R, K)
        s = jnp.asarray(self.patterns, float)  # (K, M)
        targets = self.low + (self.high - self.low) * (w @ s)
        return inputs, targets, mask
