"""Switches of genvi. Only one for now: argument validation of distributions.

A switch is a :class:`contextvars.ContextVar`, not module state: ``with gv.validate(True)``
in one thread (or asyncio task) leaves every other one as it was. A new thread starts
with validation off, whatever the thread that started it has set.
"""

from __future__ import annotations

import contextlib
import contextvars

_VALIDATE: contextvars.ContextVar[bool] = contextvars.ContextVar("genvi_validate", default=False)


class _Restore(contextlib.AbstractContextManager):
    """Returned by :func:`validate`: the switch is already set; leaving the block restores
    the value it had before the call."""

    def __init__(self, token: contextvars.Token, previous: bool):
        self._token = token
        self._previous = previous

    def __enter__(self):
        return None

    def __exit__(self, *exc) -> None:
        try:
            _VALIDATE.reset(self._token)
        except ValueError:  # left in another context than the one it was set in
            _VALIDATE.set(self._previous)


def validate(flag: bool = True) -> contextlib.AbstractContextManager:
    """Turn validation of distribution parameters on or off (off by default, for speed).

    With validation on, a distribution whose parameters lie outside their support
    (a negative scale, a probability above one, ``low >= high`` for a uniform, ...)
    raises :class:`genvi.SupportError` naming the address, the distribution and the
    parameter, and ``dist.logpdf`` of a value outside the support raises it naming the
    value (with validation off that value scores ``-inf``). Concrete values are checked
    when the program is traced; traced values are checked when the compiled program runs
    (the error still arrives as a :class:`genvi.SupportError` from genvi's entry points).
    A function compiled with ``jax.jit`` keeps the checks it was traced with.

    Usable as a plain call or as a context manager (see the examples below). The switch
    belongs to the current thread (a :class:`contextvars.ContextVar`): other threads are
    not affected.

    Examples:
        >>> with gv.validate(True):
        ...     try:
        ...         gv.normal.simulate(jax.random.key(0), 0.0, -1.0)
        ...     except gv.SupportError as e:
        ...         print("SupportError:", "scale" in str(e))
        SupportError: True
        >>> gv.validation_enabled()
        False
    """
    previous = _VALIDATE.get()
    return _Restore(_VALIDATE.set(bool(flag)), previous)


def validation_enabled() -> bool:
    """Whether :func:`validate` is on in the current thread.

    Examples:
        >>> gv.validation_enabled()
        False
        >>> with gv.validate(True):
        ...     gv.validation_enabled()
        True
    """
    return _VALIDATE.get()
