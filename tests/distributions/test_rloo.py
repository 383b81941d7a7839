"""RLOO: REINFORCE with a leave-one-out baseline over a choice's own K draws (issue 12)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import genvi as gv

VALUES = jnp.array([1.0, -2.0, 3.0])


def make(dist):
    @gv.gen
    def guide(logits, mu):
        k = dist(logits) @ "k"
        z = gv.normal(mu + VALUES[k], 1.0) @ "z"  # later randomness, REPARAM
        return k, z

    @gv.expectation
    def objective(key, logits, mu):
        k, z = guide.simulate(key, logits, mu).retval
        return jnp.sin(z) + VALUES[k] ** 2

    return objective


def exact(logits, mu):
    # E[sin(z)] for z ~ N(m, 1) is sin(m) exp(-1/2)
    p = jax.nn.softmax(logits)
    return jnp.sum(p * (jnp.sin(mu + VALUES) * jnp.exp(-0.5) + VALUES**2))


LOGITS, MU = jnp.array([0.2, -0.4, 0.1]), 0.3


@pytest.mark.parametrize("strategy", [gv.RLOO, gv.LeaveOneOut(2), gv.LeaveOneOut(7)])
def test_unbiased_against_the_exact_gradient(strategy):
    objective = make(gv.categorical.with_strategy(strategy))
    keys = jax.random.split(jax.random.key(1), 6000)
    v = jax.jit(jax.vmap(lambda k: objective.estimate(k, LOGITS, MU)))(keys)
    g_logits, g_mu = jax.jit(
        jax.vmap(lambda k: objective.grad_estimate(k, LOGITS, MU, argnums=(0, 1)))
    )(keys)
    want_v = exact(LOGITS, MU)
    want_logits, want_mu = jax.grad(exact, argnums=(0, 1))(LOGITS, MU)
    n = keys.shape[0]
    assert abs(float(v.mean() - want_v)) < 4 * float(v.std()) / np.sqrt(n)
    for got, want in ((g_logits, want_logits), (g_mu, want_mu)):
        se = np.asarray(got.std(0)) / np.sqrt(n)
        assert np.all(np.abs(np.asarray(got.mean(0) - want)) < 4 * se + 1e-6)


def test_lower_variance_than_reinforce():
    keys = jax.random.split(jax.random.key(2), 3000)

    def variance(dist):
        objective = make(dist)
        g = jax.jit(jax.vmap(lambda k: objective.grad_estimate(k, LOGITS, MU)))(keys)
        return float(jnp.sum(g.var(0)))

    assert variance(gv.categorical.rloo) < 0.5 * variance(gv.categorical.reinforce)


def test_misuse():
    with pytest.raises(gv.StrategyError, match="samples >= 2"):
        gv.LeaveOneOut(1)
    with pytest.raises(gv.StrategyError, match="samples >= 2"):
        gv.LeaveOneOut(2.5)  # type: ignore[arg-type]

    @gv.gen
    def step(c, p):
        b = gv.flip.rloo(p) @ "b"
        return c + b, None

    @gv.expectation
    def objective(key, ps):
        return gv.scan(step).simulate(key, 0.0, ps).retval[0]

    with pytest.raises(gv.StrategyError, match="loop"):
        objective.grad_estimate(jax.random.key(0), jnp.full(3, 0.4))
    assert repr(gv.LeaveOneOut(3)) == "RLOO(3)" and gv.RLOO.samples == 4
