"""Rate networks: models, dynamic mean-field theory."""

from .models import RateNetwork, one_plus_tanh, tanh

__all__ = ["RateNetwork", "one_plus_tanh", "tanh"]
