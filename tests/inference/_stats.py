"""The statistical check of the inference tests (as in tests/objectives)."""

from __future__ import annotations

import math

import jax
import numpy as np

KSE = 5.0


def assert_unbiased(draws, exact, what, k=KSE):
    """``mean(draws)`` within ``k`` measured standard errors of ``exact``, element-wise,
    plus a float32 rounding floor (which only matters for zero-variance estimators)."""
    draws = np.asarray(draws, np.float64)
    exact = np.asarray(exact, np.float64)
    mean = draws.mean(0)
    se = draws.std(0, ddof=1) / math.sqrt(draws.shape[0])
    tol = k * se + 2e-5 * (1.0 + np.abs(exact))
    err = np.abs(mean - exact)
    assert np.all(err <= tol), f"{what}: mean {mean} vs exact {exact} (se {se}, err {err})"


def draws(fn, n=20_000, seed=0):
    """``jit(vmap(fn))`` over ``n`` independent keys."""
    return jax.jit(jax.vmap(fn))(jax.random.split(jax.random.key(seed), n))
