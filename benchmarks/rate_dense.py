"""Dense rate-network step time: the library's simulate() vs a plain-JAX lax.scan vs the floor.

Per step a dense network reads J once: N^2 x 4 bytes (float32). The memory floor is that over the
device's *measured* copy bandwidth (bytes read + written by a large device-to-device copy). For a
batch of B trials sharing J, the step is a (N x N) @ (N x B) product: its compute floor is
2 N^2 B flops over the *measured* float32 matmul rate at the same precision.

Precision: float32 everywhere, matmuls with precision="highest" (no TF32), unless --precision
default is given (then TF32 where the GPU has it).

    python benchmarks/rate_dense.py               # GPU sizes N = 4096 ... 32768, B = 1 and 128
    python benchmarks/rate_dense.py --quick       # small CPU sanity run

Writes benchmarks/results/rate_dense_<device>.json and prints a table last.
"""

from __future__ import annotations

import argparse
import datetime as dt_
import functools
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import neurocircuits as nc  # noqa: E402

DT, TAU = 0.1, 1.0


def _median_time(fn, *args, repeats=5):
    jax.block_until_ready(fn(*args))  # warm-up: compile
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def copy_bandwidth(n_bytes=2**30):
    """Bytes read + written per second by a large device-to-device copy (x * 1 -> new buffer)."""
    x = jax.random.normal(jax.random.key(0), (n_bytes // 4,), jnp.float32)
    f = jax.jit(lambda a: a * 1.0001)
    t = _median_time(f, x, repeats=10)
    return 2 * n_bytes / t


def matmul_rate(n, precision):
    a = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(2), (n, n), jnp.float32)
    f = jax.jit(lambda x, y: jnp.matmul(x, y, precision=precision))
    t = _median_time(f, a, b, repeats=5)
    return 2 * n**3 / t


def reference_loop(precision):
    """The plain-JAX reference: Euler on tau du/dt = -u + g z tanh(u), one lax.scan."""

    @functools.partial(jax.jit, static_argnums=3)
    def run(z, g, u, n_steps):
        def body(u, _):
            r = jnp.tanh(u)
            rec = jnp.matmul(z, r, precision=precision) if u.ndim == 1 else \
                jnp.matmul(r, z.T, precision=precision)
            return u + (DT / TAU) * (-u + g * rec), None

        return jax.lax.scan(body, u, None, length=n_steps)[0]

    return run


def bench(n, batch, n_steps, precision, chunk_steps=None):
    key = jax.random.key(n)
    net = nc.rate.RateNetwork.random(key, n, g=1.5, phi=nc.rate.tanh, tau=TAU,
                                     precision=precision)
    shape = (batch, n) if batch > 1 else (n,)
    u0 = jax.random.normal(jax.random.key(7), shape, jnp.float32)
    keys = jax.random.split(jax.random.key(3), batch) if batch > 1 else jax.random.key(3)
    kw = dict(dt=DT, n_steps=n_steps, key=keys, chunk_steps=chunk_steps or n_steps,
              progress=False)
    if batch > 1:
        kw["batch"] = nc.Batch(model=None)

    def lib(u):
        return nc.simulate(net, u, **kw).final_state

    ref = reference_loop(precision)
    z, g = net.coupling.z, net.coupling.g
    t_lib = _median_time(lib, u0) / n_steps
    t_ref = _median_time(lambda u: ref(z, g, u, n_steps), u0) / n_steps
    return t_lib, t_ref


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true", help="small sizes (CPU sanity run)")
    p.add_argument("--precision", default="highest", choices=["highest", "default"])
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = p.parse_args()

    dev = jax.devices()[0]
    if args.quick:
        sizes, batches, steps = [256, 512], [1, 16], {256: 200, 512: 100}
    else:
        sizes, batches = [4096, 8192, 16384, 32768], [1, 128]
        steps = {4096: 2000, 8192: 1000, 16384: 400, 32768: 200}
    bw = copy_bandwidth(2**26 if args.quick else 2**31)
    mm = matmul_rate(1024 if args.quick else 8192, args.precision)
    rows = []
    for n in sizes:
        for b in batches:
            n_steps = steps[n] if b == 1 else max(20, steps[n] // 4)
            t_lib, t_ref = bench(n, b, n_steps, args.precision)
            mem_floor = (n * n * 4 + 2 * b * n * 4) / bw
            flop_floor = 2 * n * n * b / mm
            floor = max(mem_floor, flop_floor)
            rows.append({
                "N": n, "B": b, "n_steps": n_steps,
                "library_ms_per_step": t_lib * 1e3, "reference_ms_per_step": t_ref * 1e3,
                "floor_ms_per_step": floor * 1e3,
                "floor_kind": "memory" if mem_floor >= flop_floor else "compute",
                "library_over_reference": t_lib / t_ref, "library_over_floor": t_lib / floor,
                "reference_over_floor": t_ref / floor,
                "achieved_TBps": n * n * 4 / t_lib / 1e12,
                "achieved_TFLOPs": 2 * n * n * b / t_lib / 1e12,
            })
            print(f"N={n:6d} B={b:4d}: lib {t_lib*1e3:8.3f} ms  ref {t_ref*1e3:8.3f} ms  "
                  f"floor {floor*1e3:8.3f} ms", flush=True)

    result = {
        "benchmark": "rate_dense",
        "date": dt_.datetime.now(dt_.UTC).isoformat(timespec="seconds"),
        "device": f"{dev.platform}: {dev.device_kind}",
        "versions": {"jax": jax.__version__, "neurocircuits": nc.__version__,
                     "python": platform.python_version(), "numpy": np.__version__},
        "precision": f"float32, matmul precision={args.precision!r}",
        "integrator": "library: exponential Euler; reference: Euler (same cost per step)",
        "measured_copy_bandwidth_TBps": bw / 1e12,
        "measured_matmul_TFLOPs": mm / 1e12,
        "peer": "plain-JAX lax.scan reference loop (same network, same precision)",
        "rows": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = dev.device_kind.replace(" ", "_").lower() + ("_quick" if args.quick else "")
    path = out / f"rate_dense_{tag}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")

    print(f"\n{result['device']}  copy {bw/1e12:.2f} TB/s  matmul {mm/1e12:.1f} TFLOP/s  "
          f"({result['precision']})")
    print(f"{'N':>6} {'B':>4} {'lib ms':>9} {'ref ms':>9} {'floor ms':>9} {'lib/ref':>8} "
          f"{'lib/floor':>9} {'floor':>7}")
    for r in rows:
        print(f"{r['N']:>6} {r['B']:>4} {r['library_ms_per_step']:>9.3f} "
              f"{r['reference_ms_per_step']:>9.3f} {r['floor_ms_per_step']:>9.3f} "
              f"{r['library_over_reference']:>8.3f} {r['library_over_floor']:>9.3f} "
              f"{r['floor_kind']:>7}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
