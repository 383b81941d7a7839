"""Distributions (layer 1): numpyro-backed families with gradient strategies."""

from genvi.distributions.distribution import Distribution, distribution
from genvi.distributions.library import *  # noqa: F403
from genvi.distributions.library import __all__ as _names
from genvi.distributions.strategies import (
    ENUM,
    MVD,
    MeasureValued,
    REINFORCE,
    REPARAM,
    Baselined,
    Enum,
    Reinforce,
    Reparam,
    Strategy,
)

__all__ = [
    "Distribution", "distribution", "Strategy", "Reparam", "Reinforce", "Baselined", "Enum", "MeasureValued",
    "REPARAM", "REINFORCE", "ENUM", "MVD", *_names,
]
