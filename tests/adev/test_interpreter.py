"""Soundness of the interpreter on the corners: vectorized sites (ENUM element-wise, MVD,
baselines under nested vmaps), raw ``uint32`` keys, closed-over tracers, integer and
unused arguments, constants. Several tests are regressions for bugs found here."""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np

import genvi as gv

from ._helpers import assert_unbiased, check, draws

N = 10_000


def _all_strategies(key, mu, s, p):
    """One program with every strategy (and MVD of a normal with its default scale)."""
    k1, k2, k3, k4, k5 = jax.random.split(key, 5)
    a = gv.normal.reparam.sample(k1, mu, s)
    b = gv.normal.reinforce.sample(k2, mu, 1.0)
    c = gv.flip.enum.sample(k3, p)
    d = gv.normal.mvd.sample(k4, mu, s)
    e = gv.normal.mvd.sample(k5, mu)
    return a**2 + b * c + (c + 1) ** 2 - c + d + e**2


def _all_exact(mu, s, p):
    return mu**2 + s**2 + mu * p + (4 * p + (1 - p)) - p + mu + mu**2 + 1


def test_every_strategy_with_raw_uint32_keys():
    """Keys as raw ``uint32`` key data (``jax.random.PRNGKey``) work like typed keys
    (which every other test uses)."""
    objective = gv.expectation(_all_strategies)
    params = (0.4, 0.8, 0.3)
    est = draws(
        lambda k: objective.value_and_grad_estimate(k, *params, argnums=(0, 1, 2)), N, raw=True
    )
    check(est, _all_exact, params, "all strategies, raw keys")


def test_raw_and_typed_keys_outside_jit_agree():
    @gv.expectation
    def objective(key, mu):
        return gv.normal.mvd.sample(key, mu, 1.0) ** 2

    key = jax.random.PRNGKey(3)
    assert objective.value_and_grad_estimate(key, 0.4) == objective.value_and_grad_estimate(
        jax.random.wrap_key_data(key), 0.4
    )


def test_mvd_on_sites_batched_by_vmap():
    """Regression: MVD split its key with ``jax.random.split``, which refuses the batch of
    keys of a site vectorized by ``jax.vmap`` (and raw key data of shape ``[n, 2]``)."""

    @gv.expectation
    def objective(key, mu, p, logits):
        ks = jax.random.split(key, (3, 4))
        z = jax.vmap(jax.vmap(lambda k, m: gv.normal.mvd.sample(k, m, 1.0)))(ks[:, :2], mu)
        b = jax.vmap(lambda k, q: gv.flip.mvd.sample(k, q))(ks[:, 2], p)
        i = jax.vmap(lambda k, lg: gv.categorical.mvd.sample(k, lg))(ks[:, 3], logits)
        return jnp.sum(z**2) + jnp.sum(b * jnp.sin(z[:, 0])) + jnp.sum((i - 1.0) ** 2)

    def expect(mu, p, logits):
        pi = jax.nn.softmax(logits, -1)
        return (
            jnp.sum(mu**2 + 1)
            + jnp.sum(p * jnp.sin(mu[:, 0]) * math.exp(-0.5))
            + jnp.sum(pi @ (jnp.arange(3) - 1.0) ** 2)
        )

    params = (
        jnp.array([[0.1, -0.5], [0.7, 0.2], [-1.0, 0.4]]),
        jnp.array([0.3, 0.6, 0.8]),
        jnp.array([[0.1, 0.5, -0.3], [1.0, 0.0, -1.0], [0.2, 0.2, 0.9]]),
    )
    est = draws(
        lambda k: objective.value_and_grad_estimate(k, *params, argnums=(0, 1, 2)), N, raw=True
    )
    check(est, expect, params, "MVD on batched sites (raw keys)")


def test_enum_under_nested_vmaps_is_element_wise():
    """A categorical choice vectorized by two vmaps is enumerated element by element."""

    @gv.expectation
    def objective(key, logits):
        ks = jax.random.split(key, (2, 2))
        i = jax.vmap(jax.vmap(lambda k, lg: gv.categorical.enum.sample(k, lg)))(ks, logits)
        return ((i[0, 0] * i[1, 1] - i[0, 1]) ** 2 + i[1, 0]).astype(jnp.float32)

    grid = jnp.array(list(itertools.product(range(3), repeat=4)), jnp.float32)  # [81, 4]
    f = (grid[:, 0] * grid[:, 3] - grid[:, 1]) ** 2 + grid[:, 2]

    def expect(logits):
        pi = jax.nn.softmax(logits, -1).reshape(4, 3)
        idx = grid.astype(jnp.int32)
        w = pi[0, idx[:, 0]] * pi[1, idx[:, 1]] * pi[2, idx[:, 2]] * pi[3, idx[:, 3]]
        return w @ f

    logits = jnp.array([[[0.1, 0.5, -0.3], [1.0, 0.0, -1.0]], [[0.2, 0.2, 0.9], [-0.5, 0.3, 0.1]]])
    est = draws(lambda k: objective.value_and_grad_estimate(k, logits, argnums=(0,)), N)
    check(est, expect, (logits,), "ENUM under nested vmaps")


def test_baseline_mapped_by_the_outer_of_two_vmaps():
    """Regression: a baseline mapped only by the outer vmap was left without the inner
    axis, and broadcast against the site's ``[outer, inner]`` log densities from the
    right (a shape error, or a silent misalignment when the sizes agree)."""

    @gv.expectation
    def objective(key, mu, b):
        ks = jax.random.split(key, (2, 3))

        def row(krow, brow):
            return jax.vmap(lambda k, m: gv.normal.reinforce.with_baseline(brow).sample(k, m, 1.0))(
                krow, mu
            )

        z = jax.vmap(row)(ks, b)
        return jnp.sum(z**2)

    mu, b = jnp.array([0.5, -0.2, 1.0]), jnp.array([3.0, -1.0])
    g = draws(lambda k: objective.grad_estimate(k, mu, b), N)
    assert_unbiased(g, 2 * 2 * mu, "baseline mapped by the outer vmap")


def test_enum_masks_values_outside_an_element_s_support():
    """Regression: element-wise ENUM of binomials with different total counts enumerates
    0..max(count) for every element; values above an element's count have probability 0
    and the continuation may be undefined there (here sqrt of a negative number), which
    leaked a NaN into the estimate."""
    counts = jnp.array([2, 4])

    @gv.expectation
    def objective(key, p):
        k = gv.binomial.enum.sample(key, counts, p)
        return jnp.sum(jnp.sqrt(counts - k) * jnp.array([1.0, 2.0]))

    def expect(p):
        total = 0.0
        for i, (n, w) in enumerate(zip([2, 4], [1.0, 2.0], strict=True)):
            for k in range(n + 1):
                total = total + w * math.comb(n, k) * p[i] ** k * (1 - p[i]) ** (n - k) * math.sqrt(
                    n - k
                )
        return total

    p = jnp.array([0.3, 0.6])
    est = draws(lambda k: objective.value_and_grad_estimate(k, p, argnums=(0,)), 2000)
    assert np.all(np.isfinite(np.asarray(est[0]))) and np.all(np.isfinite(np.asarray(est[1][0])))
    check(est, expect, (p,), "ENUM of binomials with different counts")


def test_expectation_closing_over_a_differentiated_value():
    """``jax.grad`` of a function that builds an objective closing over its argument:
    the closed-over tracer enters the staged program as a constant with a tangent."""

    def estimate(key, theta):
        @gv.expectation
        def objective(k):
            z = gv.normal.reinforce.sample(k, theta, 1.0)
            return z**2 + gv.normal.sample(jax.random.fold_in(k, 1), theta, 1.0)

        return objective.estimate(key)

    g = draws(lambda k: jax.grad(estimate, argnums=1)(k, 0.7), N)
    assert_unbiased(g, 2 * 0.7 + 1, "gradient in a closed-over value")


def test_unused_integer_and_constant_arguments():
    """Symbolic-zero tangents (an unused argument), integer arguments, literal outputs."""

    @gv.expectation
    def objective(key, mu, unused, n):
        return n * gv.normal.sample(key, mu, 1.0) + 2.0

    v, (g_mu, g_unused) = objective.value_and_grad_estimate(
        jax.random.key(1), 0.5, 1.0, 3, argnums=(0, 1)
    )
    assert g_mu == 3.0 and g_unused == 0.0
    assert v.dtype == jnp.float32 and g_mu.dtype == jnp.float32  # x64 off

    @gv.expectation
    def constant(key, mu):
        return 1.5

    assert constant.value_and_grad_estimate(jax.random.key(0), 2.0) == (1.5, 0.0)

    @gv.expectation
    def identity(key, mu):
        return mu

    assert identity.value_and_grad_estimate(jax.random.key(0), 2.0) == (2.0, 1.0)
