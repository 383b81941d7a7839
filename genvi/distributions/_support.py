"""Log densities that are ``-inf`` outside the support, with finite gradients everywhere.

numpyro's ``log_prob`` evaluates its formula at any value: ``Uniform(0, 1)`` at 3 is 0,
``CategoricalLogits`` at -1 is the last category, ``Gamma`` at -1 is NaN. genvi scores a
value outside the support ``-inf`` instead, in one place (the site layer, which every
strategy and the GFI use), from the numpyro distribution's ``support`` constraint, so
that it also covers ``gv.distribution(any numpyro class)``.

The mask is a "double where": the value is first replaced by a feasible one where it
lies outside (``constraint.feasible_like``), so the formula is only ever evaluated inside
the support, and then the result is replaced by ``-inf`` there. A single ``jnp.where``
would select ``-inf`` correctly but leak the NaN gradient of the formula at the
infeasible value (``0 * nan = nan`` in the backward pass).

Conventions:

- An unbounded real support (normal, laplace, the multivariate normals, StudentT) is
  not masked at all: nothing to check, nothing to pay.
- A continuous support is taken *closed*: the density at a bound is the limit of its
  formula, as scipy has it (``exponential(rate)`` at 0 is ``log(rate)``; ``uniform(0, 1)``
  at 0 and at 1 is 0; ``beta(1, 1)`` at 0 is 0, ``beta(2, 1)`` at 0 is ``-inf``). A
  genuine float sample can land on a bound (``jax.random.exponential`` returns exactly 0
  with probability ``2**-23`` per float32 draw), and a genuine sample is never masked.
  Where the formula computes no number at a bound (NaN: ``LogNormal`` at 0, numpyro's
  ``gamma(1, rate)`` at 0, where ``(c - 1) log 0`` is ``0 * -inf``), it scores ``-inf``; where it is
  infinite there, it keeps that value; either way with a zero gradient, not NaN. On a
  bound, the formula is evaluated twice (once to find such points): only families with
  an open bound (gamma, exponential, positive wrapped ones) pay that.
- The simplex (dirichlet) is checked up to ``max(1e-6, 2 K eps)`` on the sum (``K`` the
  number of components, ``eps`` the value's float epsilon): a float sum of ``K`` terms
  is only exact to about ``K eps / 2`` in the worst order of summation, and numpyro's
  fixed 1e-6 would mask genuine float32 samples of large ``K``.
- A discrete support (flip, categorical, poisson, binomial, ...) needs whole numbers in
  range; a float value of a bounded integer support (categorical's indices) is cast to
  integers after masking, so a traced ``1.0`` scores as category 1. A binary value stays
  a float (its formula takes one), and its check is staged as a named call that
  ``gv.Rebar`` relaxes (:func:`genvi_boolean_support`).
- A support that numpyro cannot state (``constraints.dependent``) is not masked.
"""

from __future__ import annotations

import contextlib
import contextvars

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import constraints as C

_UNBOUNDED = (type(C.real),)


def is_unbounded(support) -> bool:
    """Whether ``support`` is all of R^n (``real``, ``real_vector``, ``independent(real)``)."""
    while isinstance(support, C.independent):
        support = support.base_constraint
    return isinstance(support, _UNBOUNDED)


def _float_eps(dtype) -> float:
    dtype = dtype if jnp.issubdtype(dtype, jnp.floating) else jnp.float32
    return float(jnp.finfo(dtype).eps)


def simplex_tolerance(k: int, dtype) -> float:
    """How far from 1 the sum of a genuine ``k``-component simplex value may be."""
    return max(1e-6, 2.0 * k * _float_eps(dtype))


def _check(support, x):
    """``(ok, edge)``: whether each event of ``x`` lies in the closure of ``support``, and
    where it lies on an open bound (or ``None`` if it cannot)."""
    if isinstance(support, C.independent):
        ok, edge = _check(support.base_constraint, x)
        n = support.reinterpreted_batch_ndims
        if n == 0:
            return ok, edge
        axes = tuple(range(-n, 0))
        return jnp.all(ok, axes), None if edge is None else jnp.any(edge, axes)
    if support is C.simplex or isinstance(support, type(C.simplex)):
        k = jnp.shape(x)[-1]
        total = jnp.sum(x, -1)
        tol = simplex_tolerance(k, x.dtype)
        return jnp.all(x >= 0, -1) & (jnp.abs(total - 1) <= tol), None
    if isinstance(support, C.open_interval):
        lo, hi = support.lower_bound, support.upper_bound
        return (x >= lo) & (x <= hi), (x == lo) | (x == hi)
    if isinstance(support, C.greater_than):  # positive, softplus_positive, nonnegative
        lo = support.lower_bound
        return x >= lo, x == lo
    if isinstance(support, C.less_than):
        hi = support.upper_bound
        return x <= hi, x == hi
    if support is C.boolean or isinstance(support, type(C.boolean)):
        return _boolean_values(x), None
    return jnp.asarray(support(x)), None


def genvi_boolean_support(x):
    """Whether each element of ``x`` is 0 or 1. Staged as a named call (its name is
    :data:`RELAXABLE_CHECK`) so that the ADEV interpreter can find it: while it evaluates
    the rest of a program at a *relaxed* binary value (``gv.Rebar``), it takes this check
    as passed, so that a flip's or bernoulli's density at ``x`` in (0, 1) is the formula's
    continuous extension ``x log p + (1 - x) log(1 - p)`` instead of ``-inf``. Everywhere
    else (the GFI, every other strategy, code outside genvi) it is the plain check."""
    return (x == 0) | (x == 1)


_boolean_values = jax.jit(genvi_boolean_support)
#: the name of the staged boolean-support check (see :func:`genvi_boolean_support`)
RELAXABLE_CHECK = "genvi_boolean_support"

# Whether the ADEV interpreter is evaluating a continuation at relaxed binary values. A
# context variable: set only while genvi traces such a continuation, private to the
# thread (and task) that traces it.
_RELAXED: contextvars.ContextVar[bool] = contextvars.ContextVar("genvi_relaxed", default=False)


@contextlib.contextmanager
def relaxed_binary():
    """Within: the ADEV interpreter takes every staged boolean-support check as passed."""
    token = _RELAXED.set(True)
    try:
        yield
    finally:
        _RELAXED.reset(token)


def binary_relaxed() -> bool:
    """Whether a continuation is being evaluated at relaxed binary values."""
    return _RELAXED.get()


def masked_log_prob(d, value):
    """``d.log_prob(value)`` where ``value`` lies in ``d.support``, ``-inf`` elsewhere, with
    finite gradients in the parameters and the value on both sides (see the module)."""
    support = d.support
    if is_unbounded(support) or C.is_dependent(support):
        return d.log_prob(value)
    value = jnp.asarray(value)
    ok, edge = _check(support, value)
    event_dim = support.event_dim
    ok_v = jnp.reshape(ok, jnp.shape(ok) + (1,) * event_dim)
    try:
        feasible = jnp.asarray(support.feasible_like(value), value.dtype)
    except NotImplementedError:  # a constraint without one: mask the result only
        feasible = None
    safe = value if feasible is None else jnp.where(ok_v, value, feasible)
    if (
        isinstance(support, C.integer_interval)
        and jnp.issubdtype(safe.dtype, jnp.floating)
        and feasible is not None
    ):
        # in range and whole once masked: indices (categorical) must be integers
        safe = safe.astype(jax.dtypes.canonicalize_dtype(np.int64))
    if edge is None:
        lp = d.log_prob(safe)
    else:
        # On an open bound the formula may have no finite value (gamma(2, 1) at 0 is -inf,
        # LogNormal at 0 is NaN) and then no finite gradient either: such points keep the
        # formula's value (NaN read as -inf) with no gradient, by a second double where.
        lp0 = jax.lax.stop_gradient(d.log_prob(safe))
        bad = edge & ~jnp.isfinite(lp0)
        bad_v = jnp.reshape(bad, jnp.shape(bad) + (1,) * event_dim)
        if feasible is not None:
            safe = jnp.where(bad_v, feasible, safe)
        lp = jnp.where(bad, jnp.where(jnp.isnan(lp0), -jnp.inf, lp0), d.log_prob(safe))
    return jnp.where(ok, lp, -jnp.inf)


def outside_support(d, value):
    """A boolean array, True for the events of ``value`` outside ``d.support`` (all False
    when the support is unbounded or not stated)."""
    support = d.support
    value = jnp.asarray(value)
    if is_unbounded(support) or C.is_dependent(support):
        return jnp.zeros(jnp.shape(value)[: jnp.ndim(value) - support.event_dim], bool)
    ok, _ = _check(support, value)
    return ~ok
