"""BPTT training of rate circuits: exact gradients, learning, trainable parts, tasks, bad input.

Everything is tiny (N <= 16, <= 40 steps) so the whole file runs in well under a minute on two
shared cores; most of the time is compilation.
"""

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from neurocircuits import NeurocircuitsError
from neurocircuits._core.connectivity import Dense, modular
from neurocircuits._core.errors import DivergenceError
from neurocircuits._core.integrators import Euler
from neurocircuits.rate import RateNetwork
from neurocircuits.rate.tasks import (
    PhaseShiftedOscillation,
    PulsePersistence,
    Ramp,
    SynchronyPatterns,
    nrmse,
)
from neurocircuits.rate.train import (
    LowRankCoupling,
    RateCircuit,
    RateNetworkTrainer,
    contiguous_labels,
    evaluate,
    fit,
    loss,
    predict,
    prepare,
    trainable_filter,
)

N, M = 12, 2
TINY = dict(n_modules=M, duration=20.0, dt=1.0, record_every=2)
B = 4  # trials per batch everywhere: one compilation per structure


def _circuit(key, n=N, sigma=None, g=1.2, dtype=jnp.float32):
    coupling = modular(key, (n // M,) * M, J0_in=1.0, J0_out=0.0, g=g, dtype=dtype)
    return RateCircuit.from_network(RateNetwork(coupling, tau=5.0, sigma=sigma))


def _task():
    return PulsePersistence(pulse_window=(4.0, 8.0), pulse_duration=3.0, settle=3.0,
                            rise_time=3.0, **TINY)


# --------------------------------------------------------------------------------------------
# gradients
# --------------------------------------------------------------------------------------------
def _everything(c):
    """Every kind of trainable leaf at once: J (dense base), M, N, readout, input, bias."""
    lr = c.network.coupling
    return (lr.base.matrix, lr.m, lr.n, c.readout, c.readout_bias, c.input_weights,
            c.network.bias)


def test_gradient_equals_finite_differences_and_checkpointing(getkey):
    """The gradient fit() uses is exact BPTT: directional derivatives match central differences
    in float64, for every kind of trainable leaf; checkpointing does not change it."""
    with jax.enable_x64(True):
        circuit = prepare(_circuit(getkey(), dtype=jnp.float64), ("full", "bias"), key=getkey())
        circuit = prepare(circuit, "low_rank", key=getkey(), rank=2, low_rank_scale=0.5)
        trials = _task().sample(getkey(), B)
        k = getkey()
        params, static = eqx.partition(circuit, trainable_filter(circuit, _everything))
        flat_p, unravel = jax.flatten_util.ravel_pytree(params)
        assert flat_p.size == N * N + 2 * N * 2 + 2 * N * M + M + N
        assert flat_p.dtype == jnp.float64

        def f(x, checkpoint=False):
            return loss(eqx.combine(unravel(x), static), trials, key=k, dt=1.0,
                        record_every=2, checkpoint=checkpoint)

        value_and_grad = jax.jit(jax.value_and_grad(f))  # one compilation for both
        value, grad = value_and_grad(flat_p)
        assert np.isfinite(value) and value > 0
        for i in range(3):
            d = jax.random.normal(jax.random.fold_in(getkey(), i), flat_p.shape)
            d = d / jnp.linalg.norm(d)
            h = 1e-5
            fd = (value_and_grad(flat_p + h * d)[0] - value_and_grad(flat_p - h * d)[0]) / (2 * h)
            np.testing.assert_allclose(float(grad @ d), float(fd), rtol=1e-6, atol=1e-10)
        grad_ckpt = jax.jit(jax.grad(lambda x: f(x, checkpoint=True)))(flat_p)
        np.testing.assert_allclose(grad_ckpt, grad, rtol=1e-10, atol=1e-13)


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------
def test_loss_decreases_and_history(getkey):
    task = _task()
    trained, hist = fit(_circuit(getkey()), task, key=getkey(), n_updates=40, batch_size=B,
                        learning_rate=1e-2, eval_every=20, eval_trials=B, progress=False)
    assert hist.loss.shape == (40,) and hist.n_updates == 40 and not hist.stopped_early
    np.testing.assert_allclose(hist.nrmse, np.sqrt(hist.loss), rtol=1e-6)
    assert np.all(np.isfinite(hist.grad_norm))
    assert hist.loss[-5:].mean() < 0.5 * hist.loss[:3].mean()
    assert list(hist.eval_updates) == [0, 20] and hist.eval_nrmse.shape == (2,)
    assert isinstance(trained.network.coupling, Dense)  # "full" trains a dense J
    ev = evaluate(trained, task, key=getkey(), n_trials=B)
    assert ev.outputs.shape == (B, task.n_records, M)
    # with the default readout the outputs are the module order parameters
    np.testing.assert_allclose(ev.outputs, ev.module_activity, rtol=1e-5, atol=1e-6)
    assert ev.nrmse_per_output.shape == (M,)
    # stopping at a threshold returns the circuit that reached it
    _, hist2 = fit(_circuit(getkey()), task, key=getkey(), n_updates=40, batch_size=B,
                   learning_rate=1e-2, stop_below=10.0, stop_window=2, progress=False)
    assert hist2.stopped_early and hist2.n_updates == 1
    assert hist2.updates_to(10.0, window=2) == 1


@pytest.mark.parametrize("trainable", ["low_rank", "readout"])
def test_partial_training_leaves_other_parts_unchanged(getkey, trainable):
    circuit = _circuit(getkey())
    key = getkey()
    trained, hist = fit(circuit, _task(), key=key, n_updates=3, batch_size=B,
                        trainable=trainable, rank=2, learning_rate=1e-2, progress=False)
    assert hist.n_updates == 3
    if trainable == "low_rank":
        coupling = trained.network.coupling
        assert isinstance(coupling, LowRankCoupling) and coupling.rank == 2
        assert bool(eqx.tree_equal(coupling.base, circuit.network.coupling))
        # fit initialises M, N with the first of four subkeys; training moved them
        init = prepare(circuit, "low_rank", key=jax.random.split(key, 4)[0], rank=2)
        assert not np.allclose(coupling.m, init.network.coupling.m)
        assert not np.allclose(coupling.n, init.network.coupling.n)
        unchanged = [(trained.readout, circuit.readout), (trained.input_weights,
                                                          circuit.input_weights),
                     (trained.network.bias, circuit.network.bias),
                     (trained.readout_bias, circuit.readout_bias)]
    else:
        assert bool(eqx.tree_equal(trained.network, circuit.network))
        assert not np.allclose(trained.readout, circuit.readout)
        unchanged = [(trained.input_weights, circuit.input_weights)]
    for new, old in unchanged:
        np.testing.assert_array_equal(new, old)


def test_low_rank_coupling_matches_dense(getkey):
    base = Dense(jax.random.normal(getkey(), (N, N)) / np.sqrt(N))
    m, n = jax.random.normal(getkey(), (N, 3)), jax.random.normal(getkey(), (N, 3))
    lr = LowRankCoupling(base, m, n)
    r = jax.random.uniform(getkey(), (N,))
    np.testing.assert_allclose(lr(r), lr.to_dense() @ r, rtol=1e-5, atol=1e-6)


def test_trainer_shell(getkey):
    task = _task()
    trainer = RateNetworkTrainer(n_updates=2, batch_size=B, learning_rate=1e-2, progress=False)
    with pytest.raises(NeurocircuitsError, match="not fitted"):
        trainer.predict(task.sample(getkey(), B), key=getkey())
    # a plain RateNetwork is wrapped (labels from the modular coupling)
    net = _circuit(getkey()).network
    assert trainer.fit(net, task, key=getkey()) is trainer
    out = trainer.predict(task.sample(getkey(), B), key=getkey())
    assert out.shape == (B, task.n_records, M)
    assert trainer.score(key=getkey(), n_trials=B) <= 1.0
    with pytest.raises(NeurocircuitsError, match="unknown argument"):
        RateNetworkTrainer(n_update=3)


def test_divergence_is_reported(getkey):
    # an unbounded transfer function with a strongly self-exciting J overflows in ~40 steps
    net = RateNetwork(Dense(100.0 * jnp.eye(N)), tau=5.0, phi=lambda u: u, integrator=Euler())
    circuit = RateCircuit.from_network(net, n_modules=M)
    with pytest.raises(DivergenceError, match="update 0"):
        fit(circuit, _task(), key=getkey(), n_updates=2, batch_size=B, progress=False)


# --------------------------------------------------------------------------------------------
# tasks
# --------------------------------------------------------------------------------------------
TASKS = [
    PhaseShiftedOscillation(period=10.0, cue_window=(0.0, 5.0), settle=2.0, **TINY),
    _task(),
    Ramp(cue_window=(2.0, 6.0), ramp_duration=6.0, settle=2.0, **TINY),
    SynchronyPatterns(patterns=((1, 0), (0, 1), (1, 1)), probabilities=(2, 1, 1), period=10.0,
                      cue_window=(0.0, 5.0), settle=2.0, duration=20.0, dt=1.0, record_every=2),
]


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.name)
def test_task_shapes_and_determinism(getkey, task):
    k = getkey()
    a, b, c = task.sample(k, B), task.sample(k, B), task.sample(getkey(), B)
    assert task.n_steps == 20 and task.n_records == 10
    assert a.inputs.shape == (B, 20, M)
    assert a.targets.shape == a.mask.shape == (B, 10, M)
    np.testing.assert_allclose(a.times, 2.0 * np.arange(1, 11))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.inputs, c.inputs)  # cue/pulse times depend on the key
    assert np.all((a.mask >= 0) & (a.mask <= 1)) and a.mask.sum() > 0
    if task.name == "persistence":  # trial i depends only on (key, i)
        np.testing.assert_array_equal(task.sample(k, B + 1).targets[:B], a.targets)


def test_synchrony_patterns_carry_the_probabilities():
    task = SynchronyPatterns(patterns=((1, 1, 0), (0, 1, 1)), probabilities=(3, 1),
                             period=100.0, edge=0.5, duration=300.0)
    assert task.n_modules == 3 and task.probabilities == (0.75, 0.25)
    phase = jnp.linspace(0, 1, 4000, endpoint=False)
    w = np.asarray(task.weights(phase))
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-5)
    s = (w @ np.asarray(task.patterns, float)) > 0.5  # active modules over one period
    measured = (s[:, :, None] & s[:, None, :]).mean(axis=0)
    np.testing.assert_allclose(measured, task.coactivation(), atol=0.01)


def test_nrmse_and_labels():
    t = np.sin(np.linspace(0, 6, 50))[None, :, None] * np.ones((2, 1, 3))
    assert float(nrmse(t, t)) == 0.0
    assert float(nrmse(np.broadcast_to(t.mean(axis=(0, 1)), t.shape), t)) == pytest.approx(1.0)
    np.testing.assert_array_equal(contiguous_labels(7, 3), [0, 0, 0, 1, 1, 2, 2])


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------
def _bad_fit_calls(circuit, task, key):
    return {
        "trainable name": lambda: fit(circuit, task, key=key, trainable="everything"),
        "full and low_rank": lambda: fit(circuit, task, key=key, trainable=("full", "low_rank")),
        "n_updates": lambda: fit(circuit, task, key=key, n_updates=0),
        "batch_size": lambda: fit(circuit, task, key=key, batch_size=-1),
        "learning_rate": lambda: fit(circuit, task, key=key, learning_rate=-1e-3),
        "optimizer": lambda: fit(circuit, task, key=key, optimizer="adam"),
        "key": lambda: fit(circuit, task, key=0),
        "rank": lambda: fit(circuit, task, key=key, trainable="low_rank", rank=N + 1),
        "task type": lambda: fit(circuit, "persistence", key=key),
        "task size": lambda: fit(circuit, PulsePersistence(n_modules=3, duration=20.0), key=key),
        "model type": lambda: fit(np.eye(N), task, key=key),
        "checkpoint": lambda: fit(circuit, task, key=key, checkpoint="yes"),
        "predict shape": lambda: predict(circuit, jnp.zeros((2, 20, M + 1)), key=key, dt=1.0),
        "evaluate task": lambda: evaluate(circuit, PulsePersistence(n_modules=3), key=key),
        "no labels": lambda: RateCircuit.from_network(RateNetwork(jnp.eye(N))),
        "labels shape": lambda: RateCircuit.from_network(RateNetwork(jnp.eye(N)),
                                                         labels=np.zeros(N + 1, int)),
    }


BAD = list(_bad_fit_calls(None, None, None))


@pytest.mark.parametrize("case", BAD)
def test_bad_input_raises(getkey, case):
    call = _bad_fit_calls(_circuit(getkey()), _task(), getkey())[case]
    with pytest.raises(NeurocircuitsError):
        call()


@pytest.mark.parametrize("kwargs, match", [
    (dict(duration=-1.0), "duration"),
    (dict(dt=0.0), "dt"),
    (dict(record_every=0), "record_every"),
    (dict(duration=1.0, record_every=4), "shorter than one observation"),
    (dict(pulse_window=(50.0, 20.0)), "pulse_window"),
    (dict(p_no_pulse=1.5), "p_no_pulse"),
])
def test_bad_task_parameters(kwargs, match):
    with pytest.raises(NeurocircuitsError, match=match):
        PulsePersistence(**kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(patterns=((1, 2),)), "0 or 1"),
    (dict(patterns=((1, 0), (0, 1)), probabilities=(1.0,)), "one entry per pattern"),
    (dict(patterns=((1, 0),), probabilities=(-1.0,)), "probabilities"),
    (dict(patterns=((1, 0),), probabilities=(1.0,), n_modules=3), "n_modules"),
])
def test_bad_synchrony_patterns(kwargs, match):
    with pytest.raises(NeurocircuitsError, match=match):
        SynchronyPatterns(**kwargs)
