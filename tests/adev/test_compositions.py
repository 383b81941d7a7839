"""Strategies composed: each test's exact value and gradient come from a closed form (or a
sum over the discrete choices written out by hand), and the mean of N independent
estimates must lie within K measured standard errors of them."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import norm

import genvi as gv

from ._helpers import assert_unbiased, check, draws

N = 10_000

FLIP = {"reinforce": gv.flip.reinforce, "enum": gv.flip.enum, "mvd": gv.flip.mvd}
NORMAL = {"reparam": gv.normal.reparam, "reinforce": gv.normal.reinforce, "mvd": gv.normal.mvd}


def e_sq_sin(mu, s, c):
    """``E[(z - c)^2 + sin z]`` for ``z ~ N(mu, s^2)``."""
    return (mu - c) ** 2 + s**2 + jnp.sin(mu) * jnp.exp(-(s**2) / 2)


# ---- a discrete choice controlling a continuous one, every pair of strategies ----------

PAIRS = [(d, c) for d in FLIP for c in NORMAL]
C0, C1 = 0.5, -1.0


@pytest.mark.parametrize("disc,cont", PAIRS, ids=[f"flip.{d}-normal.{c}" for d, c in PAIRS])
def test_discrete_choice_controls_continuous_choice(disc, cont):
    @gv.gen
    def model(p, m0, m1, s):
        b = FLIP[disc](p) @ "b"
        z = NORMAL[cont](jnp.where(b == 1, m1, m0), s) @ "z"
        return b, z

    @gv.expectation
    def objective(key, p, m0, m1, s):
        b, z = model.simulate(key, p, m0, m1, s).retval
        return (z - jnp.where(b == 1, C1, C0)) ** 2 + jnp.sin(z)

    def expect(p, m0, m1, s):
        return p * e_sq_sin(m1, s, C1) + (1 - p) * e_sq_sin(m0, s, C0)

    params = (0.35, 0.4, -0.8, 1.2)
    argnums = (0, 1, 2, 3)
    est = draws(lambda k: objective.value_and_grad_estimate(k, *params, argnums=argnums), N)
    check(est, expect, params, f"flip.{disc} then normal.{cont}")


# ---- a continuous choice (REPARAM or REINFORCE) controlling a discrete one -------------

CD = [("reparam", "reinforce"), ("reparam", "enum"), ("reparam", "mvd"), ("reinforce", "enum")]


@pytest.mark.parametrize("cont,disc", CD, ids=[f"normal.{c}-flip.{d}" for c, d in CD])
def test_continuous_choice_controls_discrete_choice(cont, disc):
    """``b ~ flip(Phi(z))``: the REPARAM tangent of ``z`` flows into ENUM/MVD/REINFORCE's
    parameter. ``E[Phi(z)] = Phi(mu / sqrt(1 + s^2))`` for ``z ~ N(mu, s^2)``."""

    @gv.expectation
    def objective(key, mu, s):
        k1, k2 = jax.random.split(key)
        z = NORMAL[cont].sample(k1, mu, s)
        b = FLIP[disc].sample(k2, norm.cdf(z))
        return 3.0 * b + z**2

    def expect(mu, s):
        return 3.0 * norm.cdf(mu / jnp.sqrt(1 + s**2)) + mu**2 + s**2

    params = (0.3, 0.9)
    est = draws(lambda k: objective.value_and_grad_estimate(k, *params, argnums=(0, 1)), N)
    check(est, expect, params, f"normal.{cont} then flip.{disc}")


# ---- gv.vmap and jax.vmap inside the objective -------------------------------------------

VM = [("reinforce", "reparam"), ("enum", "reparam"), ("mvd", "mvd"), ("enum", "reinforce")]


def e_points(mu, p, s):
    """``E[sum_i z_i^2 + b_i z_i]`` for ``b_i ~ flip(p_i)``, ``z_i ~ N(mu_i + b_i, s^2)``."""
    one = (mu + 1) ** 2 + s**2 + (mu + 1)
    zero = mu**2 + s**2
    return jnp.sum(p * one + (1 - p) * zero)


@pytest.mark.parametrize("disc,cont", VM, ids=[f"flip.{d}-normal.{c}" for d, c in VM])
def test_choices_inside_gv_vmap(disc, cont):
    @gv.gen
    def point(mu, p, s):
        b = FLIP[disc](p) @ "b"
        return b, NORMAL[cont](mu + b, s) @ "z"

    points = gv.vmap(point, in_axes=(0, 0, None))

    @gv.expectation
    def objective(key, mu, p, s):
        b, z = points.simulate(key, mu, p, s).retval
        return jnp.sum(z**2 + b * z)

    params = (jnp.array([0.3, -0.6, 1.1]), jnp.array([0.2, 0.5, 0.9]), 0.8)
    est = draws(lambda k: objective.value_and_grad_estimate(k, *params, argnums=(0, 1, 2)), N)
    check(est, e_points, params, f"gv.vmap of flip.{disc} then normal.{cont}")


def test_choices_inside_jax_vmap_in_the_objective():
    """``jax.vmap`` over keys inside the objective makes batched sites (ENUM element-wise,
    MVD per element) at the top level of the program."""

    @gv.expectation
    def objective(key, mu, p, s):
        ks = jax.random.split(key, mu.shape[0])

        def one(k, m, q):
            k1, k2 = jax.random.split(k)
            b = gv.flip.enum.sample(k1, q)
            return b, gv.normal.mvd.sample(k2, m + b, s)

        b, z = jax.vmap(one)(ks, mu, p)
        return jnp.sum(z**2 + b * z)

    params = (jnp.array([0.3, -0.6, 1.1]), jnp.array([0.2, 0.5, 0.9]), 0.8)
    est = draws(lambda k: objective.value_and_grad_estimate(k, *params, argnums=(0, 1, 2)), N)
    check(est, e_points, params, "jax.vmap of flip.enum then normal.mvd")


# ---- gv.scan and jax.lax.scan (local mode) ---------------------------------------------

T = 4


def e_chain(p, a, s, z0):
    """``E[sum_t z_t^2]`` for ``b_t ~ flip(p)``, ``z_t ~ N(a z_{t-1} + b_t, s^2)``:
    ``m_t = a m + p`` and ``q_t = a^2 q + 2 a p m + p + s^2`` (``b_t`` independent of
    ``z_{t-1}``, ``E[b^2] = p``)."""
    m, q, total = z0, z0**2, 0.0
    for _ in range(T):
        m, q = a * m + p, a**2 * q + 2 * a * p * m + p + s**2
        total = total + q
    return total


@pytest.mark.parametrize("cont", ["reparam", "reinforce"])
def test_choices_inside_gv_scan(cont):
    @gv.gen
    def chain(p, a, s, z0):
        @gv.gen
        def step(z, _):
            b = gv.flip.reinforce(p) @ "b"
            z = NORMAL[cont](a * z + b, s) @ "z"
            return z, z

        return gv.scan(step, length=T)(z0, None) @ "chain"

    @gv.expectation
    def objective(key, p, a, s, z0):
        _, zs = chain.simulate(key, p, a, s, z0).retval
        return jnp.sum(zs**2)

    params = (0.4, 0.7, 0.5, 1.0)
    est = draws(lambda k: objective.value_and_grad_estimate(k, *params, argnums=(0, 1, 2, 3)), N)
    check(est, e_chain, params, f"gv.scan of flip.reinforce then normal.{cont}")


def test_choices_inside_lax_scan_written_by_hand():
    @gv.expectation
    def objective(key, p, a, s, z0):
        def body(z, k):
            k1, k2 = jax.random.split(k)
            b = gv.flip.reinforce.sample(k1, p)
            z = gv.normal.reinforce.sample(k2, a * z + b, s)
            return z, z

        _, zs = jax.lax.scan(body, z0, jax.random.split(key, T))
        return jnp.sum(zs**2)

    params = (0.4, 0.7, 0.5, 1.0)
    est = draws(lambda k: objective.value_and_grad_estimate(k, *params, argnums=(0, 1, 2, 3)), N)
    check(est, e_chain, params, "lax.scan of flip.reinforce then normal.reinforce")


# ---- branches: jax.lax.cond, gv.cond, gv.switch with a random index ---------------------


def test_lax_cond_with_reparam_and_reinforce_branches():
    """Local mode: the branches' choices need no continuation."""

    @gv.expectation
    def objective(key, p, m0, m1):
        k1, k2 = jax.random.split(key)
        b = gv.flip.reinforce.sample(k1, p)
        x = jax.lax.cond(
            b == 1,
            lambda: gv.normal.reparam.sample(k2, m1, 1.0),
            lambda: gv.normal.reinforce.sample(k2, m0, 2.0),
        )
        return x**2

    def expect(p, m0, m1):
        return p * (m1**2 + 1) + (1 - p) * (m0**2 + 4)

    params = (0.3, 0.5, -1.5)
    est = draws(lambda k: objective.value_and_grad_estimate(k, *params, argnums=(0, 1, 2)), N)
    check(est, expect, params, "lax.cond with reparam/reinforce branches")


def test_lax_cond_with_an_enum_branch():
    """A branch holding ENUM runs in CPS: the rest of the program once per branch."""

    @gv.expectation
    def objective(key, p, q, m0):
        k1, k2 = jax.random.split(key)
        b = gv.flip.reinforce.sample(k1, p)
        x = jax.lax.cond(
            b == 1,
            lambda: gv.flip.enum.sample(k2, q).astype(jnp.float32),
            lambda: gv.normal.sample(k2, m0, 1.0),
        )
        return (x + 1.0) ** 2

    def expect(p, q, m0):
        return p * (4 * q + (1 - q)) + (1 - p) * ((m0 + 1) ** 2 + 1)

    params = (0.3, 0.6, 0.2)
    est = draws(lambda k: objective.value_and_grad_estimate(k, *params, argnums=(0, 1, 2)), N)
    check(est, expect, params, "lax.cond with an ENUM branch")


@gv.gen
def _small(m, q):
    return gv.normal(m, 1.0) @ "x"


@gv.gen
def _large(m, q):
    return gv.normal.reinforce(m + 2.0, 2.0) @ "y"


@gv.gen
def _coin(m, q):
    return m * (gv.flip.enum(q) @ "c")


@pytest.mark.parametrize("disc", ["reinforce", "enum", "mvd"])
def test_gv_cond_with_a_random_index(disc):
    @gv.gen
    def model(p, m, q):
        b = FLIP[disc](p) @ "b"
        return gv.cond(_large, _small)(b, m, q) @ "branch"

    @gv.expectation
    def objective(key, p, m, q):
        return model.simulate(key, p, m, q).retval ** 2

    def expect(p, m, q):
        return p * ((m + 2) ** 2 + 4) + (1 - p) * (m**2 + 1)

    params = (0.35, 0.6, 0.5)
    est = draws(lambda k: objective.value_and_grad_estimate(k, *params, argnums=(0, 1)), N)
    check(est, lambda p, m: expect(p, m, 0.5), params[:2], f"gv.cond on flip.{disc}")


def test_gv_switch_on_a_categorical_index_with_an_enum_branch():
    """Three branches, one holding ENUM (so the switch runs in CPS), index ~ categorical
    enumerated as well: the whole estimate is exact up to the normal branches' noise."""

    @gv.gen
    def model(logits, m, q):
        i = gv.categorical.enum(logits) @ "i"
        return gv.switch(_small, _large, _coin)(i, m, q) @ "branch"

    @gv.expectation
    def objective(key, logits, m, q):
        return model.simulate(key, logits, m, q).retval ** 2

    def expect(logits, m, q):
        pi = jax.nn.softmax(logits)
        return pi[0] * (m**2 + 1) + pi[1] * ((m + 2) ** 2 + 4) + pi[2] * q * m**2

    params = (jnp.array([0.2, -0.3, 0.5]), 0.7, 0.4)
    est = draws(lambda k: objective.value_and_grad_estimate(k, *params, argnums=(0, 1, 2)), N)
    check(est, expect, params, "gv.switch on categorical.enum")


# ---- a user-written ELBO on a conjugate Gaussian model ---------------------------------

X = jnp.array([0.8, 1.9, 1.2, 2.4])
SIGMA_X = 0.7


@gv.gen
def _model(mu0):
    z = gv.normal(mu0, 1.0) @ "z"
    gv.normal(jnp.full(X.shape, z), SIGMA_X) @ "x"


def elbo_exact(m, log_s, mu0):
    """``E_q[log p(x, z) - log q(z)]`` for ``z ~ q = N(m, s^2)``, ``p(z) = N(mu0, 1)``,
    ``p(x_i | z) = N(z, SIGMA_X^2)``: expected log prior and likelihood of Gaussians plus
    the entropy ``1/2 log(2 pi e s^2)``."""
    s2 = jnp.exp(2 * log_s)
    log_prior = -0.5 * math.log(2 * math.pi) - 0.5 * ((m - mu0) ** 2 + s2)
    log_lik = jnp.sum(
        -0.5 * jnp.log(2 * math.pi * SIGMA_X**2) - ((X - m) ** 2 + s2) / (2 * SIGMA_X**2)
    )
    entropy = 0.5 * jnp.log(2 * math.pi * math.e * s2)
    return log_prior + log_lik + entropy


@pytest.mark.parametrize("strategy", ["reparam", "reinforce", "mvd"])
def test_user_written_elbo_of_a_conjugate_gaussian(strategy):
    @gv.gen
    def guide(m, log_s):
        return NORMAL[strategy](m, jnp.exp(log_s)) @ "z"

    @gv.expectation
    def elbo(key, m, log_s, mu0, x):
        tr = guide.simulate(key, m, log_s)
        log_p, _ = _model.assess(tr.choices.merge({"x": x}), mu0)
        return log_p - tr.score

    params = (1.1, math.log(0.5), 0.3)
    est = draws(lambda k: elbo.value_and_grad_estimate(k, *params, X, argnums=(0, 1, 2)), N)
    check(est, elbo_exact, params, f"ELBO with a {strategy} guide")


def test_importance_inside_the_objective():
    """``E_{z ~ p}[log w]`` with ``w = p(x | z)`` from ``importance``: closed form
    ``sum_i -1/2 log(2 pi SIGMA_X^2) - ((x_i - mu0)^2 + 1) / (2 SIGMA_X^2)``."""

    @gv.expectation
    def objective(key, mu0):
        _, log_w = _model.importance(key, {"x": X}, mu0)
        return log_w

    def expect(mu0):
        return jnp.sum(
            -0.5 * jnp.log(2 * math.pi * SIGMA_X**2) - ((X - mu0) ** 2 + 1) / (2 * SIGMA_X**2)
        )

    est = draws(lambda k: objective.value_and_grad_estimate(k, 0.3, argnums=(0,)), N)
    check(est, expect, (0.3,), "importance")


# ---- nested expectations ----------------------------------------------------------------


@gv.expectation
def _inner(key, mu):
    return gv.normal.reinforce.sample(key, mu, 1.0) ** 2  # E = mu^2 + 1


@gv.expectation
def _outer(key, mu, c):
    """Linear in the inner estimate, so unbiased: ``E = 3 (mu^2 + 1) + c E[b] = ...``."""
    k1, k2 = jax.random.split(key)
    b = gv.flip.enum.sample(k2, jax.nn.sigmoid(mu))
    return 3.0 * _inner(k1, mu) + c * b + c**2


def _outer_exact(mu, c):
    return 3.0 * (mu**2 + 1) + c * jax.nn.sigmoid(mu) + c**2


def test_nested_expectation_is_unbiased_under_jit_and_vmap():
    params = (0.5, -0.7)
    est = draws(lambda k: _outer.value_and_grad_estimate(k, *params, argnums=(0, 1)), N)
    check(est, _outer_exact, params, "nested expectation")


def test_nested_expectation_estimate_under_jax_grad():
    """``jax.grad`` of the outer ``estimate`` transposes the nested forward estimators."""
    g = draws(lambda k: jax.grad(lambda mu: _outer.estimate(k, mu, -0.7))(0.5), N, seed=3)
    _, (eg, _) = jax.value_and_grad(_outer_exact, argnums=(0, 1))(0.5, -0.7)
    assert_unbiased(g, eg, "jax.grad of a nested expectation's estimate")


def test_calls_outside_jit_agree_with_jit_and_vmap():
    keys = jax.random.split(jax.random.key(5), 3)
    batched = jax.jit(jax.vmap(lambda k: _outer.value_and_grad_estimate(k, 0.5, -0.7)))(keys)
    for i in range(3):
        v, g = _outer.value_and_grad_estimate(keys[i], 0.5, -0.7)
        np.testing.assert_allclose(v, batched[0][i], rtol=1e-5)
        np.testing.assert_allclose(g, batched[1][i], rtol=1e-5)
