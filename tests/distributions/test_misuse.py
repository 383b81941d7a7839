"""Misuse of distributions gets a genvi error naming the culprit and the fix: bad or
missing keys (genvi.core._keys.check_key), gv.distribution of an instance, whole floats
as discrete values; and ENUM of an empty array of choices simply works."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as nd
import pytest

import genvi as gv
from genvi.core._keys import check_key

# ----- keys -----

BAD_KEYS = [
    (None, "got None"),
    (0, "got int 0"),
    (1.5, "got float 1.5"),
    ("seed", "got str 'seed'"),
    (jnp.array([1, 2]), r"got an array of dtype int32 and shape \(2,\) \(raw key data must"),
    (jnp.zeros(3, jnp.uint32), r"got an array of dtype uint32 and shape \(3,\)"),
    (jnp.zeros(2), r"got an array of dtype float32 and shape \(2,\)"),
    ([0, 0], "got list"),
]


@pytest.mark.parametrize("bad, what", BAD_KEYS, ids=[repr(b[1]) for b in BAD_KEYS])
def test_a_bad_key_is_named(bad, what):
    fix = r"pass a PRNG key first, e.g. jax.random.key\(0\)"
    for call, where in [
        (lambda: gv.normal.sample(bad, 0.0, 1.0), r"normal.sample \(top level\)"),
        (lambda: gv.normal.simulate(bad, 0.0, 1.0), r"normal.simulate \(top level\)"),
        (lambda: gv.flip.importance(bad, {}, 0.3), r"flip.importance \(top level\)"),
        (lambda: gv.flip.importance(bad, 1, 0.3), r"flip.importance \(top level\)"),
    ]:
        with pytest.raises(
            gv.ChoiceTypeError, match=f"{where}: expected a PRNG key, {what}.*{fix}"
        ):
            call()


def test_the_key_left_out():
    """``gv.normal.sample(0.0, 1.0)``: the first parameter is taken for the key."""
    with pytest.raises(gv.ChoiceTypeError, match=r"normal.sample.*got float 0.0; pass a PRNG key"):
        gv.normal.sample(0.0, 1.0)


def test_a_batch_of_keys_is_refused_by_a_sampler():
    keys = jax.random.split(jax.random.key(0), 3)
    with pytest.raises(
        gv.ChoiceTypeError, match=r"one PRNG key, got a batch of keys of shape \(3,\).*jax.vmap"
    ):
        gv.normal.sample(keys, 0.0, 1.0)
    raw = jax.random.key_data(keys)
    with pytest.raises(gv.ChoiceTypeError, match=r"batch of raw keys of shape \(3, 2\)"):
        gv.normal.sample(raw, 0.0, 1.0)
    # vmap over the keys is the way
    assert jax.vmap(lambda k: gv.normal.sample(k, 0.0, 1.0))(keys).shape == (3,)
    assert jax.vmap(lambda k: gv.normal.sample(k, 0.0, 1.0))(raw).shape == (3,)


def test_good_keys_of_every_kind_are_accepted():
    typed, legacy = jax.random.key(0), jax.random.PRNGKey(0)
    a = gv.normal.sample(typed, 0.0, 1.0)
    b = gv.normal.sample(legacy, 0.0, 1.0)
    c = gv.normal.sample(np.asarray(legacy), 0.0, 1.0)  # numpy key data
    assert a == b == c  # the same key data, the same draw
    assert jax.jit(lambda k: gv.normal.sample(k, 0.0, 1.0))(typed) == a
    assert jax.jit(lambda k: gv.normal.sample(k, 0.0, 1.0))(legacy) == a
    # check_key itself accepts batches (trailing key shape right) unless asked for one key
    for k in (jax.random.split(typed, (2, 3)), jax.random.key_data(jax.random.split(typed, 4))):
        assert check_key(k, "test") is k
        with pytest.raises(gv.ChoiceTypeError, match="test: expected one PRNG key"):
            check_key(k, "test", single=True)
    jax.jit(lambda k: check_key(k, "test", single=True))(legacy)
    jax.vmap(lambda k: check_key(k, "test", single=True))(jax.random.split(typed, 3))


# ----- gv.distribution -----


def test_distribution_of_an_instance_names_the_fix():
    with pytest.raises(
        gv.ModelingError,
        match=r"numpyro distribution class, but got an instance of Normal.*gv.distribution\(numpyro.distributions.Normal\)",
    ):
        gv.distribution(nd.Normal(0.0, 1.0))
    for bad, what in [
        ("normal", "str 'normal'"),
        (int, "type <class 'int'>"),
        (gv.normal, "Distribution"),
    ]:
        with pytest.raises(gv.ModelingError, match="takes a numpyro distribution class") as info:
            gv.distribution(bad)
        assert f"got {what}" in str(info.value)


# ----- whole floats -----


def test_a_whole_float_is_a_category():
    logits = jnp.array([0.1, 0.5, -1.0])
    want = gv.categorical.logpdf(1, logits)
    np.testing.assert_allclose(gv.categorical.logpdf(1.0, logits), want, rtol=1e-6)
    np.testing.assert_allclose(gv.categorical.logpdf(jnp.array(1.0), logits), want, rtol=1e-6)
    logp, value = gv.categorical.assess(1.0, logits)
    assert value.dtype == jnp.int32 and value == 1
    np.testing.assert_allclose(logp, want, rtol=1e-6)
    # booleans as flips, whole floats as counts
    np.testing.assert_allclose(gv.flip.logpdf(True, 0.3), np.log(0.3), rtol=1e-6)
    np.testing.assert_allclose(gv.binomial.logpdf(2.0, 3, 0.5), np.log(3 / 8), rtol=1e-6)
    # not whole: named, with the fix
    with pytest.raises(
        gv.ChoiceTypeError, match=r"categorical \(top level\) is discrete.*not whole"
    ):
        gv.categorical.logpdf(1.5, logits)


# ----- ENUM of nothing -----


def test_enum_of_an_empty_array_of_choices(key):
    @gv.gen
    def model(p):
        return gv.flip.enum(p) @ "b"

    @gv.expectation
    def objective(key, p):
        return jnp.sum(model.simulate(key, p).retval * 1.0) + 2.0

    v, g = objective.value_and_grad_estimate(key, jnp.zeros((0,)))
    assert v == 2.0 and g.shape == (0,)
    # and one element more is enumerated as usual
    v, g = objective.value_and_grad_estimate(key, jnp.array([0.3]))
    np.testing.assert_allclose(v, 2.3, rtol=1e-6)
    np.testing.assert_allclose(g, [1.0], rtol=1e-6)
