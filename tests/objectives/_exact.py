"""Test models with exact answers, and the statistical check shared by the objective tests.

- A *discrete* model: ``z ~ Categorical(softmax(theta))`` over {0, 1, 2},
  ``x ~ N(MU[z], 1)``, observed ``x = X``; guides ``z ~ Categorical(softmax(phi))`` with a
  chosen strategy. Every multi-particle objective's exact expectation is a finite sum
  over the ``3^K`` particle configurations (:func:`enumerate_k`), and its exact gradient
  is ``jax.grad`` of that sum.
- A *conjugate Gaussian* model: ``z ~ N(theta, 1)``, ``x ~ N(z, 0.5)``; guide
  ``N(phi[0], exp(phi[1]))``: closed-form ELBO, evidence and posterior.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.stats import norm

import genvi as gv

KSE = 5.0  # tolerance in measured standard errors

MU = jnp.array([-1.0, 0.0, 2.0])
X = 0.3
OBS = {"x": X}
THETA = jnp.array([0.2, -0.3, 0.1])
PHI = jnp.array([-0.4, 0.5, 0.1])


def assert_unbiased(draws, exact, what, k=KSE):
    """``mean(draws)`` within ``k`` measured standard errors of ``exact``, element-wise,
    plus a float32 rounding floor (which only matters for zero-variance estimators)."""
    draws = np.asarray(draws, np.float64)
    exact = np.asarray(exact, np.float64)
    mean = draws.mean(0)
    se = draws.std(0, ddof=1) / math.sqrt(draws.shape[0])
    tol = k * se + 2e-5 * (1.0 + np.abs(exact))
    err = np.abs(mean - exact)
    assert np.all(err <= tol), f"{what}: mean {mean} vs exact {exact} (se {se}, err {err})"


def draws(fn, n, seed=0):
    """``jit(vmap(fn))`` over ``n`` independent keys."""
    return jax.jit(jax.vmap(fn))(jax.random.split(jax.random.key(seed), n))


def vg_draws(objective, margs, gargs, obs, n=20_000, seed=0):
    """``n`` draws of ``(value, (d model_args, d guide_args))``."""
    return draws(
        lambda k: objective.value_and_grad_estimate(k, margs, gargs, obs, argnums=(0, 1)), n, seed
    )


# ----- the discrete model -----------------------------------------------------------


@gv.gen
def dmodel(theta):
    z = gv.categorical(theta) @ "z"
    gv.normal(MU[z], 1.0) @ "x"


def dguide(dist):
    """A guide ``z ~ dist(phi)`` where ``dist`` is ``gv.categorical`` with a strategy."""

    @gv.gen
    def guide(phi):
        dist(phi) @ "z"

    guide.name = f"guide[{dist.strategy.name}]"
    return guide


def d_logp(theta):
    """``log p(x = X, z)`` for z = 0, 1, 2."""
    return jax.nn.log_softmax(theta) + norm.logpdf(X, MU, 1.0)


def d_logq(phi):
    return jax.nn.log_softmax(phi)


def d_log_evidence(theta):
    return jax.scipy.special.logsumexp(d_logp(theta))


def configs(k):
    """All ``3^k`` particle configurations, an int array ``[3^k, k]``."""
    return jnp.array(list(itertools.product(range(3), repeat=k)))


def enumerate_k(f, theta, phi, k):
    """``E[f(log p(x, z_1..k), log q(z_1..k))]`` with ``z_i ~ q`` independent, exactly."""
    c = configs(k)
    lp, lq = d_logp(theta)[c], d_logq(phi)[c]
    prob = jnp.exp(jnp.sum(lq, axis=1))
    return jnp.sum(prob * jax.vmap(f)(lp, lq))


def exact_value_and_grad(f, k, theta=THETA, phi=PHI):
    """Exact value and gradients in ``(theta, phi)`` of ``enumerate_k(f, ., ., k)``."""
    return jax.value_and_grad(lambda t, p: enumerate_k(f, t, p, k), argnums=(0, 1))(theta, phi)


def logmeanexp(x):
    return jax.scipy.special.logsumexp(x) - jnp.log(x.shape[0])


def check_vg(est, exact, what):
    """``est = (values, ((g_theta,), (g_phi,)))`` against ``exact = (value, (gt, gp))``."""
    value, (gm, gg) = est
    ev, (et, ep) = exact
    assert_unbiased(value, ev, f"{what}: value")
    assert_unbiased(gm[0], et, f"{what}: gradient in theta")
    assert_unbiased(gg[0], ep, f"{what}: gradient in phi")


# ----- the conjugate Gaussian model -------------------------------------------------

GX = 1.0
GOBS = {"x": GX}
NOISE = 0.5


@gv.gen
def gmodel(theta):
    z = gv.normal(theta, 1.0) @ "z"
    gv.normal(z, NOISE) @ "x"


@gv.gen
def gguide(phi):
    gv.normal(phi[0], jnp.exp(phi[1])) @ "z"


def g_log_evidence(theta, x=GX):
    return norm.logpdf(x, theta, jnp.sqrt(1.0 + NOISE**2))


def g_posterior(theta, x=GX):
    """Mean and standard deviation of ``p(z | x)``."""
    prec = 1.0 + 1.0 / NOISE**2
    return (theta + x / NOISE**2) / prec, 1.0 / jnp.sqrt(prec)


def g_elbo(theta, phi, x=GX):
    """The ELBO in closed form."""
    m, s = phi[0], jnp.exp(phi[1])
    e_prior = -0.5 * jnp.log(2 * jnp.pi) - 0.5 * ((m - theta) ** 2 + s**2)
    e_lik = -0.5 * jnp.log(2 * jnp.pi * NOISE**2) - ((x - m) ** 2 + s**2) / (2 * NOISE**2)
    entropy = 0.5 * jnp.log(2 * jnp.pi * jnp.e * s**2)
    return e_prior + e_lik + entropy


def g_log_joint(theta, z, x=GX):
    return norm.logpdf(z, theta, 1.0) + norm.logpdf(x, z, NOISE)


def g_iwae2_quadrature(theta, phi, nodes=48):
    """The exact IWAE bound with K = 2 on the Gaussian model, by Gauss-Hermite
    quadrature over the two particles' standard-normal noises."""
    e, w = np.polynomial.hermite_e.hermegauss(nodes)
    e, w = jnp.asarray(e), jnp.asarray(w / math.sqrt(2 * math.pi))
    m, s = phi[0], jnp.exp(phi[1])
    z = m + s * e
    lw = g_log_joint(theta, z) - norm.logpdf(z, m, s)
    both = jnp.logaddexp(lw[:, None], lw[None, :]) - jnp.log(2.0)
    return jnp.sum(w[:, None] * w[None, :] * both)
