"""Statistical checks shared by the ADEV tests."""

from __future__ import annotations

import math

import jax
import numpy as np

K = 5.0


def assert_unbiased(draws, exact, what, k=K):
    """``mean(draws)`` within ``k`` measured standard errors of ``exact``, element-wise
    (plus a float32 rounding floor, which only matters for zero-variance estimators)."""
    draws = np.asarray(draws, np.float64)
    exact = np.asarray(exact, np.float64)
    mean = draws.mean(0)
    se = draws.std(0, ddof=1) / math.sqrt(draws.shape[0])
    tol = k * se + 1e-5 * (1.0 + np.abs(exact))
    err = np.abs(mean - exact)
    assert np.all(err <= tol), f"{what}: mean {mean} vs exact {exact} (se {se}, err {err})"


def draws(fn, n, seed=0, raw=False):
    """``jit(vmap(fn))`` over ``n`` independent keys (typed, or raw ``uint32`` key data)."""
    keys = jax.random.split(jax.random.key(seed), n)
    if raw:
        keys = jax.random.key_data(keys)
    return jax.jit(jax.vmap(fn))(keys)


def exact_grads(expect, params):
    """Value and gradient (every argument) of a closed-form expectation."""
    return jax.jit(jax.value_and_grad(expect, argnums=tuple(range(len(params)))))(*params)


def check(est, expect, params, what):
    """``est = (values, grads)`` from :func:`draws` against the closed form ``expect``."""
    value, grads = est
    ev, eg = exact_grads(expect, params)
    assert_unbiased(value, ev, f"{what}: value")
    for i, (g, e) in enumerate(zip(grads, eg, strict=True)):
        assert_unbiased(g, e, f"{what}: gradient in argument {i}")
