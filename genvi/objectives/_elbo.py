"""The evidence lower bound and its importance-weighted version."""

from __future__ import annotations

import jax

from genvi.adev.expectation import Expectation, expectation
from genvi.core.choicemap import choice_map
from genvi.objectives._common import check_particles, log_weights, logmeanexp


def elbo(model, guide, *, stl: bool = False) -> Expectation:
    """The ELBO: ``E_{z ~ q}[log p(x, z) - log q(z)] <= log p(x)``.

    With ``stl=True`` (sticking the landing, Roeder et al. 2017), ``log q`` is evaluated
    with the guide's parameters held fixed: the score term ``E[d/dphi log q]``, zero in
    expectation, is dropped, which removes its variance (REPARAM guides).

    Called as ``(key, model_args, guide_args, observations)``.
    """

    @expectation
    def elbo_objective(key, model_args, guide_args, observations):
        tr = guide.simulate(key, *guide_args)
        logp, _ = model.assess(tr.choices.merge(choice_map(observations)), *model_args)
        if stl:
            logq, _ = guide.assess(tr.choices, *jax.lax.stop_gradient(guide_args))
        else:
            logq = tr.score
        return logp - logq

    return elbo_objective


def iwae(model, guide, particles: int = 5) -> Expectation:
    """The importance-weighted bound (Burda et al., 2016):
    ``E[log (1/K) sum_k p(x, z_k) / q(z_k)] <= log p(x)``, increasing in ``K`` towards
    ``log p(x)``. ``K = 1`` is the ELBO.

    Called as ``(key, model_args, guide_args, observations)``.
    """
    check_particles(particles, "iwae")

    @expectation
    def iwae_objective(key, model_args, guide_args, observations):
        lw = log_weights(key, particles, model, guide, model_args, guide_args, observations)
        return logmeanexp(lw)

    return iwae_objective
