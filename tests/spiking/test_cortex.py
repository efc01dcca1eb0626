"""Modular RS/FS/LTS cortex: builder statistics, bad input, mean-field theory vs simulation."""

import jax
import numpy as np
import pytest

import neurocircuits as nc
from neurocircuits.spiking.circuits import modular_cortex, modular_cortex_indegrees
from neurocircuits.spiking.theory import (
    brunel_rate,
    conductance_mean_field,
    izhikevich_transfer,
    mean_field,
)


def test_modular_cortex_indegrees_match_edges():
    M, m = 3, 50
    net, _ = modular_cortex(jax.random.key(0), n_modules=M, n_per_module=m, k_in=20, k_out=6,
                            propagation="dense")
    lab = np.asarray(net.labels)
    assert np.bincount(lab).tolist() == [40, 5, 5] * M
    K_e, K_i = modular_cortex_indegrees(n_modules=M, n_per_module=m, k_in=20, k_out=6)
    We = np.asarray(net.projections[0].matrix) > 0
    Wi = np.asarray(net.projections[1].matrix) > 0
    for a in range(3 * M):
        for b in range(3 * M):
            got_e = We[np.ix_(lab == a, lab == b)].sum(1).mean()
            got_i = Wi[np.ix_(lab == a, lab == b)].sum(1).mean()
            if a // 3 == b // 3:  # own module: exact local in-degrees
                assert got_e == K_e[a, b]
            assert got_e == pytest.approx(K_e[a, b], abs=2.0)
            assert got_i == pytest.approx(K_i[a, b], abs=2.0)
    # every cell: exactly k_in local + k_out remote excitatory, k_inh local inhibitory inputs
    assert (We.sum(1) == 26).all() and (Wi.sum(1) == 5).all()
    mod = lab // 3
    assert (We[mod[:, None] != mod[None, :]].sum() == 6 * M * m)
    assert not Wi[mod[:, None] != mod[None, :]].any()  # inhibition is local
    assert (np.asarray(net.projections[1].matrix)[Wi] == np.float32(0.05)).all()


@pytest.mark.parametrize("kw, match", [
    (dict(fractions=(0.5, 0.1, 0.1)), r"fractions must be three non-negative numbers"),
    (dict(n_per_module=50, k_in=45), r"k_in=45 local excitatory inputs exceed the 40 RS"),
    (dict(w_e=-0.1), r"w_e must be finite and >= 0"),
    (dict(tau_i=0.0), r"tau_i must be > 0 ms"),
    (dict(n_modules=0), r"n_modules must be an int >= 1"),
])
def test_modular_cortex_bad_input(kw, match):
    with pytest.raises(nc.NeurocircuitsError, match=match):
        modular_cortex(jax.random.key(0), **{"n_per_module": 50, "k_in": 20, **kw})


def test_theory_bad_input():
    with pytest.raises(nc.NeurocircuitsError, match=r"presets must be"):
        izhikevich_transfer(("XX",), rate_e=0.0, rate_i=0.0, w_e=0.01, w_i=0.05, tau_e=5.0,
                            tau_i=10.0, E_e=0.0, E_i=-80.0, ext_rate=0.0, w_ext=0.0,
                            key=jax.random.key(0))
    with pytest.raises(nc.NeurocircuitsError, match=r"K_e must be a finite, non-negative \(2, 2\)"):
        conductance_mean_field(("RS", "FS"), K_e=np.ones((3, 3)), K_i=np.ones((2, 2)),
                               w_e=0.01, w_i=0.05, key=jax.random.key(0))


def test_multi_population_mean_field_reduces_to_brunel():
    # two identical populations (E, I) of Brunel's model A: the same fixed point
    C_E, g, eta, J = 800, 5.0, 2.0, 0.1
    K = np.array([[C_E, C_E // 4]] * 2, float)
    Jm = np.array([[J, -g * J]] * 2)
    nu_thr = 20.0 / (J * C_E * 20.0) * 1e3
    r = mean_field(K=K, J=Jm, K_ext=np.full(2, C_E), J_ext=np.full(2, J), nu_ext=eta * nu_thr,
                   tau_m=20.0, V_th=20.0, V_r=10.0, t_ref=2.0, E_L=0.0, nu0=[10.0, 10.0],
                   damping=0.3, tol=1e-6)
    b = brunel_rate(g=g, eta=eta, C_E=C_E)
    assert r.converged
    np.testing.assert_allclose(r.rates_hz, b.rate_hz, rtol=1e-4)


def test_transfer_function_is_monotone_and_reproducible():
    kw = dict(w_e=0.01, w_i=0.05, tau_e=5.0, tau_i=10.0, E_e=0.0, E_i=-80.0, ext_rate=2000.0,
              w_ext=0.006, n_cells=50, duration=250.0, t_transient=50.0)
    k = jax.random.key(3)
    lo = izhikevich_transfer(("RS", "FS", "LTS"), rate_e=100.0, rate_i=200.0, key=k, **kw)
    hi = izhikevich_transfer(("RS", "FS", "LTS"), rate_e=800.0, rate_i=200.0, key=k, **kw)
    inh = izhikevich_transfer(("RS", "FS", "LTS"), rate_e=100.0, rate_i=1500.0, key=k, **kw)
    again = izhikevich_transfer(("RS", "FS", "LTS"), rate_e=100.0, rate_i=200.0, key=k, **kw)
    np.testing.assert_array_equal(lo, again)
    assert (hi > lo).all() and (inh <= lo).all() and (lo > 0).all()


@pytest.mark.slow
def test_cortex_mean_field_vs_simulation():
    from pathlib import Path

    from neurocircuits.experiments import spiking_cortex as ex
    from neurocircuits.experiments._base import Context, build_config

    cfg = build_config(ex.Config, "quick", {"control": False})
    res = ex.run_experiment(cfg, jax.random.key(0), Context(Path("/tmp"), progress=False))
    s = res.summary
    assert s["theory_rate_rel_err_max"] < 0.25, s
    assert s["within_module_corr"] > s["between_module_corr"] + 0.05
    assert s["within_module_corr_theory"] > s["between_module_corr_theory"]
