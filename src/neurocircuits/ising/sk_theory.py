r"""Exact (N -> infinity) theory of the asymmetric Sherrington–Kirkpatrick kinetic Ising model.

Model: :math:`H_i \sim U(-H_0, H_0)`, :math:`J_{ij} \sim \mathcal N(J_0/N, \Delta J^2/N)`
independently for all ordered pairs, all multiplied by :math:`\beta`; parallel Glauber dynamics.
Because ``J_ij`` and ``J_ji`` are independent, each spin sees an independent Gaussian field
:math:`h = \beta H + \beta J_0 m_{t-1} + \beta\Delta J z`, and with :math:`\langle\cdot\rangle_H`
the average over ``H`` and :math:`Dz` the standard Gaussian measure:

.. math::

    m_t = \Big\langle\int Dz\,\tanh(\beta H + \beta J_0m_{t-1} + \beta\Delta J z)\Big\rangle_H,

    q_t = \frac1N\sum_i\langle s_{i,t}s_{i,t-1}\rangle
        = \Big\langle\int Dx\,Dy\,\tanh(\beta H + \beta J_0m_{t-1} + \beta\Delta J x)\,
          \tanh\big(\beta H + \beta J_0m_{t-2}
          + \beta\Delta J(q_{t-1}x + \sqrt{1-q_{t-1}^2}\,y)\big)
          \Big\rangle_H

(the fields at ``t`` and ``t-1`` have correlation :math:`q_{t-1}`). At stationarity, with
:math:`k = \langle\int Dz\,[1-\tanh^2 h]\rangle_H`:

* entropy production per spin and step :math:`\sigma/N = \beta^2\Delta J^2(1-q)k` (from
  :math:`\sigma = \sum_{ij}(J_{ij}-J_{ji})D_{ij}` and Stein's lemma; the lag-2 correlation that
  appears equals ``q`` at the fixed point);
* conditional entropy :math:`S/N = \langle\int Dz\,[\log 2\cosh h - h\tanh h]\rangle_H`;
* reverse cross-entropy :math:`S_r/N = S/N + \sigma/N`.

The uniform-``H`` averages of one-point functions are closed forms (:math:`u = \beta H_0`):
:math:`\langle\tanh(a+\beta H)\rangle_H = [\log\cosh(a+u) - \log\cosh(a-u)]/2u`,
:math:`\langle\mathrm{sech}^2\rangle_H = [\tanh(a+u) - \tanh(a-u)]/2u`, and
:math:`\langle\log 2\cosh h - h\tanh h\rangle_H = [\Phi(a+u) - \Phi(a-u)]/2u` with
:math:`\Phi(h) = 2G(h) - h\log 2\cosh h`,
:math:`G(h) = \int_0^h\log 2\cosh x\,dx = \mathrm{sgn}(h)\,[h^2/2 + \mathrm{Li}_2(-e^{-2|h|})/2 +
\pi^2/24]` (dilogarithm :math:`\mathrm{Li}_2(u)` = ``scipy.special.spence(1 - u)``); the
Gaussian integrals use Gauss–Hermite quadrature and the two-point average over ``H``
Gauss–Legendre.

Phase transition (:math:`H_0 = 0`): the disordered state :math:`m = 0` loses stability at
:math:`\beta J_0\int Dz\,[1-\tanh^2(\beta\Delta J z)] = 1` (:func:`critical_beta`); as
:math:`\beta\to\infty` the left side tends to :math:`J_0\sqrt{2/\pi}/\Delta J`, so there is no
ordered phase for :math:`\Delta J > \sqrt{2/\pi}J_0`. There is no spin-glass phase.

Asynchronous (random sequential) dynamics: in sweeps :math:`\tau` (N single-spin updates),
:math:`dm/d\tau = -m + F(m)` with the same :math:`F`, so stationary magnetisations coincide with
the synchronous ones (:func:`m_trajectory` with ``update="sequential"``).

All functions use NumPy float64 and broadcast over their parameters (grids for heatmaps).

References:
    M. Aguilera, M. Igarashi & H. Shimazaki, "Nonequilibrium thermodynamics of the asymmetric
    Sherrington–Kirkpatrick model", Nat. Commun. 14, 3685 (2023), arXiv:2205.09886.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
from scipy import optimize, special

from .._core.errors import NeurocircuitsError, check_int

__all__ = [
    "SKParams",
    "SKStationary",
    "SKTrajectory",
    "m_map",
    "q_map",
    "m_trajectory",
    "trajectory",
    "stationary",
    "critical_beta",
    "max_fluctuation_beta",
    "dilog",
    "phase_diagram",
]

N_GH = 48  # Gauss-Hermite nodes (1-D)
N_GH2 = 24  # per dimension for the 2-D integrals
N_GL = 32  # Gauss-Legendre nodes over H


@dataclasses.dataclass(frozen=True)
class SKParams:
    """Parameters of the asymmetric SK model (arrays broadcast: grids allowed).

    Args:
        beta: inverse temperature (>= 0).
        J0: mean coupling times N.
        dJ: coupling standard deviation times sqrt(N) (>= 0).
        H0: half-width of the uniform field distribution (>= 0).
    """

    beta: np.ndarray | float
    J0: np.ndarray | float = 1.0
    dJ: np.ndarray | float = 0.1
    H0: np.ndarray | float = 0.5

    def __post_init__(self):
        for name in ("beta", "J0", "dJ", "H0"):
            v = np.asarray(getattr(self, name), dtype=float)
            if not np.all(np.isfinite(v)):
                raise NeurocircuitsError(f"SKParams.{name} must be finite, got {v}.")
            if name != "J0" and np.any(v < 0):
                raise NeurocircuitsError(f"SKParams.{name} must be >= 0, got {v}.")
            object.__setattr__(self, name, v)

    @property
    def shape(self):
        return np.broadcast_shapes(*(np.shape(getattr(self, n)) for n in
                                     ("beta", "J0", "dJ", "H0")))


@functools.lru_cache(maxsize=4)
def _gh(n):
    x, w = np.polynomial.hermite_e.hermegauss(n)
    return x, w / w.sum()


@functools.lru_cache(maxsize=4)
def _gl(n):
    x, w = np.polynomial.legendre.leggauss(n)
    return x, w / w.sum()


def _logcosh(x):
    ax = np.abs(x)
    return ax + np.log1p(np.exp(-2 * ax)) - np.log(2)


def _log2cosh(x):
    ax = np.abs(x)
    return ax + np.log1p(np.exp(-2 * ax))


def dilog(u):
    r"""The dilogarithm :math:`\mathrm{Li}_2(u) = -\int_0^u \log(1-t)/t\,dt` (real ``u <= 1``)."""
    return special.spence(1.0 - np.asarray(u, dtype=float))


def _G(h):
    """G(h) = int_0^h log 2cosh x dx (odd)."""
    ah = np.abs(h)
    return np.sign(h) * (ah**2 / 2 + dilog(-np.exp(-2 * ah)) / 2 + np.pi**2 / 24)


def _Phi(h):
    return 2 * _G(h) - h * _log2cosh(h)


_SMALL = 1e-6


def _avg_H(f_closed, f_point, a, u):
    """Average over H ~ U(-H0, H0) of f(a + beta H); closed form when u = beta H0 > 0."""
    u = np.broadcast_to(u, np.broadcast_shapes(np.shape(a), np.shape(u)))
    safe = np.where(u > _SMALL, u, 1.0)
    closed = (f_closed(a + safe) - f_closed(a - safe)) / (2 * safe)
    return np.where(u > _SMALL, closed, f_point(a))


def _tanh_H(a, u):
    return _avg_H(_logcosh, np.tanh, a, u)


def _sech2_H(a, u):
    return _avg_H(np.tanh, lambda x: 1 - np.tanh(x) ** 2, a, u)


def _entropy_H(a, u):
    return _avg_H(_Phi, lambda x: _log2cosh(x) - x * np.tanh(x), a, u)


def _z_avg(fun, a, b):
    """int Dz fun(a + b z) along a trailing quadrature axis."""
    x, w = _gh(N_GH)
    return np.sum(fun(np.asarray(a)[..., None] + np.asarray(b)[..., None] * x) * w, axis=-1)


def m_map(p: SKParams, m_prev):
    r""":math:`F(m) = \langle\int Dz\,\tanh(\beta H + \beta J_0m + \beta\Delta Jz)\rangle_H`."""
    u = p.beta * p.H0
    return _z_avg(lambda h: _tanh_H(h, u[..., None] if np.ndim(u) else u),
                  p.beta * p.J0 * m_prev, p.beta * p.dJ)


def _k(p: SKParams, m):
    u = p.beta * p.H0
    return _z_avg(lambda h: _sech2_H(h, u[..., None] if np.ndim(u) else u),
                  p.beta * p.J0 * m, p.beta * p.dJ)


def _S(p: SKParams, m):
    u = p.beta * p.H0
    return _z_avg(lambda h: _entropy_H(h, u[..., None] if np.ndim(u) else u),
                  p.beta * p.J0 * m, p.beta * p.dJ)


def _two_point(p: SKParams, m1, m2, q, fun1, fun2):
    """< int Dx Dy fun1(h1) fun2(h2) >_H with fields correlated by q (float64, broadcast)."""
    x, wx = _gh(N_GH2)
    hq, wh = _gl(N_GL)
    shape = np.broadcast_shapes(p.shape, np.shape(m1), np.shape(m2), np.shape(q))
    e = lambda v: np.broadcast_to(v, shape)[..., None, None, None]  # noqa: E731
    beta, J0, dJ, H0 = e(p.beta), e(p.J0), e(p.dJ), e(p.H0)
    qq = np.clip(e(q), -1.0, 1.0)
    X = x[:, None, None]
    Y = x[None, :, None]
    BH = beta * H0 * hq[None, None, :]
    h1 = BH + beta * J0 * e(m1) + beta * dJ * X
    h2 = BH + beta * J0 * e(m2) + beta * dJ * (qq * X + np.sqrt(1 - qq**2) * Y)
    w = wx[:, None, None] * wx[None, :, None] * wh[None, None, :]
    return np.sum(fun1(h1) * fun2(h2) * w, axis=(-3, -2, -1))


def q_map(p: SKParams, m_prev, m_prev2, q_prev):
    r"""One step of the delayed self-correlation map :math:`q_t(m_{t-1}, m_{t-2}, q_{t-1})`."""
    return _two_point(p, m_prev, m_prev2, q_prev, np.tanh, np.tanh)


def _dq_map(p, m, q):
    """dG/dq = beta^2 dJ^2 < sech^2 sech^2 > (Price's theorem)."""
    s2 = lambda h: 1 - np.tanh(h) ** 2  # noqa: E731
    return (p.beta * p.dJ) ** 2 * _two_point(p, m, m, q, s2, s2)


@dataclasses.dataclass(frozen=True)
class SKTrajectory:
    """``m (T+1,)`` and ``q (T+1,)`` over time (``q[0]`` is undefined and set to NaN)."""

    m: np.ndarray
    q: np.ndarray


def m_trajectory(p: SKParams, m0=1.0, *, n_steps: int, update: str = "parallel",
                 substeps: int = 20) -> np.ndarray:
    r"""``m_t`` for ``t = 0..n_steps``: synchronous steps, or sweeps of asynchronous dynamics
    (:math:`dm/d\tau = F(m) - m`, RK4 with ``substeps`` per sweep)."""
    n_steps = check_int(n_steps, "n_steps", minimum=1)
    if update not in ("parallel", "sequential"):
        raise NeurocircuitsError(f"update must be 'parallel' or 'sequential', got {update!r}.")
    m = np.broadcast_to(np.asarray(m0, float), p.shape).copy()
    out = [m]
    h = 1.0 / substeps
    f = lambda x: m_map(p, x) - x  # noqa: E731
    for _ in range(n_steps):
        if update == "parallel":
            m = m_map(p, m)
        else:
            for _ in range(substeps):
                k1 = f(m)
                k2 = f(m + h / 2 * k1)
                k3 = f(m + h / 2 * k2)
                k4 = f(m + h * k3)
                m = m + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        out.append(m)
    return np.array(out)


def trajectory(p: SKParams, *, n_steps: int, m0: float = 1.0) -> SKTrajectory:
    r"""Synchronous ``m_t`` and ``q_t`` from a state with magnetisation ``m0`` (all spins
    equal to ``m0 = ±1``, or independent spins of mean ``m0``); ``q_1 = m_1 m_0``."""
    n_steps = check_int(n_steps, "n_steps", minimum=1)
    m = m_trajectory(p, m0, n_steps=n_steps)
    q = [np.full(p.shape, np.nan), m[1] * m[0]]
    for t in range(2, n_steps + 1):
        q.append(q_map(p, m[t - 1], m[t - 2], q[t - 1]))
    return SKTrajectory(m, np.array(q))


@dataclasses.dataclass(frozen=True)
class SKStationary:
    """Stationary state (synchronous dynamics) per parameter point: ``m``, ``q``, ``k``
    (mean :math:`1-\\tanh^2h`), ``sigma`` (entropy production per spin and step), ``S``
    (conditional entropy per spin), ``S_r`` (reverse cross-entropy per spin), ``chi``
    (:math:`F'(m) = \\beta J_0k`, 1 at the transition), ``converged`` and ``residual``."""

    m: np.ndarray
    q: np.ndarray
    k: np.ndarray
    sigma: np.ndarray
    S: np.ndarray
    S_r: np.ndarray
    chi: np.ndarray
    converged: np.ndarray
    residual: np.ndarray


def stationary(p: SKParams, *, m0: float = 1.0, tol: float = 1e-10,
               max_iter: int = 2000) -> SKStationary:
    r"""The stationary fixed point reached from magnetisation ``m0`` (``m0 = 1``: the ordered
    branch where it exists) and its thermodynamic quantities, vectorised over parameter grids.

    ``m`` is found by fixed-point iteration of :func:`m_map` polished by Newton's method
    (:math:`F'(m) = \beta J_0k(m)`), then ``q`` by iteration and Newton on :func:`q_map` with
    :math:`\partial q_t/\partial q_{t-1} = \beta^2\Delta J^2\langle\mathrm{sech}^2
    \mathrm{sech}^2\rangle`. ``residual`` is the largest of :math:`|F(m)-m|` and
    :math:`|G(q)-q|`.
    """
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    shape = p.shape
    m = np.broadcast_to(np.asarray(m0, float), shape).copy()
    for _ in range(max_iter):
        new = m_map(p, m)
        done = np.max(np.abs(new - m), initial=0.0) < tol
        m = new
        if done:
            break
        if _ > 50:  # Newton polish, guarded to [-1, 1]
            g = m_map(p, m) - m
            dg = p.beta * p.J0 * _k(p, m) - 1.0
            step = np.where(np.abs(dg) > 1e-8, g / np.where(dg == 0, 1, dg), 0.0)
            cand = m - step
            ok = (np.abs(cand) <= 1) & (np.abs(m_map(p, cand) - cand) < np.abs(g))
            m = np.where(ok, cand, m_map(p, m))
    res_m = np.abs(m_map(p, m) - m)
    q = m**2
    for _ in range(30):
        q = np.clip(q_map(p, m, m, q), 0.0, 1.0)
    for _ in range(30):
        g = q_map(p, m, m, q) - q
        dg = _dq_map(p, m, q) - 1.0
        cand = np.clip(q - g / np.where(np.abs(dg) > 1e-12, dg, -1.0), 0.0, 1.0)
        q = np.where(np.abs(q_map(p, m, m, cand) - cand) <= np.abs(g), cand, q)
        if np.max(np.abs(g), initial=0.0) < tol:
            break
    res_q = np.abs(q_map(p, m, m, q) - q)
    k = _k(p, m)
    sigma = (p.beta * p.dJ) ** 2 * (1 - q) * k
    S = _S(p, m)
    residual = np.maximum(res_m, res_q)
    return SKStationary(m, q, k, sigma, S, S + sigma, p.beta * p.J0 * k,
                        residual < 10 * tol, residual)


def critical_beta(J0=1.0, dJ=0.1, *, beta_max: float = 1e4) -> float:
    r"""Order–disorder transition at :math:`H_0 = 0`: the :math:`\beta` solving
    :math:`\beta J_0\int Dz\,[1-\tanh^2(\beta\Delta Jz)] = 1`; ``inf`` when there is none
    (:math:`\Delta J \ge \sqrt{2/\pi}J_0`, or :math:`J_0 \le 0`)."""
    J0, dJ = float(J0), float(dJ)
    if dJ < 0:
        raise NeurocircuitsError(f"dJ must be >= 0, got {dJ}.")
    if J0 <= 0:
        return float("inf")
    if dJ == 0:
        return 1.0 / J0
    if dJ >= np.sqrt(2 / np.pi) * J0:
        return float("inf")
    x, w = _gh(200)

    def f(b):
        return b * J0 * np.sum(w * (1.0 - np.tanh(b * dJ * x) ** 2)) - 1.0

    hi = 1.0 / J0
    while f(hi) < 0:
        hi *= 2
        if hi > beta_max:
            return float("inf")
    return float(optimize.brentq(f, 1e-9, hi, xtol=1e-13))


def max_fluctuation_beta(J0=1.0, dJ=0.1, H0=0.5, *, bounds=(0.2, 5.0)) -> float:
    r"""The :math:`\beta` where the stationary state fluctuates most, defined as the maximum
    of :math:`F'(m^*) = \beta J_0k(m^*)` (the linear-response gain of the magnetisation map;
    it reaches 1 at a true transition). For :math:`H_0 > 0` the transition is smoothed and this
    is the "critical" point used by the Plefka comparisons."""
    def neg(b):
        return -float(stationary(SKParams(b, J0, dJ, H0)).chi)

    grid = np.linspace(*bounds, 60)
    vals = [neg(b) for b in grid]
    i = int(np.argmin(vals))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    res = optimize.minimize_scalar(neg, bounds=(lo, hi), method="bounded",
                                   options={"xatol": 1e-7})
    return float(res.x)


def phase_diagram(betas, other, *, axis: str = "dJ", J0: float = 1.0, dJ: float = 0.1,
                  H0: float = 0.0) -> dict[str, np.ndarray]:
    r"""Stationary ``m, q, sigma, S, S_r`` on a grid of ``betas`` x ``other``, where ``other``
    are values of ``dJ`` (``axis="dJ"``, at ``H0``) or ``H0`` (``axis="H0"``, at ``dJ``).
    Returns arrays of shape ``(len(other), len(betas))`` and ``converged``."""
    if axis not in ("dJ", "H0"):
        raise NeurocircuitsError(f"axis must be 'dJ' or 'H0', got {axis!r}.")
    B, O = np.meshgrid(np.asarray(betas, float), np.asarray(other, float))
    p = SKParams(B, J0, O, H0) if axis == "dJ" else SKParams(B, J0, dJ, O)
    st = stationary(p)
    return {"m": st.m, "q": st.q, "sigma": st.sigma, "S": st.S, "S_r": st.S_r,
            "converged": st.converged, "residual": st.residual}
