"""Inference utilities built on the generative function interface: importance sampling,
approximate marginalization (:func:`marginal`) and normalization (:func:`normalize`)."""

from genvi.inference.importance import ImportanceResult, importance_sampling
from genvi.inference.marginal import Marginal, marginal
from genvi.inference.normalize import Normalized, normalize

__all__ = [
    "ImportanceResult",
    "importance_sampling",
    "Marginal",
    "marginal",
    "Normalized",
    "normalize",
]
