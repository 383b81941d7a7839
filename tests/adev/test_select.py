"""gv.select_strategies: strategies chosen by measured variance x time (issue 12 item 2)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import genvi as gv


@gv.gen
def mixture():
    k = gv.categorical(jnp.zeros(3)) @ "k"
    gv.normal(jnp.array([-2.0, 0.0, 2.0])[k], 1.0) @ "x"


@gv.gen
def cat_guide(logits):
    gv.categorical(logits) @ "k"


def elbo_of(model):
    return lambda g: gv.objectives.elbo(model, g)


ARGS = ((), (jnp.array([0.3, -0.2, 0.1]),), {"x": 1.0})


def test_picks_enum_where_it_is_exact(key):
    # ENUM of a 3-valued categorical is exact (zero variance); MVD and REINFORCE are not
    sel = gv.select_strategies(elbo_of(mixture), cat_guide, ARGS, key=key, argnums=1)
    assert sel.strategies[("k",)] is gv.ENUM
    assert sel.best.variance == 0.0
    rows = {m.strategies[("k",)]: m for m in sel.table}
    # REPARAM does not apply: not tried
    assert set(rows) == {"REINFORCE", "RLOO", "UNORDERED_SET", "ENUM", "MVD"}
    assert rows["REINFORCE"].variance > rows["UNORDERED_SET"].variance > 0.0
    assert rows["REINFORCE"].variance > rows["RLOO"].variance > 0.0
    assert rows["MVD"].variance > 0.0
    assert sel.start.strategies == {("k",): "REINFORCE"}  # the guide's own strategy
    # the chosen guide computes the exact gradient: the same on every key
    g = gv.objectives.elbo(mixture, sel.guide)
    g1 = g.grad_estimate(key, *ARGS, argnums=1)
    g2 = g.grad_estimate(jax.random.key(11), *ARGS, argnums=1)
    np.testing.assert_allclose(g1[0][0], g2[0][0], rtol=1e-5)
    assert "chosen" in str(sel) and "REINFORCE" in sel.markdown()


@gv.gen
def gauss(mu):
    z = gv.normal(mu, 1.0) @ "z"
    gv.normal(z, 1.0) @ "x"


@gv.gen
def normal_guide(mu):
    gv.normal(mu, 1.0) @ "z"


def test_picks_reparam_on_a_continuous_choice(key):
    # E_q[log p(x, z) - log q(z)] with z ~ N(m, 1): the integrand is quadratic in z, so
    # the pathwise gradient in m is linear in z; REINFORCE's score terms are far noisier
    sel = gv.select_strategies(
        elbo_of(gauss), normal_guide, ((0.0,), (0.5,), {"x": 1.0}), key=key, argnums=1
    )
    rows = {m.strategies[("z",)]: m for m in sel.table}
    assert rows["REPARAM"].variance < rows["REINFORCE"].variance
    assert sel.strategies[("z",)] is not gv.REINFORCE
    linear = gv.select_strategies(
        lambda g: _linear(g), normal_guide, (jnp.linspace(0.0, 1.0, 8),), key=key
    )
    # a linear objective: REPARAM's gradient is exact (zero variance), the others' are not
    assert linear.strategies[("z",)] is gv.REPARAM
    assert linear.best.variance == pytest.approx(0.0, abs=1e-10)


def _linear(g):
    @gv.expectation
    def objective(key, mu):
        return jnp.sum(3.0 * g.simulate(key, mu).choices["z"])

    return objective


def test_several_choices_greedily(key):
    @gv.gen
    def guide(p, mu):
        gv.flip(p) @ "b"
        gv.normal(mu, 1.0) @ "z"

    def make(g):
        @gv.expectation
        def objective(key, p, mu):
            ch = g.simulate(key, p, mu).choices
            return 5.0 * ch["b"] + 2.0 * ch["z"]

        return objective

    sel = gv.select_strategies(make, guide, (0.3, 0.0), key=key, argnums=(0, 1))
    assert sel.strategies[("b",)] in (gv.ENUM, gv.MVD)  # both exact for a flip
    assert sel.strategies[("z",)] is gv.REPARAM
    assert sel.best.variance == pytest.approx(0.0, abs=1e-8)


def test_choices_that_cannot_run_are_listed_not_chosen(key):
    @gv.gen
    def step(c, p):
        b = gv.flip(p) @ "b"
        return c + b, None

    @gv.gen
    def guide(ps):
        gv.scan(step)(0.0, ps) @ "chain"

    def make(g):
        @gv.expectation
        def objective(key, ps):
            return 1.0 * jnp.sum(g.simulate(key, ps).choices["chain", "b"])

        return objective

    sel = gv.select_strategies(make, guide, (jnp.full(3, 0.4),), key=key, samples=8)
    errors = [m for m in sel.table if m.error is not None]
    assert {m.strategies[("chain", "b")] for m in errors} == {
        "RLOO",
        "UNORDERED_SET",
        "REBAR",
        "ENUM",
        "MVD",
    }
    assert all("loop" in m.error for m in errors)
    assert sel.strategies[("chain", "b")] is gv.REINFORCE


def test_budget_and_candidates(key):
    sel = gv.select_strategies(elbo_of(mixture), cat_guide, ARGS, key=key, argnums=1, budget_s=0)
    assert len(sel.table) == 1 and len(sel.skipped) == 4  # only the start was measured
    assert sel.strategies[("k",)] is gv.REINFORCE and sel.guide is cat_guide
    only = gv.select_strategies(
        elbo_of(mixture), cat_guide, ARGS, key=key, argnums=1, candidates=[gv.MVD]
    )
    assert {m.strategies[("k",)] for m in only.table} == {"REINFORCE", "MVD"}
    assert only.strategies[("k",)] is gv.MVD


def test_misuse(key):
    with pytest.raises(gv.AddressError, match="'nope'"):
        gv.select_strategies(
            elbo_of(mixture), cat_guide, ARGS, key=key, argnums=1, candidates={"nope": [gv.ENUM]}
        )
    with pytest.raises(ValueError, match="samples"):
        gv.select_strategies(elbo_of(mixture), cat_guide, ARGS, key=key, samples=1)
    with pytest.raises(gv.ChoiceTypeError):
        gv.select_strategies(elbo_of(mixture), cat_guide, ARGS, key=0)
    with pytest.raises(gv.AddressError, match="no random choice"):
        gv.select_strategies(lambda g: _ignores(), cat_guide, (0.0,), key=key)


def _ignores():
    @gv.expectation
    def objective(key, x):
        return x * 2.0

    return objective
