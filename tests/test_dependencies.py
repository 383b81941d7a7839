"""Canaries for the dependencies: a jaxlib that computes wrong numbers fails here first.

jaxlib 0.10.2 has an XLA:CPU fusion regression (jax-ml/jax#39103) that makes a jitted
broadcast-multiply-reduce over a large leading axis wrong by up to 15.6; pyproject.toml
excludes it, and these tests catch the next such regression in CI rather than in a
user's estimates.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import genvi as gv


def test_jitted_broadcast_reduce_matches_numpy():
    # No genvi here: plain JAX against float64 NumPy.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20000, 5, 5)).astype(np.float32)
    w = rng.normal(size=(5, 5)).astype(np.float32)
    got = np.asarray(jax.jit(lambda x, w: jnp.sum(w[None] * x, axis=2) / 1.1547)(x, w))
    want = np.sum(w[None].astype(np.float64) * x, axis=2) / 1.1547
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_an_estimate_is_the_same_alone_and_inside_a_large_vmapped_batch():
    @gv.gen
    def model(theta):
        z = gv.mv_normal_diag(theta, jnp.ones(5)) @ "z"
        gv.mv_normal_diag(z, 0.5 * jnp.ones(5)) @ "x"

    @gv.gen
    def guide(phi):
        gv.mv_normal_diag(phi[0], jnp.exp(phi[1])) @ "z"

    objective = gv.objectives.elbo(model, guide)
    theta, phi, x = jnp.zeros(5), jnp.zeros((2, 5)), jnp.linspace(-1.0, 1.0, 5)

    def one(k):
        return objective.value_and_grad_estimate(k, (theta,), (phi,), {"x": x}, argnums=1)

    keys = jax.random.split(jax.random.key(0), 20000)
    v_all, g_all = jax.jit(jax.vmap(one))(keys)
    for i in (0, 1, 9999, 19999):
        v_i, g_i = jax.jit(one)(keys[i])
        np.testing.assert_allclose(v_all[i], v_i, rtol=1e-5, atol=1e-5)
        for a, b in zip(jax.tree.leaves(g_all), jax.tree.leaves(g_i), strict=True):
            np.testing.assert_allclose(a[i], b, rtol=1e-4, atol=1e-4)


def test_the_installed_jaxlib_is_not_a_known_bad_one():
    import jaxlib

    assert jaxlib.__version__ not in {"0.10.2"}, "jaxlib 0.10.2 miscompiles on CPU (#39103)"
