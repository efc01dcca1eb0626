r"""External inputs of a spiking network, composed as a tuple field of the network.

* :class:`DC` -- a constant current (pA).
* :class:`PoissonInput` -- ``n_sources`` independent Poisson trains of ``rate`` Hz per neuron
  into a receptor, each spike of weight ``weight`` (the receptor's unit); the summed count per
  step is drawn directly, :math:`\mathrm{Poisson}(n\,\nu\,dt)`.
* :class:`NoiseInput` -- a Gaussian current: white, :math:`I = \mu + \sigma\,\xi(t)` with
  :math:`\sigma` in pA ms^1/2 (``tau=None``), or Ornstein--Uhlenbeck,
  :math:`\tau \dot I = \mu - I + \sigma\sqrt{2\tau}\,\xi(t)` with stationary s.d.
  :math:`\sigma` in pA (updated exactly).
* :class:`Stimulus` -- a current ``amplitude`` (pA) into chosen cells during ``[start, stop)``.

Anything time-varying beyond these goes through the ``inputs`` argument of
:func:`~neurocircuits.simulate` (a current in pA, scalar or ``(N,)``, or a function of time).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._core.errors import NeurocircuitsError, describe
from .lif import _arr, _check

__all__ = ["DC", "PoissonInput", "NoiseInput", "Stimulus", "white_noise_for_lif", "poisson"]


class DC(eqx.Module):
    """A constant current ``amplitude`` (pA, scalar or ``(N,)``)."""

    amplitude: jax.Array

    def __init__(self, amplitude=0.0):
        self.amplitude = _arr(amplitude)

    def __check_init__(self):
        _check(self.amplitude, "DC.amplitude", unit="pA")


class PoissonInput(eqx.Module):
    """``n_sources`` Poisson trains of ``rate`` (Hz) per neuron into receptor ``receptor``.

    Args:
        rate: rate of each source (Hz, >= 0), scalar or ``(N,)``.
        n_sources: number of sources per neuron (>= 0), scalar or ``(N,)``.
        weight: weight of each input spike (nS, pA or mV, the receptor's unit).
        receptor: index of the receptor in the network's ``receptors``.
    """

    rate: jax.Array
    n_sources: jax.Array
    weight: jax.Array
    receptor: int = eqx.field(static=True)

    def __init__(self, rate, n_sources=1, weight=1.0, receptor=0):
        self.rate, self.n_sources, self.weight = _arr(rate), _arr(n_sources), _arr(weight)
        if isinstance(receptor, bool) or not isinstance(receptor, (int, np.integer)):
            raise NeurocircuitsError(f"PoissonInput.receptor must be an int index, got {receptor!r}.")
        self.receptor = int(receptor)

    def __check_init__(self):
        _check(self.rate, "PoissonInput.rate", low=0.0, strict=False, unit="Hz")
        _check(self.n_sources, "PoissonInput.n_sources", low=0.0, strict=False)
        _check(self.weight, "PoissonInput.weight")

    def sample(self, key, n, dt):
        lam = jnp.broadcast_to(self.rate * self.n_sources * dt * 1e-3, (n,))
        return self.weight * poisson(key, lam, (n,)).astype(jnp.float32)


def _key_chain(key, steps: int, parts: int):
    """``for _ in range(steps): key, *sub = jax.random.split(key, 1 + parts)``: the last key
    and, per part, the ``(steps,)`` subkeys, as a few fused kernels rather than ``steps``
    dependent splits (each several small kernels). With JAX's (default) partitionable
    threefry, ``split(k, m)[i]`` hashes the counter ``(0, i)`` under ``k``: the chain is
    computed for every step at once (step ``t`` hashes ``t`` times, ``steps^2`` tiny hashes),
    elementwise; other PRNGs take the plain loop."""
    typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    impl = jax.random.key_impl(key) if typed else None
    if not (typed and jax.config.jax_threefry_partitionable
            and str(getattr(impl, "name", impl)) == "threefry2x32"):
        subs = []
        for _ in range(steps):
            key, *sub = jax.random.split(key, 1 + parts)
            subs.append(sub)
        return key, [jnp.stack([sb[j] for sb in subs]) for j in range(parts)]
    from jax.extend.random import threefry2x32_p

    data = jax.random.key_data(key)
    t = jnp.arange(steps + 1, dtype=jnp.uint32)
    k1, k2 = (jnp.broadcast_to(data[i], (steps + 1,)) for i in range(2))
    zero = jnp.zeros((steps + 1,), jnp.uint32)
    for j in range(steps):
        h1, h2 = threefry2x32_p.bind(k1, k2, zero, zero)  # split(k)[0]: counter (0, 0)
        k1, k2 = jnp.where(j < t, h1, k1), jnp.where(j < t, h2, k2)
    out = []
    for i in range(1, parts + 1):
        b1, b2 = threefry2x32_p.bind(k1[:steps], k2[:steps], zero[:steps], zero[:steps] + i)
        out.append(jax.random.wrap_key_data(jnp.stack([b1, b2], axis=-1), impl=impl))
    last = jax.random.wrap_key_data(jnp.stack([k1[steps], k2[steps]]), impl=impl)
    return last, out


#: unrolled iterations of :func:`poisson` (Knuth branch, lam < 10; rejection branch)
POISSON_KNUTH_STEPS = 16
POISSON_REJECTION_STEPS = 10


def poisson(key, lam, shape, *, unrolled: bool | None = None):
    r"""``jax.random.poisson(key, lam, shape)`` (int32), the same numbers, without its loops.

    JAX draws Knuth's product of uniforms for :math:`\lambda < 10` and Hörmann's transformed
    rejection otherwise, each in a ``while_loop`` that runs until every element is done (both
    branches run for all elements). On a GPU every iteration of such a loop copies its
    condition to the host and waits for it: ~20 synchronisations per step for 10^5 cells at
    :math:`\lambda \approx 2`. Here the first ``POISSON_KNUTH_STEPS`` and
    ``POISSON_REJECTION_STEPS`` iterations are computed without a loop: their uniforms in one
    batched draw, the iterations elementwise, and the rejection loop's stopping iteration (its
    result depends on it) from one reduction -- a few fused kernels, no host round trip. Only
    when an element is not done by then (rarely: a count above 15, or a rejection step failing
    ten times) a ``lax.cond`` runs JAX's loops on from there.

    Args:
        unrolled: use the unrolled form (default: on every backend but the CPU, where loops
            cost nothing extra and the plain ``jax.random.poisson`` is taken).
    """
    if unrolled is None:
        unrolled = jax.default_backend() != "cpu"
    if not unrolled:
        return jax.random.poisson(key, lam, shape)
    lam = jnp.broadcast_to(lam, shape).astype(jnp.float32)
    use_knuth = jnp.isnan(lam) | (lam < 10)
    lam_k = jnp.where(use_knuth, lam, 0.0)
    lam_r = jnp.where(use_knuth, jnp.float32(1e5), lam)
    n_k, n_r = POISSON_KNUTH_STEPS, POISSON_REJECTION_STEPS

    # JAX's loop bodies (for the rare continuation)
    def knuth_body(carry):
        i, k, rng, log_prod = carry
        rng, sub = jax.random.split(rng)
        k = jnp.where(log_prod > -lam_k, k + 1, k)
        u = jax.random.uniform(sub, shape, jnp.float32)
        return i + 1, k, rng, log_prod + jnp.log(u)

    def knuth_more(carry):
        return (carry[3] > -lam_k).any()

    log_lam = jnp.log(lam_r)
    b = 0.931 + 2.53 * jnp.sqrt(lam_r)
    a = -0.059 + 0.02483 * b
    inv_alpha = 1.1239 + 1.1328 / (b - 3.4)
    v_r = 0.9277 - 3.6224 / (b - 2)

    def rej_draw(u, v):
        u_shifted = 0.5 - abs(u)
        k = jnp.floor((2 * a / u_shifted + b) * u + lam_r + 0.43)
        s = jnp.log(v * inv_alpha / (a / (u_shifted * u_shifted) + b))
        t = -lam_r + k * log_lam - jax.lax.lgamma(k + 1)
        accept1 = (u_shifted >= 0.07) & (v <= v_r)
        reject = (k < 0) | ((u_shifted < 0.013) & (v > u_shifted))
        return k, accept1 | (~reject & (s <= t))

    def rej_body(carry):
        i, k_out, accepted, key = carry
        key, sub0, sub1 = jax.random.split(key, 3)
        k, accept = rej_draw(jax.random.uniform(sub0, shape, jnp.float32) - 0.5,
                             jax.random.uniform(sub1, shape, jnp.float32))
        return i + 1, jnp.where(accept, k, k_out), accepted | accept, key

    def rej_more(carry):
        return (~carry[2]).any()

    # the unrolled iterations draw all their uniforms at once (vmap over the iterations' keys
    # gives the numbers of separate calls)
    def uniforms(keys):
        return jax.vmap(lambda k: jax.random.uniform(k, shape, jnp.float32))(keys)

    # Knuth: iterations after an element is done leave it unchanged, so n_k of them are exact
    # for every element done by then
    rng, (subs,) = _key_chain(key, n_k, 1)
    u_all = uniforms(subs)
    k, log_prod = jnp.zeros(shape, jnp.int32), jnp.zeros(shape, jnp.float32)
    for t in range(n_k):
        k = jnp.where(log_prod > -lam_k, k + 1, k)
        log_prod = log_prod + jnp.log(u_all[t])
    kc = (jnp.int32(n_k), k, rng, log_prod)

    # rejection: all draws elementwise; iteration t runs while some element is not yet
    # accepted, so the loop stops after iteration T = max over elements of the first accepting
    # iteration (one reduction), and each element keeps its last acceptance among t <= T
    rkey, (s0, s1) = _key_chain(key, n_r, 2)
    kr, accept = rej_draw(uniforms(s0) - 0.5, uniforms(s1))
    first = jnp.full(shape, n_r, jnp.int32)  # n_r: not accepted in the unrolled iterations
    for t in reversed(range(n_r)):
        first = jnp.where(accept[t], t, first)
    last_run = jnp.max(first)  # n_r when the loop must go on
    k_out, accepted = jnp.full(shape, -1.0, jnp.float32), jnp.zeros(shape, bool)
    for t in range(n_r):
        take = accept[t] & (t <= last_run)
        k_out, accepted = jnp.where(take, kr[t], k_out), accepted | take
    rc = (jnp.minimum(last_run + 1, n_r), k_out, accepted, rkey)

    def finish(carries):
        kc, rc = carries
        big = jnp.int32(np.iinfo(np.int32).max)
        kc = jax.lax.while_loop(lambda c: knuth_more(c) & (c[0] < big), knuth_body, kc)
        rc = jax.lax.while_loop(lambda c: rej_more(c) & (c[0] < big), rej_body, rc)
        return kc, rc

    kc, rc = jax.lax.cond(knuth_more(kc) | (last_run >= n_r), finish, lambda c: c, (kc, rc))
    result = jnp.where(use_knuth, kc[1] - 1, rc[1].astype(jnp.int32))
    return jnp.where(lam == 0, 0, result)


class NoiseInput(eqx.Module):
    """A Gaussian current: white (``tau=None``; ``sigma`` in pA ms^1/2) or OU (``tau`` in ms;
    ``sigma`` = stationary s.d. in pA). ``mean`` in pA. All scalars or ``(N,)``."""

    mean: jax.Array
    sigma: jax.Array
    tau: jax.Array | None = None

    def __init__(self, mean=0.0, sigma=0.0, tau=None):
        self.mean, self.sigma = _arr(mean), _arr(sigma)
        self.tau = None if tau is None else _arr(tau)

    def __check_init__(self):
        _check(self.mean, "NoiseInput.mean", unit="pA")
        _check(self.sigma, "NoiseInput.sigma", low=0.0, strict=False)
        if self.tau is not None:
            _check(self.tau, "NoiseInput.tau", low=0.0, unit="ms")

    @property
    def is_white(self) -> bool:
        return self.tau is None

    def init_state(self, n):
        return jnp.broadcast_to(self.mean, (n,)).astype(jnp.float32)

    def step_ou(self, I, key, dt):
        e = jnp.exp(-dt / self.tau)
        return self.mean + (I - self.mean) * e + self.sigma * jnp.sqrt(1 - e * e) * \
            jax.random.normal(key, I.shape)


class Stimulus(eqx.Module):
    """A current ``amplitude`` (pA) into ``cells`` (indices) during ``[start, stop)`` (ms)."""

    cells: jax.Array
    amplitude: jax.Array
    start: jax.Array
    stop: jax.Array

    def __init__(self, cells, amplitude, start=0.0, stop=float("inf")):
        self.cells = jnp.asarray(cells, jnp.int32)
        self.amplitude, self.start, self.stop = _arr(amplitude), _arr(start), _arr(stop)

    def __check_init__(self):
        if np.ndim(self.cells) != 1:
            raise NeurocircuitsError(f"Stimulus.cells must be a 1-d index array, got "
                                     f"{describe(self.cells)}.")
        _check(self.amplitude, "Stimulus.amplitude", unit="pA")

    def current(self, t, n):
        on = (t >= self.start) & (t < self.stop)
        return jnp.zeros((n,), jnp.float32).at[self.cells].add(jnp.where(on, self.amplitude, 0.0))


def white_noise_for_lif(neuron, mu, sigma) -> NoiseInput:
    r"""The white-noise current that gives a LIF neuron the free membrane potential
    :math:`\tau_m \dot V = -(V - \mu) + \sigma\sqrt{\tau_m}\,\xi(t)` (the diffusion of Siegert's
    formula): mean ``g_L (mu - E_L)`` pA, intensity ``g_L sigma sqrt(tau_m)`` pA ms^1/2.
    ``mu`` (mV, absolute) and ``sigma`` (mV) are scalars or ``(N,)``."""
    g_L, tau = neuron.g_L, neuron.C / neuron.g_L
    return NoiseInput(mean=g_L * (_arr(mu) - neuron.E_L), sigma=g_L * _arr(sigma) * jnp.sqrt(tau))
