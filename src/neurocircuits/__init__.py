"""neurocircuits: simulate, train, predict with theory and fit recurrent neural-circuit models.

The public API is re-exported here; families live in submodules (``neurocircuits.rate``, ...).
"""

from . import ising, rate, spiking
from ._core import connectivity
from ._core.connectivity import AbstractCoupling, Dense, GaussianPlusMean
from ._core.errors import ConfigError, DivergenceError, NeurocircuitsError, ResumeError
from ._core.integrators import (
    RK4,
    AbstractIntegrator,
    Euler,
    EulerMaruyama,
    ExponentialEuler,
    Terms,
)
from ._core.model import AbstractModel, AbstractSDEModel
from ._core.record import Record, Trajectory
from ._core.results import RunStore, open_run
from ._core.sharding import NeuronSharding
from ._core.simulate import Batch, simulate

__version__ = "0.1.0"

__all__ = [
    "AbstractCoupling", "AbstractIntegrator", "AbstractModel", "AbstractSDEModel", "Batch",
    "ConfigError", "Dense", "DivergenceError", "Euler", "EulerMaruyama", "ExponentialEuler",
    "GaussianPlusMean", "NeuronSharding", "NeurocircuitsError", "RK4", "Record", "ResumeError", "Terms",
    "RunStore", "Trajectory", "connectivity", "ising", "open_run", "rate", "simulate", "spiking",
]
