"""Distributions as generative functions with one random choice and a gradient strategy."""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as nd
from jax.core import Tracer

from genvi import _config
from genvi.core import _handlers as handlers
from genvi.core._choicemap import ChoiceMap, choice_map, format_address
from genvi.core._errors import AddressError, ChoiceTypeError, ModelingError
from genvi.core._genfn import GenerativeFunction
from genvi.core._keys import check_key
from genvi.core._trace import Trace
from genvi.distributions import _overrides
from genvi.distributions import _strategies as S
from genvi.distributions._family import BaseSite, Family, describe_args, family_from_numpyro
from genvi.distributions._primitive import sample_bind
from genvi.distributions._validation import check_parameters, check_value, eager_errors


class Distribution(GenerativeFunction):
    """A distribution family with a gradient strategy, usable as ``dist(args) @ "addr"``.

    Strategy variants are attributes: ``.reparam``, ``.reinforce``, ``.enum``, ``.mvd``;
    ``.reinforce.with_baseline(b)`` adds a control variate. Asking for a strategy that
    cannot apply raises :class:`genvi.StrategyError` naming the distribution.
    """

    def __init__(self, family: Family, strategy: S.Strategy | None = None, operands: tuple = ()):
        if strategy is None:
            strategy = S.REPARAM if family.reparam else S.REINFORCE
        strategy.check(family)
        self.family = family
        self.strategy = strategy
        self.operands = tuple(operands)
        self.name = family.name

    single_choice = True

    # ----- strategy variants -----
    def with_strategy(self, strategy: S.Strategy, operands: tuple = ()) -> Distribution:
        """This family with another gradient strategy."""
        return Distribution(self.family, strategy, operands)

    @property
    def reparam(self) -> Distribution:
        """Pathwise gradients (explicit or implicit reparameterization)."""
        return self.with_strategy(S.REPARAM)

    @property
    def reinforce(self) -> Distribution:
        """Score-function (REINFORCE) gradients."""
        return self.with_strategy(S.REINFORCE)

    @property
    def enum(self) -> Distribution:
        """Exact enumeration of the (finite) support."""
        return self.with_strategy(S.ENUM)

    @property
    def rloo(self) -> Distribution:
        """This family with :data:`genvi.RLOO` (REINFORCE with a leave-one-out baseline
        over 4 draws; ``with_strategy(gv.LeaveOneOut(K))`` for another ``K``)."""
        return self.with_strategy(S.RLOO)

    @property
    def mvd(self) -> Distribution:
        """Measure-valued derivatives."""
        return self.with_strategy(S.MVD)

    def with_baseline(self, baseline) -> Distribution:
        """REINFORCE with the control variate ``baseline`` (a constant or a learned
        parameter passed as an argument; one per particle under ``vmap`` if you like)."""
        if not isinstance(self.strategy, S.Reinforce):
            raise S.StrategyError(
                f"a baseline wraps REINFORCE, but {self.name} has strategy {self.strategy.name}; "
                f"write {self.name}.reinforce.with_baseline(b)"
            )
        return Distribution(self.family, S.Baselined(), (baseline,))

    def __repr__(self) -> str:
        return f"<distribution {self.name} with {self.strategy.name}>"

    # ----- sampling and density -----
    def _args(self, args, kwargs):
        return self.family.bind(args, kwargs)

    def _site(self, args):
        flat, tree = jax.tree_util.tree_flatten(args)
        return BaseSite(self.family, tree), tuple(flat)

    def sample(self, key, *args, **kwargs):
        """Draw a value (a plain sample, outside any generative function)."""
        check_key(key, f"{self.name}.sample {self._where()}", single=True)
        return self.simulate(key, *args, **kwargs).retval

    def logpdf(self, value, *args, **kwargs):
        """``log p(value; args)``, summed over the elements of an array-valued choice:
        ``-inf`` if an element lies outside the support. With :func:`genvi.validate` on,
        the parameters are checked, and a value outside the support raises
        :class:`genvi.SupportError` naming it."""
        with eager_errors():
            args = self._args(args, kwargs)
            self._validate(args)
            site, flat = self._site(args)
            value = self._check_value(value, args)
            if _config.validation_enabled():
                check_value(self.family, site.dist(flat), value, self._where())
            return site.logpdf(value, flat)

    def simulate(self, key, *args, **kwargs) -> Trace:
        with eager_errors():
            check_key(key, f"{self.name}.simulate {self._where()}", single=True)
            args = self._args(args, kwargs)
            self._validate(args)
            site, flat = self._site(args)
            addr = handlers.current_address()
            strategy, operands = _overrides.resolve(self.family, self.strategy, self.operands, addr)
            _overrides.note_site(addr, site, flat)
            value = sample_bind(key, flat, operands, site=site, strategy=strategy, addr=addr)
            return Trace(ChoiceMap.leaf(value), site.logpdf(value, flat), value, args)

    def assess(self, choices, *args, **kwargs):
        with eager_errors():
            args = self._args(args, kwargs)
            self._validate(args)
            value = self._check_value(_leaf_value(choices, self), args)
            site, flat = self._site(args)
            return site.logpdf(value, flat), value

    def importance(self, key, constraints, *args, **kwargs):
        check_key(key, f"{self.name}.importance {self._where()}", single=True)
        # the constraint of a single choice may be given as a plain value
        is_map = isinstance(constraints, (ChoiceMap, Mapping)) or constraints is None
        cm = choice_map(constraints) if is_map else ChoiceMap.leaf(constraints)
        if cm.is_empty():
            return self.simulate(key, *args, **kwargs), jnp.zeros(())
        logp, value = self.assess(cm, *args, **kwargs)
        return Trace(ChoiceMap.leaf(value), logp, value, self._args(args, kwargs)), logp

    # ----- checks -----
    def _where(self) -> str:
        addr = handlers.current_address()
        return f"at address {format_address(addr)}" if addr else "(top level)"

    def _check_value(self, value, args):
        if isinstance(value, jax.Array) and jnp.issubdtype(value.dtype, jax.dtypes.prng_key):
            raise ChoiceTypeError(f"{self.name} {self._where()}: got a PRNG key as a value")
        try:
            value = jnp.asarray(value)
        except (TypeError, ValueError):
            raise ChoiceTypeError(
                f"{self.name} {self._where()}: cannot score a value of type "
                f"{type(value).__name__} ({value!r}); give a number or a numeric array"
            ) from None
        site, flat = self._site(args)
        expect = jax.eval_shape(lambda k: site.sample(k, flat), jax.random.key(0))
        if value.shape != expect.shape:
            raise ChoiceTypeError(
                f"{self.name}{describe_args(args)} {self._where()} makes choices of shape "
                f"{expect.shape}, but the value given has shape {value.shape}. "
                "Array-valued choices take their shape from the parameters: broadcast them "
                "(e.g. jnp.broadcast_to(loc, x.shape)) to score a whole array at one address"
            )
        kind = value.dtype.kind
        if kind not in "biuf":
            raise ChoiceTypeError(
                f"{self.name} {self._where()}: a value of dtype {value.dtype} cannot be scored; "
                f"expected {expect.dtype}"
            )
        if not self.family.discrete and kind == "b":
            raise ChoiceTypeError(
                f"{self.name} {self._where()} is continuous but the value given is boolean; "
                f"convert it to {expect.dtype}"
            )
        if not self.family.discrete and kind in "iu":
            value = value.astype(expect.dtype)
        if self.family.discrete and kind in "bf" and not isinstance(value, Tracer):
            v = np.asarray(value)
            if kind == "f" and not np.all(v == np.round(v)):
                raise ChoiceTypeError(
                    f"{self.name} {self._where()} is discrete, but the value given "
                    f"({v if v.size <= 6 else v.dtype}) holds numbers that are not whole; "
                    f"give whole numbers, e.g. of dtype {expect.dtype}"
                )
            value = _as_whole(value, v, expect.dtype)
        return value

    def _validate(self, args):
        if _config.validation_enabled():
            check_parameters(self.family, args, self._where())


def _as_whole(value, v: np.ndarray, dtype):
    """A concrete boolean or whole float value of a discrete family, in the family's
    integer dtype (``1.0`` as a categorical index), if every element fits in it."""
    if not jnp.issubdtype(dtype, jnp.integer):
        return value  # geometric samples floats: keep them
    info = jnp.iinfo(dtype)
    finite = np.all(np.isfinite(v)) if v.dtype.kind == "f" else True
    if finite and (v.size == 0 or (v.min() >= info.min and v.max() <= info.max)):
        return value.astype(dtype)
    return value


def _leaf_value(choices, dist: Distribution):
    if isinstance(choices, ChoiceMap):
        if choices.is_empty():
            raise AddressError(
                f"{dist.name} {dist._where()}: no value for this choice; assess needs every "
                "choice (importance samples the ones that are not given)"
            )
        if not choices.is_leaf:
            raise ChoiceTypeError(
                f"{dist.name} {dist._where()}: expected a value, got a choice map with "
                f"addresses {choices.addresses()}"
            )
        return choices.value
    if isinstance(choices, dict):
        raise ChoiceTypeError(f"{dist.name} {dist._where()}: expected a value, got a dict")
    return choices


def distribution(numpyro_cls, name: str | None = None) -> Distribution:
    """Wrap any ``numpyro.distributions`` class as a genvi distribution.

    Positional and keyword parameters are those of the numpyro constructor. The default
    strategy is REPARAM when numpyro's sampler is reparameterized (``has_rsample``), else
    REINFORCE; ENUM is available when the support is enumerable.

    Examples:
        >>> import numpyro.distributions as nd
        >>> student_t = gv.distribution(nd.StudentT)
        >>> student_t
        <distribution StudentT with REPARAM>
        >>> x = student_t.sample(jax.random.key(0), 3.0, 0.0, 1.0)
        >>> x.shape
        ()
    """
    if not (isinstance(numpyro_cls, type) and issubclass(numpyro_cls, nd.Distribution)):
        if isinstance(numpyro_cls, nd.Distribution):
            cls = type(numpyro_cls).__name__
            raise ModelingError(
                f"gv.distribution takes a numpyro distribution class, but got an instance "
                f"of {cls} (its parameters already fixed); pass the class, "
                f"gv.distribution(numpyro.distributions.{cls}), and give the parameters "
                f"where it is called: gv.distribution(nd.{cls})(*params) @ 'addr'"
            )
        raise ModelingError(
            "gv.distribution takes a numpyro distribution class (a subclass of "
            "numpyro.distributions.Distribution, e.g. numpyro.distributions.StudentT), "
            f"but got {type(numpyro_cls).__name__} {numpyro_cls!r:.60}"
        )
    return Distribution(family_from_numpyro(numpyro_cls, name))
