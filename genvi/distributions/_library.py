"""The named distributions of genvi, each backed by a ``numpyro.distributions`` class.

Positional parameters follow numpyro's constructors, except that ``flip(p)`` takes a
probability and ``bernoulli(logits)`` and ``categorical(logits)`` take logits.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as nd

from genvi.core._errors import StrategyError
from genvi.distributions._distribution import Distribution
from genvi.distributions._family import Family


def _two(_=None):
    return jnp.array([0, 1], dtype=jnp.int32)


def _categorical_support(logits):
    return jnp.arange(jnp.shape(logits)[-1], dtype=jnp.int32)


def _categorical_sample(key, d):
    """A categorical draw by inverting the CDF: one uniform per choice, where numpyro's
    Gumbel-max draws one per category (``K`` times the random bits, plus two logarithms
    each). The law is the same: with ``c`` the cumulative probabilities and
    ``u ~ U[0, c_K)``, the draw is ``#{k : c_k <= u}``, which is ``k`` with probability
    ``c_k - c_{k-1} = p_k`` (a category of probability 0 is never drawn). Both samplers
    resolve probabilities to float precision."""
    logits = d.logits
    p = jax.nn.softmax(logits, axis=-1)
    c = jnp.cumsum(p, axis=-1)
    u = jax.random.uniform(key, jnp.shape(logits)[:-1], dtype=c.dtype) * c[..., -1]
    k = jnp.sum(c <= u[..., None], axis=-1)
    return jnp.minimum(k, jnp.shape(logits)[-1] - 1).astype(jnp.int32)


def _binomial_support(total_count, probs):
    try:
        n = int(np.max(np.asarray(total_count)))
    except Exception:  # noqa: BLE001 - a traced count
        raise StrategyError(
            "ENUM of binomial needs a total_count known when the program is traced "
            "(a Python int or a concrete array), not a traced value"
        ) from None
    return jnp.arange(n + 1, dtype=jnp.int32)


normal = Distribution(
    Family("normal", nd.Normal, False, True, mvd="normal", params=("loc", "scale"))
)
"""Normal(loc, scale). Default strategy REPARAM; also REINFORCE, MVD.

Examples:
    >>> round(float(gv.normal.logpdf(0.0, 0.0, 1.0)), 4)     # -log(2 pi) / 2
    -0.9189
    >>> gv.normal.mvd
    <distribution normal with MVD>
"""

mv_normal_diag = Distribution(
    Family(
        "mv_normal_diag",
        lambda loc, scale, validate_args=None: nd.Normal(
            loc, scale, validate_args=validate_args
        ).to_event(1),
        False,
        True,
        params=("loc", "scale_diag"),
        aliases=(("scale", "scale_diag"),),
    )
)
"""Multivariate normal with diagonal covariance: one vector-valued choice.

Examples:
    >>> x = gv.mv_normal_diag.sample(jax.random.key(0), jnp.zeros(3), jnp.ones(3))
    >>> x.shape
    (3,)
    >>> round(float(gv.mv_normal_diag.logpdf(jnp.zeros(3), jnp.zeros(3), jnp.ones(3))), 4)
    -2.7568
"""

mv_normal = Distribution(
    Family("mv_normal", nd.MultivariateNormal, False, True, params=("loc", "covariance_matrix"))
)
"""MultivariateNormal(loc, covariance_matrix).

Examples:
    >>> cov = jnp.array([[1.0, 0.5], [0.5, 1.0]])
    >>> gv.mv_normal.sample(jax.random.key(0), jnp.zeros(2), cov).shape
    (2,)
"""

flip = Distribution(
    Family(
        "flip",
        nd.BernoulliProbs,
        True,
        False,
        enum_support=_two,
        mvd="flip",
        params=("p",),
        aliases=(("probs", "p"),),
    )
)
"""Bernoulli on {0, 1} with probability ``p`` of 1. Default REINFORCE; also ENUM, MVD.

Examples:
    >>> float(jnp.exp(gv.flip.logpdf(1, 0.3)))
    0.3...
    >>> gv.flip.enum
    <distribution flip with ENUM>
"""

bernoulli = Distribution(
    Family(
        "bernoulli",
        nd.BernoulliLogits,
        True,
        False,
        enum_support=_two,
        mvd="bernoulli",
        params=("logits",),
    )
)
"""Bernoulli on {0, 1} parameterized by logits.

Examples:
    >>> round(float(jnp.exp(gv.bernoulli.logpdf(1, 0.0))), 4)      # logit 0: probability 1/2
    0.5
"""

categorical = Distribution(
    Family(
        "categorical",
        nd.CategoricalLogits,
        True,
        False,
        enum_support=_categorical_support,
        mvd="categorical",
        params=("logits",),
        sampler=_categorical_sample,
    )
)
"""Categorical on {0, ..., K-1} parameterized by logits (last axis K).

Examples:
    >>> logits = jnp.log(jnp.array([0.2, 0.3, 0.5]))
    >>> round(float(jnp.exp(gv.categorical.logpdf(2, logits))), 4)
    0.5
    >>> gv.categorical.enum
    <distribution categorical with ENUM>
"""

beta = Distribution(
    Family("beta", nd.Beta, False, True, params=("concentration1", "concentration0"))
)
"""Beta(concentration1, concentration0); implicit reparameterization.

Examples:
    >>> abs(float(gv.beta.logpdf(0.5, 1.0, 1.0))) < 1e-6      # Beta(1, 1) is uniform
    True
"""

gamma = Distribution(Family("gamma", nd.Gamma, False, True, params=("concentration", "rate")))
"""Gamma(concentration, rate); implicit reparameterization.

Examples:
    >>> round(float(gv.gamma.logpdf(1.0, 1.0, 2.0)), 4)       # Exponential(2) at 1: log 2 - 2
    -1.3069
"""

dirichlet = Distribution(Family("dirichlet", nd.Dirichlet, False, True, params=("concentration",)))
"""Dirichlet(concentration); implicit reparameterization.

Examples:
    >>> round(float(gv.dirichlet.logpdf(jnp.ones(3) / 3, jnp.ones(3))), 4)   # log Gamma(3)
    0.6931
"""

poisson = Distribution(Family("poisson", nd.Poisson, True, False, mvd="poisson", params=("rate",)))
"""Poisson(rate). Default REINFORCE; also MVD.

Examples:
    >>> round(float(gv.poisson.logpdf(0, 2.0)), 4)             # P(0) = exp(-2)
    -2.0
"""

geometric = Distribution(
    Family("geometric", nd.GeometricProbs, True, False, mvd="geometric", params=("probs",))
)
"""Geometric(probs): the number of failures before the first success, from 0.

Examples:
    >>> round(float(jnp.exp(gv.geometric.logpdf(2, 0.5))), 4)  # two failures, then a success
    0.125
"""

uniform = Distribution(Family("uniform", nd.Uniform, False, True, params=("low", "high")))
"""Uniform(low, high).

Examples:
    >>> round(float(gv.uniform.logpdf(0.5, 0.0, 2.0)), 4)     # log(1/2)
    -0.6931
"""

exponential = Distribution(Family("exponential", nd.Exponential, False, True, params=("rate",)))
"""Exponential(rate).

Examples:
    >>> round(float(gv.exponential.logpdf(1.0, 2.0)), 4)      # log 2 - 2
    -1.3069
"""

laplace = Distribution(Family("laplace", nd.Laplace, False, True, params=("loc", "scale")))
"""Laplace(loc, scale).

Examples:
    >>> round(float(gv.laplace.logpdf(0.0, 0.0, 1.0)), 4)     # log(1/2)
    -0.6931
"""

binomial = Distribution(
    Family(
        "binomial",
        lambda total_count, probs, validate_args=None: nd.BinomialProbs(
            probs, total_count, validate_args=validate_args
        ),
        True,
        False,
        enum_support=_binomial_support,
        params=("total_count", "probs"),
    )
)
"""Binomial(total_count, probs). Default REINFORCE; also ENUM (with a static count).

Examples:
    >>> round(float(jnp.exp(gv.binomial.logpdf(1, 2, 0.5))), 4)   # 2 * 0.5 * 0.5
    0.5
    >>> gv.binomial.enum
    <distribution binomial with ENUM>
"""

__all__ = [
    "normal",
    "mv_normal_diag",
    "mv_normal",
    "flip",
    "bernoulli",
    "categorical",
    "beta",
    "gamma",
    "dirichlet",
    "poisson",
    "geometric",
    "uniform",
    "exponential",
    "laplace",
    "binomial",
]
