"""The loop of :func:`genvi.fit` over compiled chunks of steps: it commits each chunk's
result (the history, the state), stops on a non-finite value, on too many skipped steps,
on a genvi error raised inside a step (replaying that chunk one step at a time so that
every good step is kept), on a callback or on Ctrl-C, and writes the checkpoints."""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from genvi.core._errors import from_runtime_error
from genvi.training._checkpoint import CheckpointError, save_checkpoint
from genvi.training._chunks import NO_LIMIT
from genvi.training._kernel import describe_nonfinite
from genvi.training._progress import Progress


class NonFiniteWarning(RuntimeWarning):
    """A training step produced a NaN or an infinity."""


def _not_a_genvi_check(record: logging.LogRecord) -> bool:
    exc = record.exc_info[1] if record.exc_info else None
    return exc is None or from_runtime_error(exc) is None


@contextlib.contextmanager
def quiet_callback_logs():
    """JAX logs the traceback of any exception raised in a host callback; for a genvi
    check that fit reports itself as a clean stop, that traceback is noise. Other
    callback errors are logged as usual; the filter is removed when the run ends."""
    loggers = [logging.getLogger(n) for n in ("jax._src.debugging", "jax._src.callback")]
    for lg in loggers:
        lg.addFilter(_not_a_genvi_check)
    try:
        yield
    finally:
        for lg in loggers:
            lg.removeFilter(_not_a_genvi_check)


def _trailing_run(skipped: np.ndarray) -> int:
    """How many ``True`` end ``skipped``."""
    false = np.flatnonzero(~skipped)
    return int(skipped.size if false.size == 0 else skipped.size - 1 - false[-1])


class Loop:
    """The state of a run between chunks, and the loop over chunks."""

    def __init__(self, state, data_key, data, history, steps, chunk, path, every, info):
        self.state, self.data_key, self.data, self.history = state, data_key, data, history
        self.steps, self.chunk, self.path, self.every, self.info = steps, chunk, path, every, info
        self.step = self.start = int(state.step)
        self.compiled: Any = None
        self.reason, self.message, self.error = "steps", f"completed {steps} steps", None
        if self.step >= steps:
            self.message = f"the checkpoint is already at step {self.step} >= steps={steps}"
        self.skip_run = _trailing_run(history.skipped)
        self.first_skip = None
        self.write_failed = None
        self.recent = np.zeros(0, np.float32)  # the finite objective values of the last chunk
        self.writer = True  # whether this process writes the checkpoints (process 0)
        # with several processes: (flags...) -> each flag or-ed over the processes, so that a
        # callback's stop or a Ctrl-C on one process stops every process at the same chunk
        self.sync: Any = None

    # -- one chunk -----------------------------------------------------------------------
    def _execute(self, n: int, max_skips: int):
        t = time.perf_counter()
        assert self.compiled is not None
        out = self.compiled(
            self.state,
            self.data_key,
            self.data,
            jnp.int32(n),
            jnp.int32(self.skip_run),
            jnp.int32(max_skips),
        )
        new_state, infos, active = jax.block_until_ready(out)
        return new_state, jax.tree.map(np.asarray, infos), np.asarray(active), t

    def _commit(self, new_state, infos, active, t_start, on_nonfinite, max_skips) -> bool:
        """Keep a chunk's result; returns whether the run must stop (non-finite)."""
        n_run = int(active.sum())
        elapsed = time.perf_counter() - t_start
        codes = infos.nonfinite[:n_run]
        bad = np.flatnonzero(codes >= 0)
        keep = int(bad[0]) if on_nonfinite == "stop" and bad.size else n_run
        skipped = codes[:keep] >= 0
        self.history = self.history.extend(
            infos.objective[:keep],
            infos.grad_norm[:keep],
            np.full(keep, elapsed / max(n_run, 1)),
            skipped,
        )
        self.state = new_state
        before, self.step = self.step, int(new_state.step)
        if on_nonfinite == "skip" and bad.size and self.first_skip is None:
            what = describe_nonfinite(int(codes[bad[0]]), new_state.params)
            self.first_skip = (before + int(bad[0]), what)
        run = _trailing_run(skipped)
        self.skip_run = self.skip_run + run if run == skipped.size else run
        self.recent = infos.objective[:keep][np.isfinite(infos.objective[:keep])]
        if on_nonfinite == "stop" and bad.size:
            what = describe_nonfinite(int(codes[bad[0]]), new_state.params)
            self._stop(
                "nonfinite",
                f"fit stopped at step {self.step}: {what} is not finite (objective "
                f"{float(infos.objective[bad[0]]):.6g}); the parameters returned are the "
                f"last finite ones, from before step {self.step}. Lower the learning rate, "
                "check the model's parameter ranges, or pass on_nonfinite='skip'.",
                NonFiniteWarning,
            )
            return True
        if on_nonfinite == "skip" and self.skip_run >= max_skips:
            what = describe_nonfinite(int(codes[bad[-1]]), new_state.params)
            self._stop(
                "nonfinite",
                f"fit stopped at step {self.step}: the last {self.skip_run} steps were all "
                f"skipped because of non-finite values (the last: {what}); the parameters "
                f"returned are the last good ones, from step {self.step - self.skip_run}. "
                "Lower the learning rate, check the model's parameter ranges, or raise "
                "max_consecutive_skips.",
                NonFiniteWarning,
            )
            return True
        return False

    def _stop(self, reason: str, message: str, category=None) -> None:
        self.reason, self.message = reason, message
        if category is not None:
            warnings.warn(message, category, stacklevel=5)  # the caller of fit

    def _replay(self, n, max_skips, on_nonfinite, error):
        """A genvi error stopped a chunk: take its steps one at a time from the committed
        state, so that every step before the failing one is kept."""
        for _ in range(n):
            try:
                out = self._execute(1, max_skips)
            except jax.errors.JaxRuntimeError as e:
                error = from_runtime_error(e) or error
                break
            if self._commit(*out, on_nonfinite, max_skips):
                return
        else:
            return  # the error did not happen again: go on training
        self.error = error
        kept = f" and written to {os.fspath(self.path)!r}" if self.path is not None else ""
        self._stop(
            "error",
            f"fit stopped at step {self.step}: {type(error).__name__}: {error} (the parameters "
            f"returned are those after {self.step} steps, from before the failing step{kept})",
            RuntimeWarning,
        )

    # -- checkpoints ---------------------------------------------------------------------
    def write(self) -> None:
        if self.path is None or not self.writer:
            return
        try:
            save_checkpoint(
                self.path, self.state, data_key=self.data_key, history=self.history, info=self.info
            )
        except (OSError, CheckpointError) as e:
            if self.write_failed is None:
                warnings.warn(
                    f"fit: writing the checkpoint {os.fspath(self.path)!r} failed at step "
                    f"{self.step} ({type(e).__name__}: {e}); training goes on and the result "
                    "is returned, but that checkpoint does not hold it",
                    RuntimeWarning,
                    stacklevel=4,
                )
            self.write_failed = e

    # -- the loop ------------------------------------------------------------------------
    def _requested(self, guard) -> bool:
        """Whether a Ctrl-C asks to stop (on any process)."""
        return self.sync(guard.requested)[0] if self.sync is not None else guard.requested

    def run(self, guard, on_nonfinite, max_skips, callbacks, show) -> None:
        max_skips = NO_LIMIT if max_skips is None else int(max_skips)
        bar = Progress(show, self.steps, min(self.step, self.steps))
        requested = self._requested(guard)
        try:
            while self.step < self.steps and not requested:
                n = min(self.chunk, self.steps - self.step)
                if self.every is not None:
                    n = min(n, (self.step // self.every + 1) * self.every - self.step)
                try:
                    out = self._execute(n, max_skips)
                except jax.errors.JaxRuntimeError as e:
                    error = from_runtime_error(e)
                    if error is None:
                        raise
                    self._replay(n, max_skips, on_nonfinite, error)
                    if self.reason == "error":
                        break
                    requested = self._requested(guard)
                    continue
                before = self.step
                stop = self._commit(*out, on_nonfinite, max_skips)
                recent = self.recent
                bar.update(self.step - before, float(recent.mean()) if recent.size else None)
                if stop:
                    break
                if self.every is not None and self.step % self.every == 0:
                    if self.step < self.steps:
                        self.write()
                by_callback = any(
                    [cb(self.step, self.state.params, self.history) is True for cb in callbacks]
                )
                if self.sync is not None:
                    by_callback, requested = self.sync(by_callback, guard.requested)
                else:
                    requested = guard.requested
                if by_callback:
                    self._stop("callback", f"a callback stopped the run at step {self.step}")
                    break
            if requested and self.reason == "steps" and self.step < self.steps:
                self.reason = "interrupted"
        except KeyboardInterrupt:  # a second Ctrl-C, or no handler of ours: keep the state
            self.reason = "interrupted"
        finally:
            bar.close()
        if self.reason == "interrupted":
            kept = ""
            if self.path is not None and self.step > self.start:
                kept = f", written to {os.fspath(self.path)!r}"
            self.message = (
                f"interrupted at step {self.step}; the state after {self.step} steps is kept{kept}"
            )
        if self.reason != "interrupted" or self.step > self.start:
            self.write()  # (nothing new to write when interrupted before any step)
        if self.first_skip is not None and self.reason != "nonfinite":
            n_skipped = int(self.history.skipped.sum())
            warnings.warn(
                f"fit skipped {n_skipped} of {self.history.steps} steps because of non-finite "
                f"values (the first at step {self.first_skip[0]}: {self.first_skip[1]})",
                NonFiniteWarning,
                stacklevel=3,
            )
            if self.reason == "steps":
                self.message += f" ({n_skipped} of them skipped because of non-finite values)"
        if self.reason == "interrupted":
            warnings.warn(self.message, RuntimeWarning, stacklevel=3)
        if self.write_failed is not None:
            self.message += (
                f"; writing the checkpoint {os.fspath(self.path)!r} failed "  # type: ignore[arg-type]
                f"({type(self.write_failed).__name__}: {self.write_failed})"
            )
