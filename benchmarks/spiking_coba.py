"""Spiking benchmarks: COBA 4000 (single and batched instances), the Potjans--Diesmann
microcircuit (real-time factor, construction time), per-step overhead, and Brian2 on the same COBA
networks (the peer, on the CPU) with a statistics comparison.

Floors: per step a network reads and writes its state (V, w, ref, conductances, ring buffer,
...: ``state_bytes``) and, event-driven, touches ``spikes/step x out-degree`` synapses (12 bytes
each: target, weight, delay); the gather path reads ``N x K`` indices and weights. The memory
floor is those bytes over the *measured* copy bandwidth; the latency floor is the *measured*
time per step of a one-neuron network through the same loop (``overhead_us_per_step``). Every
anchor in the spec is latency-bound, so ``us_per_step / overhead_us_per_step`` is the ratio that
matters.

Per-phase breakdown (``phases``): the same network timed with parts removed -- neurons only
(no projections, no inputs, no recording), + inputs, + propagation, + recording -- so the
differences are the µs/step of each part (removing the projections changes the activity, so
the propagation increment is the full network's). ``unroll`` rows time the same runs with
``simulate(unroll=)`` steps per loop iteration.

    python benchmarks/spiking_coba.py            # GPU: COBA 1 s, 128 instances, full microcircuit
    python benchmarks/spiking_coba.py --quick    # small CPU run (incl. Brian2 if available)
    python benchmarks/spiking_coba.py --skip-brian --only microcircuit
    python benchmarks/spiking_coba.py --brian-python /tmp/brian-venv/bin/python

Writes benchmarks/results/spiking_coba_<device>.json after every stage (a timeout loses only
the stage it interrupts) and prints a table last.
"""

from __future__ import annotations

import argparse
import datetime as dt_
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import neurocircuits as nc  # noqa: E402
from neurocircuits import spiking as sp  # noqa: E402
from neurocircuits.spiking.circuits import coba, coba_edges, microcircuit  # noqa: E402

DT = 0.1
HERE = Path(__file__).resolve().parent


def _time(fn, repeats=3):
    jax.block_until_ready(fn())  # compile
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def copy_bandwidth(n_bytes):
    x = jnp.ones((n_bytes // 4,), jnp.float32)
    f = jax.jit(lambda a: a * 1.0001)
    return 2 * n_bytes / _time(lambda: f(x), 5)


def overhead_per_step(n_steps, unroll=1):
    """A one-neuron network through simulate: the per-step latency floor of the loop."""
    net = sp.SpikingNetwork(sp.LIF(), 1, inputs=(sp.DC(100.0),),
                            recorder=sp.SpikeRecorder(window=100, capacity=8))
    s0 = net.initial_state(jax.random.key(0))
    f = lambda: nc.simulate(net, s0, dt=DT, n_steps=n_steps, key=jax.random.key(1),  # noqa: E731
                            chunk_steps=n_steps, progress=False, unroll=unroll).final_state.neuron.V
    return _time(f) / n_steps


def _reduced(net, *, projections=True, inputs=True):
    """``net`` without its projections and/or inputs (the same neurons and labels)."""
    return sp.SpikingNetwork(net.neurons, net.n, receptors=net.receptors,
                             projections=net.projections if projections else (),
                             inputs=net.inputs if inputs else (), gap=net.gap, labels=net.labels,
                             populations=net.populations, recorder=net.recorder,
                             max_spikes_per_step=net.max_spikes_per_step)


def phases(net, s0, n_steps, record, repeats=2):
    """µs/step of ``net`` with parts removed (see the module docstring)."""
    V0 = s0.neuron.V

    def us(model, rec):
        st = s0 if model is net else model.initial_state(jax.random.key(1), V0=V0)
        f = lambda: nc.simulate(model, st, dt=DT, n_steps=n_steps,  # noqa: E731
                                key=jax.random.key(2), record=rec, chunk_steps=n_steps,
                                progress=False).final_state.neuron.V
        return _time(f, repeats) / n_steps * 1e6

    t = {"neurons": us(_reduced(net, projections=False, inputs=False), None),
         "neurons+inputs": us(_reduced(net, projections=False), None),
         "neurons+inputs+propagation": us(net, None),
         "all (with recording)": us(net, record)}
    t["increments"] = {
        "neurons (update, spike list, loop)": t["neurons"],
        "inputs": t["neurons+inputs"] - t["neurons"],
        "propagation": t["neurons+inputs+propagation"] - t["neurons+inputs"],
        "recording": t["all (with recording)"] - t["neurons+inputs+propagation"]}
    return t


def state_bytes(net):
    s = net.initial_state(jax.random.key(0))
    return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(s))


def bench_coba(n, n_steps, batch, propagation, record, unroll=1):
    net, init = coba(jax.random.key(0), n, propagation=propagation, dt=DT,
                     recorder=sp.SpikeRecorder(window=100, capacity=max(4096, n)))
    rec = net.record() if record else None
    if batch == 1:
        s0 = init(jax.random.key(1))
        kw = {}
        key = jax.random.key(2)
    else:
        s0 = jax.vmap(init)(jax.random.split(jax.random.key(1), batch))
        key = jax.random.split(jax.random.key(2), batch)
        kw = {"batch": nc.Batch(model=None)}

    out = {}

    def f():
        tr = nc.simulate(net, s0, dt=DT, n_steps=n_steps, key=key, record=rec,
                         chunk_steps=n_steps, progress=False, unroll=unroll, **kw)
        out["tr"] = tr
        return tr.final_state.neuron.V

    t = _time(f)
    out["s0"] = s0
    fs = out["tr"].final_state
    spikes = float("nan")
    max_spk = int(np.max(np.asarray(fs.max_spikes)))
    if record:
        counts = np.asarray(out["tr"].ys["pop_counts"]).sum(axis=-1)
        spikes = float(counts.sum() / batch / n_steps)  # spikes per step per instance
    return net, t, spikes, max_spk, out["s0"]


def coba_floor_bytes(net, spikes_per_step, propagation):
    b = 2 * state_bytes(net)
    outdeg = 0.02 * net.n
    if propagation == "event":
        b += spikes_per_step * outdeg * 12
    elif propagation == "gather":
        p = net.projections
        b += sum(x.indices.size * 8 for x in p)
    else:
        b += net.n * net.n * 4 * 2
    return b


# --------------------------------------------------------------------------- Brian2 parity
def coba_stats(i, t, n, n_e, t_start, t_stop):
    from neurocircuits.spiking.stats import cv_isi, firing_rates

    steps = np.rint(t / DT).astype(np.int64) - 1
    ev = sp.SpikeEvents(steps, i.astype(np.int64))
    r = firing_rates(ev, n, dt=DT, t_start=t_start, t_stop=t_stop)
    cv = cv_isi(ev, n, dt=DT, t_start=t_start)
    return {"rate_e_hz": float(r[:n_e].mean()), "rate_i_hz": float(r[n_e:].mean()),
            "cv_isi_mean": float(np.nanmean(cv))}


def brian_parity(brian_python, n, n_seeds, duration, target):
    rows = []
    n_steps = int(round(duration / DT))
    for seed in range(n_seeds):
        key = jax.random.key(1000 + seed)
        k_net, k_init, k_run = jax.random.split(key, 3)
        edges = coba_edges(k_net, n)
        net, init = coba(k_net, n, dt=DT, edges=edges,
                         recorder=sp.SpikeRecorder(window=100, capacity=max(4096, 2 * n)))
        s0 = init(k_init)
        t0 = time.perf_counter()
        tr = sp.run(net, s0, dt=DT, n_steps=n_steps, key=k_run, record=net.record(),
                    progress=False)
        ours_wall = time.perf_counter() - t0
        ev = sp.spike_events(tr, net)
        ee, ei, n_e = edges
        ours = coba_stats(ev.neurons, ev.times(DT), n, n_e, 100.0, duration)
        with tempfile.TemporaryDirectory() as tmp:
            src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
            np.savez(src, pre_e=np.asarray(ee.pre), post_e=np.asarray(ee.post),
                     pre_i=np.asarray(ei.pre), post_i=np.asarray(ei.post),
                     V0=np.asarray(s0.neuron.V, np.float64), ge0=np.asarray(s0.syn[0], np.float64),
                     gi0=np.asarray(s0.syn[1], np.float64), duration=duration, dt=DT, n=n,
                     we=6.0, wi=67.0)
            proc = subprocess.run([brian_python, str(HERE / "spiking_coba_brian2.py"), str(src),
                                   str(dst), "--target", target], capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"Brian2 failed:\n{proc.stderr[-3000:]}")
            d = np.load(dst)
            brian = coba_stats(d["i"], d["t"], n, n_e, 100.0, duration)
            brian_wall, brian_build, version = float(d["wall"]), float(d["build"]), str(d["version"])
        rows.append({"seed": seed, "ours": ours, "brian2": brian, "ours_wall_s": ours_wall,
                     "brian2_wall_s": brian_wall, "brian2_build_s": brian_build})
        print(f"  seed {seed}: ours {ours}  brian2 {brian}", flush=True)
    keys = ("rate_e_hz", "rate_i_hz", "cv_isi_mean")
    mean = {side: {k: float(np.mean([r[side][k] for r in rows])) for k in keys}
            for side in ("ours", "brian2")}
    rel = {k: abs(mean["ours"][k] - mean["brian2"][k]) / abs(mean["brian2"][k]) for k in keys}
    return {"n": n, "n_seeds": n_seeds, "duration_ms": duration, "brian2_target": target,
            "brian2_version": version, "seeds": rows, "seed_mean": mean, "rel_diff": rel,
            "within_10pct": bool(all(v <= 0.10 for v in rel.values())),
            "brian2_wall_s_per_sim_s": float(np.median([r["brian2_wall_s"] for r in rows])
                                             / (duration * 1e-3))}


def find_brian(arg):
    for cand in ([arg] if arg else []) + [os.environ.get("BRIAN_PYTHON"),
                                          "/tmp/brian-venv/bin/python"]:
        if cand and Path(cand).exists():
            ok = subprocess.run([cand, "-c", "import brian2"], capture_output=True).returncode == 0
            if ok:
                return cand
    return None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true", help="small sizes (CPU sanity run)")
    p.add_argument("--brian-python", default=None, help="a Python with Brian2 installed")
    p.add_argument("--brian-target", default="cython", choices=["cython", "numpy",
                                                               "cpp_standalone"])
    p.add_argument("--skip-brian", "--no-brian", dest="skip_brian", action="store_true",
                   help="do not run the Brian2 parity comparison")
    p.add_argument("--only", nargs="+", default=None,
                   choices=["overhead", "coba", "phases", "microcircuit", "brian"],
                   help="run only these stages")
    p.add_argument("--unroll", type=int, nargs="+", default=[4, 16],
                   help="simulate(unroll=) values timed besides 1")
    p.add_argument("--mc-scale", type=float, default=None, help="microcircuit scale")
    p.add_argument("--out", default=str(HERE / "results"))
    args = p.parse_args()
    dev = jax.devices()[0]
    q = args.quick
    stages = set(args.only or ["overhead", "coba", "phases", "microcircuit", "brian"])
    n = 4000
    steps = 2000 if q else 10_000
    batch = 8 if q else 128
    mc_scale = args.mc_scale or (0.05 if q else 1.0)
    mc_steps = 500 if q else 10_000

    outdir = Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    tag = dev.device_kind.replace(" ", "_").lower() + ("_quick" if q else "")
    path = outdir / f"spiking_coba_{tag}.json"
    result = {
        "benchmark": "spiking_coba",
        "date": dt_.datetime.now(dt_.UTC).isoformat(timespec="seconds"),
        "device": f"{dev.platform}: {dev.device_kind}",
        "versions": {"jax": jax.__version__, "neurocircuits": nc.__version__,
                     "python": platform.python_version(), "numpy": np.__version__},
        "precision": "float32",
        "dt_ms": DT,
        "targets": {"coba_wall_s_per_sim_s_single": 0.03, "coba_batched_100_wall_s_per_sim_s": 0.1,
                    "microcircuit_rtf": 0.25, "construction_s": 2.0, "us_per_step": 10.0},
        "quick": q,
        "complete": False,
        "rows": [],
    }

    def save(stage):
        result["stages_done"] = result.get("stages_done", []) + [stage]
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"  [{stage} written to {path}]", flush=True)

    bw = copy_bandwidth(2**26 if q else 2**30)
    result["measured_copy_bandwidth_GBps"] = bw / 1e9
    ovh = overhead_per_step(steps)
    result["overhead_us_per_step"] = ovh * 1e6
    print(f"overhead {ovh * 1e6:.1f} us/step, copy {bw / 1e9:.1f} GB/s", flush=True)
    if "overhead" in stages:
        result["overhead_unrolled_us_per_step"] = {
            str(u): overhead_per_step(steps, unroll=u) * 1e6 for u in args.unroll}
        print(f"overhead unrolled: {result['overhead_unrolled_us_per_step']}", flush=True)
        save("overhead")

    rows = result["rows"]
    coba_s0 = {}
    if "coba" in stages:
        for prop in ("event", "gather"):
            for b in (1, batch):
                for u in [1] + (args.unroll if b == 1 else []):
                    n_st = steps if b == 1 else steps // 2
                    net, t, sps, max_spk, s0 = bench_coba(n, n_st, b, prop, record=True, unroll=u)
                    if b == 1 and u == 1:
                        coba_s0[prop] = (net, s0)
                    us = t / n_st * 1e6
                    floor_b = coba_floor_bytes(net, sps, prop) * b
                    row = {"benchmark": "coba", "N": n, "B": b, "propagation": prop,
                           "unroll": u, "n_steps": n_st, "us_per_step": us,
                           "wall_s_per_sim_s": t / (n_st * DT * 1e-3),
                           "spikes_per_step": sps, "max_spikes_per_step": max_spk,
                           "memory_floor_us": floor_b / bw * 1e6, "latency_floor_us": ovh * 1e6,
                           "over_latency_floor": us / (ovh * 1e6)}
                    rows.append(row)
                    print(f"COBA {prop:6s} B={b:4d} unroll={u:2d}: {us:9.1f} us/step  "
                          f"{row['wall_s_per_sim_s']:.3f} s/sim s", flush=True)
                    save(f"coba {prop} B={b} unroll={u}")

    if "phases" in stages:
        result["phases"] = {}
        for prop in ("event", "gather"):
            if prop in coba_s0:
                net, s0 = coba_s0[prop]
            else:
                net, init = coba(jax.random.key(0), n, propagation=prop, dt=DT,
                                 recorder=sp.SpikeRecorder(window=100, capacity=max(4096, n)))
                s0 = init(jax.random.key(1))
            ph = phases(net, s0, steps, net.record())
            result["phases"][f"coba_{prop}"] = ph
            print(f"phases COBA {prop}: " + ", ".join(
                f"{k} {v:.1f}" for k, v in ph["increments"].items()) + " us/step", flush=True)
            save(f"phases coba {prop}")

    mc_row = None
    if "microcircuit" in stages:
        t0 = time.perf_counter()
        mc, mc_init = microcircuit(jax.random.key(0), scale=mc_scale, dt=DT,
                                   recorder=sp.SpikeRecorder(window=100, capacity=8))
        jax.block_until_ready(jax.tree.leaves(mc))
        build = time.perf_counter() - t0
        t0 = time.perf_counter()  # again: the construction program is compiled once per size
        mc, mc_init = microcircuit(jax.random.key(0), scale=mc_scale, dt=DT,
                                   recorder=sp.SpikeRecorder(window=100, capacity=8))
        jax.block_until_ready(jax.tree.leaves(mc))
        build2 = time.perf_counter() - t0
        print(f"microcircuit scale {mc_scale}: build {build:.2f} s (again: {build2:.2f} s)",
              flush=True)
        s0 = mc_init(jax.random.key(1))
        rec = nc.Record(every=100, fn=lambda s, t: s.pop_counts)
        mc_row = {"benchmark": "microcircuit", "scale": mc_scale, "N": mc.n,
                  "n_synapses": int(mc.projections[0].post.shape[0] - 1), "n_steps": mc_steps,
                  "construction_s": build, "construction_again_s": build2,
                  "max_out_degree": mc.projections[0].max_out,
                  "chunk": mc.projections[0].chunk,
                  "max_spikes_per_step": mc.max_spikes_per_step, "unroll": {}}
        result["microcircuit"] = mc_row
        save("microcircuit construction")
        for u in [1] + args.unroll[:1]:
            out = {}

            def f():
                tr = nc.simulate(mc, s0, dt=DT, n_steps=mc_steps, key=jax.random.key(2),
                                 record=rec, chunk_steps=mc_steps, progress=False, unroll=u)
                out["tr"] = tr
                return tr.final_state.neuron.V

            t_mc = _time(f, repeats=1 if not q else 2)
            sp.check_run(mc, out["tr"])
            counts = np.asarray(out["tr"].ys).sum(axis=0)
            if u == 1:
                mc_rates = counts / np.maximum(mc.population_sizes, 1) / (mc_steps * DT * 1e-3)
                mean_out = (mc.projections[0].post.shape[0] - 1) / mc.n
                mc_row.update({
                    "us_per_step": t_mc / mc_steps * 1e6,
                    "real_time_factor": t_mc / (mc_steps * DT * 1e-3),
                    "spikes_per_step": float(counts.sum() / mc_steps),
                    "synapse_events_per_step": float(counts.sum() / mc_steps * mean_out),
                    "rates_hz": dict(zip(mc.populations, mc_rates.round(3).tolist()))})
            mc_row["unroll"][str(u)] = {"us_per_step": t_mc / mc_steps * 1e6,
                                        "real_time_factor": t_mc / (mc_steps * DT * 1e-3)}
            print(f"microcircuit unroll={u}: {t_mc / mc_steps * 1e6:.1f} us/step, RTF "
                  f"{t_mc / (mc_steps * DT * 1e-3):.3f}", flush=True)
            save(f"microcircuit unroll={u}")
        # per phase, from the state after the run (past the synchronous start)
        s1 = out["tr"].final_state
        ph = phases(mc, s1, mc_steps // 2 if not q else mc_steps, rec, repeats=1)
        mc_row["phases"] = ph
        print("phases microcircuit: " + ", ".join(
            f"{k} {v:.1f}" for k, v in ph["increments"].items()) + " us/step", flush=True)
        save("microcircuit phases")

    parity = None
    brian = None if (args.skip_brian or "brian" not in stages) else find_brian(args.brian_python)
    if brian:
        print("Brian2 parity run ...", flush=True)
        try:
            parity = brian_parity(brian, n, 3 if q else 5, 1000.0 if q else 2000.0,
                                  args.brian_target)
        except RuntimeError as err:  # e.g. no C++ compiler for Brian2's cython target here
            print(f"Brian2 ({args.brian_target}) failed; retrying with its numpy target: "
                  f"{str(err)[-300:]}", flush=True)
            try:
                parity = brian_parity(brian, n, 2, 1000.0, "numpy")
            except RuntimeError as err2:
                parity = {"error": str(err2)[-2000:]}
        result["brian2_parity"] = parity
        save("brian2")
    result["complete"] = True
    save("done")

    print(f"\n{result['device']}  overhead {ovh * 1e6:.1f} us/step  copy {bw / 1e9:.1f} GB/s")
    print(f"{'case':<22} {'B':>4} {'unroll':>6} {'us/step':>10} {'s/sim s':>9} "
          f"{'x lat.floor':>11} {'mem floor us':>12}")
    for r in rows:
        print(f"{'COBA ' + r['propagation']:<22} {r['B']:>4} {r['unroll']:>6} "
              f"{r['us_per_step']:>10.1f} {r['wall_s_per_sim_s']:>9.3f} "
              f"{r['over_latency_floor']:>11.1f} {r['memory_floor_us']:>12.2f}")
    if mc_row and "us_per_step" in mc_row:
        print(f"{'microcircuit x' + str(mc_scale):<22} {1:>4} {1:>6} {mc_row['us_per_step']:>10.1f} "
              f"{mc_row['real_time_factor']:>9.3f}   construction {mc_row['construction_s']:.2f} s "
              f"(again {mc_row['construction_again_s']:.2f} s), N = {mc_row['N']}")
    for name, ph in result.get("phases", {}).items():
        print(f"phases {name}: " + ", ".join(f"{k} {v:.1f}" for k, v in ph["increments"].items()))
    if mc_row and "phases" in mc_row:
        print("phases microcircuit: " + ", ".join(
            f"{k} {v:.1f}" for k, v in mc_row["phases"]["increments"].items()))
    if parity and "error" in parity:
        print(f"Brian2 failed: {parity['error'][-300:]}")
    elif parity:
        m = parity["seed_mean"]
        print(f"Brian2 {parity['brian2_version']} ({parity['brian2_target']}), "
              f"{parity['n_seeds']} seeds x {parity['duration_ms']:g} ms: "
              f"{parity['brian2_wall_s_per_sim_s']:.2f} s/sim s")
        for k in ("rate_e_hz", "rate_i_hz", "cv_isi_mean"):
            print(f"  {k:<12} ours {m['ours'][k]:8.3f}  brian2 {m['brian2'][k]:8.3f}  "
                  f"rel diff {parity['rel_diff'][k]:.3f}")
        print(f"  within 10%: {parity['within_10pct']}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
