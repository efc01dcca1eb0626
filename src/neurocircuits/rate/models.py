r"""Rate networks.

.. math::

    \tau\,\frac{du_i}{dt} = -u_i + \sum_j J_{ij}\,\phi(u_j) + I_i + I_i^{\rm ext}(t)
                            + \sigma\sqrt{\tau}\,\xi_i(t)

with :math:`\phi(u) = 1 + \tanh(u)` by default (rates in [0, 2]; any callable allowed) and
:math:`J_{ij} = s_j (J_0/\sqrt N) c_{ij} + (g/\sqrt N) z_{ij}`. The case :math:`J_0 = 0`,
:math:`\phi = \tanh` is the Sompolinsky–Crisanti–Sommers network, chaotic for :math:`g > 1`.

This model is our reconstruction of the cortical rate model of Hayakawa & Fukai, Phys. Rev.
Research 2, 013253 (2020) (arXiv:1711.09621), whose full equations were not available to us:
every parameter is exposed so a user can set the paper's values. House units: time in ms,
``u`` dimensionless.

References:
    Sompolinsky, Crisanti & Sommers, Phys. Rev. Lett. 61, 259 (1988).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._core.connectivity import AbstractCoupling, Dense, GaussianPlusMean
from .._core.errors import NeurocircuitsError, check_in_range, check_positive, describe
from .._core.integrators import AbstractIntegrator, ExponentialEuler
from .._core.model import AbstractSDEModel

__all__ = ["RateNetwork", "one_plus_tanh", "tanh"]


def one_plus_tanh(u):
    r""":math:`\phi(u) = 1 + \tanh(u)`: rates in [0, 2], gain 1 at ``u = 0``."""
    return 1.0 + jnp.tanh(u)


def tanh(u):
    r""":math:`\phi(u) = \tanh(u)`: the SCS network's transfer function."""
    return jnp.tanh(u)


class RateNetwork(AbstractSDEModel):
    r"""A network of rate units with any coupling and transfer function.

    .. math::

        \tau\,\dot u_i = -u_i + [J\phi(u)]_i + I_i + I^{\rm ext}_i(t) + \sigma\sqrt\tau\,\xi_i(t)

    The state is ``u`` (shape ``(N,)``); inputs passed to :func:`~neurocircuits.simulate` are
    added as :math:`I^{\rm ext}(t)` (shape ``(N,)`` or scalar).

    Args:
        coupling: the recurrent coupling :math:`J` (:class:`~neurocircuits.Dense`,
            :class:`~neurocircuits.GaussianPlusMean`, or any
            :class:`~neurocircuits.AbstractCoupling`), or a square matrix.
        tau: membrane/rate time constant :math:`\tau` in ms (> 0).
        bias: constant input :math:`I_i` (scalar or shape ``(N,)``).
        sigma: white-noise amplitude :math:`\sigma` (``None`` = deterministic); ``u`` then has
            the stationary variance :math:`\sigma^2/2` when uncoupled.
        phi: the transfer function :math:`\phi` (default :func:`one_plus_tanh`).
        integrator: default :class:`~neurocircuits.ExponentialEuler` (exact for the leak).

    Example:
        >>> import jax, neurocircuits as nc
        >>> net = nc.rate.RateNetwork.random(jax.random.key(0), 1000, g=2.0, phi=nc.rate.tanh)
        >>> u0 = net.initial_state(jax.random.key(1))
        >>> traj = nc.simulate(net, u0, dt=1.0, n_steps=1000, key=jax.random.key(2))
    """

    coupling: AbstractCoupling
    tau: Float[Array, ""]
    bias: Float[Array, "..."]
    sigma: Float[Array, ""] | None
    phi: Callable = eqx.field(static=True)
    integrator: AbstractIntegrator

    divergence_hint: ClassVar[str] = (
        "For rate networks: dt should be well below tau, and sum_j |J_ij| large with an "
        "unbounded phi can blow up."
    )

    def __init__(self, coupling, *, tau=10.0, bias=0.0, sigma=None, phi=one_plus_tanh,
                 integrator=None):
        if not isinstance(coupling, AbstractCoupling):
            coupling = Dense(jnp.asarray(coupling))
        self.coupling = coupling
        self.tau = jnp.asarray(tau, dtype=float)
        self.bias = jnp.asarray(bias, dtype=float)
        self.sigma = None if sigma is None else jnp.asarray(sigma, dtype=float)
        if not callable(phi):
            raise NeurocircuitsError(f"phi must be a callable u -> rate, got {phi!r}.")
        self.phi = phi
        self.integrator = ExponentialEuler() if integrator is None else integrator

    def __check_init__(self):
        if self.coupling.n_post != self.coupling.n_pre:
            raise NeurocircuitsError(
                f"A rate network needs a square coupling, got shape "
                f"({self.coupling.n_post}, {self.coupling.n_pre})."
            )
        check_positive(self.tau, "tau", unit="ms")
        if self.sigma is not None:
            check_in_range(self.sigma, "sigma", 0.0, float("inf"))
        if jnp.ndim(self.bias) not in (0, 1) or (
            jnp.ndim(self.bias) == 1 and self.bias.shape[0] != self.n
        ):
            raise NeurocircuitsError(
                f"bias must be a scalar or shape ({self.n},), got {describe(self.bias)}."
            )
        if not isinstance(self.integrator, AbstractIntegrator):
            raise NeurocircuitsError(
                f"integrator must be one of Euler(), EulerMaruyama(), ExponentialEuler(), RK4(); "
                f"got {self.integrator!r}."
            )

    @property
    def n(self) -> int:
        """Number of units N."""
        return self.coupling.n_post

    # --- the SDE -------------------------------------------------------------------------
    def drift(self, t, u, inputs):
        total = -u + self.coupling(self.phi(u)) + self.bias
        if inputs is not None:
            total = total + inputs
        return total / self.tau

    def linear(self, t, u, inputs):
        return -1.0 / self.tau

    def diffusion(self, t, u, inputs):
        if self.sigma is None:
            return None
        return jnp.broadcast_to(self.sigma / jnp.sqrt(self.tau), jnp.shape(u))

    # --- state ---------------------------------------------------------------------------
    def initial_state(self, key: jax.Array, scale: float = 1.0) -> Float[Array, " n"]:
        """``u(0) ~ N(0, scale^2)`` per unit."""
        return scale * jax.random.normal(key, (self.n,))

    def check_state(self, state):
        if jnp.shape(state) != (self.n,):
            raise NeurocircuitsError(
                f"state0 for a RateNetwork of N = {self.n} units must have shape ({self.n},), "
                f"got {describe(state)}."
            )

    # --- builders ------------------------------------------------------------------------
    @classmethod
    def random(cls, key: jax.Array, n: int, *, g: float, J0: float = 0.0, f: float = 0.8,
               gamma: float | None = None, phi: Callable = one_plus_tanh, tau: float = 10.0,
               bias=0.0, sigma=None, integrator=None, precision: str = "highest",
               dtype=jnp.float32) -> RateNetwork:
        r"""The random E/I network of the spec: :math:`J = g z + (J_0/\sqrt N) s_j`.

        Args:
            key: PRNG key for :math:`z`.
            n: number of units N.
            g: random-coupling gain.
            J0: mean-coupling strength (0: no mean part, the SCS network with ``phi=tanh``).
            f: excitatory fraction.
            gamma: inhibitory relative strength; default ``f / (1 - f)``, critical balance
                (the mean part is then nilpotent: no outlier eigenvalue).
            phi, tau, bias, sigma, integrator: see the class.
            precision: matmul precision of the coupling.
        """
        from .._core.errors import check_int

        n = check_int(n, "n", minimum=1)
        check_in_range(f, "f", 0.0, 1.0)
        z = jax.random.normal(key, (n, n), dtype) / jnp.sqrt(jnp.asarray(n, dtype))
        signs = None
        if J0 != 0.0:
            n_exc = int(round(f * n))
            gamma = f / (1.0 - f) if gamma is None else gamma
            signs = jnp.where(jnp.arange(n) < n_exc, 1.0, -gamma).astype(dtype)
        coupling = GaussianPlusMean(z, g, J0, signs, precision=precision)
        return cls(coupling, tau=tau, bias=bias, sigma=sigma, phi=phi, integrator=integrator)
