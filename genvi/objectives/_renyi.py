"""The variational Rényi bound."""

from __future__ import annotations

import jax.numpy as jnp

from genvi.adev._expectation import Expectation, expectation
from genvi.objectives._common import check_convention, check_particles, log_weights, logmeanexp


def renyi(model, guide, alpha: float, particles: int = 5) -> Expectation:
    """The variational Rényi (VR) bound (Li & Turner, "Rényi divergence variational
    inference", NeurIPS 2016).

    With ``w = p(x, z) / q(z)``, ``L_alpha = 1/(1 - alpha) log E_q[w^(1 - alpha)]``
    ``= log p(x) - D_alpha(q || p(. | x))``, non-increasing in ``alpha``: ``alpha -> 1``
    is the ELBO, ``alpha = 0`` is ``log p(x)``, and ``L_alpha <= log p(x)`` for
    ``alpha >= 0``. The estimate uses ``K`` particles,
    ``L̂ = 1/(1 - alpha) log (1/K) sum_k w_k^(1 - alpha)``: for ``alpha < 1`` its
    expectation lies below ``L_alpha`` (Jensen) and rises towards it as ``K`` grows, so
    for ``0 <= alpha < 1`` the objective is a lower bound on ``log p(x)``; ``alpha = 0``
    is exactly :func:`iwae`. ``alpha = 1`` gives the ``K``-sample average ELBO. For
    ``alpha < 0`` (upper-bound territory for ``L_alpha``) the sampled objective is not a
    bound in general. The gradient is that of the sampled objective (unbiased for
    ``d E[L̂]``), with each choice's strategy.

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
        >>> objective = gv.objectives.renyi(model, guide, alpha=0.5, particles=10)
        >>> value = objective.estimate(key, (theta,), (phi,), obs)
        >>> g_phi = objective.grad_estimate(key, (theta,), (phi,), obs, argnums=1)[0]
        >>> g_phi.shape
        (2,)
    """
    check_particles(particles, "renyi")
    alpha = float(alpha)

    @expectation
    def renyi_objective(key, model_args, guide_args, observations):
        check_convention(model_args, guide_args, observations, "renyi")
        lw = log_weights(key, particles, model, guide, model_args, guide_args, observations)
        if alpha == 1.0:
            return jnp.mean(lw)
        return logmeanexp((1.0 - alpha) * lw) / (1.0 - alpha)

    return renyi_objective
