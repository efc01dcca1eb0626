r"""A spiking network: neurons, receptors, projections, inputs and recording, composed as fields.

One step (``k``, from :math:`t_k` to :math:`t_{k+1} = t_k + dt`) of :class:`SpikingNetwork`:

1. the synaptic input arriving at :math:`t_k` (the ring-buffer slot of step ``k``, taken out
   of the buffer at the end of the previous step: ``NetworkState.inbox``) and this step's
   Poisson input are added to the receptors: conductances (nS) and currents (pA) jump, delta
   synapses give voltage jumps (mV);
2. the neurons advance over ``dt`` with the conductances held (see the neuron models); a
   neuron spikes at step ``k`` when its voltage reaches threshold at :math:`t_{k+1}`;
3. the receptors decay exactly, :math:`g \to g\,e^{-dt/\tau_r}`; OU inputs advance;
4. short-term plasticity updates and every projection writes the spikes into the ring buffer
   (``delay = d dt`` arrives at :math:`t_{k+1} + d\,dt`); the slot of step ``k + 1`` is then
   copied into ``inbox`` (and cleared at the start of step ``k + 1``);
5. the spike recorder appends ``(k, i)`` events and counts spikes per population.

Recording is on the fly and bounded: :meth:`SpikingNetwork.record` gives the
:class:`~neurocircuits.Record` that keeps, every ``window`` steps, the spike events of that
window (at most ``capacity``), the spike counts per population and the voltages of chosen cells;
:func:`spike_events` and :func:`population_rates` read them back, and :func:`check_run` raises
a clear error when a bound was exceeded. :func:`run` = :func:`~neurocircuits.simulate` +
:func:`check_run`.

Units: ms, mV, pF, nS, pA, Hz.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._core.errors import NeurocircuitsError, describe
from .._core.model import AbstractModel
from .._core.record import Record
from .._core.simulate import simulate
from ._drive import Drive
from .eif import EIF
from .inputs import DC, NoiseInput, PoissonInput, Stimulus
from .izhikevich import Izhikevich
from .lif import LIF
from .propagation import DenseProjection, EventProjection, GatherProjection, spike_list
from .synapses import ConductanceExp, CurrentExp, Delta, GapJunctions

__all__ = ["SpikingNetwork", "NetworkState", "SpikeRecorder", "run", "check_run",
           "spike_events", "population_rates", "SpikeEvents"]

_NEURONS = (LIF, EIF, Izhikevich)
_RECEPTORS = (Delta, CurrentExp, ConductanceExp)
_INPUTS = (DC, PoissonInput, NoiseInput, Stimulus)
_PROJECTIONS = (DenseProjection, GatherProjection, EventProjection)


class SpikeRecorder(eqx.Module):
    """Bounds of on-the-fly spike recording.

    Args:
        window: steps per recorded observation (``Record(every=window)``).
        capacity: the most spike events kept per window; more raise an error after the run
            naming the count needed.
        n_record: record spike events of neurons ``0 .. n_record - 1`` only (default: all).
    """

    window: int = eqx.field(static=True, default=100)
    capacity: int = eqx.field(static=True, default=4096)
    n_record: int | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        for name in ("window", "capacity"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise NeurocircuitsError(f"SpikeRecorder.{name} must be an int >= 1, got {v!r}.")


class NetworkState(eqx.Module):
    """The state of a :class:`SpikingNetwork` (one instance; batches add a leading axis).

    Attributes:
        neuron: the neuron model's state (``IFState`` or ``IzhState``).
        syn: receptor variables ``(R, N)``: conductances (nS) / currents (pA); 0 for delta.
        buf: ring buffer of future synaptic input ``(L, R, N)``; slot ``l`` holds the input
            of the next step ``k`` with ``k % L == l``.
        inbox: the input arriving at the start of step ``step`` ``(R, N)``, a copy of its slot
            of ``buf`` (which that step clears for reuse).
        stp: per projection, an ``STPState`` or ``None``.
        ou: per input, the OU current (pA) or ``None``.
        spiked: spikes of the last step ``(N,)`` bool.
        step: the global step counter (int32).
        max_spikes: the most neurons that spiked in one step so far (for event capacity).
        events: recorded ``(step, neuron)`` events of the current window ``(capacity, 2)``.
        n_events: spike events in the current window (may exceed capacity: overflow).
        pop_counts: spikes per population in the current window.
    """

    neuron: Any
    syn: jax.Array
    buf: jax.Array
    inbox: jax.Array
    stp: tuple
    ou: tuple
    spiked: jax.Array
    step: jax.Array
    max_spikes: jax.Array
    events: jax.Array
    n_events: jax.Array
    pop_counts: jax.Array


class SpikingNetwork(AbstractModel):
    r"""A network of spiking neurons (see the module docstring for the step).

    Args:
        neurons: :class:`~neurocircuits.spiking.LIF`, :class:`~neurocircuits.spiking.EIF`
            (AdEx) or :class:`~neurocircuits.spiking.Izhikevich`, parameters scalar or ``(N,)``.
        n: number of neurons N.
        receptors: tuple of :class:`Delta`, :class:`CurrentExp`, :class:`ConductanceExp`.
        projections: tuple of projections (:func:`~neurocircuits.spiking.projection`).
        inputs: tuple of :class:`DC`, :class:`PoissonInput`, :class:`NoiseInput`,
            :class:`Stimulus`.
        gap: optional :class:`GapJunctions`.
        labels: population label of every neuron ``(N,)`` (ints ``0..len(populations)-1``).
        populations: population names.
        recorder: a :class:`SpikeRecorder` (bounds of spike recording).
        max_spikes_per_step: the most neurons that may spike in one step for event-driven
            propagation and spike recording (default ``min(n, max(128, n // 20))``); a run that
            exceeds it raises an error after the run (:func:`check_run`) naming the value needed.

    The ``inputs`` argument of :func:`~neurocircuits.simulate` is an extra current (pA,
    scalar or ``(N,)``).

    References:
        Brette et al., J. Comput. Neurosci. 23, 349 (2007); Brunel (2000); Potjans & Diesmann,
        Cereb. Cortex 24, 785 (2014).
    """

    neurons: Any
    receptors: tuple
    projections: tuple
    inputs: tuple
    gap: GapJunctions | None
    labels: jax.Array
    n: int = eqx.field(static=True)
    populations: tuple = eqx.field(static=True)
    recorder: SpikeRecorder = eqx.field(static=True)
    max_spikes_per_step: int = eqx.field(static=True)

    divergence_hint: ClassVar[str] = (
        "For spiking networks: reduce dt (Izhikevich/EIF with Euler need dt <= 0.1-0.5 ms), or "
        "check for runaway excitation (weights, gap-junction conductance g * degree * dt / C "
        "must stay well below 1).")

    def __init__(self, neurons, n: int, *, receptors: Sequence = (), projections: Sequence = (),
                 inputs: Sequence = (), gap=None, labels=None, populations=None,
                 recorder: SpikeRecorder | None = None, max_spikes_per_step: int | None = None):
        self.neurons = neurons
        self.n = int(n)
        self.receptors = tuple(receptors)
        self.projections = tuple(projections)
        self.inputs = tuple(inputs)
        self.gap = gap
        if labels is None:
            labels = np.zeros(self.n, np.int32)
        self.labels = jnp.asarray(labels, jnp.int32)
        n_pop = int(np.max(np.asarray(labels))) + 1 if self.n else 1
        self.populations = tuple(populations) if populations is not None else tuple(
            f"pop{i}" for i in range(n_pop))
        self.recorder = SpikeRecorder() if recorder is None else recorder
        if max_spikes_per_step is None:
            max_spikes_per_step = min(self.n, max(128, self.n // 20))
        if isinstance(max_spikes_per_step, bool) or not isinstance(
                max_spikes_per_step, (int, np.integer)) or max_spikes_per_step < 1:
            raise NeurocircuitsError(
                f"max_spikes_per_step must be an int >= 1, got {max_spikes_per_step!r}.")
        self.max_spikes_per_step = int(min(max_spikes_per_step, self.n))

    def __check_init__(self):
        if not isinstance(self.neurons, _NEURONS):
            raise NeurocircuitsError(
                f"neurons must be LIF, EIF (AdEx) or Izhikevich, got {type(self.neurons).__name__}.")
        if self.n < 1:
            raise NeurocircuitsError(f"n must be >= 1 neurons, got {self.n}.")
        for leaf in jax.tree.leaves(self.neurons):
            if np.ndim(leaf) > 1 or (np.ndim(leaf) == 1 and np.shape(leaf)[0] != self.n):
                raise NeurocircuitsError(
                    f"neuron parameters must be scalars or shape (n,) = ({self.n},), got "
                    f"{describe(leaf)}.")
        for r in self.receptors:
            if not isinstance(r, _RECEPTORS):
                raise NeurocircuitsError(
                    f"receptors must be Delta(), CurrentExp(tau) or ConductanceExp(tau, E_rev); "
                    f"got {type(r).__name__}.")
        for p in self.projections:
            if not isinstance(p, _PROJECTIONS):
                raise NeurocircuitsError(
                    f"projections must be built with spiking.projection(...), got "
                    f"{type(p).__name__}.")
            if p.receptor >= len(self.receptors):
                raise NeurocircuitsError(
                    f"a projection targets receptor {p.receptor}, but the network has "
                    f"{len(self.receptors)} receptor(s); allowed: 0..{len(self.receptors) - 1}.")
        for i in self.inputs:
            if not isinstance(i, _INPUTS):
                raise NeurocircuitsError(
                    f"inputs must be DC, PoissonInput, NoiseInput or Stimulus, got "
                    f"{type(i).__name__}.")
            if isinstance(i, PoissonInput) and i.receptor >= len(self.receptors):
                raise NeurocircuitsError(
                    f"PoissonInput.receptor = {i.receptor} but the network has "
                    f"{len(self.receptors)} receptor(s).")
        if np.shape(self.labels) != (self.n,):
            raise NeurocircuitsError(
                f"labels must have shape (n,) = ({self.n},), got {describe(self.labels)}.")
        if len(self.populations) < int(np.max(np.asarray(self.labels))) + 1:
            raise NeurocircuitsError(
                f"labels use {int(np.max(np.asarray(self.labels))) + 1} populations but only "
                f"{len(self.populations)} names were given.")
        dts = {p.dt for p in self.projections if p.max_delay > 0}
        if len(dts) > 1:
            raise NeurocircuitsError(
                f"the projections' delays were built for different steps dt = {sorted(dts)} ms; "
                "build every projection with the dt you will simulate with.")

    # ------------------------------------------------------------------ sizes
    @property
    def dt(self) -> float | None:
        """The step (ms) the projections' delays were counted in (``None``: no delays)."""
        dts = {p.dt for p in self.projections if p.max_delay > 0}
        return dts.pop() if dts else None

    @property
    def n_slots(self) -> int:
        """Ring-buffer length: the longest delay (steps) + 1."""
        return 1 + max([p.max_delay for p in self.projections], default=0)

    @property
    def n_populations(self) -> int:
        return len(self.populations)

    @property
    def population_sizes(self) -> np.ndarray:
        return np.bincount(np.asarray(self.labels), minlength=self.n_populations)

    # ------------------------------------------------------------------ state
    def initial_state(self, key: jax.Array, *, V0=None, syn0=None) -> NetworkState:
        """The start state: ``V = V0`` (scalar or ``(N,)``; default the neuron's rest), receptor
        variables ``syn0`` (``(R, N)``; default 0), empty buffers, STP at rest."""
        n, r = self.n, len(self.receptors)
        neuron = self.neurons.init_state(n, key, V0)
        syn = jnp.zeros((r, n), jnp.float32) if syn0 is None else jnp.broadcast_to(
            jnp.asarray(syn0, jnp.float32), (r, n))
        buf = jnp.zeros((self.n_slots, r, n), jnp.float32)
        stp = tuple(None if p.stp is None else p.stp.init_state(n) for p in self.projections)
        ou = tuple(i.init_state(n) if isinstance(i, NoiseInput) and not i.is_white else None
                   for i in self.inputs)
        rec = self.recorder
        return NetworkState(neuron, syn, buf, jnp.zeros((r, n), jnp.float32), stp, ou,
                            jnp.zeros((n,), bool),
                            jnp.asarray(0, jnp.int32), jnp.asarray(0, jnp.int32),
                            jnp.zeros((rec.capacity, 2), jnp.int32), jnp.asarray(0, jnp.int32),
                            jnp.zeros((self.n_populations,), jnp.int32))

    def check_state(self, state) -> None:
        if not isinstance(state, NetworkState):
            raise NeurocircuitsError(
                f"state0 must be a NetworkState from net.initial_state(key), got "
                f"{type(state).__name__}.")
        V = self.neurons.voltage(state.neuron)
        if np.shape(V) != (self.n,):
            raise NeurocircuitsError(
                f"state0 voltages must have shape ({self.n},), got {describe(V)} (a batched "
                "state needs batch=nc.Batch(...)).")
        if np.shape(state.pop_counts) != (self.n_populations,) or np.shape(state.events) != (
                self.recorder.capacity, 2):
            raise NeurocircuitsError(
                "state0 does not match this network's populations or recorder; make it with "
                "this network's initial_state(key).")
        if np.shape(state.inbox) != (len(self.receptors), self.n):
            raise NeurocircuitsError(
                f"state0.inbox must have shape (receptors, n) = ({len(self.receptors)}, "
                f"{self.n}), got {describe(state.inbox)}; make the state with this network's "
                "initial_state.")
        if np.shape(state.buf)[0] != self.n_slots:
            raise NeurocircuitsError(
                f"state0.buf has {np.shape(state.buf)[0]} slots but the network needs "
                f"{self.n_slots}; make the state with this network's initial_state.")

    def watched(self, state: NetworkState):
        """The NaN/Inf check after every step skips the ring buffer (``L x R x N``, read in full
        every step otherwise): its slots reach ``inbox`` before they are used."""
        return (state.neuron, state.syn, state.inbox, state.stp, state.ou)

    # ------------------------------------------------------------------ one step
    def step(self, state: NetworkState, t, dt, key, inputs) -> NetworkState:
        n = self.n
        k = state.step
        n_in = len(self.inputs)
        keys = jax.random.split(key, 1 + n_in)
        # this step's synaptic input was taken out of the ring buffer at the end of the last
        # step; its slot is cleared now, before the projections may write into it again. Every
        # write into the buffer comes before the one read (at the end): reading a slot and then
        # clearing it in place made XLA copy the whole buffer every step.
        arrivals = state.inbox
        buf = jax.lax.dynamic_update_index_in_dim(
            state.buf, jnp.zeros_like(arrivals), (k % state.buf.shape[0]).astype(jnp.int32), 0)
        for i, inp in enumerate(self.inputs):
            if isinstance(inp, PoissonInput):
                arrivals = arrivals.at[inp.receptor].add(inp.sample(keys[1 + i], n, dt))
        syn = state.syn + arrivals
        zero = jnp.zeros((n,), jnp.float32)
        g, gE, jump = zero, zero, zero
        I_exp, tau_exp = [], []
        for r, rec in enumerate(self.receptors):
            if isinstance(rec, ConductanceExp):
                g = g + syn[r]
                gE = gE + syn[r] * rec.E_rev
            elif isinstance(rec, CurrentExp):
                I_exp.append(syn[r])
                tau_exp.append(rec.tau)
            else:
                jump = jump + arrivals[r]
        I = zero  # noqa: E741
        noise_var = None
        ou = list(state.ou)
        for i, inp in enumerate(self.inputs):
            if isinstance(inp, DC):
                I = I + inp.amplitude  # noqa: E741
            elif isinstance(inp, Stimulus):
                I = I + inp.current(t, n)  # noqa: E741
            elif isinstance(inp, NoiseInput):
                if inp.is_white:
                    I = I + inp.mean  # noqa: E741
                    v = jnp.broadcast_to(inp.sigma ** 2, (n,))
                    noise_var = v if noise_var is None else noise_var + v
                else:
                    I = I + state.ou[i]  # noqa: E741
                    ou[i] = inp.step_ou(state.ou[i], keys[1 + i], dt)
        V = self.neurons.voltage(state.neuron)
        if self.gap is not None:
            I = I + self.gap.current(V)  # noqa: E741
        if inputs is not None:
            I = I + inputs  # noqa: E741
        drive = Drive(
            g=g, gE=gE, I=I,
            I_exp=jnp.stack(I_exp) if I_exp else jnp.zeros((0, n), jnp.float32),
            tau_exp=jnp.stack(tau_exp) if tau_exp else jnp.zeros((0,), jnp.float32),
            jump=jump, noise=None if noise_var is None else jnp.sqrt(noise_var))
        neuron, spiked = self.neurons.update(state.neuron, drive, dt, keys[0])
        # receptor decay (delta receptors hold nothing)
        decays = jnp.stack([jnp.exp(-dt / rec.tau) if rec.tau is not None else jnp.zeros(())
                            for rec in self.receptors]) if self.receptors else jnp.zeros((0,))
        syn = syn * decays[:, None]
        # plasticity and propagation
        spk_f = spiked.astype(jnp.float32)
        # the spiking neurons, in order, padded with n (computed once per step)
        idx, n_spk = spike_list(spiked, self.max_spikes_per_step)
        stp = list(state.stp)
        for p, proj in enumerate(self.projections):
            eff = spk_f
            if proj.stp is not None:
                stp[p], eff = proj.stp.update(state.stp[p], spiked, dt)
            buf = proj.deliver(buf, spiked, eff, k, idx, n_spk)
        # recording
        rec = self.recorder
        fresh = (k % rec.window) == 0
        n_events = jnp.where(fresh, 0, state.n_events)
        pop_counts = jnp.where(fresh, 0, state.pop_counts)
        # idx is ascending and padded with n: the recorded spikes are a prefix of it
        valid = idx < (n if rec.n_record is None else rec.n_record)
        pos = jnp.where(valid, n_events + jnp.arange(idx.shape[0], dtype=jnp.int32),
                        rec.capacity)
        ev = jnp.stack([jnp.broadcast_to(k, idx.shape), idx], axis=1)
        events = state.events.at[pos].set(ev, mode="drop")
        n_events = n_events + jnp.sum(valid, dtype=jnp.int32)
        pop_counts = pop_counts + _count_by_label(spiked, self.labels, self.n_populations)
        # take out the next step's input (its slot is cleared at the start of the next step)
        inbox = jax.lax.dynamic_index_in_dim(buf, ((k + 1) % buf.shape[0]).astype(jnp.int32),
                                             0, keepdims=False)
        return NetworkState(neuron, syn, buf, inbox, tuple(stp), tuple(ou), spiked, k + 1,
                            jnp.maximum(state.max_spikes, n_spk), events, n_events, pop_counts)

    # ------------------------------------------------------------------ recording
    def record(self, *, cells: Sequence[int] = (), spikes: bool = True,
               voltage_mean: bool = False) -> Record:
        """The :class:`~neurocircuits.Record` for this network's recorder: every ``window``
        steps the window's spike events (``spikes``, ``n_spikes``), spikes per population
        (``pop_counts``), voltages of ``cells`` (``V``) and optionally the mean voltage per
        population (``V_mean``)."""
        cells = jnp.asarray(np.asarray(cells, np.int64).reshape(-1), jnp.int32)
        labels, n_pop = self.labels, self.n_populations
        sizes = jnp.asarray(np.maximum(self.population_sizes, 1), jnp.float32)
        voltage = self.neurons.voltage

        def fn(state, t):
            out = {"pop_counts": state.pop_counts}
            if spikes:
                out["spikes"] = state.events
                out["n_spikes"] = state.n_events
            if cells.shape[0]:
                out["V"] = voltage(state.neuron)[cells]
            if voltage_mean:
                out["V_mean"] = jax.ops.segment_sum(voltage(state.neuron), labels,
                                                    num_segments=n_pop) / sizes
            return out

        dims = {"pop_counts": ("population",), "spikes": ("event", "step_neuron"),
                "V": ("cell",), "V_mean": ("population",)}
        units = {"pop_counts": "1", "spikes": "1", "n_spikes": "1", "V": "mV", "V_mean": "mV"}
        return Record(every=self.recorder.window, fn=fn, dims=dims, units=units)


def _count_by_label(spiked, labels, n_pop):
    """Spikes per population. A one-hot reduction for few populations (one fused reduction;
    ``segment_sum`` would be a scatter-add of all N neurons into ``n_pop`` bins, serialised by
    GPU atomics)."""
    if n_pop <= 64:
        hit = (labels[:, None] == jnp.arange(n_pop, dtype=labels.dtype)[None, :]) & spiked[:, None]
        return jnp.sum(hit, axis=0, dtype=jnp.int32)
    return jax.ops.segment_sum(spiked.astype(jnp.int32), labels, num_segments=n_pop)


# ------------------------------------------------------------------------------------------
# running and reading back
# ------------------------------------------------------------------------------------------
class SpikeEvents(eqx.Module):
    """Spike events: ``steps`` (global step index ``k``; the spike time is ``t0 + (k + 1) dt``)
    and ``neurons``, numpy int arrays of one length, ordered by step."""

    steps: np.ndarray
    neurons: np.ndarray

    def times(self, dt: float, t0: float = 0.0) -> np.ndarray:
        """Spike times in ms."""
        return t0 + (self.steps + 1) * dt


def check_run(net: SpikingNetwork, traj, dt: float | None = None) -> None:
    """Raise a :class:`NeurocircuitsError` if a run exceeded a bound of ``net``: the spikes per
    step (``max_spikes_per_step``, for event-driven propagation and recording), the
    spike-recording capacity (events per window), or if ``dt`` differs from the ``dt`` the
    delays were built for."""
    if dt is not None and net.dt is not None and not np.isclose(float(dt), net.dt, rtol=1e-6,
                                                                 atol=0):
        raise NeurocircuitsError(
            f"dt = {dt} ms differs from the dt = {net.dt} ms this network's delays were built "
            "for; rebuild the projections with dt or simulate with the network's dt.")
    if traj is None:
        return
    cap = net.max_spikes_per_step
    worst = int(np.max(np.asarray(traj.final_state.max_spikes)))
    has_event = any(isinstance(p, EventProjection) for p in net.projections)
    records = isinstance(traj.ys, dict) and "n_spikes" in traj.ys
    if worst > cap and (has_event or records):
        raise NeurocircuitsError(
            f"{worst} neurons spiked in one step, but the network allows "
            f"max_spikes_per_step = {cap}: event-driven propagation and spike recording dropped "
            f"spikes. Build the SpikingNetwork with max_spikes_per_step={min(net.n, _round_up(worst))}"
            " or more (cost per step grows with it), or use propagation='gather'/'dense' and "
            "record population counts only, for highly synchronous activity.")
    ys = traj.ys
    if isinstance(ys, dict) and "n_spikes" in ys:
        counts = np.asarray(ys["n_spikes"])
        worst = int(counts.max()) if counts.size else 0
        if worst > net.recorder.capacity:
            raise NeurocircuitsError(
                f"Spike recording overflowed: a window of {net.recorder.window} steps had "
                f"{worst} spike events, but SpikeRecorder(capacity={net.recorder.capacity}). "
                f"Use SpikeRecorder(capacity={_round_up(worst)}) or more, a shorter window, or "
                "record fewer neurons (SpikeRecorder(n_record=...)).")


def _round_up(x: int) -> int:
    return int(2 ** np.ceil(np.log2(max(1, x * 1.25))))


def run(net: SpikingNetwork, state0: NetworkState, *, dt: float, n_steps: int, key: jax.Array,
        record: Record | None = None, **kwargs):
    """:func:`~neurocircuits.simulate` followed by :func:`check_run` (the same arguments)."""
    check_run(net, None, dt)
    traj = simulate(net, state0, dt=dt, n_steps=n_steps, key=key, record=record, **kwargs)
    check_run(net, traj)
    return traj


def spike_events(traj, net: SpikingNetwork | None = None) -> SpikeEvents | list[SpikeEvents]:
    """The recorded spikes as :class:`SpikeEvents` (a list per batch element when batched).

    Raises if a window overflowed its capacity (the message says what to change)."""
    if net is not None:
        check_run(net, traj)
    ys = traj.ys
    if not isinstance(ys, dict) or "spikes" not in ys:
        raise NeurocircuitsError(
            "the trajectory holds no spike events: simulate with record=net.record().")
    ev, cnt = np.asarray(ys["spikes"]), np.asarray(ys["n_spikes"])
    cap = ev.shape[-2]
    if cnt.size and cnt.max() > cap:
        raise NeurocircuitsError(
            f"Spike recording overflowed: a window had {int(cnt.max())} spike events but the "
            f"capacity is {cap}; use SpikeRecorder(capacity={_round_up(int(cnt.max()))}) or "
            "more, a shorter window, or fewer recorded neurons.")

    def one(ev, cnt):
        keep = np.arange(cap)[None, :] < cnt[:, None]
        e = ev[keep]
        return SpikeEvents(e[:, 0].astype(np.int64), e[:, 1].astype(np.int64))

    if traj.batched:
        return [one(ev[b], cnt[b]) for b in range(ev.shape[0])]
    return one(ev, cnt)


def population_rates(traj, net: SpikingNetwork, dt: float) -> np.ndarray:
    """Population rates (Hz) per recorded window, shape ``(..., n_windows, n_populations)``."""
    counts = np.asarray(traj.ys["pop_counts"], np.float64)
    sizes = np.maximum(net.population_sizes, 1)
    return counts / (sizes * net.recorder.window * dt * 1e-3)
