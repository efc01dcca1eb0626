"""Connectivity: couplings and keyed builders (shapes, statistics, exactness, keys, errors)."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from neurocircuits._core.connectivity import (
    BlockMeanPlusGaussian,
    Dense,
    GaussianPlusMean,
    SparseFixedInDegree,
    ei,
    ei_signs,
    fixed_in_degree,
    gaussian,
    modular,
)
from neurocircuits._core.errors import NeurocircuitsError

P_MIN = 1e-3  # smallest p-value accepted by the (fixed-key, deterministic) statistical tests


def key(seed):
    return jax.random.key(seed)


def _mean_only(c):
    """The mean (non-random) part of an E/I or modular coupling as a float64 matrix."""
    if isinstance(c, GaussianPlusMean):
        c = GaussianPlusMean(jnp.zeros_like(c.z), 0.0, c.J0, c.signs, c.mask)
    else:
        c = BlockMeanPlusGaussian(None, 0.0, c.J0, c.signs, c.module_labels)
    return np.asarray(c.to_dense(), np.float64)


# --------------------------------------------------------------------------------- statistics
def test_gaussian_statistics_and_shapes():
    c = gaussian(key(0), 300, 200, g=1.5)
    assert isinstance(c, GaussianPlusMean) and c.signs is None and c.mask is None
    assert (c.n_post, c.n_pre) == (300, 200)
    z = np.asarray(c.z, np.float64)
    n_el = z.size
    assert abs(z.mean()) < 4 * np.sqrt(1 / 200 / n_el)
    # sample variance of a normal: relative standard error sqrt(2 / n_el) ~ 0.4%
    assert z.var() * 200 == pytest.approx(1.0, rel=5 * np.sqrt(2 / n_el))
    np.testing.assert_allclose(np.asarray(c.to_dense()), 1.5 * z, rtol=1e-6)
    assert gaussian(key(0), 50).z.shape == (50, 50)


def test_ei_signs_fractions_and_balance():
    s = np.asarray(ei_signs(1000, f=0.8))
    assert (s > 0).sum() == 800 and np.all(s[:800] == 1.0) and np.all(s[800:] == -4.0)
    assert s.sum() == 0.0  # critical balance
    # the realised fraction sets the critical gamma: 7 E, 3 I -> gamma = 7/3
    s = np.asarray(ei_signs(10, f=0.7), np.float64)
    assert abs(s.sum()) < 1e-5 and s[-1] == pytest.approx(-7 / 3, rel=1e-6)
    inh = np.asarray(ei_signs(1000, f=0.8, balance=1.5))
    assert inh[-1] == pytest.approx(-6.0) and inh.sum() < 0  # inhibition-dominated
    exc = np.asarray(ei_signs(1000, f=0.8, balance=0.5))
    assert exc.sum() > 0  # excitation-dominated
    assert np.asarray(ei_signs(100, f=0.5, gamma=3.0))[-1] == -3.0


def test_ei_critical_mean_part_has_no_outlier():
    c = COUPLINGS["ei"]  # ei(key(12), 60, J0=1.0, g=2.0): critical balance, p = 1
    assert isinstance(c, GaussianPlusMean) and c.mask is None
    np.testing.assert_array_equal(np.asarray(c.signs), np.asarray(ei_signs(60, 0.8)))
    m = _mean_only(c)
    norm = np.linalg.norm(m)
    assert np.abs(m.sum(axis=1)).max() < 1e-6 * norm  # sum_j s_j = 0 in every row
    assert np.abs(np.linalg.eigvals(m)).max() < 1e-4 * norm  # nilpotent rank one
    # inhibition-dominated: one outlier at (J0 / sqrt N) sum_j s_j < 0
    n, J0 = 60, 1.3
    c = ei(key(12), n, f=0.8, J0=J0, balance=1.5)
    s = np.asarray(c.signs, np.float64)
    eig = np.linalg.eigvals(_mean_only(c))
    lead = eig[np.argmax(np.abs(eig))]
    assert lead.real == pytest.approx(J0 / np.sqrt(n) * s.sum(), rel=1e-4)
    assert lead.real < 0


def test_ei_random_part_and_mask_density():
    c, n, p = COUPLINGS["ei_sparse"], 60, 0.3
    z = np.asarray(c.z, np.float64)
    assert z.var() * n == pytest.approx(1.0, rel=5 * np.sqrt(2 / z.size))
    mask = np.asarray(c.mask)
    assert set(np.unique(mask)) <= {0.0, 1.0}
    se = np.sqrt(p * (1 - p) / mask.size)
    assert abs(mask.mean() - p) < 4 * se


def test_ei_dale_respects_signs():
    n, p, J0 = 60, 0.3, 1.0
    c = ei(key(12), n, J0=J0, p=p, dale=True)
    assert isinstance(c, Dense)
    J = np.asarray(c.matrix)
    s = np.asarray(ei_signs(n, 0.8))
    assert np.all(J[:, s > 0] >= 0) and np.all(J[:, s < 0] <= 0)
    # the mask (same key as COUPLINGS["ei_sparse"]) carries the randomness:
    # |J_ij| = |s_j| J0 / sqrt(N p) where c_ij = 1
    mask = np.asarray(COUPLINGS["ei_sparse"].mask)
    np.testing.assert_array_equal(J != 0, mask != 0)
    expected = np.abs(s)[None, :] * J0 / np.sqrt(n * p) * mask
    np.testing.assert_allclose(np.abs(J), expected, rtol=1e-6)
    # with g > 0 the magnitudes vary, the signs still do not flip
    J = np.asarray(COUPLINGS["ei_dale"].matrix)
    assert np.all(J[:, s > 0] >= 0) and np.all(J[:, s < 0] <= 0)
    assert len(np.unique(np.abs(J[J != 0]))) > 100


def test_modular_structure_and_critical_balance():
    sizes = (20, 25, 15)
    n = sum(sizes)
    c = COUPLINGS["modular_blocks"]  # J0_in=2.0, J0_out=0.5, g_in=2.0, g_out=0.3
    assert isinstance(c, BlockMeanPlusGaussian) and c.n_modules == 3
    lab = np.asarray(c.module_labels)
    np.testing.assert_array_equal(np.bincount(lab), sizes)
    np.testing.assert_allclose(np.asarray(c.J0), [[2, .5, .5], [.5, 2, .5], [.5, .5, 2]])
    s = np.asarray(c.signs)
    for a, n_a in enumerate(sizes):  # E first inside every module, each module balanced
        s_a = s[lab == a]
        n_e = int(round(0.8 * n_a))
        assert np.all(s_a[:n_e] == 1.0) and np.all(s_a[n_e:] < 0)
        assert abs(s_a.sum()) < 1e-5
    m = _mean_only(c)
    norm = np.linalg.norm(m)
    assert np.abs(m.sum(axis=1)).max() < 1e-6 * norm
    assert np.abs(m @ m).max() < 1e-6 * norm**2  # nilpotent: no outlier
    assert np.abs(np.linalg.eigvals(m)).max() < 1e-4 * norm
    # block-scaled random part: std g_in / sqrt(N) within, g_out / sqrt(N) between modules
    rand = np.asarray(c.to_dense(), np.float64) - m
    same = lab[:, None] == lab[None, :]
    for sel, gain in ((same, 2.0), (~same, 0.3)):  # rel. s.e. of a std: 1 / sqrt(2 n)
        assert rand[sel].std() * np.sqrt(n) == pytest.approx(gain, rel=4 / np.sqrt(2 * sel.sum()))
    # module fields and order parameters
    r = np.asarray(jax.random.uniform(key(5), (n,)), np.float64)
    Jbar = np.stack([m[lab == a][0] for a in range(3)])  # rows of one module are equal
    np.testing.assert_allclose(np.asarray(c.mean_field(jnp.asarray(r, jnp.float32))), Jbar @ r,
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(c.module_mean(jnp.asarray(r, jnp.float32))),
                               [r[lab == a].mean() for a in range(3)], rtol=1e-5)
    # g = 0 stores no random matrix
    assert COUPLINGS["modular_mean_only"].z is None


# ------------------------------------------------------------------ coupling(r) == J @ r
def _couplings():
    n, k = 60, 7
    mat = jax.random.normal(key(10), (n, n)) / np.sqrt(n)
    return {
        "dense": Dense(mat),
        "gaussian": gaussian(key(11), n, g=1.7),
        "gaussian_rect": gaussian(key(11), 40, n, g=1.7),
        "ei": ei(key(12), n, J0=1.0, g=2.0),
        "ei_sparse": ei(key(12), n, J0=1.0, g=2.0, p=0.3, balance=1.4),
        "ei_dale": ei(key(12), n, J0=1.0, g=0.5, p=0.3, dale=True),
        "modular": modular(key(13), (20, 25, 15), J0_in=2.0, J0_out=-0.5, g=1.5),
        "modular_blocks": modular(key(13), (20, 25, 15), J0_in=2.0, J0_out=0.5, g_in=2.0,
                                  g_out=0.3),
        "modular_mean_only": modular(key(13), (20, 40), J0_in=1.0, J0_out=0.5, g=0.0),
        "sparse_scalar": fixed_in_degree(key(14), n, n, k, weight=0.3, allow_autapses=False),
        "sparse_pre": fixed_in_degree(key(14), 40, n, k, weight=ei_signs(n, 0.8, 5.0)),
        "sparse_syn": fixed_in_degree(key(15), n, n, k, allow_autapses=False,
                                      weight=lambda kk, idx: jax.random.normal(kk, idx.shape)),
        "sparse_multapses": fixed_in_degree(key(14), n, 5, k, weight=0.7, allow_multapses=True),
    }


COUPLINGS = _couplings()


@pytest.mark.parametrize("name", sorted(COUPLINGS))
def test_call_equals_dense_matvec(name):
    c = COUPLINGS[name]
    dense = np.asarray(c.to_dense(), np.float64)
    assert dense.shape == (c.n_post, c.n_pre)
    r = jax.random.uniform(key(20), (c.n_pre,), minval=-1.0, maxval=2.0)
    out = np.asarray(c(r), np.float64)
    expected = dense @ np.asarray(r, np.float64)
    scale = np.abs(dense).sum(axis=1).max() * 2.0
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-5 * scale)


# ------------------------------------------------------------------------ fixed in-degree
def _check_rows(indices, n_pre, *, no_autapses):
    idx = np.asarray(indices)
    assert idx.dtype == np.int32
    assert idx.min() >= 0 and idx.max() < n_pre
    assert np.all(np.diff(idx, axis=1) > 0)  # sorted and distinct: exactly K partners
    if no_autapses:
        assert not np.any(idx == np.arange(idx.shape[0])[:, None])


# k = 7: redraw loop; k = 50: complement of a uniform 9-subset; k = n - 1: all but i
@pytest.mark.parametrize("n, k", [(60, 7), (60, 50), (9, 8)])
def test_fixed_in_degree_distinct_without_autapses(n, k):
    c = fixed_in_degree(key(30), n, n, k, allow_autapses=False)
    assert isinstance(c, SparseFixedInDegree) and c.indices.shape == (n, k) and c.k == k
    _check_rows(c.indices, n, no_autapses=True)
    if k == 7:
        c = COUPLINGS["sparse_pre"]  # autapses allowed (and rectangular)
        _check_rows(c.indices, c.n_pre, no_autapses=False)
        assert np.any(np.asarray(c.indices) == np.arange(c.n_post)[:, None])  # they do occur


def test_fixed_in_degree_multapses():
    """With replacement: K draws per row, repeats present at this density."""
    c = COUPLINGS["sparse_multapses"]
    idx = np.asarray(c.indices)
    assert idx.shape == (60, 7) and idx.min() >= 0 and idx.max() < 5
    assert np.all(np.diff(idx, axis=1) >= 0) and np.any(np.diff(idx, axis=1) == 0)


@pytest.mark.parametrize("k", [2, 4])  # k = 2: redraw loop, k = 4: permutation path
def test_fixed_in_degree_uniform_subsets(k):
    """Every k-subset of 6 presynaptic neurons is equally likely (chi-square over subsets)."""
    n_post, n_pre = 6000, 6
    idx = np.asarray(fixed_in_degree(key(32), n_post, n_pre, k).indices)
    subsets = {s: i for i, s in enumerate(itertools.combinations(range(n_pre), k))}
    counts = np.bincount([subsets[tuple(row)] for row in idx], minlength=len(subsets))
    assert stats.chisquare(counts).pvalue > P_MIN


def test_fixed_in_degree_million_neurons():
    """N = 10^6, K = 10 without a dense matrix (memory O(N K)): distinct partners and no
    autapses on a sample of rows; every presynaptic neuron chosen equally often; excluding
    j = i does not favour the neighbours of i."""
    n, k = 1_000_000, 10
    c = fixed_in_degree(key(34), n, n, k, weight=0.5, allow_autapses=False)
    assert c.indices.shape == (n, k) and c.indices.dtype == jnp.int32
    idx = np.asarray(c.indices)
    # marginals: c_j = sum over rows i != j of Bernoulli(q), q = k / (n - 1); the K indicators
    # of a row are (weakly) negatively correlated, so this is chi-square with n - 1 dof
    counts = np.bincount(idx.ravel(), minlength=n)
    q = k / (n - 1)
    x2 = ((counts - k) ** 2).sum() / ((n - 1) * q * (1 - q) * (n - 1) / (n - 2))
    assert stats.chi2.sf(x2, n - 1) > P_MIN
    # offsets (j - i) mod n are uniform on 1..n-1 (a wrong skip would double offset 1)
    off = np.bincount(((idx - np.arange(n)[:, None]) % n).ravel(), minlength=n)
    assert off[0] == 0
    assert stats.chisquare(off[1:]).pvalue > P_MIN
    assert off[1] < 10 + 6 * np.sqrt(10)
    rows = np.random.default_rng(0).choice(n, 2000, replace=False)  # test-side sampling only
    sample = np.asarray(c.indices[rows])
    assert sample.min() >= 0 and sample.max() < n
    assert np.all(np.diff(sample, axis=1) > 0)
    assert not np.any(sample == rows[:, None])
    r = jax.random.uniform(key(36), (n,))
    out = np.asarray(c(r))
    np.testing.assert_allclose(out[rows], 0.5 * np.asarray(r)[sample].sum(axis=1), rtol=1e-5)


def test_fixed_in_degree_does_not_depend_on_block_rows():
    a = fixed_in_degree(key(37), 60, 60, 7, allow_autapses=False)
    b = fixed_in_degree(key(37), 60, 60, 7, allow_autapses=False, block_rows=7)
    np.testing.assert_array_equal(np.asarray(a.indices), np.asarray(b.indices))


def test_csr_by_pre():
    n, k = 60, 7
    for c in (COUPLINGS["sparse_syn"], COUPLINGS["sparse_pre"], COUPLINGS["sparse_multapses"]):
        csr = c.to_csr_by_pre()
        indptr, post, w = (np.asarray(a) for a in csr)
        assert indptr.shape == (c.n_pre + 1,) and indptr[0] == 0
        assert indptr[-1] == c.n_post * c.k and np.all(np.diff(indptr) >= 0)
        dense = np.zeros((c.n_post, c.n_pre))
        for j in range(c.n_pre):
            seg = slice(indptr[j], indptr[j + 1])
            assert np.all(np.diff(post[seg]) >= 0)
            np.add.at(dense[:, j], post[seg], w[seg])
        np.testing.assert_allclose(dense, np.asarray(c.to_dense()), rtol=1e-6, atol=1e-7)
    # event-driven propagation of a spike vector touches only the spikers' segments
    c = fixed_in_degree(key(38), n, n, k, weight=ei_signs(n, 0.8), allow_autapses=False)
    indptr, post, w = (np.asarray(a) for a in c.to_csr_by_pre())
    spikes = np.zeros(n)
    spikes[[3, 17, 45]] = 1.0
    out = np.zeros(n)
    for j in np.flatnonzero(spikes):
        np.add.at(out, post[indptr[j]:indptr[j + 1]], w[indptr[j]:indptr[j + 1]])
    np.testing.assert_allclose(out, np.asarray(c(jnp.asarray(spikes, jnp.float32))), atol=1e-6)


# ----------------------------------------------------------------------- keys, transforms
BUILDERS = {  # sizes shared with COUPLINGS (fewer compilations)
    "gaussian": lambda kk: gaussian(kk, 60).z,
    "ei": lambda kk: ei(kk, 60, g=1.0, p=0.3).to_dense(),
    "ei_dale": lambda kk: ei(kk, 60, p=0.3, dale=True).matrix,
    "modular": lambda kk: modular(kk, (20, 25, 15), J0_in=1.0, J0_out=0.2).z,
    "fixed_in_degree": lambda kk: fixed_in_degree(kk, 60, 60, 7, allow_autapses=False).indices,
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_same_key_same_result_different_key_different(name):
    build = BUILDERS[name]
    a, b, c = build(key(40)), build(key(40)), build(key(41))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))


def test_builders_under_jit_and_vmap():
    """Builders run inside one jitted program: vmapped over keys (static sizes) and with traced
    strengths (J0, g, balance sweep without rebuilding on the host); results match eager."""
    keys = jax.random.split(key(42), 3)
    r = jnp.linspace(0.0, 1.0, 60)

    def build(kk):
        return fixed_in_degree(kk, 60, 60, 7, allow_autapses=False).indices

    @jax.jit
    def program(keys, J0, g, balance, J0_ins):
        return (
            jax.vmap(build)(keys),
            jax.vmap(lambda kk: gaussian(kk, 60).z)(keys),
            ei(key(12), 60, J0=J0, g=g, p=0.3, balance=balance)(r),
            jax.vmap(lambda a: modular(key(13), (20, 40), J0_in=a, J0_out=0.5, g=0.0)(r))(J0_ins),
        )

    idx, zs, ei_out, mod_out = program(keys, 1.0, 2.0, 1.4, jnp.array([1.0, 3.0]))
    for i in range(3):
        np.testing.assert_array_equal(np.asarray(idx[i]), np.asarray(build(keys[i])))
        np.testing.assert_allclose(np.asarray(zs[i]), np.asarray(gaussian(keys[i], 60).z),
                                   rtol=1e-6)  # same draws; jit may fuse the 1/sqrt(n)
    np.testing.assert_allclose(np.asarray(ei_out), np.asarray(COUPLINGS["ei_sparse"](r)),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(mod_out[0]),
                               np.asarray(COUPLINGS["modular_mean_only"](r)), rtol=1e-5, atol=1e-6)
    assert not np.allclose(np.asarray(mod_out[0]), np.asarray(mod_out[1]))


# --------------------------------------------------------------------------- bad input
BAD = [
    (lambda: ei(key(0), 10, f=1.5), r"\bf\b.*\(0\.0, 1\.0\).*1\.5"),
    (lambda: ei(key(0), 10, f=0.0), r"\bf\b"),
    (lambda: ei_signs(10, f=-0.2), r"\bf\b"),
    (lambda: ei(key(0), 10, p=0.0), r"\bp\b.*\(0\.0, 1\.0\]"),
    (lambda: ei(key(0), 10, p=1.2), r"\bp\b.*1\.2"),
    (lambda: ei(key(0), 10, gamma=-1.0), r"\bgamma\b.*> 0"),
    (lambda: ei(key(0), 10, gamma=2.0, balance=1.0), r"\bbalance\b"),
    (lambda: ei(key(0), 10, balance=0.0), r"\bbalance\b"),
    (lambda: ei(key(0), 10, g=-1.0), r"\bg\b"),
    (lambda: ei(key(0), 0), r"\bn\b.*>= 1"),
    (lambda: ei(key(0), 2.5), r"\bn\b.*integer"),
    (lambda: ei(key(0), 1), r"inhibitory"),
    (lambda: gaussian(key(0), 0), r"\bn_post\b"),
    (lambda: gaussian(key(0), 5, -3), r"\bn_pre\b"),
    (lambda: modular(key(0), (), J0_in=1.0, J0_out=0.0), r"\bsizes\b"),
    (lambda: modular(key(0), 100, J0_in=1.0, J0_out=0.0), r"\bsizes\b"),
    (lambda: modular(key(0), (10, 0), J0_in=1.0, J0_out=0.0), r"sizes\[1\]"),
    (lambda: modular(key(0), (10, 10), J0_in=1.0, J0_out=0.0, g_out=-1.0), r"\bg_out\b"),
    (lambda: modular(key(0), (10, 10), J0_in=1.0, J0_out=0.0, f=1.0), r"\bf\b"),
    (lambda: fixed_in_degree(key(0), 10, 10, 11), r"\bk=11\b.*allow_multapses"),
    (lambda: fixed_in_degree(key(0), 10, 10, 10, allow_autapses=False), r"\bk=10\b"),
    (lambda: fixed_in_degree(key(0), 10, 10, 0), r"\bk\b.*>= 1"),
    (lambda: fixed_in_degree(key(0), 10, 20, 3, allow_autapses=False), r"allow_autapses"),
    (lambda: fixed_in_degree(key(0), 10, 20, 3, weight=jnp.ones(7)), r"\bweight\b.*\(7,\)"),
    (lambda: fixed_in_degree(key(0), 10, 20, 3, block_rows=0), r"\bblock_rows\b"),
    (lambda: SparseFixedInDegree(jnp.array([[0, 5]]), 1.0, 5), r"\bindices\b.*\[0, 5\)"),
    (lambda: SparseFixedInDegree(jnp.array([0, 1]), 1.0, 5), r"\bindices\b.*shape"),
    (lambda: SparseFixedInDegree(jnp.array([[0, 1]]), jnp.ones(3), 5), r"\bweights\b"),
    (lambda: BlockMeanPlusGaussian(None, 0.0, jnp.eye(2), jnp.ones(3), jnp.array([0, 1, 2])),
     r"\bmodule_labels\b.*\[0, 2\)"),
    (lambda: BlockMeanPlusGaussian(None, 0.0, jnp.ones(2), jnp.ones(3), jnp.zeros(3)), r"\bJ0\b"),
]


@pytest.mark.parametrize("build, match", BAD)
def test_bad_input_raises(build, match):
    with pytest.raises(NeurocircuitsError, match=match):
        build()
