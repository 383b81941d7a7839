"""jax.random draws inside an expectation whose gradient genvi cannot see."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import pytest

import genvi as gv
from genvi.adev._rawrandom import RawRandomnessWarning


def test_raw_bernoulli_with_a_differentiated_probability_is_refused(key):
    @gv.expectation
    def objective(key, p):
        return jax.random.bernoulli(key, p).astype(float)  # E = p, gradient 1

    # The value alone is fine (nothing is differentiated) ...
    assert objective.estimate(key, 0.3).shape == ()
    # ... but the gradient would be 0 where it is 1.
    with pytest.raises(gv.ModelingError, match=r"jax.random.bernoulli.*gv.flip"):
        objective.grad_estimate(key, 0.3)


def test_raw_categorical_is_refused(key):
    @gv.expectation
    def objective(key, logits):
        return jnp.array([0.0, 1.0, 2.0])[jax.random.categorical(key, logits)]

    with pytest.raises(gv.ModelingError, match=r"jax.random.categorical.*gv.categorical"):
        jax.jit(objective.grad_estimate)(key, jnp.zeros(3))


def test_a_hand_written_threshold_warns(key):
    @gv.expectation
    def objective(key, mu):
        return (mu + jax.random.normal(key) > 0).astype(float)

    with pytest.warns(RawRandomnessWarning, match="discontinuous"):
        objective.grad_estimate(key, 0.3)


def test_pathwise_and_constant_raw_draws_are_fine(key):
    @gv.gen
    def guide(mu):
        gv.normal(mu, 1.0) @ "z"

    @gv.expectation
    def objective(key, mu):
        k1, k2, k3 = jax.random.split(key, 3)
        eps = jax.random.normal(k1)  # pathwise: exact
        keep = jax.random.bernoulli(k2, 0.5)  # a draw that does not depend on mu
        z = guide.simulate(k3, mu).choices["z"]
        return (mu + eps) ** 2 * jnp.where(keep, 1.0, 1.0) + z

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        keys = jax.random.split(key, 20000)
        g = jax.vmap(lambda k: objective.grad_estimate(k, 0.5))(keys)
    # d/dmu E[(mu + eps)^2 + z] = 2 mu + 1 = 2
    assert abs(float(g.mean()) - 2.0) < 4 * float(g.std()) / jnp.sqrt(g.shape[0])


def test_genvi_flip_gives_the_right_gradient_instead(key):
    @gv.gen
    def coin(p):
        gv.flip(p) @ "b"

    @gv.expectation
    def objective(key, p):
        return coin.simulate(key, p).choices["b"].astype(float)

    g = jax.vmap(lambda k: objective.grad_estimate(k, 0.3))(jax.random.split(key, 20000))
    assert abs(float(g.mean()) - 1.0) < 4 * float(g.std()) / jnp.sqrt(g.shape[0])
