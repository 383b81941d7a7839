"""REINFORCE baselines: unbiased whatever their value, and variance-reducing where the
mathematics says they must be."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

import genvi as gv

from ._helpers import assert_unbiased, draws

C = 10.0


def _var_and_se(x):
    """Sample variance and its standard error, ``sqrt((m4 - var^2) / n)``, measured."""
    x = np.asarray(x, np.float64)
    d = x - x.mean()
    var = np.mean(d**2)
    return var, math.sqrt((np.mean(d**4) - var**2) / x.size)


def test_a_constant_baseline_removes_the_constant_s_variance():
    """``f(z) = C + z``, ``z ~ N(0, 1)`` with REINFORCE. The estimator ``(f(z) - b) z`` of
    ``dE/dmu = 1`` has variance ``E[(C - b + z)^2 z^2] - 1 = (C - b)^2 + 2``: ``C^2 + 2 =
    102`` without a baseline, ``2`` with ``b = C``."""

    @gv.expectation
    def plain(key, mu):
        return C + gv.normal.reinforce.sample(key, mu, 1.0)

    @gv.expectation
    def baselined(key, mu):
        return C + gv.normal.reinforce.with_baseline(C).sample(key, mu, 1.0)

    n = 20_000
    g0 = draws(lambda k: plain.grad_estimate(k, 0.0), n, seed=1)
    g1 = draws(lambda k: baselined.grad_estimate(k, 0.0), n, seed=2)
    assert_unbiased(g0, 1.0, "REINFORCE without a baseline")
    assert_unbiased(g1, 1.0, "REINFORCE with baseline C")
    for g, theory in [(g0, C**2 + 2), (g1, 2.0)]:
        var, se = _var_and_se(g)
        assert abs(var - theory) < 5 * se, (var, theory, se)
    var0, _ = _var_and_se(g0)
    var1, _ = _var_and_se(g1)
    assert var1 < var0 / 25, (var0, var1)  # theory: a ratio of 51


def test_a_learned_baseline_passed_as_an_argument():
    """The baseline is an argument (a parameter trained elsewhere): any value leaves the
    gradient unbiased, and the estimator carries no gradient into it."""

    @gv.expectation
    def objective(key, mu, b):
        z = gv.normal.reinforce.with_baseline(b).sample(key, mu, 1.0)
        return (z - 1.0) ** 2  # E = (mu - 1)^2 + 1

    mu = 0.3
    gmu, gb = draws(lambda k: objective.grad_estimate(k, mu, 4.0, argnums=(0, 1)), 10_000)
    assert_unbiased(gmu, 2 * (mu - 1.0), "d/dmu with a learned baseline")
    assert np.all(np.asarray(gb) == 0.0)


B = jnp.array([5.0, -3.0, 10.0])
MU = jnp.array([0.2, -0.4, 0.9])
CS = jnp.array([1.0, 2.0, -1.0])


def _exact_particles(mu):
    """``E[sum_i (c_i + z_i)^2]`` with ``z_i ~ N(mu_i, 1)`` is ``sum (c_i + mu_i)^2 + 1``."""
    return jnp.sum((CS + mu) ** 2 + 1)


def test_per_particle_baseline_under_jax_vmap_is_unbiased():
    """A batched baseline operand: one baseline per particle, lined up with the batched
    site's per-particle log densities."""

    @gv.expectation
    def objective(key, mu, b):
        ks = jax.random.split(key, mu.shape[0])
        z = jax.vmap(lambda k, m, bi: gv.normal.reinforce.with_baseline(bi).sample(k, m, 1.0))(
            ks, mu, b
        )
        return jnp.sum((CS + z) ** 2)

    g = draws(lambda k: objective.grad_estimate(k, MU, B), 10_000)
    assert_unbiased(g, jax.grad(_exact_particles)(MU), "per-particle baseline, jax.vmap")


def test_per_particle_baseline_in_gv_vmap_and_in_a_loop():
    """The same through ``gv.vmap`` (baseline as a mapped argument), and inside
    ``jax.lax.scan`` (local mode: the baseline terms are accumulated)."""

    @gv.gen
    def particle(m, b):
        return gv.normal.reinforce.with_baseline(b)(m, 1.0) @ "z"

    particles = gv.vmap(particle)

    @gv.expectation
    def vmapped(key, mu, b):
        return jnp.sum((CS + particles.simulate(key, mu, b).retval) ** 2)

    @gv.expectation
    def looped(key, mu, b):
        def body(c, x):
            k, m, bi, ci = x
            z = gv.normal.reinforce.with_baseline(bi).sample(k, m, 1.0)
            return c + (ci + z) ** 2, None

        xs = (jax.random.split(key, mu.shape[0]), mu, b, CS)
        return jax.lax.scan(body, 0.0, xs)[0]

    exact = jax.grad(_exact_particles)(MU)
    for name, objective in [("gv.vmap", vmapped), ("lax.scan", looped)]:
        g = draws(lambda k, o=objective: o.grad_estimate(k, MU, B), 10_000, seed=4)
        assert_unbiased(g, exact, f"per-particle baseline, {name}")
