r"""Variational objectives: the ELBO, importance-weighted bounds, wake-sleep and more.

Each objective is made from a model, a guide and options, e.g.
``gv.objectives.iwae(model, guide, particles=5)``, and is an
:class:`~genvi.Expectation` called as

    objective(key, model_args, guide_args, observations)

where ``model_args`` and ``guide_args`` are tuples of the model's and the guide's arguments
and ``observations`` a choice map of the model's observed addresses. The guide proposes
the model's latent choices $z$ at the same addresses; with the importance weight
$w = p_\theta(x, z) / q_\phi(z)$, the ELBO is $\mathbb E_{q_\phi}[\log w] \le \log p_\theta(x)$
and the others are bounds of the same kind (all lower bounds to maximize, except
:func:`cubo`, an upper bound to minimize). ``objective.estimate(...)`` is an unbiased
estimate of its value and ``objective.grad_estimate(...)`` of its gradient; ``gv.fit``
trains with them.

Every objective here is written with the public language alone: generative functions,
``@gv.expectation`` and the building blocks exported beside them (:func:`log_weights`,
:func:`logmeanexp`, :func:`score_term`, ...). A new objective is written the same way.
"""

from genvi.core._particles import particle_keys
from genvi.objectives._common import (
    check_particles,
    check_reparam,
    log_joint,
    log_weight,
    log_weights,
    logmeanexp,
    loo_baselines,
    model_key,
    score_term,
)
from genvi.objectives._cubo import cubo
from genvi.objectives._elbo import elbo, iwae
from genvi.objectives._fivo import fivo
from genvi.objectives._hierarchical import diwhvi, hvi, iwhvi
from genvi.objectives._renyi import renyi
from genvi.objectives._rws import RWS, rws
from genvi.objectives._tighter import ciwae, miwae, piwae
from genvi.objectives._vimco import vimco

__all__ = [
    "elbo",
    "iwae",
    "miwae",
    "ciwae",
    "piwae",
    "fivo",
    "renyi",
    "vimco",
    "cubo",
    "rws",
    "RWS",
    "hvi",
    "iwhvi",
    "diwhvi",
    "log_joint",
    "log_weight",
    "log_weights",
    "particle_keys",
    "model_key",
    "logmeanexp",
    "score_term",
    "loo_baselines",
    "check_particles",
    "check_reparam",
]
