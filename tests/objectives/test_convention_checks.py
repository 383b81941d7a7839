"""The objectives' calling convention is checked when the objective is traced."""

from __future__ import annotations

import jax.numpy as jnp
import pytest

import genvi as gv


@gv.gen
def model(theta):
    z = gv.normal(theta, 1.0) @ "z"
    gv.normal(z, 0.5) @ "x"


@gv.gen
def guide(phi):
    gv.normal(phi[0], jnp.exp(phi[1])) @ "z"


@pytest.mark.parametrize(
    "make",
    [
        lambda: gv.objectives.elbo(model, guide),
        lambda: gv.objectives.iwae(model, guide, 3),
        lambda: gv.objectives.renyi(model, guide, 0.5, 3),
        lambda: gv.objectives.vimco(model, guide, 3),
        lambda: gv.objectives.cubo(model, guide, 3),
    ],
)
def test_args_that_are_not_tuples(key, make):
    objective = make()
    with pytest.raises(gv.ChoiceTypeError, match=r"model_args must be a tuple.*\(theta,\)"):
        objective.estimate(key, 0.0, (jnp.zeros(2),), {"x": 1.0})
    with pytest.raises(gv.ChoiceTypeError, match=r"guide_args must be a tuple"):
        objective.estimate(key, (0.0,), jnp.zeros(2), {"x": 1.0})
    with pytest.raises(gv.ChoiceTypeError, match=r"observations must be a choice map"):
        objective.estimate(key, (0.0,), (jnp.zeros(2),), 1.0)


def test_stl_with_a_marginal_guide_is_refused():
    @gv.gen
    def hier(phi):
        u = gv.normal(0.0, 1.0) @ "u"
        gv.normal(phi[0] + u, jnp.exp(phi[1])) @ "z"

    with pytest.raises(gv.StrategyError, match=r"stl=True\) needs a guide with an exact density"):
        gv.objectives.elbo(model, gv.marginal(hier, over="u"), stl=True)
