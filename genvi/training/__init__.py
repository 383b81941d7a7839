"""Training (layer 5): ``gv.fit`` and the pieces under it.

- :func:`fit`: the convenience loop (compiled chunks, minibatches, progress bar,
  history, checkpoints, non-finite guards);
- :func:`init`, :func:`make_step`, :class:`FitState`, :class:`StepInfo`: the pure kernel
  underneath, for writing your own loop;
- :func:`save_checkpoint`, :func:`load_checkpoint`: the checkpoint format.
"""

from genvi.training._checkpoint import (
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from genvi.training._fit import FitResult, fit
from genvi.training._history import History
from genvi.training._kernel import FitState, StepInfo, init, make_step
from genvi.training._loop import NonFiniteWarning

__all__ = [
    "fit",
    "FitResult",
    "History",
    "NonFiniteWarning",
    "init",
    "make_step",
    "FitState",
    "StepInfo",
    "save_checkpoint",
    "load_checkpoint",
    "Checkpoint",
    "CheckpointError",
]
