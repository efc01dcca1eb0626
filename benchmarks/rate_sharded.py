"""One rate network over several GPUs: strong and weak scaling of simulate(..., sharding=...).

Neurons are split in contiguous blocks over D devices; each step every device multiplies its
rows of J by the all-gathered activity. Per step and device:
  * memory floor: N^2 * 4 / D bytes of J over the measured copy bandwidth;
  * communication: the all-gather of phi(u), N * 4 * (D - 1) / D bytes received per device,
    over the NVLink bandwidth (H200/H100 NVLink 4: 450 GB/s per direction; an input here, not
    a measurement).

Strong scaling: N fixed, D = 1, 2, 4, 8 (efficiency t_1 / (D t_D)). Weak scaling: N^2 / D fixed
(N = N_1 sqrt(D)), efficiency t_1 / t_D. Also the sparse fixed in-degree network.

    python benchmarks/rate_sharded.py            # all GPUs of the host
    XLA_FLAGS=--xla_force_host_platform_device_count=4 python benchmarks/rate_sharded.py --quick

Writes benchmarks/results/rate_sharded_<device>_x<D>.json and prints a table last.
"""

from __future__ import annotations

import argparse
import datetime as dt_
import json
import platform
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from rate_dense import _median_time, copy_bandwidth  # noqa: E402

import neurocircuits as nc  # noqa: E402
from neurocircuits._core import connectivity as conn  # noqa: E402

NVLINK_BPS = 450e9  # per direction, NVLink 4 (datasheet figure; not measured here)


def step_time(net, n_steps, devices):
    sharding = nc.NeuronSharding(devices=tuple(devices)) if len(devices) > 1 else None
    u0 = jax.random.normal(jax.random.key(1), (net.n,), jnp.float32)
    kw = dict(dt=0.1, n_steps=n_steps, key=jax.random.key(2), chunk_steps=n_steps,
              progress=False, sharding=sharding)
    if sharding is None:
        net = jax.device_put(net, devices[0])
        u0 = jax.device_put(u0, devices[0])
    return _median_time(lambda: nc.simulate(net, u0, **kw).final_state) / n_steps


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = p.parse_args()
    devices = jax.devices()
    counts = [d for d in (1, 2, 4, 8) if d <= len(devices)]
    n_strong = 1024 if args.quick else 65536
    n_weak1 = 512 if args.quick else 32768
    n_sparse, k_sparse = (4096, 32) if args.quick else (1_000_000, 1000)
    steps = 20 if args.quick else 100
    bw = copy_bandwidth(2**24 if args.quick else 2**31)
    rows = []

    def record(kind, n, d, t, bytes_j):
        comm = n * 4 * (d - 1) / d
        rows.append({
            "kind": kind, "N": n, "devices": d, "ms_per_step": t * 1e3,
            "memory_floor_ms": bytes_j / d / bw * 1e3,
            "allgather_bytes_per_device": comm,
            "allgather_floor_ms_nvlink": comm / NVLINK_BPS * 1e3,
        })
        print(f"{kind:7s} N={n:8d} D={d}: {t*1e3:9.3f} ms/step", flush=True)

    for d in counts:
        net = nc.rate.RateNetwork.random(jax.random.key(0), n_strong, g=1.5, phi=nc.rate.tanh,
                                         tau=1.0)
        record("strong", n_strong, d, step_time(net, steps, devices[:d]), n_strong**2 * 4)
        del net
    for d in counts:
        n = int(round(n_weak1 * np.sqrt(d) / 64)) * 64
        n -= n % d
        net = nc.rate.RateNetwork.random(jax.random.key(0), n, g=1.5, phi=nc.rate.tanh, tau=1.0)
        record("weak", n, d, step_time(net, steps, devices[:d]), n**2 * 4)
        del net
    for d in counts:
        coupling = conn.fixed_in_degree(jax.random.key(3), n_sparse, n_sparse, k_sparse,
                                        weight=1.5 / np.sqrt(k_sparse))
        net = nc.rate.RateNetwork(coupling, phi=nc.rate.tanh, tau=1.0)
        record("sparse", n_sparse, d, step_time(net, steps, devices[:d]),
               n_sparse * k_sparse * 8)  # index (4 B) + gathered value (4 B) per synapse
        del net

    for kind in ("strong", "weak", "sparse"):
        base = next(r for r in rows if r["kind"] == kind and r["devices"] == 1)
        for r in rows:
            if r["kind"] == kind:
                ideal = base["ms_per_step"] / (r["devices"] if kind != "weak" else 1)
                r["parallel_efficiency"] = ideal / r["ms_per_step"]

    dev = devices[0]
    result = {
        "benchmark": "rate_sharded",
        "date": dt_.datetime.now(dt_.UTC).isoformat(timespec="seconds"),
        "device": f"{dev.platform}: {dev.device_kind} x{len(devices)}",
        "versions": {"jax": jax.__version__, "neurocircuits": nc.__version__,
                     "python": platform.python_version()},
        "precision": "float32, matmul precision='highest'",
        "measured_copy_bandwidth_TBps": bw / 1e12,
        "nvlink_bandwidth_assumed_GBps": NVLINK_BPS / 1e9,
        "rows": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = dev.device_kind.replace(" ", "_").lower() + f"_x{len(devices)}"
    path = out / f"rate_sharded_{tag}{'_quick' if args.quick else ''}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{result['device']}  copy {bw/1e12:.2f} TB/s")
    print(f"{'kind':>7} {'N':>8} {'D':>2} {'ms/step':>9} {'mem floor':>9} {'comm ms':>8} {'eff':>6}")
    for r in rows:
        print(f"{r['kind']:>7} {r['N']:>8} {r['devices']:>2} {r['ms_per_step']:>9.3f} "
              f"{r['memory_floor_ms']:>9.3f} {r['allgather_floor_ms_nvlink']:>8.4f} "
              f"{r['parallel_efficiency']:>6.2f}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
