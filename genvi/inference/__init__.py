"""Inference utilities built on the generative function interface: importance sampling,
approximate marginalization (:func:`marginal`), exact summing-out of discrete choices
(:func:`sum_out`) and normalization (:func:`normalize`),
posterior predictive draws (:func:`predictive`), importance resampling
(:func:`importance_resample`), ArviZ export (:func:`to_arviz`) and the PSIS diagnostic of
a guide (:func:`psis_khat`)."""

from genvi.inference._arviz import psis_khat, to_arviz
from genvi.inference._importance import ImportanceResult, importance_sampling
from genvi.inference._marginal import Marginal, marginal
from genvi.inference._normalize import Normalized, normalize
from genvi.inference._predictive import Predictive, Resampled, importance_resample, predictive
from genvi.inference._sum_out import Posterior, SumOut, sum_out

__all__ = [
    "ImportanceResult",
    "importance_sampling",
    "Marginal",
    "marginal",
    "Normalized",
    "normalize",
    "predictive",
    "Predictive",
    "importance_resample",
    "Resampled",
    "to_arviz",
    "psis_khat",
    "sum_out",
    "SumOut",
    "Posterior",
]
