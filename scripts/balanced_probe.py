"""Probe of the macroscopic field std(h) vs N (critical and inhibition-dominated), seed-batched.

The numbers quoted for the macroscopic theory (docs/rate.md) came from
``python scripts/balanced_probe.py 1000,2000,4000,8000,16000 16`` on an H100 (2026-11-23).
The gallery experiment ``rate-balanced`` supersedes it.
"""
import sys, time, json, os
import jax, jax.numpy as jnp, numpy as np
import equinox as eqx
sys.path.insert(0, "src")
import neurocircuits as nc
from neurocircuits.rate import RateNetwork, one_plus_tanh

def run(n, gamma, I0, n_seeds, T_tr=1000.0, T=4000.0, dt=1.0, tau=10.0, g=3.0, J0=1.0, seed0=0):
    keys = jax.random.split(jax.random.key(seed0), n_seeds)
    def build(k):
        return RateNetwork.random(k, n, g=g, J0=J0, f=0.8, gamma=gamma, tau=tau, bias=I0*np.sqrt(n))
    nets = eqx.filter_vmap(build)(keys)
    s = nets.coupling.signs[0]
    def obs(u, t):
        r = one_plus_tanh(u)
        dphi = 1 - jnp.tanh(u)**2
        return {"h": J0/jnp.sqrt(n)*jnp.sum(s*r), "m": jnp.mean(r), "K": J0/jnp.sqrt(n)*jnp.sum(s*dphi), "gain": jnp.mean(dphi)}
    u0 = jax.random.normal(jax.random.key(99), (n_seeds, n))
    n_steps = int((T_tr+T)/dt)//10*10
    tr = nc.simulate(nets, u0, dt=dt, n_steps=n_steps, key=jax.random.split(jax.random.key(7), n_seeds),
                     record=nc.Record(every=10, fn=obs), batch=nc.Batch(model=True), progress=False)
    skip = int(T_tr/dt)//10
    ys = {k: np.asarray(v)[:, skip:] for k, v in tr.ys.items()}
    return {"h_std": ys["h"].std(1).tolist(), "h_mean": ys["h"].mean(1).tolist(), "m": ys["m"].mean(1).tolist(),
            "K_mean": ys["K"].mean(1).tolist(), "K_std": ys["K"].std(1).tolist(), "gain": ys["gain"].mean(1).tolist()}

out = {}
sizes = [int(x) for x in sys.argv[1].split(",")]
n_seeds = int(sys.argv[2])
for n in sizes:
    for name, gamma, I0 in [("crit", 4.0, 0.0), ("inh", 5.0, 0.2)]:
        t = time.time()
        seeds = n_seeds if n <= 8000 else max(4, n_seeds // 2)
        r = run(n, gamma, I0, seeds)
        out[f"{name}_{n}"] = r
        print(f"{name} N={n}: h_std {np.mean(r['h_std']):.3f} +- {np.std(r['h_std'])/np.sqrt(len(r['h_std'])):.3f}  median {np.median(r['h_std']):.3f} h_mean rms {np.sqrt(np.mean(np.square(r['h_mean']))):.3f}  m {np.mean(r['m']):.3f}  K {np.mean(r['K_mean']):.2f}+-{np.std(r['K_mean']):.2f} ({time.time()-t:.1f}s)", flush=True)
json.dump(out, open(os.environ.get("OUT", "/tmp") + "/balanced_probe.json", "w"))
