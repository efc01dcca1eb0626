"""Kinetic Ising models: Glauber simulation, exact enumeration, the Plefka mean-field family,
inverse problems and the exact theory of the asymmetric Sherrington–Kirkpatrick model.

References:
    Aguilera, Moosavi & Shimazaki, Nat. Commun. 12, 1197 (2021), arXiv:2002.04309.
    Aguilera, Igarashi & Shimazaki, Nat. Commun. 14, 3685 (2023), arXiv:2205.09886.
"""

from . import exact, inverse, meanfield, sk_theory
from .models import (
                     KineticIsing,
                     Moments,
                     entropy_production,
                     path_entropy_production,
                     population_observables,
                     rao_blackwell_moments,
                     sample,
                     simulate_moments,
)

__all__ = [
    "KineticIsing", "Moments", "entropy_production", "exact", "inverse", "meanfield",
    "path_entropy_production", "population_observables", "rao_blackwell_moments", "sample",
    "simulate_moments", "sk_theory",
]
