"""ADEV (layer 3): expectations and their unbiased gradient estimators."""

from genvi.adev._expectation import Expectation, expectation
from genvi.adev._rawrandom import RawRandomnessWarning
from genvi.adev._select import Measurement, Selection, select_strategies

__all__ = [
    "Expectation",
    "expectation",
    "RawRandomnessWarning",
    "select_strategies",
    "Selection",
    "Measurement",
]
