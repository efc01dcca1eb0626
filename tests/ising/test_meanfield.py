"""Forward mean-field methods: J = 0 exactness, order in small J, quadrature and solvers."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, optimize

from neurocircuits import NeurocircuitsError
from neurocircuits.ising import exact
from neurocircuits.ising import meanfield as mf

N = 6


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    H = rng.uniform(-0.5, 0.5, N)
    J0 = rng.normal(size=(N, N))
    mp = rng.uniform(-0.6, 0.6, N)
    return H, J0, mp


@pytest.mark.parametrize("method", list(mf.METHODS))
def test_zero_coupling_exact(method):
    H = np.linspace(-1, 1.5, N)
    s0 = np.array([1, -1, 1, 1, -1, 1.0])
    with jax.enable_x64(True):
        out = mf.run(method, jnp.asarray(H), jnp.zeros((N, N)), jnp.asarray(s0), n_steps=3)
        ex = exact.exact_moments(H, np.zeros((N, N)), n_steps=3, s0=s0)
        np.testing.assert_allclose(out.m, ex.m, atol=1e-12)
        np.testing.assert_allclose(out.C, ex.C, atol=1e-12)
        np.testing.assert_allclose(out.D, ex.D, atol=1e-12)
        assert bool(out.converged)


# expected order p of the error O(J^p) of (m, C, D) from independent spins at t-1
ORDERS = {
    "nmf": (2, 2, 2),
    "tap": (3, 3, 3),
    "plefka_t_o1": (2, 2, 2),
    "plefka_t_o2": (3, 3, 3),
    "plefka_t1_o1": (3, 3, 2),
    "plefka2_t_o2": (3, 2, 4),
    "plefka2_t_o2_current": (3, 3, 4),
}


@pytest.mark.parametrize("name", list(ORDERS))
def test_order_in_small_coupling(setup, name):
    """Errors vs exact enumeration shrink as eps^p when J = eps J0 (p >= 2: first-order exact)."""
    H, J0, mp = setup
    fn = (functools.partial(mf.plefka2_t_o2, c_reference="current")
          if name == "plefka2_t_o2_current" else mf.METHODS[name])
    p0 = exact.product_distribution(mp)
    errs = []
    with jax.enable_x64(True):
        for eps in (0.04, 0.02):
            J = eps * J0
            ex = exact.exact_moments(H, J, n_steps=1, p0=p0)
            out = fn(jnp.asarray(H), jnp.asarray(J), jnp.asarray(mp),
                     jnp.diag(1 - jnp.asarray(mp) ** 2), jnp.zeros((N, N)))
            errs.append([np.abs(np.asarray(out.m) - ex.m[1]).max(),
                         np.abs(np.asarray(out.C) - ex.C[1]).max(),
                         np.abs(np.asarray(out.D) - ex.D[1]).max()])
    slopes = np.log2(np.array(errs[0]) / np.array(errs[1]))
    for q, slope, order in zip("mCD", slopes, ORDERS[name], strict=True):
        assert slope > order - 0.45, (q, slope, order)
        assert slope < order + 0.9, (q, slope, order)  # not better than claimed: tests bite


def test_plefka_t_uses_correlations():
    """Plefka[t] D = A J C_p is exact to first order for correlated spins at t-1; nMF is not."""
    rng = np.random.default_rng(3)
    n = 5
    H = rng.uniform(-0.3, 0.3, n)
    Jp = rng.normal(0, 0.8, (n, n))
    ex0 = exact.exact_stationary(H, Jp)  # a correlated distribution at t-1
    J1 = 0.01 * rng.normal(size=(n, n))
    ex = exact.exact_moments(H, J1, n_steps=1, p0=ex0.p)
    with jax.enable_x64(True):
        args = (jnp.asarray(H), jnp.asarray(J1), jnp.asarray(ex0.m), jnp.asarray(ex0.C),
                jnp.asarray(ex0.D))
        e_t = np.abs(np.asarray(mf.plefka_t_o1(*args).D) - ex.D[1]).max()
        e_nmf = np.abs(np.asarray(mf.nmf(*args).D) - ex.D[1]).max()
    assert e_t < 1e-3 * np.abs(ex.D[1]).max()
    assert e_nmf > 0.05 * np.abs(ex.D[1]).max()


def test_solve_theta_matches_brentq():
    rng = np.random.default_rng(1)
    h = rng.normal(0, 2, 50)
    V = np.concatenate([rng.uniform(0, 5, 40), rng.uniform(-0.9, 0, 10)])
    with jax.enable_x64(True):
        th, res = mf.solve_theta(jnp.asarray(h), jnp.asarray(V))
    assert float(res) < 1e-10
    for hi, Vi, ti in zip(h, V, np.asarray(th), strict=True):
        ref = optimize.brentq(lambda x, hi=hi, Vi=Vi: x - hi + Vi * np.tanh(x), hi - abs(Vi) - 1,
                              hi + abs(Vi) + 1, xtol=1e-14)
        assert abs(ti - ref) < 1e-9


def test_plefka_t1_quadrature_matches_scipy():
    rng = np.random.default_rng(2)
    n = 4
    H = rng.uniform(-0.5, 0.5, n)
    J = rng.normal(0, 0.3, (n, n))  # sqrt(Delta) ~ 0.5: Gauss-Hermite converges fast
    mp = rng.uniform(-0.5, 0.5, n)
    with jax.enable_x64(True):
        out = mf.plefka_t1_o1(jnp.asarray(H), jnp.asarray(J), jnp.asarray(mp),
                              jnp.diag(1 - jnp.asarray(mp) ** 2), jnp.zeros((n, n)), n_quad=40)
    g = H + J @ mp
    Delta = (J**2) @ (1 - mp**2)
    phi = lambda x: np.exp(-x * x / 2) / np.sqrt(2 * np.pi)  # noqa: E731
    m0 = integrate.quad(lambda x: phi(x) * np.tanh(g[0] + x * np.sqrt(Delta[0])), -12, 12)[0]
    assert abs(float(out.m[0]) - m0) < 1e-8
    rho = (J * (1 - mp**2)) @ J.T / np.sqrt(np.outer(Delta, Delta))
    i, k = 0, 2
    c = rho[i, k]
    # direct bivariate Gaussian integral with correlation c
    f = lambda y, x: (phi(x) * phi(y) * np.tanh(g[i] + np.sqrt(Delta[i]) * x)  # noqa: E731
                      * np.tanh(g[k] + np.sqrt(Delta[k]) * (c * x + np.sqrt(1 - c * c) * y)))
    ref = integrate.dblquad(f, -9, 9, -9, 9, epsabs=1e-10)[0] - m0 * float(out.m[k])
    assert abs(float(out.C[i, k]) - ref) < 1e-6


def _plefka2_loops(H, J, m_p, C_p, D_p):
    """The Plefka2[t] equations pair by pair with brentq (a slow, literal reference)."""
    n = len(H)
    heff = H + J @ m_p
    V = np.einsum("ij,in,jn->i", J, J, C_p)
    W = J @ D_p @ J.T
    WC = J @ C_p @ J.T
    M = np.zeros((n, n))
    D = np.zeros((n, n))
    C = np.zeros((n, n))
    solve = lambda h, v: optimize.brentq(lambda x: x - h + v * np.tanh(x),  # noqa: E731
                                         h - abs(v) - 1, h + abs(v) + 1, xtol=1e-14)
    for i in range(n):
        for l in range(n):
            Vil = V[i] - 2 * J[i, l] * (J[i] @ C_p[l]) + J[i, l] ** 2 * C_p[l, l]
            Dil = J[i, l] + W[i, l] - J[i, l] * (J[l] @ D_p[l])
            for s in (-1.0, 1.0):
                p = (1 + s * m_p[l]) / 2
                t = np.tanh(solve(heff[i] + Dil * (s - m_p[l]), Vil))
                M[i, l] += p * t
                D[i, l] += p * s * t
                tc = np.tanh(solve(heff[i] + WC[i, l] * (s - m_p[l]), V[i]))
                C[i, l] += tc * (s - m_p[l]) * p
    D -= M * m_p[None]
    m = M.mean(1)
    C = (C + C.T) / 2
    np.fill_diagonal(C, 1 - m**2)
    return m, C, D


def test_plefka2_matches_literal_loops():
    rng = np.random.default_rng(5)
    n = 5
    H = rng.uniform(-0.5, 0.5, n)
    J = rng.normal(0.1, 0.5, (n, n))
    ex = exact.exact_stationary(H, 0.8 * J)
    args = (H, J, ex.m, ex.C, ex.D)
    m, C, D = _plefka2_loops(*args)
    with jax.enable_x64(True):
        out = mf.plefka2_t_o2(*(jnp.asarray(a) for a in args))
    np.testing.assert_allclose(out.m, m, atol=1e-10)
    np.testing.assert_allclose(out.C, C, atol=1e-10)
    np.testing.assert_allclose(out.D, D, atol=1e-10)
    assert float(out.residual) < 1e-9


def test_run_float32_jit_and_vmap_over_beta():
    rng = np.random.default_rng(0)
    n = 16
    H = jnp.asarray(rng.uniform(-0.5, 0.5, n), jnp.float32)
    J = jnp.asarray(1 / n + 0.3 / np.sqrt(n) * rng.normal(size=(n, n)), jnp.float32)
    betas = jnp.array([0.8, 1.0, 1.2])
    f = jax.vmap(lambda b: mf.run("plefka2_t_o2", b * H, b * J, jnp.ones(n), n_steps=5))
    out = f(betas)
    assert out.m.shape == (3, 6, n) and out.C.shape == (3, 6, n, n)
    assert bool(jnp.all(out.converged))
    one = mf.run("plefka2_t_o2", 1.2 * H, 1.2 * J, jnp.ones(n), n_steps=5)
    np.testing.assert_allclose(out.m[2], one.m, atol=1e-5)
    for name in mf.METHODS:
        tr = mf.run(name, H, J, jnp.ones(n), n_steps=4)
        assert bool(jnp.all(jnp.isfinite(tr.C))) and bool(tr.converged), name


def test_bad_input():
    with pytest.raises(NeurocircuitsError, match="method must be one of"):
        mf.run("plefka3", jnp.zeros(3), jnp.zeros((3, 3)), jnp.ones(3), n_steps=2)
    with pytest.raises(NeurocircuitsError, match="square"):
        mf.run("nmf", jnp.zeros(3), jnp.zeros((3, 2)), jnp.ones(3), n_steps=2)
    with pytest.raises(NeurocircuitsError, match=r"s0 must have shape \(3,\)"):
        mf.run("nmf", jnp.zeros(3), jnp.zeros((3, 3)), jnp.ones(4), n_steps=2)
    with pytest.raises(NeurocircuitsError, match="n_steps"):
        mf.run("nmf", jnp.zeros(3), jnp.zeros((3, 3)), jnp.ones(3), n_steps=0)
    with pytest.raises(NeurocircuitsError, match="c_reference"):
        mf.plefka2_t_o2(jnp.zeros(3), jnp.zeros((3, 3)), jnp.zeros(3), jnp.eye(3),
                        jnp.zeros((3, 3)), c_reference="now")


@pytest.mark.parametrize("x64", [True, False])
def test_solve_theta_large_reaction_term(x64):
    """Newton-if-inside-the-bracket crept for hundreds of iterations at large |V| (e.g.
    h = 8.487, V = 9.909 stayed at theta = -1.39 after 60 iterations, residual 18.6), which
    broke TAP moment matching once the inferred couplings made V ~ 5-10. The rtsafe-style
    safeguard solves every (h, V) on a wide grid to the tolerance."""
    rng = np.random.default_rng(0)
    h = np.concatenate([[8.48705045], rng.uniform(-20, 20, 20000)])
    V = np.concatenate([[9.90940267], rng.uniform(-10, 10, 20000)])
    with jax.enable_x64(x64):
        dtype = jnp.float64 if x64 else jnp.float32
        th, res = mf.solve_theta(jnp.asarray(h, dtype), jnp.asarray(V, dtype))
        assert float(res) <= mf._tol(dtype)
    th = np.asarray(th, float)
    assert abs(th[0] - 0.98847851) < (1e-7 if x64 else 1e-4)
    rel = np.abs(th - h + V * np.tanh(th)) / (1 + np.abs(h) + np.abs(V))
    assert rel.max() < (1e-10 if x64 else 1e-5)


def _plefka_t_o2_authors(H, J, m, C, n_steps):
    """Plefka[t] o2 exactly as the authors' NumPy code writes it (einsum forms; TAP equation
    in m solved by Newton from m_{t-1}), float64."""
    out = []
    for _ in range(n_steps):
        m_p, C_p = m, C
        V = np.einsum("ij,il,jl->i", J, J, C_p)
        heff = H + J @ m_p
        x = m_p.copy()
        for _ in range(100):
            f = np.tanh(heff - x * V) - x
            x = x - f / (-V * (1 - np.tanh(heff - x * V) ** 2) - 1)
        m = x
        C = np.einsum("i,k,ij,kl,jl->ik", 1 - m**2, 1 - m**2, J, J, C_p)
        np.fill_diagonal(C, 1 - m**2)
        D = np.einsum("i,ij,jl->il", 1 - m**2, J, C_p)
        D += np.einsum("i,ij,il,jl,l->il", 2 * m * (1 - m**2), J, J, C_p, m_p)
        out.append((m, C, D))
    return out


@pytest.fixture(scope="module")
def sk64_beta_c():
    """N = 64 SK network (J0 = 1, dJ = 0.1, H0 = 0.5) at beta_c = 1.1108 from s_0 = 1, a draw
    on which Plefka[t] o2 diverges (as do draws at N = 512: seed 0 of the experiment)."""
    from neurocircuits.ising import KineticIsing

    model = KineticIsing.sk(jax.random.key(3), 64, J0=1.0, dJ=0.1, H0=0.5, beta=1.1108398)
    return np.asarray(model.H, float), np.asarray(model.J, float)


def test_plefka_t_o2_instability_is_in_the_equations(sk64_beta_c):
    """Near beta_c the Plefka[t] o2 correlation recursion C_t = A J C_{t-1} J^T A grows by
    ~rho(AJ)^2 > 1 per step and its reaction term V = diag(J C J^T) pins m at 0: C diverges.
    Our float64 and float32 runs follow the authors' equations step by step into the
    divergence, and MFTrajectory flags it (|C| > 1 is no covariance of +-1 spins)."""
    H, J = sk64_beta_c
    n_steps = 48
    ref = _plefka_t_o2_authors(H, J, np.ones(64), np.zeros((64, 64)), n_steps)
    ref_first_bad = 1 + next(t for t, (m, C, D) in enumerate(ref) if np.abs(C).max() > 1)
    assert 20 < ref_first_bad < n_steps
    with jax.enable_x64(True):
        tr = mf.run("plefka_t_o2", jnp.asarray(H), jnp.asarray(J), jnp.ones(64),
                    n_steps=n_steps)
        for t in range(1, n_steps + 1):
            m, C, D = ref[t - 1]
            scale = max(1.0, np.abs(C).max())
            np.testing.assert_allclose(tr.m[t], m, atol=1e-9)
            np.testing.assert_allclose(tr.C[t], C, atol=1e-9 * scale)
            np.testing.assert_allclose(tr.D[t], D, atol=1e-9 * scale)
        assert bool(tr.converged)  # every TAP equation was solved: the blow-up is not numerics
        assert not bool(tr.valid)
        assert int(tr.first_invalid_step) == ref_first_bad
        assert np.abs(np.asarray(tr.C[-1])).max() > 10
        # growth per step of the collective mode ~ (beta lambda_max(J))^2 once m ~ 0
        off = ~np.eye(64, dtype=bool)
        c = np.array([np.asarray(C)[off].mean() for C in tr.C[-8:]])
        lam = np.max(np.linalg.eigvals(J).real)
        np.testing.assert_allclose(c[1:] / c[:-1], lam**2, rtol=0.05)
    # float32 is no different (the GPU run diverged in float32; so does float64)
    tr32 = mf.run("plefka_t_o2", jnp.asarray(H, jnp.float32), jnp.asarray(J, jnp.float32),
                  jnp.ones(64, jnp.float32), n_steps=n_steps)
    assert int(tr32.first_invalid_step) == ref_first_bad


@pytest.mark.parametrize("method", [m for m in mf.METHODS if m != "plefka_t_o2"])
def test_other_methods_stay_bounded_near_beta_c(sk64_beta_c, method):
    """On the network where Plefka[t] o2 diverges every other method stays inside the bounds
    of +-1-spin moments (in float32, as on the GPU)."""
    H, J = sk64_beta_c
    tr = mf.run(method, jnp.asarray(H, jnp.float32), jnp.asarray(J, jnp.float32),
                jnp.ones(64, jnp.float32), n_steps=48)
    assert bool(tr.converged) and bool(tr.valid), int(tr.first_invalid_step)
    assert tr.in_bounds.shape == (49,)


def test_moments_in_bounds():
    m = jnp.array([[0.5, -1.0], [0.5, 0.2]])
    C = jnp.stack([jnp.eye(2), jnp.array([[1.0, 1.5], [1.5, 1.0]])])
    D = jnp.zeros((2, 2, 2))
    np.testing.assert_array_equal(mf.moments_in_bounds(m, C, D), [True, False])
    D = D.at[0, 0, 1].set(jnp.nan)
    np.testing.assert_array_equal(mf.moments_in_bounds(m, C, D), [False, False])
