"""Rate networks: models and dynamic mean-field theory."""

from . import theory
from .models import RateNetwork, one_plus_tanh, tanh
from .theory import DMFTResult, dmft, dmft_solve

__all__ = ["DMFTResult", "RateNetwork", "dmft", "dmft_solve", "one_plus_tanh", "tanh", "theory"]
