"""The transition to chaos of a random rate network, simulation against mean-field theory.

    python examples/chaos_transition.py            # N = 2000, a minute on a laptop CPU
    python examples/chaos_transition.py --small    # seconds (what the tests run)
"""

import argparse

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import neurocircuits as nc

parser = argparse.ArgumentParser()
parser.add_argument("--small", action="store_true")
args = parser.parse_args()
n, n_steps = (300, 1500) if args.small else (2000, 6000)

gs = jnp.array([0.8, 1.5, 2.0, 2.5])
net = nc.rate.RateNetwork.random(jax.random.key(0), n, g=1.0, phi=nc.rate.tanh, tau=10.0)
nets = eqx.tree_at(lambda m: m.coupling.g, net, gs)  # one shared random matrix, four gains
u0 = jax.random.normal(jax.random.key(1), (len(gs), n))
traj = nc.simulate(nets, u0, dt=1.0, n_steps=n_steps, key=jax.random.split(jax.random.key(2), 4),
                   record=nc.Record(every=10, fn=lambda u, t: jnp.mean(u**2)),
                   batch=nc.Batch(model=lambda m: m.coupling.g))
delta0_sim = np.asarray(traj.ys)[:, traj.ys.shape[1] // 3:].mean(axis=1)
for g, d in zip(np.asarray(gs), delta0_sim):
    theory = nc.rate.theory.dmft_solve(float(g), nc.rate.tanh)
    print(f"g = {g:.1f}: Delta0 simulation {d:.3f}   DMFT {theory.delta0:.3f} ({theory.kind})")
