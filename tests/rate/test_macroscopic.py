"""Macroscopic-field theory of E/I rate networks, step by step against direct computation and
against simulation at small size: the spectra and the loop filter, the mixture DMFT (branch,
derivatives, shared chaos), the loop gain propagated through the random coupling (open-loop
networks), and the predicted distribution of std(h) over networks."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import quad

import neurocircuits as nc
from neurocircuits.rate import RateNetwork, one_plus_tanh
from neurocircuits.rate import macroscopic as mac
from neurocircuits.rate.macroscopic import closed_loop_variance, macroscopic_fluctuations
from neurocircuits.rate.theory import _Phi, dmft_solve

PHI = _Phi(one_plus_tanh)


@pytest.mark.parametrize("gain", [0.0, 0.6, -2.0, -15.0])
def test_closed_loop_variance_matches_frequency_integral(gain):
    """Input autocovariance e^{-|s|/tc}: spectrum 2 tc / (1 + w^2 tc^2)."""
    tc, step = 1.7, 0.02
    lags = np.arange(0, 60, step)
    numeric = closed_loop_variance(np.exp(-lags / tc), step, gain)

    def integrand(w):
        spec = 2 * tc / (1 + (w * tc) ** 2)
        return spec * abs((1 + 1j * w) / (1 + 1j * w - gain)) ** 2 / (2 * math.pi)

    exact = 2 * quad(integrand, 0, np.inf, limit=400)[0]
    assert numeric == pytest.approx(exact, rel=2e-2)
    if gain == 0.0:
        assert numeric == pytest.approx(1.0, rel=1e-9)


def test_spectrum_and_window_on_the_frequency_grid():
    """The spectrum of e^{-s/tc} (short table + exponential tail) is the Lorentzian; its
    integral is the variance; a window of length T removes the part slower than 1/T."""
    tc = 2.0
    c = np.exp(-mac._LAGS / tc)
    spec = mac._spectrum(c, mac._LAG_STEP, 1 / tc, mac._OMEGA)
    lorentz = 2 * tc / (1 + (mac._OMEGA * tc) ** 2)
    low = mac._OMEGA < 3
    np.testing.assert_allclose(spec[low], lorentz[low], rtol=2e-3, atol=1e-6)
    assert mac._integrate(spec) == pytest.approx(1.0, rel=2e-3)
    # expected sample variance of an OU process over T: 1 - 2 tc/T + 2 tc^2/T^2 (1 - e^{-T/tc})
    t = 20.0
    exact = 1 - 2 * tc / t + 2 * tc**2 / t**2 * (1 - math.exp(-t / tc))
    assert mac._integrate(spec * mac._window(t)) == pytest.approx(exact, rel=5e-3)


@pytest.mark.parametrize("v", [-0.6, 0.0, 2.0])
def test_mixture_dmft_with_one_population_is_the_dmft(v):
    ref = dmft_solve(3.0, one_plus_tanh, mu=v)
    one = mac._mix_solve(3.0, PHI, [v], [1.0], 0.0)
    two = mac._mix_solve(3.0, PHI, [v, v], [0.3, 0.7], 0.0)
    for sol in (one, two):
        assert sol.converged
        assert sol.kind == ref.kind
        assert sol.delta0 == pytest.approx(ref.delta0, rel=1e-7)
        assert sol.delta_inf == pytest.approx(ref.delta_inf, rel=1e-7)


def test_mixture_dmft_continues_the_active_branch():
    """At v = -2 (phi = 1 + tanh, g = 3) the DMFT has a near-silent fixed point (the one
    dmft_solve returns) and a chaotic state; networks held there by their static field are in
    the chaotic one (simulated: mean rate 0.35-0.38 at v = -1.9...-2.05, std(h) 0.18-0.27)."""
    silent = dmft_solve(3.0, one_plus_tanh, mu=-2.0)
    active = mac._mix_solve(3.0, PHI, [-2.0], [1.0], 0.0)
    assert silent.kind == "static" and silent.delta0 < 0.05
    assert active.kind == "chaotic" and active.converged and active.delta0 > 3.0
    pt = mac._OperatingPoint(3.0, PHI, [-2.0], [1.0], 0.0)
    assert 0.3 < pt.F[0] < 0.45 and pt.ct0[0] > 0.05


def test_mean_field_derivatives_match_differences_of_solutions():
    for mus, weights in (([-0.6], [1.0]), ([-0.8, 0.4], [0.5, 0.5]), ([2.0], [1.0])):
        sol = mac._mix_solve(3.0, PHI, mus, weights, 0.0)
        deriv = mac._mean_field_derivatives(sol, PHI, 3.0, mus, weights, 0.0)
        for c in range(len(mus)):
            e = 2e-3
            hi = mac._mix_solve(3.0, PHI, [m + e * (i == c) for i, m in enumerate(mus)],
                                weights, 0.0)
            lo = mac._mix_solve(3.0, PHI, [m - e * (i == c) for i, m in enumerate(mus)],
                                weights, 0.0)
            d_inf = (hi.delta_inf - lo.delta_inf) / (2 * e)
            d_t = ((hi.delta0 - hi.delta_inf) - (lo.delta0 - lo.delta_inf)) / (2 * e)
            assert deriv[c, 0] == pytest.approx(d_inf, rel=1e-3, abs=1e-4)
            if sol.kind != "static":
                assert deriv[c, 1] == pytest.approx(d_t, rel=1e-3, abs=1e-4)


def test_modules_share_the_chaos():
    """A module whose mean input alone gives a fixed point (v = 2) fluctuates when the other
    modules are chaotic: one random coupling, one input variance."""
    alone = mac._OperatingPoint(3.0, PHI, [2.0], [1.0], 0.0)
    mixed = mac._OperatingPoint(3.0, PHI, [-1.0, 0.0, 2.0], [1 / 3] * 3, 0.0)
    assert alone.kind == "static" and alone.ct0[0] == 0.0
    assert mixed.kind == "chaotic" and mixed.ct0[2] > 0.005


def _open_loop_slopes(n, v_pair, seeds, key, t_measure=3000.0):
    """Networks without the mean part (J0 = 0) at two constant inputs v: the time-averaged
    A(v) = (1/sqrt N) sum_j s_j phi(u_j) and the local gain (1/sqrt N) sum_j s_j phi'(u_j)."""
    n_exc = round(0.8 * n)
    s = jnp.where(jnp.arange(n) < n_exc, 1.0, -4.0)
    keys = jnp.repeat(jax.random.split(key, seeds), 2, axis=0)
    bias = jnp.tile(jnp.asarray(v_pair, jnp.float32), seeds)
    nets = eqx.filter_vmap(lambda k, b: RateNetwork.random(k, n, g=3.0, J0=0.0, tau=10.0,
                                                           bias=b))(keys, bias)
    rec = nc.Record(every=10, fn=lambda u, t: {
        "A": jnp.sum(s * one_plus_tanh(u)) / jnp.sqrt(n),
        "K": jnp.sum(s * (1 - jnp.tanh(u) ** 2)) / jnp.sqrt(n)})
    tr = nc.simulate(nets, jax.random.normal(jax.random.fold_in(key, 1), (2 * seeds, n)),
                     dt=1.0, n_steps=int(1000 + t_measure),
                     key=jax.random.split(jax.random.fold_in(key, 2), 2 * seeds), record=rec,
                     batch=nc.Batch(model=True))
    a = np.asarray(tr.ys["A"])[:, 100:].mean(1).reshape(seeds, 2)
    k = np.asarray(tr.ys["K"])[:, 100:].mean(1).reshape(seeds, 2)
    return (a[:, 1] - a[:, 0]) / (v_pair[1] - v_pair[0]), k.mean(1)


def test_loop_gain_includes_the_response_propagated_through_the_random_coupling():
    """The slope of the static field A'(v) varies over networks far more than the local gain:
    the response of every unit's quenched input through z (variance w E[Psi'^2] q) adds to
    it. Open-loop networks, N = 1000, v = -0.75 -> -0.45: the s.d. of the slope over networks
    vs theory, estimated robustly (median |slope| / 0.674: a network may switch attractor
    between the two inputs, a jump that is no slope)."""
    v_pair = (-0.75, -0.45)
    slope, local = _open_loop_slopes(1000, v_pair, 8, jax.random.key(11), t_measure=2000.0)
    w = 0.8 + 16 * 0.2
    total, bare = [], []
    for v in v_pair:
        pt = mac._OperatingPoint(3.0, PHI, [v], [1.0], 0.0)
        cov = pt.cov[0]  # (Psi, Psi', mean-field part)
        var_base = cov[1, 1] + cov[2, 2] + 2 * cov[1, 2]
        total.append(w * (var_base + pt.e_dpsi2[0] * pt.q[0]))
        bare.append(w * cov[1, 1])
    rms_theory, rms_local_theory = math.sqrt(np.mean(total)), math.sqrt(np.mean(bare))
    assert rms_theory > 3 * rms_local_theory
    robust = lambda x: np.median(np.abs(x)) / 0.6745  # noqa: E731
    assert robust(slope) == pytest.approx(rms_theory, rel=0.35)
    assert robust(slope) > 2.5 * robust(local)
    assert np.sqrt(np.mean(local**2)) == pytest.approx(rms_local_theory, rel=0.35)


def _simulate_field(n, gamma, bias, seeds, key, t_measure=3000.0):
    keys = jax.random.split(key, seeds)
    nets = eqx.filter_vmap(lambda k: RateNetwork.random(k, n, g=3.0, J0=1.0, f=0.8,
                                                        gamma=gamma, tau=10.0, bias=bias))(keys)
    s = nets.coupling.signs[0]
    rec = nc.Record(every=10, fn=lambda u, t: {
        "h": jnp.sum(s * one_plus_tanh(u)) / jnp.sqrt(n),
        "K": jnp.sum(s * (1 - jnp.tanh(u) ** 2)) / jnp.sqrt(n)})
    steps = int(1000 + t_measure)
    tr = nc.simulate(nets, jax.random.normal(jax.random.fold_in(key, 1), (seeds, n)), dt=1.0,
                     n_steps=steps, key=jax.random.split(jax.random.fold_in(key, 2), seeds),
                     record=rec, batch=nc.Batch(model=True))
    h = np.asarray(tr.ys["h"])[:, 100:]
    return h.std(1), h.mean(1), np.asarray(tr.ys["K"])[:, 100:].mean(1)


def test_inhibition_dominated_field_matches_simulation():
    """N = 1000, gamma = 5, I = 0.2 sqrt(N): the balanced operating point, the local loop gain
    and the filtered fluctuations (median over networks, fixed points included)."""
    n = 1000
    bias = 0.2 * math.sqrt(n)
    pred = macroscopic_fluctuations(g=3.0, J0=1.0, f=0.8, gamma=5.0, n=n, bias=bias, n_grid=15,
                                    t_window=300.0, n_loop=100)
    assert pred.converged
    std, mean, gain = _simulate_field(n, 5.0, bias, 8, jax.random.key(3))
    # the operating point v = h + I: its mean over networks within 3 standard errors
    v = mean + bias
    v_theory = float(np.sum(pred.density * pred.v_grid))
    sd_theory = math.sqrt(float(np.sum(pred.density * (pred.v_grid - v_theory) ** 2)))
    assert abs(v.mean() - v_theory) < 3 * sd_theory / math.sqrt(len(v))
    assert np.sqrt(np.mean(mean**2)) == pytest.approx(pred.h_mean_rms, rel=0.1)
    assert np.mean(gain) == pytest.approx(pred.gain_local_mean, abs=0.5)
    # at N = 1000 the microscopic chaos is weaker than the DMFT's (a quarter of these networks
    # freeze; measured std(h) 0.18, 0.13, 0.13, 0.11, 0.080 at N = 1000...16000 on the GPU vs
    # predicted 0.21, 0.17, 0.14, 0.11, 0.084): the theory is an upper bound here
    assert 0.4 * pred.h_std_median < np.median(std) < 1.2 * pred.h_std_median
    # the loop suppresses the open-loop fluctuations by more than half at this size
    assert pred.h_std_median < 0.5 * pred.h_std_open_loop


@pytest.mark.slow
def test_inhibition_dominated_field_matches_simulation_at_n4000():
    n = 4000
    bias = 0.2 * math.sqrt(n)
    pred = macroscopic_fluctuations(g=3.0, J0=1.0, f=0.8, gamma=5.0, n=n, bias=bias, n_grid=21,
                                    t_window=300.0, n_loop=200)
    std, _, _ = _simulate_field(n, 5.0, bias, 8, jax.random.key(4))
    assert np.median(std) == pytest.approx(pred.h_std_median, rel=0.25)


def test_critical_prediction_is_size_independent_with_a_strongly_negative_total_gain():
    a = macroscopic_fluctuations(g=3.0, J0=1.0, f=0.8, gamma=4.0, n=1000, n_grid=15, n_loop=60)
    b = macroscopic_fluctuations(g=3.0, J0=1.0, f=0.8, gamma=4.0, n=64000, n_grid=15, n_loop=60)
    assert a.h_std_median == pytest.approx(b.h_std_median, rel=1e-9)
    assert a.gain_mean < -1.0          # Kac–Rice: stable crossings of a rough random function
    assert abs(a.gain_local_mean) < 1.0  # ... while the local gain alone is O(0.3)
    assert 0.1 < a.fixed_point_fraction < 0.4
    assert 0.1 < a.h_std_median < a.h_std_open_loop


@pytest.mark.slow
def test_critical_field_distribution_matches_simulation():
    """N = 2000 critical networks (24 realisations, 300 tau): the median and quartiles of
    std(h) over networks and the fraction at a fixed point, against the theory for the same
    window. (Finite size lowers the chaos by ~10-30% at this N; the tolerance includes it and
    the sampling error of 24 networks.)"""
    pred = macroscopic_fluctuations(g=3.0, J0=1.0, f=0.8, gamma=4.0, n=2000, n_grid=31,
                                    t_window=300.0, n_loop=200)
    std, _, _ = _simulate_field(2000, 4.0, 0.0, 24, jax.random.key(21))
    assert np.median(std) == pytest.approx(pred.h_std_median, rel=0.3)
    q25, q75 = np.quantile(std, [0.25, 0.75])
    assert q75 == pytest.approx(pred.h_std_quartiles[1], rel=0.35)
    frozen = np.mean(std < 0.02)
    assert abs(frozen - pred.quiescent_fraction) < 3 * math.sqrt(0.25 * 0.75 / 24)


def test_bad_input():
    with pytest.raises(nc.NeurocircuitsError, match="f must lie in"):
        macroscopic_fluctuations(g=3.0, J0=1.0, f=1.2, gamma=4.0, n=100)
    with pytest.raises(nc.NeurocircuitsError, match="gamma"):
        macroscopic_fluctuations(g=3.0, J0=1.0, f=0.8, gamma=-1.0, n=100)
    with pytest.raises(nc.NeurocircuitsError, match="n must be an integer"):
        macroscopic_fluctuations(g=3.0, J0=1.0, f=0.8, gamma=4.0, n=1.5)
    with pytest.raises(nc.NeurocircuitsError, match="J0 must be > 0"):
        macroscopic_fluctuations(g=3.0, J0=0.0, f=0.8, gamma=4.0, n=100)
    with pytest.raises(nc.NeurocircuitsError, match="silent or saturated"):
        macroscopic_fluctuations(g=3.0, J0=1.0, f=0.8, gamma=5.0, n=10000, bias=-500.0)


def test_modular_theory_with_one_module_reduces_to_the_single_population_theory():
    from neurocircuits.rate.macroscopic import modular_fluctuations

    one = macroscopic_fluctuations(g=3.0, J0=1.0, f=0.8, gamma=4.0, n=4000, n_grid=31,
                                   n_loop=100)
    # the single-population theory neglects the field-driven smoothing of the gains
    mod = modular_fluctuations(g=3.0, J0=[[1.0]], sizes=[4000], n_samples=80, n_loop=32, seed=1,
                               field_smoothing=False)
    assert mod.converged
    # importance sampling vs quadrature of the same Kac–Rice average
    assert mod.fixed_point_fraction == pytest.approx(one.fixed_point_fraction, abs=0.08)
    # medians (the means carry the heavy tail of near-unstable loops: Monte Carlo noise ~20%)
    assert mod.field_std_median == pytest.approx(one.h_std_median, rel=0.15)
    assert mod.field_std[0] == pytest.approx(one.h_std, rel=0.25)


def test_modular_theory_orders_within_above_between_and_rejects_bad_input():
    from neurocircuits.rate.macroscopic import modular_fluctuations

    j0 = np.full((3, 3), 0.2)
    np.fill_diagonal(j0, 1.0)
    p = modular_fluctuations(g=3.0, J0=j0, sizes=[500] * 3, n_samples=30, n_loop=4)
    assert np.all(p.within_corr > np.nanmax(p.between_corr))
    assert p.within_corr_median > p.between_corr_median > 0
    with pytest.raises(nc.NeurocircuitsError, match="singular"):
        modular_fluctuations(g=3.0, J0=np.ones((2, 2)), sizes=[100, 100])
    with pytest.raises(nc.NeurocircuitsError, match=r"\(2, 2\) matrix"):
        modular_fluctuations(g=3.0, J0=np.eye(3), sizes=[100, 100])


def _open_loop_modular_gain(n_mod, v, noise, seeds, t_measure, key):
    """Open-loop modular network (random part only, g = 3, 4 modules at constant input v) with
    an independent white input of intensity noise^2 into every module: the low-frequency
    (omega tau < 0.3) mean |kappa_bc|^2 of the off-diagonal loop gains X_b <- v_c, estimated by
    cross-spectra, minus the estimator's bias (the same estimate against the shifted input)."""
    from scipy import signal

    m_count, n = 4, 4 * n_mod
    n_exc = round(0.8 * n_mod)
    s = np.tile(np.where(np.arange(n_mod) < n_exc, 1.0, -n_exc / (n_mod - n_exc)), m_count)
    proj = np.eye(m_count)[np.repeat(np.arange(m_count), n_mod)]
    S = jnp.asarray(proj * s[:, None] / np.sqrt(n), jnp.float32)
    P = jnp.asarray(proj, jnp.float32)
    dt, every = 0.1, 5          # in units of tau
    decay = 1 - math.exp(-dt)
    steps = int(t_measure / dt) // every

    def one(k):
        z = 3.0 * jax.random.normal(k, (n, n)) / math.sqrt(n)

        def chunk(u, i):
            def step(u, j):
                xi = noise / math.sqrt(dt) * jax.random.normal(jax.random.fold_in(k, j), (4,))
                r = 1 + jnp.tanh(u)
                u = u + decay * (jnp.dot(z, r, precision="highest") + P @ (v + xi) - u)
                return u, (r @ S, xi)
            u, (x, xi) = jax.lax.scan(step, u, i * every + jnp.arange(every))
            return u, (x.mean(0), xi.mean(0))

        u0 = jax.random.normal(jax.random.fold_in(k, 10**8), (n,))
        u0, _ = jax.lax.scan(chunk, u0, 10**6 + jnp.arange(200))   # transient 100 tau
        _, (x, xi) = jax.lax.scan(chunk, u0, jnp.arange(steps))
        return x, xi

    xs, xis = jax.jit(jax.vmap(one))(jax.random.split(key, seeds))
    off = ~np.eye(m_count, dtype=bool)
    out = []
    for x, xi in zip(np.asarray(xs, np.float64), np.asarray(xis, np.float64)):
        def gain2(drive):
            f, _ = signal.csd(x[:, 0], drive[:, 0], fs=2.0, nperseg=128)
            cross = np.array([[signal.csd(x[:, b], drive[:, c], fs=2.0, nperseg=128)[1]
                               for c in range(4)] for b in range(4)])
            auto = np.array([[signal.csd(drive[:, b], drive[:, c], fs=2.0, nperseg=128)[1]
                              for c in range(4)] for b in range(4)])
            h = np.einsum("bcf,cdf->fbd", cross, np.linalg.inv(auto.transpose(2, 0, 1))
                          .transpose(1, 2, 0))
            w = 2 * np.pi * f
            kappa = h * (1 + 1j * w)[:, None, None]
            sel = (w > 0) & (w < 0.3)
            return float(np.mean(np.abs(kappa[sel][:, off]) ** 2))

        out.append(gain2(xi) - gain2(np.roll(xi, len(xi) // 2, axis=0)))
    return float(np.mean(out))


def test_field_driven_input_smooths_the_propagated_loop_gain():
    """The loop gain propagated through the random coupling is not the small-signal one at the
    amplitude of the fields: the field-driven input (direct and propagated) adds input variance
    to every unit, which smooths the gains and lowers a = g^2 E[Psi'^2]. Open-loop modular
    networks (N = 4 x 250, v = -0.7, 4 networks, 1500 tau): the off-diagonal low-frequency
    |kappa|^2 falls ~3x from input intensity 0.4^2 to 1.2^2; the linear theory has no amplitude
    dependence (0.18), the smoothed theory (the extra variance solved self-consistently for
    the white input) gives 0.10 and 0.028."""
    pt0 = mac._operating_point(3.0, PHI, [-0.7] * 4, [0.25] * 4, 0.0)
    omega = 0.098 * np.arange(1, 4)   # the estimator's frequency bins below 0.3

    def off_diagonal(pt):
        a = pt.a
        return float(np.mean(pt.e_dpsi2[0] * pt.q[0] * (1 - a) / (1 + omega**2 - a)))

    def smoothed(noise):
        ext = 0.0
        for _ in range(40):
            pt = pt0.smoothed(np.full(4, ext))
            a = min(pt.a, 1 - 1e-9)
            prop = (1 - a) * pt.q.sum() / (1 + mac._OMEGA**2 - a)
            ext = 0.5 * ext + 0.5 * mac._integrate(noise**2 * (1 + prop) / (1 + mac._OMEGA**2))
        return off_diagonal(pt)

    linear = off_diagonal(pt0)
    key = jax.random.key(77)
    weak = _open_loop_modular_gain(250, -0.7, 0.4, 4, 1500.0, key)
    strong = _open_loop_modular_gain(250, -0.7, 1.2, 4, 1500.0, jax.random.fold_in(key, 1))
    th_weak, th_strong = smoothed(0.4), smoothed(1.2)
    assert th_strong < th_weak < linear
    assert weak / strong > 2.0                                # measured: ~3
    assert strong == pytest.approx(th_strong, rel=0.6)        # linear theory: 4-6x too large
    assert weak == pytest.approx(th_weak, rel=0.6)
    assert strong < 0.4 * linear
