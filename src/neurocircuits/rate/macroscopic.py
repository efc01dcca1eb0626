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

__all__ = ["MacroscopicPrediction", "ModularPrediction", "closed_loop_variance",
           "macroscopic_fluctuations", "modular_fluctuations"]

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
    phi: Callable | None = None, sigma: float = 0.0, n_grid: int = 41,
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


@dataclasses.dataclass(frozen=True, eq=False)
class ModularPrediction:
    """Predicted module-wise synchrony of a modular E/I rate network (seed averages).

    Attributes:
        module_var: variance over time of the module order parameter m_a, per module.
        within_corr: mean correlation of two units' rates in the same module, per module.
        between_corr: mean correlation of two units' rates in different modules, (M, M) with a
            NaN diagonal.
        field_std: time-std of the module fields h_a, per module.
        n_effective: effective number of importance samples behind the averages.
        converged: every DMFT solve converged and the importance weights were not degenerate.
    """

    module_var: np.ndarray
    within_corr: np.ndarray
    between_corr: np.ndarray
    field_std: np.ndarray
    n_effective: float
    converged: bool


def modular_fluctuations(
    *, g: float, J0, sizes, f: float = 0.8, gamma: float | None = None, bias: float = 0.0,
    phi: Callable | None = None, sigma: float = 0.0, n_samples: int = 3000, seed: int = 0,
    n_grid: int = 15,
) -> ModularPrediction:
    r"""Module-wise synchrony of a network of M critically balanced modules.

    The module fields :math:`h_a = \sum_b J^0_{ab} X_b` mix the modules' balance variables
    :math:`X_b = N^{-1/2}\sum_{j\in b} s_j\phi(u_j)`. As in :func:`macroscopic_fluctuations`,
    each :math:`X_b` has a static part and a random slope :math:`K_b` (jointly Gaussian over the
    quenched randomness, from DMFT at the module's operating point :math:`v_b`) and temporal
    fluctuations of spectrum :math:`(N_b/N)\,\overline{s^2}\,\tilde C_t(\omega)`. Operating
    points :math:`v = I + J^0 X(v)` are averaged by importance sampling with the Kac–Rice weight
    :math:`|\det(1 - J^0\,\mathrm{diag}K)|` on stable points; for each, the filtered module inputs
    :math:`\delta v = L\,(1 - L J^0 \mathrm{diag} K)^{-1} J^0\,\delta X` give

    .. math::

        \mathrm{Var}\,m_a = F_a'^2\,\mathrm{Var}\,\delta v_a + \frac{C_t(0)}{N_a},\qquad
        \rho^{\rm within}_a = \frac{F_a'^2\,\mathrm{Var}\,\delta v_a}{C_t(0)},\qquad
        \rho^{\rm between}_{ab} = \frac{F'_a F'_b\,\mathrm{Cov}(\delta v_a, \delta v_b)}
                                       {\sqrt{C_t(0)_a C_t(0)_b}}.

    Args:
        g: random gain; ``J0``: the (M, M) matrix of block mean strengths (invertible);
        sizes: module sizes; ``f``, ``gamma``: E/I split (``gamma=None``: critical in every
        module); ``bias``: common input; ``phi``: transfer function (default 1 + tanh);
        ``n_samples``: importance samples; ``seed``: their NumPy seed; ``n_grid``: DMFT grid.
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
    n = int(sizes.sum())
    n_exc = np.round(f * sizes)
    gam = (n_exc / (sizes - n_exc)) if gamma is None else np.full(m, float(gamma))
    s2 = (n_exc + gam**2 * (sizes - n_exc)) / sizes
    frac = sizes / n
    scale = frac * s2  # variance factor of X_b per unit variance of a unit's rate

    # DMFT statistics on a grid of operating points, interpolated
    base = _Point(g, phi, bias, sigma)
    sd_static = math.sqrt(float(np.max(J0**2 @ scale)) * max(base.var_phibar, 1e-6))
    v_grid = np.linspace(bias - 5 * sd_static, bias + 5 * sd_static, n_grid)
    points = [_Point(g, phi, float(v), sigma) for v in v_grid]
    stat = {k: np.array([getattr(p, k) for p in points])
            for k in ("F", "dF", "var_phibar", "var_dphibar", "cov")}
    temporal = np.stack([p.temporal for p in points])
    spectra = np.real(np.fft.fft(np.concatenate([temporal, temporal[:, -2:0:-1]], axis=1),
                                 axis=1))
    omega = 2 * np.pi * np.fft.fftfreq(spectra.shape[1], d=_LAG_STEP)
    lowpass = 1.0 / (1.0 + 1j * omega)

    def interp(name, v):
        return np.interp(v, v_grid, stat[name])

    def interp_rows(table, v):  # linear interpolation of grid rows at each v (samples, M)
        pos = np.clip((v - v_grid[0]) / (v_grid[1] - v_grid[0]), 0, n_grid - 1 - 1e-9)
        i = np.floor(pos).astype(int)
        t = (pos - i)[..., None]
        return (1 - t) * table[i] + t * table[i + 1]

    rng = np.random.default_rng(seed)
    prop_sd = 1.5 * sd_static
    v = bias + prop_sd * rng.standard_normal((n_samples, m))
    var_x = scale * np.maximum(interp("var_phibar", v), 1e-300)
    x_needed = np.linalg.solve(J0, (v - bias).T).T  # static X that makes v a fixed point
    cov = interp("cov", v)
    vpb = np.maximum(interp("var_phibar", v), 1e-300)
    k_mean = cov / vpb * x_needed
    k_var = np.maximum(scale * (interp("var_dphibar", v) - cov**2 / vpb), 1e-12)
    k = k_mean + np.sqrt(k_var) * rng.standard_normal((n_samples, m))
    loop = J0[None] * k[:, None, :]  # J0 diag(K)
    eig = np.linalg.eigvals(loop)
    stable = np.max(eig.real, axis=1) < 1
    log_w = (-0.5 * np.sum(x_needed**2 / var_x + np.log(var_x), axis=1)
             + np.log(np.abs(np.linalg.det(np.eye(m)[None] - loop)) + 1e-300)
             + 0.5 * np.sum(((v - bias) / prop_sd) ** 2, axis=1))
    log_w = np.where(stable, log_w, -np.inf)
    weights = np.exp(log_w - np.max(log_w))
    weights /= weights.sum()
    n_eff = float(1.0 / np.sum(weights**2))

    ct0 = interp_rows(temporal[:, :1], v)[..., 0]  # temporal variance of a unit's rate
    fluctuating = np.all(ct0 > 1e-8, axis=1)  # correlations are defined where units fluctuate
    ct0 = np.maximum(ct0, 1e-8)
    dF = interp("dF", v)
    var_dv = np.zeros((n_samples, m))
    cov_dv = np.zeros((n_samples, m, m))
    var_h = np.zeros((n_samples, m))
    eye = np.eye(m)
    for start in range(0, n_samples, 64):
        sl = slice(start, start + 64)
        keep = np.nonzero(weights[sl] > 0)[0] + start
        if keep.size == 0:
            continue
        s_x = scale[None, None, :] * interp_rows(spectra, v[keep]).transpose(0, 2, 1)  # (k,w,M)
        lp = lowpass[None, :, None, None]
        resp = np.linalg.solve(eye[None, None] - lp * loop[keep][:, None], J0[None, None])
        h_cov = np.einsum("kwab,kwb,kwcb->kwac", resp, s_x, resp.conj())
        dv_cov = (np.abs(lowpass) ** 2)[None, :, None, None] * h_cov
        cov_dv[keep] = np.real(dv_cov.mean(axis=1))
        var_dv[keep] = np.real(np.einsum("kaa->ka", cov_dv[keep]))
        var_h[keep] = np.real(np.einsum("kwaa->kwa", h_cov).mean(axis=1))
    within = dF**2 * var_dv / ct0
    module_var = dF**2 * var_dv + ct0 / sizes[None, :]
    between = (dF[:, :, None] * dF[:, None, :] * cov_dv
               / np.sqrt(ct0[:, :, None] * ct0[:, None, :]))
    avg = lambda x: np.tensordot(weights, x, axes=(0, 0))  # noqa: E731
    w_corr = weights * fluctuating
    w_corr = w_corr / max(w_corr.sum(), 1e-300)
    avg_corr = lambda x: np.tensordot(w_corr, x, axes=(0, 0))  # noqa: E731
    between_mean = avg_corr(between)
    np.fill_diagonal(between_mean, np.nan)
    return ModularPrediction(
        module_var=avg(module_var), within_corr=avg_corr(within), between_corr=between_mean,
        field_std=avg(np.sqrt(np.maximum(var_h, 0))), n_effective=n_eff,
        converged=bool(all(p.converged for p in points) and n_eff > 50),
    )
