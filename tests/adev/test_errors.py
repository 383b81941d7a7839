"""Errors of the estimator transformation: each names the culprit (address, shape,
argument) and says what to use instead."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

import genvi as gv

KEY = jax.random.key(0)


def test_objective_must_return_a_float_scalar():
    @gv.expectation
    def vector(key, mu):
        return gv.normal.sample(key, jnp.full(3, mu), 1.0)

    with pytest.raises(
        gv.ModelingError, match=r"vector must return one float scalar.*float32\[3\].*jnp\.sum"
    ):
        vector.estimate(KEY, 0.0)
    with pytest.raises(gv.ModelingError, match=r"float32\[3\]"):
        vector.grad_estimate(KEY, 0.0)

    @gv.expectation
    def integer(key, p):
        return gv.flip.sample(key, p)

    with pytest.raises(gv.ModelingError, match=r"int32\[\]"):
        integer.estimate(KEY, 0.5)


@pytest.mark.parametrize("strategy", ["enum", "mvd"])
def test_enum_and_mvd_inside_gv_scan_name_the_address(strategy):
    @gv.gen
    def step(c, _):
        b = getattr(gv.flip, strategy)(0.3) @ "b"
        return c + b, None

    @gv.gen
    def chain(p):
        return gv.scan(step, length=3)(p, None) @ "steps"

    @gv.expectation
    def objective(key, p):
        return chain.simulate(key, p).retval[0]

    with pytest.raises(
        gv.StrategyError,
        match=rf"{strategy.upper()} at address \('steps', 'b'\) \(flip\) is inside a "
        r"compiled loop.*flip\.reinforce",
    ):
        objective.grad_estimate(KEY, 1.0)


def test_enum_inside_lax_scan_suggests_reinforce_or_reparam():
    @gv.expectation
    def objective(key, mu):
        def body(c, k):
            return c + gv.normal.mvd.sample(k, mu, 1.0), None

        return jax.lax.scan(body, 0.0, jax.random.split(key, 3))[0]

    with pytest.raises(
        gv.StrategyError,
        match=r"MVD at an anonymous sample \(normal\).*normal\.reinforce or normal\.reparam",
    ):
        objective.grad_estimate(KEY, 1.0)


def test_random_choices_in_a_while_loop_with_a_gradient_flowing():
    @gv.expectation
    def objective(key, mu):
        def body(c):
            x, k = c
            k, k1 = jax.random.split(k)
            return x + jnp.abs(gv.normal.sample(k1, mu, 1.0)), k

        return jax.lax.while_loop(lambda c: c[0] < 3.0, body, (0.0, key))[0]

    with pytest.raises(
        gv.StrategyError, match=r"while_loop.*gradient flows into.*jax\.lax\.scan or gv\.scan"
    ):
        objective.grad_estimate(KEY, 0.5)
    # With no gradient flowing into the loop it simply samples.
    assert objective.estimate(KEY, 0.5) >= 3.0

    @gv.expectation
    def outside(key, mu):
        def body(c):
            x, k = c
            k, k1 = jax.random.split(k)
            return x + jnp.abs(gv.normal.sample(k1, 0.0, 1.0)), k

        return mu * jax.lax.while_loop(lambda c: c[0] < 3.0, body, (0.0, key))[0]

    g = outside.grad_estimate(KEY, 0.5)
    assert g == outside.estimate(KEY, 1.0)


def test_argnums_out_of_range_and_on_integers():
    @gv.expectation
    def objective(key, mu, n):
        return mu * n

    with pytest.raises(
        gv.ModelingError, match=r"argnums=2 but the objective takes 2 argument\(s\) after the key"
    ):
        objective.grad_estimate(KEY, 1.0, 3, argnums=2)
    with pytest.raises(gv.ModelingError, match=r"argnums=\(0, 5\)"):
        objective.grad_estimate(KEY, 1.0, 3, argnums=(0, 5))
    with pytest.raises(TypeError, match=r"argument 1 \(after the key\).*int32.*float"):
        objective.grad_estimate(KEY, 1.0, 3, argnums=1)
    # An integer argument that is not differentiated is fine.
    assert objective.grad_estimate(KEY, 1.0, 3) == 3.0


def test_baseline_shape_must_match_the_choice():
    @gv.expectation
    def objective(key, mu):
        ks = jax.random.split(key, 3)
        # A baseline closed over as an array, not mapped with the particles.
        b = jnp.array([1.0, 2.0])
        z = jax.vmap(lambda k: gv.normal.reinforce.with_baseline(b).sample(k, mu, 1.0))(ks)
        return jnp.sum(z)

    with pytest.raises(
        gv.StrategyError, match=r"baseline.*shape \(3, 2\).*\(3,\).*one scalar baseline"
    ):
        objective.grad_estimate(KEY, 0.0)


def test_enum_of_binomial_with_a_traced_count_names_the_address():
    @gv.gen
    def model(n, p):
        return gv.binomial.enum(n, p) @ "k"

    @gv.expectation
    def objective(key, n, p):
        return model.simulate(key, n, p).retval * 1.0

    with pytest.raises(
        gv.StrategyError, match=r"at address 'k'.*binomial needs a total_count known"
    ):
        objective.grad_estimate(KEY, 3, 0.5, argnums=1)
