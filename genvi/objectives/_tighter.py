"""Importance-weighted bounds from "Tighter variational bounds are not necessarily better"
(Rainforth, Kosiorek, Le, Maddison, Igl, Wood and Teh, ICML 2018): MIWAE, CIWAE, PIWAE.

IWAE's bound tightens as the number of particles ``K`` grows, but the signal-to-noise
ratio of its *guide* gradient falls like ``1/sqrt(K)``. The three objectives trade the
two: with ``w = p(x, z) / q(z)``,

- MIWAE(M, K): the mean of ``M`` independent IWAE(K) bounds;
- CIWAE(beta, K): ``beta`` ELBO + ``(1 - beta)`` IWAE(K), on the same ``K`` particles;
- PIWAE(M, K): the model is trained on IWAE(M K) and the guide on MIWAE(M, K), with the
  same ``M K`` particles.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from genvi.adev._expectation import Expectation, expectation
from genvi.core._particles import particle_keys
from genvi.objectives._common import (
    check_convention,
    check_particles,
    check_reparam,
    log_joint,
    log_weights,
    logmeanexp,
    model_key,
    sg,
)


def miwae(model, guide, outer: int = 2, particles: int = 5) -> Expectation:
    """MIWAE (Rainforth et al., 2018): the mean of ``outer = M`` independent IWAE bounds
    of ``particles = K`` particles each,
    ``E[(1/M) sum_m log (1/K) sum_k w_mk] = IWAE_K <= log p(x)``.

    The bound's value is IWAE(K)'s; averaging ``M`` independent estimates divides its
    gradient variance by ``M``, for guides trained with a better signal-to-noise ratio
    than IWAE(M K) at the same cost. ``M = 1`` is IWAE(K), ``K = 1`` the ELBO with ``M``
    samples. The gradient comes from the guide's strategies, as for :func:`iwae`.

    Called as ``(key, model_args, guide_args, observations)``.

    Examples:
        >>> @gv.gen
        ... def model(theta):
        ...     z = gv.normal(theta, 1.0) @ "z"
        ...     gv.normal(z, 0.5) @ "x"
        >>> @gv.gen
        ... def guide(phi):
        ...     gv.normal(phi[0], jnp.exp(phi[1])) @ "z"
        >>> objective = gv.objectives.miwae(model, guide, outer=4, particles=8)
        >>> v = objective.estimate(jax.random.key(0), (0.0,), (jnp.zeros(2),), {"x": 1.0})
        >>> bool(v < 0.0)
        True
    """
    check_particles(outer, "miwae (outer)")
    check_particles(particles, "miwae")

    @expectation
    def miwae_objective(key, model_args, guide_args, observations):
        check_convention(model_args, guide_args, observations, "miwae")
        lw = log_weights(key, outer * particles, model, guide, model_args, guide_args, observations)
        return jnp.mean(logmeanexp(lw.reshape(outer, particles), axis=1))

    return miwae_objective


def ciwae(model, guide, beta: float = 0.5, particles: int = 5) -> Expectation:
    """CIWAE (Rainforth et al., 2018): a convex combination of the ELBO and IWAE on the
    same ``K = particles`` particles,
    ``E[beta (1/K) sum_k log w_k + (1 - beta) log (1/K) sum_k w_k]
    = beta ELBO + (1 - beta) IWAE_K <= log p(x)``.

    ``beta = 1`` is the ELBO (averaged over ``K`` samples), ``beta = 0`` IWAE(K). A bound
    for every ``beta`` in ``[0, 1]``, as a convex combination of two bounds.

    Called as ``(key, model_args, guide_args, observations)``.

    Examples:
        >>> @gv.gen
        ... def model(theta):
        ...     z = gv.normal(theta, 1.0) @ "z"
        ...     gv.normal(z, 0.5) @ "x"
        >>> @gv.gen
        ... def guide(phi):
        ...     gv.normal(phi[0], jnp.exp(phi[1])) @ "z"
        >>> objective = gv.objectives.ciwae(model, guide, beta=0.5, particles=8)
        >>> g = objective.grad_estimate(
        ...     jax.random.key(0), (0.0,), (jnp.zeros(2),), {"x": 1.0}, argnums=1)
        >>> g[0].shape
        (2,)
    """
    check_particles(particles, "ciwae")
    beta = float(beta)
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"ciwae: beta must lie in [0, 1] for a bound, got {beta}")

    @expectation
    def ciwae_objective(key, model_args, guide_args, observations):
        check_convention(model_args, guide_args, observations, "ciwae")
        lw = log_weights(key, particles, model, guide, model_args, guide_args, observations)
        return beta * jnp.mean(lw) + (1.0 - beta) * logmeanexp(lw)

    return ciwae_objective


def piwae(model, guide, outer: int = 2, particles: int = 5) -> Expectation:
    """PIWAE (Rainforth et al., 2018): one set of ``M K`` particles (``M = outer``,
    ``K = particles``) trains the model on IWAE(M K) and the guide on MIWAE(M, K).

    The model's gradient is ``d_theta IWAE_{MK}`` (the tightest bound the particles
    give), the guide's ``d_phi MIWAE_{M,K}`` (a better signal-to-noise ratio than
    ``d_phi IWAE_{MK}``): each parameter follows an unbiased gradient of a lower bound on
    ``log p(x)``, but not of the same one, so PIWAE is a pair of objectives rather than
    one. The value returned is the IWAE(M K) estimate. Written as the surrogate
    ``IWAE_{MK}(theta, sg z) + MIWAE(sg theta, z) - sg(MIWAE)``, which needs a guide whose
    choices are all REPARAM with an exact density (checked, :class:`~genvi.StrategyError`
    otherwise).

    Called as ``(key, model_args, guide_args, observations)``.

    Examples:
        >>> @gv.gen
        ... def model(theta):
        ...     z = gv.normal(theta, 1.0) @ "z"
        ...     gv.normal(z, 0.5) @ "x"
        >>> @gv.gen
        ... def guide(phi):
        ...     gv.normal(phi[0], jnp.exp(phi[1])) @ "z"
        >>> objective = gv.objectives.piwae(model, guide, outer=2, particles=4)
        >>> g_theta, g_phi = objective.grad_estimate(
        ...     jax.random.key(0), (0.0,), (jnp.zeros(2),), {"x": 1.0}, argnums=(0, 1))
        >>> g_phi[0].shape
        (2,)
    """
    check_particles(outer, "piwae (outer)")
    check_particles(particles, "piwae")
    n = outer * particles

    @expectation
    def piwae_objective(key, model_args, guide_args, observations):
        check_convention(model_args, guide_args, observations, "piwae")
        check_reparam(guide, guide_args, "piwae")

        def one(k):
            # the keys of gv.objectives.log_weights: the same particles as iwae / miwae
            tr = guide.simulate(k, *guide_args)  # z(eps, phi), pathwise in phi
            mk = model_key(k)
            logp_theta = log_joint(mk, model, sg(tr.choices), observations, model_args)
            logp_z = log_joint(mk, model, tr.choices, observations, sg(model_args))
            return tr.score, logp_theta, logp_z

        logq, logp_theta, logp_z = jax.vmap(one)(particle_keys(key, n))
        model_part = logmeanexp(logp_theta - sg(logq))  # d_theta IWAE_{MK}
        guide_part = jnp.mean(logmeanexp((logp_z - logq).reshape(outer, particles), axis=1))
        return model_part + (guide_part - sg(guide_part))

    return piwae_objective


__all__ = ["miwae", "ciwae", "piwae"]
