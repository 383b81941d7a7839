"""Every gradient strategy on every distribution it supports, against exact gradients.

For each case, ``E[f(z)]`` with ``z ~ dist(params)`` has a closed form (or a finite sum
written out by hand); its exact gradient in every float parameter is ``jax.grad`` of that
closed form. The mean of N independent ``value_and_grad_estimate`` draws (``jit(vmap)``
over keys) must lie within K standard errors of the exact value and gradient, the
standard error measured from the same draws. ENUM on a scalar choice is exact: its draws
have zero spread.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import digamma

import genvi as gv

N = 10_000
K = 5.0


def assert_unbiased(draws, exact, what, k=K):
    """``mean(draws)`` within ``k`` measured standard errors of ``exact`` (element-wise)."""
    draws = np.asarray(draws, np.float64)
    exact = np.asarray(exact, np.float64)
    mean = draws.mean(0)
    se = draws.std(0, ddof=1) / math.sqrt(draws.shape[0])
    tol = k * se + 1e-5 * (1.0 + np.abs(exact))
    err = np.abs(mean - exact)
    assert np.all(err <= tol), f"{what}: mean {mean} vs exact {exact} (se {se}, err {err})"


def run_draws(sample: Callable, f: Callable, params: tuple, n=N, seed=0):
    """N independent (estimate, gradient estimates) of ``E[f(sample(key, *params))]``."""

    @gv.expectation
    def objective(key, *ps):
        return f(sample(key, *ps))

    argnums = tuple(range(len(params)))
    one = lambda k: objective.value_and_grad_estimate(k, *params, argnums=argnums)  # noqa: E731
    keys = jax.random.split(jax.random.key(seed), n)
    return jax.jit(jax.vmap(one))(keys)


class Case(NamedTuple):
    name: str
    dist: gv.Distribution  # the family, default strategy
    sample: Callable  # (dist, key, *params) -> z
    f: Callable  # z -> scalar
    expect: Callable  # *params -> E[f(z)], closed form
    params: tuple


def _s(d, key, *ps):
    return d.sample(key, *ps)


W2 = jnp.array([[1.0, 0.3], [0.3, 2.0]])
A2 = jnp.array([0.5, -1.0])
C3 = jnp.array([1.0, 2.0, 0.5])
CAT = jnp.array([0.0, 1.0, -2.0, 3.0])


def _binom_pmf(n, p):
    return jnp.stack([math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)])


CONTINUOUS = [
    Case(
        "normal",
        gv.normal,
        _s,
        lambda z: z**2 + jnp.sin(z),
        lambda m, s: m**2 + s**2 + jnp.sin(m) * jnp.exp(-(s**2) / 2),
        (0.7, 1.3),
    ),
    Case(
        "mv_normal",
        gv.mv_normal,
        _s,
        lambda z: z @ W2 @ z + A2 @ z,
        lambda m, c: m @ W2 @ m + jnp.trace(W2 @ c) + A2 @ m,
        (jnp.array([0.3, -0.5]), jnp.array([[1.0, 0.4], [0.4, 0.8]])),
    ),
    Case(
        "mv_normal_diag",
        gv.mv_normal_diag,
        _s,
        lambda z: C3 @ z**2 + jnp.sum(jnp.sin(z)),
        lambda m, s: C3 @ (m**2 + s**2) + jnp.sum(jnp.sin(m) * jnp.exp(-(s**2) / 2)),
        (jnp.array([0.2, -0.4, 1.0]), jnp.array([0.5, 1.2, 0.8])),
    ),
    Case(
        "laplace",
        gv.laplace,
        _s,
        lambda z: z**2 + jnp.sin(z),
        lambda m, b: m**2 + 2 * b**2 + jnp.sin(m) / (1 + b**2),
        (0.4, 0.9),
    ),
    Case(
        "uniform",
        gv.uniform,
        _s,
        lambda z: z**2 + jnp.sin(z),
        lambda lo, hi: (lo**2 + lo * hi + hi**2) / 3 + (jnp.cos(lo) - jnp.cos(hi)) / (hi - lo),
        (-0.5, 1.5),
    ),
    Case(
        "exponential",
        gv.exponential,
        _s,
        lambda z: z**2 + jnp.sin(z),
        lambda r: 2 / r**2 + r / (r**2 + 1),
        (1.7,),
    ),
    Case(
        "gamma",
        gv.gamma,
        _s,
        lambda z: z**2 + jnp.log(z),
        lambda a, r: a * (a + 1) / r**2 + digamma(a) - jnp.log(r),
        (2.5, 1.5),
    ),
    Case(
        "beta",
        gv.beta,
        _s,
        lambda z: z**2 + jnp.log(z),
        lambda a, b: a * (a + 1) / ((a + b) * (a + b + 1)) + digamma(a) - digamma(a + b),
        (2.0, 3.0),
    ),
    Case(
        "dirichlet",
        gv.dirichlet,
        _s,
        lambda z: C3 @ z**2 + jnp.log(z[0]),
        lambda al: (
            C3 @ (al * (al + 1)) / (jnp.sum(al) * (jnp.sum(al) + 1))
            + digamma(al[0])
            - digamma(jnp.sum(al))
        ),
        (jnp.array([2.0, 3.0, 1.5]),),
    ),
]

DISCRETE = [
    Case(
        "flip",
        gv.flip,
        _s,
        lambda b: (b + 0.5) ** 2,
        lambda p: p * 1.5**2 + (1 - p) * 0.25,
        (0.3,),
    ),
    Case(
        "bernoulli",
        gv.bernoulli,
        _s,
        lambda b: (b + 0.5) ** 2,
        lambda lg: jax.nn.sigmoid(lg) * 1.5**2 + (1 - jax.nn.sigmoid(lg)) * 0.25,
        (-0.4,),
    ),
    Case(
        "categorical",
        gv.categorical,
        _s,
        lambda k: (k - 1.3) ** 2,
        lambda lg: jax.nn.softmax(lg) @ (jnp.arange(4) - 1.3) ** 2,
        (jnp.array([0.2, -0.5, 1.0, 0.3]),),
    ),
    Case(
        # total_count is static (closed over): ENUM needs it when the program is traced.
        "binomial",
        gv.binomial,
        lambda d, key, p: d.sample(key, 4, p),
        lambda k: (k - 1.0) ** 2,
        lambda p: _binom_pmf(4, p) @ (jnp.arange(5) - 1.0) ** 2,
        (0.35,),
    ),
    Case(
        "poisson",
        gv.poisson,
        _s,
        lambda k: k**2 + 1 / (k + 1),
        lambda r: r + r**2 + (1 - jnp.exp(-r)) / r,
        (1.8,),
    ),
    Case(
        "geometric",
        gv.geometric,
        _s,
        lambda k: k**2 + 0.5**k,
        lambda p: (1 - p) * (2 - p) / p**2 + p / (1 - (1 - p) * 0.5),
        (0.4,),
    ),
]

BY_NAME = {c.name: c for c in CONTINUOUS + DISCRETE}

REPARAM = [c.name for c in CONTINUOUS]
REINFORCE = [c.name for c in CONTINUOUS + DISCRETE if c.name != "uniform"]
MVD = ["normal", "flip", "bernoulli", "categorical", "poisson", "geometric"]
ENUM = ["flip", "bernoulli", "categorical", "binomial"]

TABLE = (
    [(n, "reparam") for n in REPARAM]
    + [(n, "reinforce") for n in REINFORCE]
    + [(n, "mvd") for n in MVD]
)


def _check_case(case: Case, strategy: str, draws):
    value, grads = draws
    exact_value = case.expect(*case.params)
    exact_grads = jax.grad(case.expect, argnums=tuple(range(len(case.params))))(*case.params)
    assert_unbiased(value, exact_value, f"{case.name}.{strategy} value")
    for i, (g, eg) in enumerate(zip(grads, exact_grads, strict=True)):
        assert_unbiased(g, eg, f"{case.name}.{strategy} gradient in parameter {i}")


@pytest.mark.parametrize("name,strategy", TABLE, ids=[f"{n}-{s}" for n, s in TABLE])
def test_strategy_is_unbiased(name, strategy):
    case = BY_NAME[name]
    dist = getattr(case.dist, strategy)
    assert dist.strategy.name == strategy.upper()
    draws = run_draws(lambda key, *ps: case.sample(dist, key, *ps), case.f, case.params)
    _check_case(case, strategy, draws)


@pytest.mark.parametrize("name", ENUM)
def test_enum_on_a_scalar_choice_is_exact(name):
    case = BY_NAME[name]
    dist = case.dist.enum
    value, grads = run_draws(
        lambda key, *ps: case.sample(dist, key, *ps), case.f, case.params, n=64
    )
    exact_value = case.expect(*case.params)
    exact_grads = jax.grad(case.expect, argnums=tuple(range(len(case.params))))(*case.params)
    for got, exact in [(value, exact_value), *zip(grads, exact_grads, strict=True)]:
        assert float(jnp.max(jnp.std(got, 0))) < 1e-6 * (1 + float(jnp.max(jnp.abs(exact))))
        np.testing.assert_allclose(np.asarray(got[0]), np.asarray(exact), rtol=1e-5, atol=1e-6)


# ---- ENUM of array-valued choices: element-wise, unbiased, checked by exhaustive sums ----

WB = jnp.array([1.0, -2.0, 0.5])


def _exhaustive(pmfs, f):
    """``sum over the joint support of prod_i pmfs[i][v_i] * f(v)`` (independent elements)."""
    total = 0.0
    for vs in itertools.product(*[range(len(p)) for p in pmfs]):
        w = 1.0
        for p, v in zip(pmfs, vs, strict=True):
            w = w * p[v]
        total = total + w * f(jnp.array(vs))
    return total


def _flip_pmfs(ps):
    return [jnp.stack([1 - p, p]) for p in ps]


ARRAY_ENUM = [
    Case(
        "flip[3]",
        gv.flip,
        _s,
        lambda b: (WB @ b) ** 2 + b[0] * b[2],
        lambda p: _exhaustive(_flip_pmfs(p), lambda b: (WB @ b) ** 2 + b[0] * b[2]),
        (jnp.array([0.2, 0.6, 0.7]),),
    ),
    Case(
        "bernoulli[3]",
        gv.bernoulli,
        _s,
        lambda b: jnp.sin(WB @ b),
        lambda lg: _exhaustive(_flip_pmfs(jax.nn.sigmoid(lg)), lambda b: jnp.sin(WB @ b)),
        (jnp.array([0.5, -1.0, 0.3]),),
    ),
    Case(
        "categorical[2]",
        gv.categorical,
        _s,
        lambda k: (k[0] - 2.0 * k[1]) ** 2,
        lambda lg: _exhaustive(list(jax.nn.softmax(lg, -1)), lambda k: (k[0] - 2.0 * k[1]) ** 2),
        (jnp.array([[0.1, 1.0, -0.5], [0.4, -0.3, 0.8]]),),
    ),
    Case(
        "binomial[2]",
        gv.binomial,
        lambda d, key, p: d.sample(key, 3, p),
        lambda k: (k[0] * k[1] - 1.0) ** 2,
        lambda p: _exhaustive([_binom_pmf(3, q) for q in p], lambda k: (k[0] * k[1] - 1.0) ** 2),
        (jnp.array([0.3, 0.6]),),
    ),
]


@pytest.mark.parametrize("case", ARRAY_ENUM, ids=[c.name for c in ARRAY_ENUM])
def test_enum_of_an_array_valued_choice_is_unbiased(case):
    dist = case.dist.enum
    draws = run_draws(lambda key, *ps: case.sample(dist, key, *ps), case.f, case.params)
    _check_case(case, "enum", draws)


# ---- defaults and invalid strategies ----

DEFAULTS = {
    "normal": "REPARAM",
    "mv_normal": "REPARAM",
    "mv_normal_diag": "REPARAM",
    "laplace": "REPARAM",
    "uniform": "REPARAM",
    "exponential": "REPARAM",
    "gamma": "REPARAM",
    "beta": "REPARAM",
    "dirichlet": "REPARAM",
    "flip": "REINFORCE",
    "bernoulli": "REINFORCE",
    "categorical": "REINFORCE",
    "binomial": "REINFORCE",
    "poisson": "REINFORCE",
    "geometric": "REINFORCE",
}


def test_default_strategies():
    for name, strategy in DEFAULTS.items():
        assert getattr(gv, name).strategy.name == strategy, name


INVALID = (
    [
        (n, "reparam")
        for n in ["flip", "bernoulli", "categorical", "binomial", "poisson", "geometric"]
    ]
    + [(n, "enum") for n in ["normal", "gamma", "poisson", "geometric", "uniform", "dirichlet"]]
    + [(n, "mvd") for n in ["gamma", "beta", "uniform", "binomial", "dirichlet", "laplace"]]
)


@pytest.mark.parametrize("name,strategy", INVALID, ids=[f"{n}-{s}" for n, s in INVALID])
def test_invalid_strategy_names_the_distribution_and_an_alternative(name, strategy):
    with pytest.raises(gv.StrategyError, match=rf"{strategy.upper()}.*{name}.*{name}\.reinforce"):
        getattr(getattr(gv, name), strategy)


def test_a_baseline_needs_reinforce():
    with pytest.raises(
        gv.StrategyError, match=r"normal.*REPARAM.*normal\.reinforce\.with_baseline"
    ):
        gv.normal.with_baseline(0.0)


def test_reinforce_refuses_a_parameter_that_moves_the_support():
    """The score function misses the boundary term when the support moves with the
    parameter (uniform's bounds): a biased estimator must not be produced silently."""

    @gv.gen
    def model(lo):
        return gv.uniform.reinforce(lo, 2.0) @ "u"

    @gv.expectation
    def objective(key, lo):
        return model.simulate(key, lo).retval ** 2

    with pytest.raises(gv.StrategyError, match=r"REINFORCE at address 'u'.*uniform.*low.*reparam"):
        objective.grad_estimate(jax.random.key(0), 0.0)
    # Without a gradient into the bounds, REINFORCE on uniform is fine (f's own parameter).

    @gv.expectation
    def scaled(key, c):
        return c * model.simulate(key, jax.lax.stop_gradient(0.0)).retval

    draws = jax.jit(jax.vmap(lambda k: scaled.grad_estimate(k, 3.0)))(
        jax.random.split(jax.random.key(1), 2000)
    )
    assert_unbiased(draws, 1.0, "d/dc E[c u], u ~ uniform(0, 2)")
