"""The named distributions of genvi, each backed by a ``numpyro.distributions`` class.

Positional parameters follow numpyro's constructors, except that ``flip(p)`` takes a
probability and ``bernoulli(logits)`` and ``categorical(logits)`` take logits.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as nd

from genvi.core.errors import StrategyError
from genvi.distributions.distribution import Distribution
from genvi.distributions.family import Family


def _two(_=None):
    return jnp.array([0, 1], dtype=jnp.int32)


def _categorical_support(logits):
    return jnp.arange(jnp.shape(logits)[-1], dtype=jnp.int32)


def _binomial_support(total_count, probs):
    try:
        n = int(np.max(np.asarray(total_count)))
    except Exception:  # noqa: BLE001 - a traced count
        raise StrategyError(
            "ENUM of binomial needs a total_count known when the program is traced "
            "(a Python int or a concrete array), not a traced value"
        ) from None
    return jnp.arange(n + 1, dtype=jnp.int32)


normal = Distribution(Family("normal", nd.Normal, False, True, mvd="normal", params=("loc", "scale")))
"""Normal(loc, scale). Default strategy REPARAM; also REINFORCE, MVD."""

mv_normal_diag = Distribution(
    Family(
        "mv_normal_diag",
        lambda loc, scale: nd.Normal(loc, scale).to_event(1),
        False,
        True,
        params=("loc", "scale_diag"),
    )
)
"""Multivariate normal with diagonal covariance: one vector-valued choice."""

mv_normal = Distribution(
    Family("mv_normal", nd.MultivariateNormal, False, True, params=("loc", "covariance_matrix"))
)
"""MultivariateNormal(loc, covariance_matrix)."""

flip = Distribution(
    Family("flip", nd.BernoulliProbs, True, False, enum_support=_two, mvd="flip", params=("p",))
)
"""Bernoulli on {0, 1} with probability ``p`` of 1. Default REINFORCE; also ENUM, MVD."""

bernoulli = Distribution(
    Family(
        "bernoulli", nd.BernoulliLogits, True, False, enum_support=_two, mvd="bernoulli",
        params=("logits",),
    )
)
"""Bernoulli on {0, 1} parameterized by logits."""

categorical = Distribution(
    Family(
        "categorical", nd.CategoricalLogits, True, False, enum_support=_categorical_support,
        mvd="categorical", params=("logits",),
    )
)
"""Categorical on {0, ..., K-1} parameterized by logits (last axis K)."""

beta = Distribution(Family("beta", nd.Beta, False, True, params=("concentration1", "concentration0")))
"""Beta(concentration1, concentration0); implicit reparameterization."""

gamma = Distribution(Family("gamma", nd.Gamma, False, True, params=("concentration", "rate")))
"""Gamma(concentration, rate); implicit reparameterization."""

dirichlet = Distribution(Family("dirichlet", nd.Dirichlet, False, True, params=("concentration",)))
"""Dirichlet(concentration); implicit reparameterization."""

poisson = Distribution(Family("poisson", nd.Poisson, True, False, mvd="poisson", params=("rate",)))
"""Poisson(rate). Default REINFORCE; also MVD."""

geometric = Distribution(
    Family("geometric", nd.GeometricProbs, True, False, mvd="geometric", params=("probs",))
)
"""Geometric(probs): the number of failures before the first success, from 0."""

uniform = Distribution(Family("uniform", nd.Uniform, False, True, params=("low", "high")))
"""Uniform(low, high)."""

exponential = Distribution(Family("exponential", nd.Exponential, False, True, params=("rate",)))
"""Exponential(rate)."""

laplace = Distribution(Family("laplace", nd.Laplace, False, True, params=("loc", "scale")))
"""Laplace(loc, scale)."""

binomial = Distribution(
    Family(
        "binomial",
        lambda total_count, probs: nd.BinomialProbs(probs, total_count),
        True,
        False,
        enum_support=_binomial_support,
        params=("total_count", "probs"),
    )
)
"""Binomial(total_count, probs). Default REINFORCE; also ENUM (with a static count)."""

__all__ = [
    "normal", "mv_normal_diag", "mv_normal", "flip", "bernoulli", "categorical", "beta",
    "gamma", "dirichlet", "poisson", "geometric", "uniform", "exponential", "laplace",
    "binomial",
]
