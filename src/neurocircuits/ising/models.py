r"""Kinetic Ising models: Glauber simulation and Rao–Blackwellised moments.

Spins :math:`s_i \in \{-1, +1\}`. Parallel (synchronous) Glauber dynamics:

.. math::

    P(\mathbf s_t \mid \mathbf s_{t-1}) = \prod_i \frac{e^{s_{i,t} h_{i,t}}}{2\cosh h_{i,t}},
    \qquad h_{i,t} = H_i + \sum_j J_{ij} s_{j,t-1},

so :math:`P(s_{i,t} = +1 \mid \mathbf s_{t-1}) = (1 + \tanh h_{i,t})/2`. ``J`` is asymmetric in
general and ``J_ii`` is allowed. The sequential (asynchronous, random-site) version updates one
uniformly chosen spin at a time with the same conditional law; one model step is a *sweep* of
``N`` such single-spin updates.

Time is counted in update steps (dimensionless); :func:`~neurocircuits.simulate` is called with
``dt = 1``. ``H`` and ``J`` are dimensionless and already include the inverse temperature
:math:`\beta` (the constructors take ``beta`` and multiply).

Statistics (all connected): :math:`m_{i,t} = \langle s_{i,t}\rangle`,
:math:`C_{ik,t} = \langle s_{i,t}s_{k,t}\rangle - m_{i,t}m_{k,t}` (so :math:`C_{ii} = 1 - m_i^2`)
and :math:`D_{il,t} = \langle s_{i,t}s_{l,t-1}\rangle - m_{i,t}m_{l,t-1}`. From sampled
trajectories they are estimated with Rao–Blackwellisation (conditional expectations given the
previous state), which removes the sampling noise of the last update:
:math:`m = \langle\tanh h\rangle`, :math:`\langle s_is_k\rangle = \langle\tanh h_i\tanh h_k\rangle`
(:math:`i\ne k`), :math:`\langle s_{i,t}s_{l,t-1}\rangle = \langle\tanh h_{i,t}\,s_{l,t-1}\rangle`.

References:
    M. Aguilera, S. A. Moosavi & H. Shimazaki, "A unifying framework for mean-field theories of
    asymmetric kinetic Ising systems", Nat. Commun. 12, 1197 (2021), arXiv:2002.04309.
    M. Aguilera, M. Igarashi & H. Shimazaki, "Nonequilibrium thermodynamics of the asymmetric
    Sherrington–Kirkpatrick model", Nat. Commun. 14, 3685 (2023), arXiv:2205.09886.
"""

from __future__ import annotations

import functools
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int8

from .._core.errors import NeurocircuitsError, check_int, check_nonnegative, describe
from .._core.model import AbstractModel
from .._core.record import Record
from .._core.simulate import Batch, simulate

__all__ = [
    "KineticIsing",
    "Moments",
    "sample",
    "rao_blackwell_moments",
    "simulate_moments",
    "entropy_production",
    "path_entropy_production",
    "population_observables",
]

UPDATES = ("parallel", "sequential")


def _log2cosh(x):
    ax = jnp.abs(x)
    return ax + jnp.log1p(jnp.exp(-2.0 * ax))


class KineticIsing(AbstractModel):
    r"""A kinetic Ising network with fields ``H`` (N,) and couplings ``J`` (N, N).

    One :meth:`step` is one parallel Glauber update
    :math:`P(s_{i,t}=+1\mid\mathbf s_{t-1}) = (1+\tanh h_{i,t})/2`,
    :math:`\mathbf h_t = \mathbf H + J\mathbf s_{t-1}` (``update="parallel"``), or one sweep of
    ``N`` random-site single-spin updates (``update="sequential"``). The state is the spin vector
    (float, values ±1); inputs passed to :func:`~neurocircuits.simulate` are added to the field.

    Args:
        H: fields, shape ``(N,)`` (or a scalar, broadcast).
        J: couplings, shape ``(N, N)``; ``J[i, j]`` is the weight from ``j`` to ``i``.
        beta: inverse temperature multiplying ``H`` and ``J`` (>= 0).
        update: ``"parallel"`` or ``"sequential"``.
        precision: matmul precision (``"highest"`` avoids TF32 on GPUs).

    Example:
        >>> import jax, neurocircuits as nc
        >>> from neurocircuits.ising import KineticIsing, sample
        >>> model = KineticIsing.sk(jax.random.key(0), 64, J0=1.0, dJ=0.1, H0=0.5, beta=1.1)
        >>> spins = sample(model, model.ones(), n_steps=32, key=jax.random.key(1),
        ...                n_trajectories=100)   # int8, shape (100, 33, 64)
    """

    H: Float[Array, " n"]
    J: Float[Array, "n n"]
    update: str = eqx.field(static=True)
    precision: str = eqx.field(static=True)

    divergence_hint: ClassVar[str] = (
        "For kinetic Ising models: check that H and J are finite (NaN/Inf in the parameters)."
    )

    def __init__(self, H, J, *, beta=1.0, update: str = "parallel",
                 precision: str = "highest"):
        if update not in UPDATES:
            raise NeurocircuitsError(
                f"update must be one of {UPDATES}, got {update!r}."
            )
        J = jnp.asarray(J)
        if not jnp.issubdtype(J.dtype, jnp.floating):
            J = J.astype(float)
        if J.ndim != 2 or J.shape[0] != J.shape[1]:
            raise NeurocircuitsError(
                f"J must be a square matrix (N, N), got {describe(J)}."
            )
        H = jnp.asarray(H, dtype=J.dtype)
        if H.ndim == 0:
            H = jnp.broadcast_to(H, (J.shape[0],))
        check_nonnegative(beta, "beta")
        self.H = beta * H
        self.J = beta * J
        self.update = update
        self.precision = precision

    def __check_init__(self):
        n = self.J.shape[-1]
        if self.H.shape[-1:] != (n,):
            raise NeurocircuitsError(
                f"H must have shape ({n},) to match J of shape {self.J.shape}, got "
                f"{describe(self.H)}."
            )
        for name, x in (("H", self.H), ("J", self.J)):
            try:
                arr = np.asarray(x)
            except Exception:  # traced: checked by simulate's divergence detection
                continue
            if not np.all(np.isfinite(arr)):
                raise NeurocircuitsError(f"{name} must be finite, got non-finite entries.")

    @property
    def n(self) -> int:
        """Number of spins N."""
        return self.J.shape[-1]

    def ones(self) -> Float[Array, " n"]:
        """The all-up state :math:`\\mathbf s = \\mathbf 1`."""
        return jnp.ones((self.n,), self.J.dtype)

    def field(self, s: Float[Array, " n"]) -> Float[Array, " n"]:
        r"""The effective field :math:`\mathbf h = \mathbf H + J\mathbf s`."""
        return self.H + jnp.matmul(self.J, s.astype(self.J.dtype), precision=self.precision)

    def step(self, state, t, dt, key, inputs):
        s = state
        if self.update == "parallel":
            h = self.field(s)
            if inputs is not None:
                h = h + inputs
            u = jax.random.uniform(key, (self.n,), dtype=h.dtype, minval=-1.0, maxval=1.0)
            return jnp.where(u < jnp.tanh(h), 1.0, -1.0).astype(s.dtype)
        # sequential: one sweep of N random-site updates
        ks = jax.random.split(key, 2)
        sites = jax.random.randint(ks[0], (self.n,), 0, self.n)
        us = jax.random.uniform(ks[1], (self.n,), dtype=s.dtype, minval=-1.0, maxval=1.0)
        ext = jnp.zeros((self.n,), s.dtype) if inputs is None else jnp.broadcast_to(
            inputs, (self.n,)).astype(s.dtype)

        def one(k, s):
            i = sites[k]
            h = self.H[i] + jnp.dot(self.J[i], s, precision=self.precision) + ext[i]
            return s.at[i].set(jnp.where(us[k] < jnp.tanh(h), 1.0, -1.0).astype(s.dtype))

        return jax.lax.fori_loop(0, self.n, one, s)

    def check_state(self, state):
        if jnp.shape(state) != (self.n,):
            raise NeurocircuitsError(
                f"state0 of a KineticIsing model with N = {self.n} spins must have shape "
                f"({self.n},), got {describe(state)}."
            )
        try:
            arr = np.asarray(state)
        except Exception:
            return
        if not np.all(np.abs(arr) == 1):
            raise NeurocircuitsError(
                f"state0 must contain only spins -1 and +1, got values "
                f"{np.unique(arr)[:6]}."
            )

    @classmethod
    def sk(cls, key: jax.Array, n: int, *, J0: float = 1.0, dJ: float = 0.1, H0: float = 0.5,
           beta: float = 1.0, update: str = "parallel", dtype=jnp.float32,
           precision: str = "highest") -> KineticIsing:
        r"""The asymmetric Sherrington–Kirkpatrick network.

        :math:`H_i \sim U(-H_0, H_0)`, :math:`J_{ij} \sim \mathcal N(J_0/N, \Delta J^2/N)`
        independently for all ordered pairs (``J_ii`` included), everything times ``beta``.
        """
        n = check_int(n, "n", minimum=1)
        check_nonnegative(dJ, "dJ")
        check_nonnegative(H0, "H0")
        kh, kj = jax.random.split(key)
        H = H0 * jax.random.uniform(kh, (n,), dtype, -1.0, 1.0)
        J = J0 / n + dJ / np.sqrt(n) * jax.random.normal(kj, (n, n), dtype)
        return cls(H, J, beta=beta, update=update, precision=precision)


class Moments(eqx.Module):
    r"""Connected moments over time: ``m (T+1, N)``, ``C (T+1, N, N)``, ``D (T+1, N, N)``.

    Index ``t`` is the time step; ``t = 0`` is the initial condition (``D[0] = 0``).
    ``D[t, i, l]`` is :math:`\langle s_{i,t}s_{l,t-1}\rangle - m_{i,t}m_{l,t-1}`.
    """

    m: Float[Array, "... n"]
    C: Float[Array, "... n n"]
    D: Float[Array, "... n n"]


def _spins_check(spins, n=None):
    if jnp.ndim(spins) != 3:
        raise NeurocircuitsError(
            f"spins must have shape (n_trajectories, T + 1, N), got {describe(spins)}."
        )
    if n is not None and jnp.shape(spins)[-1] != n:
        raise NeurocircuitsError(
            f"spins have N = {jnp.shape(spins)[-1]} neurons but the model has N = {n}."
        )


def sample(model: KineticIsing, s0, *, n_steps: int, key: jax.Array,
           n_trajectories: int) -> Int8[Array, "b t n"]:
    r"""Sample ``n_trajectories`` independent trajectories of ``n_steps`` steps from ``s0``.

    Runs :func:`~neurocircuits.simulate` (one compiled ``lax.scan``, ``vmap`` over
    trajectories; keys ``split(key, n_trajectories)``) and returns the spins as ``int8`` with
    shape ``(n_trajectories, n_steps + 1, N)`` (index 0 is ``s0``). ``s0`` is ``(N,)`` (shared)
    or ``(n_trajectories, N)``. Works under ``jit``/``vmap`` (e.g. ``vmap`` over disorder draws
    of the model).
    """
    n_steps = check_int(n_steps, "n_steps", minimum=1)
    n_trajectories = check_int(n_trajectories, "n_trajectories", minimum=1)
    s0 = jnp.asarray(s0, model.J.dtype)
    if s0.shape == (model.n,):
        s0 = jnp.broadcast_to(s0, (n_trajectories, model.n))
    if s0.shape != (n_trajectories, model.n):
        raise NeurocircuitsError(
            f"s0 must have shape ({model.n},) or ({n_trajectories}, {model.n}), got "
            f"{describe(s0)}."
        )
    try:
        arr = np.asarray(s0)
        if not np.all(np.abs(arr) == 1):
            raise NeurocircuitsError(f"s0 must contain only -1 and +1, got {np.unique(arr)[:6]}.")
    except (TypeError, jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        pass
    return _sample(model, s0, key, n_steps)


@functools.partial(jax.jit, static_argnums=(3,))
def _sample(model, s0, key, n_steps):
    keys = jax.random.split(key, s0.shape[0])
    traj = simulate(model, s0, dt=1.0, n_steps=n_steps, key=keys,
                    record=Record(every=1, fn=lambda s, t: s.astype(jnp.int8)),
                    batch=Batch(state=True, key=True))
    return jnp.concatenate([s0.astype(jnp.int8)[:, None], traj.ys], axis=1)


@jax.jit
def _rb_sums(H, J, spins):
    """Sums over trajectories of tanh h_t, tanh h_t tanh h_t^T, tanh h_t s_{t-1}^T (t >= 1)."""
    s = spins.astype(J.dtype)
    prev = s[:, :-1]
    th = jnp.tanh(H + jnp.einsum("btj,ij->bti", prev, J, precision="highest"))
    sum_th = th.sum(0)
    sum_tt = jnp.einsum("bti,btk->tik", th, th, precision="highest")
    sum_ts = jnp.einsum("bti,btl->til", th, prev, precision="highest")
    s0 = s[:, 0]
    return sum_th, sum_tt, sum_ts, s0.sum(0), jnp.einsum("bi,bk->ik", s0, s0)


def _finish(sum_th, sum_tt, sum_ts, sum_s0, sum_s0s0, count) -> Moments:
    m_t = sum_th / count
    m0 = sum_s0 / count
    m = jnp.concatenate([m0[None], m_t], 0)
    C = jnp.concatenate([(sum_s0s0 / count)[None], sum_tt / count], 0)
    C = C - m[:, :, None] * m[:, None, :]
    n = m.shape[-1]
    eye = jnp.eye(n, dtype=bool)
    C = jnp.where(eye, 1.0 - m[:, :, None] ** 2, C)
    D = sum_ts / count - m[1:, :, None] * m[:-1, None, :]
    D = jnp.concatenate([jnp.zeros_like(D[:1]), D], 0)
    return Moments(m, C, D)


def rao_blackwell_moments(model: KineticIsing, spins) -> Moments:
    r"""Rao–Blackwellised ``m, C, D`` at every time from sampled trajectories.

    ``spins``: ``(n_trajectories, T + 1, N)`` from :func:`sample` (parallel dynamics). For
    ``t >= 1``: :math:`m_t = \overline{\tanh h_t}`,
    :math:`C_t = \overline{\tanh h_t\tanh h_t^\top} - m_tm_t^\top` with diagonal
    :math:`1 - m_t^2`, :math:`D_t = \overline{\tanh h_t\,s_{t-1}^\top} - m_tm_{t-1}^\top`
    (overline: average over trajectories); ``t = 0`` uses the sample moments of ``s_0``.
    """
    _spins_check(spins, model.n)
    if model.update != "parallel":
        raise NeurocircuitsError(
            "rao_blackwell_moments needs parallel dynamics (update='parallel'); for sequential "
            f"dynamics use sample averages of the spins. Got update={model.update!r}."
        )
    sums = _rb_sums(model.H, model.J, jnp.asarray(spins))
    return _finish(*sums, spins.shape[0])


def simulate_moments(model: KineticIsing, s0, *, n_steps: int, n_trajectories: int,
                     key: jax.Array, batch_size: int = 2048) -> Moments:
    r"""Rao–Blackwellised moments from ``n_trajectories`` parallel-Glauber trajectories.

    Trajectories are run and reduced in batches of ``batch_size`` (bounded memory:
    ``batch_size * (n_steps + 1) * N`` bytes of spins plus ``3 n_steps N^2`` floats of sums);
    batch ``b`` uses ``fold_in(key, b)``, so results depend on ``batch_size`` only through
    which random numbers are drawn.
    """
    n_trajectories = check_int(n_trajectories, "n_trajectories", minimum=1)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    total, done, b = None, 0, 0
    while done < n_trajectories:
        nb = min(batch_size, n_trajectories - done)
        spins = sample(model, s0, n_steps=n_steps, key=jax.random.fold_in(key, b),
                       n_trajectories=nb)
        sums = _rb_sums(model.H, model.J, spins)
        total = sums if total is None else jax.tree.map(jnp.add, total, sums)
        done += nb
        b += 1
    return _finish(*total, n_trajectories)


def entropy_production(J: Float[Array, "n n"], D: Float[Array, "... n n"]) -> Float[Array, ...]:
    r"""Stationary entropy production per step :math:`\sigma = \sum_{ij}(J_{ij}-J_{ji})D_{ij}`.

    Exact for parallel Glauber dynamics at stationarity (the :math:`\log 2\cosh` terms of the
    forward and time-reversed path probabilities cancel when the marginals at ``t`` and ``t-1``
    are equal). ``J`` must include ``beta`` (as :attr:`KineticIsing.J` does).
    """
    J = jnp.asarray(J)
    return jnp.einsum("ij,...ij->...", J - J.T, jnp.asarray(D))


@jax.jit
def _path_ep(H, J, spins):
    s = spins.astype(J.dtype)
    prev, cur = s[:, :-1], s[:, 1:]
    h_fwd = H + jnp.einsum("btj,ij->bti", prev, J, precision="highest")
    h_rev = H + jnp.einsum("btj,ij->bti", cur, J, precision="highest")
    # Rao-Blackwellise the forward log-likelihood over s_t given s_{t-1}
    fwd = (jnp.tanh(h_fwd) * h_fwd - _log2cosh(h_fwd)).sum(-1)
    rev = (prev * h_rev - _log2cosh(h_rev)).sum(-1)
    return (fwd - rev).mean(0)


def path_entropy_production(model: KineticIsing, spins) -> Float[Array, " t"]:
    r"""Entropy production at each step, valid out of stationarity.

    .. math::

        \sigma_t = \big\langle \log P(\mathbf s_t\mid\mathbf s_{t-1})
                    - \log P(\mathbf s_{t-1}\mid\mathbf s_t)\big\rangle,

    the forward minus the time-reversed log-likelihood of each transition with the same kernel,
    estimated from sampled trajectories ``(n_trajectories, T + 1, N)``; returns shape ``(T,)``
    (entry ``t - 1`` is the transition ``t - 1 -> t``). At stationarity its mean is
    :func:`entropy_production`.
    """
    _spins_check(spins, model.n)
    if model.update != "parallel":
        raise NeurocircuitsError(
            f"path_entropy_production is defined here for update='parallel', got "
            f"{model.update!r}."
        )
    return _path_ep(model.H, model.J, jnp.asarray(spins))


@jax.jit
def _pop_obs(H, J, spins):
    s = spins.astype(J.dtype)
    prev, cur = s[:, :-1], s[:, 1:]
    h = H + jnp.einsum("btj,ij->bti", prev, J, precision="highest")
    th = jnp.tanh(h)
    n = J.shape[-1]
    A = J - J.T
    sig = jnp.sum(th * jnp.einsum("btj,ij->bti", prev, A, precision="highest"), -1)
    return {
        "m": th.mean((0, 2)),
        "q": (th * prev).mean((0, 2)),
        "sigma": sig.mean(0) / n,
        "S": (_log2cosh(h) - h * th).mean((0, 2)),
        "m_raw": cur.mean((0, 2)),
    }


def population_observables(model: KineticIsing, spins) -> dict[str, Float[Array, " t"]]:
    r"""Per-spin population averages at each transition ``t - 1 -> t`` (shape ``(T,)`` each),
    Rao–Blackwellised over the last update, for comparison with the N -> infinity theory:

    * ``m``: :math:`\frac1N\sum_i\langle\tanh h_{i,t}\rangle`;
    * ``q``: :math:`\frac1N\sum_i\langle s_{i,t}s_{i,t-1}\rangle` (as
      :math:`\langle\tanh h_{i,t}\,s_{i,t-1}\rangle`);
    * ``sigma``: :math:`\frac1N\sum_{ij}(J_{ij}-J_{ji})\langle s_{i,t}s_{j,t-1}\rangle`, the
      entropy production per spin at stationarity (the :math:`m_im_j` term cancels);
    * ``S``: conditional entropy per spin :math:`\frac1N\sum_i\langle\log 2\cosh h_i -
      h_i\tanh h_i\rangle`;
    * ``m_raw``: the plain sample mean of the spins.

    Jit/vmap friendly (e.g. ``vmap`` over disorder draws).
    """
    _spins_check(spins, model.n)
    return _pop_obs(model.H, model.J, jnp.asarray(spins))
