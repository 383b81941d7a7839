"""The chi upper bound (CUBO)."""

from __future__ import annotations

import jax.numpy as jnp

from genvi.adev._expectation import Expectation, expectation
from genvi.objectives._common import check_convention, check_particles, log_weights


def cubo(model, guide, n: float = 2.0, particles: int = 1, log_scale=0.0) -> Expectation:
    """The chi upper bound (CUBO; Dieng et al., "Variational inference via chi upper bound
    minimization", NeurIPS 2017): an upper bound on ``log p(x)``, to MINIMIZE.

    With ``w = p(x, z) / q(z)`` and ``n >= 1``,
    ``CUBO_n = (1/n) log E_q[w^n] >= log p(x)`` (Jensen), with equality at the exact
    posterior; ``exp(n CUBO_n) = p(x)^n (1 + D_chi^n(p(. | x) || q))``.

    What is optimized: ``L = exp(n (CUBO_n - log_scale)) = E_q[(w / exp(log_scale))^n]``,
    as Dieng et al. do. Its estimate ``(1/K) sum_k exp(n (log w_k - log_scale))`` is
    unbiased, and so is its gradient (ADEV differentiates an expectation), whereas the
    plug-in ``(1/n) log mean w_k^n`` of ``CUBO_n`` itself is biased *downwards* (Jensen) —
    its expectation is not even an upper bound. ``exp`` is increasing, so ``L`` and
    ``CUBO_n`` have the same minimizers. ``log_scale`` (a number, default 0) only rescales
    ``L`` by the constant ``exp(-n log_scale)`` to keep it in floating-point range: set it
    near ``log p(x)`` (an IWAE estimate, say). Recover the bound from the mean of many
    estimates as ``CUBO_n ≈ log_scale + log(mean) / n``.

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
        >>> objective = gv.objectives.cubo(model, guide, n=2.0, particles=10, log_scale=-1.0)
        >>> g_phi = objective.grad_estimate(key, (theta,), (phi,), obs, argnums=1)[0]
        >>> g_phi.shape                                 # descend: phi <- phi - lr * g_phi
        (2,)
    """
    check_particles(particles, "cubo")
    n = float(n)
    if n < 1.0:
        raise ValueError(f"cubo: n must be >= 1 for an upper bound, got {n}")

    @expectation
    def cubo_objective(key, model_args, guide_args, observations):
        check_convention(model_args, guide_args, observations, "cubo")
        lw = log_weights(key, particles, model, guide, model_args, guide_args, observations)
        return jnp.mean(jnp.exp(n * (lw - log_scale)))

    return cubo_objective
