"""The per-step record of a training run."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class History(NamedTuple):
    """One entry per step taken, as NumPy arrays of equal length.

    Attributes:
        objective: the objective's value at each step (the estimate the step's gradient
            came from, before the update).
        grad_norm: the global Euclidean norm of the gradient.
        time: wall-clock seconds per step (each compiled chunk of steps is timed as a
            whole and its time shared equally by its steps; compilation is excluded).
        skipped: ``True`` where a non-finite value made the step be skipped
            (``on_nonfinite="skip"``).
    """

    objective: np.ndarray
    grad_norm: np.ndarray
    time: np.ndarray
    skipped: np.ndarray

    @classmethod
    def empty(cls) -> History:
        return cls(
            np.zeros(0, np.float32),
            np.zeros(0, np.float32),
            np.zeros(0, np.float64),
            np.zeros(0, bool),
        )

    @property
    def steps(self) -> int:
        """The number of steps recorded."""
        return int(self.objective.shape[0])

    def extend(self, objective, grad_norm, time, skipped) -> History:
        """This history with more steps appended."""
        return History(
            np.concatenate([self.objective, np.asarray(objective, np.float32)]),
            np.concatenate([self.grad_norm, np.asarray(grad_norm, np.float32)]),
            np.concatenate([self.time, np.asarray(time, np.float64)]),
            np.concatenate([self.skipped, np.asarray(skipped, bool)]),
        )

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self._fields}
