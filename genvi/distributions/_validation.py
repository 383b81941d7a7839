"""Validation of distribution parameters and values (:func:`genvi.validate`).

genvi builds numpyro distributions with ``validate_args=False`` and checks here instead,
so that a message names genvi's parameter (``flip``'s ``p``, not numpyro's ``probs``),
the address and the distribution. numpyro's *dependent* constraints (``Uniform``'s
``low`` and ``high``) cannot be checked one by one; their meaning is a support whose
lower bound lies below its upper bound, and that is what is checked.

A check on concrete values raises :class:`genvi.SupportError` at once. A check on
traced values (under ``jax.jit``, ``vmap``, an expectation) is a host callback that
raises when the compiled program runs; JAX reports it as a ``JaxRuntimeError``, which
genvi's entry points turn back into the :class:`genvi.SupportError`
(:func:`genvi.core._errors.runtime_errors`; the eager GFI methods of a distribution use
:func:`eager_errors`). JAX's debug-callback logger would print a long traceback for each
such error: :class:`_MarkedErrorFilter` drops the records of genvi's own marked errors,
and only those.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer
from numpyro.distributions import constraints as C

from genvi.core._errors import (
    GenviError,
    SupportError,
    from_runtime_error,
    runtime_check_message,
    runtime_errors,
)
from genvi.distributions._family import Family
from genvi.distributions._support import outside_support


def _show(v) -> str:
    v = np.asarray(v)
    return str(v) if v.size <= 12 else f"{v.dtype}{list(v.shape)} with elements {v.ravel()[:6]}..."


def _show_bad(v, bad) -> str:
    """The value, or for a large one the first few offending elements (whole events, for
    a vector-valued family) with their positions."""
    v, bad = np.asarray(v), np.asarray(bad)
    if v.size <= 12:
        return f"the value {v}"
    if bad.ndim > v.ndim:  # the support's bounds broadcast against the value
        v = np.broadcast_to(v, bad.shape)
    items = [f"{tuple(int(i) for i in ix)}: {v[tuple(ix)]}" for ix in np.argwhere(bad)[:4]]
    n = int(bad.sum())
    more = f" ({n} in all)" if n > len(items) else ""
    return f"the value {v.dtype}{list(v.shape)}, at {', '.join(items)}{more},"


def _report(bad, values: tuple, message: Callable[..., str]) -> None:
    """Raise ``SupportError(message(*values, bad))`` if any of ``bad`` is set: now if
    everything is concrete, else when the compiled program runs (a host callback)."""
    if any(isinstance(x, Tracer) for x in (bad, *values)):

        def _raise(bad_, *values_):
            if np.any(bad_):
                raise SupportError(runtime_check_message(SupportError, message(*values_, bad_)))

        jax.debug.callback(_raise, bad, *values)
    elif np.any(np.asarray(bad)):
        raise SupportError(message(*(np.asarray(v) for v in values), np.asarray(bad)))


def _constraint_checks(family: Family, d, args: tuple):
    """``(genvi name, numpyro distribution, numpyro name, constraint)`` of each parameter
    the caller gave (derived ones, like ``MultivariateNormal``'s ``scale_tril`` computed
    from a covariance, are skipped: the given one is checked instead)."""
    given = dict(zip(family.params, args, strict=False)) if family.params else None
    out = []
    while d is not None:  # a wrapper (``Independent``) checks the distribution inside
        for pname, constraint in getattr(d, "arg_constraints", {}).items():
            name = family.param_name(pname)
            if given is not None and given.get(name) is None:
                continue
            out.append((name, d, pname, constraint))
        d = getattr(d, "base_dist", None)
    return out


def check_parameters(family: Family, args: tuple, where: str) -> None:
    """Raise :class:`genvi.SupportError` if a parameter lies outside its support."""
    d = family.dist(args)
    dependent = []
    for name, dd, pname, constraint in _constraint_checks(family, d, args):
        if C.is_dependent(constraint):
            dependent.append(name)
            continue
        val = getattr(dd, pname, None)
        if val is None:
            continue
        val = jax.lax.stop_gradient(val)  # a check needs no tangent (concrete under grad)
        ok = jnp.asarray(constraint(val), bool)
        _report(
            ~ok,
            (val,),
            lambda v, bad, name=name, constraint=constraint: (
                f"{family.name} {where}: parameter {name!r} lies outside its support "
                f"({constraint}); got {_show(v)}"
            ),
        )
    if dependent:
        _check_bounds(family, d, dependent, where)


def _check_bounds(family: Family, d, names: list, where: str) -> None:
    """Dependent parameters (``low``, ``high``) must give a non-empty support."""
    support = d.support
    while isinstance(support, C.independent):
        support = support.base_constraint
    if not isinstance(support, (C.interval, C.integer_interval)):
        return  # nothing genvi knows how to check
    lo = jnp.asarray(jax.lax.stop_gradient(support.lower_bound))
    hi = jnp.asarray(jax.lax.stop_gradient(support.upper_bound))
    discrete = isinstance(support, C.integer_interval)
    bad = (lo > hi) if discrete else ~(lo < hi)
    rel = "at most" if discrete else "below"
    if len(names) == 2:
        a, b = names
        text = f"parameter {a!r} must be {rel} {b!r} (the bounds of its support)"
        labels = (a, b)
    else:
        text = f"the lower bound of its support must be {rel} the upper bound ({names})"
        labels = ("lower bound", "upper bound")
    _report(
        bad,
        (lo, hi),
        lambda lo_, hi_, bad_: (
            f"{family.name} {where}: {text}; got {labels[0]}={_show(lo_)}, {labels[1]}={_show(hi_)}"
        ),
    )


def check_value(family: Family, d, value, where: str) -> None:
    """Raise :class:`genvi.SupportError` if ``value`` lies outside the support of ``d``."""
    value = jax.lax.stop_gradient(value)
    bad = outside_support(d, value)
    _report(
        bad,
        (value,),
        lambda v, bad_: (
            f"{family.name} {where}: {_show_bad(v, bad_)} lies outside the support of "
            f"{family.name} ({d.support}), where its log density is -inf; score values "
            "the distribution can produce (with validation off, such a value scores -inf)"
        ),
    )


# ---------------------------------------------------------------------------------------
# Errors raised by a host callback.


@contextlib.contextmanager
def eager_errors():
    """Run a distribution's GFI method: a genvi error raised in a host callback comes out
    as that error with its plain message, whether JAX wrapped it in a
    ``JaxRuntimeError`` (compiled code) or the callback ran at once (eager ``vmap``)."""
    try:
        with runtime_errors():
            yield
    except GenviError as e:
        clean = from_runtime_error(e)
        if clean is None:
            raise
        raise clean from None


class _MarkedErrorFilter(logging.Filter):
    """Drops the "jax.debug.callback failed" records of genvi's own marked errors (the
    error itself still propagates); every other record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, GenviError) and from_runtime_error(exc) is not None)


_JAX_CALLBACK_LOGGER = "jax._src.debugging"


def _install_filter() -> None:
    logger = logging.getLogger(_JAX_CALLBACK_LOGGER)
    if not any(isinstance(f, _MarkedErrorFilter) for f in logger.filters):
        logger.addFilter(_MarkedErrorFilter())


_install_filter()
