"""Distribution families: a thin, hashable layer over ``numpyro.distributions``.

A :class:`Family` knows how to build the numpyro distribution from positional parameters
and what it supports (reparameterized sampling, enumeration of a finite support). A
:class:`SiteSpec` is what the ``sample`` primitive carries: a family plus the tree
structure of its flattened parameters, possibly batched by ``jax.vmap``
(:class:`BatchedSite`). Strategy rules only talk to a ``SiteSpec``.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import Distribution as _NumpyroDistribution
from numpyro.distributions.distribution import validation_enabled as _numpyro_validation

from genvi.core._errors import StrategyError
from genvi.distributions._support import masked_log_prob


@dataclass(frozen=True, eq=False)
class Family:
    """A distribution family backed by numpyro.

    Attributes:
        name: the genvi name (``"normal"``).
        make: positional parameters (and the keyword ``validate_args``) -> a
            ``numpyro.distributions.Distribution``. genvi always builds with
            ``validate_args=False`` and checks parameters itself (:func:`genvi.validate`).
        discrete: whether values are integers.
        reparam: whether sampling is (explicitly or implicitly) reparameterizable.
        enum_support: for finite supports, parameters -> the candidate values
            (a 1-D array shared by all elements), else ``None``.
        mvd: name of the measure-valued-derivative rule, or ``None``.
        params: the names of the positional parameters (for keyword calls and errors).
        defaults: ``(name, value)`` pairs of parameters that have a default value.
        aliases: ``(numpyro name, genvi name)`` pairs where genvi names a parameter
            otherwise than numpyro (``flip``'s ``p`` is numpyro's ``probs``).
    """

    name: str
    make: Callable[..., Any]
    discrete: bool
    reparam: bool
    enum_support: Callable[..., Any] | None = None
    mvd: str | None = None
    params: tuple[str, ...] = field(default=())
    defaults: tuple[tuple[str, Any], ...] = field(default=())
    aliases: tuple[tuple[str, str], ...] = field(default=())
    #: ``(key, numpyro distribution) -> value``, drawing what numpyro's ``sample`` would
    #: (the same law) more cheaply; ``None``: numpyro's sampler
    sampler: Callable[..., Any] | None = None

    def param_name(self, numpyro_name: str) -> str:
        """genvi's name for the numpyro parameter ``numpyro_name``."""
        return dict(self.aliases).get(numpyro_name, numpyro_name)

    def bind(self, args: tuple, kwargs: dict) -> tuple:
        """Positional parameters from a call's ``args`` and ``kwargs``.

        A parameter left out before one that is given takes its default value (numpyro's),
        so ``student_t(3.0, scale=2.0)`` means ``student_t(3.0, 0.0, 2.0)``.
        """
        if not kwargs:
            return tuple(args)
        sig = inspect.Signature(
            [inspect.Parameter(p, inspect.Parameter.POSITIONAL_OR_KEYWORD) for p in self.params]
        )
        try:
            given = sig.bind_partial(*args, **kwargs).arguments
        except TypeError as e:
            raise TypeError(f"{self.name}{self.signature()}: {e}") from None
        defaults = dict(self.defaults)
        last = max(self.params.index(p) for p in given)
        out = []
        for p in self.params[: last + 1]:
            if p in given:
                out.append(given[p])
            elif p in defaults:
                out.append(defaults[p])
            else:
                raise TypeError(
                    f"{self.name}{self.signature()}: parameter {p!r} is missing; "
                    f"got {sorted(given)}"
                )
        return tuple(out)

    def dist(self, args: tuple):
        # genvi checks parameters itself (gv.validate); numpyro's own checks are turned off,
        # also for the distributions a numpyro class builds inside (Beta's Dirichlet).
        try:
            return build(self.make, args)
        except (TypeError, ValueError) as e:
            raise type(e)(
                f"{self.name}{self.signature()}: cannot build from {describe_args(args)}: {e}"
            ) from None

    def signature(self) -> str:
        return "(" + ", ".join(self.params) + ")"

    def __repr__(self) -> str:
        return f"Family({self.name})"


_NUMPYRO_DEFAULT = threading.Lock()


def build(make, args: tuple):
    """``make(*args, validate_args=False)`` with numpyro's checks off, also in the
    distributions it holds (Beta's Dirichlet, LogNormal's Normal), which numpyro builds
    with its process-wide default: their checks are turned off per instance afterwards.
    Only when such an inner check refuses concrete parameters (``beta(2, 0)``: genvi
    leaves that to :func:`genvi.validate`, and scores NaN) is the distribution built again
    with numpyro's default off, under a lock, so that two threads never interleave the
    switch and its restoration (which could leave numpyro's default off for good)."""
    try:
        d = make(*args, validate_args=False)
    except ValueError:
        with _NUMPYRO_DEFAULT, _numpyro_validation(False):
            d = make(*args, validate_args=False)
    return without_validation(d)


def without_validation(d):
    """``d`` with numpyro's checks off in it and in every distribution it holds, set on
    each instance (``log_prob`` would otherwise mask and warn a second time)."""
    stack, seen = [d], set()
    while stack:
        x = stack.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        x._validate_args = False
        for v in vars(x).values():
            items = v if isinstance(v, (list, tuple)) else (v,)
            stack.extend(i for i in items if isinstance(i, _NumpyroDistribution))
    return d


def describe_args(args: Any) -> str:
    """``"(loc: float32[3], scale: float32[])"``-style description of parameters."""
    parts = []
    for a in args:
        shape = getattr(a, "shape", np.shape(a))
        dtype = getattr(a, "dtype", type(a).__name__)
        parts.append(f"{dtype}{list(shape)}")
    return "(" + ", ".join(parts) + ")"


def family_from_numpyro(cls, name: str | None = None) -> Family:
    """A :class:`Family` for any numpyro distribution class."""
    sig = [
        p
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.name not in ("self", "validate_args")
        and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.POSITIONAL_ONLY)
    ]
    params = tuple(p.name for p in sig)
    defaults = tuple((p.name, p.default) for p in sig if p.default is not inspect.Parameter.empty)
    # A support that depends on the parameters is a numpyro ``dependent_property``: read it
    # statically (a plain getattr on the class would return the property object itself).
    support = inspect.getattr_static(cls, "support", None)
    discrete = getattr(support, "is_discrete", False) is True
    enum = None
    if getattr(cls, "has_enumerate_support", False):
        enum = _numpyro_enum_support(cls)
    return Family(
        name=name or cls.__name__,
        make=cls,
        discrete=discrete,
        reparam=_class_has_rsample(cls) and not discrete,
        enum_support=enum,
        params=params,
        defaults=defaults,
    )


def _class_has_rsample(cls) -> bool:
    """numpyro's ``has_rsample`` is an instance property (on the class it is a property
    object, always truthy): every parameter is reparameterized exactly when
    ``reparametrized_params`` covers ``arg_constraints``."""
    params = getattr(cls, "reparametrized_params", None)
    constraints = getattr(cls, "arg_constraints", None)
    if not isinstance(params, (list, tuple)) or not isinstance(constraints, dict):
        return False
    return bool(constraints) and set(params) == set(constraints)


def _numpyro_enum_support(cls):
    def support(*args):
        d = build(cls, args)
        try:
            vals = d.enumerate_support(expand=False)
        except Exception as e:  # noqa: BLE001 - e.g. a traced total count
            raise StrategyError(
                f"ENUM of {cls.__name__}: cannot enumerate its support here ({e}); "
                "its size must be known when the program is traced"
            ) from None
        return jnp.reshape(vals, (-1,))

    return support


# ---------------------------------------------------------------------------------------
# Sites: what the sample primitive carries.


class SiteSpec:
    """Interface of a sampling site: a family with flattened parameters."""

    family: Family

    def sample(self, key, flat):  # pragma: no cover - interface
        raise NotImplementedError

    def logpdf_batch(self, value, flat):  # pragma: no cover - interface
        raise NotImplementedError

    def logpdf_elements(self, value, flat):  # pragma: no cover - interface
        raise NotImplementedError

    def logpdf(self, value, flat):
        """Total log density of the value: the sum over all its elements."""
        return jnp.sum(self.logpdf_batch(value, flat))

    def mvd_candidates(self, key, value, flat, dflat):  # pragma: no cover - interface
        raise NotImplementedError

    def support_values(self, flat):  # pragma: no cover - interface
        """The candidate values of a finite support (a 1-D array shared by all elements)."""
        raise NotImplementedError

    @property
    def base(self) -> BaseSite:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass(frozen=True)
class BaseSite(SiteSpec):
    """A family called with parameters whose pytree structure is ``in_tree``."""

    family: Family
    in_tree: Any

    @property
    def base(self) -> BaseSite:
        return self

    def args(self, flat):
        return jax.tree_util.tree_unflatten(self.in_tree, list(flat))

    def dist(self, flat):
        return self.family.dist(tuple(self.args(flat)))

    def sample(self, key, flat):
        d = self.dist(flat)
        if self.family.sampler is not None:
            return self.family.sampler(key, d)
        return d.sample(key)

    def logpdf_batch(self, value, flat):
        return jnp.sum(masked_log_prob(self.dist(flat), value))

    def logpdf_elements(self, value, flat):
        """Log density of each element (scalar-event families): an array shaped as the value."""
        d = self.dist(flat)
        lp = masked_log_prob(d, value)
        return jnp.broadcast_to(lp, jnp.shape(value)[: jnp.ndim(value) - len(d.event_shape)])

    def support_values(self, flat):
        assert self.family.enum_support is not None
        return self.family.enum_support(*self.args(flat))

    def mvd_candidates(self, key, value, flat, dflat):
        from genvi.distributions._mvd import mvd_candidates

        return mvd_candidates(self.family.mvd, key, value, self.args(flat), self.args(dflat))


@dataclass(frozen=True)
class BatchedSite(SiteSpec):
    """A site vectorized by ``jax.vmap``: ``dims[0]`` is the key's batch axis, the rest the
    parameters' (each 0 or ``None``); values gain a leading axis of ``size``."""

    inner: SiteSpec
    dims: tuple
    size: int

    @property
    def family(self) -> Family:  # type: ignore[override]
        return self.inner.family

    @property
    def base(self) -> BaseSite:
        return self.inner.base

    def _vm(self, fn, value_axis=True):
        in_axes = ((0,) if value_axis else ()) + tuple(self.dims[1:])
        return jax.vmap(fn, in_axes=in_axes, axis_size=self.size)

    def sample(self, key, flat):
        return jax.vmap(
            lambda k, *f: self.inner.sample(k, f), in_axes=self.dims, axis_size=self.size
        )(key, *flat)

    def logpdf_batch(self, value, flat):
        return self._vm(lambda v, *f: self.inner.logpdf_batch(v, f))(value, *flat)

    def logpdf_elements(self, value, flat):
        return self._vm(lambda v, *f: self.inner.logpdf_elements(v, f))(value, *flat)

    def support_values(self, flat):
        # Candidate values depend only on shapes or static counts, the same for every row.
        sliced = [f if d is None else f[0] for f, d in zip(flat, self.dims[1:], strict=True)]
        return self.inner.support_values(sliced)

    def mvd_candidates(self, key, value, flat, dflat):
        kd = self.dims[0]
        fn = jax.vmap(
            lambda k, v, f, df: self.inner.mvd_candidates(k, v, f, df),
            in_axes=(kd, 0, list(self.dims[1:]), list(self.dims[1:])),
            axis_size=self.size,
        )
        cands, weights = fn(key, value, list(flat), list(dflat))
        # [B, n_inner, M, ...] -> [B * n_inner, M, ...]
        return (
            cands.reshape((-1,) + cands.shape[2:]),
            weights.reshape((-1,) + weights.shape[2:]),
        )
