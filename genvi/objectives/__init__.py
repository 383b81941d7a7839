"""The objective library (layer 4), written in the public language.

See :mod:`genvi.objectives._common` for the calling convention shared by all objectives:
``objective(key, model_args, guide_args, observations)``.
"""

from genvi.objectives._common import (
    check_particles,
    check_reparam,
    log_joint,
    log_weight,
    log_weights,
    logmeanexp,
    loo_baselines,
    score_term,
)
from genvi.objectives._cubo import cubo
from genvi.objectives._elbo import elbo, iwae
from genvi.objectives._hierarchical import diwhvi, hvi, iwhvi
from genvi.objectives._renyi import renyi
from genvi.objectives._rws import RWS, rws
from genvi.objectives._vimco import vimco

__all__ = [
    "elbo",
    "iwae",
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
    "logmeanexp",
    "score_term",
    "loo_baselines",
    "check_particles",
    "check_reparam",
]
