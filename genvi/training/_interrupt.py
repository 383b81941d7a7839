"""Ctrl-C during :func:`genvi.fit` and the ``genvi`` command: a flag, never an exception
raised inside compiled code.

Python's own SIGINT handler raises ``KeyboardInterrupt`` in the main thread at the next
bytecode boundary. While JAX traces, compiles or runs a program, that boundary is often
inside a callback that the runtime calls from C++ (a garbage-collection hook during
compilation, a host callback during a step): the exception is then swallowed ("Exception
ignored in: _xla_gc_callback") and the run goes on, or it unwinds through C++ frames and
the process crashes (exit 139). genvi therefore replaces that handler, for the duration of
a run and only in the main thread, by one that records the request; the training loop
looks at it between compiled chunks, where stopping is safe. The previous handler is put
back when the run ends.

Two policies, one :class:`Guard` each:

- *library* (:func:`genvi.fit` on its own, e.g. in a notebook): the first Ctrl-C stops the
  run after the chunk of steps in progress (or right after compilation), keeping and
  checkpointing the state; a second one puts the previous handler back and raises
  ``KeyboardInterrupt`` (the usual Python behaviour, for a run that must stop now). A
  handler other than Python's default is left alone.
- *command* (the ``genvi`` command installs it around a whole subcommand): a Ctrl-C while
  :func:`genvi.fit` trains stops it cleanly as above, and the command then exits with
  code 130; at any other moment (imports, data loading, compilation, evaluation), or a
  second Ctrl-C, there is nothing in memory that a clean stop would keep (a checkpoint on
  disk stays as it was), so the command prints a line and leaves at once with
  ``os._exit(130)``, which never runs the interpreter's teardown while XLA threads work.

Invariants: at most one guard is active at a time (``_ACTIVE``); :func:`watch` reuses an
active one (the command's) rather than stacking a second; a guard is installed only from
the main thread and always uninstalled by the ``with`` block that installed it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator

EXIT_CODE = 130  # 128 + SIGINT, what shells report for a process stopped by Ctrl-C

_ACTIVE: list[Guard] = []


def _say(text: str) -> None:
    """Write a line to stderr from a signal handler (never raises)."""
    line = text.rstrip("\n") + "\n"
    try:
        sys.stderr.write(line)
        sys.stderr.flush()
    except Exception:  # noqa: BLE001 - e.g. a reentrant write: fall back to the raw fd
        with contextlib.suppress(OSError):
            os.write(2, line.encode())


def hard_exit(message: str, code: int = EXIT_CODE) -> None:
    """Print ``message`` (if any), flush the standard streams and end the process now."""
    if message:
        _say(message)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


class Guard:
    """The Ctrl-C state of one run (see the module docstring).

    Attributes:
        presses: how many times Ctrl-C was pressed since the guard was installed.
        graceful: whether a press now can be honoured by a clean stop (set by
            :func:`genvi.fit` while it trains).
        exit_message: (command policy) the line printed before an immediate exit.
        exit_code: (command policy) the code of an immediate exit.
    """

    def __init__(self, *, command: bool = False, exit_message: Callable[[], str] | None = None):
        self.command = command
        self.exit_message = exit_message or (lambda: "interrupted")
        self.exit_code = EXIT_CODE
        self.presses = 0
        self.graceful = False
        self.installed = False
        self._previous = None

    @property
    def requested(self) -> bool:
        """Whether a stop was asked for."""
        return self.presses > 0

    def install(self) -> bool:
        """Install the handler (main thread only); returns whether it was installed."""
        if threading.current_thread() is not threading.main_thread():
            return False
        current = signal.getsignal(signal.SIGINT)
        if not self.command and current is not signal.default_int_handler:
            return False  # someone chose their own handling of Ctrl-C: leave it to them
        self._previous = signal.signal(signal.SIGINT, self._handle)
        self.installed = True
        _ACTIVE.append(self)
        return True

    def uninstall(self) -> None:
        if not self.installed:
            return
        self.installed = False
        if self in _ACTIVE:
            _ACTIVE.remove(self)
        with contextlib.suppress(ValueError, TypeError):
            signal.signal(signal.SIGINT, self._previous)

    def __enter__(self) -> Guard:
        self.install()
        return self

    def __exit__(self, *exc) -> None:
        self.uninstall()

    def _handle(self, signum, frame) -> None:
        self.presses += 1
        if self.command:
            if self.presses == 1 and self.graceful:
                _say(
                    "interrupted: stopping after the current chunk of steps and writing the "
                    "checkpoint (press Ctrl-C again to quit at once)"
                )
                return
            hard_exit(self.exit_message(), self.exit_code)
        if self.presses == 1:
            _say(
                "fit: interrupted: stopping after the current chunk of steps (press Ctrl-C "
                "again to raise KeyboardInterrupt at once)"
            )
            return
        self.uninstall()
        raise KeyboardInterrupt


def active() -> Guard | None:
    """The guard of the run in progress, if any."""
    return _ACTIVE[-1] if _ACTIVE else None


@contextlib.contextmanager
def watch() -> Iterator[Guard]:
    """The active guard (the command's), or a fresh library guard for this block."""
    guard = active()
    if guard is not None:
        yield guard
        return
    guard = Guard()
    with guard:
        yield guard
