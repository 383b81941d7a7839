"""genvi: probabilistic programming with programmable variational inference, in JAX.

Models and guides are generative functions (``@gv.gen``); objectives are programs
(``@gv.expectation``) that genvi turns into unbiased gradient estimators.

The package imports its parts lazily (PEP 562): ``import genvi`` alone loads no JAX, so
the ``genvi`` command parses its arguments (and answers ``--help`` or Ctrl-C) at once;
the first use of a name (``gv.normal``, ``gv.fit``) imports the part that defines it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what the names are, for type checkers and the API reference
    from genvi import data, guides, objectives, plot
    from genvi._config import validate, validation_enabled
    from genvi.adev import (
        Expectation,
        Measurement,
        RawRandomnessWarning,
        Selection,
        expectation,
        select_strategies,
    )
    from genvi.combinators import cond, scan, switch, vmap
    from genvi.core import (
        AddressError,
        ChoiceMap,
        ChoiceTypeError,
        GenCall,
        GenerativeFunction,
        GenviError,
        ModelingError,
        StrategyError,
        SupportError,
        Trace,
        choice_map,
        gen,
    )
    from genvi.distributions import (
        ENUM,
        MVD,
        REINFORCE,
        REPARAM,
        RLOO,
        Baselined,
        Distribution,
        Enum,
        GumbelSoftmaxBiased,
        LeaveOneOut,
        MeasureValued,
        Rebar,
        Reinforce,
        Reparam,
        Strategy,
        UnorderedSet,
        bernoulli,
        beta,
        binomial,
        categorical,
        dirichlet,
        distribution,
        exponential,
        flip,
        gamma,
        geometric,
        laplace,
        mv_normal,
        mv_normal_diag,
        normal,
        poisson,
        uniform,
    )
    from genvi.inference import (
        ImportanceResult,
        Marginal,
        Normalized,
        Predictive,
        Resampled,
        SumOut,
        importance_resample,
        importance_sampling,
        marginal,
        normalize,
        predictive,
        psis_khat,
        sum_out,
        to_arviz,
    )
    from genvi.training import fit

# name -> (module, attribute in it; None for the module itself)
_LAZY: dict[str, tuple[str, str | None]] = {
    "data": ("genvi.data", None),
    "guides": ("genvi.guides", None),
    "objectives": ("genvi.objectives", None),
    "plot": ("genvi.plot", None),
    "validate": ("genvi._config", "validate"),
    "validation_enabled": ("genvi._config", "validation_enabled"),
    "Expectation": ("genvi.adev", "Expectation"),
    "RawRandomnessWarning": ("genvi.adev", "RawRandomnessWarning"),
    "expectation": ("genvi.adev", "expectation"),
    "select_strategies": ("genvi.adev", "select_strategies"),
    "Selection": ("genvi.adev", "Selection"),
    "Measurement": ("genvi.adev", "Measurement"),
    "cond": ("genvi.combinators", "cond"),
    "scan": ("genvi.combinators", "scan"),
    "switch": ("genvi.combinators", "switch"),
    "vmap": ("genvi.combinators", "vmap"),
    "AddressError": ("genvi.core", "AddressError"),
    "ChoiceMap": ("genvi.core", "ChoiceMap"),
    "ChoiceTypeError": ("genvi.core", "ChoiceTypeError"),
    "GenCall": ("genvi.core", "GenCall"),
    "GenerativeFunction": ("genvi.core", "GenerativeFunction"),
    "GenviError": ("genvi.core", "GenviError"),
    "ModelingError": ("genvi.core", "ModelingError"),
    "StrategyError": ("genvi.core", "StrategyError"),
    "SupportError": ("genvi.core", "SupportError"),
    "Trace": ("genvi.core", "Trace"),
    "choice_map": ("genvi.core", "choice_map"),
    "gen": ("genvi.core", "gen"),
    "ENUM": ("genvi.distributions", "ENUM"),
    "MVD": ("genvi.distributions", "MVD"),
    "REINFORCE": ("genvi.distributions", "REINFORCE"),
    "REPARAM": ("genvi.distributions", "REPARAM"),
    "RLOO": ("genvi.distributions", "RLOO"),
    "LeaveOneOut": ("genvi.distributions", "LeaveOneOut"),
    "UnorderedSet": ("genvi.distributions", "UnorderedSet"),
    "GumbelSoftmaxBiased": ("genvi.distributions", "GumbelSoftmaxBiased"),
    "Rebar": ("genvi.distributions", "Rebar"),
    "Baselined": ("genvi.distributions", "Baselined"),
    "Distribution": ("genvi.distributions", "Distribution"),
    "Enum": ("genvi.distributions", "Enum"),
    "MeasureValued": ("genvi.distributions", "MeasureValued"),
    "Reinforce": ("genvi.distributions", "Reinforce"),
    "Reparam": ("genvi.distributions", "Reparam"),
    "Strategy": ("genvi.distributions", "Strategy"),
    "bernoulli": ("genvi.distributions", "bernoulli"),
    "beta": ("genvi.distributions", "beta"),
    "binomial": ("genvi.distributions", "binomial"),
    "categorical": ("genvi.distributions", "categorical"),
    "dirichlet": ("genvi.distributions", "dirichlet"),
    "distribution": ("genvi.distributions", "distribution"),
    "exponential": ("genvi.distributions", "exponential"),
    "flip": ("genvi.distributions", "flip"),
    "gamma": ("genvi.distributions", "gamma"),
    "geometric": ("genvi.distributions", "geometric"),
    "laplace": ("genvi.distributions", "laplace"),
    "mv_normal": ("genvi.distributions", "mv_normal"),
    "mv_normal_diag": ("genvi.distributions", "mv_normal_diag"),
    "normal": ("genvi.distributions", "normal"),
    "poisson": ("genvi.distributions", "poisson"),
    "uniform": ("genvi.distributions", "uniform"),
    "ImportanceResult": ("genvi.inference", "ImportanceResult"),
    "Marginal": ("genvi.inference", "Marginal"),
    "Normalized": ("genvi.inference", "Normalized"),
    "importance_sampling": ("genvi.inference", "importance_sampling"),
    "marginal": ("genvi.inference", "marginal"),
    "sum_out": ("genvi.inference", "sum_out"),
    "SumOut": ("genvi.inference", "SumOut"),
    "normalize": ("genvi.inference", "normalize"),
    "predictive": ("genvi.inference", "predictive"),
    "Predictive": ("genvi.inference", "Predictive"),
    "importance_resample": ("genvi.inference", "importance_resample"),
    "Resampled": ("genvi.inference", "Resampled"),
    "to_arviz": ("genvi.inference", "to_arviz"),
    "psis_khat": ("genvi.inference", "psis_khat"),
    "fit": ("genvi.training", "fit"),
}


def __getattr__(name: str):
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'genvi' has no attribute {name!r}") from None
    mod = importlib.import_module(module)
    value = mod if attr is None else getattr(mod, attr)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__version__ = "0.1.0"

__all__ = [
    "gen",
    "ChoiceMap",
    "choice_map",
    "Trace",
    "GenCall",
    "GenerativeFunction",
    "vmap",
    "scan",
    "cond",
    "switch",
    "expectation",
    "Expectation",
    "select_strategies",
    "Selection",
    "Measurement",
    "objectives",
    "guides",
    "Distribution",
    "distribution",
    "Strategy",
    "Reparam",
    "Reinforce",
    "Baselined",
    "Enum",
    "MeasureValued",
    "LeaveOneOut",
    "RLOO",
    "UnorderedSet",
    "GumbelSoftmaxBiased",
    "Rebar",
    "REPARAM",
    "REINFORCE",
    "ENUM",
    "MVD",
    "normal",
    "mv_normal_diag",
    "mv_normal",
    "flip",
    "bernoulli",
    "categorical",
    "beta",
    "gamma",
    "dirichlet",
    "poisson",
    "geometric",
    "uniform",
    "exponential",
    "laplace",
    "binomial",
    "fit",
    "plot",
    "data",
    "validate",
    "validation_enabled",
    "importance_sampling",
    "ImportanceResult",
    "marginal",
    "sum_out",
    "SumOut",
    "Marginal",
    "normalize",
    "Normalized",
    "predictive",
    "Predictive",
    "importance_resample",
    "Resampled",
    "to_arviz",
    "psis_khat",
    "GenviError",
    "AddressError",
    "ChoiceTypeError",
    "ModelingError",
    "StrategyError",
    "SupportError",
    "RawRandomnessWarning",
]
