"""ADEV (layer 3): expectations and their unbiased gradient estimators."""

from genvi.adev._expectation import Expectation, expectation
from genvi.adev._rawrandom import RawRandomnessWarning

__all__ = ["Expectation", "expectation", "RawRandomnessWarning"]
