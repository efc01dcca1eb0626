"""Connectivity: coupling operators and keyed builders.

A *coupling* is an equinox module mapping presynaptic activity ``r`` (shape ``(n_pre,)``) to the
recurrent input of every postsynaptic neuron (shape ``(n_post,)``): ``coupling(r) = J @ r`` for a
matrix ``J`` it may never store densely.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .errors import NeurocircuitsError, describe

__all__ = ["AbstractCoupling", "Dense", "GaussianPlusMean"]


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
