"""Probe of the macroscopic field std(h) vs N (critical and inhibition-dominated), seed-batched.

The numbers quoted for the macroscopic theory (docs/rate.md) came from
``python scripts/balanced_probe.py 1000,2000,4000,8000,16000 16`` on an H100 (2026-11-23).
The gallery experiment ``rate-balanced`` supersedes it.

``python scripts/balanced_probe.py open-loop N SEEDS V1,V2`` measures the ingredient the theory
of the loop gain rests on: networks without the mean part (J0 = 0) at constant inputs v, the
slope of the time-averaged A(v) = (1/sqrt N) sum_j s_j phi(u_j) over networks against the local
gain (1/sqrt N) sum_j s_j phi'(u_j) (docs/rate.md: s.d. ~2 vs 0.6 at N = 1000).
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

def open_loop(n, n_seeds, vs, T=3000.0, g=3.0, seed0=0):
    n_exc = round(0.8 * n)
    s = jnp.where(jnp.arange(n) < n_exc, 1.0, -4.0)
    keys = jnp.repeat(jax.random.split(jax.random.key(seed0), n_seeds), len(vs), axis=0)
    bias = jnp.tile(jnp.asarray(vs, jnp.float32), n_seeds)
    nets = eqx.filter_vmap(lambda k, b: RateNetwork.random(k, n, g=g, J0=0.0, tau=10.0, bias=b))(keys, bias)
    obs = lambda u, t: {"A": jnp.sum(s * one_plus_tanh(u)) / jnp.sqrt(n), "K": jnp.sum(s * (1 - jnp.tanh(u)**2)) / jnp.sqrt(n)}
    tr = nc.simulate(nets, jax.random.normal(jax.random.key(99), (len(bias), n)), dt=1.0, n_steps=int(1000 + T),
                     key=jax.random.split(jax.random.key(7), len(bias)), record=nc.Record(every=10, fn=obs),
                     batch=nc.Batch(model=True), progress=False)
    A = np.asarray(tr.ys["A"])[:, 100:].mean(1).reshape(n_seeds, len(vs))
    K = np.asarray(tr.ys["K"])[:, 100:].mean(1).reshape(n_seeds, len(vs))
    slope = np.diff(A, axis=1) / np.diff(vs)
    print(f"open loop N={n}: slope of A(v): robust s.d. {np.median(np.abs(slope)) / 0.6745:.2f}, r.m.s. "
          f"{np.sqrt(np.mean(slope**2)):.2f}; local gain r.m.s. {np.sqrt(np.mean(K**2)):.2f}", flush=True)
    return {"slope": slope.tolist(), "local": K.tolist(), "A": A.tolist()}


out = {}
if sys.argv[1] == "open-loop":
    n, seeds, vs = int(sys.argv[2]), int(sys.argv[3]), [float(x) for x in sys.argv[4].split(",")]
    out["open_loop"] = open_loop(n, seeds, vs)
    json.dump(out, open(os.environ.get("OUT", "/tmp") + "/balanced_probe_open_loop.json", "w"))
    sys.exit(0)
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
