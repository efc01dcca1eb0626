r"""Inverse kinetic Ising problems: infer ``H`` and ``J`` from spins or from their moments.

* :func:`fit_ml` — exact maximum likelihood. The log-likelihood of parallel Glauber data
  factorises over neurons into logistic regressions,

  .. math::

      \mathcal L_i = \frac1S\sum_{t}\big[s_{i,t}h_{i,t} - \log 2\cosh h_{i,t}\big]
      - \frac{\lambda_2}2\sum_jJ_{ij}^2 - \lambda_1\sum_j|J_{ij}|,
      \qquad h_{i,t} = H_i + \sum_jJ_{ij}s_{j,t-1},

  maximised for all neurons at once (a batched matrix problem). Because
  :math:`(\log 2\cosh h)'' = 1 - \tanh^2h \le 1`, the quadratic with the input second-moment
  matrix :math:`P = \frac1S\sum_t x_tx_t^\top` (:math:`x = (1, \mathbf s_{t-1})`) majorises the
  negative log-likelihood of every neuron, so the preconditioned step
  :math:`\Theta \leftarrow \Theta + \nabla\mathcal L\,(P + \lambda_2 I_J)^{-1}` never decreases
  :math:`\mathcal L`; it is accelerated with Nesterov momentum and gradient restarts
  (O'Donoghue & Candès 2015). With :math:`\lambda_1 > 0` the step is proximal (soft
  thresholding) with the scalar bound :math:`\lambda_{\max}(P) + \lambda_2`. Samples are read
  in chunks (``int8`` spins, cast per chunk), so memory is ``O(chunk N + N^2)``.
* :func:`fit_meanfield` — moment matching with a forward mean-field method: drive
  :math:`m - \hat m` and :math:`D - \hat D` to zero, where :math:`(\hat m, \hat D)` is the
  method applied to the data's moments at ``t - 1``; stop when both mean squared differences
  are below ``tol = 1e-12`` (Aguilera et al. 2021). The default update preconditions the
  moment differences by the inverse input covariance (stable for any ``N``); the paper's
  fixed-rate update (:math:`\eta_H = 0.1`, :math:`\eta_J = 1/\sqrt N`) is ``update="paper"``.
* Closed forms: :func:`nmf_inverse` (:math:`J = A^{-1}DC^{-1}`, :math:`A = \mathrm{diag}(1-m^2)`),
  :func:`tap_inverse` (Roudi & Hertz 2011) and :func:`emf_inverse` (Mézard & Sakellariou 2011).
* :func:`reconstruct` — rescale inferred ``(H, J)`` by :math:`\beta` and predict ``m, C, D``
  and the entropy production with a forward method.

Errors are reported as mean squared errors over all entries (:func:`mse`).

References:
    Aguilera, Moosavi & Shimazaki, Nat. Commun. 12, 1197 (2021).
    Roudi & Hertz, Phys. Rev. Lett. 106, 048702 (2011).
    Mézard & Sakellariou, J. Stat. Mech. L07001 (2011).
"""

from __future__ import annotations

import functools
import inspect

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._core.errors import NeurocircuitsError, check_int, check_nonnegative, describe
from . import meanfield as mf
from .models import _log2cosh, entropy_production

__all__ = [
    "MLFit",
    "MFInverseFit",
    "ClosedFormFit",
    "transitions",
    "fit_ml",
    "fit_meanfield",
    "mean_map_radius",
    "nmf_inverse",
    "tap_inverse",
    "emf_inverse",
    "reconstruct",
    "mse",
]

_P = "highest"


def mse(a, b) -> float:
    """Mean squared error over all entries."""
    return float(jnp.mean((jnp.asarray(a) - jnp.asarray(b)) ** 2))


# ------------------------------------------------------------------------------------------
# exact maximum likelihood


class MLFit(eqx.Module):
    """Result of :func:`fit_ml`: ``H``, ``J``, iterations, ``converged`` (largest parameter
    update of the last step below ``tol``), ``step`` (that update) and the mean
    log-likelihood per sample and neuron-sum (``log_likelihood``)."""

    H: Float[Array, " n"]
    J: Float[Array, "n n"]
    n_iter: Array
    converged: Array
    step: Array
    log_likelihood: Array


def transitions(spins) -> tuple[Array, Array]:
    """``(X, Y)``: all pairs ``(s_{t-1}, s_t)`` of spins ``(T+1, N)`` or ``(R, T+1, N)`` as
    ``(S, N)`` arrays (kept in the input dtype, e.g. ``int8``)."""
    spins = jnp.asarray(spins)
    if spins.ndim == 2:
        spins = spins[None]
    if spins.ndim != 3 or spins.shape[1] < 2:
        raise NeurocircuitsError(
            f"spins must have shape (T + 1, N) or (R, T + 1, N) with T >= 1, got "
            f"{describe(spins)}."
        )
    n = spins.shape[-1]
    return spins[:, :-1].reshape(-1, n), spins[:, 1:].reshape(-1, n)


def _chunked(X, Y, chunk):
    S, n = X.shape
    nc = -(-S // chunk)
    pad = nc * chunk - S
    Xc = jnp.pad(X, ((0, pad), (0, 0))).reshape(nc, chunk, n)
    Yc = jnp.pad(Y, ((0, pad), (0, 0))).reshape(nc, chunk, n)
    w = (jnp.arange(nc * chunk) < S).reshape(nc, chunk)
    return Xc, Yc, w


def _grad_ll(theta, Xc, Yc, wc, S):
    """Gradient (N, N+1) and mean log-likelihood of Theta = [H | J]."""
    dtype = theta.dtype
    H, J = theta[:, 0], theta[:, 1:]

    def body(acc, xs):
        x, y, w = xs
        xf = x.astype(dtype)
        h = H + jnp.matmul(xf, J.T, precision=_P)
        wf = w.astype(dtype)[:, None]
        r = (y.astype(dtype) - jnp.tanh(h)) * wf
        gJ = jnp.matmul(r.T, xf, precision=_P)
        ll = jnp.sum(wf * (y.astype(dtype) * h - _log2cosh(h)))
        return (acc[0] + gJ, acc[1] + r.sum(0), acc[2] + ll), None

    n = theta.shape[0]
    init = (jnp.zeros((n, n), dtype), jnp.zeros((n,), dtype), jnp.zeros((), dtype))
    (gJ, gH, ll), _ = jax.lax.scan(body, init, (Xc, Yc, wc))
    return jnp.concatenate([gH[:, None], gJ], 1) / S, ll / S


def _second_moment(Xc, wc, S, dtype):
    n = Xc.shape[-1]

    def body(acc, xs):
        x, w = xs
        xf = x.astype(dtype) * w.astype(dtype)[:, None]
        return (acc[0] + jnp.matmul(xf.T, xf, precision=_P), acc[1] + xf.sum(0)), None

    (XX, xs), _ = jax.lax.scan(body, (jnp.zeros((n, n), dtype), jnp.zeros((n,), dtype)),
                               (Xc, wc))
    P = jnp.zeros((n + 1, n + 1), dtype)
    P = P.at[0, 0].set(1.0).at[0, 1:].set(xs / S).at[1:, 0].set(xs / S).at[1:, 1:].set(XX / S)
    return P


@functools.partial(jax.jit, static_argnames=("chunk", "max_iter"))
def _fit_ml(X, Y, l1, l2, tol, theta0, *, chunk, max_iter):
    dtype = theta0.dtype
    S = X.shape[0]
    Xc, Yc, wc = _chunked(X, Y, chunk)
    n = X.shape[1]
    P = _second_moment(Xc, wc, S, dtype)
    pen = jnp.concatenate([jnp.zeros((1,), dtype), jnp.ones((n,), dtype)])
    M = P + l2 * jnp.diag(pen)
    use_l1 = l1 > 0
    L = jnp.linalg.eigvalsh(M)[-1]
    Minv = jnp.linalg.inv(M)

    def grad(theta):
        g, ll = _grad_ll(theta, Xc, Yc, wc, S)
        g = g - l2 * theta * pen[None, :]
        return g, ll

    def update(y, g):
        smooth = y + jnp.matmul(g, Minv, precision=_P)
        v = y + g / L
        thr = (l1 / L) * pen[None, :]
        prox = jnp.sign(v) * jnp.maximum(jnp.abs(v) - thr, 0.0)
        return jnp.where(use_l1, prox, smooth)

    def cond(c):
        theta, prev, k, t, step, ll = c
        return (k < max_iter) & (step > tol)

    def body(c):
        theta, prev, k, t, step, ll = c
        t_new = (1.0 + jnp.sqrt(1.0 + 4.0 * t * t)) / 2.0
        y = theta + ((t - 1.0) / t_new) * (theta - prev)
        g, ll = grad(y)
        new = update(y, g)
        restart = jnp.sum(g * (new - theta)) < 0
        t_new = jnp.where(restart, 1.0, t_new)
        new = jnp.where(restart, update(theta, grad(theta)[0]), new)
        step = jnp.max(jnp.abs(new - y))
        return new, theta, k + 1, t_new, step, ll

    init = (theta0, theta0, jnp.asarray(0), jnp.asarray(1.0, dtype), jnp.asarray(jnp.inf, dtype),
            jnp.asarray(0.0, dtype))
    theta, _, k, _, step, ll = jax.lax.while_loop(cond, body, init)
    return theta, k, step, ll


def fit_ml(spins=None, *, X=None, Y=None, l1: float = 0.0, l2: float = 0.0,
           max_iter: int = 2000, tol: float | None = None, chunk_size: int = 65536,
           dtype=None) -> MLFit:
    r"""Exact maximum-likelihood ``H, J`` from spins (per-neuron logistic regressions, batched).

    Args:
        spins: ``(T+1, N)`` or ``(R, T+1, N)`` ±1 spins (``int8`` is best), or
        X, Y: the previous and next states ``(S, N)`` (see :func:`transitions`).
        l1, l2: penalties on ``J`` (``H`` is not penalised), per sample.
        max_iter: iteration cap.
        tol: stop when the largest parameter update is below ``tol`` (default ``1e-10`` in
            float64, ``1e-5`` in float32).
        chunk_size: samples per chunk of the gradient computation (memory).
        dtype: compute dtype (default: float64 if x64 is on, else float32).
    """
    if spins is not None:
        X, Y = transitions(spins)
    if X is None or Y is None or jnp.shape(X) != jnp.shape(Y) or jnp.ndim(X) != 2:
        raise NeurocircuitsError(
            f"give spins, or X and Y of equal shape (S, N); got X {describe(X)}, Y {describe(Y)}."
        )
    check_nonnegative(l1, "l1")
    check_nonnegative(l2, "l2")
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    chunk_size = check_int(chunk_size, "chunk_size", minimum=1)
    dtype = jnp.result_type(float) if dtype is None else jnp.dtype(dtype)
    if tol is None:
        tol = 1e-10 if jnp.finfo(dtype).bits == 64 else 1e-5
    S, n = X.shape
    theta0 = jnp.zeros((n, n + 1), dtype)
    theta, k, step, ll = _fit_ml(jnp.asarray(X), jnp.asarray(Y), jnp.asarray(l1, dtype),
                                 jnp.asarray(l2, dtype), jnp.asarray(tol, dtype), theta0,
                                 chunk=min(chunk_size, S), max_iter=max_iter)
    return MLFit(theta[:, 0], theta[:, 1:], k, step <= tol, step, ll)


# ------------------------------------------------------------------------------------------
# mean-field moment matching


class MFInverseFit(eqx.Module):
    r"""Result of :func:`fit_meanfield`: ``H``, ``J``, iterations (forward evaluations),
    ``converged`` and the final mean squared moment differences ``residual_m`` =
    mean (m - m_hat)^2 and ``residual_D`` = mean (D - D_hat)^2 (always the unprojected
    differences, so a fit held back by ``h_bound`` is not reported as converged), and
    ``forward_residual``, the largest residual of the self-consistent equations the forward
    method solved at the last evaluation (``converged`` also requires it to be small).

    ``mean_map_radius`` is the spectral radius of the Jacobian
    :math:`\partial\hat m_t/\partial m_{t-1}` of the method with the inferred ``(H, J)`` at
    the data's moments (``C_{t-1}``, ``D_{t-1}`` held at the data; NaN if not computed), and
    ``stable`` is ``mean_map_radius < 1``. ``converged`` says the moment-matching equations
    were solved; ``stable`` says whether the matched state is an attracting state of the
    inferred model's own mean-field dynamics. A fit can be converged and unstable: nMF and TAP
    (Plefka[t-1,t]) ignore the correlations at ``t - 1`` (:math:`\hat D = AJ\,\mathrm{diag}
    (1-m_{t-1}^2)`), so on data with a collective mode their unique solution is
    :math:`J \approx JC_{t-1}\mathrm{diag}(1-m_{t-1}^2)^{-1}`, with a gain
    :math:`\rho(AJ) \approx \lambda_{\max}` of the correlation matrix (radius 38.5 for nMF,
    9.9 for TAP, 0.95 for Plefka[t] o1 at ``N = 512``, :math:`\beta_c`). Running such a model
    forward (:func:`reconstruct`) cannot return to the moments it matched: it runs off to a
    saturated state. For methods whose ``m`` does not
    depend on ``C_{t-1}, D_{t-1}`` (``nmf``, ``tap``, ``plefka_t_o1``, ``plefka_t1_o1``) the
    mean block is a diagonal block of the full (block-triangular) Jacobian, so
    ``mean_map_radius > 1`` is exact instability; for ``plefka_t_o2``, ``plefka2_t_o2`` it is
    that of the mean with the correlations frozen."""

    H: Float[Array, " n"]
    J: Float[Array, "n n"]
    n_iter: Array
    converged: Array
    residual_m: Array
    residual_D: Array
    forward_residual: Array
    mean_map_radius: Array

    @property
    def stable(self) -> Array:
        """``mean_map_radius < 1``: the matched moments attract the inferred model's
        mean-field dynamics (``False`` if the radius was not computed)."""
        return self.mean_map_radius < 1.0


def _fast(method):
    fn = mf.get_method(method)
    if "compute_C" in inspect.signature(fn).parameters:
        return functools.partial(fn, compute_C=False)
    return fn


UPDATES = ("preconditioned", "paper")


@functools.partial(jax.jit, static_argnames=("fn", "max_iter"))
def _fit_mf(fn, m, D, m_p, C_p, D_p, K_inv, eta_H, eta_J, tol, h_bound, H0, J0, *, max_iter):
    # K_inv: None for the paper's plain update, else the inverse input covariance (N, N)
    def residuals(H, J):
        out = fn(H, J, m_p, C_p, D_p)
        return m - out.m, D - out.D, out.residual

    def cond(c):
        H, J, k, gH, gD, fres = c
        eh, ej = jnp.mean(gH**2), jnp.mean(gD**2)
        finite = jnp.isfinite(eh) & jnp.isfinite(ej)
        return (k < max_iter) & finite & ((eh >= tol) | (ej >= tol))

    def body(c):
        H, J, k, gH, gD, _ = c
        if K_inv is None:
            dH, dJ = eta_H * gH, eta_J * gD
        else:
            dJ = eta_J * jnp.matmul(gD, K_inv, precision=_P)
            dH = eta_H * gH - jnp.matmul(dJ, m_p, precision=_P)
        # optional bound on the fields (the authors' safeguard for TAP): no step outwards
        # once beyond it
        dH = jnp.where(H > h_bound, jnp.minimum(dH, 0.0),
                       jnp.where(H < -h_bound, jnp.maximum(dH, 0.0), dH))
        H, J = H + dH, J + dJ
        gH, gD, fres = residuals(H, J)
        return H, J, k + 1, gH, gD, fres

    gH, gD, fres = residuals(H0, J0)
    return jax.lax.while_loop(cond, body, (H0, J0, jnp.asarray(0), gH, gD, fres))


def fit_meanfield(method, m, D, m_p, C_p, D_p=None, *, update: str = "preconditioned",
                  eta_H: float | None = None, eta_J: float | None = None,
                  covariance: str | None = None, tol: float = 1e-12,
                  h_bound: float | None = None, max_iter: int = 10000,
                  stability: bool = True) -> MFInverseFit:
    r"""Infer ``H, J`` by moment matching with a forward mean-field method.

    With :math:`(\hat m, \hat D) =` ``method(H, J, m_p, C_p, D_p)`` and the moment differences
    :math:`g_H = m - \hat m`, :math:`G_D = D - \hat D`, iterate from ``H = 0, J = 0`` until both
    mean squared differences are below ``tol`` (the authors' stopping rule):

    * ``update="paper"`` — the update of Aguilera et al. (2021) as published:
      :math:`H \mathrel{+}= \eta_Hg_H`, :math:`J \mathrel{+}= \eta_JG_D`, defaults
      :math:`\eta_H = 0.1`, :math:`\eta_J = 1/\sqrt N`.
    * ``update="preconditioned"`` (default) — the same moment differences, preconditioned by
      the covariance :math:`K` of the inputs at ``t - 1`` that the method assumes
      (:data:`~neurocircuits.ising.meanfield.INPUT_COVARIANCE`: the data's ``C_p``, or
      :math:`\mathrm{diag}(1-m_{t-1}^2)` for nMF/TAP):
      :math:`\Delta J = \eta_JG_DK^{-1}`, :math:`\Delta H = \eta_Hg_H - \Delta J\,m_{t-1}`,
      defaults :math:`\eta_H = \eta_J = 1/2`. This is the exact-likelihood gradient
      :math:`(g_H,\ G_D + g_Hm_{t-1}^\top)` times the inverse second moment of the inputs
      :math:`x = (1, \mathbf s_{t-1})` (the step :func:`fit_ml` takes), so the effective field
      moves by :math:`\eta_Hg_H` and the couplings by a Newton-like step.

    Why the default is not the paper's update: for the forward maps here
    :math:`\partial\hat D/\partial J \approx A\otimes K`, so the paper's fixed-rate iteration
    contracts only if :math:`\eta_J\,(1-m^2)\,\lambda_{\max}(K) < 2`. The collective mode of
    correlated data has :math:`\lambda_{\max}(C_{t-1}) \approx 1 + (N-1)\bar c` — it grows with
    ``N`` — and Plefka2[t]'s :math:`W = JD_{t-1}J^\top` adds a curvature
    :math:`\propto N\bar d`. With :math:`\eta_J = 1/\sqrt N` at ``N = 512`` near
    :math:`\beta_c` (:math:`\bar c \approx 0.07`) Plefka2[t] oscillates with period 2 and
    diverges; nMF, whose :math:`\hat D` ignores :math:`C_{t-1}`, drives the fields into
    saturation (:math:`1-\hat m^2 \to 0` makes :math:`\hat D \to 0` and ``J`` then grows without
    bound). Preconditioned, the iteration's Jacobian has eigenvalues
    :math:`\eta(1-\hat m_i^2)\kappa` with :math:`\kappa \approx 1` for the methods whose
    :math:`\hat D` is linear in ``J`` and :math:`\kappa < 2` for Plefka2[t] (its
    :math:`W = JD_{t-1}J^\top` holds ``J`` twice), independent of ``N`` and of the correlation
    strength, so :math:`\eta = 1/2` contracts. Both updates have the same fixed points; where
    the paper's converges, both give the same answer.

    Args:
        method: a name in :data:`~neurocircuits.ising.meanfield.METHODS` or a method function.
        m, D: data moments at ``t`` (``(N,)``, ``(N, N)``).
        m_p, C_p, D_p: data moments at ``t - 1`` (``D_p`` only used by ``plefka2_t_o2``;
            zeros if omitted).
        update: ``"preconditioned"`` or ``"paper"`` (above).
        eta_H, eta_J: step sizes (defaults above, by ``update``).
        covariance: ``"data"`` (``C_p``) or ``"independent"`` (``diag(1 - m_p^2)``) for the
            preconditioner (default: the method's entry in ``INPUT_COVARIANCE``, ``"data"`` for
            a custom function). ``C_p`` must then be positive definite.
        tol: stop when ``mean((m - m_hat)^2)`` and ``mean((D - D_hat)^2)`` are both below it.
        h_bound: if given, steps that would move a field beyond ``|H| > h_bound`` outwards are
            dropped (the authors' safeguard for TAP, ``h_bound = 5``); a fit held at the bound
            is reported as not converged.
        max_iter: iteration cap (forward evaluations after the first).
        stability: compute ``mean_map_radius`` (``N`` forward-mode derivatives of the method
            and one ``N x N`` eigenvalue problem on the host; ``False`` skips it and reports
            NaN).

    A converged fit is a solution of the method's moment-matching equations, not necessarily
    close to the true couplings: check ``stable`` (see :class:`MFInverseFit`) before running
    the inferred model forward.

    Example:
        >>> fit = fit_meanfield("plefka_t_o1", m, D, m_p, C_p)   # doctest: +SKIP
        >>> bool(fit.converged), bool(fit.stable), fit.H, fit.J  # doctest: +SKIP
    """
    fn = _fast(method)
    if update not in UPDATES:
        raise NeurocircuitsError(f"update must be one of {UPDATES}, got {update!r}.")
    m = jnp.asarray(m)
    dtype = m.dtype if jnp.issubdtype(m.dtype, jnp.floating) else jnp.result_type(float)
    m = m.astype(dtype)
    n = m.shape[-1]
    arrays = {"m": (m, (n,)), "D": (D, (n, n)), "m_p": (m_p, (n,)), "C_p": (C_p, (n, n))}
    if D_p is None:
        D_p = jnp.zeros((n, n), dtype)
    arrays["D_p"] = (D_p, (n, n))
    for name, (a, shape) in arrays.items():
        if jnp.shape(a) != shape:
            raise NeurocircuitsError(f"{name} must have shape {shape}, got {describe(a)}.")
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    check_nonnegative(tol, "tol")
    cast = lambda a: jnp.asarray(a, dtype)  # noqa: E731
    m_p, C_p, D, D_p = cast(m_p), cast(C_p), cast(D), cast(D_p)
    if update == "paper":
        eta_H = 0.1 if eta_H is None else eta_H
        eta_J = 1.0 / np.sqrt(n) if eta_J is None else eta_J
        K_inv = None
    else:
        eta_H = 0.5 if eta_H is None else eta_H
        eta_J = 0.5 if eta_J is None else eta_J
        if covariance is None:
            covariance = (mf.INPUT_COVARIANCE.get(method, "data") if isinstance(method, str)
                          else "data")
        K_inv = _input_covariance_inverse(covariance, m_p, C_p)
    check_nonnegative(eta_H, "eta_H")
    check_nonnegative(eta_J, "eta_J")
    if h_bound is not None:
        check_nonnegative(h_bound, "h_bound")
    bound = np.inf if h_bound is None else h_bound
    fwd_tol = 10 * mf._tol(dtype)
    H, J, k, gH, gD, fres = _fit_mf(fn, m, D, m_p, C_p, D_p, K_inv, cast(eta_H), cast(eta_J),
                                    cast(tol), cast(bound), jnp.zeros((n,), dtype),
                                    jnp.zeros((n, n), dtype), max_iter=max_iter)
    eh, ej = jnp.mean(gH**2), jnp.mean(gD**2)
    converged = (eh < tol) & (ej < tol) & (fres <= fwd_tol)
    radius = (mean_map_radius(fn, H, J, m_p, C_p, D_p) if stability
              else jnp.asarray(np.nan, dtype))
    return MFInverseFit(H, J, k, converged, eh, ej, fres, radius)


def mean_map_radius(method, H, J, m_p, C_p, D_p=None) -> Array:
    r"""Spectral radius of :math:`\partial\hat m_t/\partial m_{t-1}` for a forward method with
    fields ``H`` and couplings ``J`` at the moments ``(m_p, C_p, D_p)`` (``C_p``, ``D_p`` held
    fixed). Below 1, the mean-field dynamics of ``(H, J)`` is attracted to a state near these
    moments; above 1, it is repelled from it (see :class:`MFInverseFit`). NaN if the Jacobian
    is not finite. The Jacobian is built column by column with forward-mode derivatives (the
    roots of the self-consistent equations are differentiated implicitly), in batches that
    bound memory for ``plefka2_t_o2``; the eigenvalues are computed on the host (``numpy``),
    since the Jacobian is not symmetric."""
    fn = _fast(method)
    H = jnp.asarray(H)
    dtype = H.dtype
    n = H.shape[0]
    m_p = jnp.asarray(m_p, dtype)
    C_p = jnp.asarray(C_p, dtype)
    D_p = jnp.zeros((n, n), dtype) if D_p is None else jnp.asarray(D_p, dtype)
    cols = _mean_map_jacobian_t(fn, H, jnp.asarray(J, dtype), m_p, C_p, D_p,
                                batch=max(1, min(n, 2**22 // (n * n))))
    jac_t = np.asarray(cols, np.float64)
    if not np.all(np.isfinite(jac_t)):
        return jnp.asarray(np.nan, dtype)
    return jnp.asarray(np.max(np.abs(np.linalg.eigvals(jac_t))), dtype)


@functools.partial(jax.jit, static_argnames=("fn", "batch"))
def _mean_map_jacobian_t(fn, H, J, m_p, C_p, D_p, *, batch):
    def column(v):
        return jax.jvp(lambda x: fn(H, J, x, C_p, D_p).m, (m_p,), (v,))[1]

    return jax.lax.map(column, jnp.eye(m_p.shape[0], dtype=m_p.dtype), batch_size=batch)


def _input_covariance_inverse(covariance, m_p, C_p):
    if covariance == "independent":
        return jnp.diag(1.0 / jnp.maximum(1.0 - m_p**2, jnp.finfo(m_p.dtype).tiny))
    if covariance != "data":
        raise NeurocircuitsError(
            f"covariance must be 'data' or 'independent', got {covariance!r}."
        )
    evals, evecs = jnp.linalg.eigh(0.5 * (C_p + C_p.T))
    if not bool(evals[0] > 0):
        raise NeurocircuitsError(
            f"C_p must be positive definite for update='preconditioned' with "
            f"covariance='data' (smallest eigenvalue {float(evals[0]):.3g}); estimate it from "
            "more samples than spins, or use update='paper'."
        )
    return jnp.matmul(evecs / evals[None, :], evecs.T, precision=_P)


# ------------------------------------------------------------------------------------------
# closed forms


class ClosedFormFit(eqx.Module):
    """Result of a closed-form inverse: ``H``, ``J``, ``converged`` and ``residual`` of any
    self-consistent equation solved on the way (0 where none)."""

    H: Float[Array, " n"]
    J: Float[Array, "n n"]
    converged: Array
    residual: Array


def _closed_inputs(m, C_p, D, m_p):
    m = jnp.asarray(m)
    dtype = m.dtype if jnp.issubdtype(m.dtype, jnp.floating) else jnp.result_type(float)
    n = m.shape[0]
    m_p = m if m_p is None else m_p
    out = []
    for name, a, shape in (("m", m, (n,)), ("C_p", C_p, (n, n)), ("D", D, (n, n)),
                           ("m_p", m_p, (n,))):
        if jnp.shape(a) != shape:
            raise NeurocircuitsError(f"{name} must have shape {shape}, got {describe(a)}.")
        out.append(jnp.asarray(a, dtype))
    m, C_p, D, m_p = out
    if bool(jnp.any(jnp.abs(m) >= 1)):
        raise NeurocircuitsError("m must lie strictly inside (-1, 1) for a closed-form inverse.")
    B = jnp.linalg.solve(C_p.T, D.T).T  # D C_p^{-1}
    return m, C_p, D, m_p, B


def nmf_inverse(m, C_p, D, m_p=None) -> ClosedFormFit:
    r"""Naive mean-field inverse: :math:`J = A^{-1}DC_{t-1}^{-1}`, :math:`A =
    \mathrm{diag}(1-m^2)`, :math:`H = \tanh^{-1}m - Jm_{t-1}` (``m_p = m`` at stationarity).

    This is the classical (Roudi–Hertz) nMF inverse, whose :math:`D = AJC_{t-1}` is the
    delayed correlation of ``plefka_t_o1``; it is the closed form of
    ``fit_meanfield("plefka_t_o1", ...)``, not of ``fit_meanfield("nmf", ...)``, whose
    :math:`\hat D = AJ\,\mathrm{diag}(1-m_{t-1}^2)` ignores :math:`C_{t-1}` (solution
    :math:`J = A^{-1}D\,\mathrm{diag}(1-m_{t-1}^2)^{-1}`). Likewise :func:`tap_inverse` uses
    :math:`C_{t-1}`, and ``fit_meanfield("tap", ...)`` does not."""
    m, C_p, D, m_p, B = _closed_inputs(m, C_p, D, m_p)
    J = B / (1.0 - m**2)[:, None]
    H = jnp.arctanh(m) - J @ m_p
    return ClosedFormFit(H, J, jnp.asarray(True), jnp.zeros((), m.dtype))


def tap_inverse(m, C_p, D, m_p=None) -> ClosedFormFit:
    r"""TAP inverse (Roudi & Hertz 2011).

    With :math:`B = A^{-1}DC_{t-1}^{-1}`, :math:`J_{ij} = B_{ij}/(1 - F_i)` where :math:`F_i`
    is the smallest root in :math:`[0, 1/3]` of
    :math:`F(1-F)^2 = (1-m_i^2)\sum_jB_{ij}^2(1-m_{j,t-1}^2)`, and
    :math:`H_i = \tanh^{-1}m_i - \sum_jJ_{ij}m_{j,t-1} + m_iV_i`,
    :math:`V_i = \sum_jJ_{ij}^2(1-m_{j,t-1}^2)`. Rows where no root exists (right side above
    4/27) get :math:`F = 1/3` and ``converged = False``.
    """
    m, C_p, D, m_p, B = _closed_inputs(m, C_p, D, m_p)
    B = B / (1.0 - m**2)[:, None]
    c = (1.0 - m**2) * ((B**2) @ (1.0 - m_p**2))
    ok = c <= 4.0 / 27.0
    c_cl = jnp.minimum(c, 4.0 / 27.0)
    F = jnp.zeros_like(c)
    for _ in range(100):  # Newton from 0 on f(F) = F(1-F)^2 - c, increasing on [0, 1/3]
        f = F * (1 - F) ** 2 - c_cl
        fp = (1 - F) * (1 - 3 * F)
        F = jnp.clip(F - f / jnp.maximum(fp, 1e-12), 0.0, 1.0 / 3.0)
    residual = jnp.max(jnp.abs(F * (1 - F) ** 2 - c_cl))
    J = B / (1.0 - F)[:, None]
    V = (J**2) @ (1.0 - m_p**2)
    H = jnp.arctanh(m) - J @ m_p + m * V
    return ClosedFormFit(H, J, jnp.all(ok) & (residual < 1e-6), residual)


def emf_inverse(m, C_p, D, m_p=None, *, n_quad: int = 32, n_iter: int = 200) -> ClosedFormFit:
    r"""Exact-mean-field inverse (Mézard & Sakellariou 2011), the inverse of Plefka[t-1] o1.

    :math:`J = \mathrm{diag}(a)^{-1}DC_{t-1}^{-1}` with, per neuron, :math:`g_i` and
    :math:`\Delta_i` solving :math:`m_i = \int Dx\tanh(g_i + x\sqrt{\Delta_i})`,
    :math:`a_i = \int Dx[1-\tanh^2(g_i + x\sqrt{\Delta_i})]`,
    :math:`\Delta_i = \sum_jJ_{ij}^2(1-m_{j,t-1}^2)`; then :math:`H = g - Jm_{t-1}`.
    Solved by fixed-point iteration on :math:`\Delta` (Newton in :math:`g`).
    """
    m, C_p, D, m_p, B = _closed_inputs(m, C_p, D, m_p)
    x, w = (jnp.asarray(v, m.dtype) for v in mf._hermite(n_quad))
    b2 = (B**2) @ (1.0 - m_p**2)

    def solve_g(Delta, g):
        sd = jnp.sqrt(Delta)[:, None]
        for _ in range(30):
            T = jnp.tanh(g[:, None] + sd * x[None])
            f = T @ w - m
            a = (1 - T**2) @ w
            g = g - f / jnp.maximum(a, 1e-12)
        T = jnp.tanh(g[:, None] + sd * x[None])
        return g, (1 - T**2) @ w, jnp.max(jnp.abs(T @ w - m))

    def body(carry, _):
        Delta, g = carry
        g, a, _ = solve_g(Delta, g)
        return (b2 / a**2, g), None

    g0 = jnp.arctanh(m)
    (Delta, g), _ = jax.lax.scan(body, (jnp.zeros_like(m), g0), None, length=n_iter)
    g, a, res_m = solve_g(Delta, g)
    res_D = jnp.max(jnp.abs(b2 / a**2 - Delta))
    J = B / a[:, None]
    H = g - J @ m_p
    residual = jnp.maximum(res_m, res_D)
    return ClosedFormFit(H, J, residual < 1e-6, residual)


# ------------------------------------------------------------------------------------------
# reconstruction


class Reconstruction(eqx.Module):
    """Predictions over ``betas``: time-averaged (over the last ``window`` steps) mean ``m``,
    mean off-diagonal ``C``, mean ``D`` and the entropy production ``sigma`` (per step, from
    :func:`~neurocircuits.ising.entropy_production` with the averaged ``D``), ``valid``, whether
    the forward run stayed inside the bounds of ±1-spin moments
    (:attr:`~neurocircuits.ising.meanfield.MFTrajectory.valid`), and ``saturated``, the fraction
    of spins whose predicted fluctuation :math:`1 - m_i^2` is exactly 0 in floating point at
    some step of the window (:math:`|h_i|` beyond ~9 in float32, ~19 in float64). A saturated
    spin contributes exactly 0 to ``C``, ``D`` and ``sigma`` by rounding, not by prediction:
    ``sigma = 0`` with ``saturated = 1`` is a forward run that froze (typically a model from an
    unstable inverse fit, :attr:`MFInverseFit.stable`), not a prediction of no dissipation."""

    betas: Array
    m: Array
    C: Array
    D: Array
    sigma: Array
    valid: Array
    saturated: Array


def reconstruct(method, H, J, betas, *, s0, n_steps: int = 128,
                window: int | None = None) -> Reconstruction:
    r"""Rescale inferred ``(H, J)`` by each :math:`\beta` and predict the dynamics with a
    forward method from ``s0``.

    The prediction is only as good as the inferred model's own dynamics: check
    :attr:`MFInverseFit.stable` of the fit (an unstable moment-matching solution runs off to
    a frozen state) and :attr:`Reconstruction.saturated` of the result."""
    n_steps = check_int(n_steps, "n_steps", minimum=1)
    window = n_steps // 2 if window is None else check_int(window, "window", minimum=1)
    H = jnp.asarray(H)
    J = jnp.asarray(J, H.dtype)
    betas = jnp.asarray(betas, H.dtype)
    n = H.shape[0]
    off = ~jnp.eye(n, dtype=bool)

    out = []
    for b in np.asarray(betas):  # one compiled runner per method and shape, reused over betas
        tr = mf.run(method, b * H, b * J, s0, n_steps=n_steps)
        Dm = tr.D[-window:].mean(0)
        Cm = tr.C[-window:].mean(0)
        sat = jnp.mean(jnp.any(1.0 - tr.m[-window:] ** 2 == 0.0, axis=0))
        out.append((tr.m[-window:].mean(), jnp.sum(jnp.where(off, Cm, 0.0)) / (n * (n - 1)),
                    Dm.mean(), entropy_production(b * J, Dm), tr.valid, sat))
    m, C, D, sigma, valid, saturated = (jnp.stack(v) for v in zip(*out, strict=True))
    return Reconstruction(betas, m, C, D, sigma, valid, saturated)
