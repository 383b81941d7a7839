"""Importance sampling with the prior (or any ``importance``) proposal."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from genvi.core._choicemap import choice_map
from genvi.core._errors import ChoiceTypeError
from genvi.core._genfn import GenerativeFunction
from genvi.core._keys import check_key
from genvi.core._particles import particle_keys
from genvi.core._trace import Trace


class ImportanceResult(NamedTuple):
    """Particles of importance sampling.

    Attributes:
        traces: the particles' traces, batched along a leading axis.
        log_weights: their log importance weights.
        log_ml: ``log((1/K) sum_k exp(log_weights[k]))``, whose exponential is an
            unbiased estimate of the marginal likelihood ``p(obs)``.
    """

    traces: Trace
    log_weights: Any
    log_ml: Any

    @property
    def normalized_weights(self):
        """Self-normalized weights (summing to one)."""
        return jax.nn.softmax(self.log_weights)

    def mean(self, fn):
        """Self-normalized estimate of ``E[fn(choices) | obs]``."""
        vals = jax.vmap(fn)(self.traces.choices)
        w = self.normalized_weights.reshape((-1,) + (1,) * (jnp.ndim(vals) - 1))
        return jnp.sum(w * vals, axis=0)

    @property
    def effective_sample_size(self):
        """Kish's effective sample size, ``1 / sum w_k^2`` with normalized weights."""
        w = self.normalized_weights
        return 1.0 / jnp.sum(w**2)


def importance_sampling(
    key, model: GenerativeFunction, observations, args: tuple = (), particles: int = 1000
) -> ImportanceResult:
    """``particles`` runs of ``model.importance`` constrained by ``observations``.

    Examples:
        >>> @gv.gen
        ... def model():
        ...     z = gv.normal(0.0, 1.0) @ "z"
        ...     gv.normal(z, 1.0) @ "x"
        >>> res = gv.importance_sampling(jax.random.key(0), model, {"x": 2.0}, particles=2_000)
        >>> mean = res.mean(lambda c: c["z"])           # exact posterior mean: 1.0
        >>> bool(abs(mean - 1.0) < 0.1)
        True
    """
    if particles < 1:
        raise ValueError(f"importance_sampling needs particles >= 1, got {particles}")
    obs = choice_map(observations)
    check_key(key, "importance_sampling", single=True)
    if not isinstance(args, (tuple, list)):
        raise ChoiceTypeError(
            f"importance_sampling: args must be a tuple of {model.name}'s arguments, e.g. "
            f"(theta,) (or () for none), got {type(args).__name__}"
        )
    keys = particle_keys(key, particles)
    traces, logw = jax.vmap(lambda k: model.importance(k, obs, *args))(keys)
    return ImportanceResult(traces, logw, logsumexp(logw) - jnp.log(particles))
