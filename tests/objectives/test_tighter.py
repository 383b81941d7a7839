"""MIWAE, CIWAE and PIWAE (Rainforth et al., 2018) against exact values."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import logsumexp
from jax.scipy.stats import norm

import genvi as gv

PRIOR, LOC = 0.3, 2.0


@gv.gen
def model(theta):
    z = gv.flip(PRIOR) @ "z"
    gv.normal(LOC * z + theta, 1.0) @ "x"


@gv.gen
def guide(logit):
    gv.bernoulli(logit) @ "z"


X = 1.2


def log_w(z, theta, logit):
    """log p(x, z) - log q(z) for the flip model, by hand."""
    log_p = jnp.where(z == 1, jnp.log(PRIOR), jnp.log1p(-PRIOR)) + norm.logpdf(X, LOC * z + theta)
    log_q = jnp.where(z == 1, jax.nn.log_sigmoid(logit), jax.nn.log_sigmoid(-logit))
    return log_p - log_q


def exact(bound, n, theta, logit):
    """E over all 2^n particle configurations of bound(log weights), by enumeration."""
    total = 0.0
    for zs in itertools.product([0, 1], repeat=n):
        z = jnp.array(zs)
        lq = jnp.sum(jnp.where(z == 1, jax.nn.log_sigmoid(logit), jax.nn.log_sigmoid(-logit)))
        total = total + jnp.exp(lq) * bound(log_w(z, theta, logit))
    return total


def lme(x, axis=None):
    n = x.shape[0] if axis is None else x.shape[axis]
    return logsumexp(x, axis=axis) - jnp.log(n)


CASES = {
    "miwae": (
        lambda: gv.objectives.miwae(model, guide, outer=2, particles=2),
        4,
        lambda lw: jnp.mean(lme(lw.reshape(2, 2), axis=1)),
    ),
    "ciwae": (
        lambda: gv.objectives.ciwae(model, guide, beta=0.3, particles=3),
        3,
        lambda lw: 0.3 * jnp.mean(lw) + 0.7 * lme(lw),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_value_and_gradient_match_exhaustive_enumeration(name):
    make, n, bound = CASES[name]
    objective = make()
    theta, logit = 0.1, 0.4
    args = ((theta,), (logit,), {"x": X})
    keys = jax.random.split(jax.random.key(3), 20000)
    vals = jax.jit(jax.vmap(lambda k: objective.estimate(k, *args)))(keys)
    want = exact(bound, n, theta, logit)
    se = float(jnp.std(vals)) / np.sqrt(vals.shape[0])
    assert abs(float(jnp.mean(vals)) - float(want)) < 4 * se

    grads = jax.jit(jax.vmap(lambda k: objective.grad_estimate(k, *args, argnums=(0, 1))))(keys)
    g_theta, g_logit = grads[0][0], grads[1][0]
    want_theta, want_logit = jax.grad(lambda t, lg: exact(bound, n, t, lg), argnums=(0, 1))(
        theta, logit
    )
    for got, w in ((g_theta, want_theta), (g_logit, want_logit)):
        se = float(jnp.std(got)) / np.sqrt(got.shape[0])
        assert abs(float(jnp.mean(got)) - float(w)) < 4 * se


def test_ciwae_endpoints_are_elbo_and_iwae():
    args = ((0.1,), (0.4,), {"x": X})
    key = jax.random.key(0)
    lw = gv.objectives.log_weights(key, 3, model, guide, *args)
    v1 = gv.objectives.ciwae(model, guide, beta=1.0, particles=3).estimate(key, *args)
    v0 = gv.objectives.ciwae(model, guide, beta=0.0, particles=3).estimate(key, *args)
    np.testing.assert_allclose(v1, jnp.mean(lw), rtol=1e-6)
    np.testing.assert_allclose(v0, lme(lw), rtol=1e-6)
    np.testing.assert_allclose(v0, gv.objectives.iwae(model, guide, 3).estimate(key, *args))
    with pytest.raises(ValueError, match="beta"):
        gv.objectives.ciwae(model, guide, beta=1.5)


@gv.gen
def gmodel(theta):
    z = gv.normal(theta, 1.0) @ "z"
    gv.normal(z, 0.5) @ "x"


@gv.gen
def gguide(phi):
    gv.normal(phi[0], jnp.exp(phi[1])) @ "z"


def test_piwae_trains_the_model_on_iwae_and_the_guide_on_miwae():
    # on the same key the particles are the same: each gradient equals its bound's exactly
    args = ((0.3,), (jnp.array([0.2, -0.5]),), {"x": 1.0})
    key = jax.random.key(5)
    p = gv.objectives.piwae(gmodel, gguide, outer=3, particles=4)
    v, (g_theta, g_phi) = p.value_and_grad_estimate(key, *args, argnums=(0, 1))
    iwae = gv.objectives.iwae(gmodel, gguide, particles=12)
    miwae = gv.objectives.miwae(gmodel, gguide, outer=3, particles=4)
    v_iwae, (gi_theta, _) = iwae.value_and_grad_estimate(key, *args, argnums=(0, 1))
    _, (_, gm_phi) = miwae.value_and_grad_estimate(key, *args, argnums=(0, 1))
    np.testing.assert_allclose(v, v_iwae, rtol=1e-5)
    np.testing.assert_allclose(g_theta[0], gi_theta[0], rtol=1e-4)
    np.testing.assert_allclose(g_phi[0], gm_phi[0], rtol=1e-4, atol=1e-6)


def test_piwae_needs_a_reparameterized_guide():
    with pytest.raises(gv.StrategyError, match="piwae"):
        gv.objectives.piwae(model, guide).estimate(jax.random.key(0), (0.1,), (0.4,), {"x": X})
    with pytest.raises(ValueError, match="particles"):
        gv.objectives.miwae(model, guide, outer=0)
