"""Shared fixtures: a fixed PRNG key, so every statistical test is reproducible."""

import jax
import pytest


@pytest.fixture
def key():
    """A fixed PRNG key (tests derive others with ``jax.random.split``/``fold_in``)."""
    return jax.random.key(0)
