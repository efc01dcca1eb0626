"""Shared fixtures: fresh keys, float64 where a test needs it, named tolerances."""

import itertools

import jax
import pytest

from tolerances import TOL


@pytest.fixture
def tol():
    """The named tolerance categories of tests/tolerances.py."""
    return TOL


@pytest.fixture
def getkey():
    """A function returning a fresh PRNG key on each call (deterministic per test)."""
    counter = itertools.count()
    base = jax.random.key(1234)
    return lambda: jax.random.fold_in(base, next(counter))


@pytest.fixture
def x64():
    """Run the test body with float64 enabled."""
    with jax.enable_x64(True):
        yield
