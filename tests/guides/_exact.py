"""Conjugate models with exact posteriors, the best Gaussian approximations to them (by
quadrature), training, and the statistical checks of the guide tests.

Why a Gaussian in the unconstrained space can be checked against a Beta or a Dirichlet:
in stick-breaking (logit) coordinates ``u``, a ``Dirichlet(a)`` posterior is a product of
independent logit-Betas, ``z_i = sigmoid(u_i - c_i) ~ Beta(a_i, a_{i+1} + ... + a_K)``.
Its KL-best Gaussian q (mean-field or full: the mean-field optimum is a stationary point
of the full-rank problem, and the KL to a log-concave target is convex there) satisfies
``E_q[d/du log p(u)] = 0``, which for a logit-Beta(a, b) reads ``E_q[a (1 - z) - b z] =
0``: ``E_q[z] = a / (a + b)``, the exact mean. So the guide's posterior mean of every
component is the exact Dirichlet mean, while its spread and its ELBO are those of the
best Gaussian (computed here by Gauss-Hermite quadrature), not the exact ones.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy import optimize
from scipy.special import betaln, expit, gammaln

import genvi as gv

KSE = 4.0  # tolerance, in measured standard errors

_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(120)
_GH_W = _GH_W / _GH_W.sum()


def best_logit_normal(a: float, b: float):
    """The normal ``N(m, s^2)`` over ``u = logit(z)`` closest (in KL(q || p)) to
    ``z ~ Beta(a, b)``: ``(m, s, kl, mean, sd)``, ``mean`` and ``sd`` those of ``z``."""

    def target(u):  # log density of u = logit(z), z ~ Beta(a, b)
        z = np.clip(expit(u), 1e-300, 1 - 1e-16)
        return (a * np.log(z) + b * np.log1p(-z)) - betaln(a, b)

    def kl(th):
        m, log_s = th
        u = m + np.exp(log_s) * _GH_X
        entropy = log_s + 0.5 * math.log(2 * math.pi * math.e)
        return -(np.sum(_GH_W * target(u)) + entropy)

    res = optimize.minimize(kl, np.array([math.log(a / b), -1.0]), method="Nelder-Mead",
                            options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 4000})  # fmt: skip
    m, s = res.x[0], math.exp(res.x[1])
    z = expit(m + s * _GH_X)
    mean = float(np.sum(_GH_W * z))
    sd = float(np.sqrt(np.sum(_GH_W * (z - mean) ** 2)))
    return m, s, float(res.fun), mean, sd


# ----- the models ------------------------------------------------------------------------

NN_X = jnp.array([0.8, 1.9, 1.2, 0.4, 1.5])
NN_S0, NN_S = 2.0, 1.0


@gv.gen
def normal_normal():
    """``z ~ N(0, 2)``, ``x_i ~ N(z, 1)`` for 5 observations at one address."""
    z = gv.normal(0.0, NN_S0) @ "z"
    gv.normal(jnp.full(NN_X.shape, z), NN_S) @ "x"


def normal_normal_posterior():
    prec = 1 / NN_S0**2 + NN_X.size / NN_S**2
    return float(jnp.sum(NN_X) / NN_S**2 / prec), prec**-0.5


BB_X = jnp.array([1, 1, 1, 0, 1, 1, 1, 1, 1, 1])
BB_A, BB_B = 1.0, 1.0


@gv.gen
def beta_bernoulli():
    """``p ~ Beta(1, 1)``, ``x_i ~ flip(p)`` for 10 observations (9 ones): a skewed
    posterior, Beta(10, 2)."""
    p = gv.beta(BB_A, BB_B) @ "p"
    gv.flip(jnp.full(BB_X.shape, p)) @ "x"


def beta_bernoulli_posterior():
    """``(a, b, log evidence)`` of the Beta posterior."""
    k = float(jnp.sum(BB_X))
    a, b = BB_A + k, BB_B + BB_X.size - k
    return a, b, float(betaln(a, b) - betaln(BB_A, BB_B))


DC_ALPHA = jnp.array([1.0, 1.5, 2.0])
DC_X = jnp.array([0, 2, 2, 1, 0, 2, 2, 2, 1, 2, 0, 2, 1, 2, 2])


@gv.gen
def dirichlet_categorical():
    """``theta ~ Dirichlet(1, 1.5, 2)``, ``x_i ~ categorical(log theta)``, 15 observations."""
    theta = gv.dirichlet(DC_ALPHA) @ "theta"
    gv.categorical(jnp.broadcast_to(jnp.log(theta), (DC_X.size, 3))) @ "x"


def dirichlet_posterior():
    """``(alpha', log evidence, KL of the best Gaussian in stick-breaking space)``."""
    post = np.asarray(DC_ALPHA) + np.bincount(np.asarray(DC_X), minlength=3)

    def log_b(a):
        return float(np.sum(gammaln(a)) - gammaln(np.sum(a)))

    log_z = log_b(post) - log_b(np.asarray(DC_ALPHA))
    kl = sum(best_logit_normal(post[i], post[i + 1 :].sum())[2] for i in range(len(post) - 1))
    return post, log_z, kl


# ----- training and checks ---------------------------------------------------------------


def train(model, guide, obs, *, stl: bool, steps: int = 1500, particles: int = 16, seed=0):
    """The guide's parameters after ``steps`` Adam steps on the ELBO (averaged over
    ``particles`` draws per step), the learning rate decaying from 0.05 to 5e-4."""
    objective = gv.objectives.elbo(model, guide, stl=stl)

    def f(key, params):
        keys = jax.random.split(key, particles)
        return jnp.mean(jax.vmap(lambda k: objective(k, (), (params,), obs))(keys))

    schedule = optax.exponential_decay(0.05, steps, 0.01)
    result = gv.fit(f, guide.init(jax.random.key(seed)), key=jax.random.key(seed + 1),
                    steps=steps, optimizer=optax.adam(schedule), progress=False)  # fmt: skip
    assert result.stopped_reason == "steps", result.message
    return result.params


def guide_draws(guide, params, addr, n=20_000, seed=7):
    keys = jax.random.split(jax.random.key(seed), n)
    return np.asarray(jax.jit(jax.vmap(lambda k: guide.simulate(k, params).choices[addr]))(keys))


def elbo_draws(model, guide, params, obs, n=4000, seed=8):
    objective = gv.objectives.elbo(model, guide)
    keys = jax.random.split(jax.random.key(seed), n)
    return np.asarray(jax.jit(jax.vmap(lambda k: objective.estimate(k, (), (params,), obs)))(keys))


def se_mean(x):
    x = np.asarray(x, np.float64)
    return x.std(0, ddof=1) / math.sqrt(x.shape[0])


def se_sd(x):
    """Standard error of the sample standard deviation (normal approximation)."""
    x = np.asarray(x, np.float64)
    return x.std(0, ddof=1) / math.sqrt(2 * (x.shape[0] - 1))


def assert_close(estimate, exact, se, what, k=KSE):
    estimate, exact, se = (np.asarray(v, np.float64) for v in (estimate, exact, se))
    err = np.abs(estimate - exact)
    assert np.all(err <= k * se), f"{what}: {estimate} vs {exact} (se {se}, {err / se} se)"
