"""ADEV (layer 3): expectations and their unbiased gradient estimators."""

from genvi.adev._expectation import Expectation, expectation

__all__ = ["Expectation", "expectation"]
