"""VIMCO: multi-sample score-function gradients with leave-one-out baselines."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from genvi.adev._expectation import Expectation, expectation
from genvi.core._derive import row_keys
from genvi.core._particles import particle_keys
from genvi.objectives._common import (
    check_convention,
    check_particles,
    log_joint,
    logmeanexp,
    loo_baselines,
    score_term,
    sg,
)


def vimco(model, guide, particles: int = 5) -> Expectation:
    """The IWAE bound with VIMCO gradients (Mnih & Rezende, "Variational inference for
    Monte Carlo objectives", ICML 2016): for guides of any kind, discrete included.

    Value: ``L = log (1/K) sum_k w_k``, ``w_k = p(x, z_k) / q(z_k)``, as in :func:`iwae`.
    Gradient in the guide's parameters, with ``ŵ_k`` the normalized weights and ``b_k``
    the leave-one-out baselines of :func:`loo_baselines`:
    ``sum_k (L - b_k) d log q(z_k) - sum_k ŵ_k d log q(z_k)``. This is the score-function
    gradient of ``E[L]`` (whose terms ``E[L d log q(z_k)]`` are kept), with ``b_k``
    subtracted: ``b_k`` depends on the other particles only, so
    ``E[b_k d log q(z_k)] = E[b_k E[d log q(z_k)]] = 0`` and the estimator stays unbiased.
    Gradient in the model's parameters: ``sum_k ŵ_k d log p(x, z_k)``.

    Written in the public language: the guide is sampled with its parameters under
    ``stop_gradient`` (its choices then add no gradient of their own, whatever their
    strategy), ``log q(z_k)`` is recomputed with gradient, and the surrogate
    ``L + sum_k score_term(L - b_k, log q(z_k))`` has value ``L`` and the gradient above.
    Needs ``K >= 2`` and a guide with an exact density.

    Called as ``(key, model_args, guide_args, observations)``.

    Examples:
        >>> @gv.gen
        ... def model():
        ...     b = gv.flip(0.5) @ "b"
        ...     gv.normal(2.0 * b, 1.0) @ "x"
        >>> @gv.gen
        ... def guide(logit):
        ...     gv.bernoulli(logit) @ "b"                 # discrete: no reparameterization
        >>> objective = gv.objectives.vimco(model, guide, particles=10)
        >>> g = objective.grad_estimate(jax.random.key(0), (), (0.0,), {"x": 1.5}, argnums=1)[0]
        >>> g.shape
        ()
    """
    check_particles(particles, "vimco", minimum=2)

    @expectation
    def vimco_objective(key, model_args, guide_args, observations):
        check_convention(model_args, guide_args, observations, "vimco")

        def one(k):
            k1, k2, k3 = row_keys(k, 3)
            tr = guide.simulate(k1, *sg(guide_args))
            z = sg(tr.choices)
            logq, _ = guide.estimate_logpdf(k2, z, *guide_args)
            return log_joint(k3, model, z, observations, model_args), logq

        logp, logq = jax.vmap(one)(particle_keys(key, particles))
        logw = logp - logq
        bound = logmeanexp(logw)
        return bound + jnp.sum(score_term(bound - loo_baselines(logw), logq))

    return vimco_objective
