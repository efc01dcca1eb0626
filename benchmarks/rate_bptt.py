"""One BPTT training update of a rate network: time and peak memory, with and without checkpointing.

The update is exactly what ``neurocircuits.rate.train.fit`` runs per step: simulate B trials of
T steps through ``neurocircuits.simulate`` (one vmapped ``lax.scan``), the loss on the module order
parameters every ``every`` steps, its gradient by reverse-mode autodiff through the scan (BPTT),
and one Adam step. Trained parts: the full J (N x N, a Dense coupling) or a rank-r part
(J = J_fixed + M N^T / N). With ``checkpoint=True`` each ``every``-step interval is recomputed in
the backward pass (memory ~ T/every states instead of T steps of residuals).

Floors (per update), float32 with matmul precision "highest":

* flops: forward 2 N^2 B per step; backward 2 N^2 B (J^T delta) plus, for a trained J, 2 N^2 B
  (the outer products delta phi^T accumulated into dJ); checkpointing adds one more forward
  (2 N^2 B). Flop floor = T x that / the *measured* float32 matmul rate.
* bytes: every step reads J in the forward and in the backward pass (N^2 x 4 bytes each), and a
  trained J's gradient is read and written once per step (2 N^2 x 4); checkpointing reads J once
  more. Memory floor = T x that / the *measured* copy bandwidth (read + write).

``floor = max(flop floor, memory floor)``; the ratio measured / floor is reported with both.
Peak memory is ``jax.devices()[0].memory_stats()["peak_bytes_in_use"]`` (GPU) in a fresh process
per configuration, with XLA's compiled estimate (``memory_analysis``) beside it (also on CPU,
where the runtime reports none).

    python benchmarks/rate_bptt.py            # GPU: N = 4096, T = 10^4, B = 1 and 32
    python benchmarks/rate_bptt.py --quick    # small CPU sanity run

Writes benchmarks/results/rate_bptt_<device>.json and prints a table last.
"""

from __future__ import annotations

import argparse
import datetime as dt_
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

DT = 1.0
TAU = 10.0


def _one(cfg: dict) -> dict:
    """Run one configuration in this process and return its row."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import numpy as np

    import neurocircuits as nc
    from neurocircuits.rate.tasks import PulsePersistence
    from neurocircuits.rate.train import (
        RateCircuit,
        _update,
        default_optimizer,
        prepare,
        trainable_filter,
    )

    n, b, t, every = cfg["N"], cfg["B"], cfg["T"], cfg["every"]
    trainable, ckpt, rank = cfg["trainable"], cfg["checkpoint"], cfg["rank"]
    net = nc.rate.RateNetwork.random(jax.random.key(0), n, g=0.9, tau=TAU)  # not chaotic
    circuit = RateCircuit.from_network(net, n_modules=4)
    circuit = prepare(circuit, trainable, key=jax.random.key(1), rank=rank)
    params, static = eqx.partition(circuit, trainable_filter(circuit, trainable))
    opt = default_optimizer(1e-3, 1.0)
    opt_state = opt.init(params)
    task = PulsePersistence(n_modules=4, duration=t * DT, dt=DT, record_every=every,
                            pulse_window=(0.1 * t * DT, 0.5 * t * DT))
    trials = task.sample(jax.random.key(2), b)
    kw = dict(optimizer=opt, dt=DT, every=every, checkpoint=ckpt, u0_scale=0.5)
    key = jax.random.key(3)

    row = dict(cfg)
    t0 = time.perf_counter()
    lowered = _update.lower(params, static, opt_state, trials, key, **kw)
    compiled = lowered.compile()
    row["compile_s"] = time.perf_counter() - t0
    try:
        ma = compiled.compiled.memory_analysis()
        row["xla_temp_bytes"] = int(ma.temp_size_in_bytes)
        row["xla_argument_bytes"] = int(ma.argument_size_in_bytes)
        row["xla_output_bytes"] = int(ma.output_size_in_bytes)
    except Exception:  # backend without the analysis
        pass
    dev = jax.devices()[0]
    limit = (dev.memory_stats() or {}).get("bytes_limit")
    if limit and row.get("xla_temp_bytes", 0) > 0.92 * limit:
        row["status"] = f"does not fit: XLA needs {row['xla_temp_bytes'] / 2**30:.1f} GiB"
        return row

    def step(p, s):  # the compiled update (no second compilation)
        return compiled(p, static, s, trials, key, **kw)

    p, s, stats = step(params, opt_state)  # warm-up
    jax.block_until_ready(stats)
    times = []
    for _ in range(cfg["repeats"]):
        t1 = time.perf_counter()
        p, s, stats = step(p, s)
        jax.block_until_ready(stats)
        times.append(time.perf_counter() - t1)
    row["update_s"] = statistics.median(times)
    row["update_s_all"] = times
    row["loss"] = float(np.asarray(stats)[0])
    mem = dev.memory_stats() or {}
    if "peak_bytes_in_use" in mem:
        row["peak_bytes"] = int(mem["peak_bytes_in_use"])
    row["status"] = "ok"
    del jnp
    return row


def _floors(row: dict, matmul_flops: float, copy_bps: float) -> dict:
    n, b, t = row["N"], row["B"], row["T"]
    full = row["trainable"] == "full"
    per_step_flops = 2 * n * n * b * (1 + 1 + (1 if full else 0) + (1 if row["checkpoint"] else 0))
    per_step_bytes = 4 * n * n * (1 + 1 + (2 if full else 0) + (1 if row["checkpoint"] else 0))
    if not full:  # the low-rank factors: O(N r) per step, negligible next to J
        per_step_flops += 2 * 4 * n * row["rank"] * b
    flop_floor = t * per_step_flops / matmul_flops
    mem_floor = t * per_step_bytes / copy_bps
    out = {"flops": t * per_step_flops, "bytes": t * per_step_bytes,
           "flop_floor_s": flop_floor, "memory_floor_s": mem_floor,
           "floor_s": max(flop_floor, mem_floor),
           "floor_kind": "compute" if flop_floor >= mem_floor else "memory"}
    if "update_s" in row:
        out["ratio"] = row["update_s"] / out["floor_s"]
        out["ratio_vs_flop_floor"] = row["update_s"] / flop_floor
        out["achieved_TFLOPs"] = out["flops"] / row["update_s"] / 1e12
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true", help="small sizes (CPU sanity run)")
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--rates", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--every", type=int, default=10, help="steps per loss sample / checkpoint")
    p.add_argument("--out", default=str(HERE / "results"))
    args = p.parse_args()
    if args.one:
        print("ROW " + json.dumps(_one(json.loads(args.one))), flush=True)
        return

    if args.rates:  # in a child process too: the parent never holds device memory
        import jax
        import numpy as np
        from rate_dense import copy_bandwidth, matmul_rate

        import neurocircuits as nc

        dev = jax.devices()[0]
        print("ROW " + json.dumps({
            "bw": copy_bandwidth(2**26 if args.quick else 2**31),
            "mm": matmul_rate(1024 if args.quick else 8192, "highest"),
            "device": f"{dev.platform}: {dev.device_kind}", "kind": dev.device_kind,
            "versions": {"jax": jax.__version__, "neurocircuits": nc.__version__,
                         "python": platform.python_version(), "numpy": np.__version__}}),
            flush=True)
        return

    if args.quick:
        n, t, batches, rank, repeats = 256, 500, (1, 8), 4, 3
    else:
        n, t, batches, rank, repeats = 4096, 10_000, (1, 32), 16, 3
    plan = []
    for trainable in ("full", "low_rank"):
        for b in batches:
            for ckpt in (True, False):
                if trainable == "low_rank" and b == batches[0] and not ckpt and not args.quick:
                    continue  # the memory story is the same as for the full J at B = 1
                plan.append(dict(N=n, T=t, B=b, every=args.every, trainable=trainable,
                                 checkpoint=ckpt, rank=rank, repeats=repeats))
    proc = subprocess.run([sys.executable, __file__, "--rates"] + (["--quick"] if args.quick
                                                                   else []),
                          capture_output=True, text=True)
    info = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("ROW ")][-1][4:])
    bw, mm = info["bw"], info["mm"]
    rows = []
    for cfg in plan:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, __file__, "--one", json.dumps(cfg)],
                              capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("ROW ")]
        if proc.returncode != 0 or not lines:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            oom = any("RESOURCE_EXHAUSTED" in ln or "out of memory" in ln.lower() for ln in tail)
            row = dict(cfg, status=("out of memory" if oom else "failed: " + " | ".join(tail)))
        else:
            row = json.loads(lines[-1][4:])
        row.update(_floors(row, mm, bw))
        row["wall_s"] = time.perf_counter() - t0
        rows.append(row)
        print(f"{row['trainable']:>8} B={row['B']:>3} ckpt={row['checkpoint']!s:>5}: "
              f"{row.get('update_s', float('nan')):.3f} s/update  "
              f"peak {row.get('peak_bytes', row.get('xla_temp_bytes', 0)) / 2**30:.2f} GiB  "
              f"[{row['status']}]", flush=True)

    result = {
        "benchmark": "rate_bptt",
        "date": dt_.datetime.now(dt_.UTC).isoformat(timespec="seconds"),
        "device": info["device"],
        "versions": info["versions"],
        "precision": "float32, matmul precision='highest'",
        "what": "one training update of neurocircuits.rate.train.fit (value_and_grad through "
                "simulate + Adam), PulsePersistence task with 4 modules, dt = 1 ms, tau = 10 ms, "
                f"loss every {args.every} steps, g = 0.9",
        "floor": "max(flops / measured matmul rate, bytes / measured copy bandwidth); see the "
                 "module docstring",
        "measured_copy_bandwidth_TBps": bw / 1e12,
        "measured_matmul_TFLOPs": mm / 1e12,
        "rows": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = info["kind"].replace(" ", "_").lower() + ("_quick" if args.quick else "")
    path = out / f"rate_bptt_{tag}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")

    print(f"\n{result['device']}  copy {bw / 1e12:.2f} TB/s  matmul {mm / 1e12:.1f} TFLOP/s  "
          f"({result['precision']})  N = {n}, T = {t}, loss every {args.every} steps")
    print(f"{'trained':>8} {'B':>3} {'ckpt':>5} {'s/update':>9} {'floor s':>8} {'kind':>7} "
          f"{'ratio':>6} {'/flops':>7} {'peak GiB':>9} {'XLA GiB':>8}  status")
    for r in rows:
        peak = r.get("peak_bytes")
        xla = r.get("xla_temp_bytes")
        print(f"{r['trainable']:>8} {r['B']:>3} {r['checkpoint']!s:>5} "
              f"{r.get('update_s', float('nan')):>9.3f} {r['floor_s']:>8.3f} "
              f"{r['floor_kind']:>7} {r.get('ratio', float('nan')):>6.2f} "
              f"{r.get('ratio_vs_flop_floor', float('nan')):>7.1f} "
              f"{(peak / 2**30) if peak else float('nan'):>9.2f} "
              f"{(xla / 2**30) if xla else float('nan'):>8.2f}  {r['status']}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
