"""Finding a model's latent choices: addresses, shapes, dtypes, sites and supports.

An automatic guide must propose exactly the model's latent choices: every address the
model samples that the observations do not give. They are found by staging
``model.importance(key, observations, *model_args)`` to a jaxpr once:

- the trace (captured while staging) gives every address, with its shape, dtype and
  :class:`~genvi.core._origin.Origin`;
- each latent's value is then followed back, in the jaxpr, to the ``sample`` equation
  that drew it (through nested ``jit`` calls and ``gv.scan`` bodies): its static
  parameters hold the distribution family and, through the parameters' values, its
  support (a numpyro constraint);
- a latent whose value is not a plain draw (``gv.cond`` / ``gv.switch`` on a traced
  index pads the untaken branches' addresses with zeros, selected after the draws) is
  refused: its presence changes with the branch taken, which a guide over a fixed set
  of addresses cannot propose soundly.

A support whose bounds depend on the distribution's parameters (``uniform(low, high)``,
``binomial``'s count) is read from the parameters' values at the ``model_args`` given,
found by evaluating the staged program; it must not depend on other latents (a
dependency walk over the jaxpr checks that), nor be computed inside a ``gv.scan`` body.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as nd
from jax.extend.core import Literal
from numpyro.distributions import constraints as C
from numpyro.distributions.transforms import biject_to

from genvi.adev._interpreter import _INLINE, _bind_fn, _eqn_has_samples, _inner_jaxpr
from genvi.core._choicemap import Address, ChoiceMap, choice_map, format_address
from genvi.core._errors import AddressError, ChoiceTypeError, GenviError, ModelingError
from genvi.core._genfn import GenerativeFunction
from genvi.core._origin import Origin
from genvi.distributions._family import BaseSite, BatchedSite, Family, SiteSpec
from genvi.distributions._primitive import sample_p
from genvi.distributions._strategies import _support_dependence

_BY_HAND = "write this guide by hand (a @gv.gen function sampling the same addresses)"


def _none(x):  # the bijections of a discrete latent
    raise NotImplementedError("a discrete latent has no bijection")


@dataclass(frozen=True, eq=False)
class Latent:
    """One latent choice of the model, as an automatic guide sees it.

    Continuous latents carry ``forward`` (unconstrained array of shape ``ushape`` ->
    ``(value, log|det J|)``, the Jacobian summed) and ``inverse``; discrete ones carry
    their candidate ``values`` (finite supports: a 1-D array shared by all elements, and
    ``feasible``, a ``[*shape, V]`` mask, where the support differs between elements)
    or ``infinite`` (``"poisson"`` or ``"geometric"``)."""

    addr: Address
    shape: tuple[int, ...]
    dtype: Any
    family: Family
    discrete: bool
    origin: Origin | None
    support: str
    ushape: tuple[int, ...] = ()
    forward: Callable = _none
    inverse: Callable = _none
    values: Any = None
    feasible: Any = None
    infinite: str | None = None

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def usize(self) -> int:
        return math.prod(self.ushape)


def check_inputs(model, model_args, observations, who: str) -> tuple[tuple, ChoiceMap]:
    """The model, its arguments and the observations as an automatic guide needs them."""
    if not isinstance(model, GenerativeFunction):
        raise ModelingError(
            f"{who}: the model must be a generative function (a @gv.gen function), got "
            f"{type(model).__name__} {model!r:.60}"
        )
    if not isinstance(model_args, (tuple, list)):
        raise ChoiceTypeError(
            f"{who}: model_args must be a tuple of the model's arguments, e.g. (theta,) "
            f"(or () for none), got {type(model_args).__name__}"
        )
    if observations is None:
        return tuple(model_args), ChoiceMap()
    if not isinstance(observations, (Mapping, ChoiceMap)):
        raise ChoiceTypeError(
            f"{who}: observations must be a choice map or a nested dict of the model's "
            f'observed addresses, e.g. {{"x": x}}, got {type(observations).__name__}'
        )
    return tuple(model_args), choice_map(observations)


def find_latents(model, model_args: tuple, obs: ChoiceMap, who: str) -> list[Latent]:
    """Every latent choice of ``model(*model_args)`` given ``obs``, in address order."""
    box: dict = {}

    def run(key):
        tr, _ = model.importance(key, obs, *model_args)
        box["choices"] = tr.choices
        return [tr.choices[a] if a else tr.choices.value for a in tr.choices.addresses()]

    try:
        closed = jax.make_jaxpr(run)(jax.random.key(0))
    except (AddressError, ChoiceTypeError) as e:
        raise type(e)(f"{who}: while running {model.name} with the observations: {e}") from None
    cm: ChoiceMap = box["choices"]
    addrs = cm.addresses()
    if () in addrs:
        raise ModelingError(
            f"{who}: {model.name} is a single distribution, whose choice has no address; "
            'call it inside a @gv.gen model at an address (gv.normal(0., 1.) @ "z")'
        )
    origins = cm.origins()
    jaxpr = closed.jaxpr
    found = []
    for addr, var in zip(addrs, jaxpr.outvars, strict=True):
        if obs.has(addr):
            continue
        ref = _find_site(jaxpr, var, 0)
        if not isinstance(ref, _SiteRef):
            head = (
                f"{who}: the latent {format_address(addr)} of {model.name} is not a plain "
                f"draw of a distribution (its value comes from {ref})"
            )
            if "cond" in ref or "select_n" in ref:
                raise ModelingError(
                    f"{head}: a latent inside gv.cond / gv.switch with a traced (random) "
                    "index exists only when its branch is taken, so a guide over a fixed set "
                    f"of addresses cannot propose it soundly. Make the index a Python int, or "
                    f"{_BY_HAND} that branches on the same index"
                )
            raise ModelingError(
                f"{head}, so the automatic guide cannot tell its distribution and support "
                f"(a gv.marginal, say, or a generative function of your own): {_BY_HAND}"
            )
        found.append((addr, ref))
    wanted = [
        v
        for _, r in found
        if r.depth == 0
        for i, v in enumerate(r.flat_vars)
        if i in r.dependence() and not isinstance(v, Literal)
    ]
    env = _Env(closed, wanted)
    out = []
    for addr, ref in found:
        value = cm[addr]
        out.append(_latent(addr, ref, env, jnp.shape(value), value.dtype, origins.get(addr), who))
    return out


# ---------------------------------------------------------------------------------------
# Following a value back to the sample equation that drew it.


@dataclass(frozen=True, eq=False)
class _SiteRef:
    eqn: Any
    depth: int  # the number of gv.scan bodies around it (each adds a leading time axis)

    @property
    def site(self) -> SiteSpec:
        return self.eqn.params["site"]

    @property
    def flat_vars(self) -> list:
        n_ops = self.eqn.params["n_ops"]
        rest = self.eqn.invars[1:]
        return list(rest[: len(rest) - n_ops])

    def dependence(self) -> frozenset:
        """Indices of the flat parameters that the support's bounds depend on."""
        site = self.site
        shapes = [(tuple(v.aval.shape), v.aval.dtype) for v in self.flat_vars]
        while isinstance(site, BatchedSite):
            shapes = [
                s if d is None else (s[0][1:], s[1])
                for s, d in zip(shapes, site.dims[1:], strict=True)
            ]
            site = site.inner
        return _support_dependence(site, tuple(shapes))


def _producer(jaxpr, var) -> tuple[Any, int]:
    for eqn in jaxpr.eqns:
        for i, o in enumerate(eqn.outvars):
            if o is var:
                return eqn, i
    return None, -1


def _find_site(jaxpr, var, depth: int):
    """The sample equation whose output ``var`` is, or a description of what it is."""
    if isinstance(var, Literal):
        return "a constant"
    eqn, i = _producer(jaxpr, var)
    if eqn is None:
        return "an input of the program"
    if eqn.primitive is sample_p:
        return _SiteRef(eqn, depth)
    name = eqn.primitive.name
    if name in _INLINE:
        inner, _ = _inner_jaxpr(eqn)
        return _find_site(inner, inner.outvars[i], depth)
    if name == "scan" and i >= eqn.params["num_carry"]:
        body = eqn.params["jaxpr"].jaxpr
        return _find_site(body, body.outvars[i], depth + 1)
    return f"a `{name}` operation" + (" (a branch taken at random)" if name == "cond" else "")


# ---------------------------------------------------------------------------------------
# Values and dependencies of the parameters, at the top level of the program.


class _Env:
    """Which variables depend on a latent (a dependency walk over the program), and the
    values of the variables in ``wanted`` (the program evaluated once, compiled)."""

    def __init__(self, closed, wanted: list):
        self.values: dict = {}
        self.tainted: dict = {}
        self._walk(closed.jaxpr, list(closed.consts), [None], [False], evaluate=False)
        if wanted:

            def run(key):
                env = _Env.__new__(_Env)
                env.values, env.tainted = {}, {}
                env._walk(closed.jaxpr, list(closed.consts), [key], [False], evaluate=True)
                return [env.values[v] for v in wanted]

            self.values = dict(zip(wanted, jax.jit(run)(jax.random.key(0)), strict=True))

    def _read(self, v):
        return v.val if isinstance(v, Literal) else self.values.get(v)

    def _taint(self, v) -> bool:
        return False if isinstance(v, Literal) else self.tainted.get(v, False)

    def _walk(self, jaxpr, consts, ins, taints, evaluate):
        for v, x in zip(jaxpr.constvars, consts, strict=True):
            self.values[v], self.tainted[v] = x, False
        for v, x, t in zip(jaxpr.invars, ins, taints, strict=True):
            self.values[v], self.tainted[v] = x, t
        for eqn in jaxpr.eqns:
            vals = [self._read(v) for v in eqn.invars]
            ts = [self._taint(v) for v in eqn.invars]
            if eqn.primitive.name in _INLINE:
                inner, inner_consts = _inner_jaxpr(eqn)
                outs, touts = self._walk(inner, inner_consts, vals, ts, evaluate)
            else:
                t = any(ts) or eqn.primitive is sample_p or _eqn_has_samples(eqn)
                touts = [t] * len(eqn.outvars)
                outs = [None] * len(eqn.outvars)
                if evaluate:
                    res = _bind_fn(eqn)(*vals)
                    outs = list(res) if eqn.primitive.multiple_results else [res]
            for o, x, t in zip(eqn.outvars, outs, touts, strict=True):
                self.values[o], self.tainted[o] = x, t
        return [self._read(v) for v in jaxpr.outvars], [self._taint(v) for v in jaxpr.outvars]


def _support_params(ref: _SiteRef, env: _Env, addr, who) -> tuple:
    """The flat parameters to build the support from: the actual values of those the
    bounds depend on, placeholders (zeros) for the others."""
    dep = ref.dependence()
    out = []
    for i, v in enumerate(ref.flat_vars):
        if isinstance(v, Literal):
            out.append(v.val)
            continue
        if i in dep:
            where = (
                f"{who}: the support of the latent {format_address(addr)} ({ref.site.family.name})"
            )
            if ref.depth > 0:
                raise ModelingError(
                    f"{where} depends on a parameter computed inside gv.scan; an automatic "
                    f"guide needs each support when it is built: {_BY_HAND}"
                )
            if env.tainted.get(v, False):
                raise ModelingError(
                    f"{where} depends on other latent choices, so no fixed bijection maps the "
                    f"real line onto it: {_BY_HAND}, e.g. a transformed normal whose bounds "
                    "are computed from the values the guide proposes for those choices"
                )
            out.append(env.values[v])
        else:
            out.append(jnp.zeros(v.aval.shape, v.aval.dtype))
    return tuple(out)


def _apply(site: SiteSpec, flat: tuple, fn, *xs):
    """``fn(support, *xs)`` with the support of ``site`` at parameters ``flat``, mapped
    over the rows of a site vectorized by ``gv.vmap``."""
    if isinstance(site, BatchedSite):
        n = len(xs)

        def row(*a):
            return _apply(site.inner, a[n:], fn, *a[:n])

        axes = (0,) * n + tuple(site.dims[1:])
        return jax.vmap(row, in_axes=axes, axis_size=site.size)(*xs, *flat)
    assert isinstance(site, BaseSite)
    return fn(site.dist(flat).support, *xs)


def _mapped(depth: int, fn):
    for _ in range(depth):
        fn = jax.vmap(fn)
    return fn


def _describe(support) -> str:
    c = support
    while isinstance(c, C.independent):
        c = c.base_constraint
    text = type(c).__name__.lstrip("_")
    lo, hi = getattr(c, "lower_bound", None), getattr(c, "upper_bound", None)
    if lo is None and hi is None:
        return text
    show = [np.asarray(b) for b in (lo, hi) if b is not None]
    if all(b.size == 1 for b in show):
        return f"{text}({', '.join(f'{float(b.reshape(())):g}' for b in show)})"
    return text


def _latent(addr, ref: _SiteRef, env: _Env, shape, dtype, origin, who) -> Latent:
    site, family = ref.site, ref.site.family
    flat = _support_params(ref, env, addr, who)
    dep = bool(ref.dependence())
    base_support = _apply_base(site, flat)
    support = (
        _describe_dep(base_support)
        if dep and isinstance(site, BatchedSite)
        else _describe(base_support)
    )
    common = Latent(
        addr=addr,
        shape=tuple(shape),
        dtype=dtype,
        family=family,
        discrete=family.discrete,
        origin=origin,
        support=support,
    )
    if family.discrete:
        return _discrete_latent(common, ref, site, flat, dep, who)
    try:
        if not dep:
            ushape, forward, inverse = _static_bijection(base_support, tuple(shape))
        else:
            ushape, forward, inverse = _mapped_bijection(site, flat, ref.depth, shape, dtype)
    except NotImplementedError:
        raise ModelingError(
            f"{who}: the latent {format_address(addr)} ({family.name}) has the support "
            f"{support}, which numpyro cannot map from the real line "
            f"(numpyro.distributions.transforms.biject_to has no bijection for it): {_BY_HAND}"
        ) from None
    return dataclasses.replace(common, ushape=ushape, forward=forward, inverse=inverse)


def _static_bijection(support, shape: tuple):
    """``biject_to(support)``, the same for every element of the value."""
    t = biject_to(support)

    def forward(u):
        z = t(u)
        return z, jnp.sum(t.log_abs_det_jacobian(u, z))

    return tuple(t.inverse_shape(shape)), forward, t.inv


def _mapped_bijection(site, flat: tuple, depth: int, shape, dtype):
    """``biject_to`` of each row's support, for supports whose bounds come from the
    parameters of a vmapped site (or of a site in ``depth`` gv.scan bodies)."""

    def fwd(c, u):
        t = biject_to(c)
        z = t(u)
        return z, jnp.sum(t.log_abs_det_jacobian(u, z))

    def inv(c, z):
        return biject_to(c).inv(z)

    def forward(u):
        z, ldj = _mapped(depth, lambda x: _apply(site, flat, fwd, x))(u)
        return z, jnp.sum(ldj)

    def inverse(z):
        return _mapped(depth, lambda x: _apply(site, flat, inv, x))(z)

    ushape = tuple(jax.eval_shape(inverse, jax.ShapeDtypeStruct(shape, dtype)).shape)
    return ushape, forward, inverse


def _apply_base(site: SiteSpec, flat: tuple):
    """The support of the innermost site (rows of a vmapped site share its kind)."""
    while isinstance(site, BatchedSite):
        flat = tuple(f if d is None else f[0] for f, d in zip(flat, site.dims[1:], strict=True))
        site = site.inner
    assert isinstance(site, BaseSite)
    return site.dist(flat).support


def _describe_dep(support) -> str:
    c = support
    while isinstance(c, C.independent):
        c = c.base_constraint
    return type(c).__name__.lstrip("_") + " (bounds from the parameters)"


_INFINITE = ((nd.Poisson, "poisson"), (nd.GeometricProbs, "geometric"), (nd.GeometricLogits, "geometric"))  # fmt: skip


def _discrete_latent(common: Latent, ref: _SiteRef, site, flat, dep: bool, who) -> Latent:
    family = common.family
    if family.enum_support is None:
        make = family.make
        for cls, kind in _INFINITE:
            if isinstance(make, type) and issubclass(make, cls):
                return dataclasses.replace(common, infinite=kind)
        raise ModelingError(
            f"{who}: the latent {format_address(common.addr)} ({family.name}) is discrete "
            "with a support that cannot be enumerated, and automatic guides only have factors "
            "for finite supports, poisson and geometric: "
            f"{_BY_HAND}"
        )
    try:
        values = jnp.asarray(site.support_values(flat))
    except GenviError as e:
        raise ModelingError(
            f"{who}: the latent {format_address(common.addr)} ({family.name}): {e}"
        ) from None
    feasible = None
    if dep:
        shape, dtype = common.shape, common.dtype

        def ok(v):
            x = jnp.full(shape, v, dtype)
            return _mapped(ref.depth, lambda y: _apply(site, flat, lambda c, yy: c(yy), y))(x)

        feasible = jnp.moveaxis(jax.vmap(ok)(values.astype(dtype)), 0, -1)
        feasible = jnp.broadcast_to(feasible, tuple(shape) + values.shape)
    return dataclasses.replace(common, values=values, feasible=feasible)


__all__ = ["Latent", "check_inputs", "find_latents"]
