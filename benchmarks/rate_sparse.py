"""Sparse rate-network step time at N = 10^6, K = 1000: the library vs a plain-JAX gather vs the
memory floor, and the construction time of the connectivity.

The network is the balanced E/I network with fixed in-degree (Brunel-style): every neuron receives
K synapses from uniformly drawn presynaptic neurons, stored as an (N, K) int32 index array, with one
weight per *presynaptic* neuron (J for excitatory, -g J for inhibitory; O(N) memory). Per step,
``[J r]_i = sum_k (w * r)[idx_ik]`` reads the index array once: N K x 4 bytes. The presynaptic
vector (4 MB at N = 10^6) stays in the L2 cache, so the HBM floor of the step is the index stream,
N K x 4 B over the *measured* copy bandwidth. Float32 throughout.

    python benchmarks/rate_sparse.py            # GPU: N = 10^6, K = 1000 (and N = 10^5)
    python benchmarks/rate_sparse.py --quick    # small CPU sanity run

Writes benchmarks/results/rate_sparse_<device>.json and prints a table last.
"""

from __future__ import annotations

import argparse
import datetime as dt_
import functools
import json
import platform
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from rate_dense import _median_time, copy_bandwidth  # noqa: E402

import neurocircuits as nc  # noqa: E402

DT, TAU = 0.1, 1.0


def reference_loop():
    """Plain JAX: Euler on tau du/dt = -u + J phi(u) + I with the same gather, one lax.scan."""

    @functools.partial(jax.jit, static_argnums=4)
    def run(idx, w_pre, bias, u, n_steps):
        def body(u, _):
            r = 1.0 + jnp.tanh(u)
            rec = jnp.sum((w_pre * r)[idx], axis=-1)
            return u + (DT / TAU) * (-u + rec + bias), None

        return jax.lax.scan(body, u, None, length=n_steps)[0]

    return run


def bench(n, k, n_steps, *, repeats):
    key = jax.random.key(n)
    J = 1.0 / np.sqrt(k)
    w_pre = J * nc.connectivity.ei_signs(n, f=0.8, gamma=5.0)   # inhibition-dominated: -5 J
    fn = jax.jit(functools.partial(nc.connectivity.fixed_in_degree, n_post=n, n_pre=n, k=k,
                                   allow_autapses=False))
    coupling = fn(jax.random.key(0), weight=w_pre)          # compile + first build
    jax.block_until_ready(coupling.indices)
    t0 = time.perf_counter()
    coupling = fn(jax.random.key(1), weight=w_pre)
    jax.block_until_ready(coupling.indices)
    build = time.perf_counter() - t0
    bias = 0.5 * np.sqrt(k)                                 # external drive keeps it active
    net = nc.rate.RateNetwork(coupling, tau=TAU, bias=bias, integrator=nc.Euler())
    u0 = 0.1 * jax.random.normal(key, (n,), jnp.float32)

    def lib(u):
        return nc.simulate(net, u, dt=DT, n_steps=n_steps, key=jax.random.key(3),
                           chunk_steps=n_steps, progress=False, record=None).final_state

    ref = reference_loop()
    t_lib = _median_time(lib, u0, repeats=repeats) / n_steps
    t_ref = _median_time(lambda u: ref(coupling.indices, w_pre, bias, u, n_steps), u0,
                         repeats=repeats) / n_steps
    u_lib, u_ref = lib(u0), ref(coupling.indices, w_pre, bias, u0, n_steps)
    rate = float(jnp.mean(1.0 + jnp.tanh(u_lib)))
    agree = float(jnp.max(jnp.abs(u_lib - u_ref)))
    return t_lib, t_ref, build, rate, agree


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true", help="small sizes (CPU sanity run)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = p.parse_args()
    dev = jax.devices()[0]
    cases = [(20_000, 100, 50)] if args.quick else [(100_000, 1000, 200), (1_000_000, 1000, 100)]
    bw = copy_bandwidth(2**26 if args.quick else 2**31)
    rows = []
    for n, k, n_steps in cases:
        t_lib, t_ref, build, rate, agree = bench(n, k, n_steps, repeats=3)
        floor = n * k * 4 / bw
        rows.append({"N": n, "K": k, "n_steps": n_steps, "construction_s": build,
                     "library_ms_per_step": t_lib * 1e3, "reference_ms_per_step": t_ref * 1e3,
                     "floor_ms_per_step": floor * 1e3, "library_over_floor": t_lib / floor,
                     "library_over_reference": t_lib / t_ref,
                     "index_bytes": n * k * 4, "achieved_index_TBps": n * k * 4 / t_lib / 1e12,
                     "mean_rate": rate, "max_abs_diff_vs_reference": agree})
        print(f"N={n:8d} K={k}: lib {t_lib*1e3:.3f} ms  ref {t_ref*1e3:.3f} ms  floor "
              f"{floor*1e3:.3f} ms  build {build:.2f} s", flush=True)

    result = {
        "benchmark": "rate_sparse",
        "date": dt_.datetime.now(dt_.UTC).isoformat(timespec="seconds"),
        "device": f"{dev.platform}: {dev.device_kind}",
        "versions": {"jax": jax.__version__, "neurocircuits": nc.__version__,
                     "python": platform.python_version(), "numpy": np.__version__},
        "precision": "float32",
        "network": "fixed in-degree K, no autapses, weights J = 1/sqrt(K) (E), -5 J (I), f = 0.8, "
                   "phi = 1 + tanh, bias 0.5 sqrt(K), Euler dt = 0.1 tau",
        "floor": "N K x 4 B (int32 indices) / measured copy bandwidth; the presynaptic vector "
                 "is L2-resident",
        "measured_copy_bandwidth_TBps": bw / 1e12,
        "peer": "plain-JAX lax.scan with the same gather (same indices, same precision)",
        "target": "library_over_floor <= 2 at N = 10^6, K = 1000",
        "rows": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = dev.device_kind.replace(" ", "_").lower() + ("_quick" if args.quick else "")
    path = out / f"rate_sparse_{tag}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{result['device']}  copy {bw/1e12:.2f} TB/s  (float32)")
    print(f"{'N':>8} {'K':>5} {'lib ms':>8} {'ref ms':>8} {'floor ms':>8} {'lib/floor':>9} "
          f"{'lib/ref':>8} {'build s':>8}")
    for r in rows:
        print(f"{r['N']:>8} {r['K']:>5} {r['library_ms_per_step']:>8.3f} "
              f"{r['reference_ms_per_step']:>8.3f} {r['floor_ms_per_step']:>8.3f} "
              f"{r['library_over_floor']:>9.2f} {r['library_over_reference']:>8.3f} "
              f"{r['construction_s']:>8.2f}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
