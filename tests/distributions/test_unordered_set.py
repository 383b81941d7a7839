"""The unordered set estimator (Kool et al., 2020) and Gumbel-softmax straight-through
(biased on purpose) (issue 12)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import genvi as gv

VALUES = jnp.array([1.0, -2.0, 3.0, 0.5, -1.0])


def make(dist):
    @gv.gen
    def guide(logits, mu):
        k = dist(logits) @ "k"
        z = gv.normal(mu + VALUES[k], 1.0) @ "z"  # later randomness, REPARAM
        return k, z

    @gv.expectation
    def objective(key, logits, mu):
        k, z = guide.simulate(key, logits, mu).retval
        return jnp.sum(jnp.sin(z) + VALUES[k] ** 2)

    return objective


def exact(logits, mu):
    # E[sin(z)] for z ~ N(m, 1) is sin(m) exp(-1/2); independent rows of logits add up
    p = jax.nn.softmax(logits, -1)
    vals = VALUES[: logits.shape[-1]]
    return jnp.sum(p * (jnp.sin(mu + vals) * jnp.exp(-0.5) + vals**2))


def _check_unbiased(objective, logits, mu, n=6000, seed=1):
    keys = jax.random.split(jax.random.key(seed), n)
    v = jax.jit(jax.vmap(lambda k: objective.estimate(k, logits, mu)))(keys)
    g_logits, g_mu = jax.jit(
        jax.vmap(lambda k: objective.grad_estimate(k, logits, mu, argnums=(0, 1)))
    )(keys)
    want_v = exact(logits, mu)
    want_logits, want_mu = jax.grad(exact, argnums=(0, 1))(logits, mu)
    assert abs(float(v.mean() - want_v)) < 4 * float(v.std()) / np.sqrt(n) + 1e-5
    for got, want in ((g_logits, want_logits), (g_mu, want_mu)):
        se = np.asarray(got.std(0)) / np.sqrt(n)
        assert np.all(np.abs(np.asarray(got.mean(0) - want)) < 4 * se + 1e-5)
    return g_logits


PEAKED = jnp.array([2.5, -0.4, 0.1, -1.0, 0.7])


@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_unbiased_against_the_exact_gradient(size):
    _check_unbiased(make(gv.categorical.with_strategy(gv.UnorderedSet(size))), PEAKED, 0.3)


def test_whole_support_is_exact():
    # k = |support|: the set is the support, the weights its probabilities (zero variance)
    objective = make(gv.categorical.with_strategy(gv.UnorderedSet(5)))
    keys = jax.random.split(jax.random.key(3), 4)
    g = jax.jit(jax.vmap(lambda k: objective.grad_estimate(k, PEAKED, 0.3, argnums=0)))(keys)
    # only the later normal is random, with the same draw for every value (common random
    # numbers), so on the same keys the estimates equal ENUM's
    enum = make(gv.categorical.enum)
    g_enum = jax.jit(jax.vmap(lambda k: enum.grad_estimate(k, PEAKED, 0.3, argnums=0)))(keys)
    v = jax.vmap(lambda k: objective.estimate(k, PEAKED, 0.3))(keys)
    v_enum = jax.vmap(lambda k: enum.estimate(k, PEAKED, 0.3))(keys)
    np.testing.assert_allclose(v, v_enum, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g, g_enum, rtol=1e-4, atol=1e-5)


def test_array_of_independent_choices_and_vmap():
    logits = jnp.stack([PEAKED, -PEAKED, jnp.zeros(5)])  # three choices at one address
    _check_unbiased(make(gv.categorical.with_strategy(gv.UnorderedSet(2))), logits, 0.3)

    # the same choices made by gv.vmap (a batched site with one key per row)
    point = gv.categorical.with_strategy(gv.UnorderedSet(2))

    @gv.gen
    def guide(logits, mu):
        k = gv.vmap(point, in_axes=0)(logits) @ "k"
        z = gv.normal(mu + VALUES[k], 1.0) @ "z"
        return k, z

    @gv.expectation
    def objective(key, logits, mu):
        k, z = guide.simulate(key, logits, mu).retval
        return jnp.sum(jnp.sin(z) + VALUES[k] ** 2)

    _check_unbiased(objective, logits, 0.3, seed=4)


def test_zero_probability_values_are_never_run():
    # two of five classes impossible; a set of 4 holds every possible value: exact, finite
    logits = jnp.array([0.3, -jnp.inf, 1.0, -jnp.inf, -0.5])

    @gv.gen
    def guide(logits):
        return gv.categorical.with_strategy(gv.UnorderedSet(4))(logits) @ "k"

    @gv.gen
    def model(logits):
        return gv.categorical(jnp.array([0.3, -jnp.inf, 1.0, -jnp.inf, -0.5]) * 0.5) @ "k"

    @gv.expectation
    def objective(key, logits):
        tr = guide.simulate(key, logits)
        lp, _ = model.assess(tr.choices, logits)
        return lp - tr.score  # -inf at an impossible value, were it ever run

    keys = jax.random.split(jax.random.key(5), 200)
    v = jax.jit(jax.vmap(lambda k: objective.estimate(k, logits)))(keys)
    g = jax.jit(jax.vmap(lambda k: objective.grad_estimate(k, logits)))(keys)
    assert bool(jnp.all(jnp.isfinite(v))) and bool(jnp.all(jnp.isfinite(g)))

    def want(lg):
        q = jax.nn.softmax(lg)
        p = jax.nn.softmax(jnp.array([0.3, -jnp.inf, 1.0, -jnp.inf, -0.5]) * 0.5)
        ok = q > 0
        return jnp.sum(
            jnp.where(ok, q * (jnp.log(jnp.where(ok, p, 1)) - jnp.log(jnp.where(ok, q, 1))), 0)
        )

    np.testing.assert_allclose(v, want(logits), rtol=1e-5)
    gw = jax.grad(want)(logits)
    np.testing.assert_allclose(
        g[:, jnp.array([0, 2, 4])], jnp.broadcast_to(gw[jnp.array([0, 2, 4])], (200, 3)), atol=1e-5
    )


def test_lower_variance_than_rloo_at_equal_evaluations():
    # a peaked distribution: k independent draws repeat the likely value, a set does not
    logits = jnp.array([3.0, 0.0, -0.5, 0.2, -1.0])
    keys = jax.random.split(jax.random.key(6), 3000)

    def variance(strategy):
        objective = make(gv.categorical.with_strategy(strategy))
        g = jax.jit(jax.vmap(lambda k: objective.grad_estimate(k, logits, 0.3, argnums=0)))(keys)
        return float(jnp.sum(g.var(0)))

    assert variance(gv.UnorderedSet(3)) < 0.5 * variance(gv.LeaveOneOut(3))


def test_flip_and_binomial():
    @gv.gen
    def guide(p):
        b = gv.flip.with_strategy(gv.UnorderedSet(1))(p) @ "b"
        c = gv.binomial.with_strategy(gv.UnorderedSet(2))(4, p) @ "c"
        return b, c

    @gv.expectation
    def objective(key, p):
        b, c = guide.simulate(key, p).retval
        return (b + 1.0) * (c - 1.5) ** 2

    def want(p):
        # E[b + 1] E[(c - 1.5)^2] for b ~ flip(p), c ~ binomial(4, p), independent
        ks = jnp.arange(5)
        comb = jnp.array([1.0, 4.0, 6.0, 4.0, 1.0])
        pc = comb * p**ks * (1 - p) ** (4 - ks)
        return (p + 1.0) * jnp.sum(pc * (ks - 1.5) ** 2)

    keys = jax.random.split(jax.random.key(7), 8000)
    g = jax.jit(jax.vmap(lambda k: objective.grad_estimate(k, 0.35)))(keys)
    se = float(g.std()) / np.sqrt(keys.shape[0])
    assert abs(float(g.mean() - jax.grad(want)(0.35))) < 4 * se


def test_unordered_set_misuse():
    for bad in (0, 7, 2.5, True):
        with pytest.raises(gv.StrategyError, match="set size"):
            gv.UnorderedSet(bad)  # type: ignore[arg-type]
    with pytest.raises(gv.StrategyError, match="finite support"):
        gv.normal.with_strategy(gv.UnorderedSet(2))
    objective = make(gv.categorical.with_strategy(gv.UnorderedSet(6)))
    with pytest.raises(gv.StrategyError, match="only 5 values"):
        objective.grad_estimate(jax.random.key(0), PEAKED, 0.3)

    @gv.gen
    def step(c, p):
        b = gv.flip.with_strategy(gv.UnorderedSet(2))(p) @ "b"
        return c + b, None

    @gv.expectation
    def looped(key, ps):
        return gv.scan(step).simulate(key, 0.0, ps).retval[0]

    with pytest.raises(gv.StrategyError, match="loop"):
        looped.grad_estimate(jax.random.key(0), jnp.full(3, 0.4))
    assert repr(gv.UnorderedSet(3)) == "UNORDERED_SET(3)"


# ----- Gumbel-softmax straight-through (biased on purpose) -----


def _st_expected_tangent(logit, temperature, n=200001):
    """E[d sigmoid((l + L)/t)/dl] over logistic L, by quadrature on the CDF (midpoints)."""
    u = (np.arange(n) + 0.5) / n
    x = (logit + np.log(u) - np.log1p(-u)) / temperature
    s = 1 / (1 + np.exp(-x))
    return float(np.mean(s * (1 - s) / temperature))


@pytest.mark.parametrize("temperature", [0.5, 1.0])
def test_straight_through_is_the_stated_biased_estimator(temperature):
    a = 2.0
    st = gv.bernoulli.with_strategy(gv.GumbelSoftmaxBiased(temperature))

    @gv.expectation
    def objective(key, logit):
        z = st.simulate(key, logit).retval
        return a * z

    keys = jax.random.split(jax.random.key(8), 20000)
    logit = 0.4
    v = jax.jit(jax.vmap(lambda k: objective.estimate(k, logit)))(keys)
    g = jax.jit(jax.vmap(lambda k: objective.grad_estimate(k, logit)))(keys)
    n = keys.shape[0]
    p = float(jax.nn.sigmoid(logit))
    assert v.dtype == jnp.result_type(float)
    # the value is an exact draw: its mean is a p
    assert abs(float(v.mean()) - a * p) < 4 * float(v.std()) / np.sqrt(n)
    # the tangent is a E[sigmoid'((l + L)/t) / t], not the true a p (1 - p)
    want = a * _st_expected_tangent(logit, temperature)
    assert abs(float(g.mean()) - want) < 4 * float(g.std()) / np.sqrt(n) + 1e-6
    assert abs(want - a * p * (1 - p)) > 10 * float(g.std()) / np.sqrt(n)


def test_straight_through_in_a_loop_and_as_data():
    st = gv.flip.with_strategy(gv.GumbelSoftmaxBiased(0.7))

    @gv.gen
    def step(c, p):
        b = st(p) @ "b"
        return c + 2.0 * b, b

    @gv.expectation
    def objective(key, ps):
        return gv.scan(step).simulate(key, 0.0, ps).retval[0]

    g = objective.grad_estimate(jax.random.key(0), jnp.full(4, 0.4))
    assert g.shape == (4,) and bool(jnp.all(jnp.isfinite(g))) and bool(jnp.any(g != 0))
    tr = gv.scan(step).simulate(jax.random.key(1), 0.0, jnp.full(4, 0.4))
    b = tr.retval[1]
    assert b.dtype == jnp.result_type(float) and set(np.unique(np.asarray(b))) <= {0.0, 1.0}
    # its density is the flip's, at the float value
    assert float(tr.score) == pytest.approx(
        float(jnp.sum(jnp.where(b == 1, jnp.log(0.4), jnp.log(0.6)))), rel=1e-5
    )
    # plain jax.grad outside an expectation: no pathwise derivative through a discrete value
    gz = jax.grad(lambda p: st.sample(jax.random.key(2), p))(0.4)
    assert float(gz) == 0.0


def test_straight_through_misuse():
    for bad in (0.0, -1.0, True, "1"):
        with pytest.raises(gv.StrategyError, match="temperature"):
            gv.GumbelSoftmaxBiased(bad)  # type: ignore[arg-type]
    with pytest.raises(gv.StrategyError, match="binary choices"):
        gv.categorical.with_strategy(gv.GumbelSoftmaxBiased(1.0))
    assert "BIASED" in repr(gv.GumbelSoftmaxBiased(0.5))
