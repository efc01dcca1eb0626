"""Benchmark: kinetic-Ising forward mean-field methods and the exact-ML inverse.

Measures (median of repeats, after compilation):

* the time of one step of every forward method of :mod:`neurocircuits.ising.meanfield` at
  N = 512 and 2048 (``--quick``: 64 and 128), float32 with ``precision="highest"``;
* one iteration, and the whole fit, of the exact maximum-likelihood inverse
  (:func:`neurocircuits.ising.inverse.fit_ml`) for N = 1000 spins and 10^6 samples
  (``--quick``: N = 100, 2 * 10^4 samples);

and for each the floor (dominant flops / peak fp32 rate, or bytes that must move / memory
bandwidth, whichever is larger; peak figures from the device's datasheet when it is known,
otherwise measured here with a large matmul and a large copy), the ratio measured / floor, and
the ratio against a straightforward NumPy implementation of the same equations
(``benchmarks/ising_numpy_peer.py``, run on this machine's CPU). Results are printed as a table
and written to ``ising_forward_<device>[_quick].json`` and
``ising_ml_inverse_<device>[_quick].json`` in the
results folder (``--out DIR``, default ``benchmarks/results``).

Usage::

    python benchmarks/ising_forward.py            # the GPU run (N = 512, 2048; ML 1000 x 1e6)
    python benchmarks/ising_forward.py --quick    # small sizes, runs on a CPU in a minute
    python benchmarks/ising_forward.py --out DIR  # write the JSON files to DIR
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ising_numpy_peer as peer  # noqa: E402

from neurocircuits.ising import KineticIsing, sample  # noqa: E402
from neurocircuits.ising import inverse as inv  # noqa: E402
from neurocircuits.ising import meanfield as mf  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"

#: datasheet fp32 (non-tensor) peak FLOP/s and memory bandwidth in bytes/s
DATASHEET = {
    "H100 80GB HBM3": (67e12, 3.35e12),  # SXM
    "NVIDIA H100 80GB HBM3": (67e12, 3.35e12),
    "H100 PCIe": (51e12, 2.0e12),
    "NVIDIA H100 PCIe": (51e12, 2.0e12),
    "NVIDIA H200": (67e12, 4.8e12),
    "H200": (67e12, 4.8e12),
    "NVIDIA A100-SXM4-80GB": (19.5e12, 2.0e12),
}


def _median_time(fn, repeats):
    fn()  # compile / warm up
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def device_peaks():
    """(flops/s, bytes/s, source) for the default JAX device."""
    d = jax.devices()[0]
    kind = d.device_kind
    for k, v in DATASHEET.items():
        if k.lower() in kind.lower():
            return v[0], v[1], f"datasheet ({k})"
    n = 2048 if d.platform == "cpu" else 8192
    a = jnp.ones((n, n), jnp.float32)
    mm = jax.jit(lambda x: jnp.matmul(x, x, precision="highest"))
    t = _median_time(lambda: mm(a).block_until_ready(), 3)
    flops = 2 * n**3 / t
    b = jnp.ones((2**26 if d.platform != "cpu" else 2**24,), jnp.float32)
    cp = jax.jit(lambda x: x * 1.0001)
    t = _median_time(lambda: cp(b).block_until_ready(), 5)
    bw = 2 * b.nbytes / t
    return flops, bw, "measured here (matmul, scaled copy)"


def forward_cost(name, n, n_quad=16, newton_iters=6):
    """(flops, bytes) that a step must at least do/move (float32)."""
    n2, n3 = n * n, n**3
    mat = {"nmf": 0, "tap": 2 * n3, "plefka_t_o1": 2 * n3, "plefka_t_o2": 4 * n3,
           "plefka_t1_o1": 4 * n3, "plefka2_t_o2": 6 * n3}[name]
    elem = {"nmf": 5 * n2, "tap": 12 * n2, "plefka_t_o1": 3 * n2, "plefka_t_o2": 10 * n2,
            # tanh pairs on the quadrature grid, counted as one op per tanh + 6 per node
            "plefka_t1_o1": n2 * n_quad**2 * 8,
            # 4 N^2 scalar Newton solves of ~10 ops per iteration
            "plefka2_t_o2": 4 * n2 * newton_iters * 10}[name]
    # bytes: read J, C_p, D_p; write C, D (N^2 floats each)
    nbytes = 4 * n2 * {"nmf": 3, "tap": 3, "plefka_t_o1": 4, "plefka_t_o2": 4,
                       "plefka_t1_o1": 4, "plefka2_t_o2": 5}[name]
    return mat + elem, nbytes


def inputs(n, key):
    """An SK network at the maximally fluctuating point and realistic moments at t - 1."""
    model = KineticIsing.sk(key, n, J0=1.0, dJ=0.1, H0=0.5, beta=1.1108)
    tr = mf.run("plefka_t_o2", model.H, model.J, model.ones(), n_steps=4)
    return model.H, model.J, tr.m[-1], tr.C[-1], tr.D[-1]


def bench_forward(sizes, repeats, peaks, numpy_sizes):
    rows = []
    for n in sizes:
        args = inputs(n, jax.random.key(n))
        args_np = [np.asarray(a) for a in args]
        for name, fn in mf.METHODS.items():
            step = jax.jit(fn)
            t = _median_time(lambda step=step, args=args: jax.block_until_ready(step(*args)),
                             repeats)
            flops, nbytes = forward_cost(name, n)
            floor = max(flops / peaks[0], nbytes / peaks[1])
            row = {"name": f"forward/{name}", "N": n, "time_s": t, "floor_s": floor,
                   "floor_kind": "flops" if flops / peaks[0] >= nbytes / peaks[1] else "bytes",
                   "flops": flops, "bytes": nbytes, "ratio_to_floor": t / floor}
            if n in numpy_sizes:
                # NumPy needs no warm-up: one timed call, whose output is also the comparison
                t0 = time.perf_counter()
                ref = peer.METHODS[name](*args_np)
                tn = time.perf_counter() - t0
                out = step(*args)
                row["numpy_time_s"] = tn
                row["speedup_vs_numpy"] = tn / t
                row["max_abs_diff_vs_numpy"] = float(max(
                    np.abs(np.asarray(out.m) - ref[0]).max(),
                    np.abs(np.asarray(out.C) - ref[1]).max(),
                    np.abs(np.asarray(out.D) - ref[2]).max()))
            rows.append(row)
            print(_fmt(row), flush=True)
    return rows


def bench_ml(n, n_samples, peaks, numpy_iters):
    n_traj = max(1, n_samples // 1000)
    T = n_samples // n_traj
    model = KineticIsing.sk(jax.random.key(7), n, J0=1.0, dJ=0.5, H0=0.5, beta=1.0)
    spins = sample(model, model.ones(), n_steps=T, key=jax.random.key(8), n_trajectories=n_traj)
    X, Y = inv.transitions(spins)
    X, Y = jax.block_until_ready((X, Y))
    S = X.shape[0]
    t0 = time.perf_counter()
    fit = inv.fit_ml(X=X, Y=Y)
    jax.block_until_ready(fit.J)
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    fit = inv.fit_ml(X=X, Y=Y)
    jax.block_until_ready(fit.J)
    t_fit = time.perf_counter() - t0
    iters = int(fit.n_iter)
    # one iteration = 2 (S x N x N) matmuls (+ the restart's extra gradient when it happens);
    # the setup (P = X^T X / S) is one more (S x N x N) matmul
    flops_iter = 4.0 * S * n * n
    flops_total = flops_iter * iters + 2.0 * S * n * n
    floor_total = max(flops_total / peaks[0], (X.nbytes + Y.nbytes) * (iters + 1) / peaks[1])
    t_iter = t_fit / (iters + 0.5)
    # NumPy peer: the same preconditioned step, float32, on this machine's CPU
    Xf = np.asarray(X, np.float32)
    Yf = np.asarray(Y, np.float32)
    Xa = np.concatenate([np.ones((S, 1), np.float32), Xf], 1)
    t0 = time.perf_counter()
    Minv = np.linalg.inv(Xa.T @ Xa / S).astype(np.float32)
    t_setup_np = time.perf_counter() - t0
    theta = np.zeros((n, n + 1), np.float32)
    ts = []
    for _ in range(numpy_iters):
        t0 = time.perf_counter()
        theta = peer.ml_iteration(theta, Xf, Yf, Minv)
        ts.append(time.perf_counter() - t0)
    t_iter_np = float(np.median(ts))
    row = {
        "name": "inverse/fit_ml", "N": n, "samples": S, "iterations": iters,
        "converged": bool(fit.converged), "time_s": t_fit, "time_first_call_s": t_first,
        "time_per_iteration_s": t_iter, "floor_s": floor_total,
        "floor_per_iteration_s": max(flops_iter / peaks[0],
                                     (X.nbytes + Y.nbytes) / peaks[1]),
        "ratio_to_floor": t_fit / floor_total,
        "numpy_time_per_iteration_s": t_iter_np, "numpy_setup_s": t_setup_np,
        "numpy_time_estimate_s": t_setup_np + iters * t_iter_np,
        "speedup_vs_numpy": (t_setup_np + iters * t_iter_np) / t_fit,
        "mse_J": inv.mse(fit.J, model.J), "mse_H": inv.mse(fit.H, model.H),
    }
    print(_fmt(row), flush=True)
    return [row]


def _fmt(r):
    s = (f"{r['name']:<24} N={r['N']:<5} t={r['time_s'] * 1e3:10.3f} ms  "
         f"floor={r['floor_s'] * 1e3:9.3f} ms  x{r['ratio_to_floor']:8.1f} floor")
    if "speedup_vs_numpy" in r:
        s += f"  {r['speedup_vs_numpy']:8.1f}x vs NumPy"
    return s


def environment(peaks):
    import neurocircuits

    d = jax.devices()[0]
    return {
        "device": f"{d.platform}: {d.device_kind}", "n_devices": len(jax.devices()),
        "peak_flops": peaks[0], "bandwidth_bytes_s": peaks[1], "peaks_source": peaks[2],
        "jax": jax.__version__, "numpy": np.__version__,
        "neurocircuits": neurocircuits.__version__, "python": platform.python_version(),
        "platform": platform.platform(), "cpu_for_numpy": platform.processor() or "unknown",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "dtype": "float32", "matmul_precision": "highest",
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (CPU, ~1 minute)")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--out", default=str(RESULTS),
                    help="folder for the result JSON files (default benchmarks/results)")
    args = ap.parse_args(argv)
    if args.quick:
        sizes, numpy_sizes, ml = (64, 128), (64, 128), (100, 20_000)
        repeats = args.repeats or 5
        numpy_iters = 3
    else:
        sizes, numpy_sizes, ml = (512, 2048), (512, 2048), (1000, 1_000_000)
        repeats = args.repeats or 20
        numpy_iters = 2
    peaks = device_peaks()
    env = environment(peaks)
    print(f"# device {env['device']}; peak {peaks[0] / 1e9:.1f} GFLOP/s, "
          f"{peaks[1] / 1e9:.0f} GB/s ({peaks[2]})")
    def write(name, rows):  # after each part, so that an interrupted run keeps what it measured
        if args.no_write:
            return
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        tag = jax.devices()[0].device_kind.replace(" ", "_").lower()
        path = out / f"{name}_{tag}{'_quick' if args.quick else ''}.json"
        path.write_text(json.dumps({"benchmark": name, "quick": args.quick, **env,
                                    "results": rows}, indent=2) + "\n")
        print(f"wrote {path}", flush=True)

    write("ising_forward", bench_forward(sizes, repeats, peaks, numpy_sizes))
    write("ising_ml_inverse", bench_ml(*ml, peaks, numpy_iters))


if __name__ == "__main__":
    main()
