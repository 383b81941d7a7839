"""Automatic guides in the library's objectives: every guide works with elbo, iwae and
elbo(stl=True); their gradient estimates are unbiased (REPARAM through the bijections,
REINFORCE for discrete factors) and exact with ENUM."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import genvi as gv

from ._exact import KSE, se_mean


@gv.gen
def mixed():
    z = gv.normal(0.0, 1.0) @ "z"
    r = gv.gamma(2.0, 2.0) @ "r"
    k = gv.flip(0.4) @ "k"
    gv.normal(z + k, r) @ "x"


OBS = {"x": 0.7}
KINDS = [
    ("normal", {}),
    ("mvn", {}),
    ("low_rank_mvn", {}),
    ("delta", {}),
    ("iaf", {"flow": "iaf", "layers": 1, "hidden": [8]}),
    ("bnaf", {"flow": "bnaf", "hidden": [4]}),
]


def _make(name, kw, model, obs, **more):
    kind = "flow" if "flow" in kw else name
    return getattr(gv.guides, kind)(model, (), obs, **kw, **more)


@pytest.mark.slow
@pytest.mark.parametrize("name,kw", KINDS, ids=[k for k, _ in KINDS])
def test_every_guide_in_elbo_iwae_and_stl(name, kw):
    guide = _make(name, kw, mixed, OBS)
    params = guide.init(jax.random.key(0))
    objectives = {
        "elbo": gv.objectives.elbo(mixed, guide),
        "iwae": gv.objectives.iwae(mixed, guide, particles=3),
        "stl": gv.objectives.elbo(mixed, guide, stl=True),
    }
    for what, objective in objectives.items():
        if what == "stl" and name == "bnaf":
            with pytest.raises(gv.ModelingError, match="no inverse"):
                objective.estimate(jax.random.key(1), (), (params,), OBS)
            continue
        value, (grad,) = objective.value_and_grad_estimate(
            jax.random.key(1), (), (params,), OBS, argnums=1
        )
        assert np.isfinite(value), (name, what)
        for leaf in jax.tree_util.tree_leaves(grad):
            assert np.all(np.isfinite(leaf)), (name, what)


# ----- unbiased and exact gradients --------------------------------------------------


@gv.gen
def gaussian():
    z = gv.normal(0.5, 1.0) @ "z"
    gv.normal(z, 0.5) @ "x"


def _gaussian_elbo(loc, raw_scale, x=0.3):
    """The closed-form ELBO of q = N(loc, softplus(raw)^2) for z ~ N(0.5, 1), x ~ N(z, 0.5)."""
    s = jax.nn.softplus(raw_scale)
    e_prior = -0.5 * jnp.log(2 * jnp.pi) - 0.5 * ((loc - 0.5) ** 2 + s**2)
    e_lik = -0.5 * jnp.log(2 * jnp.pi * 0.25) - 0.5 * ((x - loc) ** 2 + s**2) / 0.25
    entropy = 0.5 * jnp.log(2 * jnp.pi * jnp.e * s**2)
    return e_prior + e_lik + entropy


@pytest.mark.parametrize("stl", [False, True])
def test_reparam_gradient_is_unbiased(stl):
    guide = gv.guides.normal(gaussian, (), {"x": 0.3})
    params = {"loc": jnp.array([0.2]), "scale": jnp.array([-0.4])}
    objective = gv.objectives.elbo(gaussian, guide, stl=stl)
    keys = jax.random.split(jax.random.key(0), 20_000)
    value, (grad,) = jax.jit(
        jax.vmap(
            lambda k: objective.value_and_grad_estimate(k, (), (params,), {"x": 0.3}, argnums=1)
        )
    )(keys)
    exact, g = jax.value_and_grad(_gaussian_elbo, argnums=(0, 1))(0.2, -0.4)
    for est, ex, what in ((value, exact, "value"), (grad["loc"][:, 0], g[0], "d loc"),
                          (grad["scale"][:, 0], g[1], "d scale")):  # fmt: skip
        err = abs(float(np.mean(est)) - float(ex))
        assert err <= KSE * se_mean(est) + 1e-5, (what, np.mean(est), ex, se_mean(est))


MU = jnp.array([-1.0, 0.5, 2.0])


@gv.gen
def discrete():
    c = gv.categorical(jnp.log(jnp.array([0.2, 0.5, 0.3]))) @ "c"
    b = gv.flip(0.3) @ "b"
    gv.normal(MU[c] + b, 1.0) @ "x"


DOBS = {"x": 0.4}


def _exact_discrete_elbo(params):
    """sum over (c, b) of q(c) q(b) (log p(c, b, x) - log q(c) - log q(b))."""
    lq_c = jax.nn.log_softmax(params["discrete"]["c"])
    lq_b = jax.nn.log_softmax(params["discrete"]["b"])
    total = 0.0
    for c, b in itertools.product(range(3), range(2)):
        logp, _ = discrete.assess({"c": c, "b": b, **DOBS})
        q = jnp.exp(lq_c[c] + lq_b[b])
        total = total + q * (logp - lq_c[c] - lq_b[b])
    return total


DPARAMS = {"discrete": {"b": jnp.array([0.3, -0.2]), "c": jnp.array([0.1, -0.5, 0.4])}}


def test_enum_factors_give_the_exact_elbo_and_gradient():
    guide = gv.guides.normal(discrete, (), DOBS)  # "auto": ENUM for both
    assert all(i.proposal.endswith("ENUM") for i in guide.latents)
    objective = gv.objectives.elbo(discrete, guide)
    exact, g = jax.value_and_grad(_exact_discrete_elbo)(DPARAMS)
    for seed in range(3):
        value, (grad,) = objective.value_and_grad_estimate(
            jax.random.key(seed), (), (DPARAMS,), DOBS, argnums=1
        )
        np.testing.assert_allclose(value, exact, rtol=1e-5)
        for a in ("b", "c"):
            np.testing.assert_allclose(grad["discrete"][a], g["discrete"][a], atol=1e-5)


@pytest.mark.parametrize("strategy", ["reinforce", gv.MVD])
def test_other_strategies_are_unbiased(strategy):
    guide = gv.guides.normal(discrete, (), DOBS, discrete=strategy)
    objective = gv.objectives.elbo(discrete, guide)
    exact, g = jax.value_and_grad(_exact_discrete_elbo)(DPARAMS)
    keys = jax.random.split(jax.random.key(0), 20_000)
    value, (grad,) = jax.jit(
        jax.vmap(lambda k: objective.value_and_grad_estimate(k, (), (DPARAMS,), DOBS, argnums=1))
    )(keys)
    assert abs(np.mean(value) - exact) <= KSE * se_mean(value)
    for a in ("b", "c"):
        est = np.asarray(grad["discrete"][a])
        err = np.abs(est.mean(0) - np.asarray(g["discrete"][a]))
        assert np.all(err <= KSE * se_mean(est) + 1e-6), (a, est.mean(0), g["discrete"][a])


# ----- importance ----------------------------------------------------------------------


def test_importance_constrains_some_latents():
    """The mean-field guide's coordinates are independent: with ``r`` given, ``z`` and
    ``k`` are drawn and the weight is log q(r)."""
    guide = gv.guides.normal(mixed, (), OBS)
    params = guide.init(jax.random.key(0))
    tr, w = guide.importance(jax.random.key(1), {"r": 1.5}, params)
    assert float(tr.choices["r"]) == 1.5
    full, _ = guide.assess(tr.choices, params)
    np.testing.assert_allclose(tr.score, full, rtol=1e-5)
    # log q(r): the normal of log r at its coordinate, with the log-Jacobian of exp
    i = [a for a in guide.addresses if a != ("k",)].index(("r",))
    loc, scale = params["loc"][i], jax.nn.softplus(params["scale"][i])
    expected = jax.scipy.stats.norm.logpdf(jnp.log(1.5), loc, scale) - jnp.log(1.5)
    np.testing.assert_allclose(w, expected, rtol=1e-5)
    tr2, w2 = guide.importance(jax.random.key(1), {}, params)
    assert float(w2) == 0.0
    tr3, w3 = guide.importance(jax.random.key(1), tr.choices, params)
    np.testing.assert_allclose(w3, full, rtol=1e-5)
