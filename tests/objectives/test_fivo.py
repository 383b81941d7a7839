"""FIVO against exhaustive enumeration of a tiny particle filter (K = 2, T = 2)."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import logsumexp
from jax.scipy.stats import norm

import genvi as gv

K, T = 2, 2
YS = jnp.array([0.4, 1.7])


@gv.gen
def mstep(z_prev, theta):
    z = gv.flip(jax.nn.sigmoid(theta + 1.5 * z_prev)) @ "z"
    gv.normal(2.0 * z, 1.0) @ "y"
    return 1.0 * z, None  # a float carry, so that gradients may flow into it


@gv.gen
def gstep(c, logit):
    gv.bernoulli(logit) @ "z"
    return c, None


def log_prior(z, z_prev, theta):
    p = jax.nn.sigmoid(theta + 1.5 * z_prev)
    return jnp.where(z == 1, jnp.log(p), jnp.log1p(-p))


def log_q(z, logit):
    return jnp.where(z == 1, jax.nn.log_sigmoid(logit), jax.nn.log_sigmoid(-logit))


def exact(theta, logits, resampling_gradient):
    """E[log Z] over every proposal (2^K per step) and ancestor vector (K^K), and the
    surrogate whose gradient is FIVO's expected gradient (ancestor probabilities held
    fixed when the resampling term is dropped)."""
    total = 0.0
    for z1 in itertools.product([0, 1], repeat=K):
        z1 = jnp.array(z1)
        lq1 = jnp.sum(log_q(z1, logits[0]))
        lw1 = log_prior(z1, 0, theta) + norm.logpdf(YS[0], 2.0 * z1) - log_q(z1, logits[0])
        probs = jax.nn.softmax(lw1)
        if not resampling_gradient:
            probs = jax.lax.stop_gradient(probs)
        for anc in itertools.product(range(K), repeat=K):
            anc = jnp.array(anc)
            p_anc = jnp.prod(probs[anc])
            for z2 in itertools.product([0, 1], repeat=K):
                z2 = jnp.array(z2)
                lq2 = jnp.sum(log_q(z2, logits[1]))
                lw2 = (
                    log_prior(z2, z1[anc], theta)
                    + norm.logpdf(YS[1], 2.0 * z2)
                    - log_q(z2, logits[1])
                )
                log_z = logsumexp(lw1) - jnp.log(K) + logsumexp(lw2) - jnp.log(K)
                total = total + jnp.exp(lq1 + lq2) * p_anc * log_z
    return total


@pytest.mark.parametrize("resampling_gradient", [True, False])
def test_value_and_gradient_against_enumeration(resampling_gradient):
    objective = gv.objectives.fivo(
        gv.scan(mstep), gv.scan(gstep), particles=K, resampling_gradient=resampling_gradient
    )
    theta, logits = 0.2, jnp.array([0.3, -0.4])
    args = ((0.0, jnp.full(T, theta)), (0.0, logits), {"y": YS})
    keys = jax.random.split(jax.random.key(4), 20000)
    v, (g_model, g_guide) = jax.jit(
        jax.vmap(lambda k: objective.value_and_grad_estimate(k, *args, argnums=(0, 1)))
    )(keys)
    n = keys.shape[0]
    want_v = exact(theta, logits, True)
    assert abs(float(v.mean() - want_v)) < 4 * float(v.std()) / np.sqrt(n)
    # the model's steps all take theta: its gradient is the sum over the steps' entries
    got_theta = jnp.sum(g_model[1], axis=-1)
    want_theta, want_logits = jax.grad(exact, argnums=(0, 1))(theta, logits, resampling_gradient)
    se = float(got_theta.std()) / np.sqrt(n)
    assert abs(float(got_theta.mean() - want_theta)) < 4 * se
    se = np.asarray(g_guide[1].std(0)) / np.sqrt(n)
    assert np.all(np.abs(np.asarray(g_guide[1].mean(0) - want_logits)) < 4 * se)


def test_one_particle_is_the_elbo_of_the_chain():
    @gv.gen
    def model(thetas):
        gv.scan(mstep)(0.0, thetas) @ "chain"

    @gv.gen
    def guide(logits):
        gv.scan(gstep)(0.0, logits) @ "chain"

    theta, logits = jnp.full(T, 0.2), jnp.array([0.3, -0.4])
    keys = jax.random.split(jax.random.key(1), 20000)
    f1 = gv.objectives.fivo(gv.scan(mstep), gv.scan(gstep), particles=1)
    e = gv.objectives.elbo(model, guide)
    v_f = jax.vmap(lambda k: f1.estimate(k, (0.0, theta), (0.0, logits), {"y": YS}))(keys)
    v_e = jax.vmap(lambda k: e.estimate(k, (theta,), (logits,), {"chain": {"y": YS}}))(keys)
    se = float(jnp.sqrt(v_f.var() / len(keys) + v_e.var() / len(keys)))
    assert abs(float(v_f.mean() - v_e.mean())) < 4 * se


def test_misuse():
    with pytest.raises(gv.ModelingError, match="gv.scan"):
        gv.objectives.fivo(mstep, gv.scan(gstep))
    objective = gv.objectives.fivo(gv.scan(mstep), gv.scan(gstep), particles=2)
    with pytest.raises(gv.ModelingError, match="3 steps"):
        objective.estimate(jax.random.key(0), (0.0, jnp.zeros(2)), (0.0, jnp.zeros(3)), {"y": YS})
    with pytest.raises(gv.ChoiceTypeError, match="leading time axis"):
        objective.estimate(jax.random.key(0), (0.0, jnp.zeros(2)), (0.0, jnp.zeros(2)), {"y": 1.0})
