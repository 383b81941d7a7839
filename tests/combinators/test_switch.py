"""gv.cond and gv.switch: only the taken branch's choices count in the score."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special as sp
import scipy.stats as st

import genvi as gv


@gv.gen
def small(x):
    return gv.normal(x, 1.0) @ "u"


@gv.gen
def large(x):
    v = gv.normal(x, 3.0) @ "v"
    gv.exponential(2.0) @ "e"
    return v


@gv.gen
def shared(x):
    return gv.normal(x + 10.0, 0.5) @ "u"  # the same address as small's, another density


def small_logpdf(c, x):
    return st.norm(x, 1.0).logpdf(c["u"])


def large_logpdf(c, x):
    return st.norm(x, 3.0).logpdf(c["v"]) + st.expon(scale=0.5).logpdf(c["e"])


def test_cond_with_a_concrete_predicate(key):
    sw = gv.cond(large, small)
    tr = sw.simulate(key, True, 0.5)
    assert tr.choices.addresses() == [("e",), ("v",)]  # only the taken branch
    np.testing.assert_allclose(tr.score, large_logpdf(tr.choices, 0.5), rtol=1e-5)
    tr = sw.simulate(key, False, 0.5)
    assert tr.choices.addresses() == [("u",)]
    np.testing.assert_allclose(tr.score, small_logpdf(tr.choices, 0.5), rtol=1e-5)
    assert tr.args == (False, 0.5)
    # assess and importance with a concrete predicate
    logp, ret = sw.assess({"u": 0.1}, False, 0.5)
    np.testing.assert_allclose(logp, st.norm(0.5, 1.0).logpdf(0.1), rtol=1e-5)
    assert ret == 0.1
    tr, w = sw.importance(key, {"v": 2.0}, True, 0.5)
    np.testing.assert_allclose(w, st.norm(0.5, 3.0).logpdf(2.0), rtol=1e-5)
    np.testing.assert_allclose(tr.score, large_logpdf(tr.choices, 0.5), rtol=1e-5)


def test_traced_index_pads_untaken_branches_and_scores_the_taken_one(key):
    sw = gv.switch(small, large, shared)
    for i, (logpdf_fn, own) in enumerate(
        [(small_logpdf, ["u"]), (large_logpdf, ["e", "v"]), (None, ["u"])]
    ):
        tr = jax.jit(sw.simulate)(key, i, 0.5)
        # every branch's addresses are present (a static structure) ...
        assert tr.choices.addresses() == [("e",), ("u",), ("v",)]
        # ... the untaken ones hold zeros, and only the taken branch is scored
        for a in {"e", "u", "v"} - set(own):
            assert tr[a] == 0.0
        want = logpdf_fn(tr.choices, 0.5) if logpdf_fn else st.norm(10.5, 0.5).logpdf(tr["u"])
        np.testing.assert_allclose(tr.score, want, rtol=1e-5)
        # assess under jit gives the same density; its retval is the taken branch's
        logp, ret = jax.jit(sw.assess)(tr.choices, i, 0.5)
        np.testing.assert_allclose(logp, want, rtol=1e-5)
        np.testing.assert_allclose(ret, tr.retval)
        # and so does assess with a concrete index (the padded values are ignored)
        np.testing.assert_allclose(sw.assess(tr.choices, i, 0.5)[0], want, rtol=1e-5)


def test_importance_with_a_traced_index(key):
    sw = gv.cond(large, small)
    tr, w = jax.jit(sw.importance)(key, {"u": 1.0, "v": 2.0}, False, 0.5)
    # small is taken: its constraint counts, large's is ignored
    np.testing.assert_allclose(w, st.norm(0.5, 1.0).logpdf(1.0), rtol=1e-5)
    np.testing.assert_allclose(tr.score, w, rtol=1e-6)
    assert tr["u"] == 1.0


@gv.gen
def mixture(p):
    b = gv.flip(p) @ "b"
    return gv.cond(large, small)(b, 0.5) @ "x"


def mixture_logpdf(c, p):
    b = int(c["b"])
    branch = large_logpdf(c["x"], 0.5) if b else small_logpdf(c["x"], 0.5)
    return np.log(p if b else 1 - p) + branch


def test_random_predicate_inside_a_model(key):
    # eager: the flip is concrete, only its branch is in the trace
    for k in jax.random.split(key, 4):
        tr = mixture.simulate(k, 0.3)
        np.testing.assert_allclose(tr.score, mixture_logpdf(tr.choices, 0.3), rtol=1e-5)
        np.testing.assert_allclose(mixture.assess(tr.choices, 0.3)[0], tr.score, rtol=1e-5)


def test_random_predicate_under_jit_and_vmap(key):
    keys = jax.random.split(key, 64)
    trs = jax.jit(jax.vmap(mixture.simulate, in_axes=(0, None)))(keys, 0.3)
    bs = np.asarray(trs["b"])
    assert 0 < bs.sum() < 64  # both branches are taken by some particle
    for i in range(64):
        c = jax.tree_util.tree_map(lambda a, i=i: a[i], trs.choices)
        np.testing.assert_allclose(trs.score[i], mixture_logpdf(c, 0.3), rtol=1e-5)
    # the untaken branch's values are zeros
    assert np.all(np.asarray(trs["x", "u"])[bs == 1] == 0.0)
    assert np.all(np.asarray(trs["x", "v"])[bs == 0] == 0.0)
    logp, _ = jax.vmap(mixture.assess, in_axes=(0, None))(trs.choices, 0.3)
    np.testing.assert_allclose(logp, trs.score, rtol=1e-5)


def test_switch_on_a_categorical_choice_enumerates_to_the_marginal(key):
    """p(x) = sum_c p(c) p(x | c): assessing every value of c and summing gives it."""
    logits = jnp.array([0.0, 1.0, -1.0])

    @gv.gen
    def m():
        c = gv.categorical(logits) @ "c"
        return gv.switch(small, shared, small)(c, 0.0) @ "x"

    x = 0.7
    logps = [m.assess({"c": c, "x": {"u": x}})[0] for c in range(3)]
    prior = sp.softmax(np.asarray(logits))
    dens = [st.norm(0, 1).pdf(x), st.norm(10, 0.5).pdf(x), st.norm(0, 1).pdf(x)]
    np.testing.assert_allclose(sp.logsumexp(logps), np.log(np.dot(prior, dens)), rtol=1e-5)
    tr = jax.jit(m.simulate)(key)
    np.testing.assert_allclose(m.assess(tr.choices)[0], tr.score, rtol=1e-5)


def test_grad_through_a_branch():
    sw = gv.cond(large, small)
    g = jax.grad(lambda x: sw.assess({"u": 1.0, "v": 2.0, "e": 0.3}, True, x)[0])(0.5)
    np.testing.assert_allclose(g, (2.0 - 0.5) / 9.0, rtol=1e-5)  # large's density only
    g = jax.jit(jax.grad(lambda x, i: sw.assess({"u": 1.0, "v": 2.0, "e": 0.3}, i, x)[0]))(
        0.5, False
    )
    np.testing.assert_allclose(g, 1.0 - 0.5, rtol=1e-5)


def test_errors(key):
    sw = gv.cond(large, small)
    with pytest.raises(gv.AddressError, match="no branch has address.*'w'"):
        sw.importance(key, {"w": 1.0}, True, 0.5)
    with pytest.raises(gv.AddressError, match=r"branch 0 needs 'u'"):
        jax.jit(sw.assess)({"v": 1.0, "e": 1.0}, True, 0.5)

    @gv.gen
    def vec2(x):
        return jnp.sum(gv.mv_normal_diag(jnp.zeros(2) + x, jnp.ones(2)) @ "u")

    with pytest.raises(gv.ChoiceTypeError, match=r"branches disagree at address 'u'.*\[2\]"):
        jax.jit(gv.switch(small, vec2).simulate)(key, 0, 0.5)
    with pytest.raises(ValueError, match="at least one"):
        gv.switch()


def test_switch_hands_a_key_to_a_marginal_branch():
    # p(x) = 1/2 N(x; 0, sqrt 2) through a marginal in branch 0 (u integrated out).
    @gv.gen
    def joint():
        u = gv.normal(0.0, 1.0) @ "u"
        gv.normal(u, 1.0) @ "x"

    @gv.gen
    def other():
        gv.normal(3.0, 1.0) @ "x"

    sw = gv.switch(gv.marginal(joint, over="u", particles=50), other)

    @gv.gen
    def model():
        b = gv.flip(0.5) @ "b"
        sw(b) @ "br"

    n = 4000
    keys = jax.random.split(jax.random.key(3), n)
    est = jax.jit(
        jax.vmap(lambda k: jnp.exp(model.estimate_logpdf(k, {"b": 0, "br": {"x": 0.7}})[0]))
    )(keys)
    exact = 0.5 * jax.scipy.stats.norm.pdf(0.7, 0.0, jnp.sqrt(2.0))
    se = est.std() / jnp.sqrt(n)
    assert abs(est.mean() - exact) < 5 * se
    # the other branch has an exact density: no estimate involved
    lp = model.estimate_logpdf(keys[0], {"b": 1, "br": {"x": 0.7}})[0]
    assert jnp.allclose(lp, jnp.log(0.5 * jax.scipy.stats.norm.pdf(0.7, 3.0, 1.0)), atol=1e-5)
