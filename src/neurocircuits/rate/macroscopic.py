r"""Macroscopic (population) level of E/I rate networks: the mean field :math:`h(t)`.

For :math:`J_{ij} = s_j J_0/\sqrt N + g z_{ij}/\sqrt N` every unit receives the same
*macroscopic field*

.. math::

    h(t) = \frac{J_0}{\sqrt N} \sum_j s_j\, \phi(u_j(t)),

which is :math:`O(1)` at critical balance (:math:`\sum_j s_j = 0`) and is held near the balanced
operating point by a strong negative feedback (gain :math:`G \propto \sqrt N`) in
inhibition-dominated networks. This module predicts the statistics of :math:`h` (and of the
module fields of modular networks) from the microscopic dynamic mean-field theory (DMFT). The
derivation is ours (the spec's leading-order route, closed self-consistently); each step is
tested against simulation in ``tests/rate/test_macroscopic.py``:

1. **Microscopic statistics.** At mean input :math:`v`, units are DMFT processes:
   :math:`u_j = v + x_j + \eta_j(t)`, with a quenched part :math:`x_j \sim \mathcal N(0,
   \Delta_\infty)` and a temporal part of autocorrelation :math:`\Delta(\tau) - \Delta_\infty`.
   Unit :math:`j`'s time-averaged rate is :math:`\Psi(x_j) = \mathbb E_\xi\,\phi(v + x_j +
   \sqrt{\Delta_0 - \Delta_\infty}\,\xi)` and its temporal autocovariance is
   :math:`C(\tau) - C_\infty`. Where the DMFT has two solutions (a near-silent fixed point and a
   chaotic state, e.g. :math:`v \lesssim -1.6` for :math:`\phi = 1 + \tanh`, g = 3) the branch
   continued from large activity is used: the near-silent branch cannot carry the O(1) static
   field needed to hold :math:`v` away from 0. Modular networks share one :math:`\Delta(\tau)`
   (the random coupling mixes all modules): a mixture DMFT over the modules' mean inputs.
2. **The static field and its slope are random functions of** :math:`v`:
   :math:`A(v) = \frac{J_0}{\sqrt N}\sum_j s_j\,\bar\phi_j(v) = J_0\sqrt N\,\bar s\,F(v) + \zeta(v)`,
   :math:`\zeta` Gaussian over the quenched randomness with variance :math:`w\,\mathrm{Var}\,\Psi`,
   :math:`w = J_0^2(f + \gamma^2(1-f))`. The slope :math:`K = A'(v)` is **not** only the local
   gain :math:`(J_0/\sqrt N)\sum_j s_j\Psi'_j`: a uniform shift of the input changes every
   unit's rate, which changes every unit's quenched input through the random coupling,
   :math:`\partial x_j/\partial v = \sum_k g z_{jk}\,\partial\bar\phi_k/\partial v/\sqrt N
   = \beta x_j + \varepsilon_j`. The part along :math:`x_j` (:math:`\beta =
   \tfrac12 \Delta_\infty'/\Delta_\infty`) and the change of the temporal variance are mean-field
   responses; the rest, :math:`\varepsilon_j`, is independent of :math:`x_j` with variance
   :math:`q = (g^2\,\mathbb E[b^2] - \beta^2\Delta_\infty)/(1 - a)`, :math:`b = \Psi'(1 + \beta x)
   + \partial_{\Delta_t}\Psi\,\Delta_t'`, :math:`a = g^2\,\mathbb E\,\Psi'^2 < 1`. It adds
   :math:`w\,\mathbb E[\Psi'^2]\,q` to the variance of :math:`K`: 15–20 times the local part
   for the default networks (measured in open-loop simulations: the slope of the time-averaged
   :math:`A(v)` has r.m.s. 2.1, the local gain 0.6; this term predicts 2.0–2.2).
3. **Operating points** solve :math:`v = I + A(v)` and are stable when the loop below is stable.
   Their density over network realisations follows the Kac–Rice formula,
   :math:`\rho(v) \propto p_\zeta(v - I - J_0\sqrt N\bar s F(v))\,
   \mathbb E[|1-K|\,\mathbb 1_{\rm stable} \mid \zeta]`. At critical balance this selects
   strongly negative total slopes (:math:`K \approx -2` to :math:`-3`).
4. **Temporal fluctuations** of :math:`h` are the open-loop sum of the units' temporal
   fluctuations, spectrum :math:`w\,\tilde C_t(\omega)`, closed through the loop
   :math:`\delta h = \delta h_{\rm open}/(1 - L(\omega)\kappa(\omega))`, :math:`L = 1/(1 + i\omega
   \tau)`. The loop gain is a random function of frequency: the local gain acts at all
   frequencies, the propagated part is a sum over paths through the random coupling,
   :math:`\sum_{n\ge1} c_n L^n` with independent :math:`c_n` of variance :math:`\propto a^{n}`:
   slow (its variance falls off as :math:`(1-a)/(1 + \omega^2\tau^2 - a)`; measured in
   open-loop networks with a common white input, tests hold it). Operating points whose loop
   is dynamically unstable (Nyquist: the phase of :math:`1 - L\kappa` winds) are excluded.
   For inhibition-dominated networks :math:`\kappa \approx -G`, :math:`G = J_0\sqrt N |\bar s|
   F'(v^*)`: slow components are suppressed by :math:`1/(1+G)`, fast ones pass.

The predicted time-std of :math:`h` of one network is the square root of its expected sample
variance over a window of length :math:`T` (``t_window``):
:math:`\int S_h(\omega)\,[1 - \mathrm{sinc}^2(\omega T/2)]\,d\omega/2\pi`; the function returns
its mean and median over network realisations, the fraction of networks at a fixed point (DMFT
static solution: :math:`h` does not fluctuate) and the fraction whose std lies below a
threshold, so that simulation and theory average over the same population of networks.
Neglected here (in :func:`macroscopic_fluctuations`): the modulation of the gains by the O(1)
fluctuations of :math:`h` (:func:`modular_fluctuations` includes it, see there: the field, passed
on through the random coupling, adds a slow input variance to every unit that smooths the gains
and weakens the propagated loop gain), finite-size corrections of the microscopic chaos (at
N ≤ 2000 the units' temporal variance is 0.7× the DMFT's at the operating points of the
default critical network; 0.9× at N = 4000), multistability beyond the Kac–Rice count, and
non-Gaussian loop gains.

Reference model: Hayakawa & Fukai, Phys. Rev. Research 2, 013253 (2020) (our reconstruction).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
from numpy.polynomial import Chebyshev
from numpy.polynomial.legendre import leggauss
from scipy import optimize

from .._core.errors import NeurocircuitsError, check_int, check_positive
from .theory import _CHEB_DEGREES, _CHEB_TOL, _corr, _curve, _nodes, _Phi, _Potential

__all__ = ["MacroscopicPrediction", "ModularPrediction", "closed_loop_variance",
           "macroscopic_fluctuations", "modular_fluctuations"]

_LAG_STEP = 0.1   # in units of tau
_MAX_LAG = 60.0
_LAGS = np.arange(0.0, _MAX_LAG + _LAG_STEP / 2, _LAG_STEP)
# angular frequencies in 1/tau: 0, then log-spaced (80 per decade) far enough that L(w) ~ 0
_OMEGA = np.concatenate([[0.0], np.geomspace(1e-5, 1e4, 721)])
_PATH_TOL = 1e-3  # paths of the propagated loop gain kept until a^n < _PATH_TOL
_MAX_PATHS = 4000
_GL_X, _GL_W = leggauss(48)
_GL24 = leggauss(24)


def closed_loop_variance(temporal_autocov: np.ndarray, lag_step: float, gain: float) -> float:
    r"""Variance of :math:`x/(1 - K L(\omega))`, :math:`L = 1/(1 + i\omega)`, for a stationary
    input :math:`x` of autocovariance ``temporal_autocov`` sampled at lags ``0, lag_step, ...``
    (in units of :math:`\tau`). ``gain = 0`` returns ``temporal_autocov[0]`` exactly."""
    c = np.asarray(temporal_autocov, dtype=np.float64)
    sym = np.concatenate([c, c[-2:0:-1]])  # even extension: c(-s) = c(s)
    spec = np.real(np.fft.fft(sym))  # S(omega_k) / lag_step
    omega = 2 * np.pi * np.fft.fftfreq(sym.size, d=lag_step)
    transfer = np.abs((1 + 1j * omega) / (1 + 1j * omega - gain)) ** 2
    return float(np.mean(spec * transfer))


# ==============================================================================================
# spectra on the frequency grid
# ==============================================================================================
def _spectrum(c: np.ndarray, h: float, decay: float, omega: np.ndarray) -> np.ndarray:
    r"""Two-sided spectrum :math:`S(\omega) = \int c(|s|) e^{-i\omega s} ds` of the even
    autocovariance ``c`` (lags ``0, h, 2h, ...``), exact for its piecewise-linear interpolant,
    with an exponential tail :math:`c_K e^{-\lambda(s - s_K)}` beyond the last lag."""
    c = np.asarray(c, dtype=np.float64)
    k = np.arange(c.size)
    s = k * h
    wh = omega * h
    with np.errstate(invalid="ignore", divide="ignore"):
        hat = np.where(wh > 1e-4, 2 * (1 - np.cos(wh)) / (omega**2 * h), h * (1 - wh**2 / 12))
        half_c = np.where(wh > 1e-4, (1 - np.cos(wh)) / (omega**2 * h), h / 2 * (1 - wh**2 / 12))
        half_s = np.where(wh > 1e-4, (wh - np.sin(wh)) / (omega**2 * h), h * wh / 6)
    cosm = np.cos(np.outer(omega, s[1:-1]))
    spec = hat * (c[0] + 2 * cosm @ c[1:-1])
    sk = s[-1]
    spec += 2 * c[-1] * (np.cos(omega * sk) * half_c + np.sin(omega * sk) * half_s)
    if c[-1] > 0 and decay > 0:
        spec += 2 * c[-1] * (decay * np.cos(omega * sk) - omega * np.sin(omega * sk)) / (
            decay**2 + omega**2)
    return spec


def _integrate(y: np.ndarray) -> np.ndarray:
    r""":math:`\frac1\pi\int_0^\infty y\,d\omega` (trapezoid on ``_OMEGA``), over the last axis:
    the variance of a process whose two-sided spectrum is even and equals ``y``."""
    return np.trapezoid(y, _OMEGA, axis=-1) / np.pi


def _window(t_window: float | None) -> np.ndarray:
    r"""Expected sample variance over a window T: the spectrum times
    :math:`1 - \mathrm{sinc}^2(\omega T/2)` (the window's mean is subtracted)."""
    if t_window is None:
        return np.ones_like(_OMEGA)
    return 1.0 - np.sinc(_OMEGA * t_window / (2 * np.pi)) ** 2


# ==============================================================================================
# mixture DMFT: populations with their own mean inputs, one shared random-input statistics
# ==============================================================================================
class _MixPotential(_Potential):
    r"""``h(D) = g^2 sum_b w_b C(D; d0, mu_b) - D`` on ``[0, d0]`` as a Chebyshev series (the
    potential of :mod:`neurocircuits.rate.theory` for a mixture of mean inputs)."""

    def __init__(self, phi: _Phi, g: float, mus, weights, sigma: float, d0: float):
        self.g, self.mu, self.sigma, self.d0 = g, None, sigma, d0
        g2 = g * g
        vals = None
        poly = None
        for deg in _CHEB_DEGREES:
            t = np.cos(np.pi * np.arange(deg + 1) / deg)
            dd = 0.5 * d0 * (t + 1.0)
            if vals is None:
                vals = g2 * _mix_corr(phi, mus, weights, dd, d0) - dd
            else:
                new = np.empty(deg + 1)
                new[::2] = vals
                new[1::2] = g2 * _mix_corr(phi, mus, weights, dd[1::2], d0) - dd[1::2]
                vals = new
            poly = Chebyshev.fit(dd, vals, deg, domain=[0.0, d0])
            c = np.abs(poly.coef)
            if c[-4:].max() <= _CHEB_TOL * c.max() + 1e-300:
                break
        self.h = poly
        self.h0 = float(vals[-1])
        self.dh = poly.deriv()
        self.H = poly.integ()
        self._r1 = None
        self._r1_done = False


def _mix_corr(phi, mus, weights, d, d0):
    return sum(w * _corr(phi, mu, d, d0) for mu, w in zip(mus, weights))


def _mix_moment(fn, mus, weights, var):
    r""":math:`\sum_b w_b\,\mathbb E[fn(\mu_b + \sqrt{var}\,z)]`."""
    x, w = _nodes(var)
    sd = math.sqrt(max(var, 0.0))
    return float(sum(wb * (w @ fn(mu + sd * x)) for mu, wb in zip(mus, weights)))


@dataclasses.dataclass(frozen=True)
class _MixSolution:
    kind: str            # "chaotic", "noisy" or "static"
    delta0: float
    delta_inf: float
    delta: np.ndarray    # at _LAGS
    decay_rate: float    # 1/tau (nan for static)
    converged: bool
    residual: float


def _upper_static_root(phi: _Phi, g: float, mus, weights) -> float:
    r"""The largest root of :math:`g^2\sum_b w_b\mathbb E\phi(\mu_b + \sqrt\Delta z)^2 = \Delta`
    (the static solution continued from large activity)."""
    def f(d):
        return g * g * _mix_moment(lambda u: phi(u) ** 2, mus, weights, d) - d

    scale = max(g * g * _mix_moment(lambda u: phi(u) ** 2, mus, weights, 1.0), 1e-3)
    grid = scale * np.geomspace(1e-9, 1e6, 301)
    vals = np.array([f(d) for d in grid])
    if vals[-1] > 0:
        raise NeurocircuitsError(
            f"No static DMFT solution: g^2 E[phi^2] - Delta stays positive up to Delta = "
            f"{grid[-1]:.3g} (g = {g:g}); phi grows too fast for this g (the network diverges).")
    down = np.nonzero((vals[:-1] > 0) & (vals[1:] <= 0))[0]
    if down.size == 0:  # f <= 0 everywhere: the zero solution
        return 0.0
    i = int(down[-1])
    return float(optimize.brentq(f, grid[i], grid[i + 1], xtol=1e-14 * grid[i + 1],
                                 rtol=1e-13))


def _mix_fluctuating(phi, g, mus, weights, sigma, scale):
    """Delta0 of the decaying (chaotic or noise-driven) solution of the mixture (brentq on the
    energy, as in :mod:`neurocircuits.rate.theory`), searching from ``scale``."""
    cache: dict[float, _MixPotential] = {}

    def pot(d0):
        if d0 not in cache:
            cache[d0] = _MixPotential(phi, g, mus, weights, sigma, d0)
        return cache[d0]

    def energy(d0):
        return pot(d0).energy()

    hi = scale
    for _ in range(12):
        if energy(hi) < 0:
            break
        hi *= 4.0
    else:
        return None
    lo = hi / 2.0
    while energy(lo) <= 0:
        hi, lo = lo, lo / 2.0
        if lo < 1e-14 * scale:
            return None
    d0 = float(optimize.brentq(energy, lo, hi, xtol=1e-10 * hi, rtol=1e-10))
    p = pot(d0)
    r1 = p.r1()
    if r1 is None or r1 >= d0:
        return None
    return d0, p


def _mix_residuals(phi, g, mus, weights, sigma, d0, d_inf, nodes=(_GL_X, _GL_W)):
    """(fixed-point residual, energy residual) of a fluctuating mixture solution."""
    g2 = g * g
    gx, gw = nodes
    r_fixed = g2 * _mix_corr(phi, mus, weights, [d_inf], d0)[0] - d_inf
    dd = d_inf + 0.5 * (d0 - d_inf) * (gx + 1.0)
    integral = 0.5 * (d0 - d_inf) * float(gw @ (g2 * _mix_corr(phi, mus, weights, dd, d0)
                                                - dd))
    return np.array([r_fixed, sigma**4 / 8.0 + integral])


def _mix_solve(g: float, phi: _Phi, mus, weights, sigma: float) -> _MixSolution:
    mus = [float(m) for m in mus]
    if sigma == 0.0:
        d_hi = _upper_static_root(phi, g, mus, weights)
        gain = g * g * _mix_moment(lambda u: phi.deriv(u) ** 2, mus, weights, d_hi)
        res = abs(g * g * _mix_moment(lambda u: phi(u) ** 2, mus, weights, d_hi) - d_hi)
        static = _MixSolution("static", d_hi, d_hi, np.full(_LAGS.shape, d_hi), math.nan,
                              bool(res <= 1e-9 * max(1.0, d_hi)), float(res))
        if gain <= 1.0:
            return static
        found = _mix_fluctuating(phi, g, mus, weights, 0.0, 1.25 * d_hi)
        if found is None:
            return dataclasses.replace(static, converged=False)
    else:
        scale = max(2.0 * g * g * _mix_moment(lambda u: phi(u) ** 2, mus, weights, 1.0),
                    sigma**2, 1e-3)
        found = _mix_fluctuating(phi, g, mus, weights, sigma, scale)
        if found is None:
            raise NeurocircuitsError(
                f"The DMFT found no stationary solution for g = {g:g}, sigma = {sigma:g} at mean "
                f"inputs {mus}: the variance grows without bound.")
    d0, p = found
    d_inf = p.r1()
    delta, _, lam = _curve(p, d_inf, _LAGS)
    residual = float(np.max(np.abs(_mix_residuals(phi, g, mus, weights, sigma, d0, d_inf))))
    return _MixSolution("noisy" if sigma > 0 else "chaotic", d0, d_inf, delta, lam,
                        bool(residual <= 1e-8 * max(1.0, d0 * d0)), residual)


def _mean_field_derivatives(sol: _MixSolution, phi, g, mus, weights, sigma):
    r""":math:`(\partial\Delta_\infty/\partial\mu_c, \partial\Delta_t/\partial\mu_c)` for every
    population c, by implicit differentiation of the DMFT conditions (finite differences of
    their residuals; no further solves)."""
    m = len(mus)
    if sol.kind == "static":
        d = sol.delta0

        def res(dd, mu_list):
            return g * g * _mix_moment(lambda u: phi(u) ** 2, mu_list, weights, dd) - dd

        e = 1e-5 * max(d, 1e-3)
        dr_dd = (res(d + e, mus) - res(max(d - e, 0.0), mus)) / (d + e - max(d - e, 0.0))
        out = np.zeros((m, 2))
        for c in range(m):
            hi = list(mus)
            lo = list(mus)
            hi[c] += 1e-5
            lo[c] -= 1e-5
            dr = (res(d, hi) - res(d, lo)) / 2e-5
            out[c, 0] = -dr / dr_dd if dr_dd != 0 else 0.0
        return out
    d0, di = sol.delta0, sol.delta_inf
    e0, ei = 1e-5 * d0, 1e-5 * max(di, 1e-3 * d0)

    def res(a, b, mu_list):  # smooth in every argument: 24 Gauss-Legendre nodes suffice
        return _mix_residuals(phi, g, mu_list, weights, sigma, a, b, nodes=_GL24)

    jac = np.column_stack([(res(d0 + e0, di, mus) - res(d0 - e0, di, mus)) / (2 * e0),
                           (res(d0, di + ei, mus) - res(d0, di - ei, mus)) / (2 * ei)])
    out = np.zeros((m, 2))
    for c in range(m):
        hi = list(mus)
        lo = list(mus)
        hi[c] += 1e-5
        lo[c] -= 1e-5
        dr = (res(d0, di, hi) - res(d0, di, lo)) / 2e-5
        dd0, ddi = -np.linalg.solve(jac, dr)
        out[c] = ddi, dd0 - ddi
    return out


_POINT_CACHE: dict = {}
_DRAW_CACHE: dict = {}
_POINT_CACHE_SIZE = 4000


def _operating_point(g: float, phi: _Phi, mus, weights, sigma: float) -> _OperatingPoint:
    """:class:`_OperatingPoint`, cached across calls (the critical network's prediction does not
    depend on N, and the experiments ask for it at every N)."""
    key = (float(g), phi.fn, tuple(round(float(m), 12) for m in mus),
           tuple(round(float(w), 14) for w in weights), float(sigma))
    try:
        return _POINT_CACHE[key]
    except (KeyError, TypeError):
        pass
    pt = _OperatingPoint(g, phi, mus, weights, sigma)
    try:
        if len(_POINT_CACHE) >= _POINT_CACHE_SIZE:
            _POINT_CACHE.clear()
        _POINT_CACHE[key] = pt
    except TypeError:  # unhashable phi
        pass
    return pt


class _OperatingPoint:
    r"""Microscopic statistics of M populations at mean inputs ``mus`` (one shared DMFT).

    Per population b, over its units (quenched input :math:`x \sim N(0, \Delta_\infty)`):
    ``F[b]`` = E Psi, ``dF[b, c]`` = d F_b / d mu_c (mean-field total), ``cov[b]`` the
    covariance of (Psi, Psi', m^1..m^M) with the mean-field responses
    :math:`m^c = \Psi'\beta_c x + \partial_{\Delta_t}\Psi\,\Delta_t'^{(c)}`, ``e_dpsi2[b]`` =
    E Psi'^2, ``mean_dpsi[b]`` = E Psi'; ``a`` and ``q[c]`` (variance of the propagated response
    to population c); ``ct0[b]`` the temporal variance of a unit's rate and ``spec[b]`` its
    spectrum on ``_OMEGA``.
    """

    def __init__(self, g: float, phi: _Phi, mus, weights, sigma: float):
        mus = [float(m) for m in mus]
        weights = np.asarray(weights, dtype=np.float64)
        m = len(mus)
        sol = _mix_solve(g, phi, mus, weights, sigma)
        self.sol = sol
        self.kind = sol.kind
        self.converged = sol.converged
        self.residual = sol.residual
        self._g, self._phi, self._mus, self._weights = g, phi, mus, weights
        self._deriv = _mean_field_derivatives(sol, phi, g, mus, weights, sigma)
        di = sol.delta_inf
        self.ct0 = np.zeros(m)
        self.spec = np.zeros((m, _OMEGA.size))
        if sol.kind != "static":
            for b, mu in enumerate(mus):
                # C(Delta) on [Delta_inf, Delta0] is smooth: Chebyshev interpolation, then C(s)
                nodes = di + 0.5 * (sol.delta0 - di) * (np.cos(np.pi * np.arange(33) / 32) + 1)
                cheb = Chebyshev.fit(nodes, _corr(phi, mu, nodes, sol.delta0), 32,
                                     domain=[di, sol.delta0])
                temporal = np.maximum(cheb(np.clip(sol.delta, di, sol.delta0)) - cheb(di), 0.0)
                self.ct0[b] = temporal[0]
                self.spec[b] = _spectrum(temporal, _LAG_STEP, sol.decay_rate, _OMEGA)
        self.extra = np.zeros(m)
        self._averages(self.extra)

    def smoothed(self, extra) -> _OperatingPoint:
        r"""The same operating point with an extra slow Gaussian input of variance ``extra[b]``
        to every unit of population b (the field-driven input, see
        :func:`modular_fluctuations`): the gain statistics are averages over the total input
        distribution (Bussgang); the DMFT solution and the chaotic spectrum are kept."""
        out = object.__new__(_OperatingPoint)
        out.__dict__.update(self.__dict__)
        out.extra = np.maximum(np.asarray(extra, dtype=np.float64), 0.0)
        out._averages(out.extra)
        return out

    def _averages(self, extra):
        g, phi, mus, weights, sol, deriv = (self._g, self._phi, self._mus, self._weights,
                                            self.sol, self._deriv)
        m = len(mus)
        di, dt = sol.delta_inf, sol.delta0 - sol.delta_inf
        dt = max(dt, 0.0) if sol.kind != "static" else 0.0
        beta = 0.5 * deriv[:, 0] / di if di > 0 else np.zeros(m)
        dt_p = deriv[:, 1] if sol.kind != "static" else np.zeros(m)
        zx, zw = _nodes(di)
        x = math.sqrt(max(di, 0.0)) * zx
        self.F = np.zeros(m)
        self.mean_dpsi = np.zeros(m)
        self.e_dpsi2 = np.zeros(m)
        self.var_psi = np.zeros(m)
        self.dF = np.zeros((m, m))
        self.cov = np.zeros((m, 2 + m, 2 + m))
        base_all = []
        for b, mu in enumerate(mus):
            smooth = dt + float(extra[b])
            xx, xw = _nodes(smooth)
            sd = math.sqrt(smooth)
            u = mu + x[:, None] + sd * xx[None, :]
            psi = phi(u) @ xw
            dpsi = phi.deriv(u) @ xw
            dpsi_dt = (phi.deriv(u) @ (xw * xx)) / (2 * sd) if sd > 1e-9 else np.zeros_like(psi)
            mf = dpsi[None, :] * beta[:, None] * x[None, :] + dpsi_dt[None, :] * dt_p[:, None]
            rows = np.vstack([psi, dpsi, mf])
            mean = rows @ zw
            centred = rows - mean[:, None]
            self.cov[b] = (centred * zw) @ centred.T
            self.F[b] = mean[0]
            self.mean_dpsi[b] = mean[1]
            self.var_psi[b] = self.cov[b][0, 0]
            self.e_dpsi2[b] = float(zw @ dpsi**2)
            self.dF[b] = mean[2:] + np.eye(m)[b] * mean[1]
            base_all.append((psi, dpsi, mf))
        self.a = g * g * float(weights @ self.e_dpsi2)
        # propagated response: (1 - a) q_c = g^2 sum_b w_b E[base_b^c 2] - beta_c^2 Delta_inf
        self.q = np.zeros(m)
        for c in range(m):
            second = 0.0
            for b, (_, dpsi, mf) in enumerate(base_all):
                base = dpsi * (1.0 if b == c else 0.0) + mf[c]
                second += weights[b] * float(zw @ base**2)
            num = g * g * second - beta[c] ** 2 * di
            self.q[c] = max(num, 0.0) / (1.0 - self.a) if self.a < 1 else math.inf


# ==============================================================================================
# the random loop gain and the closed loop
# ==============================================================================================
def _conditional(cov: np.ndarray, x_scale: float, x_value: float):
    """Mean and covariance of the gain components given the static field component (index 0)
    of a Gaussian with covariance ``x_scale * cov`` takes ``x_value``."""
    c = x_scale * cov
    var_x = c[0, 0]
    if var_x <= 1e-300:
        return np.zeros(c.shape[0] - 1), c[1:, 1:], var_x
    cross = c[0, 1:]
    return cross / var_x * x_value, c[1:, 1:] - np.outer(cross, cross) / var_x, var_x


def _sample_gains(points, scales, drives, fluct, rng, n_each):
    r"""Loop gains :math:`\kappa_{bc}(\omega)` (shape ``(S, W, M, M)``) for ``S = len(points) *
    n_each`` samples: ``points[i]`` the operating point of sample block i, ``fluct[i]`` (M,) the
    static field fluctuations that make it a fixed point, ``scales`` (M,) = p_b s2_b,
    ``drives`` (M,) = sqrt(N) p_b sbar_b."""
    m = len(scales)
    lo = 1.0 / (1.0 + 1j * _OMEGA)
    out = np.zeros((len(points) * n_each, _OMEGA.size, m, m), dtype=np.complex128)
    for i, pt in enumerate(points):
        sl = slice(i * n_each, (i + 1) * n_each)
        a = min(pt.a, 1 - 1e-9)
        slow = (1 - a) * lo / (1 - a * lo)  # conditional shape of the propagated part
        for b in range(m):
            mean, cov, _ = _conditional(pt.cov[b], scales[b], fluct[i][b])
            cov = 0.5 * (cov + cov.T)
            evals, evecs = np.linalg.eigh(cov)
            root = evecs * np.sqrt(np.clip(evals, 0, None))
            draw = mean + rng.standard_normal((n_each, cov.shape[0])) @ root.T  # (Psi', m^1..)
            bare = draw[:, 0] + drives[b] * pt.mean_dpsi[b]
            mf = draw[:, 1:] + drives[b] * (pt.dF[b] - np.eye(m)[b] * pt.mean_dpsi[b])
            out[sl, :, b, b] += bare[:, None]
            out[sl, :, b, :] += mf[:, None, :] * slow[None, :, None]
            var_eps = scales[b] * pt.e_dpsi2[b] * pt.q  # (M,) per column c
            if np.all(var_eps <= 0) or pt.a <= 0:
                continue
            n_paths = int(min(_MAX_PATHS, max(2, math.ceil(math.log(_PATH_TOL) / math.log(a)))))
            sd = np.sqrt(var_eps[None, :] * (1 - a) * a ** np.arange(n_paths)[:, None])  # (n, M)
            coef = rng.standard_normal((n_each, n_paths, m)) * sd[None]
            acc = np.zeros((n_each, _OMEGA.size, m), dtype=np.complex128)
            for k in range(n_paths - 1, -1, -1):
                acc = (acc + coef[:, None, k, :]) * lo[None, :, None]
            out[sl, :, b, :] += acc
    return out


def _stable(loop: np.ndarray) -> np.ndarray:
    r"""Which closed loops :math:`\det(1 - L J^0\kappa(\omega))` are stable: the static loop
    :math:`J^0\kappa(0)` has all eigenvalues' real parts below 1 and the Nyquist curve of the
    determinant over :math:`\omega \in [0, \infty)` does not wind (``loop``: ``L J^0 kappa``,
    shape ``(S, W, M, M)``)."""
    m = loop.shape[-1]
    static = np.linalg.eigvals(loop[:, 0].real)
    ok = np.all(static.real < 1, axis=-1)
    det = np.linalg.det(np.eye(m)[None, None] - loop)
    phase = np.unwrap(np.angle(det), axis=1)
    winding = np.round((phase[:, -1] - phase[:, 0]) / np.pi)
    return ok & (winding == 0)


# ==============================================================================================
# single population
# ==============================================================================================
@dataclasses.dataclass(frozen=True, eq=False)
class MacroscopicPrediction:
    """Predicted statistics of the macroscopic field ``h`` (dimensionless, like ``u``) over
    network realisations.

    Attributes:
        h_std: mean over networks of the time-std of ``h`` (networks at a fixed point count 0).
        h_std_median: its median over networks.
        h_std_quartiles: its 25% and 75% quantiles over networks.
        h_std_fluctuating: mean over the networks in the chaotic (fluctuating) state.
        fixed_point_fraction: fraction of networks at a fixed point (DMFT static solution).
        quiescent_fraction: fraction of networks whose time-std is below ``quiescent_threshold``.
        h_std_open_loop: the time-std without the loop at the most likely chaotic operating point.
        h_mean_rms: root-mean-square over networks of the time-mean of ``h``.
        mean_input: the most likely operating point ``v`` (mean input to every unit).
        gain_mean, gain_std: mean and s.d. over networks of the total static loop gain
            ``K = A'(v)`` (local plus propagated through the random coupling).
        gain_local_mean: mean of the local gain ``(J0/sqrt N) sum_j s_j phi'(u_j)`` (what a
            simulation reads off directly).
        mean_rate: ``E phi`` at the most likely operating point.
        v_grid, density: the Kac–Rice density of operating points.
        unstable_fraction: Kac–Rice weight removed because the loop was dynamically unstable.
        converged: every DMFT solve converged and the density was resolved.
        residual: the largest DMFT residual.
    """

    h_std: float
    h_std_median: float
    h_std_quartiles: tuple[float, float]
    h_std_fluctuating: float
    fixed_point_fraction: float
    quiescent_fraction: float
    h_std_open_loop: float
    h_mean_rms: float
    mean_input: float
    gain_mean: float
    gain_std: float
    gain_local_mean: float
    mean_rate: float
    v_grid: np.ndarray
    density: np.ndarray
    unstable_fraction: float
    converged: bool
    residual: float


def _weighted_quantiles(values, weights, qs):
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    cum /= cum[-1]
    return [float(values[order][min(np.searchsorted(cum, q), len(values) - 1)]) for q in qs]


def macroscopic_fluctuations(
    *, g: float, J0: float, f: float, gamma: float, n: int, bias: float = 0.0,
    phi: Callable | None = None, sigma: float = 0.0, n_grid: int = 41,
    t_window: float | None = None, quiescent_threshold: float = 0.02, n_loop: int = 300,
    seed: int = 0,
) -> MacroscopicPrediction:
    r"""Predict the statistics of the macroscopic field of an E/I rate network.

    Args:
        g: random-coupling gain.
        J0: mean-coupling strength (> 0).
        f: excitatory fraction; ``gamma``: inhibitory relative strength (critical balance at
            ``gamma = f / (1 - f)``).
        n: number of units N (the feedback gain of unbalanced networks grows as sqrt(N)).
        bias: the constant input I to every unit (for inhibition-dominated networks drive it as
            ``I0 * sqrt(N)`` to keep them active).
        phi: transfer function (default 1 + tanh).
        sigma: white-noise amplitude.
        n_grid: operating points in the Kac–Rice average.
        t_window: length of the measurement window in units of tau (``None``: infinite); the
            prediction is the expected sample std over such a window.
        quiescent_threshold: the std below which a network counts as quiescent.
        n_loop: loop-gain samples per operating point (Monte Carlo quadrature).
        seed: NumPy seed of that quadrature (the result is deterministic given it).

    Returns:
        A :class:`MacroscopicPrediction`.

    Example:
        >>> from neurocircuits.rate.macroscopic import macroscopic_fluctuations
        >>> p = macroscopic_fluctuations(g=3.0, J0=1.0, f=0.8, gamma=4.0, n=4000, n_grid=9,
        ...                              n_loop=50)
        >>> 0.05 < p.h_std < 1.0
        True
    """
    from .models import one_plus_tanh

    phi = one_plus_tanh if phi is None else phi
    check_positive(g, "g")
    check_int(n, "n", minimum=2)
    if not 0 < f < 1:
        raise NeurocircuitsError(f"f must lie in (0, 1), got {f!r}.")
    check_positive(gamma, "gamma")
    if not J0 > 0:
        raise NeurocircuitsError(
            f"J0 must be > 0, got {J0!r}: without a mean part the macroscopic field is zero.")
    if t_window is not None:
        check_positive(t_window, "t_window")
    check_int(n_grid, "n_grid", minimum=3)
    check_int(n_loop, "n_loop", minimum=10)
    wrapped = _Phi(phi)
    n_exc = round(f * n)
    s2 = (n_exc + gamma**2 * (n - n_exc)) / n
    s_bar = (n_exc - gamma * (n - n_exc)) / n
    w = J0**2 * s2
    drive_x = math.sqrt(n) * s_bar  # X = A / J0 has mean sqrt(N) sbar F(v)
    cache: dict[float, _OperatingPoint] = {}

    def point(v: float) -> _OperatingPoint:
        key = round(v, 12)
        if key not in cache:
            cache[key] = _operating_point(g, wrapped, [v], [1.0], sigma)
        return cache[key]

    def mismatch(v):
        return v - bias - J0 * drive_x * point(v).F[0]

    centre = bias
    if abs(drive_x) > 1e-12:
        lo, hi = min(-20.0, bias - 20.0), max(20.0, bias + 20.0)
        try:
            centre = optimize.brentq(mismatch, lo, hi, xtol=1e-6)
        except ValueError as err:
            raise NeurocircuitsError(
                f"No balanced operating point in [{lo}, {hi}] for drive J0*sqrt(N)*(f - gamma(1-f))"
                f" = {J0 * drive_x:.3g} and bias = {bias:.3g}: the network is silent or "
                "saturated. Drive an inhibition-dominated network with bias ~ I0 * sqrt(N)."
            ) from err
    if point(centre).mean_dpsi[0] < 1e-6:
        raise NeurocircuitsError(
            f"The operating point v = {centre:.3g} (bias = {bias:.3g}) leaves the units silent or "
            f"saturated (mean gain phi' = {point(centre).mean_dpsi[0]:.2g}): no balanced operating "
            "point with fluctuating rates. Drive an inhibition-dominated network with bias ~ "
            "I0 * sqrt(N), I0 > 0."
        )
    sd = math.sqrt(max(w * point(centre).var_psi[0], 1e-12))
    slope = abs(1 - J0 * drive_x * point(centre).dF[0, 0])
    half = 5 * sd / max(slope, 1e-9)
    # first pass: where can the static field hold the network at all (p_zeta not negligible)?
    coarse = np.linspace(centre - half, centre + half, n_grid // 2 + 1)
    log_pz = []
    for v in coarse:
        p = point(float(v))
        var_x = s2 * p.var_psi[0]
        fl = (v - bias) / J0 - drive_x * p.F[0]
        log_pz.append(-0.5 * fl**2 / var_x - 0.5 * math.log(var_x) if var_x > 1e-14 else -np.inf)
    log_pz = np.asarray(log_pz)
    inside = np.nonzero(log_pz > np.max(log_pz) - 15.0)[0]
    step = coarse[1] - coarse[0]
    v_grid = np.linspace(coarse[inside[0]] - step, coarse[inside[-1]] + step, n_grid)
    rng = np.random.default_rng(seed)
    win = _window(t_window)
    lo_pass = 1.0 / (1.0 + 1j * _OMEGA)
    log_dens, rows = [], []
    for v in v_grid:
        p = point(float(v))
        var_x = s2 * p.var_psi[0]
        fluct = (v - bias) / J0 - drive_x * p.F[0]  # the static fluctuation needed
        if var_x <= 1e-14:
            log_dens.append(-np.inf)
            rows.append(None)
            continue
        kappa = _sample_gains([p], np.array([s2]), np.array([drive_x]), [np.array([fluct])],
                              rng, n_loop)[:, :, 0, 0]
        loop = (J0 * lo_pass)[None] * kappa
        stable = _stable(loop[:, :, None, None])
        k0 = J0 * kappa[:, 0].real
        weight = np.abs(1 - k0) * stable
        var = w * _integrate(p.spec[0] * win / np.abs(1 - loop) ** 2)
        std = np.sqrt(np.maximum(var, 0.0))
        local = J0 * kappa[:, -1].real  # kappa(w -> inf): the local (bare) gain
        norm = float(weight.mean())
        log_dens.append(-0.5 * fluct**2 / var_x - 0.5 * math.log(var_x)
                        + (math.log(norm) if norm > 0 else -np.inf))
        rows.append(dict(std=std, weight=weight, k0=k0, local=local,
                         unstable=float(np.mean(np.abs(1 - k0) * (k0 < 1) * ~stable))
                         / max(float(np.mean(np.abs(1 - k0) * (k0 < 1))), 1e-300)))
    log_dens = np.asarray(log_dens)
    if not np.any(np.isfinite(log_dens)):
        raise NeurocircuitsError(
            "No stable operating point on the grid: the static field cannot hold the network "
            f"at any v in [{v_grid[0]:.3g}, {v_grid[-1]:.3g}].")
    dens = np.exp(log_dens - np.max(log_dens))
    dens /= dens.sum()
    # pool the samples of every grid point with weights density * (Kac–Rice weight share)
    stds, wts, k0s, locs, chaotic = [], [], [], [], []
    unstable = 0.0
    for d, r, v in zip(dens, rows, v_grid):
        if r is None or d <= 0 or r["weight"].sum() <= 0:
            continue
        share = d * r["weight"] / r["weight"].sum()
        stds.append(r["std"])
        wts.append(share)
        k0s.append(r["k0"])
        locs.append(r["local"])
        chaotic.append(np.full(r["std"].shape, point(float(v)).kind != "static"))
        unstable += d * r["unstable"]
    stds, wts, k0s, locs, chaotic = map(np.concatenate, (stds, wts, k0s, locs, chaotic))
    wts = wts / wts.sum()
    h_std = float(wts @ stds)
    median, q25, q75 = (_weighted_quantiles(stds, wts, [0.5, 0.25, 0.75]))
    fp = float(wts @ ~chaotic)
    fluct_mean = float((wts * chaotic) @ stds / max(float(wts @ chaotic), 1e-300))
    gain_mean = float(wts @ k0s)
    gain_std = math.sqrt(max(float(wts @ k0s**2) - gain_mean**2, 0.0))
    chaotic_v = [v for v in v_grid if point(float(v)).kind != "static"]
    best = v_grid[int(np.argmax(dens))]
    ref = point(float(min(chaotic_v, key=lambda x: abs(x - best)) if chaotic_v else best))
    residual = max(pt.residual for pt in cache.values())
    return MacroscopicPrediction(
        h_std=h_std,
        h_std_median=median,
        h_std_quartiles=(q25, q75),
        h_std_fluctuating=fluct_mean,
        fixed_point_fraction=fp,
        quiescent_fraction=float(wts @ (stds < quiescent_threshold)),
        h_std_open_loop=math.sqrt(w * ref.ct0[0]),
        h_mean_rms=math.sqrt(float(np.sum(dens * (v_grid - bias) ** 2))),
        mean_input=float(best),
        gain_mean=gain_mean,
        gain_std=gain_std,
        gain_local_mean=float(wts @ locs),
        mean_rate=float(point(float(best)).F[0]),
        v_grid=v_grid,
        density=dens,
        unstable_fraction=float(unstable),
        converged=bool(all(pt.converged for pt in cache.values()) and dens[0] < 1e-3
                       and dens[-1] < 1e-3),
        residual=float(residual),
    )


# ==============================================================================================
# modular networks
# ==============================================================================================
def _point_draws(pt, fluct, J0, scales, drives, win, rng, n_loop):
    """Kac–Rice weights (n_loop,) and statistics (n_loop, 3, M, M) of ``n_loop`` loop-gain draws
    at one operating point: unit variance (diagonal), module covariance, field variance
    (diagonal); and the field-driven input variance of a unit of each module (n_loop, M):
    the module inputs filtered by the unit, directly and through the random coupling."""
    m = len(scales)
    eye = np.eye(m)
    lo_pass = 1.0 / (1.0 + 1j * _OMEGA)
    kappa = _sample_gains([pt], scales, drives, [fluct], rng, n_loop)   # (K, W, M, M)
    loop = lo_pass[None, :, None, None] * np.einsum("ab,kwbc->kwac", J0, kappa)
    stable = _stable(loop)
    kr = np.abs(np.linalg.det(eye[None] - loop[:, 0].real)) * stable
    stats = np.zeros((n_loop, 3, m, m))  # unit_var (diag), pair_cov, field_var (diag)
    slow = (1 - pt.a) * lo_pass / (1 - pt.a * lo_pass)
    rate = lo_pass[:, None, None] * (np.diag(pt.mean_dpsi)[None]
                                     + (pt.dF - np.diag(pt.mean_dpsi))[None]
                                     * slow[:, None, None])              # (W, M, M)
    s_x = scales[None, :] * pt.spec.T                                    # (W, M)
    intrinsic = _integrate(pt.spec * win[None])
    a = min(pt.a, 1 - 1e-9)
    prop = (1 - a) * np.minimum(pt.q, 1e12)[None, :] / (1 + _OMEGA**2 - a)[:, None]   # (W, M)
    extra = np.zeros((n_loop, m))
    for k in np.nonzero(kr > 0)[0]:
        resp = np.linalg.solve(eye[None] - loop[k], np.broadcast_to(J0, loop[k].shape))
        s_v = np.einsum("wab,wb,wcb->wac", resp, s_x, resp.conj())          # (W, M, M)
        s_m = np.einsum("wab,wbc,wdc->wad", rate, s_v, rate.conj())
        s_vv = np.real(np.einsum("waa->wa", s_v))                           # (W, M)
        # input of a unit of module b driven by the module inputs: directly, and through the
        # random coupling (the propagated response eps^(c), variance (1-a) q_c / (1 + w^2 - a))
        s_in = s_vv + np.sum(prop * s_vv, axis=1, keepdims=True)
        extra[k] = _integrate((np.abs(lo_pass)[:, None] ** 2 * s_in * win[:, None]).T)
        driven = pt.e_dpsi2 * extra[k]
        stats[k, 0] = np.diag(intrinsic + driven)
        stats[k, 1] = np.real(_integrate(np.moveaxis(s_m, 0, -1) * win))
        stats[k, 2] = np.diag(_integrate((s_vv * win[:, None]).T))
    return kr, stats, extra


def _smoothed_draws(pt0, fluct, J0, scales, drives, win, seed, n_loop, n_iter):
    r"""The draws of :func:`_point_draws` at an operating point whose gain statistics are
    averaged over the field-driven input as well (self-consistent: the field's fluctuations
    set the units' extra input variance, which sets the gains, which set the loop, which sets
    the field). Damped fixed-point iteration on the Kac–Rice-weighted median of the extra
    variance over the draws; the same random numbers in every iteration. ``n_iter = 0``: no
    smoothing (the linear theory)."""
    key = (id(pt0), np.asarray(fluct, np.float64).tobytes(), np.asarray(J0).tobytes(),
           np.asarray(scales).tobytes(), np.asarray(drives).tobytes(), win.tobytes(), int(seed),
           n_loop, n_iter)
    if key in _DRAW_CACHE and _DRAW_CACHE[key][0] is pt0:
        return _DRAW_CACHE[key][1]
    if len(_DRAW_CACHE) >= _POINT_CACHE_SIZE:
        _DRAW_CACHE.clear()
    ext = np.zeros(len(scales))
    pt = pt0
    out = _point_draws(pt, fluct, J0, scales, drives, win, np.random.default_rng(seed), n_loop)
    for _ in range(n_iter):
        kr, _, extra = out
        if kr.sum() <= 0:
            break
        w = kr / kr.sum()
        new = np.array([_weighted_quantiles(extra[:, b], w, [0.5])[0]
                        for b in range(len(scales))])
        if np.all(np.abs(new - ext) <= 0.02 * (0.05 + ext)):
            break
        ext = 0.5 * (ext + new)
        pt = pt0.smoothed(ext)
        out = _point_draws(pt, fluct, J0, scales, drives, win, np.random.default_rng(seed),
                           n_loop)
    _DRAW_CACHE[key] = (pt0, (pt, out))
    return pt, out


@dataclasses.dataclass(frozen=True, eq=False)
class ModularPrediction:
    """Predicted module-wise synchrony of a modular E/I rate network (averages over networks).

    Attributes:
        module_var: variance over time of the module order parameter m_a, per module.
        within_corr: mean correlation of two units' rates in the same module (their common
            covariance over the mean unit variance), per module.
        between_corr: the same for two units in different modules, (M, M) with a NaN diagonal.
        unit_var: the mean temporal variance of a unit's rate, per module.
        field_std: time-std of the module fields h_a, per module.
        module_var_median, field_std_median, within_corr_median, between_corr_median: medians
            over networks and
            modules (module pairs) of the same quantities (robust to the heavy tail of networks
            whose loop is close to instability, where the linear theory overestimates).
        fixed_point_fraction: fraction of networks at a fixed point (no fluctuations).
        n_effective: effective number of importance samples behind the averages.
        converged: every DMFT solve converged and the importance weights were not degenerate.
    """

    module_var: np.ndarray
    within_corr: np.ndarray
    between_corr: np.ndarray
    unit_var: np.ndarray
    field_std: np.ndarray
    module_var_median: float
    field_std_median: float
    within_corr_median: float
    between_corr_median: float
    fixed_point_fraction: float
    n_effective: float
    converged: bool


def modular_fluctuations(
    *, g: float, J0, sizes, f: float = 0.8, gamma: float | None = None, bias: float = 0.0,
    phi: Callable | None = None, sigma: float = 0.0, n_samples: int = 200, n_loop: int = 16,
    seed: int = 0, t_window: float | None = None, field_smoothing: bool = True,
    n_smooth: int = 8,
) -> ModularPrediction:
    r"""Module-wise synchrony of a network of M E/I modules.

    Modules b have mean inputs :math:`v_b = I + \sum_c J^0_{bc} X_c` with the balance variables
    :math:`X_c = N^{-1/2}\sum_{j\in c} s_j\phi(u_j)`. One mixture DMFT (the random coupling
    mixes all modules: every unit sees the same input variance, each module its own mean) gives
    the statistics at an operating point :math:`v`. As in :func:`macroscopic_fluctuations`,
    :math:`X_b` has a static Gaussian part and a random loop-gain matrix
    :math:`\kappa_{bc}(\omega) = \partial X_b/\partial v_c` (local gain on the diagonal; the
    response propagated through the random coupling in every entry, slow), and temporal
    fluctuations of spectrum :math:`(N_b/N)\,\overline{s^2}\,\tilde C_{t,b}(\omega)`. Operating
    points are importance-sampled with the Kac–Rice weight :math:`|\det(1 - J^0\kappa(0))|` on
    dynamically stable points; for each, the module inputs
    :math:`\delta v = (1 - L J^0\kappa)^{-1} J^0\,\delta X` give

    .. math::

        \mathrm{Cov}(m_a, m_b) = \int R_a R_b^*\,S_{v,ab} + \delta_{ab}\,\frac{\sigma^2_a}{N_a},
        \qquad \rho^{\rm within}_a = \frac{\int |R_a|^2 S_{v,aa}}{\sigma^2_a},\qquad
        \sigma^2_a = C_{t,a}(0) + \mathbb E[\Psi_a'^2]\int |L|^2 S_{v,aa},

    with :math:`R_a \approx L\,\mathbb E\Psi'_a` the mean rate response of module a (plus its
    slow mean-field part) and :math:`\sigma^2_a` the temporal variance of a unit (chaos plus the
    part driven by the module input).

    **Field-driven smoothing of the gains** (``field_smoothing=True``). The loop gains above are
    small-signal responses, but the module inputs fluctuate by O(0.2–0.3), and every unit
    receives them twice: directly, and through the random coupling as the propagated response
    :math:`\varepsilon^{(c)}_j`, whose variance per unit input is :math:`q_c \approx 10–30`
    (spectrum :math:`(1-a)q_c/(1+\omega^2\tau^2-a)`). A unit's input therefore carries the extra
    slow variance

    .. math::

        \Delta_{{\rm ext},b} = \int |L|^2 \Big[S_{v,bb} + \sum_c \frac{(1-a)\,q_c}
        {1+\omega^2\tau^2-a}\,S_{v,cc}\Big](1 - \mathrm{sinc}^2)\,\frac{d\omega}{2\pi},

    comparable with the chaotic :math:`\Delta_0 - \Delta_\infty`. By Bussgang's theorem the
    linear response of a unit to the field is its gain averaged over its whole input
    distribution, so every gain statistic (:math:`\Psi'`, :math:`a = g^2\mathbb E\Psi'^2`,
    :math:`q`, the covariances that condition the loop gains, the rates) is computed with the
    temporal variance :math:`\Delta_0 - \Delta_\infty + \Delta_{\rm ext}`; the DMFT solution
    and the chaotic spectrum are kept. :math:`a` falls (0.91 → 0.81 at v ≈ −0.7 in the default
    network), and the propagated loop gain, :math:`\propto 1/(1-a)`, with it. Closed
    self-consistently per operating point (damped iteration on the Kac–Rice-weighted median of
    :math:`\Delta_{\rm ext}` over its loop draws). Measured: in open-loop modular networks
    driven by white module inputs the off-diagonal loop gain falls with the input amplitude as
    this predicts (tests), and the loop gains measured at the fields' amplitude reproduce the
    closed-loop field variance of the same networks; the linear loop overestimates them 2–4×
    in variance. The driven part of a unit's variance includes the propagated input too.

    Args:
        g: random gain; ``J0``: the (M, M) matrix of block mean strengths (invertible);
        sizes: module sizes; ``f``, ``gamma``: E/I split (``gamma=None``: critical in every
        module); ``bias``: common input; ``phi``: transfer function (default 1 + tanh);
        ``sigma``: white-noise amplitude; ``n_samples``: importance samples of the operating
        point (one mixture DMFT each); ``n_loop``: loop-gain draws per operating point;
        ``seed``: their NumPy seed; ``t_window``: measurement window in units of tau
        (``None``: infinite); ``field_smoothing``: average the gains over the field-driven
        input (``False``: the linear theory, which for M = 1 is
        :func:`macroscopic_fluctuations`); ``n_smooth``: at most this many iterations of the
        self-consistent smoothing per operating point.
    """
    from .models import one_plus_tanh

    phi = one_plus_tanh if phi is None else phi
    J0 = np.atleast_2d(np.asarray(J0, dtype=np.float64))
    sizes = np.asarray(sizes, dtype=np.int64)
    m = len(sizes)
    if J0.shape != (m, m):
        raise NeurocircuitsError(f"J0 must be a ({m}, {m}) matrix for {m} modules, got shape "
                                 f"{J0.shape}.")
    if abs(np.linalg.det(J0)) < 1e-12:
        raise NeurocircuitsError(
            f"J0 = {J0.tolist()} is singular (e.g. J0_in == J0_out): the module balance "
            "variables cannot be told apart; use distinct within/between strengths.")
    if not 0 < f < 1:
        raise NeurocircuitsError(f"f must lie in (0, 1), got {f!r}.")
    check_positive(g, "g")
    check_int(n_samples, "n_samples", minimum=10)
    check_int(n_loop, "n_loop", minimum=1)
    check_int(n_smooth, "n_smooth", minimum=0)
    if t_window is not None:
        check_positive(t_window, "t_window")
    wrapped = _Phi(phi)
    n = int(sizes.sum())
    n_exc = np.round(f * sizes)
    gam = (n_exc / (sizes - n_exc)) if gamma is None else np.full(m, float(gamma))
    s2 = (n_exc + gam**2 * (sizes - n_exc)) / sizes
    s_bar = (n_exc - gam * (sizes - n_exc)) / sizes
    frac = sizes / n
    scales = frac * s2                       # variance of X_b per unit variance of a rate
    drives = math.sqrt(n) * frac * s_bar     # mean of X_b per unit of F_b
    win = _window(t_window)

    base = _operating_point(g, wrapped, [bias] * m, frac, sigma)
    # proposal: the static fields' Gaussian at the base point, mapped through J0, widened
    prop_cov = 1.3**2 * (J0 * (scales * np.maximum(base.var_psi, 1e-6))[None, :]) @ J0.T
    prop_chol = np.linalg.cholesky(prop_cov)
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n_samples, m))
    v = bias + z @ prop_chol.T
    points = [_operating_point(g, wrapped, row, frac, sigma) for row in v]
    x_needed = np.linalg.solve(J0, (v - bias).T).T
    fluct = [x_needed[i] - drives * pt.F for i, pt in enumerate(points)]
    seeds = rng.integers(0, 2**63 - 1, size=len(points))
    smoothed = [_smoothed_draws(pt, fluct[i], J0, scales, drives, win, seeds[i], n_loop,
                                n_smooth if field_smoothing else 0)
                for i, pt in enumerate(points)]
    points = [pt for pt, _ in smoothed]
    draws = [out[:2] for _, out in smoothed]
    # the static-field density at the (smoothed) operating points, over the proposal's
    fluct = [x_needed[i] - drives * pt.F for i, pt in enumerate(points)]
    var_x = np.array([scales * np.maximum(pt.var_psi, 1e-300) for pt in points])
    log_p = (-0.5 * np.sum(np.array(fluct) ** 2 / var_x + np.log(var_x), axis=1)
             + 0.5 * np.sum(z**2, axis=1))
    mean_kr = np.array([kr.mean() for kr, _ in draws])
    log_w = np.where(mean_kr > 0, log_p + np.log(np.maximum(mean_kr, 1e-300)), -np.inf)
    if not np.any(np.isfinite(log_w)):
        raise NeurocircuitsError("No stable operating point among the importance samples; "
                                 "increase n_samples.")
    weights = np.exp(log_w - np.max(log_w))
    weights /= weights.sum()
    n_eff = float(1.0 / np.sum(weights**2))
    # every (operating point, loop) draw is one network: its weight and statistics
    w_draw = np.concatenate([weights[i] * kr / max(kr.sum(), 1e-300)
                             for i, (kr, _) in enumerate(draws)])
    stats = np.concatenate([st for _, st in draws])
    chaotic = np.concatenate([np.full(n_loop, pt.kind != "static") for pt in points])
    keep = w_draw > 0
    w_draw, stats, chaotic = w_draw[keep] / w_draw[keep].sum(), stats[keep], chaotic[keep]
    unit_var = np.einsum("saa->sa", stats[:, 0])
    pair_cov = stats[:, 1]
    module_var = unit_var / sizes + np.einsum("saa->sa", pair_cov) * (1 - 1 / sizes)
    field_var = np.einsum("saa->sa", stats[:, 2])
    fluctuating = np.all(unit_var > 1e-10, axis=1)
    w_corr = w_draw * fluctuating
    w_corr = w_corr / max(w_corr.sum(), 1e-300)
    safe = np.where(unit_var > 1e-10, unit_var, 1.0)
    within = np.einsum("saa->sa", pair_cov) / safe
    between = pair_cov / np.sqrt(safe[:, :, None] * safe[:, None, :])
    off = ~np.eye(m, dtype=bool)
    between_mean = np.tensordot(w_corr, between, axes=(0, 0))
    np.fill_diagonal(between_mean, np.nan)

    def pooled_median(values, weights):  # over networks and modules (or module pairs)
        flat = values.reshape(len(values), -1)
        if flat.size == 0:
            return float("nan")
        return _weighted_quantiles(flat.ravel(), np.repeat(weights, flat.shape[1]), [0.5])[0]

    return ModularPrediction(
        module_var=w_draw @ module_var, within_corr=w_corr @ within,
        between_corr=between_mean, unit_var=w_draw @ unit_var,
        field_std=w_draw @ np.sqrt(np.maximum(field_var, 0)),
        module_var_median=pooled_median(module_var, w_draw),
        within_corr_median=pooled_median(within, w_corr),
        between_corr_median=pooled_median(between[:, off], w_corr),
        field_std_median=pooled_median(np.sqrt(np.maximum(field_var, 0)), w_draw),
        fixed_point_fraction=float(w_draw @ ~chaotic), n_effective=n_eff,
        converged=bool(all(p.converged for p in points) and base.converged and n_eff > 30),
    )
