"""gv.sum_out: discrete choices summed out exactly, by enumeration and by the forward
algorithm, against brute force over every path; FFBS against exact posterior marginals."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import logsumexp
from jax.scipy.stats import norm

import genvi as gv
from genvi.core._derive import row_keys

K, T = 3, 5
YS = jnp.array([0.1, -0.8, 1.9, 2.2, 0.4])


def hmm_step(params):
    log_a, mu, sd = params  # log_a: [K + 1, K], row K is the initial distribution

    @gv.gen
    def step(z_prev, _):
        z = gv.categorical(log_a[z_prev]) @ "z"
        gv.normal(mu[z], sd) @ "y"
        return z, None

    return step


def params_of(a_logits, mu):
    return jax.nn.log_softmax(a_logits, axis=-1), mu, 0.7


A0 = jnp.array([[1.0, -1.0, 0.2], [0.1, 0.8, -0.5], [-0.3, 0.2, 0.6], [0.4, 0.0, -0.2]])
MU0 = jnp.array([-1.0, 0.5, 2.0])


def brute_paths(log_a, mu, sd, ys):
    """Log joint of every one of the K^T paths."""
    paths = jnp.array(list(itertools.product(range(K), repeat=len(ys))))
    prev = jnp.concatenate([jnp.full((paths.shape[0], 1), K), paths[:, :-1]], axis=1)
    lp = log_a[prev, paths] + norm.logpdf(ys[None, :], mu[paths], sd)
    return paths, jnp.sum(lp, axis=1)


def brute(a_logits, mu):
    return logsumexp(brute_paths(*params_of(a_logits, mu), YS)[1])


def chain_logp(a_logits, mu):
    chain = gv.sum_out(gv.scan(hmm_step(params_of(a_logits, mu)), length=T), "z")
    return chain.assess({"y": YS}, K, None)[0]


def test_forward_algorithm_equals_brute_force_eager_and_jit():
    want = brute(A0, MU0)
    np.testing.assert_allclose(chain_logp(A0, MU0), want, rtol=1e-5)
    np.testing.assert_allclose(jax.jit(chain_logp)(A0, MU0), want, rtol=1e-5)
    chain = gv.sum_out(gv.scan(hmm_step(params_of(A0, MU0)), length=T), "z")
    jaxpr = jax.make_jaxpr(lambda y: chain.assess({"y": y}, K, None)[0])(YS)
    # the recursion is one K x K logsumexp per step: no K^T anything in the program
    sizes = [int(np.prod(v.aval.shape)) for e in jaxpr.jaxpr.eqns for v in e.outvars]
    assert max(sizes) < K**T


def test_gradients_equal_those_of_brute_force():
    got = jax.grad(chain_logp, argnums=(0, 1))(A0, MU0)
    want = jax.grad(brute, argnums=(0, 1))(A0, MU0)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_ffbs_samples_the_exact_posterior():
    params = params_of(A0, MU0)
    paths, lj = brute_paths(*params, YS)
    post = jnp.exp(lj - logsumexp(lj))
    exact = np.stack(
        [
            np.asarray(jnp.sum(post[:, None] * (paths[:, t, None] == jnp.arange(K)), 0))
            for t in range(T)
        ]
    )
    chain = gv.sum_out(gv.scan(hmm_step(params), length=T), "z")
    n = 20000
    keys = jax.random.split(jax.random.key(0), n)
    draws = jax.jit(
        jax.vmap(lambda k: chain.posterior.simulate(k, {"y": YS}, K, None).choices["z"])
    )(keys)
    freq = np.stack([np.bincount(np.asarray(draws[:, t]), minlength=K) / n for t in range(T)])
    se = np.sqrt(exact * (1 - exact) / n)
    assert np.all(np.abs(freq - exact) <= 5 * se + 1e-9)
    # the posterior's density is exact: log p(path | y) from brute force
    tr = chain.posterior.simulate(jax.random.key(1), {"y": YS}, K, None)
    i = int(np.flatnonzero(np.all(np.asarray(paths) == np.asarray(tr.choices["z"]), axis=1))[0])
    np.testing.assert_allclose(tr.score, lj[i] - logsumexp(lj), rtol=1e-5)


@gv.gen
def mixture(weights, means):
    k = gv.categorical(jnp.log(weights)) @ "k"
    gv.normal(means[k], 1.0) @ "x"


def test_enumeration_of_a_mixture_and_its_vmap_composition():
    w, m = jnp.array([0.2, 0.5, 0.3]), jnp.array([-2.0, 0.0, 3.0])
    xs = jnp.array([0.3, -1.7, 2.5, 4.0])
    one = gv.sum_out(mixture, "k")
    want = logsumexp(jnp.log(w)[None] + norm.logpdf(xs[:, None], m[None]), axis=1)
    for x, lp in zip(xs, want, strict=True):
        np.testing.assert_allclose(one.assess({"x": x}, w, m)[0], lp, rtol=1e-5)
    many = gv.vmap(one, in_axes=(None, None))
    # N independent points: their joint marginal density, in O(N K)
    lp, _ = jax.vmap(lambda x: one.assess({"x": x}, w, m))(xs)
    np.testing.assert_allclose(jnp.sum(lp), jnp.sum(want), rtol=1e-5)
    del many

    @gv.gen
    def model(means):
        gv.vmap(gv.sum_out(mixture, "k"), in_axes=(None, None))(w, means) @ "pts"

    # gv.vmap over copies needs an axis: use one point per copy through in_axes
    @gv.gen
    def model2(means, n):
        gv.vmap(gv.sum_out(mixture, "k"), in_axes=(0, None))(
            jnp.broadcast_to(w, (n, 3)), means
        ) @ "pts"

    lp2, _ = model2.assess({"pts": {"x": xs}}, m, 4)
    np.testing.assert_allclose(lp2, jnp.sum(want), rtol=1e-5)
    del model


def test_two_choices_and_the_posterior_by_enumeration():
    @gv.gen
    def two():
        a = gv.flip(0.3) @ "a"
        b = gv.flip(0.6) @ "b"
        gv.normal(a + 2.0 * b, 1.0) @ "x"

    so = gv.sum_out(two, ["a", "b"])
    grid = [(a, b) for a in (0, 1) for b in (0, 1)]
    lj = jnp.array(
        [
            np.log(0.3 if a else 0.7) + np.log(0.6 if b else 0.4) + norm.logpdf(1.1, a + 2.0 * b)
            for a, b in grid
        ]
    )
    np.testing.assert_allclose(so.assess({"x": 1.1})[0], logsumexp(lj), rtol=1e-5)
    lp, _ = so.posterior.assess({"a": 1, "b": 0}, {"x": 1.1})
    np.testing.assert_allclose(lp, lj[2] - logsumexp(lj), rtol=1e-5)
    tr = so.simulate(jax.random.key(0))
    assert set(tr.choices.addresses()) == {("x",)}
    np.testing.assert_allclose(tr.score, so.assess(tr.choices)[0], rtol=1e-6)


def test_inside_an_objective_with_a_continuous_global_latent():
    log_a = jax.nn.log_softmax(A0, axis=-1)

    @gv.gen
    def step(z_prev, mu):
        z = gv.categorical(log_a[z_prev]) @ "z"
        gv.normal(mu[z], 0.7) @ "y"
        return z, None

    chain = gv.sum_out(gv.scan(step, length=T), "z")

    @gv.gen
    def model():
        mu = gv.normal(jnp.zeros(K), 3.0) @ "mu"
        chain(K, jnp.broadcast_to(mu, (T, K))) @ "chain"

    @gv.gen
    def guide(m):
        gv.normal(m, 0.5) @ "mu"

    objective = gv.objectives.elbo(model, guide)
    key, m = jax.random.key(3), jnp.array([-1.0, 0.0, 2.0])
    v = objective.estimate(key, (), (m,), {"chain": {"y": YS}})
    g = objective.grad_estimate(key, (), (m,), {"chain": {"y": YS}}, argnums=1)[0]

    def hand(m):  # the same ELBO by hand on the same noise
        tr = guide.simulate(row_keys(key, 3)[0], m)  # the ELBO's guide key
        mu = tr.choices["mu"]
        prior = jnp.sum(norm.logpdf(mu, 0.0, 3.0))
        return prior + logsumexp(brute_paths(log_a, mu, 0.7, YS)[1]) - tr.score

    np.testing.assert_allclose(v, hand(m), rtol=1e-5)
    np.testing.assert_allclose(g, jax.grad(hand)(m), rtol=1e-4, atol=1e-5)


def test_gradient_in_the_chain_parameters_inside_an_objective():
    """The chain's own parameters (initial and transition logits) learned through an
    ELBO: the support probe of gv.sum_out must not add a score term of a draw of its own
    (it once did: a fixed draw of the first step's categorical under gv.expectation)."""

    @gv.gen
    def model(a_logits):
        mu = gv.normal(jnp.zeros(K), 3.0) @ "mu"
        log_a = jax.nn.log_softmax(a_logits, axis=-1)

        @gv.gen
        def step(z_prev, mu_t):
            z = gv.categorical(log_a[z_prev]) @ "z"
            gv.normal(mu_t[z], 0.7) @ "y"
            return z, None

        gv.sum_out(gv.scan(step, length=T), "z")(K, jnp.broadcast_to(mu, (T, K))) @ "chain"

    @gv.gen
    def guide(m):
        gv.normal(m, 0.5) @ "mu"

    objective = gv.objectives.elbo(model, guide)
    key, m = jax.random.key(4), jnp.array([-1.0, 0.0, 2.0])
    obs = {"chain": {"y": YS}}
    g = objective.grad_estimate(key, (A0,), (m,), obs, argnums=0)[0]

    def hand(a_logits):
        tr = guide.simulate(row_keys(key, 3)[0], m)
        mu = tr.choices["mu"]
        prior = jnp.sum(norm.logpdf(mu, 0.0, 3.0))
        log_a = jax.nn.log_softmax(a_logits, axis=-1)
        return prior + logsumexp(brute_paths(log_a, mu, 0.7, YS)[1]) - tr.score

    np.testing.assert_allclose(g, jax.grad(hand)(A0), rtol=1e-4, atol=1e-5)


def test_misuse():
    @gv.gen
    def cont():
        gv.normal(0.0, 1.0) @ "u"
        gv.normal(0.0, 1.0) @ "x"

    with pytest.raises(gv.ModelingError, match="not finite"):
        gv.sum_out(cont, "u").assess({"x": 0.0})
    with pytest.raises(gv.AddressError, match="'nope'"):
        gv.sum_out(mixture, "nope").assess({"x": 0.0}, jnp.ones(2) / 2, jnp.zeros(2))
    with pytest.raises(gv.AddressError, match="sums out"):
        gv.sum_out(mixture, "k").assess({"x": 0.0, "k": 1}, jnp.ones(2) / 2, jnp.zeros(2))

    @gv.gen
    def arr():
        k = gv.categorical(jnp.zeros((4, 3))) @ "k"
        gv.normal(1.0 * k, 1.0) @ "x"

    with pytest.raises(gv.ModelingError, match="gv.vmap"):
        gv.sum_out(arr, "k").assess({"x": jnp.zeros(4)})

    @gv.gen
    def shifted(z_prev, _):
        z = gv.categorical(jnp.zeros(3)) @ "z"
        gv.normal(1.0 * z, 1.0) @ "y"
        return (z + 1) % 3, None

    with pytest.raises(gv.ModelingError, match="carry"):
        gv.sum_out(gv.scan(shifted, length=T), "z").assess({"y": YS}, 0, None)
    with pytest.raises(gv.ModelingError, match="one address"):
        gv.sum_out(gv.scan(shifted, length=T), ["z", "y"])
    with pytest.raises(gv.AddressError):
        gv.sum_out(gv.scan(hmm_step(params_of(A0, MU0)), length=T), "z").assess({}, K, None)
