"""Matmul precision on a chaotic rate network: speed, and what it does to the dynamics.

JAX on NVIDIA GPUs runs float32 matmuls in TF32 (10-bit mantissa) unless asked for "highest". This
script measures, on the SCS network (phi = tanh, J = g z, g = 2, chaotic):

1. Speed: ms per step and achieved TFLOP/s of the batched step (B trials sharing J) in each
   precision, against the *measured* matmul rate of that precision and the HBM floor.
2. Trajectories: the rms distance between a "highest" (float32) run and a TF32 run from the same
   initial state, next to the distance between two float32 runs whose initial states differ by
   1e-6 (float32 round-off) and by 1e-3 (TF32 round-off). Chaos amplifies any difference at the
   largest Lyapunov exponent, so a TF32 trajectory separates from the float32 one after a finite
   time; the script reports that time (distance reaching half its saturation sqrt(2 Delta0)).
3. Statistics: Delta0 and the autocorrelation half-time in each precision against the DMFT; what
   matters for most uses is that these do not change.

    python benchmarks/rate_precision.py           # GPU: N = 8192, B = 128 and 1024
    python benchmarks/rate_precision.py --quick   # small CPU sanity run

Writes benchmarks/results/rate_precision_<device>.json and prints a table last.
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

from rate_dense import bench, copy_bandwidth, matmul_rate  # noqa: E402

import neurocircuits as nc  # noqa: E402
from neurocircuits.rate.theory import dmft_solve  # noqa: E402

G, TAU, DT = 2.0, 1.0, 0.1
PRECISIONS = ("highest", "default")


def trajectory(net, u0, n_steps, every, n_units):
    rec = nc.Record(every=every, fn=lambda u, t: u)
    tr = nc.simulate(net, u0, dt=DT, n_steps=n_steps, key=jax.random.key(0), record=rec,
                     chunk_steps=n_steps, progress=False)
    return np.asarray(tr.ys)


def half_time(lags, corr):
    c = corr / corr[0]
    below = np.nonzero(c <= 0.5)[0]
    if below.size == 0 or below[0] == 0:
        return float("nan")
    i = below[0]
    return float(lags[i - 1] + (c[i - 1] - 0.5) / (c[i - 1] - c[i]) * (lags[i] - lags[i - 1]))


def statistics(traces, dt_rec, n_lags):
    """Delta0 and the autocorrelation half-time (tau units) of traces (time, unit)."""
    t = traces.shape[0]
    size = 1 << int(np.ceil(np.log2(2 * t)))
    spec = np.fft.rfft(traces, n=size, axis=0)
    acf = np.fft.irfft(np.abs(spec) ** 2, n=size, axis=0)[:n_lags]
    acf = (acf / (t - np.arange(n_lags))[:, None]).mean(axis=1)
    return float(np.mean(traces**2)), half_time(np.arange(n_lags) * dt_rec, acf)


def separation_time(times, dist, saturation):
    above = np.nonzero(dist >= 0.5 * saturation)[0]
    return float(times[above[0]]) if above.size else float("nan")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true", help="small sizes (CPU sanity run)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = p.parse_args()
    dev = jax.devices()[0]
    q = args.quick
    n = 512 if q else 8192
    batches = (16,) if q else (128, 1024)
    t_traj, t_stat = (60.0, 200.0) if q else (400.0, 1000.0)

    bw = copy_bandwidth(2**26 if q else 2**31)
    speed, divergence, stats = [], {}, {}
    result = {
        "benchmark": "rate_precision",
        "date": dt_.datetime.now(dt_.UTC).isoformat(timespec="seconds"),
        "device": f"{dev.platform}: {dev.device_kind}",
        "versions": {"jax": jax.__version__, "neurocircuits": nc.__version__,
                     "python": platform.python_version(), "numpy": np.__version__},
        "network": f"SCS: phi = tanh, g = {G}, N = {n}, exponential Euler dt = {DT} tau",
        "precisions": {"highest": "float32 matmuls (no TF32)",
                       "default": "JAX default: TF32 tensor cores on NVIDIA GPUs (float32 on CPU)"},
        "measured_copy_bandwidth_TBps": bw / 1e12,
        "speed": speed,
        "divergence": divergence,
        "statistics": stats,
        "quick": q,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = dev.device_kind.replace(" ", "_").lower() + ("_quick" if q else "")
    path = out / f"rate_precision_{tag}.json"

    def write():  # after each part, so that an interrupted run keeps what it measured
        path.write_text(json.dumps(result, indent=2) + "\n")

    for prec in PRECISIONS:
        mm = matmul_rate(1024 if q else 8192, prec)
        for b in batches:
            n_steps = 50 if q else 200
            t_lib, t_ref = bench(n, b, n_steps, prec)
            mem_floor = (n * n * 4 + 2 * b * n * 4) / bw
            flop_floor = 2 * n * n * b / mm
            speed.append({"precision": prec, "N": n, "B": b, "ms_per_step": t_lib * 1e3,
                          "reference_ms_per_step": t_ref * 1e3,
                          "achieved_TFLOPs": 2 * n * n * b / t_lib / 1e12,
                          "measured_matmul_TFLOPs": mm / 1e12,
                          "fraction_of_matmul_peak": 2 * n * n * b / t_lib / mm,
                          "floor_ms_per_step": max(mem_floor, flop_floor) * 1e3,
                          "floor_kind": "memory" if mem_floor >= flop_floor else "compute",
                          "over_floor": t_lib / max(mem_floor, flop_floor)})
            print(f"{prec:8s} B={b:5d}: {t_lib*1e3:.3f} ms/step, "
                  f"{speed[-1]['achieved_TFLOPs']:.1f} TFLOP/s "
                  f"({speed[-1]['fraction_of_matmul_peak']:.2f} of measured peak)", flush=True)
            write()

    key = jax.random.key(42)
    nets = {prec: nc.rate.RateNetwork.random(key, n, g=G, phi=nc.rate.tanh, tau=TAU,
                                             precision=prec) for prec in PRECISIONS}
    u0 = jax.random.normal(jax.random.key(7), (n,), jnp.float32)
    xi = jax.random.normal(jax.random.key(8), (n,), jnp.float32)
    steps_traj, every = int(round(t_traj / DT)), 5
    ref = trajectory(nets["highest"], u0, steps_traj, every, n)
    runs = {"tf32_vs_highest": trajectory(nets["default"], u0, steps_traj, every, n),
            "highest_perturbed_1e-6": trajectory(nets["highest"], u0 + 1e-6 * xi, steps_traj,
                                                 every, n),
            "highest_perturbed_1e-3": trajectory(nets["highest"], u0 + 1e-3 * xi, steps_traj,
                                                 every, n)}
    times = (np.arange(ref.shape[0]) + 1) * every * DT
    theory = dmft_solve(G, nc.rate.tanh)
    saturation = float(np.sqrt(2 * theory.delta0))
    result["saturation_distance"] = saturation
    for name, tr in runs.items():
        d = np.sqrt(np.mean((tr - ref) ** 2, axis=1))
        early = (d > 0) & (d < 0.05 * saturation)
        slope = float(np.polyfit(times[early], np.log(d[early]), 1)[0]) if early.sum() > 5 \
            else float("nan")
        divergence[name] = {"distance_at": {f"{t:g}": float(d[np.argmin(np.abs(times - t))])
                                            for t in (1, 10, 20, 50, 100, 200, 400) if t <= t_traj},
                            "separation_time_tau": separation_time(times, d, saturation),
                            "initial_growth_rate_per_tau": slope}
        print(f"{name:24s} separation at {divergence[name]['separation_time_tau']:.1f} tau, "
              f"growth {slope:.3f}/tau", flush=True)
        write()

    steps_stat, n_units = int(round(t_stat / DT)), min(n, 512)
    transient = int(round(50.0 / DT)) // 2
    for prec, net in nets.items():
        rec = nc.Record(every=2, fn=lambda u, t: u[:n_units])
        tr = nc.simulate(net, u0, dt=DT, n_steps=steps_stat, key=jax.random.key(0), record=rec,
                         progress=False)
        traces = np.asarray(tr.ys)[transient:]
        d0, th = statistics(traces, 2 * DT, int(round(20.0 / (2 * DT))))
        stats[prec] = {"delta0": d0, "autocorr_half_time_tau": th}
    lags = np.arange(int(round(20.0 / (2 * DT)))) * 2 * DT
    th_theory = half_time(lags, np.asarray(dmft_solve(G, nc.rate.tanh, lags=lags).delta))
    stats["dmft"] = {"delta0": float(theory.delta0), "autocorr_half_time_tau": th_theory}
    for prec in PRECISIONS:
        s = stats[prec]
        s["delta0_rel_err_vs_dmft"] = abs(s["delta0"] - theory.delta0) / theory.delta0
        s["half_time_rel_err_vs_dmft"] = abs(s["autocorr_half_time_tau"] - th_theory) / th_theory

    write()
    print(f"\n{result['device']}  N = {n}, g = {G}")
    print(f"{'precision':<9} {'B':>5} {'ms/step':>8} {'TFLOP/s':>8} {'x peak':>7} {'x floor':>8}")
    for r in speed:
        print(f"{r['precision']:<9} {r['B']:>5} {r['ms_per_step']:>8.3f} "
              f"{r['achieved_TFLOPs']:>8.1f} {r['fraction_of_matmul_peak']:>7.2f} "
              f"{r['over_floor']:>8.2f}")
    for name, d in divergence.items():
        print(f"{name:<24} separates after {d['separation_time_tau']:6.1f} tau")
    for prec in (*PRECISIONS, "dmft"):
        s = stats[prec]
        print(f"{prec:<9} Delta0 {s['delta0']:.4f}  "
              f"half-time {s['autocorr_half_time_tau']:.3f} tau")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
