"""gv.categorical draws by inverting the CDF (one uniform per choice): the same law as
numpyro's Gumbel-max sampler, checked by frequencies against the probabilities."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import genvi as gv

N = 100_000


@pytest.mark.parametrize(
    "probs",
    [
        [0.1, 0.0, 0.6, 0.3],  # a category of probability 0 is never drawn
        [0.0, 0.0, 1.0],
        [1e-3, 0.5, 0.499],
        [0.25] * 4,
    ],
)
def test_frequencies_match_the_probabilities(probs):
    p = np.asarray(probs)
    logits = jnp.log(jnp.asarray(p))
    keys = jax.random.split(jax.random.key(0), N)
    z = np.asarray(jax.jit(jax.vmap(lambda k: gv.categorical.sample(k, logits)))(keys))
    freq = np.bincount(z, minlength=len(p)) / N
    se = np.sqrt(p * (1 - p) / N)
    assert np.all(np.abs(freq - p) <= 5 * se + 1e-12)  # zero-probability: exactly never
    assert freq[p == 0].sum() == 0.0


def test_shape_dtype_and_batched_logits(key):
    logits = jnp.log(jnp.array([[0.9, 0.1, 0.0], [0.0, 0.2, 0.8]]))
    z = gv.categorical.sample(key, jnp.broadcast_to(logits, (5000, 2, 3)))
    assert z.shape == (5000, 2) and z.dtype == jnp.int32
    z = np.asarray(z)
    assert set(np.unique(z[:, 0])) <= {0, 1} and set(np.unique(z[:, 1])) <= {1, 2}
    np.testing.assert_allclose((z[:, 1] == 2).mean(), 0.8, atol=5 * np.sqrt(0.16 / 5000))
    # unnormalized logits give the same law as normalized ones, with the same key
    np.testing.assert_array_equal(
        gv.categorical.sample(key, jnp.array([1.0, 2.0, 3.0])),
        gv.categorical.sample(key, jax.nn.log_softmax(jnp.array([1.0, 2.0, 3.0]))),
    )


def test_one_uniform_per_choice(key):
    logits = jnp.zeros((7, 50))
    fam = gv.categorical.family
    jaxpr = jax.make_jaxpr(lambda k: fam.sampler(k, fam.dist((logits,))))(key)
    text = str(jaxpr)
    assert "random_bits" in text and "shape=(7,)" in text and "shape=(7, 50)" not in text
