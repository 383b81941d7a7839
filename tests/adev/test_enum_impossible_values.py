"""ENUM over an array whose elements have different supports (binomial totals 2 and 4):
the grid's values impossible for an element (counts 3, 4 for a total of 2) have
probability 0 and contribute nothing, and a REINFORCE choice after them still gets a
finite, unbiased gradient (the continuation is never run at an impossible value: the zero
weight alone could not stop the NaN that 0 * inf makes in the reverse pass)."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

import genvi as gv
from tests.adev._helpers import assert_unbiased, draws

TOTALS = np.array([2, 4])


@gv.gen
def guide(phi):
    k = gv.binomial.enum(jnp.asarray(TOTALS), jax.nn.sigmoid(phi)) @ "k"
    gv.poisson(jnp.exp(phi) + jnp.sum(k)) @ "n"


@gv.gen
def model():
    k = gv.binomial(jnp.asarray(TOTALS), 0.5) @ "k"
    gv.poisson(1.0 + jnp.sum(k)) @ "n"


def exact_elbo(phi):
    """Sum over both counts; E_{n ~ Pois(b)}[log Pois(n; a) - log Pois(n; b)] =
    b log a - a - b log b + b (the log n! cancel)."""
    q = jax.nn.sigmoid(phi)
    total = 0.0
    for k1, k2 in itertools.product(range(TOTALS[0] + 1), range(TOTALS[1] + 1)):
        lq = (
            jax.scipy.special.gammaln(3.0)
            - jax.scipy.special.gammaln(k1 + 1.0)
            - jax.scipy.special.gammaln(3.0 - k1)
            + k1 * jnp.log(q)
            + (2 - k1) * jnp.log1p(-q)
            + jax.scipy.special.gammaln(5.0)
            - jax.scipy.special.gammaln(k2 + 1.0)
            - jax.scipy.special.gammaln(5.0 - k2)
            + k2 * jnp.log(q)
            + (4 - k2) * jnp.log1p(-q)
        )
        lp = float(np.log(stats.binom.pmf(k1, 2, 0.5) * stats.binom.pmf(k2, 4, 0.5)))
        a, b = 1.0 + k1 + k2, jnp.exp(phi) + k1 + k2
        total = total + jnp.exp(lq) * (lp - lq + b * jnp.log(a) - a - b * jnp.log(b) + b)
    return total


def test_enum_with_impossible_grid_values_is_finite_and_unbiased():
    obj = gv.objectives.elbo(model, guide)
    phi = 0.3

    def one(key):
        v, (g,) = obj.value_and_grad_estimate(key, (), (phi,), {}, argnums=1)
        return v, g

    v, g = draws(one, 4000, seed=3)
    assert np.all(np.isfinite(np.asarray(g)))
    ev, eg = jax.value_and_grad(exact_elbo)(phi)
    assert_unbiased(v, ev, "value")
    assert_unbiased(g, eg, "gradient")
