"""Global switches. Only one for now: argument validation of distributions."""

from __future__ import annotations

import contextlib

_VALIDATE = [False]


def validate(flag: bool = True):
    """Turn validation of distribution parameters on or off (off by default, for speed).

    With validation on, a distribution whose parameters lie outside their support
    (a negative scale, a probability above one, ...) raises
    :class:`genvi.SupportError` naming the address, the distribution and the parameter.
    Concrete values are checked when the program is traced; traced values are checked
    when the compiled program runs.

    Usable as a plain call or as a context manager (see the examples below).

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
    previous = _VALIDATE[0]
    _VALIDATE[0] = bool(flag)

    @contextlib.contextmanager
    def _restore():
        try:
            yield
        finally:
            _VALIDATE[0] = previous

    return _restore()


def validation_enabled() -> bool:
    """Whether :func:`validate` is on.

    Examples:
        >>> gv.validation_enabled()
        False
        >>> with gv.validate(True):
        ...     gv.validation_enabled()
        True
    """
    return _VALIDATE[0]
