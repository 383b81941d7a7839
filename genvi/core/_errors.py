"""The exceptions genvi raises. Each message names the address, distribution or shape."""

from __future__ import annotations

import contextlib


class GenviError(Exception):
    """Base class of genvi's errors."""


class AddressError(GenviError, KeyError):
    """An address is missing, duplicated, unknown or malformed."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0]) if self.args else ""


class ChoiceTypeError(GenviError, TypeError):
    """A choice or constraint has the wrong shape or dtype."""


class StrategyError(GenviError, ValueError):
    """A gradient strategy that cannot apply to a distribution or a program."""


class SupportError(GenviError, ValueError):
    """A distribution's parameters lie outside their support (with validation on)."""


class ModelingError(GenviError, RuntimeError):
    """A modeling-language construct used where it cannot be."""


# ---------------------------------------------------------------------------------------
# genvi errors raised inside a compiled program.
#
# A check whose operands are traced runs on the host, in a callback, while the compiled
# program executes. JAX reports an exception raised there as a ``JaxRuntimeError`` whose
# text holds the original message; ``except gv.SupportError`` would not catch it. genvi's
# callbacks therefore raise through :func:`runtime_check_message`, which wraps the message
# in markers, and every genvi entry point that runs compiled code (``estimate``,
# ``grad_estimate``, ``gv.fit``, the eager GFI methods) runs it inside
# :func:`runtime_errors`, which turns such a ``JaxRuntimeError`` back into the genvi error.

_OPEN, _CLOSE = "[genvi:", "[/genvi]"


def runtime_check_message(kind: type[GenviError], message: str) -> str:
    """The text a host callback raises with, so :func:`runtime_errors` can recover it."""
    return f"{_OPEN}{kind.__name__}] {message} {_CLOSE}"


def from_runtime_error(exc: BaseException) -> GenviError | None:
    """The genvi error that a ``JaxRuntimeError`` carries, or ``None`` if it carries none."""
    text = str(exc)
    start = text.rfind(_OPEN)
    if start < 0:
        return None
    end = text.find(_CLOSE, start)
    head, _, body = text[start + len(_OPEN) : end if end >= 0 else len(text)].partition("] ")
    kind = _KINDS.get(head)
    if kind is None:
        return None
    return kind(body.strip())


@contextlib.contextmanager
def runtime_errors():
    """Run compiled code, re-raising a genvi error raised inside it as that error."""
    try:
        yield
    except Exception as e:  # noqa: BLE001 - only JaxRuntimeErrors carrying a marker
        err = from_runtime_error(e) if _is_runtime_error(e) else None
        if err is None:
            raise
        raise err from None


def _is_runtime_error(e: BaseException) -> bool:
    import jax

    return isinstance(e, jax.errors.JaxRuntimeError)


_KINDS: dict[str, type[GenviError]] = {
    c.__name__: c
    for c in (GenviError, AddressError, ChoiceTypeError, StrategyError, SupportError, ModelingError)
}
