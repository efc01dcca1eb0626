"""Spiking networks: LIF, EIF/AdEx and Izhikevich (RS/FS/LTS) neurons; current, conductance and
delta synapses with delays, Tsodyks--Markram plasticity and gap junctions; DC, Poisson, OU/white
noise and subset stimulation; dense, gather and event-driven propagation; bounded on-the-fly
spike recording; Siegert / Brunel / population mean-field theory (:mod:`.theory`).

Units: ms, mV, pF, nS, pA, Hz. Every model runs in :func:`neurocircuits.simulate`.
"""

from . import connectivity, theory
from .connectivity import (
                           Edges,
                           concat,
                           fixed_in_degree_edges,
                           fixed_probability,
                           fixed_total_number,
                           from_fixed_in_degree,
                           gap_junction_pairs,
)
from .eif import EIF, AdEx
from .inputs import DC, NoiseInput, PoissonInput, Stimulus, white_noise_for_lif
from .izhikevich import PRESETS, Izhikevich, IzhState
from .lif import LIF, Adaptation, IFState
from .network import (
                           NetworkState,
                           SpikeEvents,
                           SpikeRecorder,
                           SpikingNetwork,
                           check_run,
                           population_rates,
                           run,
                           spike_events,
)
from .propagation import DenseProjection, EventProjection, GatherProjection, projection
from .stats import cv_isi, firing_rates
from .synapses import ConductanceExp, CurrentExp, Delta, GapJunctions, STPState, TsodyksMarkram

__all__ = [
    "AdEx", "Adaptation", "ConductanceExp", "CurrentExp", "DC", "Delta", "DenseProjection", "EIF",
    "Edges", "EventProjection", "GapJunctions", "GatherProjection", "IFState", "Izhikevich",
    "IzhState", "LIF", "NetworkState", "NoiseInput", "PRESETS", "PoissonInput", "STPState",
    "SpikeEvents", "SpikeRecorder", "SpikingNetwork", "Stimulus", "TsodyksMarkram", "check_run",
    "concat", "connectivity", "cv_isi", "firing_rates", "fixed_in_degree_edges",
    "fixed_probability", "fixed_total_number", "from_fixed_in_degree", "gap_junction_pairs",
    "population_rates", "projection", "run", "spike_events", "theory", "white_noise_for_lif",
]
