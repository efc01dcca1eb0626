"""Rate networks: models, dynamic mean-field theory, macroscopic (population) theory, learning."""

from . import macroscopic, tasks, theory, train
from .macroscopic import macroscopic_fluctuations, modular_fluctuations
from .models import RateNetwork, one_plus_tanh, tanh
from .tasks import PhaseShiftedOscillation, PulsePersistence, Ramp, SynchronyPatterns, nrmse
from .theory import DMFTResult, dmft, dmft_solve
from .train import RateCircuit, RateNetworkTrainer, evaluate, fit, predict

__all__ = [
    "DMFTResult", "PhaseShiftedOscillation", "PulsePersistence", "Ramp", "RateCircuit",
    "RateNetwork", "RateNetworkTrainer", "SynchronyPatterns", "dmft", "dmft_solve", "evaluate",
    "fit", "macroscopic", "macroscopic_fluctuations", "modular_fluctuations", "nrmse",
    "one_plus_tanh", "predict", "tanh", "tasks", "theory", "train",
]
