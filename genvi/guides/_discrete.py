"""The factors of an automatic guide for discrete latents, and their strategies.

Each discrete latent gets a factor of its own, independent of the continuous part and of
the other factors:

- a finite support with values ``v_1..v_V`` (flip, bernoulli, categorical, binomial with
  a static count): a categorical over the values, one per element, with learned logits of
  shape ``[*shape, V]`` (values outside an element's support masked to probability 0);
- poisson: a poisson with a learned log rate per element;
- geometric: a geometric with learned logits of its success probability per element.

Each factor samples through genvi's ``sample`` primitive with its strategy, so ENUM,
REINFORCE and MVD apply exactly as in a hand-written guide.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from genvi.core._choicemap import format_address, normalize_address
from genvi.core._errors import AddressError, StrategyError
from genvi.distributions import _library as lib
from genvi.distributions import _overrides
from genvi.distributions._distribution import Distribution
from genvi.distributions._family import BaseSite
from genvi.distributions._primitive import sample_bind
from genvi.distributions._strategies import ENUM, MVD, REINFORCE, Baselined, Strategy
from genvi.guides._discover import Latent

#: With ``discrete="auto"``, a finite-support latent is enumerated (ENUM) when it has at
#: most this many (element, value) pairs, and uses REINFORCE otherwise.
ENUM_LIMIT = 16

_NAMES = {"enum": ENUM, "reinforce": REINFORCE, "mvd": MVD}


def draw(dist: Distribution, key, args: tuple, addr):
    """Sample ``dist(*args)`` through the ``sample`` primitive with its strategy, at
    ``addr`` (the address ADEV's messages name): ``(value, log density)``."""
    flat, tree = jax.tree_util.tree_flatten(args)
    site = BaseSite(dist.family, tree)
    strategy, operands = _overrides.resolve(dist.family, dist.strategy, dist.operands, addr)
    value = sample_bind(key, tuple(flat), operands, site=site, strategy=strategy, addr=addr)
    return value, site.logpdf(value, tuple(flat))


def density(dist: Distribution, value, args: tuple):
    """``log dist(*args)`` at ``value``, summed over its elements (-inf off the support)."""
    flat, tree = jax.tree_util.tree_flatten(args)
    return BaseSite(dist.family, tree).logpdf(value, tuple(flat))


def strategies_by_address(option, latents: list[Latent], who: str) -> dict:
    """The strategy of each discrete latent, from the ``discrete=`` option."""
    discrete = [lat for lat in latents if lat.discrete]
    if isinstance(option, Mapping):
        given = {normalize_address(k): v for k, v in option.items()}
        known = {lat.addr for lat in discrete}
        unknown = [a for a in given if a not in known]
        if unknown:
            raise AddressError(
                f"{who}: discrete= names {', '.join(format_address(a) for a in unknown)}, "
                "which is not a discrete latent of the model; its discrete latents are "
                f"{', '.join(format_address(a) for a in sorted(known)) or 'none'}"
            )
        return {lat.addr: _resolve(given.get(lat.addr, "auto"), lat, who) for lat in discrete}
    return {lat.addr: _resolve(option, lat, who) for lat in discrete}


def _resolve(option, lat: Latent, who: str) -> Strategy:
    where = f"{who}: the latent {format_address(lat.addr)} ({lat.family.name})"
    if isinstance(option, str):
        name = option.lower()
        if name == "auto":
            small = lat.values is not None and lat.size * lat.values.shape[0] <= ENUM_LIMIT
            return ENUM if small else REINFORCE
        if name not in _NAMES:
            raise ValueError(
                f"{who}: discrete={option!r} is not a strategy; use 'auto', 'enum', "
                "'reinforce' or 'mvd' (or gv.ENUM, gv.REINFORCE, gv.MVD), or a dict of "
                "them by address"
            )
        option = _NAMES[name]
    if not isinstance(option, Strategy):
        raise ValueError(
            f"{who}: discrete= takes a strategy (gv.ENUM, gv.REINFORCE, gv.MVD, or their "
            f"names), got {type(option).__name__} {option!r:.40}"
        )
    if isinstance(option, Baselined):
        raise StrategyError(
            f"{where}: a REINFORCE baseline needs a value the automatic guide does not have; "
            "use discrete='reinforce' or write the guide by hand with "
            f"{lat.family.name}.reinforce.with_baseline(b)"
        )
    if lat.infinite is not None and option is ENUM:
        raise StrategyError(
            f"{where} has an infinite support, which ENUM cannot enumerate; use "
            "discrete='reinforce' (or gv.MVD, or a dict giving this address its own "
            "strategy), or write the guide for it by hand"
        )
    return option


class Factor:
    """The guide's factor for one discrete latent, with its strategy."""

    def __init__(self, lat: Latent, strategy: Strategy, who: str):
        self.lat = lat
        self.strategy = strategy
        base = {None: lib.categorical, "poisson": lib.poisson, "geometric": lib.geometric}
        try:
            self.dist = base[lat.infinite].with_strategy(strategy)
        except StrategyError as e:
            raise StrategyError(f"{who}: the latent {format_address(lat.addr)}: {e}") from None

    def param_shape(self) -> tuple:
        lat = self.lat
        return lat.shape + ((lat.values.shape[0],) if lat.infinite is None else ())

    def init(self, draws, dtype):
        """The starting parameters: uniform logits over the values of a finite support;
        for poisson and geometric, the mean of the prior draws ``draws`` (zeros logits or
        log rate without them)."""
        if self.lat.infinite is None or draws is None:
            return jnp.zeros(self.param_shape(), dtype)
        mean = jnp.mean(jnp.asarray(draws, dtype), axis=0)
        if self.lat.infinite == "poisson":
            return jnp.log(mean + 0.5)
        return -jnp.log(mean + 0.5)  # geometric: odds of success 1 / mean failures

    def _args(self, param):
        lat = self.lat
        if lat.infinite == "poisson":
            return (jnp.exp(param),)
        if lat.infinite == "geometric":
            return (jax.nn.sigmoid(param),)
        if lat.feasible is None:
            return (param,)
        return (jnp.where(lat.feasible, param, -jnp.inf),)

    def sample(self, key, param, addr):
        """``(value, log q(value))``."""
        z, logp = draw(self.dist, key, self._args(param), addr)
        lat = self.lat
        if lat.infinite is not None:
            return z.astype(lat.dtype), logp
        if lat.feasible is not None:
            # An index outside an element's support has probability 0 and is never drawn,
            # but ENUM evaluates the rest of the program there too: map it to a feasible
            # index, so that the model and the guide score a value of the support (an
            # infeasible one would give -inf - -inf = NaN, and NaN gradients through the
            # zero weight of the enumeration).
            ok = jnp.take_along_axis(lat.feasible, z[..., None], -1)[..., 0]
            z = jnp.where(ok, z, jnp.argmax(lat.feasible, -1))
        logits = self._args(param)[0]
        lp = jnp.take_along_axis(jax.nn.log_softmax(logits, -1), z[..., None], -1)[..., 0]
        return jnp.asarray(lat.values)[z].astype(lat.dtype), jnp.sum(lp)

    def logpdf(self, param, value):
        lat = self.lat
        if lat.infinite is not None:
            return density(self.dist, value, self._args(param))
        values = jnp.asarray(lat.values)
        hit = jnp.asarray(value)[..., None] == values.astype(lat.dtype)
        idx = jnp.argmax(hit, axis=-1)
        logits = self._args(param)[0]
        lp = jnp.take_along_axis(jax.nn.log_softmax(logits, -1), idx[..., None], -1)[..., 0]
        return jnp.sum(jnp.where(jnp.any(hit, -1), lp, -jnp.inf))

    def describe(self) -> str:
        lat = self.lat
        if lat.infinite is not None:
            return f"{lat.infinite} factor, {self.strategy.name}"
        n = int(np.asarray(lat.values).shape[0])
        return f"categorical over {n} values, {self.strategy.name}"


__all__ = ["ENUM_LIMIT", "Factor", "density", "draw", "strategies_by_address"]
