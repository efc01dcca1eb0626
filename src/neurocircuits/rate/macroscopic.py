r"""Macroscopic (population) level of E/I rate networks: the mean field :math:`h(t)`.

For :math:`J_{ij} = s_j J_0/\sqrt N + g z_{ij}/\sqrt N` every unit receives the same
*macroscopic field*

.. math::

    h(t) = \frac{J_0}{\sqrt N} \sum_j s_j\, \phi(u_j(t)),

which is :math:`O(1)` at critical balance (:math:`\sum_j s_j = 0`) and is held near the balanced
operating point by a strong negative feedback (gain :math:`G \propto \sqrt N`) in
inhibition-dominated networks. This module predicts the statistics of :math:`h` from the
microscopic dynamic mean-field theory (:mod:`neurocircuits.rate.theory`). The derivation is ours
(the spec's leading-order route, closed self-consistently):

1. **Microscopic statistics.** At mean input :math:`v`, units are independent DMFT processes:
   :math:`u_j = v + \eta_j`, :math:`\eta_j` Gaussian with autocorrelation :math:`\Delta(\tau)`
   (static part :math:`\Delta_\infty`). Unit :math:`j`'s time-averaged rate is
   :math:`\bar\phi(z_j) = \mathbb E_x\,\phi(v + \sqrt{\Delta_\infty} z_j +
   \sqrt{\Delta_0 - \Delta_\infty}\,x)`, and its temporal autocovariance is
   :math:`C(\tau) - C_\infty`.
2. **The static field and its gain are random functions of** :math:`v`:
   :math:`A(v) = \frac{J_0}{\sqrt N}\sum_j s_j \bar\phi_j(v) = J_0\sqrt N \bar s\, F(v) + \zeta(v)`
   with :math:`F = \mathbb E\bar\phi`, :math:`\bar s = f - \gamma(1-f)`, and :math:`\zeta`
   Gaussian over the quenched randomness with variance
   :math:`w\,\mathrm{Var}_z\bar\phi`, :math:`w = J_0^2 (f + \gamma^2 (1-f))`; likewise its slope
   :math:`K = A'(v)` (jointly Gaussian with :math:`\zeta`).
3. **Operating points** solve :math:`v = I + A(v)` and are stable when :math:`K < 1`. Their
   density over network realisations follows the Kac–Rice formula,
   :math:`\rho(v) \propto p_\zeta(v - I - J_0\sqrt N \bar s F(v))\,
   \mathbb E[(1-K)\,\mathbb 1_{K<1} \mid \zeta]`. At critical balance this selects *negative*
   slopes on average (a stable crossing of a random function weights :math:`1 - K`).
4. **Temporal fluctuations** of :math:`h` are the open-loop sum of the units' temporal
   fluctuations, spectrum :math:`w\,\tilde C_t(\omega)`, filtered by the loop through the
   membrane :math:`L(\omega) = 1/(1 + i\omega\tau)`:
   :math:`\delta h = \delta h_{\rm open}/(1 - K L(\omega))`. For inhibition-dominated networks
   :math:`K \approx -G`, :math:`G = J_0\sqrt N |\bar s| F'(v^*)`: slow components are suppressed
   by :math:`1/(1+G)`, fast ones pass.

The prediction of the seed-averaged time-std of :math:`h` is
:math:`\mathbb E_{v, K}[\mathrm{std}(h \mid v, K)]`. Leading order in :math:`1/N` beyond these
terms (the response of each unit's random input to :math:`h` through :math:`z`, temporal
variation of :math:`K`) is neglected; the tests hold the prediction against simulation.

Reference model: Hayakawa & Fukai, Phys. Rev. Research 2, 013253 (2020) (our reconstruction).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
from scipy.optimize import brentq

from .._core.errors import NeurocircuitsError, check_int, check_positive
from .theory import _nodes, _Phi, dmft_solve

__all__ = ["MacroscopicPrediction", "macroscopic_fluctuations", "closed_loop_variance"]

_LAG_STEP = 0.1  # in units of tau
_MAX_LAG = 40.0


@dataclasses.dataclass(frozen=True, eq=False)
class MacroscopicPrediction:
    """Predicted statistics of the macroscopic field ``h`` (dimensionless, like ``u``).

    Attributes:
        h_std: the predicted seed average of the time-std of ``h``.
        h_std_open_loop: the time-std without the loop (K = 0) at the most likely operating
            point.
        h_mean_rms: the predicted root-mean-square over seeds of the time-mean of ``h``.
        mean_input: the most likely operating point ``v`` (mean input to every unit).
        gain_mean, gain_std: mean and s.d. over seeds of the loop gain ``K = A'(v)``.
        mean_rate: ``E phi`` at the most likely operating point.
        v_grid, density: the Kac–Rice density of operating points.
        converged: every DMFT solve converged and the density was resolved.
        residual: the largest DMFT residual.
    """

    h_std: float
    h_std_open_loop: float
    h_mean_rms: float
    mean_input: float
    gain_mean: float
    gain_std: float
    mean_rate: float
    v_grid: np.ndarray
    density: np.ndarray
    converged: bool
    residual: float


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


class _Point:
    """Microscopic statistics at one mean input ``v``."""

    def __init__(self, g, phi: Callable, v: float, sigma: float):
        lags = np.arange(0.0, _MAX_LAG + _LAG_STEP / 2, _LAG_STEP)
        r = dmft_solve(g, phi, mu=v, sigma=sigma, lags=lags)
        self.result = r
        wrapped = _Phi(phi)
        c = r.correlation()
        c_inf = float(r.correlation(np.array([r.delta_inf]))[0])
        self.temporal = np.maximum(c - c_inf, 0.0) if r.kind != "static" else np.zeros_like(c)
        # per-unit time averages over the quenched input z
        zx, zw = _nodes(r.delta_inf)
        xx, xw = _nodes(r.delta0 - r.delta_inf)
        u = v + math.sqrt(max(r.delta_inf, 0)) * zx[:, None] + \
            math.sqrt(max(r.delta0 - r.delta_inf, 0)) * xx[None, :]
        phibar = wrapped(u) @ xw
        dphibar = wrapped.deriv(u) @ xw
        self.F = float(zw @ phibar)
        self.dF = float(zw @ dphibar)
        self.var_phibar = float(zw @ (phibar - self.F) ** 2)
        self.var_dphibar = float(zw @ (dphibar - self.dF) ** 2)
        self.cov = float(zw @ ((phibar - self.F) * (dphibar - self.dF)))
        self.converged = bool(r.converged)
        self.residual = float(r.residual)


def macroscopic_fluctuations(
    *, g: float, J0: float, f: float, gamma: float, n: int, bias: float = 0.0,
    phi: Callable | None = None, sigma: float = 0.0, n_grid: int = 25,
) -> MacroscopicPrediction:
    r"""Predict the statistics of the macroscopic field of an E/I rate network.

    Args:
        g: random-coupling gain.
        J0: mean-coupling strength.
        f: excitatory fraction; ``gamma``: inhibitory relative strength (critical balance at
            ``gamma = f / (1 - f)``).
        n: number of units N (the feedback gain of unbalanced networks grows as sqrt(N)).
        bias: the constant input I to every unit (for inhibition-dominated networks drive it as
            ``I0 * sqrt(N)`` to keep them active).
        phi: transfer function (default 1 + tanh).
        sigma: white-noise amplitude.
        n_grid: operating points in the Kac–Rice average.

    Returns:
        A :class:`MacroscopicPrediction`.
    """
    from .models import one_plus_tanh

    phi = one_plus_tanh if phi is None else phi
    check_positive(g, "g")
    check_int(n, "n", minimum=2)
    if not 0 < f < 1:
        raise NeurocircuitsError(f"f must lie in (0, 1), got {f!r}.")
    check_positive(gamma, "gamma")
    n_exc = round(f * n)
    s2 = (n_exc + gamma**2 * (n - n_exc)) / n
    s_bar = (n_exc - gamma * (n - n_exc)) / n
    w = J0**2 * s2
    drive = J0 * math.sqrt(n) * s_bar  # deterministic part of A(v) = drive * F(v)
    cache: dict[float, _Point] = {}

    def point(v: float) -> _Point:
        key = round(v, 12)
        if key not in cache:
            cache[key] = _Point(g, phi, v, sigma)
        return cache[key]

    def mismatch(v):
        return v - bias - drive * point(v).F

    # range of operating points: |mismatch| within 6 s.d. of the static random field
    centre = bias
    if abs(drive) > 1e-12:
        lo, hi = min(-20.0, bias - 20.0), max(20.0, bias + 20.0)
        try:
            centre = brentq(mismatch, lo, hi, xtol=1e-6)
        except ValueError as err:
            raise NeurocircuitsError(
                f"No balanced operating point in [{lo}, {hi}] for drive J0*sqrt(N)*(f - gamma(1-f))"
                f" = {drive:.3g} and bias = {bias:.3g}: the network is silent or saturated. "
                "Drive an inhibition-dominated network with bias ~ I0 * sqrt(N)."
            ) from err
    if point(centre).dF < 1e-6:
        raise NeurocircuitsError(
            f"The operating point v = {centre:.3g} (bias = {bias:.3g}) leaves the units silent or "
            f"saturated (mean gain phi' = {point(centre).dF:.2g}): no balanced operating point "
            "with fluctuating rates. Drive an inhibition-dominated network with bias ~ "
            "I0 * sqrt(N), I0 > 0."
        )
    sd = math.sqrt(max(w * point(centre).var_phibar, 1e-12))
    slope = abs(1 - drive * point(centre).dF)
    half = 6 * sd / max(slope, 1e-9)
    v_grid = np.linspace(centre - half, centre + half, n_grid)
    kx, kw = _nodes(1.0)  # standard-normal nodes for the gain average
    log_dens, stds, means_k, vars_k, mean_h2 = [], [], [], [], []
    for v in v_grid:
        p = point(float(v))
        var_zeta = w * p.var_phibar
        var_k = w * p.var_dphibar
        cov = w * p.cov
        m = v - bias - drive * p.F  # the value zeta must take for v to be a fixed point
        k_mean = drive * p.dF + (cov / var_zeta) * m if var_zeta > 0 else drive * p.dF
        k_var = max(var_k - (cov**2 / var_zeta if var_zeta > 0 else 0.0), 1e-12)
        ks = k_mean + math.sqrt(k_var) * kx
        weight = kw * np.clip(1 - ks, 0, None)  # Kac–Rice |1 - K| on stable crossings
        norm = weight.sum()
        sd_k = np.array([math.sqrt(max(w * closed_loop_variance(p.temporal, _LAG_STEP, k), 0))
                         for k in ks])
        stds.append(float(weight @ sd_k / norm) if norm > 0 else float("nan"))
        means_k.append(float(weight @ ks / norm) if norm > 0 else float("nan"))
        vars_k.append(float(weight @ ks**2 / norm) if norm > 0 else float("nan"))
        log_dens.append(-0.5 * m * m / max(var_zeta, 1e-300) - 0.5 * math.log(max(var_zeta, 1e-300))
                        + (math.log(norm) if norm > 0 else -np.inf))
        mean_h2.append((v - bias) ** 2)
    log_dens = np.asarray(log_dens)
    dens = np.exp(log_dens - np.max(log_dens))
    dens /= dens.sum()
    stds, means_k, vars_k = map(np.asarray, (stds, means_k, vars_k))
    ok = np.isfinite(stds)
    h_std = float(np.sum(dens[ok] * stds[ok]) / np.sum(dens[ok]))
    gain_mean = float(np.sum(dens * np.nan_to_num(means_k)))
    gain_std = math.sqrt(max(float(np.sum(dens * np.nan_to_num(vars_k))) - gain_mean**2, 0.0))
    c = point(centre)
    residual = max(pt.residual for pt in cache.values())
    return MacroscopicPrediction(
        h_std=h_std,
        h_std_open_loop=math.sqrt(w * c.temporal[0]),
        h_mean_rms=math.sqrt(float(np.sum(dens * np.asarray(mean_h2)))),
        mean_input=float(v_grid[np.argmax(dens)]),
        gain_mean=gain_mean,
        gain_std=gain_std,
        mean_rate=c.F,
        v_grid=v_grid,
        density=dens,
        converged=bool(all(pt.converged for pt in cache.values()) and dens[0] < 1e-3
                       and dens[-1] < 1e-3),
        residual=residual,
    )
