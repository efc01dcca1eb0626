r"""Exact enumeration of the kinetic Ising Markov chain over all :math:`2^N` states (N <= 12).

Ground truth for tests and small-system studies, in NumPy float64. States are indexed by the
integer whose bit ``i`` (most significant first) is ``(s_i + 1)/2``. The transition matrix is
``W[a, b] = P(s^a | s^b)`` (columns sum to 1) for

* ``update="parallel"``: :math:`W_{ab} = \prod_i e^{s^a_i h_i(s^b)}/2\cosh h_i(s^b)`,
  :math:`\mathbf h(\mathbf s) = \mathbf H + J\mathbf s`;
* ``update="sequential"``: one sweep of ``N`` random-site updates, :math:`W = (\frac1N\sum_i
  W_i)^N` where :math:`W_i` redraws spin ``i`` from :math:`P(s_i\mid\mathbf h)` (the same law
  as :meth:`KineticIsing.step`).

Moments follow :math:`p_t = Wp_{t-1}`; :math:`\langle s_{i,t}s_{l,t-1}\rangle =
(S^\top W\,\mathrm{diag}(p_{t-1})S)_{il}` with ``S`` the ``(2^N, N)`` state table.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .._core.errors import NeurocircuitsError, check_int, describe

__all__ = [
    "MAX_N",
    "states",
    "transition_matrix",
    "ExactMoments",
    "exact_moments",
    "ExactStationary",
    "exact_stationary",
]

#: the largest N enumerated (2^12 x 2^12 float64 transition matrix = 128 MiB)
MAX_N = 12
UPDATES = ("parallel", "sequential")


def _log2cosh(x):
    ax = np.abs(x)
    return ax + np.log1p(np.exp(-2.0 * ax))


def _check_HJ(H, J):
    J = np.asarray(J, dtype=np.float64)
    if J.ndim != 2 or J.shape[0] != J.shape[1]:
        raise NeurocircuitsError(f"J must be a square matrix (N, N), got {describe(J)}.")
    n = J.shape[0]
    if n > MAX_N or n < 1:
        raise NeurocircuitsError(
            f"exact enumeration needs 1 <= N <= {MAX_N} spins (2^N states), got N = {n}; use "
            "simulation (neurocircuits.ising.simulate_moments) or a mean-field method."
        )
    H = np.broadcast_to(np.asarray(H, dtype=np.float64), (n,)).copy()
    if not (np.all(np.isfinite(H)) and np.all(np.isfinite(J))):
        raise NeurocircuitsError("H and J must be finite.")
    return H, J


def states(n: int) -> np.ndarray:
    """All ``2^n`` spin states as a ``(2^n, n)`` float64 array of ±1 (state ``a`` = bits of a)."""
    n = check_int(n, "n", minimum=1)
    a = np.arange(2**n)[:, None]
    bits = (a >> np.arange(n - 1, -1, -1)[None, :]) & 1
    return 2.0 * bits - 1.0


def transition_matrix(H, J, *, update: str = "parallel") -> np.ndarray:
    """``W[a, b] = P(s_t = state a | s_{t-1} = state b)`` (float64, columns sum to 1)."""
    H, J = _check_HJ(H, J)
    if update not in UPDATES:
        raise NeurocircuitsError(f"update must be one of {UPDATES}, got {update!r}.")
    n = J.shape[0]
    S = states(n)
    h = S @ J.T + H  # (2^n, n): fields in state b
    if update == "parallel":
        logW = S @ h.T - _log2cosh(h).sum(1)[None, :]
        return np.exp(logW)
    # sequential: average of single-site kernels, raised to the power N (one sweep)
    M = 2**n
    W1 = np.zeros((M, M))
    idx = np.arange(M)
    for i in range(n):
        flip = idx ^ (1 << (n - 1 - i))  # state with spin i flipped
        p_up = 0.5 * (1.0 + np.tanh(h[:, i]))  # P(s_i = +1 | b)
        up = S[:, i] > 0
        # from b: to b itself if the new spin equals the old one, else to flip(b)
        p_same = np.where(up, p_up, 1.0 - p_up)
        W1[idx, idx] += p_same / n
        W1[flip, idx] += (1.0 - p_same) / n
    return np.linalg.matrix_power(W1, n)


@dataclasses.dataclass(frozen=True)
class ExactMoments:
    """Exact ``m (T+1, N)``, ``C (T+1, N, N)``, ``D (T+1, N, N)``, the distributions
    ``p (T+1, 2^N)`` and the path entropy production ``sigma (T,)`` (transition t-1 -> t)."""

    m: np.ndarray
    C: np.ndarray
    D: np.ndarray
    p: np.ndarray
    sigma: np.ndarray


def _initial(p0, s0, n):
    M = 2**n
    if (p0 is None) == (s0 is None):
        raise NeurocircuitsError("give exactly one of s0 (a spin state) or p0 (a distribution).")
    if s0 is not None:
        s0 = np.asarray(s0, dtype=np.float64)
        if s0.shape != (n,) or not np.all(np.abs(s0) == 1):
            raise NeurocircuitsError(f"s0 must be a ±1 vector of shape ({n},), got {describe(s0)}.")
        a = int(((s0 > 0).astype(int) * (1 << np.arange(n - 1, -1, -1))).sum())
        p = np.zeros(M)
        p[a] = 1.0
        return p
    p = np.asarray(p0, dtype=np.float64)
    if p.shape != (M,) or np.any(p < 0) or abs(p.sum() - 1) > 1e-9:
        raise NeurocircuitsError(
            f"p0 must be a probability vector of shape ({M},), got {describe(p)}."
        )
    return p


def product_distribution(m: np.ndarray) -> np.ndarray:
    """The distribution of independent spins with means ``m`` over all ``2^N`` states."""
    m = np.asarray(m, dtype=np.float64)
    S = states(m.shape[0])
    return np.prod(0.5 * (1.0 + S * m[None, :]), axis=1)


def _moments_of(p, S):
    m = S.T @ p
    C = S.T @ (p[:, None] * S) - np.outer(m, m)
    return m, C


def exact_moments(H, J, *, n_steps: int, s0=None, p0=None,
                  update: str = "parallel") -> ExactMoments:
    r"""Exact moments over ``n_steps`` steps from a state ``s0`` or a distribution ``p0``."""
    H, J = _check_HJ(H, J)
    n_steps = check_int(n_steps, "n_steps", minimum=0)
    n = J.shape[0]
    S = states(n)
    W = transition_matrix(H, J, update=update)
    with np.errstate(divide="ignore"):
        logratio = np.log(W) - np.log(W.T)
    logratio = np.where(W > 0, logratio, 0.0)
    p = _initial(p0, s0, n)
    m0, C0 = _moments_of(p, S)
    ms, Cs, Ds, ps, sig = [m0], [C0], [np.zeros((n, n))], [p], []
    for _ in range(n_steps):
        joint = W * p[None, :]  # joint[a, b] = P(s_t = a, s_{t-1} = b)
        p_new = joint.sum(1)
        m, C = _moments_of(p_new, S)
        D = S.T @ joint @ S - np.outer(m, ms[-1])
        sig.append(float(np.sum(joint * logratio)))
        ms.append(m), Cs.append(C), Ds.append(D), ps.append(p_new)
        p = p_new
    return ExactMoments(np.array(ms), np.array(Cs), np.array(Ds), np.array(ps), np.array(sig))


@dataclasses.dataclass(frozen=True)
class ExactStationary:
    """The stationary distribution ``p`` and its moments; ``sigma`` is the entropy production
    per step; ``converged``/``residual`` (max |Wp - p|) report the eigen-solve."""

    p: np.ndarray
    m: np.ndarray
    C: np.ndarray
    D: np.ndarray
    sigma: float
    converged: bool
    residual: float


def exact_stationary(H, J, *, update: str = "parallel", tol: float = 1e-10) -> ExactStationary:
    r"""The stationary distribution (eigenvector of ``W`` for eigenvalue 1) and its moments."""
    H, J = _check_HJ(H, J)
    n = J.shape[0]
    S = states(n)
    W = transition_matrix(H, J, update=update)
    vals, vecs = np.linalg.eig(W)
    k = int(np.argmin(np.abs(vals - 1.0)))
    p = np.abs(np.real(vecs[:, k]))
    p /= p.sum()
    for _ in range(50):  # polish
        p = W @ p
    p /= p.sum()
    residual = float(np.max(np.abs(W @ p - p)))
    m, C = _moments_of(p, S)
    joint = W * p[None, :]
    D = S.T @ joint @ S - np.outer(m, m)
    with np.errstate(divide="ignore"):
        logratio = np.where(W > 0, np.log(W) - np.log(W.T), 0.0)
    sigma = float(np.sum(joint * logratio))
    return ExactStationary(p, m, C, D, sigma, residual < tol, residual)
