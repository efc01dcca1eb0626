"""The L1-blocked layout of a fixed in-degree coupling (``SparseFixedInDegree.blocked``): the
same operator as the plain index layout, to float32 rounding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import neurocircuits as nc
from neurocircuits._core.connectivity import (
    BlockedFixedInDegree,
    SparseFixedInDegree,
    _resolve_n_blocks,
    ei_signs,
    fixed_in_degree,
)
from neurocircuits._core.errors import NeurocircuitsError


def key(seed):
    return jax.random.key(seed)


def _rows_unsorted(c):
    """The same coupling with every row's indices shuffled (blocked() must sort them)."""
    perm = jax.vmap(lambda kk: jax.random.permutation(kk, c.k))(jax.random.split(key(99), c.n_post))
    idx = jnp.take_along_axis(c.indices, perm, axis=1)
    w = c.weights
    if w.ndim == 2:
        w = jnp.take_along_axis(w, perm, axis=1)
    return SparseFixedInDegree(idx, w, c.n_pre)


def _couplings():
    n, k = 60, 7
    return {
        "scalar": fixed_in_degree(key(1), n, n, k, weight=0.3, allow_autapses=False),
        "pre": fixed_in_degree(key(2), 40, n, k, weight=ei_signs(n, 0.8, 5.0)),  # rectangular
        "pre_wide": fixed_in_degree(key(3), 90, 25, 11, weight=ei_signs(25, 0.8, 4.0)),
        "syn": fixed_in_degree(key(4), n, n, k, allow_autapses=False,
                               weight=lambda kk, idx: jax.random.normal(kk, idx.shape)),
        "multapses": fixed_in_degree(key(5), n, 13, k, weight=0.7, allow_multapses=True),
    }


COUPLINGS = _couplings()


def _close(a, b, scale):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=0,
                               atol=1e-6 * scale)


@pytest.mark.parametrize("name", sorted(COUPLINGS))
@pytest.mark.parametrize("nb", [1, 2, 3, 7, None])  # 60 / 7, 13 / 2 etc. are not divisible
def test_blocked_equals_plain(name, nb):
    c = COUPLINGS[name]
    if nb is not None and nb > c.n_pre:
        pytest.skip("more blocks than presynaptic neurons")
    for src in (c, _rows_unsorted(c)):
        b = src.blocked(nb)
        assert isinstance(b, BlockedFixedInDegree)
        assert (b.n_post, b.n_pre, b.k) == (c.n_post, c.n_pre, c.k)
        assert b.offsets.dtype == jnp.uint16 and b.offsets.shape[:2] == (b.n_blocks, c.n_post)
        assert b.n_blocks == (nb or 1) and b.block_size == -(-c.n_pre // b.n_blocks)
        # every row keeps K real slots; padding slots hold block_size
        real = np.asarray(b.offsets) < b.block_size
        assert np.all(real.sum(axis=(0, 2)) == c.k)
        r = jax.random.uniform(key(20), (c.n_pre,), minval=-1.0, maxval=2.0)
        scale = float(np.abs(np.asarray(c.to_dense())).sum(axis=1).max()) * 2.0
        _close(b(r), c(r), scale)
        _close(jax.jit(lambda m, x: m(x))(b, r), c(r), scale)
        np.testing.assert_allclose(np.asarray(b.to_dense()), np.asarray(c.to_dense()),
                                   rtol=0, atol=1e-6)


def test_multapses_add_up():
    """Repeated indices in a row (multapses) count once each, also across a block boundary."""
    idx = jnp.array([[0, 0, 0, 4], [3, 4, 4, 1], [2, 2, 2, 2]], jnp.int32)
    c = SparseFixedInDegree(idx, 1.5, 5)
    for nb in (1, 2, 4, 5):
        b = c.blocked(nb)
        np.testing.assert_allclose(np.asarray(b.to_dense()), np.asarray(c.to_dense()))
        r = jnp.arange(1.0, 6.0)
        np.testing.assert_allclose(np.asarray(b(r)), [1.5 * (3 + 5), 1.5 * (4 + 10 + 2),
                                                      1.5 * 12])


def test_per_synapse_weights_are_stored_blocked():
    c = COUPLINGS["syn"]
    b = c.blocked(3)
    assert b.weights.shape == b.offsets.shape
    pad = np.asarray(b.offsets) == b.block_size
    assert np.all(np.asarray(b.weights)[pad] == 0)
    np.testing.assert_allclose(np.sort(np.asarray(b.weights)[~pad]),
                               np.sort(np.asarray(c.weights).ravel()))


def test_default_n_blocks():
    """Smallest count whose float32 block fits 128 KiB, at least one."""
    assert _resolve_n_blocks(60, None) == (1, 60)
    assert _resolve_n_blocks(32768, None) == (1, 32768)
    assert _resolve_n_blocks(32769, None) == (2, 16385)
    assert _resolve_n_blocks(1_000_000, None) == (31, 32259)
    assert COUPLINGS["scalar"].blocked().n_blocks == 1


def test_simulate_same_trajectory():
    n, k = 200, 20
    w = (1.0 / np.sqrt(k)) * ei_signs(n, f=0.8, gamma=5.0)
    c = fixed_in_degree(key(7), n, n, k, weight=w, allow_autapses=False)
    u0 = 0.1 * jax.random.normal(key(8), (n,), jnp.float32)
    rec = nc.Record(every=10, fn=lambda u, t: {"u": u})
    out = []
    for coupling in (c, c.blocked(3), c.blocked()):
        net = nc.rate.RateNetwork(coupling, tau=1.0, bias=0.5 * np.sqrt(k), sigma=0.2,
                                  integrator=nc.Euler())
        out.append(nc.simulate(net, u0, dt=0.1, n_steps=200, key=key(9), chunk_steps=50,
                               progress=False, record=rec))
    for res in out[1:]:
        np.testing.assert_allclose(np.asarray(res.ys["u"]), np.asarray(out[0].ys["u"]),
                                   rtol=0, atol=1e-5)
        np.testing.assert_allclose(np.asarray(res.final_state), np.asarray(out[0].final_state),
                                   rtol=0, atol=1e-5)


@pytest.mark.parametrize("nb, match", [
    (0, "n_blocks must be an integer >= 1"),
    (-3, "n_blocks must be an integer >= 1"),
    (2.0, "n_blocks must be an integer"),
    (True, "n_blocks must be an integer"),
    (61, "n_blocks must be <= n_pre = 60"),
])
def test_bad_n_blocks(nb, match):
    with pytest.raises(NeurocircuitsError, match=match):
        COUPLINGS["scalar"].blocked(nb)


def test_block_size_must_fit_uint16():
    with pytest.raises(NeurocircuitsError, match=r"n_blocks = 1 .* 100000 .* n_blocks >= 2"):
        _resolve_n_blocks(100_000, 1)
    with pytest.raises(NeurocircuitsError, match=r"n_blocks >= 16 for n_pre = 1000000"):
        _resolve_n_blocks(1_000_000, 15)
    assert _resolve_n_blocks(65535, 1) == (1, 65535)
    assert _resolve_n_blocks(1_000_000, 16) == (16, 62500)
    # through the method, on a real (cheap: K = 1) coupling with n_pre > 65535
    c = SparseFixedInDegree(jnp.array([[70_000], [3]], jnp.int32), 1.0, 70_000 + 1)
    with pytest.raises(NeurocircuitsError, match="uint16"):
        c.blocked(1)
    b = c.blocked()  # default: 3 blocks of 23334
    assert b.n_blocks == 3
    np.testing.assert_allclose(np.asarray(b(jnp.arange(70_001.0))), [70_000.0, 3.0])


def test_bad_direct_construction():
    with pytest.raises(NeurocircuitsError, match="uint16 array of shape"):
        BlockedFixedInDegree(jnp.zeros((2, 3, 4), jnp.int32), 1.0, 10, 4)
    with pytest.raises(NeurocircuitsError, match="weights must be a scalar"):
        BlockedFixedInDegree(jnp.zeros((2, 3, 4), jnp.uint16), jnp.ones(7), 10, 4)
    with pytest.raises(NeurocircuitsError, match=r"offsets must lie in \[0, block_size\]"):
        BlockedFixedInDegree(jnp.full((2, 3, 4), 6, jnp.uint16), 1.0, 10, 4)


def test_blocked_needs_concrete_indices():
    c = COUPLINGS["scalar"]
    with pytest.raises(NeurocircuitsError, match="concrete indices"):
        jax.jit(lambda idx: SparseFixedInDegree(idx, 0.3, c.n_pre).blocked(2).offsets)(c.indices)


SHARDED = """
import jax, jax.numpy as jnp, numpy as np
import neurocircuits as nc
from neurocircuits._core import connectivity as conn
assert jax.device_count() == 4, jax.devices()
k = jax.random.key
c = conn.fixed_in_degree(k(5), 64, 64, 8, weight=conn.ei_signs(64, 0.8, 4.0) * 0.4)
net = nc.rate.RateNetwork(c.blocked(3), sigma=0.2)
rec = nc.Record(every=5, fn=lambda u, t: {"u": u})
a = nc.simulate(net, jnp.zeros(64), dt=0.5, n_steps=100, key=k(6), record=rec, chunk_steps=50)
b = nc.simulate(net, jnp.zeros(64), dt=0.5, n_steps=100, key=k(6), record=rec, chunk_steps=50,
                sharding=nc.NeuronSharding())
assert len(b.final_state.sharding.device_set) == 4
assert np.array_equal(np.asarray(a.ys["u"]), np.asarray(b.ys["u"]))
print("identical")
"""


def test_sharded_run_is_identical():
    """``__call__`` gathers the neurons first: a run over 4 (virtual CPU) devices is bit for bit
    the single-device run."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    res = subprocess.run([sys.executable, "-c", SHARDED], env=env, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    assert "identical" in res.stdout
