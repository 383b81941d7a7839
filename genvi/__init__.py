"""genvi: probabilistic programming with programmable variational inference, in JAX.

Models and guides are generative functions (``@gv.gen``); objectives are programs
(``@gv.expectation``) that genvi turns into unbiased gradient estimators.
"""

from genvi import objectives, plot
from genvi._config import validate, validation_enabled
from genvi.adev import Expectation, expectation
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
    Baselined,
    Distribution,
    Enum,
    MeasureValued,
    Reinforce,
    Reparam,
    Strategy,
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
    importance_sampling,
    marginal,
    normalize,
)
from genvi.training import fit

__version__ = "0.1.0"

__all__ = [
    "gen", "ChoiceMap", "choice_map", "Trace", "GenCall", "GenerativeFunction",
    "vmap", "scan", "cond", "switch",
    "expectation", "Expectation", "objectives",
    "Distribution", "distribution", "Strategy", "Reparam", "Reinforce", "Baselined", "Enum",
    "MeasureValued", "REPARAM", "REINFORCE", "ENUM", "MVD",
    "normal", "mv_normal_diag", "mv_normal", "flip", "bernoulli", "categorical", "beta",
    "gamma", "dirichlet", "poisson", "geometric", "uniform", "exponential", "laplace",
    "binomial",
    "fit", "plot",
    "validate", "validation_enabled", "importance_sampling", "ImportanceResult",
    "marginal", "Marginal", "normalize", "Normalized",
    "GenviError", "AddressError", "ChoiceTypeError", "ModelingError", "StrategyError",
    "SupportError",
]
