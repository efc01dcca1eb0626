r"""Training rate networks by backpropagation through time (BPTT) through :func:`~neurocircuits.simulate`.

The trained object is a :class:`RateCircuit`: a :class:`~neurocircuits.rate.RateNetwork` with
input weights :math:`W^{\rm in}` and a linear readout :math:`W^{\rm out}` of the rates,

.. math::

    \tau\,\dot u_i &= -u_i + \sum_j J_{ij}\,\phi(u_j) + I_i + \sum_c W^{\rm in}_{ic}\,x_c(t)
                      + \sigma\sqrt\tau\,\xi_i(t), \\
    y_o(t) &= \sum_i W^{\rm out}_{oi}\,\phi(u_i(t)) + b_o ,

with task inputs :math:`x(t)` (one channel per module by default, :math:`W^{\rm in}_{ia} = 1`
when unit :math:`i` is in module :math:`a`) and outputs that are, by default, the **module order
parameters** :math:`m_a(t) = |a|^{-1}\sum_{i\in a}\phi(u_i(t))` (:math:`W^{\rm out}_{ai} = 1/|a|`
for :math:`i \in a`, :math:`b = 0`). Time in ms; :math:`u`, rates and inputs dimensionless.

The loss over a batch of trials is the squared normalised error of the outputs at the
observation times :math:`t_j`,

.. math::

    L = \frac{\sum_{\rm trials}\sum_j\sum_o w_{jo}\,(y_o(t_j) - y^*_o(t_j))^2}
             {\sum_{\rm trials}\sum_j\sum_o w_{jo}\,(y^*_o(t_j) - \bar y^*_o)^2}
      = \mathrm{NRMSE}^2 ,

and its gradient is exact backpropagation through the time loop of :func:`~neurocircuits.simulate`
(Werbos 1990): under ``jax.value_and_grad`` the whole simulation is one ``lax.scan`` that JAX
differentiates in reverse; there is no second time loop. Trials are a batch axis
(:class:`~neurocircuits.Batch`: inputs, keys and initial states vmapped, the circuit shared).
With ``checkpoint=True`` each observation interval is recomputed in the backward pass
(``jax.checkpoint``), so memory grows with ``n_steps / record_every`` instead of ``n_steps``
(one more forward pass of compute).

**Trainable parts** (``trainable=``, a name, a tuple of names, or a function
``where(circuit) -> leaf or tuple of leaves`` as in :func:`equinox.tree_at`):

* ``"full"``: the whole recurrent matrix :math:`J` (the coupling becomes a
  :class:`~neurocircuits.Dense` initialised to the original :math:`J`);
* ``"low_rank"``: :math:`J = J_{\rm fixed} + M N^\top / N` with trainable :math:`M, N` of shape
  ``(N, rank)`` (:class:`LowRankCoupling`; Mastrogiuseppe & Ostojic 2018), :math:`J_{\rm fixed}`
  untouched;
* ``"readout"``: :math:`W^{\rm out}` and :math:`b` (the outputs are then a trained linear
  readout of the rates, no longer the plain module averages);
* ``"input"``: :math:`W^{\rm in}`;
* ``"bias"``: the constant input :math:`I_i` (made per-unit).

The functional core is :func:`fit` (returns a new circuit and a :class:`TrainHistory`); the
scikit-learn style :class:`RateNetworkTrainer` wraps it.

Example:
    >>> import jax, neurocircuits as nc
    >>> from neurocircuits.rate.tasks import PulsePersistence
    >>> from neurocircuits.rate.train import RateCircuit, fit, evaluate
    >>> from neurocircuits._core.connectivity import modular
    >>> J = modular(jax.random.key(0), (25,) * 4, J0_in=1.0, J0_out=0.0, g=1.5)
    >>> circuit = RateCircuit.from_network(nc.rate.RateNetwork(J, tau=10.0))
    >>> task = PulsePersistence(n_modules=4, duration=200.0)
    >>> trained, history = fit(circuit, task, key=jax.random.key(1), n_updates=200,
    ...                        trainable="full", learning_rate=3e-3)
    >>> evaluate(trained, task, key=jax.random.key(2)).nrmse      # held-out trials

References:
    Werbos, Proc. IEEE 78, 1550 (1990) (backpropagation through time);
    Sussillo & Abbott, Neuron 63, 544 (2009) (trained chaotic rate networks, context);
    Mastrogiuseppe & Ostojic, Neuron 99, 609 (2018) (low-rank connectivity);
    Kingma & Ba, ICLR (2015) (Adam); Griewank & Walther, ACM TOMS 26, 19 (2000) (checkpointing);
    Hayakawa & Fukai, Phys. Rev. Research 2, 013253 (2020) (module synchrony in critically
    balanced networks; the training setting here is our reconstruction).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
import time
from collections.abc import Callable
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, Int

from .._core.connectivity import AbstractCoupling, Dense
from .._core.errors import DivergenceError, NeurocircuitsError, check_int, describe
from .._core.model import AbstractModel
from .._core.record import Record
from .._core.simulate import Batch, simulate
from .models import RateNetwork
from .tasks import AbstractTask, Trials, nrmse

__all__ = [
    "PARTS",
    "Evaluation",
    "LowRankCoupling",
    "RateCircuit",
    "RateNetworkTrainer",
    "TrainHistory",
    "contiguous_labels",
    "default_optimizer",
    "evaluate",
    "fit",
    "loss",
    "predict",
    "prepare",
    "trainable_filter",
]

#: the names accepted by ``trainable=``
PARTS = ("full", "low_rank", "readout", "input", "bias")


# ---------------------------------------------------------------------------------------------
# low-rank coupling
# ---------------------------------------------------------------------------------------------
class LowRankCoupling(AbstractCoupling):
    r"""A fixed coupling plus a trainable low-rank part:

    .. math::

        J = J_{\rm fixed} + \frac{1}{N} M N^\top ,\qquad M, N \in \mathbb R^{N \times r},

    applied as ``base(r) + M @ (N.T @ r) / N`` in O(N r) beyond the base (the dense
    :math:`J` is never formed). Named ``m``/``n`` after Mastrogiuseppe & Ostojic (2018).

    Args:
        base: the fixed coupling :math:`J_{\rm fixed}` (any square
            :class:`~neurocircuits.AbstractCoupling`).
        m, n: the factors, shape ``(N, rank)`` each.
    """

    base: AbstractCoupling
    m: Float[Array, "n rank"]
    n: Float[Array, "n rank"]

    def __check_init__(self):
        size = self.base.n_post
        for name in ("m", "n"):
            val = getattr(self, name)
            if jnp.ndim(val) != 2 or val.shape[0] != size or (
                    self.m.shape[1] != self.n.shape[1]):
                raise NeurocircuitsError(
                    f"LowRankCoupling({name}=...) must have shape (N, rank) = ({size}, r) with "
                    f"the same rank for m and n; got m {describe(self.m)}, n {describe(self.n)}."
                )

    @property
    def n_post(self) -> int:
        return self.base.n_post

    @property
    def n_pre(self) -> int:
        return self.base.n_pre

    @property
    def rank(self) -> int:
        return self.m.shape[1]

    def __call__(self, r):
        size = jnp.asarray(self.n_pre, r.dtype)
        return self.base(r) + self.m @ (self.n.T @ r) / size

    def to_dense(self):
        return self.base.to_dense() + self.m @ self.n.T / self.n_pre


# ---------------------------------------------------------------------------------------------
# the trainable circuit
# ---------------------------------------------------------------------------------------------
def contiguous_labels(n: int, n_modules: int) -> np.ndarray:
    """Module labels for ``n`` units in ``n_modules`` contiguous blocks of (nearly) equal size
    (the first ``n % n_modules`` blocks one unit larger)."""
    n = check_int(n, "n", minimum=1)
    n_modules = check_int(n_modules, "n_modules", minimum=1)
    if n_modules > n:
        raise NeurocircuitsError(f"n_modules = {n_modules} exceeds the number of units n = {n}.")
    sizes = [n // n_modules + (a < n % n_modules) for a in range(n_modules)]
    return np.repeat(np.arange(n_modules), sizes).astype(np.int32)


def _module_labels_of(coupling: Any) -> Any:
    """``coupling.module_labels`` if the coupling (or a wrapped base) carries them."""
    while coupling is not None:
        labels = getattr(coupling, "module_labels", None)
        if labels is not None:
            return labels
        coupling = getattr(coupling, "base", None)
    return None


class RateCircuit(AbstractModel):
    r"""A :class:`~neurocircuits.rate.RateNetwork` with input weights and a linear readout: the
    object that :func:`fit` trains (see the module docstring for the equations).

    It is a model :func:`~neurocircuits.simulate` runs directly: ``inputs`` given to
    ``simulate`` are the task channels :math:`x(t)` (shape ``(n_inputs,)`` per step), projected by
    ``input_weights``. The state is the network's ``u``.

    Args:
        network: the rate network.
        input_weights: :math:`W^{\rm in}`, shape ``(N, n_inputs)``.
        readout: :math:`W^{\rm out}`, shape ``(n_outputs, N)``.
        readout_bias: :math:`b`, shape ``(n_outputs,)``.
        labels: module label of every unit, ints in ``[0, n_modules)``, shape ``(N,)``.

    Build one with :meth:`from_network`.
    """

    network: RateNetwork
    input_weights: Float[Array, "n n_inputs"]
    readout: Float[Array, "n_outputs n"]
    readout_bias: Float[Array, " n_outputs"]
    labels: Int[Array, " n"]
    n_modules: int = eqx.field(static=True)

    divergence_hint: ClassVar[str] = RateNetwork.divergence_hint

    def __init__(self, network, input_weights, readout, readout_bias, labels, *,
                 n_modules=None):
        if not isinstance(network, RateNetwork):
            raise NeurocircuitsError(
                f"network must be a neurocircuits.rate.RateNetwork, got {type(network).__name__}."
            )
        self.network = network
        self.input_weights = jnp.asarray(input_weights)
        self.readout = jnp.asarray(readout)
        self.readout_bias = jnp.asarray(readout_bias)
        self.labels = jnp.asarray(labels, jnp.int32)
        if n_modules is None:
            n_modules = int(np.max(np.asarray(labels))) + 1 if np.size(labels) else 0
        self.n_modules = int(n_modules)

    def __check_init__(self):
        n = self.network.n
        if jnp.ndim(self.input_weights) != 2 or self.input_weights.shape[0] != n:
            raise NeurocircuitsError(
                f"input_weights must have shape (N, n_inputs) = ({n}, n_inputs), got "
                f"{describe(self.input_weights)}."
            )
        if jnp.ndim(self.readout) != 2 or self.readout.shape[1] != n:
            raise NeurocircuitsError(
                f"readout must have shape (n_outputs, N) = (n_outputs, {n}), got "
                f"{describe(self.readout)}."
            )
        if self.readout_bias.shape != (self.readout.shape[0],):
            raise NeurocircuitsError(
                f"readout_bias must have shape (n_outputs,) = ({self.readout.shape[0]},), got "
                f"{describe(self.readout_bias)}."
            )
        if self.labels.shape != (n,):
            raise NeurocircuitsError(
                f"labels must have shape (N,) = ({n},), got {describe(self.labels)}."
            )

    # --- construction ---------------------------------------------------------------------
    @classmethod
    def from_network(cls, network: RateNetwork, *, labels=None, n_modules: int | None = None,
                     n_inputs: int | None = None, input_gain: float = 1.0) -> RateCircuit:
        """Wrap ``network`` with module inputs and module-average outputs.

        Module labels come from ``labels`` if given, else from the coupling (e.g.
        :func:`~neurocircuits._core.connectivity.modular` stores ``module_labels``), else
        ``n_modules`` contiguous equal blocks (:func:`contiguous_labels`).

        Args:
            network: a :class:`~neurocircuits.rate.RateNetwork`.
            labels: ``(N,)`` module labels (ints ``0..M-1``).
            n_modules: M, when there are no labels.
            n_inputs: number of input channels (default M: channel ``a`` drives module ``a``
                with weight ``input_gain``; other counts start from zero weights).
            input_gain: the weight of a channel onto its module's units.
        """
        if not isinstance(network, RateNetwork):
            raise NeurocircuitsError(
                f"network must be a neurocircuits.rate.RateNetwork, got {type(network).__name__}."
            )
        n = network.n
        if labels is None:
            labels = _module_labels_of(network.coupling)
        if labels is None:
            if n_modules is None:
                raise NeurocircuitsError(
                    "The network's coupling carries no module labels: pass labels=(N,) ints or "
                    "n_modules=M (contiguous equal blocks)."
                )
            labels = contiguous_labels(n, n_modules)
        labels = np.asarray(labels)
        if labels.shape != (n,) or labels.dtype.kind not in "iu":
            raise NeurocircuitsError(
                f"labels must be an integer array of shape (N,) = ({n},), got {describe(labels)}."
            )
        m = int(labels.max()) + 1
        if labels.min() < 0 or n_modules is not None and n_modules != m:
            raise NeurocircuitsError(
                f"labels must lie in [0, n_modules) and use every module; got values in "
                f"[{labels.min()}, {labels.max()}] with n_modules = {n_modules}."
            )
        counts = np.bincount(labels, minlength=m)
        if np.any(counts == 0):
            raise NeurocircuitsError(
                f"every module needs at least one unit; modules {np.nonzero(counts == 0)[0]} are "
                "empty."
            )
        dtype = jnp.result_type(float)
        onehot = np.eye(m)[labels]  # (N, M)
        n_inputs = m if n_inputs is None else check_int(n_inputs, "n_inputs", minimum=0)
        w_in = input_gain * onehot if n_inputs == m else np.zeros((n, n_inputs))
        readout = (onehot / counts).T
        return cls(network, jnp.asarray(w_in, dtype), jnp.asarray(readout, dtype),
                   jnp.zeros((m,), dtype), jnp.asarray(labels, jnp.int32), n_modules=m)

    # --- the model interface ----------------------------------------------------------------
    @property
    def n(self) -> int:
        return self.network.n

    @property
    def n_inputs(self) -> int:
        return self.input_weights.shape[1]

    @property
    def n_outputs(self) -> int:
        return self.readout.shape[0]

    def step(self, state, t, dt, key, inputs):
        ext = None if inputs is None else self.input_weights @ inputs
        return self.network.step(state, t, dt, key, ext)

    def check_state(self, state):
        self.network.check_state(state)

    def initial_state(self, key: jax.Array, scale: float = 0.5) -> Float[Array, " n"]:
        """``u(0) ~ N(0, scale^2)`` per unit."""
        return self.network.initial_state(key, scale)

    # --- observables ------------------------------------------------------------------------
    def output(self, u: Float[Array, " n"]) -> Float[Array, " n_outputs"]:
        r""":math:`y = W^{\rm out}\phi(u) + b`."""
        return self.readout @ self.network.phi(u) + self.readout_bias

    def module_activity(self, u: Float[Array, " n"]) -> Float[Array, " n_modules"]:
        r"""The module order parameters :math:`m_a = |a|^{-1}\sum_{i\in a}\phi(u_i)` (whatever
        the readout)."""
        r = self.network.phi(u)
        sums = jax.ops.segment_sum(r, self.labels, self.n_modules)
        counts = jax.ops.segment_sum(jnp.ones_like(r), self.labels, self.n_modules)
        return sums / counts

    def recurrent_matrix(self) -> Float[Array, "n n"]:
        """The dense :math:`J` (small networks, plots)."""
        return self.network.coupling.to_dense()


# ---------------------------------------------------------------------------------------------
# trainable selection
# ---------------------------------------------------------------------------------------------
def _parse_trainable(trainable) -> tuple[str, ...] | Callable:
    if callable(trainable):
        return trainable
    names = (trainable,) if isinstance(trainable, str) else tuple(trainable) \
        if isinstance(trainable, (tuple, list)) else None
    if not names or any(not isinstance(p, str) or p not in PARTS for p in names):
        raise NeurocircuitsError(
            f"trainable must be one of {PARTS}, a tuple of them, or a function "
            f"where(circuit) -> leaves; got {trainable!r}."
        )
    if "full" in names and "low_rank" in names:
        raise NeurocircuitsError(
            "trainable cannot contain both 'full' and 'low_rank' (a full J already contains "
            "every low-rank change); choose one."
        )
    return tuple(dict.fromkeys(names))


def prepare(circuit: RateCircuit, trainable: Any = "full", *, key: jax.Array,
            rank: int | None = None, low_rank_scale: float = 1.0) -> RateCircuit:
    r"""Reshape ``circuit`` so that the requested parts exist as trainable leaves.

    ``"full"`` turns the coupling into a :class:`~neurocircuits.Dense` with the same :math:`J`;
    ``"low_rank"`` wraps it in a :class:`LowRankCoupling` (unless it already is one) with
    :math:`M, N` drawn i.i.d. :math:`\mathcal N(0, s^2)` (``low_rank_scale`` :math:`s`), so
    the initial perturbation :math:`MN^\top/N` is small (its entries are
    :math:`O(s^2\sqrt r/N)`); ``"bias"`` makes the bias per-unit. The network's dynamics are
    unchanged apart from that low-rank perturbation.
    """
    if not isinstance(circuit, RateCircuit):
        raise NeurocircuitsError(
            f"circuit must be a RateCircuit (RateCircuit.from_network(net)), got "
            f"{type(circuit).__name__}."
        )
    parts = _parse_trainable(trainable)
    if callable(parts):
        return circuit
    coupling = circuit.network.coupling
    if "full" in parts and not isinstance(coupling, Dense):
        prec = getattr(coupling, "precision", "highest")
        circuit = eqx.tree_at(lambda c: c.network.coupling, circuit,
                              Dense(coupling.to_dense(), precision=prec))
    if "low_rank" in parts:
        if isinstance(coupling, LowRankCoupling):
            if rank is not None and check_int(rank, "rank", minimum=1) != coupling.rank:
                raise NeurocircuitsError(
                    f"rank = {rank} differs from the rank {coupling.rank} of the circuit's "
                    "existing low-rank part; pass rank=None to keep training it."
                )
        else:
            rank = 1 if rank is None else check_int(rank, "rank", minimum=1)
            if rank > circuit.n:
                raise NeurocircuitsError(f"rank = {rank} exceeds the number of units N = "
                                         f"{circuit.n}.")
            km, kn = jax.random.split(key)
            dtype = jnp.result_type(float)
            shape = (circuit.n, rank)
            lr = LowRankCoupling(coupling, low_rank_scale * jax.random.normal(km, shape, dtype),
                                 low_rank_scale * jax.random.normal(kn, shape, dtype))
            circuit = eqx.tree_at(lambda c: c.network.coupling, circuit, lr)
    if "bias" in parts and jnp.ndim(circuit.network.bias) == 0:
        circuit = eqx.tree_at(lambda c: c.network.bias, circuit,
                              jnp.full((circuit.n,), circuit.network.bias))
    return circuit


def _where(parts) -> Callable:
    if callable(parts):
        return parts

    def where(c: RateCircuit):
        leaves = []
        coupling = c.network.coupling
        if "full" in parts:
            leaves.append(coupling.matrix)
        if "low_rank" in parts:
            leaves += [coupling.m, coupling.n]
        if "readout" in parts:
            leaves += [c.readout, c.readout_bias]
        if "input" in parts:
            leaves.append(c.input_weights)
        if "bias" in parts:
            leaves.append(c.network.bias)
        return tuple(leaves)

    return where


def trainable_filter(circuit: RateCircuit, trainable: Any) -> Any:
    """A bool pytree like ``circuit``: ``True`` on the trained leaves (for ``eqx.partition``).

    ``circuit`` must already be :func:`prepare`-d for ``trainable``."""
    parts = _parse_trainable(trainable)
    where = _where(parts)
    falses = jax.tree.map(lambda _: False, circuit)
    try:
        selected = where(circuit)
        n_sel = len(selected) if isinstance(selected, tuple) else 1
        spec = eqx.tree_at(where, falses, replace=(True,) * n_sel if isinstance(selected, tuple)
                           else True)
    except Exception as err:  # a where() that does not fit the circuit
        raise NeurocircuitsError(
            f"trainable={trainable!r} could not select parts of the circuit ({err}); call "
            "prepare(circuit, trainable, key=...) first, or check the where-function."
        ) from err
    leaves = [x for x, s in zip(jax.tree.leaves(circuit), jax.tree.leaves(spec)) if s]
    if not leaves or not all(eqx.is_inexact_array(x) for x in leaves):
        raise NeurocircuitsError(
            f"trainable={trainable!r} must select floating-point array leaves of the circuit; "
            f"got {[describe(x) for x in leaves] or 'nothing'}."
        )
    return spec


# ---------------------------------------------------------------------------------------------
# simulation of trials, loss
# ---------------------------------------------------------------------------------------------
def _outputs(circuit: RateCircuit, inputs, u0, keys, *, dt: float, every: int,
             checkpoint: bool):
    """Outputs ``(B, n_records, n_outputs)`` and divergence flags of a batch of trials."""
    n_steps = inputs.shape[1]
    record = Record(every=every, fn=lambda u, t: circuit.output(u))
    traj = simulate(circuit, u0, dt=dt, n_steps=n_steps, key=keys,
                    inputs=jnp.swapaxes(inputs, 0, 1), record=record,
                    batch=Batch(model=None, state=True, key=True, inputs=True),
                    checkpoint=checkpoint)
    return traj.ys, traj.diverged_at


def _trial_state(circuit, key, n_trials, u0_scale):
    k_u0, k_noise = jax.random.split(key)
    u0 = u0_scale * jax.random.normal(k_u0, (n_trials, circuit.n),
                                      jnp.result_type(circuit.readout))
    return u0, jax.random.split(k_noise, n_trials)


def _loss_terms(circuit, trials: Trials, u0, keys, *, dt, every, checkpoint):
    y, bad = _outputs(circuit, trials.inputs, u0, keys, dt=dt, every=every,
                      checkpoint=checkpoint)
    w = trials.mask
    axes = (0, 1)
    wsum = jnp.maximum(jnp.sum(w, axis=axes), 1e-12)
    mean = jnp.sum(w * trials.targets, axis=axes) / wsum
    var = jnp.maximum(jnp.sum(w * (trials.targets - mean) ** 2), 1e-12)
    sq = jnp.sum(w * (y - trials.targets) ** 2)
    mse = sq / jnp.maximum(jnp.sum(w), 1e-12)
    return sq / var, (mse, jnp.any(bad >= 0))


def loss(circuit: RateCircuit, trials: Trials, *, key: jax.Array, dt: float,
         record_every: int, u0_scale: float = 0.5, checkpoint: bool = False) -> jax.Array:
    r"""The training loss :math:`L = \mathrm{NRMSE}^2` of ``circuit`` on ``trials`` (see the
    module docstring), differentiable in the circuit's leaves; the function :func:`fit` takes
    gradients of. Initial states :math:`u(0) \sim \mathcal N(0, s^2)` (``u0_scale`` :math:`s`)
    and the noise are drawn from ``key``; ``dt`` in ms.
    """
    u0, keys = _trial_state(circuit, key, trials.n_trials, u0_scale)
    return _loss_terms(circuit, trials, u0, keys, dt=dt, every=record_every,
                       checkpoint=checkpoint)[0]


def _global_norm(tree):
    norm = getattr(getattr(optax, "tree", None), "norm", None)
    return norm(tree) if norm is not None else optax.global_norm(tree)


@eqx.filter_jit
def _update(params, static, opt_state, trials, key, *, optimizer, dt, every, checkpoint,
            u0_scale):
    def objective(p):
        circuit = eqx.combine(p, static)
        u0, keys = _trial_state(circuit, key, trials.n_trials, u0_scale)
        return _loss_terms(circuit, trials, u0, keys, dt=dt, every=every, checkpoint=checkpoint)

    (value, (mse, diverged)), grads = eqx.filter_value_and_grad(objective, has_aux=True)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = eqx.apply_updates(params, updates)
    return params, opt_state, jnp.stack([value, mse, _global_norm(grads),
                                         diverged.astype(value.dtype)])


@functools.partial(eqx.filter_jit)
def _predict(circuit, inputs, key, *, dt, every, u0_scale, checkpoint=False):
    u0, keys = _trial_state(circuit, key, inputs.shape[0], u0_scale)
    return _outputs(circuit, inputs, u0, keys, dt=dt, every=every, checkpoint=checkpoint)


# ---------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class TrainHistory:
    """What :func:`fit` measured, one entry per update (numpy arrays).

    Attributes:
        loss: the training loss :math:`\\mathrm{NRMSE}^2` on the update's batch, evaluated at the
            parameters *before* that update (entry ``u``: after ``u`` updates).
        nrmse: ``sqrt(loss)``.
        mse: the plain mean squared error of the same batch.
        grad_norm: the global norm of the gradient (before clipping).
        eval_updates, eval_nrmse: held-out NRMSE (a fixed batch of other trials) after
            ``eval_updates[k]`` updates; empty when ``eval_every`` was not given.
        n_updates: updates applied (less than requested when ``stop_below`` stopped early).
        stopped_early: whether ``stop_below`` was reached.
        wall_s: training time in seconds (including compilation).
        trainable: the trained parts.
    """

    loss: np.ndarray
    nrmse: np.ndarray
    mse: np.ndarray
    grad_norm: np.ndarray
    eval_updates: np.ndarray
    eval_nrmse: np.ndarray
    n_updates: int
    stopped_early: bool
    wall_s: float
    trainable: Any

    def updates_to(self, threshold: float, *, window: int = 1) -> int | None:
        """The first number of updates after which the training NRMSE, averaged over ``window``
        consecutive batches ending there, is <= ``threshold``; ``None`` if never."""
        x = self.nrmse
        window = check_int(window, "window", minimum=1)
        if x.size < window:
            return None
        avg = np.convolve(x, np.ones(window) / window, mode="valid")
        hit = np.nonzero(avg <= threshold)[0]
        return int(hit[0] + window - 1) if hit.size else None


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Held-out performance of a circuit on fresh trials of a task.

    Attributes:
        nrmse: pooled NRMSE over trials, times and outputs (:func:`~.tasks.nrmse`).
        nrmse_per_output: the same per output (module), shape ``(n_outputs,)``.
        outputs: ``(B, n_records, n_outputs)`` circuit outputs.
        module_activity: ``(B, n_records, n_modules)`` order parameters :math:`m_a(t)`.
        trials: the :class:`~.tasks.Trials` (inputs, targets, mask, times).
    """

    nrmse: float
    nrmse_per_output: np.ndarray
    outputs: np.ndarray
    module_activity: np.ndarray
    trials: Trials


# ---------------------------------------------------------------------------------------------
# the functional core
# ---------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=32)
def default_optimizer(learning_rate: float = 1e-3, clip_norm: float | None = 1.0):
    """Adam (Kingma & Ba 2015) with the gradient clipped to global norm ``clip_norm`` first
    (BPTT through chaotic dynamics has exploding gradients). Cached, so repeated fits share the
    compiled update."""
    adam = optax.adam(learning_rate)
    return adam if clip_norm is None else optax.chain(optax.clip_by_global_norm(clip_norm), adam)


def _check_task(task, circuit):
    if not isinstance(task, AbstractTask):
        raise NeurocircuitsError(
            f"task must be a neurocircuits.rate.tasks task (e.g. PulsePersistence(...)), got "
            f"{type(task).__name__}."
        )
    if task.n_outputs != circuit.n_outputs or task.n_inputs != circuit.n_inputs:
        raise NeurocircuitsError(
            f"the task has {task.n_inputs} input channel(s) and {task.n_outputs} output(s) but "
            f"the circuit has {circuit.n_inputs} input(s) and {circuit.n_outputs} output(s); "
            f"build the circuit with RateCircuit.from_network(net, n_modules="
            f"{task.n_outputs}) or a task with n_modules={circuit.n_outputs}."
        )


def _as_circuit(model, task) -> RateCircuit:
    if isinstance(model, RateCircuit):
        return model
    if isinstance(model, RateNetwork):
        m = task.n_modules if isinstance(task, AbstractTask) else None
        labels = _module_labels_of(model.coupling)
        return RateCircuit.from_network(model, n_modules=None if labels is not None else m)
    raise NeurocircuitsError(
        f"model must be a RateCircuit or a RateNetwork, got {type(model).__name__}."
    )


def _check_key(key):
    if not (isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
            and key.shape == ()):
        raise NeurocircuitsError(
            f"key must be a single typed PRNG key (jax.random.key(seed)), got {describe(key)}."
        )


def _check_float(value, name, *, low=0.0, strict=True, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise NeurocircuitsError(f"{name} must be a number, got {describe(value)}.")
    value = float(value)
    if not math.isfinite(value) or (value <= low if strict else value < low):
        raise NeurocircuitsError(
            f"{name} must be finite and {'>' if strict else '>='} {low}, got {value!r}.")
    return value


def fit(
    model: RateCircuit | RateNetwork,
    task: AbstractTask,
    *,
    key: jax.Array,
    optimizer: optax.GradientTransformation | None = None,
    n_updates: int = 500,
    batch_size: int = 16,
    trainable: Any = "full",
    rank: int | None = None,
    learning_rate: float = 1e-3,
    clip_norm: float | None = 1.0,
    checkpoint: bool = False,
    u0_scale: float = 0.5,
    stop_below: float | None = None,
    stop_window: int = 1,
    eval_every: int | None = None,
    eval_trials: int = 32,
    progress: bool | None = None,
) -> tuple[RateCircuit, TrainHistory]:
    r"""Train ``model`` on ``task`` by BPTT through :func:`~neurocircuits.simulate`.

    Update :math:`u` (from 0) draws ``batch_size`` fresh trials with
    ``task.sample(fold_in(k_data, u), batch_size)``, initial states
    :math:`u_i(0) \sim \mathcal N(0, s^2)` and noise from ``fold_in(k_run, u)``, takes the
    gradient of :math:`L = \mathrm{NRMSE}^2` (module docstring) through the simulation of all
    trials (one vmapped ``lax.scan``; ``checkpoint=True`` recomputes each observation interval
    in the backward pass) and applies one optimizer step to the ``trainable`` leaves only.

    Args:
        model: a :class:`RateCircuit`, or a :class:`~neurocircuits.rate.RateNetwork` (wrapped
            with :meth:`RateCircuit.from_network`: module labels from the coupling, else
            ``task.n_modules`` contiguous blocks).
        task: an :class:`~neurocircuits.rate.tasks.AbstractTask`; its ``dt`` (ms) and
            ``record_every`` set the simulation grid.
        key: PRNG key (initialisation of new parts, trials, initial states, noise).
        optimizer: any optax transformation; default :func:`default_optimizer` (Adam,
            ``learning_rate``, gradients clipped to global norm ``clip_norm``).
        n_updates: maximal number of updates (>= 1).
        batch_size: trials per update (>= 1).
        trainable: ``"full"``, ``"low_rank"``, ``"readout"``, ``"input"``, ``"bias"``, a tuple of
            them, or ``where(circuit) -> leaves``.
        rank: rank of the low-rank part (default 1, or the existing one).
        learning_rate, clip_norm: for the default optimizer.
        checkpoint: gradient checkpointing (long trials).
        u0_scale: std of the random initial states :math:`s`.
        stop_below: stop as soon as the training NRMSE, averaged over the last ``stop_window``
            batches, is <= this (the returned circuit is the one evaluated on the last of
            them; ``history.updates_to(stop_below, window=stop_window)`` is then
            ``history.n_updates``).
        eval_every: every this many updates, the NRMSE on a fixed held-out batch
            (``eval_trials`` trials from a separate key) goes into the history.
        progress: rich progress bar over updates (default: when stderr is a terminal and
            ``n_updates >= 100``).

    Returns:
        ``(trained_circuit, history)``: a new :class:`RateCircuit` (the input is unchanged) and
        a :class:`TrainHistory`.

    Raises:
        NeurocircuitsError: bad arguments (named, with the value received).
        DivergenceError: the simulation or the loss became NaN/Inf (lower ``learning_rate``,
            keep ``clip_norm``, or reduce ``dt``).
    """
    _check_key(key)
    circuit = _as_circuit(model, task)
    _check_task(task, circuit)
    n_updates = check_int(n_updates, "n_updates", minimum=1)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    learning_rate = _check_float(learning_rate, "learning_rate")
    clip_norm = _check_float(clip_norm, "clip_norm", allow_none=True)
    u0_scale = _check_float(u0_scale, "u0_scale", strict=False)
    stop_below = _check_float(stop_below, "stop_below", strict=False, allow_none=True)
    stop_window = check_int(stop_window, "stop_window", minimum=1)
    if eval_every is not None:
        eval_every = check_int(eval_every, "eval_every", minimum=1)
        eval_trials = check_int(eval_trials, "eval_trials", minimum=1)
    if optimizer is None:
        optimizer = default_optimizer(learning_rate, clip_norm)
    elif not isinstance(optimizer, optax.GradientTransformation):
        raise NeurocircuitsError(
            f"optimizer must be an optax.GradientTransformation (e.g. optax.adam(1e-3)), got "
            f"{type(optimizer).__name__}."
        )
    if not isinstance(checkpoint, bool):
        raise NeurocircuitsError(f"checkpoint must be True or False, got {checkpoint!r}.")

    k_init, k_data, k_run, k_eval = jax.random.split(key, 4)
    circuit = prepare(circuit, trainable, key=k_init, rank=rank)
    spec = trainable_filter(circuit, trainable)
    params, static = eqx.partition(circuit, spec)
    opt_state = optimizer.init(params)
    kw = dict(optimizer=optimizer, dt=float(task.dt), every=task.record_every,
              checkpoint=checkpoint, u0_scale=u0_scale)
    eval_trials_data = task.sample(k_eval, eval_trials) if eval_every else None

    stats, eval_u, eval_v = [], [], []
    stopped = False
    show = progress if progress is not None else (sys.stderr.isatty() and n_updates >= 100)
    bar = _Progress(n_updates, enabled=bool(show))
    t_start = time.perf_counter()
    try:
        for u in range(n_updates):
            if eval_every and u % eval_every == 0:
                eval_u.append(u)
                eval_v.append(_heldout(eqx.combine(params, static), eval_trials_data,
                                       jax.random.fold_in(k_eval, u), kw))
            trials = task.sample(jax.random.fold_in(k_data, u), batch_size)
            new_params, new_opt, s = _update(params, static, opt_state, trials,
                                             jax.random.fold_in(k_run, u), **kw)
            s = np.asarray(s)
            if not np.all(np.isfinite(s[:3])) or s[3] > 0:
                raise DivergenceError(
                    f"Training diverged at update {u}: the "
                    f"{'simulation' if s[3] > 0 else 'loss or gradient'} became NaN/Inf "
                    f"(loss {s[0]:g}, gradient norm {s[2]:g}). Lower learning_rate (now "
                    f"{learning_rate:g}), keep gradient clipping (clip_norm), or reduce dt = "
                    f"{task.dt:g} ms."
                )
            stats.append(s[:3])
            bar.advance(float(np.sqrt(s[0])))
            recent = np.sqrt([x[0] for x in stats[-stop_window:]])
            if (stop_below is not None and len(stats) >= stop_window
                    and recent.mean() <= stop_below):
                stopped = True  # the parameters before this update reached the threshold
                break
            params, opt_state = new_params, new_opt
    finally:
        bar.close()
    wall = time.perf_counter() - t_start
    stats = np.asarray(stats).reshape(-1, 3)
    n_done = len(stats) - 1 if stopped else len(stats)
    history = TrainHistory(
        loss=stats[:, 0], nrmse=np.sqrt(stats[:, 0]), mse=stats[:, 1], grad_norm=stats[:, 2],
        eval_updates=np.asarray(eval_u, int), eval_nrmse=np.asarray(eval_v, float),
        n_updates=n_done, stopped_early=stopped, wall_s=wall,
        trainable=trainable if not callable(trainable) else getattr(trainable, "__name__",
                                                                    "where"))
    return eqx.combine(params, static), history


def _heldout(circuit, trials, key, kw):
    y, _ = _predict(circuit, trials.inputs, key, dt=kw["dt"], every=kw["every"],
                    u0_scale=kw["u0_scale"])
    return float(nrmse(y, trials.targets, trials.mask))


def predict(circuit: RateCircuit, inputs: Float[Array, "batch n_steps n_inputs"] | Trials, *,
            key: jax.Array, dt: float, record_every: int = 1,
            u0_scale: float = 0.5) -> Float[Array, "batch n_records n_outputs"]:
    """The circuit's outputs for a batch of input sequences (or :class:`~.tasks.Trials`), from
    random initial states :math:`\\mathcal N(0, s^2)` (``u0_scale``) and noise drawn from
    ``key``; observed every ``record_every`` steps of ``dt`` ms. One compiled scan."""
    _check_key(key)
    if not isinstance(circuit, RateCircuit):
        raise NeurocircuitsError(f"circuit must be a RateCircuit, got {type(circuit).__name__}.")
    if isinstance(inputs, Trials):
        inputs = inputs.inputs
    inputs = jnp.asarray(inputs)
    if inputs.ndim != 3 or inputs.shape[2] != circuit.n_inputs:
        raise NeurocircuitsError(
            f"inputs must have shape (batch, n_steps, n_inputs) with n_inputs = "
            f"{circuit.n_inputs}, got {describe(inputs)}."
        )
    record_every = check_int(record_every, "record_every", minimum=1)
    if inputs.shape[1] % record_every:
        raise NeurocircuitsError(
            f"n_steps = {inputs.shape[1]} must be a multiple of record_every = {record_every}."
        )
    dt = _check_float(dt, "dt")
    u0_scale = _check_float(u0_scale, "u0_scale", strict=False)
    y, bad = _predict(circuit, inputs, key, dt=dt, every=record_every, u0_scale=u0_scale)
    if np.any(np.asarray(bad) >= 0):
        raise DivergenceError(
            f"The circuit's simulation diverged (NaN/Inf) in trial "
            f"{int(np.argmax(np.asarray(bad) >= 0))}; reduce dt = {dt:g} ms or check the "
            "trained weights.")
    return y


def evaluate(circuit: RateCircuit, task: AbstractTask, *, key: jax.Array, n_trials: int = 64,
             u0_scale: float = 0.5) -> Evaluation:
    """NRMSE of ``circuit`` on ``n_trials`` fresh trials of ``task`` (trials, initial states and
    noise from ``key``: use a key not used in training for held-out trials)."""
    _check_key(key)
    if not isinstance(circuit, RateCircuit):
        raise NeurocircuitsError(f"circuit must be a RateCircuit, got {type(circuit).__name__}.")
    _check_task(task, circuit)
    n_trials = check_int(n_trials, "n_trials", minimum=1)
    k_trials, k_run = jax.random.split(key)
    trials = task.sample(k_trials, n_trials)
    u0_scale = _check_float(u0_scale, "u0_scale", strict=False)
    u0, keys = _trial_state(circuit, k_run, n_trials, u0_scale)
    y, m, bad = _eval_outputs(circuit, trials.inputs, u0, keys, dt=float(task.dt),
                              every=task.record_every)
    if np.any(np.asarray(bad) >= 0):
        raise DivergenceError("The circuit's simulation diverged (NaN/Inf) on held-out trials.")
    per = np.array([float(nrmse(y[..., o], trials.targets[..., o], trials.mask[..., o]))
                    for o in range(y.shape[-1])])
    return Evaluation(float(nrmse(y, trials.targets, trials.mask)), per, np.asarray(y),
                      np.asarray(m), trials)


@eqx.filter_jit
def _eval_outputs(circuit, inputs, u0, keys, *, dt, every):
    record = Record(every=every, fn=lambda u, t: (circuit.output(u), circuit.module_activity(u)))
    traj = simulate(circuit, u0, dt=dt, n_steps=inputs.shape[1], key=keys,
                    inputs=jnp.swapaxes(inputs, 0, 1), record=record,
                    batch=Batch(model=None, state=True, key=True, inputs=True))
    return traj.ys[0], traj.ys[1], traj.diverged_at


# ---------------------------------------------------------------------------------------------
# progress over updates
# ---------------------------------------------------------------------------------------------
class _Progress:
    def __init__(self, total: int, *, enabled: bool):
        self._bar = None
        if enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress("train", BarColumn(), MofNCompleteColumn(), "updates",
                                 TextColumn("NRMSE {task.fields[nrmse]}"), TimeElapsedColumn(),
                                 TimeRemainingColumn(), console=Console(stderr=True))
            self._task = self._bar.add_task("train", total=total, nrmse="-")
            self._bar.start()

    def advance(self, value: float):
        if self._bar is not None:
            self._bar.update(self._task, advance=1, nrmse=f"{value:.4f}")

    def close(self):
        if self._bar is not None:
            self._bar.stop()


# ---------------------------------------------------------------------------------------------
# scikit-learn style shell
# ---------------------------------------------------------------------------------------------
class RateNetworkTrainer:
    """A thin scikit-learn style wrapper of :func:`fit`, :func:`predict` and :func:`evaluate`.

    Example:
        >>> trainer = RateNetworkTrainer(trainable="low_rank", rank=2, n_updates=300)
        >>> trainer.fit(net, task, key=jax.random.key(0))
        >>> outputs = trainer.predict(task.sample(jax.random.key(1), 8), key=jax.random.key(2))
        >>> trainer.score(task, key=jax.random.key(3))      # 1 - NRMSE^2 on held-out trials

    Args: the keyword arguments of :func:`fit` (all but ``model``, ``task`` and ``key``).

    Attributes (after :meth:`fit`): ``circuit_`` (the trained :class:`RateCircuit`),
    ``history_`` (:class:`TrainHistory`), ``task_``.
    """

    def __init__(self, **fit_kwargs):
        bad = set(fit_kwargs) - set(_FIT_KWARGS)
        if bad:
            raise NeurocircuitsError(
                f"unknown argument(s) {sorted(bad)} for RateNetworkTrainer; allowed: "
                f"{', '.join(_FIT_KWARGS)}."
            )
        self.fit_kwargs = fit_kwargs

    def fit(self, model, task, *, key):
        self.circuit_, self.history_ = fit(model, task, key=key, **self.fit_kwargs)
        self.task_ = task
        return self

    def _fitted(self):
        if not hasattr(self, "circuit_"):
            raise NeurocircuitsError("This RateNetworkTrainer is not fitted yet: call fit first.")

    def predict(self, inputs, *, key):
        """Outputs ``(B, n_records, n_outputs)`` for inputs ``(B, n_steps, n_inputs)`` or
        :class:`~.tasks.Trials`, on the fitted task's grid."""
        self._fitted()
        return predict(self.circuit_, inputs, key=key, dt=self.task_.dt,
                       record_every=self.task_.record_every,
                       u0_scale=self.fit_kwargs.get("u0_scale", 0.5))

    def score(self, task=None, *, key, n_trials: int = 64) -> float:
        """``1 - NRMSE^2`` (a pooled R^2; higher is better) on fresh trials of ``task``
        (default: the fitted one)."""
        self._fitted()
        ev = evaluate(self.circuit_, task or self.task_, key=key, n_trials=n_trials,
                      u0_scale=self.fit_kwargs.get("u0_scale", 0.5))
        return 1.0 - ev.nrmse ** 2


_FIT_KWARGS = ("optimizer", "n_updates", "batch_size", "trainable", "rank", "learning_rate",
               "clip_norm", "checkpoint", "u0_scale", "stop_below", "stop_window", "eval_every",
               "eval_trials", "progress")
