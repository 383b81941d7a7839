"""Where a value in a choice map came from, and whether a model may score it.

When a generative function samples a choice with a distribution, the value's entry in
the trace's choice map remembers an :class:`Origin`: the distribution, whether its values
are discrete, and its support. When a model then scores that value at the same address
(``model.assess(guide_trace.choices.merge(obs))``, as every objective does), genvi checks
that the guide's distribution can stand for the model's there: both discrete or both
continuous, and the guide's support inside the model's. A guide that fails this would
train on a mix of a pmf and a pdf, or put mass where the model has none, and report a
finite number that means nothing.

Values given by hand (observations, a dict) carry no origin and are not checked here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from jax.core import Tracer

from genvi.core._choicemap import Address, format_address
from genvi.core._errors import ChoiceTypeError


@dataclass(frozen=True)
class Origin:
    """The distribution that sampled a value, in the generative function ``owner``."""

    dist: str
    owner: str
    discrete: bool
    support: str  # a description: "real", "interval", "simplex", ...
    low: float | None  # bounds of an interval-like support, when known when traced
    high: float | None

    def describe(self) -> str:
        kind = "discrete" if self.discrete else "continuous"
        return f"{self.dist} in {self.owner} ({kind}, support {self._bounds()})"

    def _bounds(self) -> str:
        if self.low is None and self.high is None:
            return self.support
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        return f"{self.support} [{lo}, {hi}]"


_INTERVAL_LIKE = {"real", "interval", "integer"}


def _bound(x, default: float, reduce) -> float | None:
    """A bound as a float (the loosest over an array of bounds), ``default`` if absent,
    ``None`` if it is only known when the program runs."""
    if x is None:
        return default
    if isinstance(x, Tracer):
        return None
    try:
        a = np.asarray(x, dtype=float)
    except Exception:  # noqa: BLE001 - an unusual bound: treat as unknown
        return None
    return float(reduce(a)) if a.size else None


def _describe_support(constraint, discrete: bool) -> tuple[str, float | None, float | None]:
    c = constraint
    while hasattr(c, "base_constraint"):  # independent(real, 1) -> real
        c = c.base_constraint
    name = type(c).__name__.lstrip("_").lower()
    if name in ("real", "realvector"):
        return "real", -math.inf, math.inf
    if name == "boolean":
        return "integer", 0.0, 1.0
    lo = getattr(c, "lower_bound", None)
    hi = getattr(c, "upper_bound", None)
    if lo is None and hi is None:
        if discrete and name == "integer":
            return "integer", -math.inf, math.inf
        return name, None, None
    return (
        "integer" if discrete else "interval",
        _bound(lo, -math.inf, np.min),
        _bound(hi, math.inf, np.max),
    )


def origin_of(dist, args: tuple, kwargs: dict, owner: str) -> Origin | None:
    """The :class:`Origin` of a value sampled by the distribution ``dist(*args)``."""
    family = getattr(dist, "family", None)
    if family is None:
        return None
    try:
        d = family.dist(dist._args(args, kwargs))
        support = d.support
    except Exception:  # noqa: BLE001 - no support to describe: no origin, no check
        return None
    kind, low, high = _describe_support(support, family.discrete)
    return Origin(dist.name, owner, bool(family.discrete), kind, low, high)


def check_compatible(origin: Origin, dist, args: tuple, kwargs: dict, addr: Address, owner: str):
    """Raise :class:`~genvi.ChoiceTypeError` if a value sampled as ``origin`` cannot be
    scored by ``dist(*args)`` at ``addr`` of ``owner``."""
    model = origin_of(dist, args, kwargs, owner)
    if model is None:
        return
    where = f"address {format_address(addr)}"
    if origin.discrete != model.discrete:
        want = "a discrete" if model.discrete else "a continuous"
        raise ChoiceTypeError(
            f"{where}: the value comes from {origin.describe()}, but {owner} scores it with "
            f"{model.describe()}; a guide must sample each latent with the same kind of "
            f"values as the model: use {want} distribution for {format_address(addr)} in "
            f"{origin.owner}"
        )
    if _inside(origin, model):
        return
    raise ChoiceTypeError(
        f"{where}: the value comes from {origin.describe()}, whose support is not inside "
        f"that of {model.describe()}: the guide would propose values the model gives "
        f"density zero. Use a guide distribution on the model's support there (for a "
        f"bounded latent, e.g. a beta or a transformed normal; for a positive one, a gamma "
        "or a log-normal)"
    )


def _inside(g: Origin, m: Origin) -> bool:
    g_iv, m_iv = g.support in _INTERVAL_LIKE, m.support in _INTERVAL_LIKE
    if g_iv and m_iv:
        if None in (g.low, g.high, m.low, m.high):
            return True  # a bound is only known when the program runs: not checked here
        assert g.low is not None and g.high is not None and m.low is not None
        assert m.high is not None
        return g.low >= m.low and g.high <= m.high
    if g_iv != m_iv:
        return False  # e.g. a normal guide for a simplex-valued latent
    return g.support == m.support


__all__ = ["Origin", "check_compatible", "origin_of"]
