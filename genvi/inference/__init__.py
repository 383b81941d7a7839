"""Inference utilities built on the generative function interface."""

from genvi.inference.importance import ImportanceResult, importance_sampling

__all__ = ["ImportanceResult", "importance_sampling"]
