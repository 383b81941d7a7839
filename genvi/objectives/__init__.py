"""The objective library (layer 4), written in the public language.

See :mod:`genvi.objectives._common` for the calling convention shared by all objectives.
"""

from genvi.objectives._common import log_weight, log_weights, logmeanexp
from genvi.objectives._elbo import elbo, iwae

__all__ = ["elbo", "iwae", "log_weight", "log_weights", "logmeanexp"]
