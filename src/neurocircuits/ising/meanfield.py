r"""Forward mean-field methods for parallel kinetic Ising dynamics: the Plefka family.

Every method is a free function with one signature,

    ``method(H, J, m_p, C_p, D_p) -> MFStep(m, C, D, residual)``,

mapping the moments at ``t - 1`` (``m_p (N,)``, ``C_p (N, N)``, ``D_p (N, N)``) to those at
``t``. ``H`` and ``J`` include :math:`\beta`. ``residual`` is the largest absolute residual of
the self-consistent equations the method solves (0 for explicit methods). :func:`run` iterates
a method over ``T`` steps with ``lax.scan`` from ``m = s_0``, ``C = diag(1 - m^2)``, ``D = 0``.
In every method the diagonal is set to :math:`C_{ii} = 1 - m_i^2` after the off-diagonals.

With :math:`\mathbf h^{\rm eff} = \mathbf H + J\mathbf m_{t-1}` and
:math:`A = \mathrm{diag}(1-m^2)`:

* ``nmf`` — Plefka[t-1,t], order 1 (naive mean field):
  :math:`m_i = \tanh h^{\rm eff}_i`, :math:`C = A`,
  :math:`D_{il} = (1-m_i^2)J_{il}(1-m_{l,t-1}^2)`.
* ``tap`` — Plefka[t-1,t], order 2: :math:`V_i = \sum_j J_{ij}^2(1-m_{j,t-1}^2)`,
  :math:`m_i = \tanh(h^{\rm eff}_i - m_iV_i)`,
  :math:`C_{ik} = (1-m_i^2)(1-m_k^2)\sum_j J_{ij}J_{kj}(1-m_{j,t-1}^2)`,
  :math:`D_{il} = (1-m_i^2)J_{il}(1-m_{l,t-1}^2)(1 + 2J_{il}m_im_{l,t-1})`.
* ``plefka_t_o1`` — Plefka[t], order 1: ``m``, ``C`` as ``nmf``; :math:`D = AJC_{t-1}`.
* ``plefka_t_o2`` — Plefka[t], order 2: :math:`V_i = (JC_{t-1}J^\top)_{ii}`,
  :math:`m_i = \tanh(h^{\rm eff}_i - m_iV_i)`,
  :math:`C_{ik} = (1-m_i^2)(1-m_k^2)(JC_{t-1}J^\top)_{ik}`,
  :math:`D_{il} = (1-m_i^2)(JC_{t-1})_{il}(1 + 2J_{il}m_im_{l,t-1})`.
* ``plefka_t1_o1`` — Plefka[t-1], order 1 (Gaussian effective field; Mézard–Sakellariou's
  "exact mean field" for fully asymmetric J): :math:`g_i = h^{\rm eff}_i`,
  :math:`\Delta_i = \sum_j J_{ij}^2(1-m_{j,t-1}^2)`, :math:`m_i = \int Dx\,\tanh(g_i +
  x\sqrt{\Delta_i})`, :math:`a_i = \int Dx\,[1-\tanh^2(g_i+x\sqrt{\Delta_i})]`,
  :math:`D = \mathrm{diag}(a)JC_{t-1}`, and with
  :math:`\rho_{ik} = \sum_j J_{ij}J_{kj}(1-m_{j,t-1}^2)/\sqrt{\Delta_i\Delta_k}`,
  :math:`C_{ik} = \iint Dp\,Dn\,\tanh(g_i + \sqrt{\Delta_i/2}(p\sqrt{1+\rho} + n\sqrt{1-\rho}))
  \tanh(g_k + \sqrt{\Delta_k/2}(p\sqrt{1+\rho} - n\sqrt{1-\rho})) - m_im_k`,
  by Gauss–Hermite quadrature vectorised over all pairs.
* ``plefka2_t_o2`` — Plefka2[t], order 2 (pairwise reference model). For each ordered pair
  ``(i, l)``: :math:`V_{il} = V_i - 2J_{il}\sum_nJ_{in}C_{ln} + J_{il}^2C_{ll}`,
  :math:`W'_{il} = (JD_{t-1}J^\top)_{il} - J_{il}\sum_nJ_{ln}D_{ln}`,
  :math:`\Delta_{il} = J_{il} + W'_{il}`; for :math:`s_l=\pm1` with weight
  :math:`(1+s_lm_{l,t-1})/2`, :math:`\theta` solves
  :math:`\theta = h^{\rm eff}_i + \Delta_{il}(s_l - m_{l,t-1}) - V_{il}\tanh\theta`;
  :math:`M_{il} = \sum_{s_l}p(s_l)\tanh\theta`, :math:`D_{il} = \sum_{s_l}p(s_l)s_l\tanh\theta -
  M_{il}m_{l,t-1}`, :math:`m_i = \frac1N\sum_lM_{il}`. ``C``: with
  :math:`W^C = JC_{t-1}J^\top`, :math:`\theta` solves :math:`\theta = h^{\rm eff}_i +
  W^C_{ik}(s_k - m_{k,t-1}) - V_i\tanh\theta`, :math:`C_{ik} = \sum_{s_k}\tanh\theta\,
  (s_k-m_{k,t-1})(1+s_km_{k,t-1})/2`, then symmetrised. All :math:`4N^2` scalar equations are
  solved at once by a safeguarded Newton iteration.

Every self-consistent scalar equation :math:`\theta = h - V\tanh\theta` is solved by Newton's
method safeguarded with bisection on the bracket :math:`[h-|V|, h+|V|]` (which always holds a
root), so the solve cannot diverge even when ``V < 0``.

Stability of Plefka[t] order 2 near :math:`\beta_c`. Its correlations obey the linear recursion
:math:`C_t = A_tJC_{t-1}J^\top A_t` (plus the diagonal), whose growth factor along the
collective mode is :math:`\rho(A_tJ)^2`; and :math:`C_t` feeds back into the reaction term
:math:`V_i = (JC_{t-1}J^\top)_{ii}`, which pulls :math:`m_i` towards 0 and so raises
:math:`A_t = \mathrm{diag}(1-m_t^2)` towards the identity. Once :math:`\rho(A_tJ) > 1` (possible
when :math:`\beta\lambda_{\max}(J) > 1`, i.e. at and above :math:`\beta_c` of the SK networks
of the paper, whenever the magnetisation passes near 0 or the TAP-corrected :math:`m` is small)
the loop closes: ``C`` grows by :math:`\approx(\beta\lambda_{\max})^2` per step without bound,
``m`` is pinned at 0. This is a property of the equations (the authors' NumPy code, run in
float64, diverges identically on the same networks), not of float32 or of this implementation;
:attr:`MFTrajectory.in_bounds` flags it (``|C_ik| > 1`` cannot be a covariance of ±1 spins).
The other methods stay bounded in the same conditions: nMF/Plefka[t] o1 have no such term,
TAP's :math:`V` does not depend on ``C``, Plefka[t-1] computes ``C`` by a bounded integral of
``tanh``, and Plefka2[t] solves bounded pairwise models.

Note on the TAP delayed correlation: the factor 2 in :math:`1 + 2J_{il}m_im_{l,t-1}` is the
second-order Taylor term (the third central moment of a ±1 spin is :math:`-2m(1-m^2)`); the
authors' public code uses a factor 1 for ``tap`` and 2 for ``plefka_t_o2``. We use 2 for both,
as the expansion gives; it matters only at order :math:`J^2`.

References:
    Aguilera, Moosavi & Shimazaki, Nat. Commun. 12, 1197 (2021), arXiv:2002.04309 — all
    methods; equations as in the authors' code (github.com/MiguelAguilera/
    kinetic-Plefka-expansions, ``plefka_functions.py``).
    Roudi & Hertz, PRL 106, 048702 (2011) — TAP for kinetic Ising.
    Mézard & Sakellariou, J. Stat. Mech. L07001 (2011) — exact mean field.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._core.errors import NeurocircuitsError, check_int, describe

__all__ = [
    "MFStep",
    "MFTrajectory",
    "METHODS",
    "LABELS",
    "nmf",
    "tap",
    "plefka_t_o1",
    "plefka_t_o2",
    "plefka_t1_o1",
    "plefka2_t_o2",
    "get_method",
    "initial_moments",
    "run",
    "solve_theta",
    "moments_in_bounds",
    "INPUT_COVARIANCE",
]

_P = "highest"


class MFStep(eqx.Module):
    """Moments at one time step from a mean-field method, with the largest residual of the
    self-consistent equations it solved (0 for explicit methods)."""

    m: Float[Array, " n"]
    C: Float[Array, "n n"]
    D: Float[Array, "n n"]
    residual: Float[Array, ""]


class MFTrajectory(eqx.Module):
    r"""``m (T+1, N)``, ``C (T+1, N, N)``, ``D (T+1, N, N)`` from :func:`run` (index 0 is the
    initial condition); ``residual (T+1,)``; ``converged`` is ``max(residual) <= tol`` (the
    self-consistent equations were solved).

    ``in_bounds (T+1,)`` says, per step, whether the prediction is finite and could be the
    moments of ±1 spins at all: :math:`|m_i| \le 1`, :math:`|C_{ik}| \le 1`,
    :math:`|D_{il}| \le 1` (up to rounding). A method whose recursion has become unstable
    (e.g. ``plefka_t_o2`` near :math:`\beta_c`, see the module docstring) leaves these bounds;
    ``valid`` is ``all(in_bounds)``. Both are reported, never hidden or clipped.
    """

    m: Float[Array, "t n"]
    C: Float[Array, "t n n"]
    D: Float[Array, "t n n"]
    residual: Float[Array, " t"]
    converged: Array
    in_bounds: Array

    @property
    def valid(self) -> Array:
        """``True`` if every step is finite and inside the bounds of ±1-spin moments."""
        return jnp.all(self.in_bounds)

    @property
    def first_invalid_step(self) -> Array:
        """The first step ``t`` whose prediction is out of bounds, or ``-1`` if none."""
        bad = ~self.in_bounds
        return jnp.where(jnp.any(bad), jnp.argmax(bad), -1)


def _tol(dtype):
    return 1e-11 if jnp.finfo(dtype).bits == 64 else 2e-6


def solve_theta(h, V, *, max_iter: int = 200):
    r"""Solve :math:`\theta = h - V\tanh\theta` elementwise (any shapes that broadcast).

    Newton's method safeguarded by bisection on the bracket :math:`[h-|V|, h+|V|]` (which
    always holds a root), in the manner of Numerical Recipes' ``rtsafe``: a Newton step is
    taken only if it lands inside the bracket *and* is at most half the step before last;
    otherwise the bracket is bisected. (Plain "Newton if inside the bracket" can creep for
    hundreds of iterations on this sigmoid-shaped equation when :math:`|V|` is large, e.g.
    :math:`h = 8.5, V = 9.9`, alternating between the flat tails.) The bracket therefore at
    least halves every two iterations, so ``max_iter = 200`` is ample for any finite input.
    Returns ``(theta, residual)`` with ``residual`` the largest
    :math:`|\theta - h + V\tanh\theta| / (1 + |h| + |V|)` (relative to the size of the terms,
    so that it can reach the tolerance in float32 too).

    Derivatives (forward or reverse mode) are those of the root itself, by the implicit
    function theorem, :math:`d\theta = (dh - \tanh\theta\,dV)/(1 + V(1-\tanh^2\theta))`, not
    of the iterations that found it (which depend on which safeguard fired last).
    """
    h, V = jnp.broadcast_arrays(h, V)
    return _solve_theta(h, V, max_iter)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _solve_theta(h, V, max_iter):
    tol = _tol(h.dtype)
    lo, hi = h - jnp.abs(V), h + jnp.abs(V)
    theta0 = jnp.clip(h - V * jnp.tanh(h), lo, hi)
    width = hi - lo
    scale = 1.0 + jnp.abs(h) + jnp.abs(V)

    def g(th):
        return (th - h + V * jnp.tanh(th)) / scale

    def cond(c):
        th, lo, hi, dx, dx_old, it = c
        return (it < max_iter) & (jnp.max(jnp.abs(g(th)), initial=0.0) > tol)

    def body(c):
        th, lo, hi, dx, dx_old, it = c
        t = jnp.tanh(th)
        gv = th - h + V * t
        gp = 1.0 + V * (1.0 - t * t)
        lo = jnp.where(gv < 0, th, lo)
        hi = jnp.where(gv > 0, th, hi)
        newton = th - gv / jnp.where(gp > 0, gp, 1.0)
        ok = (gp > 0) & (newton > lo) & (newton < hi) & (jnp.abs(newton - th) <= 0.5 * dx_old)
        new = jnp.where(ok, newton, 0.5 * (lo + hi))
        new = jnp.where(gv == 0, th, new)
        return new, lo, hi, jnp.abs(new - th), dx, it + 1

    th, *_ = jax.lax.while_loop(cond, body, (theta0, lo, hi, width, width, 0))
    return th, jnp.max(jnp.abs(g(th)), initial=0.0)


@_solve_theta.defjvp
def _solve_theta_jvp(max_iter, primals, tangents):
    h, V = primals
    dh, dV = tangents
    th, res = _solve_theta(h, V, max_iter)
    t = jnp.tanh(th)
    dth = (dh - t * dV) / (1.0 + V * (1.0 - t * t))
    return (th, res), (dth, jnp.zeros_like(res))


def _set_diag(C, m):
    n = m.shape[0]
    return C.at[jnp.arange(n), jnp.arange(n)].set(1.0 - m**2)


def _zero():
    return jnp.zeros(())


# --- Plefka[t-1, t] -------------------------------------------------------------------------


def nmf(H, J, m_p, C_p, D_p) -> MFStep:
    """Plefka[t-1,t] order 1: naive mean field (equations in the module docstring)."""
    m = jnp.tanh(H + jnp.matmul(J, m_p, precision=_P))
    C = jnp.diag(1.0 - m**2)
    D = (1.0 - m**2)[:, None] * J * (1.0 - m_p**2)[None, :]
    return MFStep(m, C, D, _zero().astype(m.dtype))


def tap(H, J, m_p, C_p, D_p) -> MFStep:
    """Plefka[t-1,t] order 2: TAP (equations in the module docstring)."""
    a_p = 1.0 - m_p**2
    V = jnp.matmul(J**2, a_p, precision=_P)
    theta, res = solve_theta(H + jnp.matmul(J, m_p, precision=_P), V)
    m = jnp.tanh(theta)
    a = 1.0 - m**2
    C = a[:, None] * a[None, :] * jnp.matmul(J * a_p[None, :], J.T, precision=_P)
    C = _set_diag(C, m)
    D = a[:, None] * J * a_p[None, :] * (1.0 + 2.0 * J * m[:, None] * m_p[None, :])
    return MFStep(m, C, D, res)


# --- Plefka[t] -------------------------------------------------------------------------------


def plefka_t_o1(H, J, m_p, C_p, D_p) -> MFStep:
    """Plefka[t] order 1 (equations in the module docstring)."""
    m = jnp.tanh(H + jnp.matmul(J, m_p, precision=_P))
    C = jnp.diag(1.0 - m**2)
    D = (1.0 - m**2)[:, None] * jnp.matmul(J, C_p, precision=_P)
    return MFStep(m, C, D, _zero().astype(m.dtype))


def plefka_t_o2(H, J, m_p, C_p, D_p) -> MFStep:
    """Plefka[t] order 2 (equations in the module docstring)."""
    JC = jnp.matmul(J, C_p, precision=_P)
    JCJ = jnp.matmul(JC, J.T, precision=_P)
    theta, res = solve_theta(H + jnp.matmul(J, m_p, precision=_P), jnp.diagonal(JCJ))
    m = jnp.tanh(theta)
    a = 1.0 - m**2
    C = _set_diag(a[:, None] * a[None, :] * JCJ, m)
    D = a[:, None] * JC * (1.0 + 2.0 * J * m[:, None] * m_p[None, :])
    return MFStep(m, C, D, res)


# --- Plefka[t-1] -----------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _hermite(n: int):
    x, w = np.polynomial.hermite_e.hermegauss(n)
    return x, w / w.sum()


def plefka_t1_o1(H, J, m_p, C_p, D_p, *, n_quad: int = 16, row_block: int = 64,
                 compute_C: bool = True) -> MFStep:
    r"""Plefka[t-1] order 1: Gaussian effective field (equations in the module docstring).

    ``n_quad`` Gauss–Hermite nodes per dimension (``n_quad^2`` per pair for ``C``); pairs are
    evaluated in blocks of ``row_block`` rows to bound memory (``row_block * N * n_quad^2``).
    Accuracy is set by the field spread :math:`\sqrt{\Delta}` (``tanh`` has poles at distance
    :math:`\pi/(2\sqrt\Delta)` from the real axis): with 16 nodes the 1-D error is ~1e-13 at
    :math:`\sqrt\Delta = 0.3`, ~1e-9 at 0.5, ~4e-5 at 1 and ~5e-3 at 2; raise ``n_quad`` for
    strongly fluctuating fields. (The SK networks of the paper have :math:`\sqrt\Delta\approx
    \beta\Delta J \approx 0.1`.) ``compute_C=False`` skips the pair integrals and returns
    ``C = diag(1 - m^2)`` (for inverse problems that only need ``m`` and ``D``).
    """
    dtype = J.dtype
    xq, wq = (jnp.asarray(v, dtype) for v in _hermite(n_quad))
    a_p = 1.0 - m_p**2
    g = H + jnp.matmul(J, m_p, precision=_P)
    Delta = jnp.matmul(J**2, a_p, precision=_P)
    sd = jnp.sqrt(jnp.maximum(Delta, 0.0))
    T1 = jnp.tanh(g[:, None] + sd[:, None] * xq[None, :])
    m = T1 @ wq
    a = (1.0 - T1**2) @ wq
    D = a[:, None] * jnp.matmul(J, C_p, precision=_P)
    if not compute_C:
        return MFStep(m, jnp.diag(1.0 - m**2), D, _zero().astype(dtype))
    cov = jnp.matmul(J * a_p[None, :], J.T, precision=_P)
    inv = jnp.where(sd > 0, 1.0 / jnp.where(sd > 0, sd, 1.0), 0.0)
    rho = jnp.clip(cov * inv[:, None] * inv[None, :], -1.0, 1.0)
    p = xq[:, None]
    q = xq[None, :]
    w2 = wq[:, None] * wq[None, :]
    sh = jnp.sqrt(Delta / 2.0)

    def row(args):
        gi, shi, rho_i = args  # scalar, scalar, (N,)
        u = jnp.sqrt(1.0 + rho_i)[:, None, None] * p
        v = jnp.sqrt(1.0 - rho_i)[:, None, None] * q
        ti = jnp.tanh(gi + shi * (u + v))
        tk = jnp.tanh(g[:, None, None] + sh[:, None, None] * (u - v))
        return jnp.sum(ti * tk * w2, axis=(1, 2))

    EC = jax.lax.map(row, (g, sh, rho), batch_size=row_block)
    C = _set_diag(EC - m[:, None] * m[None, :], m)
    return MFStep(m, C, D, _zero().astype(dtype))


# --- Plefka2[t] -----------------------------------------------------------------------------


def plefka2_t_o2(H, J, m_p, C_p, D_p, *, c_reference: str = "previous",
                 compute_C: bool = True) -> MFStep:
    r"""Plefka2[t] order 2: pairwise reference model (equations in the module docstring).

    ``c_reference="previous"`` (default) computes ``C`` exactly as the paper's code, conditioning
    on :math:`s_k` with the mean :math:`m_{k,t-1}`; its equal-time correlations are then exact
    only to first order in ``J``. ``c_reference="current"`` uses :math:`m_{k,t}` (from the D
    step) in the shift and the weights, which makes ``C`` exact to second order in ``J`` (the
    shift :math:`E[h_i\mid s_{k,t}] - E[h_i] = W^C_{ik}(s_k - m_{k,t})` to that order).
    ``compute_C=False`` skips the C step and returns ``C = diag(1 - m^2)``.
    """
    if c_reference not in ("previous", "current"):
        raise NeurocircuitsError(
            f"c_reference must be 'previous' or 'current', got {c_reference!r}."
        )
    heff = H + jnp.matmul(J, m_p, precision=_P)
    JC = jnp.matmul(J, C_p, precision=_P)
    JCJ = jnp.matmul(JC, J.T, precision=_P)
    V = jnp.diagonal(JCJ)
    # D step: pairs (i, l)
    V_il = V[:, None] - 2.0 * J * JC + J**2 * jnp.diagonal(C_p)[None, :]
    W = jnp.matmul(jnp.matmul(J, D_p, precision=_P), J.T, precision=_P)
    W_il = W - J * jnp.sum(J * D_p, axis=1)[None, :]
    Delta = J + W_il
    sl = jnp.array([-1.0, 1.0], J.dtype)[:, None, None]
    mpl = m_p[None, None, :]
    pl = (1.0 + sl * mpl) / 2.0
    theta, res1 = solve_theta(heff[None, :, None] + Delta[None] * (sl - mpl), V_il[None])
    t = jnp.tanh(theta)
    M_il = jnp.sum(pl * t, axis=0)
    D = jnp.sum(pl * sl * t, axis=0) - M_il * m_p[None, :]
    m = jnp.mean(M_il, axis=1)
    if not compute_C:
        return MFStep(m, jnp.diag(1.0 - m**2), D, res1)
    # C step: pairs (i, k)
    if c_reference == "current":
        mpl = m[None, None, :]
        pl = (1.0 + sl * mpl) / 2.0
    theta, res2 = solve_theta(heff[None, :, None] + JCJ[None] * (sl - mpl), V[None, :, None])
    C = jnp.sum(jnp.tanh(theta) * (sl - mpl) * pl, axis=0)
    C = _set_diag(0.5 * (C + C.T), m)
    return MFStep(m, C, D, jnp.maximum(res1, res2))


METHODS: dict[str, Callable[..., MFStep]] = {
    "nmf": nmf,
    "tap": tap,
    "plefka_t_o1": plefka_t_o1,
    "plefka_t_o2": plefka_t_o2,
    "plefka_t1_o1": plefka_t1_o1,
    "plefka2_t_o2": plefka2_t_o2,
}

#: The covariance of the spins at ``t - 1`` that each method's delayed correlation uses to
#: first order in ``J``: Plefka[t-1,t] (nMF, TAP) treats the spins at ``t - 1`` as independent,
#: :math:`D \approx AJ\,\mathrm{diag}(1-m_{t-1}^2)`; every other method uses the given
#: :math:`C_{t-1}`, :math:`D \approx AJC_{t-1}`. :func:`~neurocircuits.ising.inverse.fit_meanfield`
#: preconditions its coupling update with the inverse of this matrix.
INPUT_COVARIANCE = {
    "nmf": "independent",
    "tap": "independent",
    "plefka_t_o1": "data",
    "plefka_t_o2": "data",
    "plefka_t1_o1": "data",
    "plefka2_t_o2": "data",
}

#: names used in figures and the paper
LABELS = {
    "nmf": "P[t-1,t] o1 (nMF)",
    "tap": "P[t-1,t] o2 (TAP)",
    "plefka_t_o1": "P[t] o1",
    "plefka_t_o2": "P[t] o2",
    "plefka_t1_o1": "P[t-1] o1",
    "plefka2_t_o2": "P2[t] o2",
}


def get_method(method) -> Callable[..., MFStep]:
    """A method function from its name (see :data:`METHODS`) or the function itself."""
    if callable(method):
        return method
    if method not in METHODS:
        raise NeurocircuitsError(
            f"method must be one of {', '.join(METHODS)} (or a function with the signature "
            f"(H, J, m_p, C_p, D_p) -> MFStep), got {method!r}."
        )
    return METHODS[method]


def _check_HJ(H, J):
    J = jnp.asarray(J)
    if not jnp.issubdtype(J.dtype, jnp.floating):
        J = J.astype(float)
    if J.ndim != 2 or J.shape[0] != J.shape[1]:
        raise NeurocircuitsError(f"J must be a square matrix (N, N), got {describe(J)}.")
    H = jnp.broadcast_to(jnp.asarray(H, J.dtype), (J.shape[0],))
    return H, J


def initial_moments(s0) -> tuple[Array, Array, Array]:
    """``(m, C, D)`` of a known initial state: ``m = s0``, ``C = diag(1 - m^2)``, ``D = 0``."""
    m = jnp.asarray(s0)
    if not jnp.issubdtype(m.dtype, jnp.floating):
        m = m.astype(float)
    return m, jnp.diag(1.0 - m**2), jnp.zeros((m.shape[0], m.shape[0]), m.dtype)


def run(method, H, J, s0=None, *, n_steps: int, init=None) -> MFTrajectory:
    r"""Iterate a forward method over ``n_steps`` steps with ``lax.scan``.

    Args:
        method: a name in :data:`METHODS` or a function ``(H, J, m_p, C_p, D_p) -> MFStep``.
        H, J: fields ``(N,)`` and couplings ``(N, N)`` (including :math:`\beta`).
        s0: initial spins ``(N,)`` (``m = s0``, ``C = diag(1 - m^2)``, ``D = 0``), or
        init: ``(m, C, D)`` at ``t = 0`` instead of ``s0``.
        n_steps: number of steps T.

    Returns:
        :class:`MFTrajectory` with arrays of length ``T + 1``.
    """
    fn = get_method(method)
    H, J = _check_HJ(H, J)
    n_steps = check_int(n_steps, "n_steps", minimum=1)
    n = J.shape[0]
    if (s0 is None) == (init is None):
        raise NeurocircuitsError("give exactly one of s0 (initial spins) or init=(m, C, D).")
    if s0 is not None:
        if jnp.shape(s0) != (n,):
            raise NeurocircuitsError(f"s0 must have shape ({n},), got {describe(s0)}.")
        init = initial_moments(jnp.asarray(s0, J.dtype))
    m0, C0, D0 = (jnp.asarray(x, J.dtype) for x in init)
    if m0.shape != (n,) or C0.shape != (n, n) or D0.shape != (n, n):
        raise NeurocircuitsError(
            f"init must be (m (N,), C (N, N), D (N, N)) with N = {n}, got shapes "
            f"{m0.shape}, {C0.shape}, {D0.shape}."
        )
    return _run(fn, H, J, m0, C0, D0, n_steps)


@functools.partial(jax.jit, static_argnums=(0, 6))
def _run(fn, H, J, m0, C0, D0, n_steps):
    def body(carry, _):
        out = fn(H, J, *carry)
        return (out.m, out.C, out.D), out

    _, outs = jax.lax.scan(body, (m0, C0, D0), None, length=n_steps)
    cat = lambda x0, xs: jnp.concatenate([x0[None], xs], 0)  # noqa: E731
    res = cat(jnp.zeros((), J.dtype), outs.residual)
    m, C, D = cat(m0, outs.m), cat(C0, outs.C), cat(D0, outs.D)
    return MFTrajectory(m, C, D, res, jnp.max(res) <= 10 * _tol(J.dtype),
                        moments_in_bounds(m, C, D))


def moments_in_bounds(m, C, D) -> Array:
    r"""Whether moments ``m (..., N)``, ``C (..., N, N)``, ``D (..., N, N)`` are finite and
    within the bounds that any ±1 spins obey, :math:`|m|, |C|, |D| \le 1` (with a slack of
    ``1e-5`` for rounding); one boolean per leading index."""
    slack = 1.0 + 1e-5

    def ok(x, axes):
        return jnp.all(jnp.isfinite(x) & (jnp.abs(x) <= slack), axis=axes)

    return ok(m, -1) & ok(C, (-2, -1)) & ok(D, (-2, -1))
