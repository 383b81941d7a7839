"""gv.normalize (SIR): unbiased normalizing constant, density and reciprocal-density
estimates, exact by enumeration; as a guide it turns the ELBO into IWAE."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import norm

import genvi as gv

from ._stats import assert_unbiased, draws

MU = jnp.array([-1.0, 0.0, 2.0])
X = 0.3
THETA = jnp.array([0.2, -0.3, 0.1])
PHI = jnp.array([-0.4, 0.5, 0.1])
K = 3


@gv.gen
def model(theta):
    z = gv.categorical(theta) @ "z"
    gv.normal(MU[z], 1.0) @ "x"


def proposal_with(dist):
    @gv.gen
    def proposal(phi):
        dist(phi) @ "z"

    return proposal


proposal = proposal_with(gv.categorical)


def log_gamma(theta):
    return jax.nn.log_softmax(theta) + norm.logpdf(X, MU, 1.0)


def logw(theta, phi):
    return log_gamma(theta) - jax.nn.log_softmax(phi)


def q_sir(theta, phi, k=K):
    """The law of the SIR draw, by enumerating the other k - 1 particles:
    q_SIR(z) = E[gamma(z) / Zhat(z, others)]."""
    lw, lq = logw(theta, phi), jax.nn.log_softmax(phi)
    out = []
    for z in range(3):
        total = 0.0
        for others in itertools.product(range(3), repeat=k - 1):
            p = jnp.exp(sum(lq[o] for o in others))
            zhat = (jnp.exp(lw[z]) + sum(jnp.exp(lw[o]) for o in others)) / k
            total = total + p * jnp.exp(log_gamma(theta)[z]) / zhat
        out.append(total)
    return jnp.stack(out)


def test_exact_q_sir_is_a_distribution_between_proposal_and_posterior():
    qs = q_sir(THETA, PHI)
    post = jax.nn.softmax(log_gamma(THETA))
    prop = jax.nn.softmax(PHI)
    assert jnp.allclose(jnp.sum(qs), 1.0, atol=1e-6)
    assert jnp.sum(jnp.abs(qs - post)) < jnp.sum(jnp.abs(prop - post))


def test_normalizer_density_and_reciprocal_estimates_are_unbiased():
    post = gv.normalize(model, {"x": X}, proposal, K)
    qs = q_sir(THETA, PHI)

    def one(key):
        k1, k2, k3 = jax.random.split(key, 3)
        zhat = jnp.exp(post.estimate_log_normalizer(k1, (THETA,), (PHI,)))
        dens = jnp.stack(
            [
                jnp.exp(
                    post.estimate_logpdf(jax.random.fold_in(k2, z), {"z": z}, (THETA,), (PHI,))[0]
                )
                for z in range(3)
            ]
        )
        tr = post.simulate(k3, (THETA,), (PHI,))
        z = tr.choices["z"]
        return zhat, dens, jnp.exp(jnp.log(qs)[z] - tr.score), jax.nn.one_hot(z, 3)

    zhat, dens, recip, onehot = draws(one)
    assert_unbiased(zhat, jnp.exp(jax.scipy.special.logsumexp(log_gamma(THETA))), "Zhat")
    assert_unbiased(dens, qs, "density estimate")
    assert_unbiased(recip, 1.0, "reciprocal density estimate")
    assert_unbiased(onehot, qs, "frequencies of the SIR draw")


@pytest.mark.parametrize("selection", [gv.categorical.enum, gv.categorical.reinforce])
def test_elbo_with_a_sir_guide_is_iwae(selection):
    """log gamma(z_j) - score = log Zhat, so the ELBO with the SIR guide is the IWAE bound;
    gradients flow through the proposal's choices and the selection."""
    prop = proposal_with(gv.categorical.enum)
    post = gv.normalize(model, {"x": X}, prop, K, selection=selection)
    obj = gv.objectives.elbo(model, post)

    def iwae(theta, phi):
        c = jnp.array(list(itertools.product(range(3), repeat=K)))
        lw, lq = logw(theta, phi)[c], jax.nn.log_softmax(phi)[c]
        lme = jax.scipy.special.logsumexp(lw, axis=1) - jnp.log(K)
        return jnp.sum(jnp.exp(jnp.sum(lq, axis=1)) * lme)

    value, grad = draws(
        lambda k: obj.value_and_grad_estimate(k, (THETA,), ((THETA,), (PHI,)), {"x": X}, argnums=1)
    )
    ev, eg = jax.value_and_grad(iwae, argnums=1)(THETA, PHI)
    assert_unbiased(value, ev, "elbo(sir) value")
    assert_unbiased(grad[1][0], eg, "elbo(sir) d phi")


def test_a_normalized_target_standing_where_the_model_stands():
    """elbo(normalize(...), q2) with no observations: E_{q2}[log q̂_SIR(z) - log q2(z)],
    exact by enumerating z and the K - 1 fresh particles."""
    post = gv.normalize(model, {"x": X}, proposal, K)
    obj = gv.objectives.elbo(post, proposal)
    phi2 = jnp.array([0.3, 0.0, -0.2])

    def exact(theta, phi, phi2):
        lw, lq = logw(theta, phi), jax.nn.log_softmax(phi)
        total = 0.0
        for z in range(3):
            inner = 0.0
            for others in itertools.product(range(3), repeat=K - 1):
                p = jnp.exp(sum(lq[o] for o in others))
                lzhat = jax.scipy.special.logsumexp(jnp.stack([lw[z], *[lw[o] for o in others]]))
                inner = inner + p * (log_gamma(theta)[z] - (lzhat - jnp.log(K)))
            q2 = jax.nn.log_softmax(phi2)[z]
            total = total + jnp.exp(q2) * (inner - q2)
        return total

    value, grad = draws(
        lambda k: obj.value_and_grad_estimate(k, ((THETA,), (PHI,)), (phi2,), {}, argnums=1)
    )
    ev, eg = jax.value_and_grad(exact, argnums=2)(THETA, PHI, phi2)
    assert_unbiased(value, ev, "elbo with a SIR model")
    assert_unbiased(grad[0], eg, "its gradient in the guide")


def test_gaussian_normalizer():
    @gv.gen
    def gmodel(theta):
        z = gv.normal(theta, 1.0) @ "z"
        gv.normal(z, 0.5) @ "x"

    @gv.gen
    def gprop(phi):
        gv.normal(phi[0], jnp.exp(phi[1])) @ "z"

    post = gv.normalize(gmodel, {"x": 1.0}, gprop, 4)
    phi = jnp.array([0.5, 0.0])  # wider than the posterior: finite variance
    zhat = draws(lambda k: jnp.exp(post.estimate_log_normalizer(k, (0.3,), (phi,))))
    assert_unbiased(zhat, jnp.exp(norm.logpdf(1.0, 0.3, np.sqrt(1.25))), "Gaussian Zhat")


def test_normalize_errors():
    post = gv.normalize(model, {"x": X}, proposal, K)
    key = jax.random.key(0)
    with pytest.raises(gv.ModelingError, match="estimate_logpdf"):
        post.assess({"z": 1}, (THETA,), (PHI,))
    with pytest.raises(TypeError, match="model_args must be a tuple"):
        post.simulate(key, THETA, (PHI,))
    with pytest.raises(TypeError, match="selection must be gv.categorical"):
        gv.normalize(model, {"x": X}, proposal, K, selection=gv.flip.enum)

    @gv.gen
    def wrong(phi):
        gv.categorical(phi) @ "z"
        gv.normal(0.0, 1.0) @ "x"

    bad = gv.normalize(model, {"x": X}, wrong, K)
    with pytest.raises(gv.AddressError, match="the proposal samples 'x', which is also given"):
        bad.simulate(key, (THETA,), (PHI,))
    assert "selection by ENUM" in repr(post)
