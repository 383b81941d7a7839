"""Generative functions (layer 2): choice maps, traces, the interface and ``@gen``."""

from genvi.core._choicemap import ChoiceMap, choice_map
from genvi.core._errors import (
    AddressError,
    ChoiceTypeError,
    GenviError,
    ModelingError,
    StrategyError,
    SupportError,
)
from genvi.core._genfn import GenCall, GenerativeFunction, StaticGenerativeFunction, gen
from genvi.core._trace import Trace

__all__ = [
    "ChoiceMap",
    "choice_map",
    "Trace",
    "GenCall",
    "GenerativeFunction",
    "StaticGenerativeFunction",
    "gen",
    "GenviError",
    "AddressError",
    "ChoiceTypeError",
    "ModelingError",
    "StrategyError",
    "SupportError",
]
