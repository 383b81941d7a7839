"""Inference utilities built on the generative function interface: importance sampling,
approximate marginalization (:func:`marginal`) and normalization (:func:`normalize`)."""

from genvi.inference._importance import ImportanceResult, importance_sampling
from genvi.inference._marginal import Marginal, marginal
from genvi.inference._normalize import Normalized, normalize

__all__ = [
    "ImportanceResult",
    "importance_sampling",
    "Marginal",
    "marginal",
    "Normalized",
    "normalize",
]
