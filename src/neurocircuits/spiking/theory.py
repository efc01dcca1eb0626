r"""Theory of spiking networks: the Siegert rate of LIF neurons, Brunel's self-consistent rates,
and a population mean-field (with linear response) for multi-population networks.

Siegert (diffusion approximation): for :math:`\tau_m \dot V = -(V - \mu) + \sigma\sqrt{\tau_m}\,
\xi(t)`, threshold :math:`\theta`, reset :math:`V_r`, refractory period :math:`\tau_{ref}`,

.. math::

    \frac{1}{\nu} = \tau_{ref} + \tau_m \sqrt{\pi} \int_{(V_r - \mu)/\sigma}^{(\theta-\mu)/\sigma}
        e^{u^2} \left(1 + \mathrm{erf}\, u\right) du .

(Siegert 1951; Amit & Tsodyks 1991; Brunel 2000, eq. 21.) Rates in Hz; voltages in mV; times in
ms. With exponentially filtered input (synaptic time constant :math:`\tau_s`) the boundaries
shift by :math:`\frac{\alpha}{2}\sigma\sqrt{\tau_s/\tau_m}`, :math:`\alpha = \sqrt2|\zeta(1/2)|`
(Fourcaud & Brunel 2002).

References:
    Brunel, J. Comput. Neurosci. 8, 183 (2000); Fourcaud & Brunel, Neural Comput. 14, 2057
    (2002); Amit & Brunel, Cereb. Cortex 7, 237 (1997).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import integrate, optimize, special

from .._core.errors import NeurocircuitsError

__all__ = ["siegert", "siegert_derivative", "lif_cv", "BrunelResult", "brunel_rate",
           "BrunelStability", "brunel_stability", "MeanFieldResult",
           "ConductanceMeanFieldResult", "izhikevich_transfer", "conductance_mean_field",
           "mean_field", "ALPHA"]

#: sqrt(2) |zeta(1/2)|, the colored-noise / discretisation boundary-shift constant
ALPHA = float(np.sqrt(2.0) * 1.4603545088095868)  # zeta(1/2) = -1.46035...


def _siegert_one(mu, sigma, tau_m, V_th, V_r, t_ref):
    if sigma <= 0:
        if mu <= V_th:
            return 0.0
        return 1.0 / (t_ref + tau_m * np.log((mu - V_r) / (mu - V_th))) * 1e3
    y_th, y_r = (V_th - mu) / sigma, (V_r - mu) / sigma
    if y_r > 25:  # e^{u^2} overflows: the rate is 0 to double precision
        return 0.0
    if y_th > 25:
        return 0.0
    # e^{u^2}(1 + erf u) = erfcx(-u), smooth and bounded for u < 0
    val, _ = integrate.quad(lambda u: special.erfcx(-u), y_r, y_th, limit=200)
    return 1e3 / (t_ref + tau_m * np.sqrt(np.pi) * val)


def siegert(mu, sigma, *, tau_m: float, V_th: float, V_r: float, t_ref: float,
            tau_s: float = 0.0):
    r"""The stationary rate (Hz) of LIF neurons under white-noise input (see the module
    docstring). ``mu`` (mean free membrane potential, mV, absolute) and ``sigma`` (mV) are
    scalars or arrays of one shape; ``tau_s > 0`` applies the Fourcaud--Brunel boundary shift
    for synaptic filtering."""
    mu, sigma = np.broadcast_arrays(np.asarray(mu, np.float64), np.asarray(sigma, np.float64))
    if np.any(sigma < 0) or not np.all(np.isfinite(mu)) or not np.all(np.isfinite(sigma)):
        raise NeurocircuitsError(f"sigma must be finite and >= 0 mV and mu finite; got "
                                 f"mu={mu.ravel()[:4]}, sigma={sigma.ravel()[:4]}.")
    if not tau_m > 0 or t_ref < 0 or not V_th > V_r:
        raise NeurocircuitsError(
            f"need tau_m > 0, t_ref >= 0 and V_th > V_r; got tau_m={tau_m}, t_ref={t_ref}, "
            f"V_th={V_th}, V_r={V_r}.")
    shift = 0.5 * ALPHA * sigma * np.sqrt(tau_s / tau_m)
    out = np.vectorize(_siegert_one)(mu, sigma, tau_m, V_th + shift, V_r + shift, t_ref)
    return float(out) if out.ndim == 0 else out


def siegert_derivative(mu, sigma, *, h: float = 1e-3, **kw):
    """d nu / d mu and d nu / d sigma (Hz/mV) by central differences."""
    d_mu = (siegert(mu + h, sigma, **kw) - siegert(mu - h, sigma, **kw)) / (2 * h)
    d_sig = (siegert(mu, sigma + h, **kw) - siegert(mu, np.maximum(sigma - h, 0), **kw)) / (2 * h)
    return d_mu, d_sig


@dataclasses.dataclass(frozen=True)
class BrunelResult:
    """The self-consistent rate of Brunel's (2000) model A."""

    rate_hz: float
    mu: float
    sigma: float
    converged: bool
    residual: float


def brunel_rate(*, g: float, eta: float, J: float = 0.1, C_E: int = 1000, gamma: float = 0.25,
                tau_m: float = 20.0, V_th: float = 20.0, V_r: float = 10.0, t_ref: float = 2.0,
                E_L: float = 0.0) -> BrunelResult:
    r"""Self-consistent stationary rate of the Brunel (2000) sparse E/I network (model A):

    .. math::

        \mu = C_E J \tau (\nu_{ext} + \nu (1 - g\gamma)),\quad
        \sigma^2 = J^2 C_E \tau (\nu_{ext} + \nu (1 + g^2 \gamma)),\quad
        \nu = \phi(\mu, \sigma),\quad \nu_{ext} = \eta\,\nu_{thr} = \eta\,\frac{\theta}{J C_E \tau}

    (rates per ms inside; the result in Hz; voltages relative to ``E_L``). Solved by bracketing
    on :math:`\nu \in [0, 1/t_{ref})`.
    """
    theta = V_th - E_L
    nu_thr = theta / (J * C_E * tau_m)  # 1/ms
    nu_ext = eta * nu_thr

    def musig(nu):
        mu = C_E * J * tau_m * (nu_ext + nu * (1 - g * gamma))
        var = J * J * C_E * tau_m * (nu_ext + nu * (1 + g * g * gamma))
        return mu, np.sqrt(var)

    def f(nu):
        mu, s = musig(nu)
        return siegert(mu + E_L, s, tau_m=tau_m, V_th=V_th, V_r=V_r, t_ref=t_ref) * 1e-3 - nu

    hi = 1.0 / t_ref if t_ref > 0 else 1.0
    grid = np.linspace(0.0, hi * 0.999, 400)
    vals = np.array([f(x) for x in grid])
    sign = np.nonzero(np.sign(vals[:-1]) * np.sign(vals[1:]) <= 0)[0]
    if sign.size == 0:
        return BrunelResult(float("nan"), float("nan"), float("nan"), False, float("inf"))
    i = sign[0]
    nu = optimize.brentq(f, grid[i], grid[i + 1], xtol=1e-12) if vals[i] != 0 else grid[i]
    mu, s = musig(nu)
    return BrunelResult(float(nu * 1e3), float(mu + E_L), float(s), True, float(abs(f(nu))))


def _lif_cv_one(mu, sigma, tau_m, V_th, V_r, t_ref):
    if sigma <= 0:
        return 0.0 if mu > V_th else float("nan")
    y_th, y_r = (V_th - mu) / sigma, (V_r - mu) / sigma
    if y_th > 15:  # no spikes to double precision
        return float("nan")
    # e^{x^2} \int_{-inf}^x e^{y^2} (1 + erf y)^2 dy with y = x - u and
    # e^{y^2}(1 + erf y)^2 = erfcx(-y)^2 e^{-y^2}: \int_0^inf e^{2xu - u^2} erfcx(u - x)^2 du,
    # bounded for every x (no overflow of e^{x^2} far below threshold)
    def inner(x):
        return integrate.quad(lambda u: np.exp(2 * x * u - u * u) * special.erfcx(u - x) ** 2,
                              0.0, np.inf, limit=200)[0]

    outer, _ = integrate.quad(inner, y_r, y_th, limit=200)
    mean_isi = t_ref + tau_m * np.sqrt(np.pi) * integrate.quad(
        lambda u: special.erfcx(-u), y_r, y_th, limit=200)[0]
    return float(np.sqrt(2.0 * np.pi * outer) * tau_m / mean_isi)


def lif_cv(mu, sigma, *, tau_m: float, V_th: float, V_r: float, t_ref: float):
    r"""The coefficient of variation of the inter-spike intervals of a LIF neuron under
    white-noise input (the renewal process of :func:`siegert`):

    .. math::

        CV^2 = 2\pi (\nu\tau_m)^2 \int_{y_r}^{y_\theta} e^{x^2} dx
            \int_{-\infty}^{x} e^{y^2} (1 + \mathrm{erf}\,y)^2 dy ,

    :math:`y_\theta = (\theta - \mu)/\sigma`, :math:`y_r = (V_r - \mu)/\sigma`, :math:`\nu` the
    Siegert rate (Brunel 2000, appendix A). ``mu`` (mV, absolute) and ``sigma`` (mV) are scalars
    or arrays of one shape; NaN where the rate vanishes (no intervals). With Poisson input of
    small PSPs (Brunel's model A with Poisson presynaptic trains) this is the CV of the
    asynchronous state; recurrent trains that are more regular than Poisson lower it.

    Example:
        >>> round(lif_cv(21.0, 7.7, tau_m=20.0, V_th=20.0, V_r=10.0, t_ref=2.0), 2)
        0.68
    """
    mu, sigma = np.broadcast_arrays(np.asarray(mu, np.float64), np.asarray(sigma, np.float64))
    if np.any(sigma < 0) or not np.all(np.isfinite(mu)) or not np.all(np.isfinite(sigma)):
        raise NeurocircuitsError(f"sigma must be finite and >= 0 mV and mu finite; got "
                                 f"mu={mu.ravel()[:4]}, sigma={sigma.ravel()[:4]}.")
    if not tau_m > 0 or t_ref < 0 or not V_th > V_r:
        raise NeurocircuitsError(
            f"need tau_m > 0, t_ref >= 0 and V_th > V_r; got tau_m={tau_m}, t_ref={t_ref}, "
            f"V_th={V_th}, V_r={V_r}.")
    out = np.vectorize(_lif_cv_one)(mu, sigma, tau_m, V_th, V_r, t_ref)
    return float(out) if out.ndim == 0 else out


@dataclasses.dataclass(frozen=True)
class BrunelStability:
    r"""Linear stability of the asynchronous state of Brunel's model A.

    Attributes:
        rate_hz: the stationary rate (:func:`brunel_rate`).
        eigenvalues: the roots :math:`\lambda` of the characteristic equation found in the
            searched region, largest real part first, in units of 1/s (real part: growth rate,
            imaginary part: angular frequency; one of each conjugate pair).
        growth_rate: :math:`\mathrm{Re}\,\lambda` of the leading root (1/s); < 0: stable.
        frequency_hz: :math:`\mathrm{Im}\,\lambda / 2\pi` of the leading root (Hz): the
            frequency of the oscillation that grows (unstable) or of the damped mode that finite
            size noise excites (stable).
        stable: no root with :math:`\mathrm{Re}\,\lambda > 0` in the searched region.
        converged: the fixed point exists and every root was refined to ``residual``.
        residual: the largest :math:`|F(\lambda)|` at the returned roots.
    """

    rate_hz: float
    eigenvalues: np.ndarray
    growth_rate: float
    frequency_hz: float
    stable: bool
    converged: bool
    residual: float

    @property
    def quality(self) -> float:
        """Oscillation periods per e-fold decay of the leading damped mode, ``f / |Re lambda|``
        (inf when it does not decay)."""
        return self.frequency_hz / -self.growth_rate if self.growth_rate < 0 else float("inf")


def _threshold_integration(mu, sigma, tau_m, V_th, V_r, t_ref, lam, n_grid):
    r"""Richardson's (2007) threshold integration of the stationary and the linearised
    Fokker--Planck equation of the LIF neuron, :math:`\tau\dot V = \mu - V + \sigma\sqrt\tau\xi`,
    from threshold down to ``V_min``. Voltages relative to rest. Returns the stationary rate
    (1/ms) and the rate responses to a modulation of ``mu`` (per mV) and of ``sigma^2`` (per
    mV^2) at the complex rates ``lam`` (1/ms)."""
    V = np.linspace(V_th, min(V_r, mu) - 7.0 * sigma, n_grid)  # downward
    d = V[0] - V[1]
    s2 = sigma * sigma
    G = 2.0 * (mu - V) / s2
    z = -G * d
    e = np.exp(z)
    small = np.abs(z) < 1e-12
    c = np.where(small, -d, -d * np.expm1(np.where(small, 1.0, z)) / np.where(small, 1.0, z))
    k_reset = int(np.nonzero((V[:-1] >= V_r) & (V[1:] < V_r))[0][0])
    # stationary density (per unit rate), J0 = 1 above the reset and 0 below
    P0 = np.zeros(n_grid)
    J0 = np.zeros(n_grid)
    J0[: k_reset + 1] = 1.0
    for k in range(n_grid - 1):
        P0[k + 1] = P0[k] * e[k] + (-2.0 * tau_m * J0[k] / s2) * c[k]
    mass = 0.5 * np.sum(P0[1:] + P0[:-1]) * d
    nu0 = 1.0 / (mass + t_ref)
    P0 = P0 * nu0
    J0 = J0 * nu0
    dP0 = 2.0 * ((mu - V) * P0 - tau_m * J0) / s2
    lam = np.asarray(lam, complex)
    reset = np.exp(-lam * t_ref)
    # three solutions from threshold down: free (nu1 = 1 at threshold) and forced by a unit
    # modulation of mu and of sigma^2 (P1 = J1 = 0 at threshold)
    Pf, Pm, Ps = (np.zeros_like(lam) for _ in range(3))
    Jf, Jm, Js = np.ones_like(lam), np.zeros_like(lam), np.zeros_like(lam)
    a = 2.0 * tau_m / s2
    for k in range(n_grid - 1):
        Hf = -a * Jf
        Hm = 2.0 * P0[k] / s2 - a * Jm
        Hs = -dP0[k] / s2 - a * Js
        Jf = Jf + lam * Pf * d
        Jm = Jm + lam * Pm * d
        Js = Js + lam * Ps * d
        Pf = Pf * e[k] + Hf * c[k]
        Pm = Pm * e[k] + Hm * c[k]
        Ps = Ps * e[k] + Hs * c[k]
        if k == k_reset:
            Jf = Jf - reset
    # the flux vanishes at V -> -inf: nu1 Jf + mu1 Jm + s1 Js = 0
    return nu0, -Jm / Jf, -Js / Jf


def brunel_stability(*, g: float, eta: float, J: float = 0.1, C_E: int = 1000,
                     gamma: float = 0.25, tau_m: float = 20.0, V_th: float = 20.0,
                     V_r: float = 10.0, t_ref: float = 2.0, delay: float = 1.5,
                     E_L: float = 0.0, f_max: float = 700.0, growth_range: float = 400.0,
                     n_grid: int = 2000) -> BrunelStability:
    r"""Linear stability of the asynchronous state of Brunel's (2000) model A (diffusion
    approximation, his section 4): a perturbation :math:`\nu_1 e^{\lambda t}` of the rate
    modulates the mean and the variance of the input after the delay ``D``,
    :math:`\mu_1 = K_\mu \nu_1 e^{-\lambda D}`, :math:`(\sigma^2)_1 = K_\sigma \nu_1
    e^{-\lambda D}`, :math:`K_\mu = C_E J \tau (1 - g\gamma)`, :math:`K_\sigma = C_E J^2 \tau
    (1 + g^2\gamma)`, and the eigenvalues solve

    .. math::

        1 = e^{-\lambda D}\left[K_\mu R_\mu(\lambda) + K_\sigma R_{\sigma^2}(\lambda)\right],

    with :math:`R_\mu, R_{\sigma^2}` the LIF rate responses to a modulated mean and variance,
    computed by threshold integration of the linearised Fokker--Planck equation (Richardson,
    Phys. Rev. E 76, 021919, 2007) instead of Brunel's hypergeometric functions. The roots are
    searched on a grid of :math:`|\mathrm{Re}\,\lambda| \le` ``growth_range`` (1/s) and
    :math:`0 < \mathrm{Im}\,\lambda/2\pi \le` ``f_max`` (Hz), then refined by Newton's method.

    Unstable with a frequency near :math:`1/(4D)`-:math:`1/(2D)`: the fast synchronous irregular
    (or, at high rates, synchronous regular) state; unstable at a few tens of Hz with
    :math:`\nu_{ext} \approx \nu_{thr}`: the slow oscillation; stable: the asynchronous state,
    whose finite-size fluctuations show the damped mode (``frequency_hz``, decay
    ``-growth_rate``). Parameters as :func:`brunel_rate`; ``delay`` in ms.

    Example:
        >>> s = brunel_stability(g=6.0, eta=4.0)
        >>> s.stable, round(s.frequency_hz, -1)
        (False, 190.0)
    """
    if not delay >= 0 or not np.isfinite(delay):
        raise NeurocircuitsError(f"delay must be finite and >= 0 ms, got {delay!r}.")
    if isinstance(n_grid, bool) or not isinstance(n_grid, (int, np.integer)) or n_grid < 200:
        raise NeurocircuitsError(f"n_grid must be an int >= 200 voltage points, got {n_grid!r}.")
    r = brunel_rate(g=g, eta=eta, J=J, C_E=C_E, gamma=gamma, tau_m=tau_m, V_th=V_th, V_r=V_r,
                    t_ref=t_ref, E_L=E_L)
    nan = float("nan")
    if not r.converged:
        return BrunelStability(nan, np.zeros(0, complex), nan, nan, False, False, float("inf"))
    mu, sigma = r.mu - E_L, r.sigma
    th, vr = V_th - E_L, V_r - E_L
    K_mu = C_E * J * tau_m * (1 - g * gamma)
    K_s = C_E * J * J * tau_m * (1 + g * g * gamma)

    def F(lam):
        _, Rm, Rs = _threshold_integration(mu, sigma, tau_m, th, vr, t_ref, lam, n_grid)
        return 1.0 - np.exp(-lam * delay) * (K_mu * Rm + K_s * Rs)

    x = np.linspace(-growth_range, growth_range, 33) * 1e-3
    w = 2 * np.pi * np.linspace(f_max / 70, f_max, 70) * 1e-3
    X, W = np.meshgrid(x, w, indexing="ij")
    A = np.abs(F((X + 1j * W).ravel())).reshape(X.shape)
    starts = [X[i, j] + 1j * W[i, j] for i in range(A.shape[0]) for j in range(A.shape[1])
              if A[i, j] <= A[max(i - 1, 0):i + 2, max(j - 1, 0):j + 2].min() and A[i, j] < 1.0]
    if not starts:
        return BrunelStability(r.rate_hz, np.zeros(0, complex), -np.inf, nan, True, True, 0.0)
    z = np.asarray(starts, complex)
    h = 1e-7
    for _ in range(40):  # Newton on all candidates at once (F is analytic in lambda)
        f0 = F(z)
        df = (F(z + h) - f0) / h
        step = f0 / np.where(df == 0, 1.0, df)
        step = np.where(np.abs(step) > 0.05, 0.05 * step / np.abs(step), step)
        z = z - step
        if np.max(np.abs(step)) < 1e-10:
            break
    res = np.abs(F(z))
    keep = (res < 1e-6) & (z.imag > 0) & (np.abs(z.real) <= 2 * growth_range * 1e-3)
    roots = []
    for v in z[keep]:
        if all(abs(v - u) > 1e-5 for u in roots):
            roots.append(v)
    roots = np.array(sorted(roots, key=lambda v: -v.real), complex) * 1e3  # 1/s
    if roots.size == 0:
        return BrunelStability(r.rate_hz, roots, -np.inf, nan, True, True, 0.0)
    lead = roots[0]
    return BrunelStability(r.rate_hz, roots, float(lead.real), float(lead.imag / (2 * np.pi)),
                           bool(lead.real < 0), True, float(res[keep].max()))


@dataclasses.dataclass(frozen=True)
class MeanFieldResult:
    """Self-consistent population rates of a multi-population LIF network.

    Attributes:
        rates_hz: per population.
        mu, sigma: mean free membrane potential (mV, absolute) and its s.d. (mV).
        converged, residual: the max |nu - phi(nu)| in Hz.
    """

    rates_hz: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray
    converged: bool
    residual: float


def mean_field(*, K: np.ndarray, J: np.ndarray, K_ext: np.ndarray, J_ext: np.ndarray,
               nu_ext: float | np.ndarray, tau_m: float, V_th: float, V_r: float, t_ref: float,
               E_L: float, tau_s: float = 0.0, I_dc: np.ndarray | float = 0.0,
               tau_ext_mu: float | None = None, nu0: np.ndarray | None = None,
               n_iter: int = 3000, damping: float = 0.2, tol: float = 1e-4) -> MeanFieldResult:
    r"""Population rates :math:`\nu_a = \phi(\mu_a, \sigma_a)` with

    .. math::

        \mu_a = E_L + \tau_m\Big(\sum_b K_{ab} J_{ab} \nu_b + K^{ext}_a J^{ext}_a \nu_{ext}\Big)
                + \mu^{dc}_a,\qquad
        \sigma_a^2 = \tau_m \Big(\sum_b K_{ab} J_{ab}^2 \nu_b
                + K^{ext}_a (J^{ext}_a)^2 \nu_{ext}\Big)

    where ``J`` are PSP jumps for delta synapses (mV) -- or, for exponential current synapses, the
    integrated PSP ``J = w tau_s / C`` (mV) with the Fourcaud--Brunel shift (``tau_s``);
    ``K`` in-degrees; rates in Hz (converted to 1/ms inside). Solved by damped fixed-point
    iteration. ``I_dc`` is a per-population mean shift in mV.
    """
    K, J = np.asarray(K, float), np.asarray(J, float)
    K_ext, J_ext = np.asarray(K_ext, float), np.asarray(J_ext, float)
    m = K.shape[0]
    nu = np.full(m, 5.0) if nu0 is None else np.asarray(nu0, float).copy()

    def musig(nu_hz):
        r = nu_hz * 1e-3
        ext = np.broadcast_to(np.asarray(nu_ext, float) * 1e-3, (m,))
        mu = E_L + tau_m * (K * J) @ r + tau_m * K_ext * J_ext * ext + I_dc
        var = tau_m * ((K * J * J) @ r + K_ext * J_ext ** 2 * ext)
        return mu, np.sqrt(var)

    res = np.inf
    for _ in range(n_iter):
        mu, s = musig(nu)
        new = siegert(mu, s, tau_m=tau_m, V_th=V_th, V_r=V_r, t_ref=t_ref, tau_s=tau_s)
        res = float(np.max(np.abs(new - nu)))
        if res < tol:
            nu = new
            break
        nu = nu + damping * (new - nu)
    mu, s = musig(nu)
    return MeanFieldResult(nu, mu, s, res < tol * 10, res)


# ------------------------------------------------------------------------------------------
# conductance-driven Izhikevich populations (the modular RS/FS/LTS cortex)
# ------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ConductanceMeanFieldResult:
    """Self-consistent rates of conductance-coupled Izhikevich populations.

    Attributes:
        rates_hz: per population ``(P,)``.
        input_e_hz, input_i_hz: the total recurrent E and I input rate each cell receives (Hz).
        gain: ``d nu_a / d lambda^E_a`` and ``d nu_a / d lambda^I_a`` (Hz per Hz of input),
            ``(P, 2)``, by central differences with common random numbers.
        converged, residual: the max |nu - phi(nu)| (Hz) at the last iteration, and whether it
            is below ``tol`` (the transfer function is estimated by simulation, so the
            residual has a noise floor of a few percent of the rates).
        iterations: fixed-point iterations used.
    """

    rates_hz: np.ndarray
    input_e_hz: np.ndarray
    input_i_hz: np.ndarray
    gain: np.ndarray
    converged: bool
    residual: float
    iterations: int


def izhikevich_transfer(presets, *, rate_e, rate_i, w_e: float, w_i: float, tau_e: float,
                        tau_i: float, E_e: float, E_i: float, ext_rate: float, w_ext: float,
                        key, n_cells: int = 200, duration: float = 500.0,
                        t_transient: float = 100.0, dt: float = 0.1) -> np.ndarray:
    r"""Stationary rates (Hz) of uncoupled Izhikevich cells driven by independent Poisson
    conductance input: excitatory at total rate ``rate_e`` (Hz, weight ``w_e``) plus the external
    drive (``ext_rate``, ``w_ext``), inhibitory at ``rate_i`` (weight ``w_i``); one value per
    entry of ``presets`` (``rate_e``/``rate_i`` per entry, broadcast). The transfer function of
    the mean-field theory, estimated on ``n_cells`` cells per entry over ``duration`` ms
    (reproducible for a fixed ``key``: common random numbers across calls)."""
    presets = tuple(presets)
    P = len(presets)
    if P == 0 or any(p not in ("RS", "FS", "LTS") for p in presets):
        raise NeurocircuitsError(f"presets must be a non-empty sequence of 'RS', 'FS', 'LTS', "
                                 f"got {presets!r}.")
    r_e = np.broadcast_to(np.asarray(rate_e, np.float64), (P,))
    r_i = np.broadcast_to(np.asarray(rate_i, np.float64), (P,))
    if np.any(~np.isfinite(r_e)) or np.any(~np.isfinite(r_i)) or np.any(r_e < 0) or \
            np.any(r_i < 0):
        raise NeurocircuitsError(f"input rates must be finite and >= 0 Hz, got rate_e={r_e}, "
                                 f"rate_i={r_i}.")
    return _transfer(presets, n_cells, float(duration), float(t_transient), float(dt))(
        r_e, r_i, (w_e, w_i, tau_e, tau_i, E_e, E_i, ext_rate, w_ext), key)


_TRANSFER_CACHE: dict = {}


def _transfer(presets, n_cells, duration, t_transient, dt):
    import jax
    import jax.numpy as jnp

    from .inputs import PoissonInput
    from .izhikevich import Izhikevich
    from .network import SpikeRecorder, SpikingNetwork
    from .synapses import ConductanceExp

    sig = (presets, n_cells, duration, t_transient, dt)
    if sig in _TRANSFER_CACHE:
        return _TRANSFER_CACHE[sig]
    P = len(presets)
    n = P * n_cells
    labels = np.repeat(np.arange(P), n_cells).astype(np.int32)
    izh = Izhikevich.from_types(*[(p, n_cells) for p in presets])
    n_tr = int(round(t_transient / dt))
    n_run = int(round((duration - t_transient) / dt))

    import equinox as eqx

    z = np.zeros(n, np.float32)
    template = SpikingNetwork(
        izh, n, receptors=(ConductanceExp(5.0, 0.0), ConductanceExp(10.0, -80.0)),
        inputs=(PoissonInput(z, 1, 1.0, 0), PoissonInput(0.0, 1, 1.0, 0),
                PoissonInput(z, 1, 1.0, 1)),
        labels=labels, recorder=SpikeRecorder(window=1, capacity=1), max_spikes_per_step=1)
    lab = jnp.asarray(labels)

    def one(r_e, r_i, prm, key):
        w_e, w_i, tau_e, tau_i, E_e, E_i, ext_rate, w_ext = prm
        where = lambda m: (m.inputs[0].rate, m.inputs[0].weight, m.inputs[1].rate,  # noqa: E731
                           m.inputs[1].weight, m.inputs[2].rate, m.inputs[2].weight,
                           m.receptors[0].tau, m.receptors[0].E_rev, m.receptors[1].tau,
                           m.receptors[1].E_rev)
        return eqx.tree_at(where, template, (r_e[lab], w_e, ext_rate, w_ext, r_i[lab], w_i,
                                             tau_e, E_e, tau_i, E_i))

    def rates(r_e, r_i, prm, key):
        prm = tuple(jnp.asarray(v, jnp.float32) for v in prm)
        net = one(jnp.asarray(r_e, jnp.float32), jnp.asarray(r_i, jnp.float32), prm, key)
        k0, k1 = jax.random.split(key)
        s0 = net.initial_state(k0, V0=-65.0 + 3.0 * jax.random.normal(k0, (n,)))

        def body(c, k):
            s, cnt = c
            s = net.step(s, 0.0, dt, jax.random.fold_in(k1, k), None)
            return (s, cnt + jnp.where(k >= n_tr, s.spiked.astype(jnp.float32), 0.0)), None

        (s, cnt), _ = jax.lax.scan(body, (s0, jnp.zeros((n,), jnp.float32)),
                                   jnp.arange(n_tr + n_run))
        per = jax.ops.segment_sum(cnt, jnp.asarray(labels), num_segments=P) / n_cells
        return per / (n_run * dt * 1e-3)

    fn = jax.jit(rates)

    def call(r_e, r_i, prm, key):
        return np.asarray(fn(r_e, r_i, prm, key), np.float64)

    _TRANSFER_CACHE[sig] = call
    return call


def conductance_mean_field(presets, *, K_e, K_i, w_e: float, w_i: float, tau_e: float = 5.0,
                           tau_i: float = 10.0, E_e: float = 0.0, E_i: float = -80.0,
                           ext_rate: float = 0.0, w_ext: float = 0.0, key, n_cells: int = 100,
                           duration: float = 400.0, t_transient: float = 100.0, dt: float = 0.1,
                           nu0=None, damping: float = 0.5, n_iter: int = 30, tol: float = 0.03,
                           gains: bool = True) -> ConductanceMeanFieldResult:
    r"""Mean-field rates of conductance-coupled Izhikevich populations (Amit--Brunel style):
    every cell of population ``a`` receives independent Poisson spike trains at the rates
    :math:`\lambda^E_a = \sum_b K^e_{ab}\,\nu_b` (weight ``w_e``, plus the external drive) and
    :math:`\lambda^I_a = \sum_b K^i_{ab}\,\nu_b` (weight ``w_i``), so that
    :math:`\nu_a = \phi_a(\lambda^E_a, \lambda^I_a)`, with the transfer function
    :math:`\phi_a` of :func:`izhikevich_transfer` (the single-cell response is estimated by
    simulation, the rest is the mean-field closure). Solved by damped iteration with common
    random numbers; ``tol`` is relative (max over populations).

    Args:
        presets: cell class of every population (``"RS"``, ``"FS"``, ``"LTS"``), ``P`` entries.
        K_e, K_i: in-degree matrices ``(P, P)``: synapses a cell of population ``a`` receives
            from population ``b`` through the excitatory / inhibitory receptor.
        w_e, w_i, tau_e, tau_i, E_e, E_i, ext_rate, w_ext: as in
            :func:`~neurocircuits.spiking.circuits.modular_cortex` (conductances in Izhikevich
            units, ms, mV, Hz).
        key: PRNG key of the transfer-function estimate.
    """
    presets = tuple(presets)
    P = len(presets)
    K_e, K_i = np.asarray(K_e, np.float64), np.asarray(K_i, np.float64)
    for name, K in (("K_e", K_e), ("K_i", K_i)):
        if K.shape != (P, P) or not np.all(np.isfinite(K)) or np.any(K < 0):
            raise NeurocircuitsError(f"{name} must be a finite, non-negative ({P}, {P}) matrix "
                                     f"(one row and column per preset), got shape {K.shape}.")
    prm = dict(w_e=w_e, w_i=w_i, tau_e=tau_e, tau_i=tau_i, E_e=E_e, E_i=E_i, ext_rate=ext_rate,
               w_ext=w_ext, key=key, n_cells=n_cells, duration=duration,
               t_transient=t_transient, dt=dt)
    phi = lambda re, ri: izhikevich_transfer(presets, rate_e=re, rate_i=ri, **prm)  # noqa: E731
    nu = phi(np.zeros(P), np.zeros(P)) if nu0 is None else np.asarray(nu0, np.float64).copy()
    res, rel, used = np.inf, np.inf, 0
    for k in range(1, n_iter + 1):
        used = k
        new = phi(K_e @ nu, K_i @ nu)
        res = float(np.max(np.abs(new - nu)))
        rel = res / max(float(np.max(np.abs(new))), 1e-3)
        nu = nu + damping * (new - nu)
        if rel < tol:
            break
    lam_e, lam_i = K_e @ nu, K_i @ nu
    gain = np.full((P, 2), np.nan)
    if gains:
        h_e = 0.2 * np.maximum(lam_e, 50.0)
        h_i = 0.2 * np.maximum(lam_i, 50.0)
        gain[:, 0] = (phi(lam_e + h_e, lam_i) - phi(np.maximum(lam_e - h_e, 0), lam_i)) / (
            lam_e + h_e - np.maximum(lam_e - h_e, 0))
        gain[:, 1] = (phi(lam_e, lam_i + h_i) - phi(lam_e, np.maximum(lam_i - h_i, 0))) / (
            lam_i + h_i - np.maximum(lam_i - h_i, 0))
    return ConductanceMeanFieldResult(nu, lam_e, lam_i, gain, bool(rel < tol), res, used)
