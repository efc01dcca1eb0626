"""Inverse problems: ML recovers planted parameters; mean-field inverses invert forward maps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from neurocircuits import NeurocircuitsError
from neurocircuits.ising import KineticIsing, exact, sample
from neurocircuits.ising import inverse as inv
from neurocircuits.ising import meanfield as mf

N = 8


@pytest.fixture(scope="module")
def planted():
    with jax.enable_x64(True):
        model = KineticIsing.sk(jax.random.key(0), N, J0=1.0, dJ=0.8, H0=0.5,
                                dtype=jnp.float64)
        spins = sample(model, model.ones(), n_steps=100, key=jax.random.key(1),
                       n_trajectories=1000)
    return np.asarray(model.H), np.asarray(model.J), spins


def test_ml_recovers_planted(planted):
    H, J, spins = planted
    with jax.enable_x64(True):
        fit = inv.fit_ml(spins, chunk_size=30_000)  # several chunks
        assert bool(fit.converged)
        # 10^5 samples: statistical error ~ 1/S per entry
        assert inv.mse(fit.J, J) < 1e-3 * np.mean(J**2)
        assert inv.mse(fit.H, H) < 1e-3 * np.mean(H**2)
        # the ML point is stationary: the gradient vanishes
        X, Y = inv.transitions(spins)
        Xf, Yf = np.asarray(X, float), np.asarray(Y, float)
        r = Yf - np.tanh(np.asarray(fit.H) + Xf @ np.asarray(fit.J).T)
        assert np.abs(r.T @ Xf / len(Xf)).max() < 1e-8
        # recovery is specific: data from other couplings give a far worse fit
        other = KineticIsing(H, 0.5 * J)
        sp2 = sample(other, other.ones(), n_steps=100, key=jax.random.key(2),
                     n_trajectories=1000)
        assert inv.mse(inv.fit_ml(sp2).J, J) > 100 * inv.mse(fit.J, J)


def test_ml_penalties(planted):
    H, J, spins = planted
    with jax.enable_x64(True):
        plain = inv.fit_ml(spins)
        l2 = inv.fit_ml(spins, l2=0.1)
        l1 = inv.fit_ml(spins, l1=0.05)
        assert bool(l2.converged) and bool(l1.converged)
        assert float(jnp.sum(l2.J**2)) < float(jnp.sum(plain.J**2))
        assert int(jnp.sum(l1.J == 0)) > 0 and int(jnp.sum(plain.J == 0)) == 0
        # KKT for L1: |grad_ij| <= l1 where J_ij = 0, grad_ij = l1 sign(J_ij) otherwise
        X, Y = inv.transitions(spins)
        Xf, Yf = np.asarray(X, float), np.asarray(Y, float)
        g = (Yf - np.tanh(np.asarray(l1.H) + Xf @ np.asarray(l1.J).T)).T @ Xf / len(Xf)
        Jl = np.asarray(l1.J)
        assert np.all(np.abs(g[Jl == 0]) <= 0.05 + 1e-6)
        np.testing.assert_allclose(g[Jl != 0], 0.05 * np.sign(Jl[Jl != 0]), atol=1e-5)


@pytest.fixture(scope="module")
def stationary():
    rng = np.random.default_rng(0)
    H = rng.uniform(-0.5, 0.5, N)
    J = 1 / N + 0.3 / np.sqrt(N) * rng.normal(size=(N, N))
    return H, J, exact.exact_stationary(H, J)


@pytest.mark.parametrize("method", list(mf.METHODS))
def test_moment_matching_inverts_its_forward_map(stationary, method):
    H, J, st = stationary
    with jax.enable_x64(True):
        args = [jnp.asarray(a) for a in (st.m, st.C, st.D)]
        out = mf.METHODS[method](jnp.asarray(H), jnp.asarray(J), *args)
        fit = inv.fit_meanfield(method, out.m, out.D, *args)
        assert bool(fit.converged)
        assert inv.mse(fit.H, H) < 1e-9 and inv.mse(fit.J, J) < 1e-9
        # from the exact moments it also converges, to a nearby (biased) answer
        fit = inv.fit_meanfield(method, st.m, st.D, *args)
        assert bool(fit.converged)
        assert inv.mse(fit.J, J) < 0.5 * np.mean(J**2)


def test_closed_forms_invert_their_forward_maps(stationary):
    H, J, st = stationary
    with jax.enable_x64(True):
        a = [jnp.asarray(x) for x in (H, J, st.m, st.C, st.D)]
        o = mf.plefka_t_o1(*a)
        f = inv.nmf_inverse(o.m, st.C, o.D, st.m)
        assert inv.mse(f.H, H) < 1e-20 and inv.mse(f.J, J) < 1e-20
        o = mf.plefka_t1_o1(*a, n_quad=32)
        f = inv.emf_inverse(o.m, st.C, o.D, st.m, n_quad=32)
        assert bool(f.converged) and inv.mse(f.H, H) < 1e-14 and inv.mse(f.J, J) < 1e-14
        # Roudi-Hertz TAP: m = tanh(H + J m_p - m V), D = A (1 - F) J C_p, F = (1 - m^2) V
        Jw = 0.5 * J
        m_p = st.m
        V = (Jw**2) @ (1 - m_p**2)
        th, _ = mf.solve_theta(jnp.asarray(H + Jw @ m_p), jnp.asarray(V))
        m = np.tanh(np.asarray(th))
        F = (1 - m**2) * V
        D = ((1 - m**2) * (1 - F))[:, None] * (Jw @ st.C)
        f = inv.tap_inverse(m, st.C, D, m_p)
        assert bool(f.converged)
        assert inv.mse(f.H, H) < 1e-16 and inv.mse(f.J, Jw) < 1e-16
        # nMF from exact moments is a (biased) estimate, not exact
        assert inv.mse(inv.nmf_inverse(st.m, st.C, st.D).J, J) > 1e-6


def test_reconstruct_shapes_and_beta_zero():
    rng = np.random.default_rng(0)
    H = rng.uniform(-0.5, 0.5, N)
    J = 1 / N + 0.3 / np.sqrt(N) * rng.normal(size=(N, N))
    rec = inv.reconstruct("plefka_t_o2", H, J, jnp.array([0.0, 0.5, 1.0]), s0=jnp.ones(N),
                          n_steps=16)
    assert rec.sigma.shape == (3,)
    assert abs(float(rec.m[0])) < 1e-6 and abs(float(rec.sigma[0])) < 1e-6
    assert float(rec.sigma[2]) > float(rec.sigma[1]) > 0


def test_bad_input():
    with pytest.raises(NeurocircuitsError, match="shape"):
        inv.fit_ml(np.ones((5,), np.int8))
    with pytest.raises(NeurocircuitsError, match="l1"):
        inv.fit_ml(np.ones((4, 3), np.int8), l1=-1.0)
    with pytest.raises(NeurocircuitsError, match=r"D must have shape \(3, 3\)"):
        inv.fit_meanfield("nmf", jnp.zeros(3), jnp.zeros((3, 2)), jnp.zeros(3), jnp.eye(3))
    with pytest.raises(NeurocircuitsError, match="method must be one of"):
        inv.fit_meanfield("mf", jnp.zeros(3), jnp.zeros((3, 3)), jnp.zeros(3), jnp.eye(3))
    with pytest.raises(NeurocircuitsError, match="inside"):
        inv.nmf_inverse(jnp.ones(3), jnp.eye(3), jnp.zeros((3, 3)))


# --- moment matching on strongly correlated inputs (the regime of N = 512 near beta_c) -------


@pytest.fixture(scope="module")
def collective():
    """An SK network at beta_c with inputs at t-1 that share a collective mode: C_p has
    off-diagonal correlation 0.3 (lambda_max(C_p) ~ 0.3 N), as time-windowed moments near
    beta_c do (N = 512 Monte Carlo: mean off-diagonal 0.07, lambda_max ~ 36). The curvature
    of the moment-matching problem along that mode grows with N * c."""
    n, c = 128, 0.3
    with jax.enable_x64(True):
        model = KineticIsing.sk(jax.random.key(0), n, J0=1.0, dJ=0.1, H0=0.5, beta=1.11,
                                dtype=jnp.float64)
        rng = np.random.default_rng(0)
        m_p = jnp.asarray(rng.uniform(-0.5, 0.1, n))
        b = 1 - m_p**2
        C_p = (1 - c) * jnp.diag(b) + c * jnp.outer(jnp.sqrt(b), jnp.sqrt(b))
        D_p = b[:, None] * (model.J @ C_p)
    return model.H, model.J, m_p, C_p, D_p


@pytest.mark.parametrize("method", list(mf.METHODS))
def test_moment_matching_converges_on_collective_mode(collective, method):
    """Self-consistent data (the method's own forward map) must be inverted exactly, however
    strong the collective mode. Fails with the published fixed-rate update for Plefka2[t]
    (period-2 oscillation that grows) — see the next test."""
    H, J, m_p, C_p, D_p = collective
    with jax.enable_x64(True):
        out = mf.METHODS[method](H, J, m_p, C_p, D_p)
        fit = inv.fit_meanfield(method, out.m, out.D, m_p, C_p, D_p)
        assert bool(fit.converged), (int(fit.n_iter), float(fit.residual_m))
        assert int(fit.n_iter) < 1000
        assert inv.mse(fit.J, J) < 1e-6 * float(jnp.mean(J**2))
        assert inv.mse(fit.H, H) < 1e-6 * float(jnp.mean(H**2))


def test_paper_rates_diverge_on_collective_mode(collective):
    """The cause of the N = 512 failure: with eta_J = 1/sqrt(N) the paper's update overshoots
    along the collective mode (Plefka2[t]'s curvature there ~ N * c), so the moment differences
    grow instead of shrinking; the preconditioned update converges on the same data."""
    H, J, m_p, C_p, D_p = collective
    with jax.enable_x64(True):
        out = mf.plefka2_t_o2(H, J, m_p, C_p, D_p)
        start = float(jnp.mean(out.D**2))  # mean squared difference at J = 0, D_hat = 0
        paper = inv.fit_meanfield("plefka2_t_o2", out.m, out.D, m_p, C_p, D_p, update="paper",
                                  max_iter=60)
        assert not bool(paper.converged)
        assert float(paper.residual_D) > 5 * start
        assert inv.mse(paper.J, J) > 1e3 * float(jnp.mean(J**2))


def test_nmf_moment_matching_on_correlated_data(collective):
    """nMF's D_hat = A J diag(1 - m_p^2) ignores C_p, so on correlated data (here from Plefka[t]
    o1) its fixed point is explicit, J* = D / ((1-m^2)(1-m_p^2)), H* = atanh m - J* m_p, and far
    from the truth. The preconditioned update reaches it; the paper's update saturates the
    fields (1 - m_hat^2 -> 0, so D_hat -> 0) and J then grows without bound."""
    H, J, m_p, C_p, D_p = collective
    with jax.enable_x64(True):
        out = mf.plefka_t_o1(H, J, m_p, C_p, D_p)
        J_star = out.D / ((1 - out.m**2)[:, None] * (1 - m_p**2)[None, :])
        H_star = jnp.arctanh(out.m) - J_star @ m_p
        fit = inv.fit_meanfield("nmf", out.m, out.D, m_p, C_p)
        assert bool(fit.converged)
        assert inv.mse(fit.J, J_star) < 1e-10 * float(jnp.mean(J_star**2))
        assert inv.mse(fit.H, H_star) < 1e-10 * float(jnp.mean(H_star**2))
        assert inv.mse(fit.J, J) > 10 * float(jnp.mean(J**2))  # biased: reported, not hidden
        paper = inv.fit_meanfield("nmf", out.m, out.D, m_p, C_p, update="paper", max_iter=500)
        assert not bool(paper.converged)
        assert float(jnp.max(jnp.abs(paper.J))) > 10 * float(jnp.max(jnp.abs(J_star)))


@pytest.mark.parametrize("update", inv.UPDATES)
def test_field_bound_is_not_reported_as_converged(stationary, update):
    """With h_bound the fields cannot reach the moment-matching point; the fit must say so
    (the residual is the unprojected m - m_hat, not the clipped step)."""
    H, J, st = stationary
    with jax.enable_x64(True):
        args = [jnp.asarray(a) for a in (st.m, st.C, st.D)]
        free = inv.fit_meanfield("plefka_t_o1", st.m, st.D, *args, update=update)
        assert bool(free.converged)
        bound = 0.5 * float(jnp.max(jnp.abs(free.H)))
        fit = inv.fit_meanfield("plefka_t_o1", st.m, st.D, *args, update=update, h_bound=bound,
                                max_iter=3000)
        assert not bool(fit.converged)
        assert float(fit.residual_m) > 1e-6
        assert float(jnp.max(jnp.abs(fit.H))) < 1.5 * bound


def test_preconditioned_and_paper_updates_share_fixed_points(stationary):
    """Where the paper's update converges, both updates give the same answer."""
    H, J, st = stationary
    with jax.enable_x64(True):
        args = [jnp.asarray(a) for a in (st.m, st.C, st.D)]
        for method in ("tap", "plefka_t_o2", "plefka2_t_o2"):
            a = inv.fit_meanfield(method, st.m, st.D, *args)
            b = inv.fit_meanfield(method, st.m, st.D, *args, update="paper")
            assert bool(a.converged) and bool(b.converged)
            # both stop once the mean squared moment differences are < 1e-12
            assert inv.mse(a.J, b.J) < 1e-7 * np.mean(J**2), method
            assert inv.mse(a.H, b.H) < 1e-7 * np.mean(H**2), method


def test_moment_matching_bad_input():
    z3, e3 = jnp.zeros(3), jnp.eye(3)
    with pytest.raises(NeurocircuitsError, match="update must be one of"):
        inv.fit_meanfield("nmf", z3, jnp.zeros((3, 3)), z3, e3, update="newton")
    with pytest.raises(NeurocircuitsError, match="covariance must be"):
        inv.fit_meanfield("plefka_t_o1", z3, jnp.zeros((3, 3)), z3, e3, covariance="full")
    with pytest.raises(NeurocircuitsError, match="positive definite"):
        inv.fit_meanfield("plefka_t_o1", z3, jnp.zeros((3, 3)), z3, jnp.ones((3, 3)))
    # a singular C_p is fine for the paper's update and for nMF's diagonal preconditioner
    inv.fit_meanfield("nmf", z3, jnp.zeros((3, 3)), z3, jnp.ones((3, 3)), max_iter=5)


# --- converged is not enough: the stability of the matched state, and reconstruction ---------


@pytest.fixture(scope="module")
def paper_network_small():
    """The paper's SK network (J0 = 1, dJ = 0.1, H0 = 0.5) at N = 8, beta = 1, with exact
    stationary moments: the smallest size at which nMF/TAP moment matching lands on an
    unstable solution whose reconstruction loses the dynamics (N = 4: radius ~1.1, the
    reconstruction keeps half of sigma; N = 8: radius 2.2, it keeps < 1%)."""
    with jax.enable_x64(True):
        model = KineticIsing.sk(jax.random.key(0), 8, J0=1.0, dJ=0.1, H0=0.5,
                                dtype=jnp.float64)
        H, J = np.asarray(model.H), np.asarray(model.J)
    return H, J, exact.exact_stationary(H, J)


def test_unstable_moment_matching_solution_is_flagged(paper_network_small):
    """The ising-plefka failure at N = 512 (nMF/TAP: converged, eps_H ~ 70, reconstructed sigma
    exactly 0) in miniature. nMF's D_hat = A J diag(1 - m_p^2) ignores C_p, so its unique
    solution J* = A^-1 D diag(1 - m_p^2)^-1 inflates the couplings along the collective mode:
    the iteration finds it (converged is right), but the inferred model's mean dynamics is
    repelled from the matched state (radius of d m / d m_p > 1), so running it forward
    (reconstruct) runs off to a nearly frozen state with sigma ~ 0. `stable` must say so;
    Plefka[t] o1 (same m equation, D_hat = A J C_p) gives a stable fit that reproduces sigma."""
    H, J, st = paper_network_small
    n = len(H)
    with jax.enable_x64(True):
        args = [jnp.asarray(a) for a in (st.m, st.C, st.D)]
        fits = {k: inv.fit_meanfield(k, st.m, st.D, *args) for k in ("nmf", "tap", "plefka_t_o1")}
        assert all(bool(f.converged) for f in fits.values())
        # the nMF fit is the explicit solution of nMF moment matching: the solver is right
        a, a_p = 1 - st.m**2, 1 - st.m**2
        J_star = st.D / (a[:, None] * a_p[None, :])
        H_star = np.arctanh(st.m) - J_star @ st.m
        assert inv.mse(fits["nmf"].J, J_star) < 1e-10 * np.mean(J_star**2)
        assert inv.mse(fits["nmf"].H, H_star) < 1e-8 * np.mean(H_star**2)
        # for nMF d m / d m_p = A J (A from the matched m): the reported radius is rho(A J)
        rho = np.max(np.abs(np.linalg.eigvals(a[:, None] * np.asarray(fits["nmf"].J))))
        np.testing.assert_allclose(float(fits["nmf"].mean_map_radius), rho, rtol=1e-5)
        assert rho > 2.0
        assert not bool(fits["nmf"].stable) and not bool(fits["tap"].stable)
        assert float(fits["tap"].mean_map_radius) > 1.2
        assert bool(fits["plefka_t_o1"].stable)
        assert float(fits["plefka_t_o1"].mean_map_radius) < 0.9
        # what the flag protects: the reconstruction at beta = 1 from s0 = 1
        for k, f in fits.items():
            rec = inv.reconstruct(k, f.H, f.J, jnp.array([1.0]), s0=jnp.ones(n), n_steps=64)
            rel = abs(float(rec.sigma[0]) - st.sigma) / st.sigma
            if bool(f.stable):
                assert rel < 0.2, (k, float(rec.sigma[0]), st.sigma)
            else:
                assert rel > 0.95, (k, float(rec.sigma[0]), st.sigma)
                assert float(rec.m[0]) > 0.9 > 2 * abs(float(np.mean(st.m)))  # ran off


@pytest.mark.parametrize("method", list(mf.METHODS))
def test_mean_map_radius_matches_finite_differences(paper_network_small, method):
    """The Jacobian behind mean_map_radius (forward-mode through the methods, implicit
    derivative of the self-consistent roots) against central differences."""
    H, J, st = paper_network_small
    n = len(H)
    with jax.enable_x64(True):
        fn = inv._fast(method)
        C, D = jnp.asarray(st.C), jnp.asarray(st.D)
        Hj, Jj = jnp.asarray(H), jnp.asarray(J)
        jac = np.asarray(inv._mean_map_jacobian_t(fn, Hj, Jj, jnp.asarray(st.m), C, D,
                                                  batch=3)).T
        e = 1e-5
        m_of = jax.jit(jax.vmap(lambda mp: fn(Hj, Jj, mp, C, D).m))
        steps = e * jnp.eye(n)
        fd = np.asarray(m_of(st.m + steps) - m_of(st.m - steps)).T / (2 * e)
        np.testing.assert_allclose(jac, fd, atol=1e-6)
        rho = np.max(np.abs(np.linalg.eigvals(fd)))
        r = float(inv.mean_map_radius(method, Hj, Jj, st.m, st.C, st.D))
        assert abs(r - rho) < 1e-5


def test_solve_theta_derivative_is_the_implicit_one():
    """d theta = (dh - tanh(theta) dV) / (1 + V (1 - tanh^2 theta)), whatever safeguard the
    solver used last (including the slow tails, h = 8.5, V = 9.9, and V = 0)."""
    with jax.enable_x64(True):
        h = jnp.array([0.3, -1.2, 8.5, 2.0, 0.7])
        V = jnp.array([0.5, 3.0, 9.9, 0.0, -0.4])
        dth_dh = jax.vmap(jax.grad(lambda a, b: mf.solve_theta(a, b)[0]))(h, V)
        dth_dV = jax.vmap(jax.grad(lambda a, b: mf.solve_theta(a, b)[0], argnums=1))(h, V)
        th, _ = mf.solve_theta(h, V)
        t = jnp.tanh(th)
        den = 1 + V * (1 - t**2)
        np.testing.assert_allclose(dth_dh, 1 / den, rtol=1e-9)
        np.testing.assert_allclose(dth_dV, -t / den, rtol=1e-9)


@pytest.mark.parametrize("x64", [False, True])
def test_reconstruct_reports_saturation(x64):
    """A forward run whose spins freeze in floating point (1 - m^2 == 0) predicts C = D =
    sigma = 0 by rounding; reconstruct must report it (the N = 512 nMF/TAP reconstructions had
    sigma exactly 0 at every beta, a relative error of exactly 1, with valid = True)."""
    n = 8
    dtype = jnp.float64 if x64 else jnp.float32
    with jax.enable_x64(x64):
        rng = np.random.default_rng(0)
        H = jnp.asarray(rng.uniform(-0.5, 0.5, n), dtype)
        J = jnp.asarray(1 / n + 0.1 / np.sqrt(n) * rng.normal(size=(n, n)), dtype)
        betas = jnp.array([1.0, 100.0], dtype)  # ordinary, and fields of 47..150 on the spins
        for method in ("nmf", "plefka_t_o1"):
            rec = inv.reconstruct(method, H, J, betas, s0=jnp.ones(n), n_steps=16)
            assert bool(jnp.all(rec.valid))  # in bounds: saturation is a separate report
            assert float(rec.saturated[0]) == 0.0 and float(rec.sigma[0]) > 0
            assert float(rec.saturated[1]) == 1.0 and float(rec.sigma[1]) == 0.0


@pytest.mark.slow  # ~20 s on a laptop CPU (compiles the whole experiment)
def test_ising_plefka_does_not_report_a_failed_reconstruction_silently(tmp_path):
    """The experiment at N = 8: the nMF inverse converges to an unstable solution, and its
    reconstruction error (~1) comes flagged, with the reason in the notes."""
    from neurocircuits.experiments import ising_plefka as ip
    from neurocircuits.experiments._base import Context

    cfg = ip.Config(n=8, beta_rel=(1.0,), n_steps=16, n_trajectories=2000, batch_size=2000,
                    ml_trajectories=100, inverse_max_iter=1000,
                    methods=("nmf", "plefka_t_o1"))
    res = ip.run(cfg, jax.random.key(0), Context(tmp_path))
    s = res.summary
    assert s["inverse_converged"]["nmf"] and s["inverse_converged"]["plefka_t_o1"]
    assert s["inverse_stable"] == {"nmf": False, "plefka_t_o1": True}
    assert s["inverse_mean_map_radius"]["nmf"] > 1.5
    assert s["reconstruction_sigma_rel_mse"]["nmf"] > 0.9
    assert s["reconstruction_sigma_rel_mse"]["plefka_t_o1"] < 0.05
    assert s["reconstruction_valid"] == {"nmf": False, "plefka_t_o1": True}
    assert "Reconstruction not valid for nmf (inverse fixed point unstable)" in res.notes
