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
