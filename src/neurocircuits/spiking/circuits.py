r"""Standard networks, built from a key: the COBA benchmark, Brunel's (2000) sparse E/I network,
the Potjans & Diesmann (2014) microcircuit and a modular RS/FS/LTS cortex.

Each builder returns ``(net, init)`` where ``init(key) -> NetworkState`` draws the published
initial conditions. Units: ms, mV, pF, nS, pA, Hz.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .._core.errors import NeurocircuitsError
from .connectivity import (
    Edges,
    concat,
    fixed_in_degree_edges,
    fixed_probability,
    gap_junction_pairs,
)
from .inputs import PoissonInput
from .izhikevich import Izhikevich
from .lif import LIF
from .network import SpikeRecorder, SpikingNetwork
from .propagation import EventProjection, default_chunk, projection
from .synapses import ConductanceExp, CurrentExp, Delta, GapJunctions, TsodyksMarkram

__all__ = ["coba", "coba_edges", "brunel", "brunel_edges", "microcircuit", "PD14", "modular_cortex",
           "modular_cortex_indegrees", "psp_to_psc"]


# ------------------------------------------------------------------------------------------
# COBA: Vogels & Abbott (2005), Brette et al. (2007) benchmark 1
# ------------------------------------------------------------------------------------------
def coba_edges(key, n: int = 4000, *, f_exc: float = 0.8, p: float = 0.02, dg_e: float = 6.0,
               dg_i: float = 67.0) -> tuple[Edges, Edges, int]:
    """The COBA synapses: ``(E edges, I edges, n_exc)`` (Bernoulli p, weights in nS)."""
    n_e = int(round(f_exc * n))
    k_e, k_i = jax.random.split(key)
    ee = fixed_probability(k_e, n, n_e, p, weight=dg_e)
    ei = fixed_probability(k_i, n, n - n_e, p, weight=dg_i, pre_offset=n_e)
    return ee, ei, n_e


def coba(key, n: int = 4000, *, f_exc: float = 0.8, p: float = 0.02, dg_e: float = 6.0,
         dg_i: float = 67.0, propagation: str = "event", dt: float = 0.1, delay: float = 0.0,
         recorder: SpikeRecorder | None = None, max_spikes_per_step: int | None = None,
         edges=None) -> tuple[SpikingNetwork, Callable]:
    r"""The COBA benchmark network (Brette et al. 2007, benchmark 1; Vogels & Abbott 2005).

    ``n`` LIF neurons (80% E), C = 200 pF, g_L = 10 nS (tau_m = 20 ms), E_L = V_r = -60 mV,
    V_th = -50 mV, t_ref = 5 ms; conductance synapses E_e = 0 mV, tau_e = 5 ms, Delta g_e = 6 nS,
    E_i = -80 mV, tau_i = 10 ms, Delta g_i = 67 nS; connection probability 2%; no external
    input: activity is self-sustained from the initial conditions of the reference script,
    :math:`V \sim E_L + \mathcal N(-5, 5^2)` mV, :math:`g_e \sim 10\,\mathcal N(4, 1.5^2)` nS,
    :math:`g_i \sim 10\,\mathcal N(20, 12^2)` nS.
    """
    if edges is None:
        edges = coba_edges(key, n, f_exc=f_exc, p=p, dg_e=dg_e, dg_i=dg_i)
    ee, ei, n_e = edges
    lif = LIF(C=200.0, g_L=10.0, E_L=-60.0, V_th=-50.0, V_reset=-60.0, t_ref=5.0)
    projs = (projection(ee, n, receptor=0, dt=dt, delay=delay, propagation=propagation),
             projection(ei, n, receptor=1, dt=dt, delay=delay, propagation=propagation))
    labels = (np.arange(n) >= n_e).astype(np.int32)
    net = SpikingNetwork(lif, n, receptors=(ConductanceExp(5.0, 0.0), ConductanceExp(10.0, -80.0)),
                         projections=projs, labels=labels, populations=("E", "I"),
                         recorder=recorder, max_spikes_per_step=max_spikes_per_step)

    def init(k):
        kv, ke, ki = jax.random.split(k, 3)
        V0 = -60.0 + jax.random.normal(kv, (n,)) * 5.0 - 5.0
        ge = (jax.random.normal(ke, (n,)) * 1.5 + 4.0) * 10.0
        gi = (jax.random.normal(ki, (n,)) * 12.0 + 20.0) * 10.0
        return net.initial_state(k, V0=V0, syn0=jnp.stack([ge, gi]))

    return net, init


# ------------------------------------------------------------------------------------------
# Brunel (2000), model A
# ------------------------------------------------------------------------------------------
def brunel_edges(key, *, n_e: int = 10_000, gamma: float = 0.25,
                 C_E: int = 1000) -> tuple[Edges, Edges]:
    r"""The synapses of Brunel's model A with unit weights: ``(E, I)``, every one of the
    :math:`N = N_E + N_I` neurons (:math:`N_I = \gamma N_E`) receiving exactly :math:`C_E`
    synapses (weight +1) from distinct excitatory neurons and :math:`C_I = \gamma C_E` (weight
    -1) from distinct inhibitory ones, drawn uniformly (no multapses; autapses allowed, as in
    NEST's ``fixed_indegree``). :func:`brunel` scales them; build once and pass them as
    ``edges=`` to simulate several phase points on one connectivity."""
    n_e, n_i, C_E, C_I = _brunel_sizes(n_e, gamma, C_E)
    n = n_e + n_i
    k_e, k_i = jax.random.split(key)
    ee = fixed_in_degree_edges(k_e, n, n_e, C_E, weight=1.0)
    ei = fixed_in_degree_edges(k_i, n, n_i, C_I, weight=-1.0, pre_offset=n_e)
    return ee, ei


def _brunel_sizes(n_e, gamma, C_E):
    for name, v in (("n_e", n_e), ("C_E", C_E)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise NeurocircuitsError(f"{name} must be an int >= 1, got {v!r}.")
    if not (np.isfinite(gamma) and 0 < gamma <= 1):
        raise NeurocircuitsError(f"gamma = N_I/N_E must lie in (0, 1], got {gamma!r}.")
    n_i = int(round(gamma * n_e))
    C_I = int(round(gamma * C_E))
    if C_E > n_e or C_I > n_i or n_i < 1 or C_I < 1:
        raise NeurocircuitsError(
            f"in-degrees C_E = {C_E}, C_I = {C_I} need C_E <= N_E = {n_e}, 1 <= C_I <= N_I = "
            f"{n_i} (distinct presynaptic neurons); use a larger n_e or a smaller C_E.")
    return int(n_e), n_i, int(C_E), C_I


def brunel(key, *, n_e: int = 10_000, gamma: float = 0.25, C_E: int = 1000, J: float = 0.1,
           g: float = 5.0, eta: float = 2.0, delay: float = 1.5, tau_m: float = 20.0,
           V_th: float = 20.0, V_r: float = 10.0, t_ref: float = 2.0, dt: float = 0.1,
           propagation: str = "event", recorder: SpikeRecorder | None = None,
           max_spikes_per_step: int | None = None, chunk: int | None = None,
           edges: tuple[Edges, Edges] | None = None) -> tuple[SpikingNetwork, Callable]:
    r"""Brunel's (2000) sparse network of LIF neurons with delta synapses (model A).

    :math:`N_E` excitatory and :math:`N_I = \gamma N_E` inhibitory neurons,
    :math:`\tau \dot V = -V + \tau \sum_j J_j \sum_k \delta(t - t_j^k - D)` (voltages relative
    to rest), threshold :math:`\theta` = ``V_th``, reset ``V_r`` held for ``t_ref`` (inputs
    arriving meanwhile are lost: "insensitive to stimulation"). Each neuron receives exactly
    :math:`C_E` excitatory synapses (PSP ``J`` mV) and :math:`C_I = \gamma C_E` inhibitory ones
    (:math:`-gJ`) with delay ``D`` (:func:`brunel_edges`), and :math:`C_E` independent external
    Poisson trains of rate :math:`\nu_{ext} = \eta\,\nu_{thr}`,
    :math:`\nu_{thr} = \theta/(J C_E \tau)`, PSP ``J``. Defaults: the paper's values
    (:math:`N_E` = 10,000, :math:`C_E` = 1000, J = 0.1 mV, D = 1.5 ms, tau = 20 ms, theta =
    20 mV, V_r = 10 mV, t_ref = 2 ms), at the asynchronous irregular point g = 5, eta = 2.

    Timing is that of NEST's ``iaf_psc_delta`` (``brunel_delta_nest.py``) and of the paper's
    continuous-time model: a PSP arriving at :math:`t` can make the neuron fire at :math:`t`, so
    a spike at :math:`t_s` can cause spikes at :math:`t_s + D` (not :math:`t_s + D + dt`), and the
    voltage at the end of the arrival step is exactly :math:`e^{-dt/\tau}V + J`. The network
    step adds jumps at the start of a step and then relaxes, so the projection's delay is
    :math:`D - dt` and every weight is :math:`J e^{dt/\tau}` (an exact rewriting; ``delay`` must
    be at least one step).

    ``init(key)`` draws :math:`V` uniformly in :math:`[0, \theta)`. Units: ms, mV, Hz.
    """
    n_e, n_i, C_E, C_I = _brunel_sizes(n_e, gamma, C_E)
    n = n_e + n_i
    for name, v, positive in (("J", J, True), ("g", g, False), ("eta", eta, False),
                              ("tau_m", tau_m, True), ("dt", dt, True)):
        if not np.isfinite(v) or v < 0 or (positive and v == 0):
            raise NeurocircuitsError(
                f"{name} must be finite and {'> 0' if positive else '>= 0'}, got {v!r}.")
    if not (np.isfinite(delay) and delay >= dt * (1 - 1e-9)):
        raise NeurocircuitsError(
            f"delay = {delay!r} ms is shorter than one step dt = {dt} ms; a spike acts on its "
            "targets one step later at the earliest (as in NEST). Use delay >= dt.")
    if edges is None:
        edges = brunel_edges(key, n_e=n_e, gamma=gamma, C_E=C_E)
    if not (isinstance(edges, tuple) and len(edges) == 2
            and all(isinstance(e, Edges) for e in edges)):
        raise NeurocircuitsError(
            f"edges must be the pair (E, I) of Edges from brunel_edges(...), got "
            f"{type(edges).__name__}.")
    ee, ei = edges
    if ee.nnz != n * C_E or ei.nnz != n * C_I:
        raise NeurocircuitsError(
            f"edges do not fit this network: {ee.nnz} E and {ei.nnz} I synapses, expected "
            f"{n * C_E} and {n * C_I}; build them with brunel_edges(key, n_e={n_e}, "
            f"gamma={gamma}, C_E={C_E}).")
    w = J * float(np.exp(dt / tau_m))  # the jump relaxes over its arrival step
    syn = concat(Edges(ee.pre, ee.post, ee.weight * w), Edges(ei.pre, ei.post, ei.weight * g * w))
    nu_thr = V_th / (J * C_E * tau_m) * 1e3  # Hz
    lif = LIF.from_tau(tau_m, C=250.0, E_L=0.0, V_th=V_th, V_reset=V_r, t_ref=t_ref)
    proj = projection(syn, n, receptor=0, dt=dt, delay=delay - dt, propagation=propagation,
                      chunk=chunk)
    ext = PoissonInput(rate=eta * nu_thr, n_sources=C_E, weight=w, receptor=0)
    labels = (np.arange(n) >= n_e).astype(np.int32)
    net = SpikingNetwork(lif, n, receptors=(Delta(),), projections=(proj,), inputs=(ext,),
                         labels=labels, populations=("E", "I"), recorder=recorder,
                         max_spikes_per_step=max_spikes_per_step)

    def init(k):
        return net.initial_state(k, V0=jax.random.uniform(k, (n,), minval=0.0, maxval=V_th))

    return net, init


# ------------------------------------------------------------------------------------------
# Potjans & Diesmann (2014)
# ------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _PD14:
    populations: tuple = ("L23E", "L23I", "L4E", "L4I", "L5E", "L5I", "L6E", "L6I")
    N: tuple = (20683, 5834, 21915, 5479, 4850, 1065, 14395, 2948)
    #: rows: target, columns: source (Potjans & Diesmann 2014, Table 5)
    conn_probs: tuple = (
        (0.1009, 0.1689, 0.0437, 0.0818, 0.0323, 0.0, 0.0076, 0.0),
        (0.1346, 0.1371, 0.0316, 0.0515, 0.0755, 0.0, 0.0042, 0.0),
        (0.0077, 0.0059, 0.0497, 0.1350, 0.0067, 0.0003, 0.0453, 0.0),
        (0.0691, 0.0029, 0.0794, 0.1597, 0.0033, 0.0, 0.1057, 0.0),
        (0.1004, 0.0622, 0.0505, 0.0057, 0.0831, 0.3726, 0.0204, 0.0),
        (0.0548, 0.0269, 0.0257, 0.0022, 0.0600, 0.3158, 0.0086, 0.0),
        (0.0156, 0.0066, 0.0211, 0.0166, 0.0572, 0.0197, 0.0396, 0.2252),
        (0.0364, 0.0010, 0.0034, 0.0005, 0.0277, 0.0080, 0.0658, 0.1443))
    K_ext: tuple = (1600, 1500, 2100, 1900, 2000, 1900, 2900, 2100)
    bg_rate: float = 8.0
    PSP_e: float = 0.15
    PSP_rel_sd: float = 0.1
    g: float = -4.0
    delay_e: float = 1.5
    delay_i: float = 0.75
    delay_rel_sd: float = 0.5
    C_m: float = 250.0
    tau_m: float = 10.0
    tau_syn: float = 0.5
    E_L: float = -65.0
    V_th: float = -50.0
    V_reset: float = -65.0
    t_ref: float = 2.0
    V0_mean: float = -58.0
    V0_sd: float = 10.0
    #: full-scale rates of the reference (NEST) implementation, Hz
    rates_reference: tuple = (0.971, 2.868, 4.746, 5.396, 8.142, 9.078, 0.991, 7.523)


PD14 = _PD14()


def psp_to_psc(psp: float, *, C: float, tau_m: float, tau_s: float) -> float:
    """The exponential PSC amplitude (pA) whose PSP peaks at ``psp`` (mV) in a LIF neuron."""
    sub = 1.0 / (tau_s - tau_m)
    pre = tau_m * tau_s / C * sub
    frac = (tau_m / tau_s) ** sub
    return psp / (pre * (frac ** tau_m - frac ** tau_s))


@functools.partial(jax.jit, static_argnames=("n", "total", "dt", "w_rel_sd", "d_rel_sd",
                                             "delay_dtype"))
def _pd14_csr(key, counts, labels, pop_n, off, w_mean, d_mean, *, n, total, dt, w_rel_sd,
              d_rel_sd, delay_dtype):
    """All synapses of the microcircuit in one compiled program, directly in the CSR layout of
    an :class:`~neurocircuits.spiking.EventProjection` (no sort, no second pass): the number of
    synapses from each presynaptic neuron j into each target population is the count of uniform
    draws hitting j (the fixed-total-number rule), so the synapses come out ordered by j, and
    targets are uniform within the population. Every array is an argument (constants of this
    size would be constant-folded by XLA); the function is compiled once per size."""
    k0, k1, k3, k4 = jax.random.split(key, 4)
    # draws: pair (a, b) has counts[a, b] uniform presynaptic neurons in population b
    pair = jnp.repeat(jnp.arange(64, dtype=jnp.int32), counts, total_repeat_length=total)
    a, b = pair // 8, pair % 8
    u = jax.random.uniform(k0, (total,))
    pre_draw = off[b] + jnp.minimum((u * pop_n[b]).astype(jnp.int32), pop_n[b] - 1)
    C = jnp.zeros((n, 8), jnp.int32).at[pre_draw, a].add(1)  # synapses j -> population a
    seg = jnp.repeat(jnp.arange(n * 8, dtype=jnp.int32), C.ravel(), total_repeat_length=total)
    pre, a = seg // 8, seg % 8
    pr = a * 8 + labels[pre]
    u2 = jax.random.uniform(k1, (total,))
    post = off[a] + jnp.minimum((u2 * pop_n[a]).astype(jnp.int32), pop_n[a] - 1)
    wm = w_mean[pr]
    w = wm + jnp.abs(wm) * w_rel_sd * jax.random.normal(k3, (total,))
    w = jnp.where(wm > 0, jnp.maximum(w, 0.0), jnp.minimum(w, 0.0))
    dm = d_mean[pr]
    d = jnp.maximum(dm + dm * d_rel_sd * jax.random.normal(k4, (total,)), dt)
    steps = jnp.rint(d / dt)
    out_degree = C.sum(axis=1)
    zero = jnp.zeros((1,), jnp.int32)
    indptr = jnp.concatenate([zero, jnp.cumsum(out_degree, dtype=jnp.int32),
                              jnp.full((1,), total, jnp.int32)])
    pad = lambda x, v: jnp.concatenate([x, jnp.full((1,), v, x.dtype)])  # noqa: E731
    return (indptr, pad(post, 0), pad(w, 0.0), pad(steps.astype(delay_dtype), 0),
            jnp.max(out_degree), jnp.max(steps).astype(jnp.int32), jnp.min(steps))


def _pd14_projection(key, n_syn, N, w_mean, d_mean, w_rel_sd, d_rel_sd, dt, chunk):
    """The microcircuit's synapses as one event projection (delays in steps of ``dt``)."""
    N = np.asarray(N)
    n, total = int(N.sum()), int(n_syn.sum())
    offsets = np.concatenate([[0], np.cumsum(N)[:-1]])
    args = (key, jnp.asarray(n_syn.ravel(), jnp.int32),
            jnp.asarray(np.repeat(np.arange(8), N), jnp.int32), jnp.asarray(N, jnp.int32),
            jnp.asarray(offsets, jnp.int32), jnp.asarray(w_mean, jnp.float32),
            jnp.asarray(d_mean, jnp.float32))
    kw = dict(n=n, total=total, dt=float(dt), w_rel_sd=float(w_rel_sd),
              d_rel_sd=float(d_rel_sd))
    indptr, post, w, d, max_out, max_d, min_d = _pd14_csr(*args, **kw, delay_dtype=jnp.int16)
    max_out, max_d, min_d = (int(v) for v in jax.device_get((max_out, max_d, min_d)))
    if max_d >= 2**15 or min_d < 0:  # int16 steps overflow (a tiny dt): redraw as int32
        indptr, post, w, d, *_ = _pd14_csr(*args, **kw, delay_dtype=jnp.int32)
    return EventProjection(indptr, post, w, d, 0, 0, max_d, max(1, max_out), float(dt),
                           default_chunk(total) if chunk is None else chunk)


def microcircuit(key, *, scale: float = 1.0, dt: float = 0.1, recorder=None,
                 max_spikes_per_step: int | None = None, chunk: int | None = None,
                 params: _PD14 = PD14) -> tuple[SpikingNetwork, Callable]:
    r"""The Potjans & Diesmann (2014) cortical microcircuit: 8 populations (L2/3, L4, L5, L6;
    E and I), 77,169 LIF neurons with exponential current synapses (tau_s = 0.5 ms) and ~0.3e9
    synapses at ``scale = 1``.

    Synapse counts per projection are
    :math:`K_{ab} = \log(1 - p_{ab}) / \log(1 - 1/(N_a N_b))` (fixed total number, multapses);
    weights :math:`\mathcal N(w, (0.1 w)^2)` from a 0.15 mV PSP (x2 for L4E -> L2/3E, x-4 for
    inhibition), sign-clipped; delays :math:`\mathcal N(1.5, 0.75^2)` ms (E) /
    :math:`\mathcal N(0.75, 0.375^2)` ms (I), at least ``dt``; background Poisson input at 8 Hz
    from :math:`K_{ext}` sources. ``scale < 1`` shrinks every population but keeps the in-degrees
    (the mean-field-preserving downscaling), so rates stay close to the full model's.
    """
    P = params
    if not 0 < scale <= 1:
        raise NeurocircuitsError(f"scale must lie in (0, 1], got {scale!r}.")
    N_full = np.asarray(P.N, np.float64)
    N = np.maximum(np.rint(N_full * scale).astype(np.int64), 1)
    n = int(N.sum())
    probs = np.asarray(P.conn_probs)
    K_full = np.log(1 - probs) / np.log(1 - 1 / np.outer(N_full, N_full))
    n_syn = np.rint(K_full / N_full[:, None] * N[:, None]).astype(np.int64)  # same in-degree
    w_e = psp_to_psc(P.PSP_e, C=P.C_m, tau_m=P.tau_m, tau_s=P.tau_syn)
    exc = (np.arange(8) % 2 == 0)[None, :].repeat(8, 0)
    w_mean = np.where(exc, w_e, w_e * P.g)
    w_mean[0, 2] *= 2.0  # L4E -> L2/3E
    d_mean = np.where(exc, P.delay_e, P.delay_i)
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer))
                              or chunk < 1):
        raise NeurocircuitsError(f"chunk must be an int >= 1 (synapse events per scatter pass), "
                                 f"got {chunk!r}.")
    proj = _pd14_projection(key, n_syn, N, w_mean.ravel(), d_mean.ravel(), P.PSP_rel_sd,
                            P.delay_rel_sd, dt, None if chunk is None else int(chunk))
    if max_spikes_per_step is None:
        max_spikes_per_step = max(128, n // 4)  # the start is synchronous
    labels = np.repeat(np.arange(8), N).astype(np.int32)
    lif = LIF.from_tau(P.tau_m, C=P.C_m, E_L=P.E_L, V_th=P.V_th, V_reset=P.V_reset, t_ref=P.t_ref)
    ext = PoissonInput(rate=P.bg_rate, n_sources=jnp.asarray(np.repeat(P.K_ext, N), jnp.float32),
                       weight=w_e, receptor=0)
    net = SpikingNetwork(lif, n, receptors=(CurrentExp(P.tau_syn),), projections=(proj,),
                         inputs=(ext,), labels=labels, populations=P.populations,
                         recorder=recorder, max_spikes_per_step=max_spikes_per_step)

    def init(k):
        V0 = P.V0_mean + P.V0_sd * jax.random.normal(k, (n,))
        return net.initial_state(k, V0=jnp.minimum(V0, P.V_th - 1e-3))

    return net, init


# ------------------------------------------------------------------------------------------
# modular RS / FS / LTS cortex
# ------------------------------------------------------------------------------------------
def modular_cortex(key, *, n_modules: int = 4, n_per_module: int = 500,
                   fractions=(0.8, 0.1, 0.1), k_in: int = 50, k_out: int = 10,
                   w_e: float = 0.01, w_i: float = 0.05, tau_e: float = 5.0, tau_i: float = 10.0,
                   E_e: float = 0.0, E_i: float = -80.0, ext_rate: float = 2000.0,
                   w_ext: float = 0.006, stp_e: TsodyksMarkram | None = None,
                   gap_g: float = 0.0, gap_k: int = 4, dt: float = 0.1,
                   propagation: str = "event", recorder=None,
                   max_spikes_per_step: int | None = None):
    r"""A modular cortex of Izhikevich RS (excitatory), FS and LTS (inhibitory) cells.

    ``n_modules`` modules of ``n_per_module`` cells (fractions RS/FS/LTS). Every cell receives
    ``k_in`` excitatory synapses from RS cells of its own module and ``k_out`` from RS cells of
    other modules (fixed in-degree), and ``k_in * f_I / f_E`` inhibitory synapses from the FS
    and LTS cells of its own module (inhibition is local). Conductance synapses (dimensionless
    conductances in Izhikevich units: current :math:`g (E - v)`), optional Tsodyks--Markram
    depression on E synapses, gap junctions within the FS class of each module, and Poisson
    background drive (``ext_rate`` Hz, weight ``w_ext``) into the excitatory receptor.
    Population labels are (module, class): label = 3 module + class. ``n_modules = 1`` (or
    ``k_out = 0``) gives the network without modular structure. The in-degrees are in
    :func:`modular_cortex_indegrees` (the input of the mean-field theory,
    :func:`~neurocircuits.spiking.theory.conductance_mean_field`).

    Defaults: weights in Izhikevich conductance units (a jump ``w`` gives the current
    ``w (E - v)``): ``w_e = 0.01`` (an EPSP of ~1 mV at rest), ``w_i = 0.05``, external drive
    2000 Hz x 0.006 (RS cells near rheobase), ``dt = 0.1`` ms.
    """
    n_rs, n_fs, n_lts, k_inh = _cortex_sizes(n_modules, n_per_module, fractions, k_in, k_out)
    for name, v in (("w_e", w_e), ("w_i", w_i), ("w_ext", w_ext), ("ext_rate", ext_rate),
                    ("gap_g", gap_g)):
        if not (np.isfinite(v) and v >= 0):
            raise NeurocircuitsError(f"{name} must be finite and >= 0, got {v!r}.")
    for name, v in (("tau_e", tau_e), ("tau_i", tau_i), ("dt", dt)):
        if not (np.isfinite(v) and v > 0):
            raise NeurocircuitsError(f"{name} must be > 0 ms, got {v!r}.")
    m = n_per_module
    n = n_modules * m
    types = [("RS", n_rs), ("FS", n_fs), ("LTS", n_lts)] * n_modules
    izh = Izhikevich.from_types(*[t for t in types if t[1] > 0])
    cls = np.tile(np.repeat([0, 1, 2], [n_rs, n_fs, n_lts]), n_modules)
    mod = np.repeat(np.arange(n_modules), m)
    labels = (3 * mod + cls).astype(np.int32)
    keys = jax.random.split(key, 4 * n_modules + 1)
    e_parts, i_parts = [], []
    for a in range(n_modules):
        off = a * m
        # local excitation from the RS cells of module a
        e_parts.append(fixed_in_degree_edges(keys[4 * a], m, n_rs, k_in, weight=w_e,
                                             pre_offset=off, post_offset=off))
        # long-range excitation from RS cells of the other modules
        if n_modules > 1 and k_out > 0:
            others = np.concatenate([np.arange(b * m, b * m + n_rs)
                                     for b in range(n_modules) if b != a])
            e = fixed_in_degree_edges(keys[4 * a + 1], m, len(others), k_out, weight=w_e,
                                      post_offset=off)
            e_parts.append(Edges(jnp.asarray(others, jnp.int32)[e.pre], e.post, e.weight))
        if k_inh > 0:
            i_parts.append(fixed_in_degree_edges(keys[4 * a + 2], m, n_fs + n_lts, k_inh,
                                                 weight=w_i, pre_offset=off + n_rs,
                                                 post_offset=off))
    projs = (projection(concat(*e_parts), n, receptor=0, dt=dt, propagation=propagation,
                        stp=stp_e),
             ) + ((projection(concat(*i_parts), n, receptor=1, dt=dt, propagation=propagation),)
                  if i_parts else ())
    gap = None
    if gap_g > 0 and n_fs >= 2:
        src, dst = [], []
        for a in range(n_modules):
            members = np.arange(a * m + n_rs, a * m + n_rs + n_fs)
            s, d = gap_junction_pairs(keys[4 * a + 3], members, min(gap_k, n_fs - 1))
            src.append(s)
            dst.append(d)
        gap = GapJunctions(jnp.concatenate(src), jnp.concatenate(dst), gap_g)
    ext = PoissonInput(rate=ext_rate, n_sources=1, weight=w_ext, receptor=0)
    pops = tuple(f"M{a}-{c}" for a in range(n_modules) for c in ("RS", "FS", "LTS"))
    net = SpikingNetwork(izh, n, receptors=(ConductanceExp(tau_e, E_e), ConductanceExp(tau_i, E_i)),
                         projections=projs, inputs=(ext,), gap=gap, labels=labels,
                         populations=pops, recorder=recorder,
                         max_spikes_per_step=max_spikes_per_step)

    def init(k):
        return net.initial_state(k, V0=-65.0 + 5.0 * jax.random.normal(k, (n,)))

    return net, init


def _cortex_sizes(n_modules, n_per_module, fractions, k_in, k_out):
    for name, v, lo in (("n_modules", n_modules, 1), ("n_per_module", n_per_module, 3),
                        ("k_in", k_in, 1), ("k_out", k_out, 0)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise NeurocircuitsError(f"{name} must be an int >= {lo}, got {v!r}.")
    fr = np.asarray(fractions, np.float64)
    if fr.shape != (3,) or np.any(~np.isfinite(fr)) or np.any(fr < 0) or \
            abs(fr.sum() - 1) > 1e-6 or fr[0] <= 0:
        raise NeurocircuitsError(
            f"fractions must be three non-negative numbers (RS, FS, LTS) summing to 1 with RS > 0, "
            f"got {fractions!r}.")
    n_rs = int(round(fr[0] * n_per_module))
    n_fs = int(round(fr[1] * n_per_module))
    n_lts = n_per_module - n_rs - n_fs
    if k_in > n_rs:
        raise NeurocircuitsError(
            f"k_in={k_in} local excitatory inputs exceed the {n_rs} RS cells of a module; "
            f"allowed: k_in <= {n_rs}.")
    if n_modules > 1 and k_out > (n_modules - 1) * n_rs:
        raise NeurocircuitsError(
            f"k_out={k_out} exceeds the {(n_modules - 1) * n_rs} RS cells of the other modules.")
    k_inh = int(round(k_in * (1 - fr[0]) / fr[0])) if n_fs + n_lts > 0 else 0
    k_inh = min(k_inh, n_fs + n_lts)
    return n_rs, n_fs, n_lts, k_inh


def modular_cortex_indegrees(*, n_modules: int = 4, n_per_module: int = 500,
                             fractions=(0.8, 0.1, 0.1), k_in: int = 50, k_out: int = 10):
    """In-degrees of :func:`modular_cortex` per (module, class) population, in its label order
    (label = 3 module + class): ``(K_e, K_i)``, each ``(3 M, 3 M)``, the expected number of
    synapses a cell of population ``a`` receives from population ``b`` through the excitatory
    and the inhibitory receptor (inhibitory synapses are drawn from the FS and LTS cells of a
    module together, so they split in proportion to the class sizes)."""
    n_rs, n_fs, n_lts, k_inh = _cortex_sizes(n_modules, n_per_module, fractions, k_in, k_out)
    P = 3 * n_modules
    K_e, K_i = np.zeros((P, P)), np.zeros((P, P))
    for a in range(n_modules):
        for c in range(3):
            row = 3 * a + c
            K_e[row, 3 * a] = k_in
            if n_modules > 1:
                for b in range(n_modules):
                    if b != a:
                        K_e[row, 3 * b] = k_out / (n_modules - 1)
            if n_fs + n_lts:
                K_i[row, 3 * a + 1] = k_inh * n_fs / (n_fs + n_lts)
                K_i[row, 3 * a + 2] = k_inh * n_lts / (n_fs + n_lts)
    return K_e, K_i
