"""Combinators nested in each other and in @gen functions; densities by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats as st

import genvi as gv


@gv.gen
def emit(z):
    return gv.normal(z, 0.5) @ "y"


@gv.gen
def step(z, _):
    """A latent random walk emitting 3 independent observations per step (vmap in scan)."""
    z = gv.normal(z, 1.0) @ "z"
    gv.vmap(emit)(jnp.full(3, z)) @ "obs"
    return z, None


def chain_logpdf(z0, zs, ys):
    prev = np.concatenate([[z0], zs[:-1]])
    return st.norm(prev, 1.0).logpdf(zs).sum() + st.norm(zs[:, None], 0.5).logpdf(ys).sum()


def test_vmap_inside_scan(key):
    chain = gv.scan(step, length=4)
    tr = jax.jit(chain.simulate)(key, 0.0)
    zs, ys = np.asarray(tr["z"]), np.asarray(tr["obs", "y"])
    assert zs.shape == (4,) and ys.shape == (4, 3)  # time axis, then the copies
    np.testing.assert_allclose(tr.score, chain_logpdf(0.0, zs, ys), rtol=1e-5)
    np.testing.assert_allclose(chain.assess(tr.choices, 0.0)[0], tr.score, rtol=1e-5)
    obs = jnp.arange(12.0).reshape(4, 3)
    tr2, w = chain.importance(key, {"obs": {"y": obs}}, 0.0)
    zs2 = np.asarray(tr2["z"])
    np.testing.assert_allclose(
        w, st.norm(zs2[:, None], 0.5).logpdf(np.asarray(obs)).sum(), rtol=1e-5
    )


def test_scan_inside_vmap_inside_a_model(key):
    @gv.gen
    def model(z0s):
        return gv.vmap(gv.scan(step, length=4))(z0s, None) @ "chains"

    z0s = jnp.array([0.0, 5.0])
    tr = jax.jit(model.simulate)(key, z0s)
    zs, ys = np.asarray(tr["chains", "z"]), np.asarray(tr["chains", "obs", "y"])
    assert zs.shape == (2, 4) and ys.shape == (2, 4, 3)
    want = sum(chain_logpdf(float(z0s[i]), zs[i], ys[i]) for i in range(2))
    np.testing.assert_allclose(tr.score, want, rtol=1e-5)


def test_cond_inside_vmap(key):
    @gv.gen
    def low(x):
        return gv.normal(x, 1.0) @ "a"

    @gv.gen
    def high(x):
        return gv.normal(x + 5.0, 2.0) @ "b"

    @gv.gen
    def one(p):
        c = gv.flip(p) @ "c"
        return gv.cond(high, low)(c, 1.0) @ "val"

    many = gv.vmap(one)
    ps = jnp.linspace(0.1, 0.9, 16)
    tr = jax.jit(many.simulate)(key, ps)
    c = np.asarray(tr["c"])
    a, b = np.asarray(tr["val", "a"]), np.asarray(tr["val", "b"])
    assert 0 < c.sum() < 16
    p = np.asarray(ps)
    want = np.where(
        c == 1, np.log(p) + st.norm(6.0, 2.0).logpdf(b), np.log(1 - p) + st.norm(1.0, 1.0).logpdf(a)
    ).sum()
    np.testing.assert_allclose(tr.score, want, rtol=1e-5)
    np.testing.assert_allclose(jax.jit(many.assess)(tr.choices, ps)[0], want, rtol=1e-5)
    # importance: observe every particle's value in the taken branch
    obs = {"val": {"a": jnp.zeros(16), "b": jnp.full(16, 6.0)}}
    tr2, w = jax.jit(many.importance)(key, obs, ps)
    c2 = np.asarray(tr2["c"])
    want_w = np.where(c2 == 1, st.norm(6.0, 2.0).logpdf(6.0), st.norm(1.0, 1.0).logpdf(0.0)).sum()
    np.testing.assert_allclose(w, want_w, rtol=1e-5)


def test_gen_calling_gen_calling_combinators_under_grad(key):
    @gv.gen
    def inner(mu):
        return gv.vmap(emit)(jnp.full(2, mu)) @ "pts"

    @gv.gen
    def outer(mu):
        m = gv.normal(mu, 1.0) @ "m"
        return inner(m) @ "in"

    cm = {"m": 0.4, "in": {"pts": {"y": jnp.array([0.1, 0.9])}}}

    def logp(mu, m):
        return outer.assess({"m": m, "in": cm["in"]}, mu)[0]

    g_mu, g_m = jax.grad(logp, argnums=(0, 1))(0.2, 0.4)
    np.testing.assert_allclose(g_mu, 0.4 - 0.2, rtol=1e-5)
    np.testing.assert_allclose(g_m, -(0.4 - 0.2) + ((0.1 - 0.4) + (0.9 - 0.4)) / 0.25, rtol=1e-5)
