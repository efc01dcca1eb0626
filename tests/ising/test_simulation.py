"""Kinetic Ising simulation and Rao-Blackwell estimates against exact enumeration."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from neurocircuits import NeurocircuitsError
from neurocircuits.ising import (
    KineticIsing,
    entropy_production,
    exact,
    path_entropy_production,
    rao_blackwell_moments,
    sample,
    simulate_moments,
)

N, T, R = 5, 4, 20_000


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(1)
    H = rng.uniform(-0.5, 0.5, N)
    J = rng.normal(0.2, 0.6, (N, N))  # asymmetric, strong, J_ii included
    return H, J


def _state_index(spins):
    bits = (np.asarray(spins) > 0).astype(np.int64)
    return (bits * (1 << np.arange(bits.shape[-1] - 1, -1, -1))).sum(-1)


def test_parallel_distribution_chi_square(small):
    """The sampled law of s_t over all 2^N states matches p_t exactly (chi-square)."""
    H, J = small
    model = KineticIsing(H, J)
    spins = sample(model, jnp.ones(N), n_steps=T, key=jax.random.key(0), n_trajectories=R)
    ex = exact.exact_moments(H, J, n_steps=T, s0=np.ones(N))
    for t in (1, T):
        counts = np.bincount(_state_index(spins[:, t]), minlength=2**N)
        expected = R * ex.p[t]
        keep = expected > 5
        chi2 = np.sum((counts[keep] - expected[keep]) ** 2 / expected[keep])
        pval = stats.chi2.sf(chi2, keep.sum() - 1)
        assert pval > 1e-4, (t, chi2, pval)
    # a wrong kernel is rejected by the same test (the test can fail)
    wrong = exact.exact_moments(H, 1.3 * J, n_steps=T, s0=np.ones(N))
    counts = np.bincount(_state_index(spins[:, T]), minlength=2**N)
    expected = R * wrong.p[T]
    keep = expected > 5
    chi2 = np.sum((counts[keep] - expected[keep]) ** 2 / expected[keep])
    assert stats.chi2.sf(chi2, keep.sum() - 1) < 1e-6


def test_rao_blackwell_moments_match_exact(small):
    H, J = small
    model = KineticIsing(H, J)
    mom = simulate_moments(model, jnp.ones(N), n_steps=T, n_trajectories=R,
                           key=jax.random.key(3), batch_size=8192)
    ex = exact.exact_moments(H, J, n_steps=T, s0=np.ones(N))
    tol = 5.0 / np.sqrt(R)  # each estimate is an average of R terms bounded by 1
    np.testing.assert_allclose(mom.m, ex.m, atol=tol)
    np.testing.assert_allclose(mom.C, ex.C, atol=tol)
    np.testing.assert_allclose(mom.D, ex.D, atol=tol)
    np.testing.assert_allclose(np.diagonal(mom.C, axis1=1, axis2=2), 1 - np.asarray(mom.m) ** 2,
                               atol=1e-6)
    assert float(np.abs(mom.D[0]).max()) == 0.0


def test_rao_blackwell_reduces_variance(small):
    """Rao-Blackwellised m has smaller spread over seeds than the plain sample mean."""
    H, J = small
    model = KineticIsing(H, J)
    rb, raw = [], []
    for k in range(8):
        sp = sample(model, jnp.ones(N), n_steps=2, key=jax.random.key(10 + k),
                    n_trajectories=500)
        rb.append(np.asarray(rao_blackwell_moments(model, sp).m[2]))
        raw.append(np.asarray(sp[:, 2]).mean(0))
    assert np.std(rb, axis=0).mean() < np.std(raw, axis=0).mean()


def test_path_entropy_production_matches_exact(small):
    H, J = small
    model = KineticIsing(H, J)
    spins = sample(model, jnp.ones(N), n_steps=T, key=jax.random.key(4), n_trajectories=R)
    ex = exact.exact_moments(H, J, n_steps=T, s0=np.ones(N))
    est = np.asarray(path_entropy_production(model, spins))
    # per-transition log-ratio has O(sum |J|) spread
    np.testing.assert_allclose(est, ex.sigma, atol=6 * np.abs(J).sum() / np.sqrt(R))


def test_stationary_entropy_production_formula(small):
    """sigma = sum_ij (J_ij - J_ji) D_ij at stationarity (exact, both sides enumerated)."""
    H, J = small
    st = exact.exact_stationary(H, J)
    assert st.converged
    assert st.sigma > 0
    np.testing.assert_allclose(float(entropy_production(J, st.D)), st.sigma, rtol=1e-8)
    # symmetric couplings without self-coupling: equilibrium, no entropy production
    Js = (J + J.T) / 2
    np.fill_diagonal(Js, 0)
    assert abs(exact.exact_stationary(H, Js).sigma) < 1e-10


def test_sequential_sweep_matches_exact(small):
    H, J = small
    model = KineticIsing(H, 0.7 * J, update="sequential")
    spins = sample(model, jnp.ones(N), n_steps=2, key=jax.random.key(5), n_trajectories=R)
    ex = exact.exact_moments(H, 0.7 * J, n_steps=2, s0=np.ones(N), update="sequential")
    counts = np.bincount(_state_index(spins[:, 2]), minlength=2**N)
    expected = R * ex.p[2]
    keep = expected > 5
    chi2 = np.sum((counts[keep] - expected[keep]) ** 2 / expected[keep])
    assert stats.chi2.sf(chi2, keep.sum() - 1) > 1e-4
    # and it differs from the parallel law
    par = exact.exact_moments(H, 0.7 * J, n_steps=2, s0=np.ones(N))
    assert np.abs(par.p[2] - ex.p[2]).max() > 0.02


def test_zero_coupling_is_independent():
    H = np.array([-0.7, 0.0, 0.4, 1.2])
    ex = exact.exact_moments(H, np.zeros((4, 4)), n_steps=2, s0=np.ones(4))
    np.testing.assert_allclose(ex.m[1:], np.tanh(H)[None].repeat(2, 0), atol=1e-14)
    np.testing.assert_allclose(ex.C[2] - np.diag(np.diag(ex.C[2])), 0, atol=1e-14)
    np.testing.assert_allclose(ex.D[2], 0, atol=1e-14)


def test_same_key_same_result_and_vmap_over_disorder():
    keys = jax.random.split(jax.random.key(0), 3)
    models = jax.vmap(lambda k: KineticIsing.sk(k, 16, J0=1.0, dJ=0.5, H0=0.3))(keys)
    f = jax.vmap(lambda m, k: sample(m, jnp.ones(16), n_steps=6, key=k, n_trajectories=4))
    a = f(models, keys)
    b = f(models, keys)
    assert a.shape == (3, 4, 7, 16) and a.dtype == jnp.int8
    np.testing.assert_array_equal(a, b)
    one = KineticIsing(models.H[1], models.J[1])
    np.testing.assert_array_equal(
        sample(one, jnp.ones(16), n_steps=6, key=keys[1], n_trajectories=4), a[1])


def test_bad_input_errors():
    with pytest.raises(NeurocircuitsError, match="square"):
        KineticIsing(np.zeros(3), np.zeros((3, 4)))
    with pytest.raises(NeurocircuitsError, match=r"H must have shape \(3,\)"):
        KineticIsing(np.zeros(2), np.zeros((3, 3)))
    with pytest.raises(NeurocircuitsError, match="update must be one of"):
        KineticIsing(np.zeros(3), np.zeros((3, 3)), update="glauber")
    with pytest.raises(NeurocircuitsError, match="finite"):
        KineticIsing(np.zeros(3), np.full((3, 3), np.nan))
    model = KineticIsing(np.zeros(3), np.zeros((3, 3)))
    with pytest.raises(NeurocircuitsError, match="-1 and \\+1"):
        sample(model, jnp.array([1.0, 0.0, 1.0]), n_steps=2, key=jax.random.key(0),
               n_trajectories=2)
    with pytest.raises(NeurocircuitsError, match="n_steps"):
        sample(model, jnp.ones(3), n_steps=0, key=jax.random.key(0), n_trajectories=2)
    with pytest.raises(NeurocircuitsError, match="1 <= N <= 12"):
        exact.exact_moments(np.zeros(13), np.zeros((13, 13)), n_steps=1, s0=np.ones(13))
    with pytest.raises(NeurocircuitsError, match="shape \\(n_trajectories"):
        rao_blackwell_moments(model, jnp.ones((3, 3), jnp.int8))
