"""Connectivity: coupling operators and keyed builders.

A *coupling* is an equinox module mapping presynaptic activity ``r`` (shape ``(n_pre,)``) to the
recurrent input of every postsynaptic neuron (shape ``(n_post,)``): ``coupling(r) = J @ r`` for a
matrix ``J`` it may never store densely.

Couplings (all :class:`AbstractCoupling`):

* :class:`Dense` -- a stored matrix.
* :class:`GaussianPlusMean` -- ``g z + (J0/sqrt N) s_j c_ij``, random and mean parts kept apart.
* :class:`BlockMeanPlusGaussian` -- modular networks: a block-structured mean applied in
  O(N + M^2) per step plus an (optionally block-scaled) Gaussian part.
* :class:`SparseFixedInDegree` -- K presynaptic indices per row, memory O(N K); converts to CSR by
  presynaptic neuron (:meth:`SparseFixedInDegree.to_csr_by_pre`) for event-driven propagation.
* :class:`BlockedFixedInDegree` -- the same synapses as uint16 offsets split by presynaptic
  block (:meth:`SparseFixedInDegree.blocked`): each gather stays in a GPU's L1 cache.

Builders (every one takes a required ``key``; sizes are Python ints, so they are jit-friendly
with static sizes): :func:`gaussian`, :func:`ei`, :func:`modular`, :func:`fixed_in_degree`, and
the label helper :func:`ei_signs`. Weights are dimensionless here; families attach units.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from .errors import NeurocircuitsError, check_int, check_positive, describe
from .sharding import gather_neurons

__all__ = [
    "AbstractCoupling",
    "BlockMeanPlusGaussian",
    "BlockedFixedInDegree",
    "CSRByPre",
    "Dense",
    "GaussianPlusMean",
    "SparseFixedInDegree",
    "ei",
    "ei_signs",
    "fixed_in_degree",
    "gaussian",
    "modular",
]


class AbstractCoupling(eqx.Module):
    """``coupling(r) -> J @ r``; ``n_post``/``n_pre`` give the shape of ``J``."""

    @property
    def n_post(self) -> int:  # pragma: no cover
        raise NotImplementedError

    @property
    def n_pre(self) -> int:  # pragma: no cover
        raise NotImplementedError

    def __call__(self, r: Float[Array, " n_pre"]) -> Float[Array, " n_post"]:  # pragma: no cover
        raise NotImplementedError

    def to_dense(self) -> Float[Array, "n_post n_pre"]:
        """The matrix ``J`` (for small networks, tests and plots)."""
        return jax.vmap(self, in_axes=1, out_axes=1)(jnp.eye(self.n_pre))


class Dense(AbstractCoupling):
    """A dense matrix: ``coupling(r) = matrix @ r``.

    Args:
        matrix: ``J``, shape ``(n_post, n_pre)``.
        precision: matmul precision (``"highest"`` is float32 on GPU; ``"default"`` allows
            TF32/bf16 passes where the hardware has them).
    """

    matrix: Float[Array, "n_post n_pre"]
    precision: str = eqx.field(static=True, default="highest")

    def __check_init__(self):
        if jnp.ndim(self.matrix) != 2:
            raise NeurocircuitsError(
                f"Dense(matrix=...) needs a 2-d matrix (n_post, n_pre), got {describe(self.matrix)}."
            )

    @property
    def n_post(self) -> int:
        return self.matrix.shape[0]

    @property
    def n_pre(self) -> int:
        return self.matrix.shape[1]

    def __call__(self, r):
        r = gather_neurons(r)  # all-gather when neurons are sharded
        return jnp.matmul(self.matrix, r, precision=self.precision)

    def to_dense(self):
        return self.matrix


class GaussianPlusMean(AbstractCoupling):
    r"""A random Gaussian matrix plus a structured mean, kept apart so ``g`` and ``J0`` sweep
    without rebuilding (or re-storing) the random part:

    .. math::

        J_{ij} = g\, z_{ij} + \frac{J_0}{\sqrt{N}}\, s_j\, c_{ij},
        \qquad z_{ij} \sim \mathcal N(0, 1/N),

    with ``N = n_pre``, signs ``s_j`` (+1 excitatory, ``-gamma`` inhibitory) and an optional
    mask ``c_ij`` in {0, 1}; without a mask the mean part is the rank-one ``s_j`` row, applied in
    O(N) per step.

    Args:
        z: the normalised random matrix, shape ``(n_post, n_pre)``, entries of variance 1/n_pre.
        g: the gain of the random part (dimensionless).
        J0: the strength of the mean part.
        signs: ``s_j``, shape ``(n_pre,)``; ``None`` means no mean part.
        mask: ``c_ij``, shape ``(n_post, n_pre)``; ``None`` means all ones.
        precision: matmul precision (see :class:`Dense`).
    """

    z: Float[Array, "n_post n_pre"]
    g: Float[Array, ""]
    J0: Float[Array, ""]
    signs: Float[Array, " n_pre"] | None = None
    mask: Float[Array, "n_post n_pre"] | None = None
    precision: str = eqx.field(static=True, default="highest")

    def __init__(self, z, g=1.0, J0=0.0, signs=None, mask=None, *, precision="highest"):
        self.z = jnp.asarray(z)
        self.g = jnp.asarray(g, self.z.dtype)
        self.J0 = jnp.asarray(J0, self.z.dtype)
        self.signs = None if signs is None else jnp.asarray(signs, self.z.dtype)
        self.mask = None if mask is None else jnp.asarray(mask, self.z.dtype)
        self.precision = precision

    def __check_init__(self):
        if jnp.ndim(self.z) != 2:
            raise NeurocircuitsError(
                f"GaussianPlusMean(z=...) needs a 2-d matrix, got {describe(self.z)}."
            )
        if self.signs is not None and jnp.shape(self.signs)[-1:] != (self.z.shape[-1],):
            raise NeurocircuitsError(
                f"signs must have shape (n_pre,) = ({self.z.shape[-1]},), got "
                f"{describe(self.signs)}."
            )
        if self.mask is not None and jnp.shape(self.mask)[-2:] != self.z.shape[-2:]:
            raise NeurocircuitsError(
                f"mask must have the shape of z {self.z.shape}, got {describe(self.mask)}."
            )

    @property
    def n_post(self) -> int:
        return self.z.shape[0]

    @property
    def n_pre(self) -> int:
        return self.z.shape[1]

    def __call__(self, r):
        r = gather_neurons(r)  # all-gather when neurons are sharded
        out = self.g * jnp.matmul(self.z, r, precision=self.precision)
        if self.signs is None:
            return out
        sr = self.signs * r
        scale = self.J0 / jnp.sqrt(jnp.asarray(self.n_pre, out.dtype))
        if self.mask is None:
            return out + scale * jnp.sum(sr)
        return out + scale * jnp.matmul(self.mask, sr, precision=self.precision)

    def to_dense(self):
        dense = self.g * self.z
        if self.signs is not None:
            mean = jnp.broadcast_to(self.signs, self.z.shape)
            if self.mask is not None:
                mean = mean * self.mask
            dense = dense + self.J0 / jnp.sqrt(self.n_pre) * mean
        return dense


# ---------------------------------------------------------------------------------------------
# argument checks shared by the builders
# ---------------------------------------------------------------------------------------------
def _is_traced(value: Any) -> bool:
    return isinstance(value, jax.core.Tracer)


def _concrete_float(value: Any, name: str, why: str) -> float:
    """``value`` as a Python float; raise when it is traced (it decides a shape) or not a number."""
    if _is_traced(value):
        raise NeurocircuitsError(
            f"{name} must be a concrete number ({why}), got a traced value; pass it as a "
            f"Python float (mark it static under jax.jit, do not vmap over it)."
        )
    arr = np.asarray(value)
    if arr.shape != () or arr.dtype.kind not in "biuf":
        raise NeurocircuitsError(f"{name} must be a real number, got {describe(value)}.")
    return float(arr)


def _check_interval(value: Any, name: str, low: float, high: float, *, low_open: bool,
                    high_open: bool, why: str = "") -> None:
    """Raise unless ``value`` (concrete or skipped when traced) lies in the stated interval."""
    if _is_traced(value):
        return
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise NeurocircuitsError(f"{name} must be a real number, got {describe(value)}.")
    lo_ok = arr > low if low_open else arr >= low
    hi_ok = arr < high if high_open else arr <= high
    if not (np.all(np.isfinite(arr)) and np.all(lo_ok) and np.all(hi_ok)):
        rng = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise NeurocircuitsError(
            f"{name} must lie in {rng}, got {describe(value)}." + (f" {why}" if why else "")
        )


def _check_fraction_f(f: Any) -> float:
    f = _concrete_float(f, "f", "the excitatory fraction sets how many units are excitatory")
    _check_interval(f, "f", 0.0, 1.0, low_open=True, high_open=True,
                    why="f is the fraction of excitatory units.")
    return f


def _check_sizes(sizes: Any) -> tuple[int, ...]:
    if isinstance(sizes, (int, np.integer)) or not isinstance(sizes, (Sequence, np.ndarray)):
        raise NeurocircuitsError(
            f"sizes must be a sequence of module sizes (positive ints), e.g. (250, 250, 250, 250);"
            f" got {describe(sizes)}."
        )
    sizes = tuple(sizes)
    if len(sizes) == 0:
        raise NeurocircuitsError("sizes must list at least one module size, got an empty sequence.")
    return tuple(check_int(s, f"sizes[{a}]", minimum=1) for a, s in enumerate(sizes))


def _n_exc(n: int, f: float) -> int:
    """Number of excitatory units: ``round(f n)`` (as :meth:`RateNetwork.random`)."""
    return int(round(f * n))


def _resolve_gamma(gamma: Any, balance: Any, n_e: int, n_i: int, where: str) -> Any:
    """The inhibitory strength from ``gamma`` or ``balance`` (critical balance when neither)."""
    if gamma is not None and balance is not None:
        raise NeurocircuitsError(
            f"Pass at most one of gamma (inhibitory strength) and balance "
            f"(gamma relative to critical balance), got gamma={gamma!r} and balance={balance!r}."
        )
    if gamma is not None:
        check_positive(gamma, "gamma")
        return gamma
    b = 1.0 if balance is None else balance
    if balance is not None:
        check_positive(balance, "balance")
    if n_e == 0 or n_i == 0:
        raise NeurocircuitsError(
            f"Balance {where}needs at least one excitatory and one inhibitory unit, got "
            f"{n_e} excitatory and {n_i} inhibitory (n_E = round(f n)). Change n or f, or pass "
            f"gamma explicitly."
        )
    return b * (n_e / n_i)


# ---------------------------------------------------------------------------------------------
# E/I labels, random and E/I matrices
# ---------------------------------------------------------------------------------------------
def ei_signs(n: int, f: float = 0.8, gamma: Any = None, *, balance: Any = None,
             dtype=jnp.float32) -> Float[Array, " n"]:
    r"""The E/I sign of every presynaptic unit: :math:`s_j = +1` for the first
    :math:`n_E = \mathrm{round}(f n)` units (excitatory), :math:`s_j = -\gamma` for the other
    :math:`n_I = n - n_E` (inhibitory).

    ``gamma=None`` gives *critical balance* :math:`\sum_j s_j = 0`, i.e.
    :math:`\gamma = n_E/n_I` (equal to :math:`f/(1-f)` whenever :math:`f n` is an integer).
    ``balance`` scales that critical value, :math:`\gamma = b\, n_E/n_I`: ``balance > 1`` is
    inhibition-dominated (:math:`f < (1-f)\gamma`), ``balance < 1`` excitation-dominated.
    Excitatory labels are ``signs > 0``.

    Args:
        n: number of units (>= 1).
        f: excitatory fraction, in (0, 1).
        gamma: inhibitory relative strength (> 0); ``None``: set by ``balance``.
        balance: :math:`b = (1-f)\gamma/f` with the realised fraction (> 0); default 1.
        dtype: floating dtype of the result.

    Example:
        >>> s = ei_signs(1000, f=0.8)          # 800 x (+1), 200 x (-4)
        >>> float(s.sum())
        0.0
    """
    n = check_int(n, "n", minimum=1)
    f = _check_fraction_f(f)
    n_e = _n_exc(n, f)
    gamma = _resolve_gamma(gamma, balance, n_e, n - n_e, "")
    return jnp.where(jnp.arange(n) < n_e, jnp.asarray(1.0, dtype),
                     -jnp.asarray(gamma, dtype)).astype(dtype)


def gaussian(key: jax.Array, n_post: int, n_pre: int | None = None, *, g: Any = 1.0,
             dtype=jnp.float32, precision: str = "highest") -> GaussianPlusMean:
    r"""A Gaussian random coupling :math:`J_{ij} = g\, z_{ij}`,
    :math:`z_{ij} \sim \mathcal N(0, 1/n_{pre})` (no mean part): the Sompolinsky–Crisanti–Sommers
    matrix, whose spectrum fills the disc of radius ``g`` (square case).

    Args:
        key: PRNG key.
        n_post, n_pre: shape of ``J`` (``n_pre=None``: square).
        g: gain (dimensionless, may be traced/swept: it is stored apart from ``z``).
        dtype, precision: dtype of ``z``; matmul precision (see :class:`Dense`).

    Example:
        >>> J = gaussian(jax.random.key(0), 500, g=1.5)
        >>> J(jnp.ones(500)).shape
        (500,)

    Reference: Sompolinsky, Crisanti & Sommers, Phys. Rev. Lett. 61, 259 (1988).
    """
    n_post = check_int(n_post, "n_post", minimum=1)
    n_pre = n_post if n_pre is None else check_int(n_pre, "n_pre", minimum=1)
    _check_interval(g, "g", 0.0, float("inf"), low_open=False, high_open=True)
    z = jax.random.normal(key, (n_post, n_pre), dtype) / jnp.sqrt(jnp.asarray(n_pre, dtype))
    return GaussianPlusMean(z, g, 0.0, precision=precision)


def ei(key: jax.Array, n: int, *, f: float = 0.8, gamma: Any = None, balance: Any = None,
       J0: Any = 1.0, g: Any = 0.0, p: Any = 1.0, dale: bool = False, dtype=jnp.float32,
       precision: str = "highest") -> GaussianPlusMean | Dense:
    r"""An E/I network (the rate spec's coupling).

    Default (``dale=False``), a :class:`GaussianPlusMean`:

    .. math::

        J_{ij} = s_j \frac{J_0}{\sqrt N} c_{ij} + \frac{g}{\sqrt N} \zeta_{ij},
        \qquad \zeta_{ij} \sim \mathcal N(0, 1),\quad c_{ij} \sim \mathrm{Bernoulli}(p),

    with :math:`s_j` from :func:`ei_signs` (``+1`` for the first ``round(f n)`` units, ``-gamma``
    for the rest; ``.signs`` of the result). The mask is ``None`` when ``p == 1``. Critical
    balance (``gamma=None``, ``balance=None``): :math:`\sum_j s_j = 0`, so the rank-one mean part
    (``p = 1``) has zero row sums and is nilpotent: no outlier eigenvalue.
    Inhibition-dominated: ``balance > 1`` (or ``gamma > f/(1-f)``); excitation-dominated:
    ``balance < 1``. ``g`` and ``J0`` stay sweepable leaves.

    Dale's law (``dale=True``), a :class:`Dense` whose every weight keeps its presynaptic sign:

    .. math::

        J_{ij} = s_j\, c_{ij}\, \frac{|J_0 + g\,\zeta_{ij}|}{\sqrt{N p}} ,

    the randomness coming from the sparse mask (and, if ``g > 0``, from the magnitudes). With
    ``g = 0``: mean :math:`s_j J_0 \sqrt{p/N}` (a mean part of strength :math:`J_0\sqrt p`) and
    variance :math:`s_j^2 J_0^2 (1-p)/N`, i.e. an effective random gain
    :math:`g_{\rm eff}^2 = J_0^2 (1-p)(f + \gamma^2 (1-f))` (van Vreeswijk–Sompolinsky scaling with
    in-degree :math:`K = N p`). Critical balance again makes every row sum vanish in expectation.
    Same ``key`` gives the same mask with and without ``dale``.

    Args:
        key: PRNG key.
        n: number of units N (>= 1).
        f: excitatory fraction in (0, 1) (concrete: it sets the labels).
        gamma: inhibitory relative strength (> 0); ``None``: from ``balance``.
        balance: gamma relative to critical balance (> 0; default 1 = critical).
        J0: mean strength (dimensionless).
        g: random gain (dimensionless, >= 0).
        p: connection probability, in (0, 1].
        dale: sign-respecting variant above.
        dtype, precision: dtype of the stored arrays; matmul precision.

    Example:
        >>> J = ei(jax.random.key(0), 1000, f=0.8, J0=1.0, g=3.0)   # critical balance
        >>> bool(J.signs[:800].min() > 0), float(J.signs[800])
        (True, -4.0)

    References: Rajan & Abbott, Phys. Rev. Lett. 97, 188104 (2006); van Vreeswijk & Sompolinsky,
    Science 274, 1724 (1996).
    """
    n = check_int(n, "n", minimum=1)
    signs = ei_signs(n, f, gamma, balance=balance, dtype=dtype)
    _check_interval(p, "p", 0.0, 1.0, low_open=True, high_open=False,
                    why="p is a connection probability.")
    _check_interval(g, "g", 0.0, float("inf"), low_open=False, high_open=True)
    kz, kc = jax.random.split(key)
    full = (not _is_traced(p)) and float(np.asarray(p)) == 1.0
    mask = None if full else jax.random.bernoulli(kc, p, (n, n)).astype(dtype)
    zeta = jax.random.normal(kz, (n, n), dtype)
    if not dale:
        z = zeta / jnp.sqrt(jnp.asarray(n, dtype))
        return GaussianPlusMean(z, g, J0, signs, mask, precision=precision)
    mag = jnp.abs(jnp.asarray(J0, dtype) + jnp.asarray(g, dtype) * zeta)
    mag = mag / jnp.sqrt(jnp.asarray(n, dtype) * jnp.asarray(p, dtype))
    matrix = signs[None, :] * mag
    if mask is not None:
        matrix = matrix * mask
    return Dense(matrix, precision=precision)


# ---------------------------------------------------------------------------------------------
# modular networks
# ---------------------------------------------------------------------------------------------
class BlockMeanPlusGaussian(AbstractCoupling):
    r"""A modular coupling: a block-structured mean plus an (optionally block-scaled) Gaussian part.

    .. math::

        J_{ij} = \frac{J^0_{a(i) a(j)}}{\sqrt N}\, s_j + g\, G_{a(i) a(j)}\, z_{ij},
        \qquad z_{ij} \sim \mathcal N(0, 1/N),

    with module labels :math:`a(i) \in \{0..M-1\}` (``module_labels``), block strengths
    :math:`J^0` (``J0``, shape ``(M, M)``), presynaptic signs :math:`s_j` (``signs``) and block
    gains :math:`G` (``g_blocks``, ``None`` = all ones). The mean part is applied in
    O(N + M^2) per step through the module fields :meth:`mean_field`; with block gains the random
    part is one ``(N, N) @ (N, M)`` product (the matrix is read once). ``z = None`` stores no
    random part (O(N) memory: large-N mean-field studies).

    Args:
        z: normalised random matrix ``(N, N)`` (variance 1/N) or ``None``.
        g: random gain (scalar).
        J0: block strengths, ``(M, M)``.
        signs: ``(N,)`` presynaptic signs (``+1`` E, ``-gamma`` I).
        module_labels: ``(N,)`` ints in ``[0, M)``.
        g_blocks: ``(M, M)`` relative block gains, or ``None``.
        precision: matmul precision (see :class:`Dense`).
    """

    z: Float[Array, "n n"] | None
    g: Float[Array, ""]
    J0: Float[Array, "m m"]
    signs: Float[Array, " n"]
    module_labels: Int[Array, " n"]
    g_blocks: Float[Array, "m m"] | None
    n_modules: int = eqx.field(static=True)
    precision: str = eqx.field(static=True)

    def __init__(self, z, g, J0, signs, module_labels, *, g_blocks=None, precision="highest"):
        self.signs = jnp.asarray(signs)
        dtype = self.signs.dtype if jnp.issubdtype(self.signs.dtype, jnp.floating) else float
        self.signs = self.signs.astype(dtype)
        self.z = None if z is None else jnp.asarray(z, dtype)
        self.g = jnp.asarray(g, dtype)
        self.J0 = jnp.asarray(J0, dtype)
        self.module_labels = jnp.asarray(module_labels, jnp.int32)
        self.g_blocks = None if g_blocks is None else jnp.asarray(g_blocks, dtype)
        self.n_modules = int(self.J0.shape[0]) if self.J0.ndim == 2 else -1
        self.precision = precision

    def __check_init__(self):
        m = self.n_modules
        if self.J0.ndim != 2 or self.J0.shape[0] != self.J0.shape[1]:
            raise NeurocircuitsError(
                f"BlockMeanPlusGaussian(J0=...) needs a square (M, M) block matrix, got "
                f"{describe(self.J0)}."
            )
        if self.signs.ndim != 1:
            raise NeurocircuitsError(f"signs must have shape (N,), got {describe(self.signs)}.")
        n = self.signs.shape[0]
        if self.module_labels.shape != (n,):
            raise NeurocircuitsError(
                f"module_labels must have shape (N,) = ({n},) like signs, got "
                f"{describe(self.module_labels)}."
            )
        if self.z is not None and self.z.shape != (n, n):
            raise NeurocircuitsError(
                f"z must have shape (N, N) = ({n}, {n}), got {describe(self.z)}."
            )
        if self.g_blocks is not None and self.g_blocks.shape != (m, m):
            raise NeurocircuitsError(
                f"g_blocks must have shape (M, M) = ({m}, {m}), got {describe(self.g_blocks)}."
            )
        if not _is_traced(self.module_labels) and n > 0:
            lo, hi = int(jnp.min(self.module_labels)), int(jnp.max(self.module_labels))
            if lo < 0 or hi >= m:
                raise NeurocircuitsError(
                    f"module_labels must lie in [0, M) = [0, {m}), got values in [{lo}, {hi}]."
                )

    @property
    def n_post(self) -> int:
        return self.signs.shape[0]

    @property
    def n_pre(self) -> int:
        return self.signs.shape[0]

    def mean_field(self, r: Float[Array, " n"]) -> Float[Array, " m"]:
        r"""The module fields :math:`h_a = \sum_j \bar J_{aj} r_j`
        (:math:`\bar J_{aj} = J^0_{a\,a(j)} s_j/\sqrt N`), shape ``(M,)``, in O(N + M^2)."""
        pooled = jax.ops.segment_sum(self.signs * r, self.module_labels, self.n_modules)
        scale = 1.0 / jnp.sqrt(jnp.asarray(self.n_pre, pooled.dtype))
        return scale * jnp.matmul(self.J0, pooled, precision=self.precision)

    def module_mean(self, x: Float[Array, " n"]) -> Float[Array, " m"]:
        """The mean of ``x`` over each module, shape ``(M,)`` (e.g. the order parameters
        :math:`m_a` when ``x = phi(u)``)."""
        sums = jax.ops.segment_sum(x, self.module_labels, self.n_modules)
        counts = jax.ops.segment_sum(jnp.ones_like(x), self.module_labels, self.n_modules)
        return sums / counts

    def __call__(self, r):
        r = gather_neurons(r)  # all-gather when neurons are sharded
        out = self.mean_field(r)[self.module_labels]
        if self.z is None:
            return out
        if self.g_blocks is None:
            return out + self.g * jnp.matmul(self.z, r, precision=self.precision)
        onehot = jax.nn.one_hot(self.module_labels, self.n_modules, dtype=r.dtype) * r[:, None]
        per_block = jnp.matmul(self.z, onehot, precision=self.precision)  # (N, M)
        return out + self.g * jnp.sum(per_block * self.g_blocks[self.module_labels], axis=-1)

    def to_dense(self):
        lab = self.module_labels
        mean = self.J0[lab][:, lab] * self.signs[None, :] / jnp.sqrt(
            jnp.asarray(self.n_pre, self.signs.dtype))
        if self.z is None:
            return mean
        gain = self.g if self.g_blocks is None else self.g * self.g_blocks[lab][:, lab]
        return mean + gain * self.z


def modular(key: jax.Array, sizes: Sequence[int], *, J0_in: Any, J0_out: Any, g: Any = 1.0,
            g_in: Any = None, g_out: Any = None, f: float = 0.8, gamma: Any = None,
            balance: Any = None, dtype=jnp.float32,
            precision: str = "highest") -> BlockMeanPlusGaussian:
    r"""A modular E/I network: M modules of the given sizes (a :class:`BlockMeanPlusGaussian`).

    .. math::

        J_{ij} = \frac{J^0_{a(i)a(j)}}{\sqrt N} s_j + g_{a(i)a(j)}\, z_{ij},\qquad
        J^0_{ab} = J_0^{\rm in}\ (a = b),\ J_0^{\rm out}\ (a \ne b),\qquad
        z_{ij} \sim \mathcal N(0, 1/N)

    with :math:`g_{ab} = g_{\rm in}` within and :math:`g_{\rm out}` between modules (both default
    to ``g``). In every module the first ``round(f n_a)`` units are excitatory (:math:`s_j = +1`)
    and the others inhibitory (:math:`s_j = -\gamma_a`). ``gamma=None`` gives critical balance
    *within each module*, :math:`\gamma_a = b\, n_{E,a}/n_{I,a}` with ``balance`` :math:`b`
    (default 1): every block of the mean part then has zero row sums and the whole mean part is
    nilpotent. An explicit ``gamma`` is shared by all modules. ``g = 0`` with ``g_in``/``g_out``
    unset stores no random matrix (O(N) memory). Module labels: ``.module_labels``.

    Args:
        key: PRNG key (for ``z``).
        sizes: module sizes (positive ints), N = sum(sizes).
        J0_in, J0_out: mean strengths within / between modules (dimensionless).
        g, g_in, g_out: random gains (>= 0).
        f, gamma, balance: E/I split and inhibitory strength, as in :func:`ei`.
        dtype, precision: dtype of the stored arrays; matmul precision.

    Example:
        >>> J = modular(jax.random.key(0), (250,) * 4, J0_in=2.0, J0_out=0.5, g=3.0)
        >>> J.module_labels.shape, J.n_modules
        ((1000,), 4)
    """
    sizes = _check_sizes(sizes)
    f = _check_fraction_f(f)
    for name, val in (("g", g), ("g_in", g_in), ("g_out", g_out)):
        if val is not None:
            _check_interval(val, name, 0.0, float("inf"), low_open=False, high_open=True)
    m, n = len(sizes), sum(sizes)
    labels_np = np.repeat(np.arange(m), sizes)
    signs_parts = []
    for a, n_a in enumerate(sizes):
        n_e = _n_exc(n_a, f)
        gam = _resolve_gamma(gamma, balance, n_e, n_a - n_e, f"in module {a} (size {n_a}) ")
        signs_parts.append(jnp.where(jnp.arange(n_a) < n_e, jnp.asarray(1.0, dtype),
                                     -jnp.asarray(gam, dtype)))
    signs = jnp.concatenate(signs_parts).astype(dtype)
    eye = jnp.eye(m, dtype=bool)
    J0 = jnp.where(eye, jnp.asarray(J0_in, dtype), jnp.asarray(J0_out, dtype))
    g_blocks = None
    gain = g
    if g_in is not None or g_out is not None:
        gi = g if g_in is None else g_in
        go = g if g_out is None else g_out
        g_blocks = jnp.where(eye, jnp.asarray(gi, dtype), jnp.asarray(go, dtype))
        gain = 1.0
    no_random = g_blocks is None and not _is_traced(g) and float(np.asarray(g)) == 0.0
    z = None if no_random else (
        jax.random.normal(key, (n, n), dtype) / jnp.sqrt(jnp.asarray(n, dtype)))
    return BlockMeanPlusGaussian(z, gain, J0, signs, jnp.asarray(labels_np, jnp.int32),
                                 g_blocks=g_blocks, precision=precision)


# ---------------------------------------------------------------------------------------------
# sparse, fixed in-degree
# ---------------------------------------------------------------------------------------------
class CSRByPre(NamedTuple):
    """Outgoing synapses grouped by presynaptic neuron (compressed sparse rows of ``J^T``).

    The synapses of presynaptic neuron ``j`` are ``post[indptr[j]:indptr[j+1]]`` with weights
    ``weights[indptr[j]:indptr[j+1]]`` (posts in increasing order): event-driven propagation
    touches only the rows of neurons that spiked.
    """

    indptr: Int[Array, " n_pre_plus_1"]
    post: Int[Array, " nnz"]
    weights: Float[Array, " nnz"]


class SparseFixedInDegree(AbstractCoupling):
    r"""Sparse coupling with K presynaptic partners per postsynaptic neuron, stored as indices:

    .. math::

        [J r]_i = \sum_{k=0}^{K-1} w_{ik}\, r_{\,\mathrm{idx}_{ik}}

    Memory O(N K) (``indices`` int32). ``weights`` is one of: a scalar (every synapse), shape
    ``(n_pre,)`` (one weight per presynaptic neuron, e.g. E/I class weights
    ``J * ei_signs(n, f, gamma)``: memory O(N)), or shape ``(n_post, K)`` (one per synapse).
    Repeated indices in a row (multapses) add up.

    Args:
        indices: ``(n_post, K)`` presynaptic indices in ``[0, n_pre)``.
        weights: scalar, ``(n_pre,)`` or ``(n_post, K)``.
        num_pre: the number of presynaptic neurons ``n_pre``.
    """

    indices: Int[Array, "n_post k"]
    weights: Float[Array, ...]
    num_pre: int = eqx.field(static=True)

    def __init__(self, indices, weights, num_pre: int):
        self.indices = jnp.asarray(indices)
        w = jnp.asarray(weights)
        self.weights = w if jnp.issubdtype(w.dtype, jnp.floating) else w.astype(float)
        self.num_pre = check_int(num_pre, "num_pre", minimum=1)

    def __check_init__(self):
        idx = self.indices
        if idx.ndim != 2 or not jnp.issubdtype(idx.dtype, jnp.integer):
            raise NeurocircuitsError(
                f"indices must be an integer array of shape (n_post, K), got {describe(idx)}."
            )
        n_post, k = idx.shape
        w = self.weights
        if not (w.ndim == 0 or w.shape == (self.num_pre,) or w.shape == (n_post, k)):
            raise NeurocircuitsError(
                f"weights must be a scalar, shape (n_pre,) = ({self.num_pre},) or shape "
                f"(n_post, K) = ({n_post}, {k}); got {describe(w)}."
            )
        if not _is_traced(idx) and idx.size > 0:
            lo, hi = int(jnp.min(idx)), int(jnp.max(idx))
            if lo < 0 or hi >= self.num_pre:
                raise NeurocircuitsError(
                    f"indices must lie in [0, n_pre) = [0, {self.num_pre}), got values in "
                    f"[{lo}, {hi}]."
                )

    @property
    def n_post(self) -> int:
        return self.indices.shape[0]

    @property
    def n_pre(self) -> int:
        return self.num_pre

    @property
    def k(self) -> int:
        """The in-degree K."""
        return self.indices.shape[1]

    def __call__(self, r):
        r = gather_neurons(r)  # all-gather when neurons are sharded
        w = self.weights
        if w.ndim == 0:
            return w * jnp.sum(r[self.indices], axis=-1)
        if w.ndim == 1:
            return jnp.sum((w * r)[self.indices], axis=-1)
        return jnp.sum(w * r[self.indices], axis=-1)

    def synapse_weights(self) -> Float[Array, "n_post k"]:
        """The weight of every stored synapse, shape ``(n_post, K)``."""
        w = self.weights
        if w.ndim == 1:
            return w[self.indices]
        return jnp.broadcast_to(w, self.indices.shape)

    def to_dense(self):
        rows = jnp.arange(self.n_post)[:, None]
        w = self.synapse_weights()
        return jnp.zeros((self.n_post, self.n_pre), w.dtype).at[rows, self.indices].add(w)

    def to_csr_by_pre(self) -> CSRByPre:
        """The same synapses grouped by presynaptic neuron (see :class:`CSRByPre`).

        One stable ``argsort`` of the flattened indices, O(nnz log nnz); int32 offsets, so
        nnz = n_post K must stay below 2^31 (without x64).
        """
        return _csr_by_pre(self.indices, self.synapse_weights(), self.n_pre)

    def blocked(self, n_blocks: int | None = None) -> BlockedFixedInDegree:
        """The same coupling in the L1-blocked layout (see :class:`BlockedFixedInDegree`).

        Each row's indices are sorted (the sum is order-independent up to float rounding) and
        split by presynaptic block of ``ceil(n_pre / n_blocks)`` neurons. Needs concrete
        (untraced) indices: the padded width ``Kb`` decides an array shape.

        Args:
            n_blocks: number of presynaptic blocks (int in ``[1, n_pre]``); default: the
                smallest count whose block of float32 rates fits 128 KiB,
                ``max(1, ceil(n_pre * 4 / 131072))``.
        """
        return BlockedFixedInDegree.from_indices(self.indices, self.weights, self.n_pre,
                                                 n_blocks)


_BLOCK_BYTES = 131072  # default block of float32 rates: 128 KiB (an H100 SM has 256 KB of L1)
_MAX_BLOCK_SIZE = 65535  # uint16 offsets; the padding slot (= block_size) must fit too


def _resolve_n_blocks(n_pre: int, n_blocks: int | None) -> tuple[int, int]:
    """``(n_blocks, block_size)`` for ``n_pre`` presynaptic neurons (default and checks)."""
    n_pre = check_int(n_pre, "n_pre", minimum=1)
    if n_blocks is None:
        n_blocks = max(1, -(-n_pre * 4 // _BLOCK_BYTES))
    n_blocks = check_int(n_blocks, "n_blocks", minimum=1)
    if n_blocks > n_pre:
        raise NeurocircuitsError(
            f"n_blocks must be <= n_pre = {n_pre} (a block holds at least one presynaptic "
            f"neuron), got n_blocks = {n_blocks}."
        )
    block_size = -(-n_pre // n_blocks)
    if block_size > _MAX_BLOCK_SIZE:
        minimum = -(-n_pre // _MAX_BLOCK_SIZE)
        raise NeurocircuitsError(
            f"n_blocks = {n_blocks} gives blocks of ceil(n_pre / n_blocks) = {block_size} "
            f"presynaptic neurons, more than the {_MAX_BLOCK_SIZE} that uint16 offsets can "
            f"address; use n_blocks >= {minimum} for n_pre = {n_pre} (or leave n_blocks=None)."
        )
    return n_blocks, block_size


@functools.partial(jax.jit, static_argnames=("block_size", "n_blocks"))
def _blocked_split(indices, weights, *, block_size, n_blocks):
    """Rows sorted (per-synapse weights carried along) and the start of every block per row."""
    if weights is None:
        idx = jnp.sort(indices, axis=-1)
    else:
        order = jnp.argsort(indices, axis=-1)
        idx = jnp.take_along_axis(indices, order, axis=-1)
        weights = jnp.take_along_axis(weights, order, axis=-1)
    bounds = jnp.arange(n_blocks + 1, dtype=idx.dtype) * block_size
    starts = jax.vmap(lambda row: jnp.searchsorted(row, bounds, side="left"))(idx)
    return idx, weights, starts.astype(jnp.int32), jnp.max(jnp.diff(starts, axis=1))


@functools.partial(jax.jit, static_argnames=("block_size", "kb"))
def _blocked_fill(idx, weights, starts, *, block_size, kb):
    """``(n_blocks, n_post, kb)`` uint16 offsets (padding = ``block_size``) and, for
    per-synapse weights, the weights in the same slots (padding 0)."""
    k = idx.shape[1]
    counts = jnp.diff(starts, axis=1)
    j = jnp.arange(kb)

    def one_block(b):
        src = jnp.minimum(starts[:, b, None] + j, k - 1)
        valid = j < counts[:, b, None]
        off = jnp.take_along_axis(idx, src, axis=1) - b * block_size
        off = jnp.where(valid, off, block_size).astype(jnp.uint16)
        if weights is None:
            return off, None
        w = jnp.where(valid, jnp.take_along_axis(weights, src, axis=1), 0)
        return off, w.astype(weights.dtype)

    return jax.lax.map(one_block, jnp.arange(starts.shape[1] - 1))


class BlockedFixedInDegree(AbstractCoupling):
    r"""A fixed in-degree sparse coupling in the *L1-blocked* layout, built by
    :meth:`SparseFixedInDegree.blocked`. The presynaptic neurons are cut into ``n_blocks``
    blocks of ``block_size = ceil(n_pre / n_blocks)``; every row keeps, per block, the offsets
    of its presynaptic partners inside that block:

    .. math::

        [J r]_i = \sum_{b=0}^{B-1} \sum_{s=0}^{K_b-1}
                  w_{b i s}\, \tilde r_{b,\, \mathrm{off}_{b i s}},
        \qquad \tilde r_{b, o} = r_{b \cdot \mathrm{block\_size} + o}\ (o < \mathrm{block\_size}),
        \quad \tilde r_{b,\, \mathrm{block\_size}} = 0,

    the same sum as :class:`SparseFixedInDegree` (float sums in another order). ``K_b`` is the
    largest number of partners one row has in one block; shorter lists are padded with the slot
    ``block_size``, a zero.

    Memory: ``offsets`` is uint16, 2 B per stored slot, ``n_blocks * n_post * K_b`` slots vs
    ``n_post * K`` int32 indices (4 B) for the plain layout; the padding costs
    ``n_blocks * K_b / K`` (at N = 10^6, K = 1000 with 64 blocks: ``K_b`` = 41 vs K/64 = 15.6,
    2.6x the slots). Per-synapse weights are stored blocked too, 4 B per slot (float32).

    Why it is faster on GPUs: the plain gather reads random 4-byte rates of the whole presynaptic
    vector (4 MB at N = 10^6), which lives in L2, so each step moves ~N K 32-byte L2 sectors. Here
    one block of the vector (<= 128 KiB by default) stays in a streaming multiprocessor's L1
    while its offsets are streamed: the gathers hit L1 instead of L2, and uint16 halves the index
    stream. Measured on an NVIDIA H100 (2026-12-07, float32, N = 10^6, K = 1000, 100 steps, two
    other jobs sharing the GPU), plain-JAX loops (``benchmarks/rate_sparse.py --blocked``):
    32 blocks 2.89 ms/step vs 9.80 ms/step for the :class:`SparseFixedInDegree` gather, against
    an index-stream floor N K x 4 B / copy bandwidth = 1.61 ms (1.79x vs 6.08x the floor);
    16 blocks 6.12 ms (a 250 KB block overflows the 256 KB L1); 64 blocks 8.31 ms (padding).
    At N = 10^5: 32 blocks 0.50 ms vs 0.73 ms (floor 0.16).

    When not to use it: small N, where the whole presynaptic vector fits L1 (or L2 traffic is not
    the bottleneck) anyway; on the CPU (no gain: the caches are not the limit the same way, and
    padding adds work). The layout is built with concrete indices (not under ``jit``). Under
    :class:`~neurocircuits.NeuronSharding` the results are those of one device, but ``offsets``
    (neuron axis second) is replicated on every device, not split by rows.

    Weights, as for :class:`SparseFixedInDegree`: a scalar, ``(n_pre,)`` (per presynaptic neuron,
    applied to ``r`` before the gather) or blocked per-synapse ``(n_blocks, n_post, K_b)``
    (padding slots 0).

    Args:
        offsets: ``(n_blocks, n_post, K_b)`` uint16 offsets in ``[0, block_size]``.
        weights: scalar, ``(n_pre,)`` or ``(n_blocks, n_post, K_b)``.
        num_pre: the number of presynaptic neurons ``n_pre``.
        in_degree: the in-degree K (non-padding slots per row).

    Example:
        >>> J = fixed_in_degree(jax.random.key(0), 1000, 1000, 50, weight=0.1)
        >>> Jb = J.blocked(4)            # 4 blocks of 250 presynaptic neurons
        >>> Jb.offsets.shape[:2], Jb.block_size
        ((4, 1000), 250)
    """

    offsets: Array
    weights: Float[Array, ...]
    num_pre: int = eqx.field(static=True)
    in_degree: int = eqx.field(static=True)

    def __init__(self, offsets, weights, num_pre: int, in_degree: int):
        self.offsets = jnp.asarray(offsets)
        w = jnp.asarray(weights)
        self.weights = w if jnp.issubdtype(w.dtype, jnp.floating) else w.astype(float)
        self.num_pre = check_int(num_pre, "num_pre", minimum=1)
        self.in_degree = check_int(in_degree, "in_degree", minimum=0)

    def __check_init__(self):
        off = self.offsets
        if off.ndim != 3 or off.dtype != jnp.uint16:
            raise NeurocircuitsError(
                f"offsets must be a uint16 array of shape (n_blocks, n_post, Kb), got "
                f"{describe(off)}; build it with SparseFixedInDegree.blocked(n_blocks)."
            )
        nb, bsz = _resolve_n_blocks(self.num_pre, off.shape[0])
        w = self.weights
        if not (w.ndim == 0 or w.shape == (self.num_pre,) or w.shape == off.shape):
            raise NeurocircuitsError(
                f"weights must be a scalar, shape (n_pre,) = ({self.num_pre},) or shape "
                f"(n_blocks, n_post, Kb) = {off.shape}; got {describe(w)}."
            )
        if not _is_traced(off) and off.size > 0 and int(jnp.max(off)) > bsz:
            raise NeurocircuitsError(
                f"offsets must lie in [0, block_size] = [0, {bsz}] (block_size is the padding "
                f"slot), got a maximum of {int(jnp.max(off))}."
            )

    @classmethod
    def from_indices(cls, indices, weights, num_pre: int,
                     n_blocks: int | None = None) -> BlockedFixedInDegree:
        """Build from ``(n_post, K)`` presynaptic indices and weights as taken by
        :class:`SparseFixedInDegree` (scalar, ``(n_pre,)`` or ``(n_post, K)``)."""
        sparse = SparseFixedInDegree(indices, weights, num_pre)  # validates shapes and range
        if _is_traced(sparse.indices):
            raise NeurocircuitsError(
                "blocked() needs concrete indices (the padded width Kb decides an array "
                "shape); build the blocked coupling outside jit and pass it in."
            )
        n_blocks, bsz = _resolve_n_blocks(sparse.n_pre, n_blocks)
        w = sparse.weights
        per_synapse = w.ndim == 2
        if sparse.k == 0:
            shape = (n_blocks, sparse.n_post, 0)
            return cls(jnp.zeros(shape, jnp.uint16), jnp.zeros(shape, w.dtype) if per_synapse
                       else w, sparse.n_pre, 0)
        idx, w_sorted, starts, kb = _blocked_split(
            sparse.indices, w if per_synapse else None, block_size=bsz, n_blocks=n_blocks)
        offsets, w_blocked = _blocked_fill(idx, w_sorted, starts, block_size=bsz, kb=int(kb))
        return cls(offsets, w_blocked if per_synapse else w, sparse.n_pre, sparse.k)

    @property
    def n_post(self) -> int:
        return self.offsets.shape[1]

    @property
    def n_pre(self) -> int:
        return self.num_pre

    @property
    def k(self) -> int:
        """The in-degree K."""
        return self.in_degree

    @property
    def n_blocks(self) -> int:
        return self.offsets.shape[0]

    @property
    def block_size(self) -> int:
        """Presynaptic neurons per block, ``ceil(n_pre / n_blocks)`` (also the padding slot)."""
        return -(-self.num_pre // self.n_blocks)

    @property
    def kb(self) -> int:
        """Slots per row and block (the largest count of one row in one block)."""
        return self.offsets.shape[2]

    def __call__(self, r):
        r = gather_neurons(r)  # all-gather when neurons are sharded
        w = self.weights
        nb, bsz = self.n_blocks, self.block_size
        x = w * r if w.ndim == 1 else r
        x = jnp.pad(x, (0, nb * bsz - x.shape[0])).reshape(nb, bsz)
        x = jnp.concatenate([x, jnp.zeros((nb, 1), x.dtype)], axis=1)  # the padding slot
        g = jax.vmap(lambda xb, ob: xb[ob.astype(jnp.int32)])(x, self.offsets)
        if w.ndim == 3:
            g = w * g
        out = jnp.sum(jnp.sum(g, axis=-1), axis=0)
        return w * out if w.ndim == 0 else out

    def to_dense(self):
        nb, bsz = self.n_blocks, self.block_size
        off = self.offsets.astype(jnp.int32)
        pre = jnp.arange(nb, dtype=jnp.int32)[:, None, None] * bsz + off
        pre = jnp.where(off == bsz, self.n_pre, pre)  # padding: out of range, dropped
        rows = jnp.arange(self.n_post)[None, :, None]
        w = self.weights
        if w.ndim == 1:
            w = jnp.where(off == bsz, 0, w[jnp.minimum(pre, self.n_pre - 1)])
        else:
            w = jnp.broadcast_to(w, off.shape)
        rows = jnp.broadcast_to(rows, off.shape)
        return (jnp.zeros((self.n_post, self.n_pre), w.dtype)
                .at[rows, pre].add(w, mode="drop"))



@functools.partial(jax.jit, static_argnames=("n_pre",))
def _csr_by_pre(indices, weights, n_pre):
    k = indices.shape[1]
    flat = indices.reshape(-1)
    order = jnp.argsort(flat, stable=True)
    post = (order // k).astype(jnp.int32)
    counts = jnp.bincount(flat, length=n_pre)
    indptr = jnp.concatenate([jnp.zeros((1,), counts.dtype), jnp.cumsum(counts)])
    return CSRByPre(indptr.astype(jnp.int32), post, weights.reshape(-1)[order])


def _duplicates(idx):
    """``True`` at every repeat after the first in each sorted row."""
    first = jnp.zeros(idx.shape[:-1] + (1,), bool)
    return jnp.concatenate([first, idx[..., 1:] == idx[..., :-1]], axis=-1)


def _draw_sorted(keys, n_avail: int, m: int, distinct: bool):
    """For every row key, ``m`` sorted uniform draws from ``[0, n_avail)`` (distinct if asked).

    Draws are ``v % n_avail`` of uniform uint32 ``v`` accepted when ``v < limit`` (a multiple of
    ``n_avail``: exactly uniform). Rejected draws -- and, when ``distinct``, repeats -- are
    redrawn in a ``while_loop`` until none remain. Each round keeps the accepted distinct values
    and adds fresh uniform draws: a label-symmetric process, so the final m-subset is uniform.
    With m <= n_avail / 2 repeats shrink by a factor >= 2 per round.
    """
    limit = (1 << 32) - ((1 << 32) % n_avail)
    sentinel = jnp.int32(n_avail)  # sorts after every valid index

    def body(state):
        it, cur, redo = state
        bits = jax.vmap(
            lambda kk: jax.random.bits(jax.random.fold_in(kk, it), (m,), jnp.uint32))(keys)
        new = (bits % jnp.uint32(n_avail)).astype(jnp.int32)
        if limit < (1 << 32):
            new = jnp.where(bits < jnp.uint32(limit), new, sentinel)
        cur = jnp.sort(jnp.where(redo, new, cur), axis=-1)
        redo = cur == sentinel
        if distinct:
            redo = redo | _duplicates(cur)
        return it + 1, cur, redo

    shape = keys.shape + (m,)
    init = (jnp.uint32(0), jnp.full(shape, sentinel), jnp.ones(shape, bool))
    return jax.lax.while_loop(lambda state: jnp.any(state[2]), body, init)[1]


@functools.partial(jax.jit, static_argnames=("n_post", "n_avail", "k", "exclude_self",
                                             "replace", "block_rows"))
def _sample_in_degree(key, *, n_post, n_avail, k, exclude_self, replace, block_rows):
    """Sorted ``(n_post, k)`` int32 presynaptic indices; row ``i`` depends only on
    ``fold_in(key, i)``, so the result does not depend on ``block_rows``."""
    n_blocks = -(-n_post // block_rows)
    rows = jnp.arange(n_blocks * block_rows, dtype=jnp.uint32).reshape(n_blocks, block_rows)
    complement = (not replace) and 2 * k > n_avail

    def block(r):
        keys = jax.vmap(jax.random.fold_in, (None, 0))(key, r)
        if not complement:
            idx = _draw_sorted(keys, n_avail, k, distinct=not replace)
        elif k == n_avail:
            idx = jnp.broadcast_to(jnp.arange(k, dtype=jnp.int32), (block_rows, k))
        else:
            # dense regime (k > n_avail / 2): a uniform (n_avail - k)-subset is left out; its
            # complement is a uniform k-subset
            left_out = _draw_sorted(keys, n_avail, n_avail - k, distinct=True)
            all_idx = jnp.broadcast_to(jnp.arange(n_avail, dtype=jnp.int32), (block_rows, n_avail))
            dropped = all_idx.at[jnp.arange(block_rows)[:, None], left_out].set(n_avail)
            idx = jnp.sort(dropped, axis=-1)[:, :k]
        if exclude_self:
            # sampled from n_pre - 1 values; skip the row's own index (order preserved)
            idx = idx + (idx >= r[:, None].astype(jnp.int32)).astype(jnp.int32)
        return idx

    out = jax.lax.map(block, rows)
    return out.reshape(n_blocks * block_rows, k)[:n_post]


def fixed_in_degree(key: jax.Array, n_post: int, n_pre: int, k: int, *,
                    weight: Any = 1.0, allow_autapses: bool = True,
                    allow_multapses: bool = False, block_rows: int | None = None,
                    dtype=jnp.float32) -> SparseFixedInDegree:
    r"""Every postsynaptic neuron receives exactly ``k`` synapses from presynaptic neurons drawn
    uniformly at random (a :class:`SparseFixedInDegree`), as in Brunel (2000).

    Without multapses each row is a uniform random k-subset of the allowed presynaptic neurons
    (exactly: draws with replacement, then repeats redrawn until none remain, a procedure
    symmetric in the labels; for k > n_avail / 2 the complement of a uniform (n_avail - k)-subset).
    ``allow_autapses=False`` (square only) excludes ``j = i``. Rows are sorted, and processed in
    blocks of ``block_rows`` (``lax.map``) so memory stays O(n_post k) -- no dense matrix is
    ever built, N = 10^6 works. Row ``i`` depends only on ``(key, i)``: the result does not
    depend on ``block_rows``.

    Args:
        key: PRNG key (split: indices and weights use separate streams).
        n_post, n_pre, k: numbers of post/presynaptic neurons, in-degree (ints >= 1).
        weight: a scalar, an array of shape ``(n_pre,)`` (per presynaptic neuron, e.g.
            ``J * ei_signs(n, f, gamma)`` for E/I classes), an array ``(n_post, k)``, or a
            callable ``weight(key, indices) -> (n_post, k)`` (e.g. random weights).
        allow_autapses: allow ``j = i`` (requires ``n_post == n_pre`` when ``False``).
        allow_multapses: draw with replacement (repeated partners allowed).
        block_rows: rows per block (default: about 2^19 sampled entries per block).
        dtype: floating dtype of the weights.

    Example:
        >>> n, K = 10_000, 100
        >>> w = 0.1 * ei_signs(n, f=0.8, gamma=5.0)     # Brunel: J = 0.1, g = 5
        >>> J = fixed_in_degree(jax.random.key(0), n, n, K, weight=w, allow_autapses=False)
        >>> J.indices.shape
        (10000, 100)

    Reference: Brunel, J. Comput. Neurosci. 8, 183 (2000).
    """
    n_post = check_int(n_post, "n_post", minimum=1)
    n_pre = check_int(n_pre, "n_pre", minimum=1)
    k = check_int(k, "k", minimum=1)
    exclude_self = not allow_autapses
    if exclude_self and n_post != n_pre:
        raise NeurocircuitsError(
            f"allow_autapses=False needs one population (n_post == n_pre), got n_post={n_post}, "
            f"n_pre={n_pre}. Between two populations there are no autapses: leave it True."
        )
    n_avail = n_pre - 1 if exclude_self else n_pre
    if n_avail < 1:
        raise NeurocircuitsError(
            f"n_pre={n_pre} with allow_autapses=False leaves no presynaptic neuron to draw from."
        )
    if not allow_multapses and k > n_avail:
        raise NeurocircuitsError(
            f"k={k} distinct presynaptic neurons cannot be drawn from the {n_avail} available "
            f"(n_pre={n_pre}{', autapses excluded' if exclude_self else ''}); use "
            f"k <= {n_avail} or allow_multapses=True."
        )
    width = n_avail if (not allow_multapses and 2 * k > n_avail) else k
    if block_rows is None:  # ~2^19 sampled entries per block (cache-sized), blocks of equal size
        n_blocks = max(1, -(-n_post * width // (1 << 19)))
        block_rows = -(-n_post // n_blocks)
    else:
        block_rows = min(check_int(block_rows, "block_rows", minimum=1), n_post)
    if not callable(weight):
        w = jnp.asarray(weight, dtype)
        if not (w.ndim == 0 or w.shape == (n_pre,) or w.shape == (n_post, k)):
            raise NeurocircuitsError(
                f"weight must be a scalar, shape (n_pre,) = ({n_pre},), shape (n_post, k) = "
                f"({n_post}, {k}) or a callable; got {describe(w)}."
            )
    k_idx, k_w = jax.random.split(key)
    indices = _sample_in_degree(k_idx, n_post=n_post, n_avail=n_avail, k=k,
                                exclude_self=exclude_self, replace=bool(allow_multapses),
                                block_rows=block_rows)
    if callable(weight):
        w = jnp.asarray(weight(k_w, indices), dtype)
        if w.shape != (n_post, k):
            try:
                w = jnp.broadcast_to(w, (n_post, k))
            except ValueError:
                raise NeurocircuitsError(
                    f"weight(key, indices) must return an array broadcastable to (n_post, k) = "
                    f"({n_post}, {k}), got {describe(w)}."
                ) from None
    return SparseFixedInDegree(indices, w, n_pre)
