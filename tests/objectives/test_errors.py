"""Mistakes in a model/guide pair, reported through the objectives, naming the culprit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

import genvi as gv

KEY = jax.random.key(0)


@gv.gen
def model():
    z1 = gv.normal(0.0, 1.0) @ "z1"
    z2 = gv.normal(z1, 1.0) @ "z2"
    gv.normal(z2, 0.5) @ "x"


@gv.gen
def good_guide(phi):
    gv.normal(phi, 1.0) @ "z1"
    gv.normal(phi, 1.0) @ "z2"


@gv.gen
def extra_guide(phi):
    gv.normal(phi, 1.0) @ "z1"
    gv.normal(phi, 1.0) @ "z2"
    gv.normal(phi, 1.0) @ "w"


@gv.gen
def missing_guide(phi):
    gv.normal(phi, 1.0) @ "z1"


@gv.gen
def shape_guide(phi):
    gv.normal(phi, 1.0) @ "z1"
    gv.normal(jnp.full(3, phi), 1.0) @ "z2"


@gv.gen
def observed_guide(phi):
    gv.normal(phi, 1.0) @ "z1"
    gv.normal(phi, 1.0) @ "z2"
    gv.normal(phi, 1.0) @ "x"


OBJECTIVES = {
    "elbo": lambda g: gv.objectives.elbo(model, g),
    "iwae": lambda g: gv.objectives.iwae(model, g, 3),
    "vimco": lambda g: gv.objectives.vimco(model, g, 3),
    "renyi": lambda g: gv.objectives.renyi(model, g, 0.5, 3),
    "wake_guide": lambda g: gv.objectives.rws(model, g, 3).wake_guide,
}


def _run(obj):
    return obj.grad_estimate(KEY, (), (0.1,), {"x": 1.0}, argnums=1)


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_guide_visits_an_address_the_model_does_not_have(name):
    with pytest.raises(
        gv.AddressError,
        match=r"(?s)'w'.*never visits.*the guide samples 'w', which the model does not have",
    ):
        _run(OBJECTIVES[name](extra_guide))


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_guide_misses_a_latent(name):
    with pytest.raises(
        gv.AddressError,
        match=r"(?s)address 'z2'.*the model needs 'z2', which the guide does not sample",
    ):
        _run(OBJECTIVES[name](missing_guide))


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_shapes_of_model_and_guide_disagree(name):
    with pytest.raises(
        gv.ChoiceTypeError,
        match=r"(?s)at 'z2' the guide's value has shape \(3,\) but the model's has shape \(\)",
    ):
        _run(OBJECTIVES[name](shape_guide))


def test_guide_samples_an_observed_address():
    with pytest.raises(gv.AddressError, match="guide samples 'x', which is also given as"):
        _run(gv.objectives.elbo(model, observed_guide))


def test_a_correct_pair_runs():
    g = _run(gv.objectives.elbo(model, good_guide))
    assert jnp.isfinite(g[0])


@pytest.mark.parametrize(
    "make",
    [
        lambda: gv.objectives.iwae(model, good_guide, 0),
        lambda: gv.objectives.renyi(model, good_guide, 0.5, 0),
        lambda: gv.objectives.cubo(model, good_guide, particles=-1),
        lambda: gv.objectives.rws(model, good_guide, 0),
        lambda: gv.objectives.iwae(model, good_guide, 2.5),
        lambda: gv.objectives.vimco(model, good_guide, 1),
        lambda: gv.objectives.iwhvi(model, good_guide, "z1", inner_particles=0),
        lambda: gv.objectives.diwhvi(model, good_guide, "z1", particles=0),
        lambda: gv.marginal(model, "z1", particles=0),
        lambda: gv.normalize(model, {"x": 1.0}, good_guide, particles=0),
    ],
)
def test_particle_counts_below_one(make):
    with pytest.raises(ValueError, match="particles must be an int >= "):
        make()
