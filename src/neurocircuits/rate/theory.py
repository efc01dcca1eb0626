r"""Dynamic mean-field theory (DMFT) of the random rate network.

The network (see :class:`~neurocircuits.rate.RateNetwork`)

.. math::

    \tau\,\frac{du_i}{dt} = -u_i + \sum_j J_{ij}\,\phi(u_j) + \mu + \sigma\sqrt{\tau}\,\xi_i(t),
    \qquad J_{ij} \sim \mathcal N(0, g^2/N),

becomes, for :math:`N \to \infty`, a single unit driven by a Gaussian field:
:math:`u = \mu + \eta`, where :math:`\eta` is a stationary Gaussian process with autocorrelation
:math:`\Delta(s) = \langle \eta(t)\,\eta(t+s)\rangle` (the lag :math:`s` in units of
:math:`\tau`). Self-consistency closes the loop (Sompolinsky, Crisanti & Sommers 1988; with a
mean input and any :math:`\phi`: Mastrogiuseppe & Ostojic 2017, 2018; with noise: Schuecker,
Goedeke & Helias 2018):

.. math::

    \Bigl(1 - \frac{d^2}{ds^2}\Bigr)\Delta(s) = g^2\,C(\Delta(s);\Delta_0) + \sigma^2\,\delta(s),
    \qquad
    C(\Delta;\Delta_0) = \mathbb E\bigl[\phi(u_1)\,\phi(u_2)\bigr],

with :math:`(u_1, u_2)` jointly Gaussian, mean :math:`\mu`, variances :math:`\Delta_0 = \Delta(0)`
and covariance :math:`\Delta`; for :math:`\Delta \ge 0`,
:math:`C = \mathbb E_z\bigl[(\mathbb E_x\,\phi(\mu + \sqrt{\Delta_0-\Delta}\,x
+ \sqrt{\Delta}\,z))^2\bigr]`. For :math:`s > 0` this is a particle in a potential,

.. math::

    \Delta'' = -\frac{\partial V}{\partial \Delta},\qquad
    V(\Delta;\Delta_0) = -\frac{\Delta^2}{2} + g^2\int_0^{\Delta} C(\Delta';\Delta_0)\,d\Delta',
    \qquad \Delta(0) = \Delta_0,\quad \Delta'(0^+) = -\frac{\sigma^2}{2}.

(:math:`\int_0^\Delta C = \mathbb E[\Phi(u_1)\Phi(u_2)] + \text{const}` with :math:`\Phi' = \phi`,
by Price's theorem; we integrate :math:`C` directly, so no antiderivative of :math:`\phi` is
needed.) A decaying solution :math:`\Delta(s) \to \Delta_\infty` needs

* :math:`V'(\Delta_\infty) = 0`, i.e. :math:`\Delta_\infty = g^2 C(\Delta_\infty;\Delta_0)`, at a
  maximum of :math:`V` (:math:`\Delta_\infty` is the smaller root of :math:`g^2C - \Delta` on
  :math:`[0, \Delta_0]`), and
* energy conservation :math:`V(\Delta_0) + \tfrac12(\sigma^2/2)^2 = V(\Delta_\infty)`.

Without noise, when no such (chaotic) solution exists the network settles on a fixed point and
the solution is static: :math:`\Delta_0 = \Delta_\infty = g^2\,\mathbb E[\phi(\mu +
\sqrt{\Delta_0}\,z)^2]`. Which of the two applies is decided by the stability of the static
solution, :math:`g^2\,\mathbb E[\phi'(\mu + \sqrt{\Delta_0}\,z)^2] < 1` (static stable; the
radius of the Jacobian's bulk spectrum is below 1). For the SCS network (:math:`\phi = \tanh`,
:math:`\mu = \sigma = 0`) this gives the zero solution for :math:`g < 1` and chaos for
:math:`g > 1`, with :math:`\Delta_0` growing from 0 linearly in :math:`g - 1`.

Numerics (float64 on CPU): Gaussian expectations by the trapezoid rule on a uniform grid
truncated at :math:`|z| = 8`, with a step that shrinks as :math:`1/\sqrt{\Delta_0}` (for analytic
:math:`\phi` such as ``tanh`` this converges geometrically; Gauss–Hermite converges far more
slowly once :math:`\phi` saturates over the Gaussian's width); :math:`g^2 C - \Delta` on
:math:`[0, \Delta_0]` is interpolated by a Chebyshev series (degree chosen adaptively), which
gives :math:`\Delta_\infty` by bracketed root finding and the energy condition by exact
integration; :math:`\Delta_0` by ``scipy.optimize.brentq``. The curve :math:`\Delta(s)` comes
from energy conservation, :math:`s(\Delta) = \int_\Delta^{\Delta_0}
d\Delta'/\sqrt{2\,(V(\Delta_\infty) - V(\Delta'))}`, integrated with substitutions that remove
both end singularities and inverted by Hermite interpolation (no unstable shooting); the
exponential tail beyond the table uses the exact decay rate
:math:`\lambda = \sqrt{1 - g^2 C'(\Delta_\infty)}`.

``phi`` is any JAX-traceable (or NumPy) callable; it is evaluated in float64 inside
``jax.enable_x64(True)`` without touching the global configuration.

References:
    Sompolinsky, Crisanti & Sommers, Phys. Rev. Lett. 61, 259 (1988).
    Mastrogiuseppe & Ostojic, PLoS Comput. Biol. 13, e1005498 (2017); Neuron 99, 609 (2018).
    Schuecker, Goedeke & Helias, Phys. Rev. X 8, 041029 (2018).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from numpy.polynomial import Chebyshev
from numpy.polynomial.legendre import leggauss
from numpy.typing import ArrayLike
from scipy import interpolate, optimize

from .._core.errors import NeurocircuitsError, describe
from .models import RateNetwork, tanh

__all__ = ["DMFTResult", "DMFTCurve", "dmft", "dmft_solve", "delta0_curve"]

# --- numerical constants ----------------------------------------------------------------------
_TRUNC = 8.0        # Gaussian grids cover |z| <= 8 (weight e^-32 ~ 1e-14)
_KAPPA = 0.4        # grid step <= _KAPPA / sqrt(variance): resolves phi's unit scale
_H_MAX = 0.3        # grid step cap (small variances)
_MAX_HALF = 300     # at most 601 nodes per dimension
_CHUNK = 4_000_000  # elements of one phi evaluation
_CHEB_DEGREES = (32, 64, 128, 256)
_CHEB_TOL = 1e-9    # relative size of the last Chebyshev coefficients
_GL_X, _GL_W = leggauss(32)
_GL_X = 0.5 * (_GL_X + 1.0)  # nodes on [0, 1]
_GL_W = 0.5 * _GL_W
_PANEL_X, _PANEL_W = leggauss(10)
_PANEL_X = 0.5 * (_PANEL_X + 1.0)
_PANEL_W = 0.5 * _PANEL_W


# ==============================================================================================
# Results
# ==============================================================================================
@dataclasses.dataclass(frozen=True, eq=False)
class DMFTResult:
    r"""The DMFT solution of a random rate network.

    Attributes:
        g: random-coupling gain.
        mu: mean input :math:`\mu`.
        sigma: noise amplitude :math:`\sigma`.
        tau: the time constant the lags are measured against: ``1.0`` from :func:`dmft_solve`
            (lags in units of :math:`\tau`), the model's ``tau`` in ms from :func:`dmft`.
        time_unit: ``"tau"`` or ``"ms"``.
        delta0: :math:`\Delta_0 = \langle \eta^2\rangle`, the variance of :math:`u` (temporal plus
            quenched).
        delta_inf: :math:`\Delta_\infty = \lim_{s\to\infty}\Delta(s)`, the quenched (static) part
            of the variance.
        lags: lags, in ``time_unit``.
        delta: :math:`\Delta` at ``lags``.
        mean_rate: :math:`\mathbb E[\phi(u)]`, :math:`u \sim \mathcal N(\mu, \Delta_0)`.
        kind: ``"chaotic"`` (no noise, time-dependent solution), ``"static"`` (fixed point,
            :math:`\Delta(s) \equiv \Delta_0 > 0`), ``"zero"`` (fixed point with
            :math:`\Delta_0 = 0`: every unit at :math:`u = \mu`) or ``"noisy"`` (:math:`\sigma > 0`:
            a fluctuating solution driven by the noise, chaotic or not).
        converged: the solver succeeded and the residual is small.
        residual: max absolute residual of the self-consistency conditions, evaluated with direct
            quadrature: :math:`|g^2C(\Delta_\infty) - \Delta_\infty|` and
            :math:`|V(\Delta_0) + \sigma^4/8 - V(\Delta_\infty)|` (static:
            :math:`|g^2\mathbb E\phi^2 - \Delta_0|`).
        autocorrelation_time: the lag at which
            :math:`(\Delta - \Delta_\infty)/(\Delta_0 - \Delta_\infty) = 1/2`, in ``time_unit``
            (``nan`` for static solutions).
        decay_rate: :math:`\lambda = \sqrt{1 - g^2 C'(\Delta_\infty)}/\tau`, the rate of the
            exponential approach :math:`\Delta - \Delta_\infty \propto e^{-\lambda s}`, in
            1/``time_unit`` (``nan`` for static solutions).
        phi: the transfer function.
    """

    g: float
    mu: float
    sigma: float
    tau: float
    time_unit: str
    delta0: float
    delta_inf: float
    lags: np.ndarray
    delta: np.ndarray
    mean_rate: float
    kind: str
    converged: bool
    residual: float
    autocorrelation_time: float
    decay_rate: float
    phi: Callable = dataclasses.field(repr=False)

    @property
    def temporal_variance(self) -> float:
        r""":math:`\Delta_0 - \Delta_\infty`, the variance of the temporal fluctuations."""
        return self.delta0 - self.delta_inf

    def normalized(self) -> np.ndarray:
        r""":math:`(\Delta(s) - \Delta_\infty)/(\Delta_0 - \Delta_\infty)` at ``lags`` (ones for a
        static solution)."""
        gap = self.delta0 - self.delta_inf
        if gap <= 0:
            return np.ones_like(self.delta)
        return (self.delta - self.delta_inf) / gap

    def correlation(self, delta: ArrayLike | None = None) -> np.ndarray:
        r"""The rate autocorrelation :math:`C(\Delta;\Delta_0) = \mathbb E[\phi(u_1)\phi(u_2)]`.

        Args:
            delta: covariances :math:`\Delta` in :math:`[-\Delta_0, \Delta_0]`; default the
                result's curve, giving :math:`\langle\phi(u(t))\,\phi(u(t+s))\rangle` at ``lags``.
        """
        d = self.delta if delta is None else np.asarray(delta, dtype=np.float64)
        if np.any(np.abs(d) > self.delta0 * (1 + 1e-12) + 1e-300):
            raise NeurocircuitsError(
                f"delta must lie in [-delta0, delta0] = [{-self.delta0:g}, {self.delta0:g}] "
                f"(a covariance cannot exceed the variance), got values in "
                f"[{np.min(d):g}, {np.max(d):g}]."
            )
        d = np.clip(d, -self.delta0, self.delta0)
        return _corr(_Phi(self.phi), self.mu, d, self.delta0).reshape(np.shape(d))

    def __repr__(self) -> str:
        return (
            f"DMFTResult(kind={self.kind!r}, g={self.g:g}, mu={self.mu:g}, sigma={self.sigma:g}, "
            f"delta0={self.delta0:.6g}, delta_inf={self.delta_inf:.6g}, "
            f"autocorrelation_time={self.autocorrelation_time:.6g} {self.time_unit}, "
            f"mean_rate={self.mean_rate:.6g}, converged={self.converged}, "
            f"residual={self.residual:.2e}, n_lags={len(self.lags)})"
        )


@dataclasses.dataclass(frozen=True, eq=False)
class DMFTCurve:
    """DMFT results over a sweep of ``g`` (from :func:`delta0_curve`); arrays of shape
    ``(len(g),)``; times in units of ``tau``."""

    g: np.ndarray
    delta0: np.ndarray
    delta_inf: np.ndarray
    autocorrelation_time: np.ndarray
    decay_rate: np.ndarray
    mean_rate: np.ndarray
    kind: np.ndarray
    converged: np.ndarray
    residual: np.ndarray
    results: tuple = dataclasses.field(repr=False)

    @property
    def all_converged(self) -> bool:
        return bool(np.all(self.converged))


# ==============================================================================================
# phi in float64
# ==============================================================================================
_JIT_CACHE: dict = {}
_BLOCK = 2**20


def _jitted(fn: Callable):
    """``(jit(fn), jit(vmap(grad(fn))))`` for ``fn``, cached so shapes compile once per process."""
    try:
        return _JIT_CACHE[fn]
    except (KeyError, TypeError):
        pass
    entry = (jax.jit(fn), jax.jit(jax.vmap(jax.grad(lambda x: jnp.reshape(fn(x), ())))))
    try:
        if len(_JIT_CACHE) > 64:
            _JIT_CACHE.clear()
        _JIT_CACHE[fn] = entry
    except TypeError:  # unhashable callable
        pass
    return entry


def _padded(f, u: np.ndarray) -> np.ndarray:
    """Apply ``f`` to ``u.ravel()`` in blocks of power-of-two sizes (few distinct shapes, so
    few compilations), in float64."""
    flat = u.ravel()
    out = np.empty_like(flat)
    with jax.enable_x64(True):
        for i in range(0, flat.size, _BLOCK):
            part = flat[i:i + _BLOCK]
            size = max(1024, 1 << (part.size - 1).bit_length())
            buf = np.zeros(size)
            buf[:part.size] = part
            res = np.asarray(f(jnp.asarray(buf)), dtype=np.float64)
            if res.shape != buf.shape:
                raise NeurocircuitsError(
                    f"phi must act elementwise: on an array of shape {buf.shape} it returned "
                    f"shape {res.shape}."
                )
            out[i:i + _BLOCK] = res[:part.size]
    return out.reshape(u.shape)


class _Phi:
    """``phi`` evaluated on NumPy float64 arrays (jit-compiled, inside ``jax.enable_x64``)."""

    def __init__(self, fn: Callable):
        self.fn = fn
        self.jit, self.grad = _jitted(fn)
        self.traceable = True

    def __call__(self, u: np.ndarray) -> np.ndarray:
        u = np.asarray(u, dtype=np.float64)
        if self.traceable:
            try:
                return _padded(self.jit, u)
            except NeurocircuitsError:
                raise
            except Exception:  # not JAX-traceable (e.g. a NumPy function): call it directly
                self.traceable = False
        return _padded(self.fn, u)

    def deriv(self, u: np.ndarray) -> np.ndarray:
        u = np.asarray(u, dtype=np.float64)
        if self.traceable:
            try:
                d = _padded(self.grad, u)
                if np.all(np.isfinite(d)):
                    return d
            except Exception:  # not differentiable by JAX: central differences
                pass
        eps = 1e-5 * np.maximum(1.0, np.abs(u))
        return (self(u + eps) - self(u - eps)) / (2 * eps)


def _check_phi(phi, mu) -> _Phi:
    if not callable(phi):
        raise NeurocircuitsError(
            "phi must be a callable u -> rate (e.g. jnp.tanh or "
            f"neurocircuits.rate.one_plus_tanh), got {describe(phi)}."
        )
    wrapped = _Phi(phi)
    probe = mu + np.array([-3.0, -1.0, 0.0, 0.5, 2.0])
    try:
        out = wrapped(probe)
    except Exception as err:
        raise NeurocircuitsError(
            f"phi must map an array of inputs to an array of rates elementwise; calling it on a "
            f"float64 array of shape (5,) raised {type(err).__name__}: {err}"
        ) from err
    if not np.all(np.isfinite(out)):
        raise NeurocircuitsError(
            f"phi returned non-finite values {out} at inputs {probe}; it must be finite on the "
            "real line."
        )
    return wrapped


# ==============================================================================================
# Gaussian expectations
# ==============================================================================================
def _nodes(var: float) -> tuple[np.ndarray, np.ndarray]:
    """Trapezoid nodes/weights for E[f(z)], z ~ N(0, 1), resolving f(sqrt(var) z)."""
    h = _H_MAX if var <= 0 else min(_H_MAX, _KAPPA / math.sqrt(var))
    m = min(int(math.ceil(_TRUNC / h)), _MAX_HALF)
    x = (_TRUNC / m) * np.arange(-m, m + 1)
    w = np.exp(-0.5 * x * x)
    return x, w / w.sum()


def _expect(f, mu: float, var: float) -> float:
    r""":math:`\mathbb E[f(\mu + \sqrt{var}\,z)]`."""
    x, w = _nodes(var)
    return float(w @ f(mu + math.sqrt(max(var, 0.0)) * x))


def _corr(phi: _Phi, mu: float, d, d0: float) -> np.ndarray:
    r""":math:`C(\Delta;\Delta_0) = \mathbb E[\phi(u_1)\phi(u_2)]` with Var = d0, Cov = d
    (vectorised over d)."""
    d = np.atleast_1d(np.asarray(d, dtype=np.float64)).ravel()
    x, w = _nodes(d0)
    ad = np.abs(d)
    a = np.sqrt(np.maximum(d0 - ad, 0.0))
    b = np.sqrt(ad)
    out = np.empty_like(d)
    step = max(1, _CHUNK // x.size**2)
    for i in range(0, d.size, step):
        sl = slice(i, i + step)
        u = mu + a[sl, None, None] * x[None, None, :] + b[sl, None, None] * x[None, :, None]
        inner = phi(u) @ w                                   # E_x phi, shape (n, n_z)
        other = np.where((d[sl] < 0)[:, None], inner[:, ::-1], inner)  # z -> -z for d < 0
        out[sl] = (inner * other) @ w
    return out


# ==============================================================================================
# The potential for one Delta0
# ==============================================================================================
class _Potential:
    r"""``h(D) = g^2 C(D; d0) - D = V'(D)`` on ``[0, d0]`` as a Chebyshev series."""

    def __init__(self, phi: _Phi, g: float, mu: float, sigma: float, d0: float):
        self.g, self.mu, self.sigma, self.d0 = g, mu, sigma, d0
        g2 = g * g
        vals = None
        for deg in _CHEB_DEGREES:
            t = np.cos(np.pi * np.arange(deg + 1) / deg)   # Chebyshev–Lobatto nodes
            dd = 0.5 * d0 * (t + 1.0)
            if vals is None:
                vals = g2 * _corr(phi, mu, dd, d0) - dd
            else:  # nested nodes: the even ones are the previous degree's
                new = np.empty(deg + 1)
                new[::2] = vals
                new[1::2] = g2 * _corr(phi, mu, dd[1::2], d0) - dd[1::2]
                vals = new
            poly = Chebyshev.fit(dd, vals, deg, domain=[0.0, d0])
            c = np.abs(poly.coef)
            if c[-4:].max() <= _CHEB_TOL * c.max() + 1e-300:
                break
        self.h = poly
        self.h0 = float(vals[-1])          # exact value at D = 0 (the last Lobatto node)
        self.dh = poly.deriv()
        self.H = poly.integ()
        self._r1 = None
        self._r1_done = False

    def r1(self) -> float | None:
        r"""The smaller root of ``h`` in ``[0, d0]`` that is a maximum of V (``None``: none)."""
        if self._r1_done:
            return self._r1
        self._r1_done = True
        d0, h = self.d0, self.h
        grid = np.linspace(0.0, d0, 1025)
        hv = h(grid)
        scale = max(float(np.abs(hv).max()), 1e-300)
        if self.h0 <= 1e-12 * scale:  # D = 0 is a root (phi(mu + ...) averages to 0)
            self._r1 = 0.0 if self.dh(0.0) < 0 else None
            return self._r1
        neg = np.nonzero(hv <= 0)[0]
        if neg.size:
            j = int(neg[0])
            lo, hi = grid[j - 1], grid[j]
        else:  # h convex: look for a dip between grid points
            i = int(np.argmin(hv))
            lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
            res = optimize.minimize_scalar(h, bounds=(lo, hi), method="bounded",
                                           options={"xatol": 1e-14 * d0})
            if res.fun > 0:
                return None
            lo, hi = 0.0, float(res.x)
        if h(hi) == 0.0:
            self._r1 = float(hi)
        else:
            self._r1 = float(optimize.brentq(h, lo, hi, xtol=1e-15 * d0 + 1e-300, rtol=1e-14))
        return self._r1

    def energy(self) -> float:
        r""":math:`[V(\Delta_0) + \sigma^4/8 - V(\Delta_\infty)] / (\Delta_0 - \Delta_\infty)^2`,
        with :math:`\Delta_\infty` = ``r1`` (0 when there is no barrier: positive, too much
        energy)."""
        r1 = self.r1()
        base = 0.0 if r1 is None else r1
        gap = self.d0 - base
        kin = self.sigma**4 / 8.0
        if gap <= 1e-12 * self.d0:
            return math.inf if kin > 0 else 0.5 * float(self.dh(base))
        return (kin + float(self.H(self.d0) - self.H(base))) / gap**2


# ==============================================================================================
# Solvers
# ==============================================================================================
def _static_solution(phi: _Phi, g: float, mu: float) -> float:
    r"""Smallest root :math:`\Delta \ge 0` of
    :math:`g^2\mathbb E[\phi(\mu+\sqrt\Delta z)^2] = \Delta`."""
    g2 = g * g

    def f(d):
        return g2 * _expect(lambda u: phi(u) ** 2, mu, d) - d

    f0 = f(0.0)
    if f0 <= 0.0:
        return 0.0
    lo, d = 0.0, 1e-3 * f0
    for _ in range(400):
        if f(d) <= 0.0:
            return float(optimize.brentq(f, lo, d, xtol=1e-15 * d + 1e-300, rtol=1e-14))
        lo, d = d, d * 1.25
    raise NeurocircuitsError(
        f"No static DMFT solution: g^2 E[phi^2] - Delta stays positive up to Delta = {d:.3g} "
        f"(g = {g:g}, mu = {mu:g}); phi grows too fast for this g (the network diverges)."
    )


def _fluctuating_solution(phi, g, mu, sigma, d_static=None) -> tuple[float, _Potential] | None:
    """Delta0 of the decaying (chaotic or noise-driven) solution, by brentq on the energy."""
    cache: dict[float, _Potential] = {}

    def pot(d0):
        if d0 not in cache:
            cache[d0] = _Potential(phi, g, mu, sigma, d0)
        return cache[d0]

    def G(d0):
        return pot(d0).energy()

    scale = max(2.0 * g * g * _expect(lambda u: phi(u) ** 2, mu, 1.0), sigma**2, 1e-3)
    if d_static:  # without noise the chaotic Delta0 lies near the (unstable) static one
        scale = 1.25 * d_static
    hi = scale
    for _ in range(12):
        if G(hi) < 0:
            break
        hi *= 4.0
    else:
        return None
    lo = hi / 2.0
    while G(lo) <= 0:
        hi, lo = lo, lo / 2.0
        if lo < 1e-14 * scale:
            return None
    d0 = float(optimize.brentq(G, lo, hi, xtol=1e-11 * hi, rtol=1e-11))
    p = pot(d0) if d0 in cache else _Potential(phi, g, mu, sigma, d0)
    r1 = p.r1()
    if r1 is None or r1 >= d0:
        return None
    return d0, p


def _curve(p: _Potential, d_inf: float, lags_tau: np.ndarray):
    r"""Delta(s) at ``lags_tau`` from energy conservation; also s_half and lambda.

    With ``t = Delta - Delta_inf`` in ``(0, X]`` and ``W(t) = V(Delta_inf) - V(Delta_inf + t)``,
    ``s(t) = int_t^X dt' / sqrt(2 W(t'))``.
    """
    d0, sigma, h = p.d0, p.sigma, p.h
    X = d0 - d_inf
    kin = sigma**4 / 8.0
    h1, h2, h3 = (float(h.deriv(k)(d_inf)) for k in (1, 2, 3))
    lam = math.sqrt(max(-h1, 0.0))
    t_taylor = 1e-5 * X

    def W(t):
        t = np.asarray(t, dtype=np.float64)
        out = np.empty_like(t)
        low = t <= 0.5 * X
        tl = t[low]
        # from the bottom: W = -int_0^t h(d_inf + t') dt'
        wl = -tl * (h(d_inf + tl[:, None] * _GL_X[None, :]) @ _GL_W)
        tiny = tl <= t_taylor
        wl[tiny] = -(h1 * tl[tiny] ** 2 / 2 + h2 * tl[tiny] ** 3 / 6 + h3 * tl[tiny] ** 4 / 24)
        out[low] = wl
        # from the top: W = sigma^4/8 + int_t^X h
        th = t[~low]
        rest = X - th
        out[~low] = kin + rest * (h(d_inf + th[:, None] + rest[:, None] * _GL_X[None, :]) @ _GL_W)
        return np.maximum(out, 1e-300)

    # upper half: t = X - (X/2) v^2, v in [0, 1]
    n_up = 40
    vb = np.linspace(0.0, 1.0, n_up + 1)
    vn = (vb[:-1, None] + np.diff(vb)[:, None] * _PANEL_X[None, :])
    tn = X - 0.5 * X * vn**2
    integrand = X * vn / np.sqrt(2.0 * W(tn.ravel()).reshape(tn.shape))
    s_up = np.concatenate([[0.0], np.cumsum((integrand @ _PANEL_W) * np.diff(vb))])
    t_up = X - 0.5 * X * vb**2
    # lower half: t = (X/2) e^{-r}, r in [0, R]
    R = math.log(0.5 / 1e-13)
    n_lo = int(math.ceil(R / 0.2))
    rb = np.linspace(0.0, R, n_lo + 1)
    rn = rb[:-1, None] + np.diff(rb)[:, None] * _PANEL_X[None, :]
    tn = 0.5 * X * np.exp(-rn)
    integrand = tn / np.sqrt(2.0 * W(tn.ravel()).reshape(tn.shape))
    s_lo = s_up[-1] + np.cumsum((integrand @ _PANEL_W) * np.diff(rb))
    t_lo = 0.5 * X * np.exp(-rb[1:])

    s_tab = np.concatenate([s_up, s_lo])
    t_tab = np.concatenate([t_up, t_lo])
    y_tab = np.log(t_tab)
    dyds = -np.sqrt(2.0 * W(t_tab)) / t_tab
    if sigma == 0.0:
        dyds[0] = 0.0
    keep = np.concatenate([[True], np.diff(s_tab) > 0])
    spline = interpolate.CubicHermiteSpline(s_tab[keep], y_tab[keep], dyds[keep])
    s = np.abs(lags_tau)
    y = np.empty_like(s)
    inside = s <= s_tab[-1]
    y[inside] = spline(s[inside])
    y[~inside] = y_tab[-1] - lam * (s[~inside] - s_tab[-1])
    delta = d_inf + np.exp(y)
    return delta, float(s_up[-1]), lam


def _residuals(phi, g, mu, sigma, d0, d_inf) -> float:
    g2 = g * g
    r_fixed = abs(g2 * _corr(phi, mu, [d_inf], d0)[0] - d_inf)
    x, w = leggauss(48)
    dd = d_inf + 0.5 * (d0 - d_inf) * (x + 1.0)
    integral = 0.5 * (d0 - d_inf) * float(w @ (g2 * _corr(phi, mu, dd, d0) - dd))
    r_energy = abs(sigma**4 / 8.0 + integral)
    return float(max(r_fixed, r_energy))


def _check_scalar(value, name: str, *, minimum: float | None = None) -> float:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise NeurocircuitsError(f"{name} must be a real number, got {describe(value)}.") from err
    if arr.shape != ():
        raise NeurocircuitsError(f"{name} must be a scalar, got {describe(value)}.")
    v = float(arr)
    if not math.isfinite(v):
        raise NeurocircuitsError(f"{name} must be finite, got {v!r}.")
    if minimum is not None and v < minimum:
        raise NeurocircuitsError(f"{name} must be >= {minimum:g}, got {v!r}.")
    return v


def _lag_grid(lags, max_lag, n_lags, unit: str) -> np.ndarray:
    if lags is None:
        max_lag = _check_scalar(max_lag, "max_lag", minimum=0.0)
        if max_lag <= 0:
            raise NeurocircuitsError(f"max_lag must be > 0 ({unit}), got {max_lag!r}.")
        if isinstance(n_lags, bool) or not isinstance(n_lags, (int, np.integer)) or n_lags < 2:
            raise NeurocircuitsError(f"n_lags must be an integer >= 2, got {n_lags!r}.")
        return np.linspace(0.0, max_lag, int(n_lags))
    arr = np.asarray(lags, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise NeurocircuitsError(
            f"lags must be a non-empty 1-d array of lags in {unit}, got {describe(lags)}."
        )
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise NeurocircuitsError(
            f"lags must be finite and >= 0 ({unit}); got values in [{arr.min()}, {arr.max()}]. "
            "Delta(s) is even in s: pass |s|."
        )
    return arr


# ==============================================================================================
# Public API
# ==============================================================================================
def dmft_solve(
    g: float,
    phi: Callable = tanh,
    *,
    mu: float = 0.0,
    sigma: float = 0.0,
    lags: ArrayLike | None = None,
    max_lag: float = 20.0,
    n_lags: int = 401,
) -> DMFTResult:
    r"""Solve the DMFT of the random rate network; time in units of :math:`\tau`.

    .. math::

        \Delta'' = \Delta - g^2\,C(\Delta;\Delta_0),\quad \Delta(0) = \Delta_0,\quad
        \Delta'(0^+) = -\sigma^2/2,\quad \Delta(s) \to \Delta_\infty = g^2C(\Delta_\infty;\Delta_0)

    (see the module docstring for :math:`C` and the potential :math:`V`).

    Args:
        g: random-coupling gain (>= 0), :math:`J_{ij} \sim \mathcal N(0, g^2/N)`.
        phi: transfer function, a JAX-traceable (or NumPy) elementwise callable; default
            :func:`~neurocircuits.rate.tanh` (the SCS network).
        mu: mean input :math:`\mu` (dimensionless, like ``u``).
        sigma: white-noise amplitude :math:`\sigma` (>= 0), as in
            :class:`~neurocircuits.rate.RateNetwork`; alone it gives ``u`` the variance
            :math:`\sigma^2/2`.
        lags: lags :math:`s \ge 0` in units of :math:`\tau` at which to return :math:`\Delta`;
            default ``linspace(0, max_lag, n_lags)``.
        max_lag, n_lags: the default lag grid.

    Returns:
        A :class:`DMFTResult` (lags and times in units of :math:`\tau`).

    Raises:
        NeurocircuitsError: negative or non-finite ``g`` / ``sigma``, non-finite ``mu``, a
            ``phi`` that is not callable or not finite, or bad ``lags``.

    Without noise, the static (fixed-point) solution is returned when it is stable,
    :math:`g^2\mathbb E[\phi'^2] \le 1`, and the chaotic solution otherwise.

    Example:
        >>> from neurocircuits.rate.theory import dmft_solve
        >>> res = dmft_solve(2.0)            # SCS network, phi = tanh
        >>> res.kind, round(res.delta0, 3), round(res.autocorrelation_time, 2)
        ('chaotic', 1.925, 5.36)

    References:
        Sompolinsky, Crisanti & Sommers, PRL 61, 259 (1988); Mastrogiuseppe & Ostojic, Neuron
        99, 609 (2018); Schuecker, Goedeke & Helias, PRX 8, 041029 (2018).
    """
    g = _check_scalar(g, "g", minimum=0.0)
    sigma = _check_scalar(sigma, "sigma", minimum=0.0)
    mu = _check_scalar(mu, "mu")
    wrapped = _check_phi(phi, mu)
    lags = _lag_grid(lags, max_lag, n_lags, "units of tau")
    return _solve(wrapped, phi, g, mu, sigma, lags)


def _solve(wrapped: _Phi, phi, g, mu, sigma, lags) -> DMFTResult:
    common = dict(g=g, mu=mu, sigma=sigma, tau=1.0, time_unit="tau", lags=lags, phi=phi)

    def static(d0, converged):
        res = abs(g * g * _expect(lambda u: wrapped(u) ** 2, mu, d0) - d0)
        return DMFTResult(
            delta0=d0, delta_inf=d0, delta=np.full(lags.shape, d0),
            mean_rate=_expect(wrapped, mu, d0), kind="zero" if d0 == 0.0 else "static",
            converged=bool(converged and res <= 1e-9 * max(1.0, d0)), residual=float(res),
            autocorrelation_time=math.nan, decay_rate=math.nan, **common,
        )

    d_static = None
    if sigma == 0.0:
        d_static = _static_solution(wrapped, g, mu)
        gain = g * g * _expect(lambda u: wrapped.deriv(u) ** 2, mu, d_static)
        if gain <= 1.0:
            return static(d_static, True)

    found = _fluctuating_solution(wrapped, g, mu, sigma, d_static)
    if found is None:
        if d_static is not None:
            return static(d_static, False)
        raise NeurocircuitsError(
            f"The DMFT found no stationary solution for g = {g:g}, mu = {mu:g}, sigma = "
            f"{sigma:g}: the variance grows without bound (phi grows too fast for this g)."
        )
    d0, p = found
    d_inf = p.r1()
    delta, s_half, lam = _curve(p, d_inf, lags)
    residual = _residuals(wrapped, g, mu, sigma, d0, d_inf)
    return DMFTResult(
        delta0=d0, delta_inf=d_inf, delta=delta, mean_rate=_expect(wrapped, mu, d0),
        kind="noisy" if sigma > 0 else "chaotic",
        converged=bool(residual <= 1e-8 * max(1.0, d0 * d0)), residual=residual,
        autocorrelation_time=s_half, decay_rate=lam, **common,
    )


def dmft(model: RateNetwork, *, mu: float | None = None, lags: ArrayLike | None = None,
         max_lag: float | None = None, n_lags: int = 401,
         ignore_mean_part: bool = False) -> DMFTResult:
    r"""The DMFT of a :class:`~neurocircuits.rate.RateNetwork` with a
    :class:`~neurocircuits.GaussianPlusMean` coupling, in the model's units (ms).

    Reads ``g`` from ``model.coupling.g``, :math:`\phi` from ``model.phi``, the mean input
    :math:`\mu` from ``model.bias`` (a scalar or a uniform vector), :math:`\sigma` from
    ``model.sigma`` (``None`` = 0) and :math:`\tau` from ``model.tau``; then solves
    :func:`dmft_solve`. Lags are in ms: ``lags_ms = lags_tau * tau``; ``autocorrelation_time``
    is in ms and ``decay_rate`` in 1/ms.

    Args:
        model: the network.
        mu: override the mean input (default ``model.bias``).
        lags: lags in ms (>= 0); default ``linspace(0, max_lag, n_lags)``.
        max_lag: longest default lag in ms (default ``20 * tau``).
        n_lags: number of default lags.
        ignore_mean_part: the theory covers the random part :math:`g z_{ij}` only; a coupling
            with a mean part (``J0 != 0`` with ``signs``) raises unless this is ``True``, in
            which case the mean part is ignored (leading order at critical balance, where the
            mean part has no outlier; its O(1) fluctuations are not included).

    Raises:
        NeurocircuitsError: ``model`` is not a ``RateNetwork``, its coupling is not a
            ``GaussianPlusMean`` or has a batched ``g``, a non-uniform ``bias`` without ``mu``,
            a mean part without ``ignore_mean_part=True``, or any argument of
            :func:`dmft_solve` out of range.

    Example:
        >>> import jax, neurocircuits as nc
        >>> from neurocircuits.rate.theory import dmft
        >>> net = nc.rate.RateNetwork.random(jax.random.key(0), 100, g=2.0, phi=nc.rate.tanh,
        ...                                  tau=10.0)
        >>> res = dmft(net)
        >>> res.time_unit, round(res.autocorrelation_time / 10.0, 2)   # in units of tau
        ('ms', 5.36)
    """
    from .._core.connectivity import GaussianPlusMean

    if not isinstance(model, RateNetwork):
        raise NeurocircuitsError(
            f"model must be a neurocircuits.rate.RateNetwork, got {type(model).__name__}."
        )
    coupling = model.coupling
    if not isinstance(coupling, GaussianPlusMean):
        raise NeurocircuitsError(
            f"dmft(model) needs a GaussianPlusMean coupling (random Gaussian J, e.g. from "
            f"RateNetwork.random), got {type(coupling).__name__}; for another coupling call "
            "dmft_solve(g, phi, mu=..., sigma=...) with its effective gain g."
        )
    if np.ndim(coupling.g) != 0:
        raise NeurocircuitsError(
            f"coupling.g must be a scalar, got {describe(coupling.g)}; solve each g of a batch "
            "separately (or use delta0_curve)."
        )
    has_mean = coupling.signs is not None and float(coupling.J0) != 0.0
    if has_mean and not ignore_mean_part:
        raise NeurocircuitsError(
            f"The coupling has a mean part (J0 = {float(coupling.J0):g}); the DMFT here covers "
            "the random part only. Pass ignore_mean_part=True to use it at leading order, or "
            "build the network with J0=0."
        )
    tau = float(model.tau)
    if mu is None:
        bias = np.asarray(model.bias, dtype=np.float64)
        if bias.ndim and not np.allclose(bias, bias.ravel()[0], rtol=0, atol=1e-12):
            raise NeurocircuitsError(
                f"model.bias is not uniform (values in [{bias.min():g}, {bias.max():g}]); the "
                "DMFT needs one mean input: pass mu=... explicitly."
            )
        mu = float(bias.ravel()[0]) if bias.ndim else float(bias)
    sigma = 0.0 if model.sigma is None else float(model.sigma)
    if max_lag is None:
        max_lag = 20.0 * tau
    lags_ms = _lag_grid(lags, max_lag, n_lags, "ms")
    g = _check_scalar(np.asarray(coupling.g), "coupling.g", minimum=0.0)
    mu = _check_scalar(mu, "mu")
    wrapped = _check_phi(model.phi, mu)
    res = _solve(wrapped, model.phi, g, mu, sigma, lags_ms / tau)
    return dataclasses.replace(
        res, tau=tau, time_unit="ms", lags=lags_ms,
        autocorrelation_time=res.autocorrelation_time * tau, decay_rate=res.decay_rate / tau,
    )


def delta0_curve(gs: ArrayLike, phi: Callable = tanh, *, mu: float = 0.0, sigma: float = 0.0,
                 lags: ArrayLike | None = None, max_lag: float = 20.0,
                 n_lags: int = 201) -> DMFTCurve:
    r"""Solve :func:`dmft_solve` over a sweep of ``g`` (e.g. the SCS transition, ``g`` in
    [0.5, 3]); times in units of :math:`\tau`.

    Args:
        gs: 1-d array of gains (>= 0).
        phi, mu, sigma, lags, max_lag, n_lags: as in :func:`dmft_solve`.

    Returns:
        A :class:`DMFTCurve` with arrays ``delta0``, ``delta_inf``, ``autocorrelation_time``,
        ``decay_rate``, ``mean_rate``, ``kind``, ``converged``, ``residual`` and the
        individual ``results``.

    Example:
        >>> import numpy as np
        >>> from neurocircuits.rate.theory import delta0_curve
        >>> curve = delta0_curve(np.array([0.5, 2.0]))
        >>> curve.kind.tolist()
        ['zero', 'chaotic']
    """
    arr = np.asarray(gs, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise NeurocircuitsError(f"gs must be a non-empty 1-d array of gains, got {describe(gs)}.")
    results = tuple(
        dmft_solve(float(g), phi, mu=mu, sigma=sigma, lags=lags, max_lag=max_lag, n_lags=n_lags)
        for g in arr
    )

    def col(name, dtype=np.float64):
        return np.array([getattr(r, name) for r in results], dtype=dtype)

    return DMFTCurve(
        g=arr, delta0=col("delta0"), delta_inf=col("delta_inf"),
        autocorrelation_time=col("autocorrelation_time"), decay_rate=col("decay_rate"),
        mean_rate=col("mean_rate"), kind=col("kind", object).astype(str),
        converged=col("converged", bool), residual=col("residual"), results=results,
    )
