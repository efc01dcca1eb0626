"""Brian2 side of the COBA comparison (run with a Python that has Brian2, e.g. /tmp/brian-venv).

    python spiking_coba_brian2.py IN.npz OUT.npz [--target cython|numpy|cpp_standalone]

IN.npz holds the network exported by benchmarks/spiking_coba.py: ``pre_e, post_e, pre_i,
post_i`` (synapses), ``V0`` (mV), ``ge0``, ``gi0`` (nS), ``duration`` and ``dt`` (ms), ``n``.
The model is the one of neurocircuits.spiking.circuits.coba: exponential-Euler LIF with
exponential conductances, refractory clamp, synaptic delay 0 (next step). OUT.npz gets the spike
indices and times (ms), the wall time of run() and the build time.
"""

import sys
import time

import numpy as np


def main():
    src, dst = sys.argv[1], sys.argv[2]
    target = sys.argv[4] if len(sys.argv) > 4 and sys.argv[3] == "--target" else "cython"
    import brian2 as b2
    from brian2 import ms, mV, nS, pF

    d = np.load(src)
    if target == "cpp_standalone":
        b2.set_device("cpp_standalone", build_on_run=True, directory=None)
    else:
        b2.prefs.codegen.target = target
    t_build = time.perf_counter()
    b2.start_scope()
    b2.defaultclock.dt = float(d["dt"]) * ms
    n = int(d["n"])
    # names below are read by Brian2 from this namespace
    C, gl, El, Vt, Vr = 200 * pF, 10 * nS, -60 * mV, -50 * mV, -60 * mV  # noqa: F841
    Ee, Ei, taue, taui = 0 * mV, -80 * mV, 5 * ms, 10 * ms  # noqa: F841
    eqs = """
    dv/dt = (gl*(El - v) + ge*(Ee - v) + gi*(Ei - v))/C : volt (unless refractory)
    dge/dt = -ge/taue : siemens
    dgi/dt = -gi/taui : siemens
    """
    P = b2.NeuronGroup(n, eqs, threshold="v >= Vt", reset="v = Vr", refractory=5 * ms,
                       method="exponential_euler")
    P.v = d["V0"] * mV
    P.ge = d["ge0"] * nS
    P.gi = d["gi0"] * nS
    we, wi = float(d["we"]) * nS, float(d["wi"]) * nS  # noqa: F841
    Ce = b2.Synapses(P, P, on_pre="ge += we")
    Ce.connect(i=d["pre_e"], j=d["post_e"])
    Ci = b2.Synapses(P, P, on_pre="gi += wi")
    Ci.connect(i=d["pre_i"], j=d["post_i"])
    M = b2.SpikeMonitor(P)
    net = b2.Network(P, Ce, Ci, M)
    net.run(0 * ms)  # compile/build
    t_build = time.perf_counter() - t_build
    t0 = time.perf_counter()
    net.run(float(d["duration"]) * ms)
    wall = time.perf_counter() - t0
    np.savez(dst, i=np.asarray(M.i[:]), t=np.asarray(M.t[:] / ms), wall=wall, build=t_build,
             target=target, version=b2.__version__)


if __name__ == "__main__":
    main()
