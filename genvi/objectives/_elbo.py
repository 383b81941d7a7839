"""The evidence lower bound and its importance-weighted version."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from genvi.adev._expectation import Expectation, expectation
from genvi.core._derive import row_keys
from genvi.core._errors import StrategyError
from genvi.core._genfn import StaticGenerativeFunction
from genvi.core._particles import particle_keys
from genvi.objectives._common import (
    check_convention,
    check_particles,
    check_reparam,
    log_joint,
    log_weights,
    logmeanexp,
    sg,
)


def elbo(model, guide, *, stl: bool = False) -> Expectation:
    """The evidence lower bound (ELBO; Jordan et al., 1999):
    ``E_{z ~ q}[log p(x, z) - log q(z)] = log p(x) - KL(q || p(. | x)) <= log p(x)``,
    with equality when the guide is the exact posterior.

    The gradient comes from the strategies of the guide's choices (REPARAM, REINFORCE,
    ENUM, MVD, in any mix). With ``stl=True`` (sticking the landing; Roeder et al., 2017)
    ``log q`` is differentiated with the guide's parameters held fixed: the dropped term
    ``-d_phi log q_phi(z)`` (at fixed ``z``) has expectation zero under ``q``, so the
    estimator stays unbiased for every strategy, and its variance vanishes at the exact
    posterior for REPARAM guides. ``stl`` needs a guide with an exact density (not a
    :func:`genvi.marginal`). The value is the same either way.

    Called as ``(key, model_args, guide_args, observations)``.

    Examples:
        >>> @gv.gen
        ... def model(theta):
        ...     z = gv.normal(theta, 1.0) @ "z"
        ...     gv.normal(z, 0.5) @ "x"
        >>> @gv.gen
        ... def guide(phi):
        ...     gv.normal(phi[0], jnp.exp(phi[1])) @ "z"
        >>> key, theta, phi, obs = jax.random.key(0), 0.0, jnp.zeros(2), {"x": 1.0}
        >>> objective = gv.objectives.elbo(model, guide)
        >>> value = objective.estimate(key, (theta,), (phi,), obs)
        >>> g_theta, g_phi = objective.grad_estimate(key, (theta,), (phi,), obs, argnums=(0, 1))
        >>> g_phi[0].shape
        (2,)
    """
    if stl and guide.has_estimated_density and not isinstance(guide, StaticGenerativeFunction):
        raise StrategyError(
            f"elbo(stl=True) needs a guide with an exact density, but {guide.name} has an "
            "estimated one (a gv.marginal or gv.normalize, or a combinator over one): "
            "sticking the landing would drop a term that is not zero in expectation there. "
            "Use stl=False with this guide"
        )

    @expectation
    def elbo_objective(key, model_args, guide_args, observations):
        check_convention(model_args, guide_args, observations, "elbo")
        k1, k2, k3 = row_keys(key, 3)
        tr = guide.simulate(k1, *guide_args)
        logp = log_joint(k2, model, tr.choices, observations, model_args)
        logq = tr.score
        if stl:
            fixed, _ = guide.estimate_logpdf(k3, tr.choices, *sg(guide_args))
            logq = fixed + sg(tr.score - fixed)  # value tr.score, gradient with phi fixed
        return logp - logq

    return elbo_objective


def iwae(model, guide, particles: int = 5, *, dreg: bool = False) -> Expectation:
    """The importance-weighted bound (IWAE; Burda et al., 2016):
    ``E[log (1/K) sum_k p(x, z_k) / q(z_k)] <= log p(x)`` with ``z_k ~ q`` independent,
    non-decreasing in ``K`` and tending to ``log p(x)``; ``K = 1`` is the ELBO.

    With ``dreg=True``, the guide's gradient is the doubly-reparameterized estimator
    (DReG; Tucker et al., 2019): with ``w_k = p(x, z_k) / q(z_k)``, normalized weights
    ``ŵ_k`` and ``z_k = z(eps_k, phi)``,
    ``d_phi IWAE = E[sum_k ŵ_k^2 (d/dz log w_k)(z_k) d z_k / d phi]``, where
    ``log q`` is differentiated in ``z`` only. It is unbiased (Tucker et al. apply the
    reparameterization trick a second time to the score terms
    ``E[ŵ_k d_phi log q(z_k)]``) and its variance does not blow up as ``K`` grows. The
    model's gradient is the usual ``sum_k ŵ_k d_theta log p(x, z_k)``. Implemented as a
    surrogate with the value of IWAE; it needs a guide whose choices are all REPARAM, with
    an exact density (checked: a :class:`~genvi.StrategyError` otherwise).

    Called as ``(key, model_args, guide_args, observations)``.

    Examples:
        >>> @gv.gen
        ... def model(theta):
        ...     z = gv.normal(theta, 1.0) @ "z"
        ...     gv.normal(z, 0.5) @ "x"
        >>> @gv.gen
        ... def guide(phi):
        ...     gv.normal(phi[0], jnp.exp(phi[1])) @ "z"
        >>> key, theta, phi, obs = jax.random.key(0), 0.0, jnp.zeros(2), {"x": 1.0}
        >>> objective = gv.objectives.iwae(model, guide, particles=10)
        >>> value = objective.estimate(key, (theta,), (phi,), obs)
        >>> g_phi = objective.grad_estimate(key, (theta,), (phi,), obs, argnums=1)[0]
        >>> g_phi.shape
        (2,)
    """
    check_particles(particles, "iwae")

    if not dreg:

        @expectation
        def iwae_objective(key, model_args, guide_args, observations):
            check_convention(model_args, guide_args, observations, "iwae")
            lw = log_weights(key, particles, model, guide, model_args, guide_args, observations)
            return logmeanexp(lw)

        return iwae_objective

    @expectation
    def iwae_dreg_objective(key, model_args, guide_args, observations):
        check_convention(model_args, guide_args, observations, "iwae_dreg")
        check_reparam(guide, guide_args, "iwae(dreg=True)")

        def one(k):
            k1, k2, k3 = row_keys(k, 3)
            tr = guide.simulate(k1, *guide_args)  # z(eps, phi): pathwise in phi
            logq_fixed, _ = guide.estimate_logpdf(k3, tr.choices, *sg(guide_args))
            # the same density estimate twice (same key): through z only, through theta only
            logp_z = log_joint(k2, model, tr.choices, observations, sg(model_args))
            logp_theta = log_joint(k2, model, sg(tr.choices), observations, model_args)
            return tr.score, logq_fixed, logp_z, logp_theta

        score, logq_fixed, logp_z, logp_theta = jax.vmap(one)(particle_keys(key, particles))
        value = logmeanexp(sg(logp_theta - score))
        w = jax.nn.softmax(sg(logp_theta - score))
        theta_part = logmeanexp(logp_theta - sg(score))  # gradient sum_k ŵ_k d log p
        phi_part = jnp.sum(sg(w**2) * (logp_z - logq_fixed))  # DReG
        return value + (theta_part - sg(theta_part)) + (phi_part - sg(phi_part))

    return iwae_dreg_objective
