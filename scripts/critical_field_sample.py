"""More critical-balance networks for the rate-balanced comparison, outside the experiment.

Simulates `seeds` critically balanced networks (g = 3, J0 = 1, f = 0.8, gamma = 4, tau = 10 ms)
of size N as `rate-balanced` does (exponential Euler, dt ms, 1 s discarded, 4 s measured, h
sampled every 10 ms, initial state N(0, 1)) and prints per network std(h) over time, the mean
of h (the operating point v*) and the mean rate, sorted by std(h).

    python scripts/critical_field_sample.py N SEEDS [DT] [KEY]

One batch: SEEDS coupling matrices of N^2 float32 (N = 16000: 1 GB each, with ~3x that in
working memory on the CPU). Used on 2026-12-08 to add 12 networks at N = 16000 and 16 at
N = 8000 (CPU) to the 16 per size of the full-scale run; see docs/rate.md.
"""
import sys
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import neurocircuits as nc
from neurocircuits.rate import RateNetwork, one_plus_tanh

n, seeds = int(sys.argv[1]), int(sys.argv[2])
dt = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
key = jax.random.key(int(sys.argv[4]) if len(sys.argv) > 4 else 5)
nets = eqx.filter_vmap(lambda k: RateNetwork.random(k, n, g=3.0, J0=1.0, f=0.8, gamma=4.0,
                                                    tau=10.0, bias=0.0))(
    jax.random.split(key, seeds))
signs = nets.coupling.signs[0]
every = max(1, int(round(10 / dt)))
record = nc.Record(every=every, fn=lambda u, t: {
    "h": jnp.sum(signs * one_plus_tanh(u)) / jnp.sqrt(n), "rate": jnp.mean(one_plus_tanh(u))})
t0 = time.time()
traj = nc.simulate(nets, jax.random.normal(jax.random.fold_in(key, 1), (seeds, n)), dt=dt,
                   n_steps=int(5000 / dt), key=jax.random.split(jax.random.fold_in(key, 2), seeds),
                   record=record, batch=nc.Batch(model=True))
h = np.asarray(traj.ys["h"])[:, 100:]
rate = np.asarray(traj.ys["rate"])[:, 100:].mean(1)
order = np.argsort(h.std(1))
np.set_printoptions(precision=3, suppress=True, linewidth=160)
print(f"N={n} dt={dt} {seeds} networks, {time.time() - t0:.0f} s")
print("std(h) ", h.std(1)[order])
print("mean h ", h.mean(1)[order])
print("rate   ", rate[order])
print("median std(h)", float(np.median(h.std(1))))
