"""gf.with_strategies({...}): gradient strategies set from outside the program, by address
(API.md section 6; issue 12 item 1)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import genvi as gv
from genvi.distributions._primitive import sample_p


def strategies_in(fn, *args) -> dict:
    """``{address: strategy name}`` of every choice staged by ``fn(*args)``."""
    from jax.extend.core import subjaxprs

    out = {}

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive is sample_p:
                out[eqn.params["addr"]] = eqn.params["strategy"].name
        for sub in subjaxprs(jaxpr):
            walk(sub)

    walk(jax.make_jaxpr(fn)(*args).jaxpr)
    return out


@gv.gen
def layer(p):
    b = gv.flip(p) @ "b"
    z = gv.normal(p, 1.0) @ "z"
    return b, z


@gv.gen
def guide(p):
    a = gv.flip(p) @ "a"
    b, z = layer(p) @ "layer"
    return a, b, z


def test_strategies_are_replaced_by_address_and_the_original_is_unchanged(key):
    g2 = guide.with_strategies({"a": gv.ENUM, ("layer", "b"): gv.MVD})
    assert strategies_in(lambda k: g2.simulate(k, 0.3).score, key) == {
        ("a",): "ENUM",
        ("layer", "b"): "MVD",
        ("layer", "z"): "REPARAM",
    }
    assert strategies_in(lambda k: guide.simulate(k, 0.3).score, key) == {
        ("a",): "REINFORCE",
        ("layer", "b"): "REINFORCE",
        ("layer", "z"): "REPARAM",
    }


def test_a_call_address_covers_every_choice_under_it_and_the_longest_wins(key):
    g2 = guide.with_strategies({"layer": gv.REINFORCE, ("layer", "b"): gv.ENUM})
    assert strategies_in(lambda k: g2.simulate(k, 0.3).score, key) == {
        ("a",): "REINFORCE",
        ("layer", "b"): "ENUM",
        ("layer", "z"): "REINFORCE",
    }


def test_the_outer_assignment_wins_and_addresses_are_relative(key):
    inner = layer.with_strategies({"b": gv.ENUM})

    @gv.gen
    def outer(p):
        inner(p) @ "part"

    assert strategies_in(lambda k: outer.simulate(k, 0.3).score, key)[("part", "b")] == "ENUM"
    both = outer.with_strategies({("part", "b"): gv.MVD})
    assert strategies_in(lambda k: both.simulate(k, 0.3).score, key)[("part", "b")] == "MVD"


def test_enum_set_from_outside_gives_the_exact_gradient(key):
    # E[a + 2 b + z] with a, b ~ flip(p), z ~ N(p, 1): d/dp = 1 + 2 + 1 = 4, exactly with
    # ENUM for both flips (and REPARAM for z, whose pathwise derivative is 1 per sample).
    g2 = guide.with_strategies({"a": gv.ENUM, ("layer", "b"): gv.ENUM})

    @gv.expectation
    def objective(key, p):
        a, b, z = g2.simulate(key, p).retval
        return a + 2.0 * b + z

    for k in jax.random.split(key, 3):
        np.testing.assert_allclose(jax.jit(objective.grad_estimate)(k, 0.3), 4.0, rtol=1e-5)


def test_mvd_set_from_outside_is_unbiased(key):
    # d/dp E[(a - 0.2)^2 ...] for a ~ flip(p): E = p (0.8)^2 + (1 - p) (0.2)^2, d/dp = 0.6
    g2 = guide.with_strategies({"a": gv.MVD})

    @gv.expectation
    def objective(key, p):
        a, _, _ = g2.simulate(key, p).retval
        return (a - 0.2) ** 2

    grads = jax.vmap(lambda k: objective.grad_estimate(k, 0.3))(jax.random.split(key, 4000))
    se = float(jnp.std(grads)) / np.sqrt(grads.shape[0])
    assert abs(float(jnp.mean(grads)) - 0.6) < 4 * se + 1e-6


def test_inside_vmap_and_scan(key):
    @gv.gen
    def point(p):
        gv.flip(p) @ "c"

    @gv.gen
    def step(s, p):
        z = gv.normal(p + 0.5 * s, 1.0) @ "z"
        return z, None

    @gv.gen
    def program(ps):
        gv.vmap(point)(ps) @ "pts"
        gv.scan(step)(0.0, ps) @ "chain"

    g2 = program.with_strategies({("pts", "c"): gv.ENUM, ("chain", "z"): gv.REINFORCE})
    ps = jnp.linspace(0.2, 0.8, 4)
    assert strategies_in(lambda k: g2.simulate(k, ps).score, key) == {
        ("pts", "c"): "ENUM",
        ("chain", "z"): "REINFORCE",
    }

    # the vmapped flips, enumerated: E[sum_i c_i] = sum_i p_i, gradient 1 per element
    @gv.gen
    def points(ps):
        gv.vmap(point)(ps) @ "pts"

    enumerated = points.with_strategies({("pts", "c"): gv.ENUM})

    @gv.expectation
    def count(key, ps):
        return jnp.sum(1.0 * enumerated.simulate(key, ps).choices["pts", "c"])

    np.testing.assert_allclose(count.grad_estimate(key, ps), jnp.ones(4), rtol=1e-5)


def test_enum_inside_a_scan_is_refused_there(key):
    @gv.gen
    def step(s, p):
        b = gv.flip(p) @ "b"
        return s + b, None

    chain = gv.scan(step).with_strategies({"b": gv.ENUM})

    @gv.expectation
    def objective(key, ps):
        return chain.simulate(key, 0.0, ps).retval[0]

    with pytest.raises(gv.StrategyError, match="loop"):
        objective.grad_estimate(key, jnp.full(3, 0.4))


def test_under_jit_and_in_a_library_objective(key):
    @gv.gen
    def model():
        b = gv.flip(0.5) @ "b"
        gv.normal(2.0 * b, 1.0) @ "x"

    @gv.gen
    def q(logit):
        gv.bernoulli(logit) @ "b"

    objective = gv.objectives.elbo(model, q.with_strategies({"b": gv.ENUM}))
    g = jax.jit(lambda k, logit: objective.grad_estimate(k, (), (logit,), {"x": 1.5}))
    g1, g2 = g(key, 0.1), g(jax.random.key(7), 0.1)
    np.testing.assert_allclose(g1, g2, rtol=1e-6)  # exact: the same for every key


def test_misuse_errors(key):
    with pytest.raises(gv.AddressError, match=r"no choice of guide is at 'nope'.*'a'"):
        guide.with_strategies({"nope": gv.ENUM}).simulate(key, 0.3)
    with pytest.raises(gv.AddressError, match="layer"):
        guide.with_strategies({("layer", "zz"): gv.ENUM}).simulate(key, 0.3)
    with pytest.raises(gv.StrategyError, match=r"REPARAM.*flip.*'layer'.*'b'"):
        guide.with_strategies({("layer", "b"): gv.REPARAM}).simulate(key, 0.3)
    with pytest.raises(gv.StrategyError, match=r"ENUM.*normal"):
        guide.with_strategies({("layer", "z"): gv.ENUM}).simulate(key, 0.3)
    with pytest.raises(gv.StrategyError, match="with_baseline"):
        guide.with_strategies({"a": gv.Baselined()})
    with pytest.raises(TypeError, match="not a gradient strategy"):
        guide.with_strategies({"a": "enum"})
    with pytest.raises(TypeError, match="mapping"):
        guide.with_strategies([("a", gv.ENUM)])
    with pytest.raises(ValueError, match="no address"):
        guide.with_strategies({})


def test_assess_checks_addresses_against_the_given_choices():
    g2 = guide.with_strategies({"a": gv.ENUM})
    choices = {"a": 1, "layer": {"b": 0, "z": 0.1}}
    np.testing.assert_allclose(g2.assess(choices, 0.3)[0], guide.assess(choices, 0.3)[0])
    with pytest.raises(gv.AddressError):
        guide.with_strategies({"q": gv.ENUM}).assess(choices, 0.3)
