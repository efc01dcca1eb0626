"""The gallery: one module per reproduced result.

Each module defines ``EXPERIMENT`` (see :mod:`neurocircuits.experiments._base`). Modules are
imported only when an experiment is listed or run, so a missing optional dependency of one
experiment never breaks the others.
"""

from __future__ import annotations

import importlib

from .._core.errors import ConfigError

#: experiment name -> module (relative to this package)
REGISTRY: dict[str, str] = {
    "rate-chaos": ".rate_chaos",
    "ising-plefka": ".ising_plefka",
    "ising-asymmetric-sk": ".ising_asymmetric_sk",
    "rate-balanced": ".rate_balanced",
    "rate-modular": ".rate_modular",
    "rate-learning": ".rate_learning",
    "spiking-coba": ".spiking_coba",
    "spiking-brunel": ".spiking_brunel",
    "spiking-microcircuit": ".spiking_microcircuit",
    "spiking-cortex": ".spiking_cortex",
}


def names() -> list[str]:
    return list(REGISTRY)


def get(name: str):
    """The ``Experiment`` called ``name``; a ConfigError naming the known ones otherwise."""
    if name not in REGISTRY:
        raise ConfigError(f"unknown experiment {name!r}; known: {', '.join(REGISTRY)}")
    return importlib.import_module(REGISTRY[name], __name__).EXPERIMENT
