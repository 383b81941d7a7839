"""Hierarchical variational inference and its importance-weighted forms, composed from
:func:`genvi.marginal` and the ELBO / IWAE (no special case)."""

from __future__ import annotations

from genvi.adev._expectation import Expectation
from genvi.inference._marginal import marginal
from genvi.objectives._common import check_particles
from genvi.objectives._elbo import elbo, iwae


def hvi(model, guide, over, proposal=None) -> Expectation:
    """Hierarchical VI (Ranganath et al., "Hierarchical variational models", ICML 2016).

    ``guide`` is ``q(z, u)`` with auxiliary choices ``u`` at the addresses ``over``; the
    guide used is its marginal ``q(z)``, whose log density is replaced by the
    single-particle estimate ``log q(z, u) - log r(u; z)`` (``u`` the value that generated
    ``z``, ``r`` the ``proposal``, the "reverse model"):
    ``E[log p(x, z) + log r(u; z) - log q(z, u)] <= ELBO(q) <= log p(x)``.
    It is ``elbo(model, gv.marginal(guide, over, proposal, particles=1))``. The proposal
    is called as ``proposal(kept_choices, *guide_args)`` (see :func:`genvi.marginal`);
    ``None`` uses the prior of ``u`` (a looser bound).

    Called as ``(key, model_args, guide_args, observations)``.

    Examples:
        >>> @gv.gen
        ... def model():
        ...     z = gv.normal(0.0, 1.0) @ "z"
        ...     gv.normal(z, 0.5) @ "x"
        >>> @gv.gen
        ... def guide(phi):                              # q(z, u): u is auxiliary
        ...     u = gv.normal(0.0, 1.0) @ "u"
        ...     gv.normal(phi[0] + phi[1] * u, 0.5) @ "z"
        >>> key, phi, obs = jax.random.key(0), jnp.array([0.5, 1.0]), {"x": 1.0}
        >>> objective = gv.objectives.hvi(model, guide, over="u")
        >>> value = objective.estimate(key, (), (phi,), obs)
        >>> objective.grad_estimate(key, (), (phi,), obs, argnums=1)[0].shape
        (2,)
    """
    return elbo(model, marginal(guide, over, proposal, particles=1))


def iwhvi(model, guide, over, proposal=None, inner_particles: int = 5) -> Expectation:
    """Importance-weighted hierarchical VI (Sobolev & Vetrov, "Importance weighted
    hierarchical variational inference", NeurIPS 2019): the ELBO with the guide's log
    density replaced by ``log (1/K) sum_k q(z, u_k) / r(u_k; z)``, ``u_0`` the value that
    generated ``z`` and ``u_1..u_{K-1} ~ r``; ``K = inner_particles`` counts ``u_0``
    (``K = 1`` is :func:`hvi`). A lower bound on ``log p(x)`` that tightens towards the
    ELBO of the marginal ``q(z)`` as ``K`` grows. It is
    ``elbo(model, gv.marginal(guide, over, proposal, particles=K))``.

    Called as ``(key, model_args, guide_args, observations)``.

    Examples:
        >>> @gv.gen
        ... def model():
        ...     z = gv.normal(0.0, 1.0) @ "z"
        ...     gv.normal(z, 0.5) @ "x"
        >>> @gv.gen
        ... def guide(phi):                              # q(z, u): u is auxiliary
        ...     u = gv.normal(0.0, 1.0) @ "u"
        ...     gv.normal(phi[0] + phi[1] * u, 0.5) @ "z"
        >>> key, phi, obs = jax.random.key(0), jnp.array([0.5, 1.0]), {"x": 1.0}
        >>> objective = gv.objectives.iwhvi(model, guide, over="u", inner_particles=5)
        >>> objective.grad_estimate(key, (), (phi,), obs, argnums=1)[0].shape
        (2,)
    """
    check_particles(inner_particles, "iwhvi")
    return elbo(model, marginal(guide, over, proposal, particles=inner_particles))


def diwhvi(
    model, guide, over, proposal=None, particles: int = 5, inner_particles: int = 5
) -> Expectation:
    """Doubly importance-weighted hierarchical VI (Sobolev & Vetrov, 2019): the IWAE bound
    with ``particles`` outer samples ``z_m``, each guide density estimated with
    ``inner_particles`` inner samples as in :func:`iwhvi`:
    ``E[log (1/M) sum_m p(x, z_m) / q̂(z_m)] <= log p(x)``. It is
    ``iwae(model, gv.marginal(guide, over, proposal, particles=inner_particles),
    particles)``.

    Called as ``(key, model_args, guide_args, observations)``.

    Examples:
        >>> @gv.gen
        ... def model():
        ...     z = gv.normal(0.0, 1.0) @ "z"
        ...     gv.normal(z, 0.5) @ "x"
        >>> @gv.gen
        ... def guide(phi):                              # q(z, u): u is auxiliary
        ...     u = gv.normal(0.0, 1.0) @ "u"
        ...     gv.normal(phi[0] + phi[1] * u, 0.5) @ "z"
        >>> key, phi, obs = jax.random.key(0), jnp.array([0.5, 1.0]), {"x": 1.0}
        >>> objective = gv.objectives.diwhvi(model, guide, over="u", particles=5, inner_particles=5)
        >>> objective.grad_estimate(key, (), (phi,), obs, argnums=1)[0].shape
        (2,)
    """
    check_particles(particles, "diwhvi")
    check_particles(inner_particles, "diwhvi")
    return iwae(model, marginal(guide, over, proposal, particles=inner_particles), particles)
