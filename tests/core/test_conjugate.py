"""Importance sampling on models whose posterior and marginal likelihood are known exactly.

With the prior as proposal, ``w = exp(log_weight)`` satisfies ``E[w] = p(x)`` and
``E[w f(z)] = p(x) E[f(z) | x]``. So ``r = w / p(x)`` has mean 1 and ``r f(z)`` has mean
``E[f(z) | x]``: both are plain Monte Carlo averages whose standard error we measure from
the same particles. The self-normalized estimates of :func:`genvi.importance_sampling` are
checked with the delta-method standard error ``sqrt(sum_k wbar_k^2 (f_k - est)^2)``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special as sp
import scipy.stats as st

import genvi as gv

K = 20_000  # particles
K_SE = 5.0

# Normal-Normal: z ~ N(mu0, s0), x_i ~ N(z, s) i.i.d., observed x (one array-valued choice).
MU0, S0, S = 0.5, 1.5, 1.0
X = np.array([1.2, 2.1, 0.4, 1.7])


@gv.gen
def normal_normal(mu0):
    z = gv.normal(mu0, S0) @ "z"
    gv.normal(jnp.full(X.shape, z), S) @ "x"
    return z


def exact_normal_normal():
    n = len(X)
    prec = 1 / S0**2 + n / S**2
    mean = (MU0 / S0**2 + X.sum() / S**2) / prec
    cov = S**2 * np.eye(n) + S0**2 * np.ones((n, n))
    log_ml = st.multivariate_normal(np.full(n, MU0), cov).logpdf(X)
    return mean, 1 / prec, log_ml


def _within(estimate, exact, se, what):
    assert abs(estimate - exact) < K_SE * se, f"{what}: {estimate} vs exact {exact} (se {se})"


def test_raw_importance_is_unbiased_for_marginal_likelihood_and_posterior(key):
    mean, var, log_ml = exact_normal_normal()
    keys = jax.random.split(key, K)
    trs, logw = jax.jit(jax.vmap(lambda k: normal_normal.importance(k, {"x": X}, MU0)))(keys)
    z = np.asarray(trs["z"], np.float64)
    r = np.exp(np.asarray(logw, np.float64) - log_ml)  # w / p(x), mean 1
    _within(r.mean(), 1.0, r.std() / np.sqrt(K), "p(x) / exact")
    _within((r * z).mean(), mean, (r * z).std() / np.sqrt(K), "E[z | x]")
    _within((r * z**2).mean(), var + mean**2, (r * z**2).std() / np.sqrt(K), "E[z^2 | x]")
    # each weight is the likelihood of x given the particle's z
    np.testing.assert_allclose(logw[:3], st.norm(z[:3, None], S).logpdf(X).sum(1), rtol=1e-4)


def _snis_check(res, f, exact, what):
    w = np.asarray(res.normalized_weights, np.float64)
    vals = np.asarray(f, np.float64)
    est = float(np.sum(w * vals))
    se = np.sqrt(np.sum(w**2 * (vals - est) ** 2))
    _within(est, exact, se, what)
    return est


def test_importance_sampling_recovers_normal_normal(key):
    mean, var, log_ml = exact_normal_normal()
    res = jax.jit(
        lambda k: gv.importance_sampling(k, normal_normal, {"x": X}, (MU0,), particles=K)
    )(key)
    logw = np.asarray(res.log_weights, np.float64)
    r = np.exp(logw - log_ml)
    # exp(log_ml) is the mean of the weights, an unbiased estimate of p(x)
    np.testing.assert_allclose(res.log_ml, np.log(r.mean()) + log_ml, rtol=1e-4)
    _within(float(np.exp(res.log_ml - log_ml)), 1.0, r.std() / np.sqrt(K), "p(x) / exact")
    z = np.asarray(res.traces.choices["z"])
    est = _snis_check(res, z, mean, "E[z | x]")
    np.testing.assert_allclose(res.mean(lambda c: c["z"]), est, rtol=1e-4)
    _snis_check(res, (z - mean) ** 2, var, "Var[z | x]")
    assert 1.0 < float(res.effective_sample_size) <= K


# Beta-Bernoulli: p ~ Beta(a, b), n flips at one address.
A, B = 2.0, 3.0
FLIPS = np.array([1, 0, 1, 1, 1, 0, 1])


@gv.gen
def beta_bernoulli():
    p = gv.beta(A, B) @ "p"
    gv.flip(jnp.full(FLIPS.shape, p)) @ "flips"
    return p


def test_importance_sampling_recovers_beta_bernoulli(key):
    s, n = FLIPS.sum(), len(FLIPS)
    log_ml = sp.betaln(A + s, B + n - s) - sp.betaln(A, B)
    post_mean = (A + s) / (A + B + n)
    res = jax.jit(
        lambda k: gv.importance_sampling(k, beta_bernoulli, {"flips": FLIPS}, particles=K)
    )(key)
    r = np.exp(np.asarray(res.log_weights, np.float64) - log_ml)
    _within(float(np.exp(res.log_ml - log_ml)), 1.0, r.std() / np.sqrt(K), "p(flips) / exact")
    p = np.asarray(res.traces.choices["p"])
    _snis_check(res, p, post_mean, "E[p | flips]")
    _within((r * p).mean(), post_mean, (r * p).std() / np.sqrt(K), "unbiased E[p | flips]")


# A discrete mixture enumerated by hand: c ~ categorical(logits), x ~ N(mu[c], 1).
LOGITS = np.array([0.0, 1.0, -0.5])
MUS = np.array([-2.0, 0.0, 3.0])
X_OBS = 1.2


@gv.gen
def mixture():
    c = gv.categorical(jnp.asarray(LOGITS)) @ "c"
    gv.normal(jnp.asarray(MUS)[c], 1.0) @ "x"
    return c


def test_assess_enumerates_to_the_exact_joint():
    prior = sp.softmax(LOGITS)
    for c in range(3):
        logp, _ = mixture.assess({"c": c, "x": X_OBS})
        np.testing.assert_allclose(
            logp, np.log(prior[c]) + st.norm(MUS[c], 1).logpdf(X_OBS), rtol=1e-5
        )


def test_importance_recovers_enumerated_posterior(key):
    prior = sp.softmax(LOGITS)
    joint = prior * st.norm(MUS, 1.0).pdf(X_OBS)
    p_x, posterior = joint.sum(), joint / joint.sum()
    keys = jax.random.split(key, K)
    trs, logw = jax.jit(jax.vmap(lambda k: mixture.importance(k, {"x": X_OBS})))(keys)
    c = np.asarray(trs["c"])
    r = np.exp(np.asarray(logw, np.float64)) / p_x
    _within(r.mean(), 1.0, r.std() / np.sqrt(K), "p(x) / exact")
    for k in range(3):
        f = r * (c == k)
        _within(f.mean(), posterior[k], f.std() / np.sqrt(K), f"P(c={k} | x)")


def test_discrete_model_assess_sums_to_one():
    """Summing exp(assess) over every configuration of a discrete model gives 1."""

    @gv.gen
    def two_flips(p):
        a = gv.flip(p) @ "a"
        b = gv.flip(jnp.where(a == 1, 0.9, 0.2)) @ "b"
        return gv.binomial(2, 0.5 * (a + b) / 2 + 0.1) @ "n"

    a, b, n = (g.ravel() for g in np.meshgrid([0, 1], [0, 1], [0, 1, 2], indexing="ij"))
    logp, _ = jax.vmap(lambda a, b, n: two_flips.assess({"a": a, "b": b, "n": n}, 0.3))(a, b, n)
    np.testing.assert_allclose(np.exp(np.asarray(logp, np.float64)).sum(), 1.0, rtol=1e-5)
