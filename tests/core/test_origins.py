"""A guide whose value cannot stand for the model's choice at the same address."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

import genvi as gv


@gv.gen
def normal_model():
    z = gv.normal(0.0, 1.0) @ "z"
    gv.normal(z, 1.0) @ "x"


@gv.gen
def flip_model():
    b = gv.flip(0.3) @ "z"
    gv.normal(b * 1.0, 1.0) @ "x"


@gv.gen
def gamma_model():
    s = gv.gamma(2.0, 1.0) @ "z"
    gv.normal(0.0, s) @ "x"


@gv.gen
def categorical_model():
    k = gv.categorical(jnp.zeros(3)) @ "z"
    gv.normal(k * 1.0, 1.0) @ "x"


@gv.gen
def flip_guide(p):
    gv.flip(p) @ "z"


@gv.gen
def normal_guide(mu):
    gv.normal(mu, 1.0) @ "z"


@gv.gen
def lognormal_guide(mu):
    gv.distribution(__import__("numpyro").distributions.LogNormal)(mu, 1.0) @ "z"


@gv.gen
def categorical_guide(logits):
    gv.categorical(logits) @ "z"


OBS = {"x": 0.5}


def _elbo(model, guide, arg, key):
    return gv.objectives.elbo(model, guide).estimate(key, (), (arg,), OBS)


def test_a_discrete_guide_for_a_continuous_latent(key):
    with pytest.raises(gv.ChoiceTypeError, match=r"address 'z'.*flip in flip_guide.*normal"):
        _elbo(normal_model, flip_guide, 0.5, key)


def test_a_continuous_guide_for_a_discrete_latent(key):
    with pytest.raises(gv.ChoiceTypeError, match=r"address 'z'.*normal in normal_guide.*flip"):
        _elbo(flip_model, normal_guide, 0.5, key)


def test_a_guide_off_the_model_support(key):
    with pytest.raises(gv.ChoiceTypeError, match=r"support is not inside.*gamma"):
        _elbo(gamma_model, normal_guide, 0.5, key)
    with pytest.raises(gv.ChoiceTypeError, match=r"support is not inside"):
        _elbo(flip_model, categorical_guide, jnp.zeros(3), key)  # {0,1,2} vs {0,1}


def test_compatible_guides_are_accepted(key):
    assert jnp.isfinite(_elbo(gamma_model, lognormal_guide, 0.0, key))
    assert jnp.isfinite(_elbo(categorical_model, categorical_guide, jnp.zeros(3), key))
    assert jnp.isfinite(_elbo(flip_model, flip_guide, 0.4, key))
    # a hand-written choice map (no origin) is not checked here
    logp, _ = flip_model.assess({"z": 1, "x": 0.0})
    assert jnp.isfinite(logp)


def test_the_check_reaches_inside_vmap_and_scan_and_jit(key):
    @gv.gen
    def point(_):
        z = gv.normal(0.0, 1.0) @ "z"
        gv.normal(z, 1.0) @ "x"

    @gv.gen
    def point_guide(p):
        gv.flip(p) @ "z"

    model = gv.vmap(point)
    guide = gv.vmap(point_guide)
    obj = gv.objectives.elbo(model, guide)
    with pytest.raises(gv.ChoiceTypeError, match="flip in point_guide"):
        jax.jit(obj.estimate)(key, (jnp.zeros(4),), (jnp.full(4, 0.5),), {"x": jnp.zeros(4)})

    @gv.gen
    def step(c, _):
        z = gv.normal(c, 1.0) @ "z"
        return z, None

    @gv.gen
    def step_guide(c, _):
        gv.flip(0.5) @ "z"
        return c, None

    tr = gv.scan(step_guide, length=3).simulate(key, 0.0, None)
    with pytest.raises(gv.ChoiceTypeError, match="flip in step_guide"):
        gv.scan(step, length=3).assess(tr.choices, 0.0, None)


def test_switch_and_scan_arguments(key):
    @gv.gen
    def a():
        return gv.normal(0.0, 1.0) @ "x"

    sw = gv.switch(a, a)
    with pytest.raises(gv.ModelingError, match="branch index 2 is out of range"):
        sw.simulate(key, 2)
    with pytest.raises(gv.ModelingError, match="branch index -1 is out of range"):
        sw.simulate(key, -1)
    # gv.cond takes a predicate: any nonzero value is true
    c = gv.cond(a, a)
    assert c.simulate(key, 5).choices.has("x")
    with pytest.raises(gv.ModelingError, match="length must be a non-negative int"):
        gv.scan(a, length=-1)
