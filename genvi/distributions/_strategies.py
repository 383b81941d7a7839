"""Gradient strategies: how a random choice contributes to a gradient estimator.

A strategy is a small immutable value attached to a distribution (``gv.normal.reinforce``
is sugar for the normal family with :class:`Reinforce`). Outside an expectation every
strategy samples the same way. Inside :func:`genvi.expectation`, the ADEV transformation
(Lew et al., POPL 2023) calls the strategy's :meth:`Strategy.jvp_estimate` with the rest
of the program as a *continuation* ``kont``: a function from a dual number (value,
tangent) of the choice to a dual number (estimate, tangent estimate) of the objective.
Each rule returns an unbiased forward-mode estimate of ``(E[f], d E[f])``; reverse mode
comes from transposing it with JAX.

Notation: ``f`` is the continuation, ``p_theta`` the distribution, ``dtheta`` the
tangent of its parameters, ``(v, dv) = kont(z, dz)``.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import Literal

from genvi.core._errors import StrategyError
from genvi.distributions._family import BatchedSite, Family, SiteSpec

Kont = Callable[[Any, Any], tuple[Any, Any]]


class SiteCall(NamedTuple):
    """Everything a rule knows about one sample site being differentiated."""

    key: Any
    site: SiteSpec
    flat: tuple
    dflat: tuple  # tangents of the parameters; None where zero
    operands: tuple  # the strategy's own dynamic operands (a baseline)
    addr: tuple  # the address, for error messages

    @property
    def has_tangent(self) -> bool:
        return any(t is not None for t in self.dflat)

    def where(self) -> str:
        from genvi.core._choicemap import format_address

        return f"address {format_address(self.addr)}" if self.addr else "an anonymous sample"


class ScoreAccumulator:
    """Score terms of REINFORCE choices whose continuation cannot be captured (inside
    ``lax.scan``, ``lax.cond`` and ``gv.scan``): ``S = sum dlogp`` and ``B = sum b dlogp``,
    applied as ``dv += v * S - B`` once the final value ``v`` is known."""

    def __init__(self):
        self.s = None
        self.b = None

    def add(self, dlogp_batch, baseline):
        s = jnp.sum(dlogp_batch)
        self.s = s if self.s is None else self.s + s
        if baseline is not None:
            b = jnp.sum(jnp.broadcast_to(baseline, jnp.shape(dlogp_batch)) * dlogp_batch)
            self.b = b if self.b is None else self.b + b


def _jvp(fn, primals, tangents):
    """``jax.jvp`` with ``None`` for zero tangents; returns ``(out, None)`` if all are zero."""
    if all(t is None for t in tangents):
        return fn(*primals), None
    tangents = tuple(
        jnp.zeros_like(p) if t is None else t for p, t in zip(primals, tangents, strict=True)
    )
    return jax.jvp(fn, tuple(primals), tangents)


def _zeros_if_none(dv, v):
    return jnp.zeros_like(v) if dv is None else dv


def float_tangents(flat, dflat):
    """Split parameters into inexact ones (which carry tangents) and the rest."""
    idx = [i for i, a in enumerate(flat) if jnp.issubdtype(jnp.result_type(a), jnp.inexact)]
    return idx


def split_key(key, num: int = 2) -> list:
    """``num`` independent keys shaped like ``key``: a typed key or raw ``uint32`` key data,
    of any batch shape (a site vectorized by ``jax.vmap`` carries one key per row)."""
    typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    keys = key if typed else jax.random.wrap_key_data(key)
    out = jax.vmap(lambda k: jax.random.split(k, num))(keys.reshape(-1))  # [N, num]
    out = [out[:, i].reshape(keys.shape) for i in range(num)]
    return out if typed else [jax.random.key_data(k) for k in out]


def _param_names(site: SiteSpec, n_flat: int) -> list[str]:
    """The name of the parameter each flattened parameter belongs to."""
    base = site.base
    per_arg = jax.tree_util.tree_unflatten(base.in_tree, list(range(n_flat)))
    names = [""] * n_flat
    for j, arg in enumerate(per_arg):
        name = base.family.params[j] if j < len(base.family.params) else f"argument {j}"
        for i in jax.tree_util.tree_leaves(arg):
            names[i] = name
    return names


@functools.lru_cache(maxsize=1024)
def _support_dependence(base, structs: tuple) -> frozenset:
    """Indices of the flattened parameters on which the support's bounds depend (found
    by a dependency walk over the staged bounds; conservative through sub-programs)."""

    def bounds(*fl):
        sup = base.dist(fl).support
        while hasattr(sup, "base_constraint"):  # independent(...) of an interval, say
            sup = sup.base_constraint
        names = ("lower_bound", "upper_bound")
        return [jnp.asarray(getattr(sup, a)) for a in names if hasattr(sup, a)]

    try:
        closed = jax.make_jaxpr(bounds)(*(jax.ShapeDtypeStruct(s, d) for s, d in structs))
    except Exception:  # noqa: BLE001 - a wrapped family that cannot be staged abstractly
        return frozenset()
    jaxpr = closed.jaxpr
    dep: dict = {v: frozenset([i]) for i, v in enumerate(jaxpr.invars)}
    for eqn in jaxpr.eqns:
        d = frozenset().union(
            *(dep.get(v, frozenset()) for v in eqn.invars if not isinstance(v, Literal))
        )
        for o in eqn.outvars:
            dep[o] = d
    return frozenset().union(
        *(dep.get(v, frozenset()) for v in jaxpr.outvars if not isinstance(v, Literal))
    )


def _check_fixed_support(call: SiteCall, idx: list) -> None:
    """The score-function identity ``dE[f] = E[f dlog p]`` needs a support that does not
    move with the parameters (it misses the boundary term otherwise): refuse a tangent on
    a parameter that the support depends on (``uniform``'s ``low`` and ``high``)."""
    site, shapes = call.site, [(jnp.shape(a), jnp.result_type(a)) for a in call.flat]
    while isinstance(site, BatchedSite):
        shapes = [
            s if d is None else (s[0][1:], s[1]) for s, d in zip(shapes, site.dims[1:], strict=True)
        ]
        site = site.inner
    moving = [i for i in idx if call.dflat[i] is not None]
    dep = _support_dependence(site, tuple(shapes))
    bad = sorted({_param_names(call.site, len(call.flat))[i] for i in moving if i in dep})
    if bad:
        fam = call.site.family
        raise StrategyError(
            f"REINFORCE at {call.where()} ({fam.name}): the support of {fam.name} depends on "
            f"{', '.join(bad)}, so the score-function estimator of a gradient in "
            f"{'it' if len(bad) == 1 else 'them'} would be biased (it misses the boundary "
            "term). "
            + (
                f"Use {fam.name}.reparam"
                if fam.reparam
                else "Do not differentiate through these parameters"
            )
            + f", or pass {', '.join(bad)} through jax.lax.stop_gradient"
        )


def _score_jvp(call: SiteCall, z, fn_name: str):
    """Tangent of ``site.<fn_name>(z, params)`` in the parameters (None if none flows)."""
    idx = float_tangents(call.flat, call.dflat)
    if not any(call.dflat[i] is not None for i in idx):
        return None
    _check_fixed_support(call, idx)
    fn = getattr(call.site, fn_name)

    def f(*fl):
        full = list(call.flat)
        for i, a in zip(idx, fl, strict=True):
            full[i] = a
        return fn(z, tuple(full))

    _, t = _jvp(f, [call.flat[i] for i in idx], [call.dflat[i] for i in idx])
    return t


def _eval_elementwise(z, cands, kont, with_primal: bool = False) -> Any:
    """Evaluate the continuation at ``z`` with each element ``i`` replaced by ``cands[i, m]``.

    Returns ``(v, dv)`` of shape ``[n, M]``; with ``with_primal``, ``((v, dv) at z, (v, dv)
    [n, M])``, all from one vectorized evaluation (so that the continuation is traced once
    per choice: a chain of such choices stays linear in size, not exponential).
    Randomness downstream is shared across the evaluations (common random numbers), which
    keeps every weighted sum unbiased."""
    n, m = cands.shape
    flat = jnp.reshape(z, (-1,))
    eye = jnp.eye(n, dtype=bool)
    batch = jnp.where(eye[:, None, :], cands[:, :, None], flat[None, None, :])
    batch = batch.reshape((n * m,) + jnp.shape(z))
    if with_primal:
        batch = jnp.concatenate([jnp.asarray(z, batch.dtype)[None], batch])

    def one(zz):
        v, dv = kont(zz, None)
        return v, _zeros_if_none(dv, v)

    v, dv = jax.vmap(one)(batch)
    if with_primal:
        return (v[0], dv[0]), (v[1:].reshape((n, m)), dv[1:].reshape((n, m)))
    return v.reshape((n, m)), dv.reshape((n, m))


def _support_logp(call: SiteCall, values, shape, dtype):
    """Every element's log probability of every support value: ``(grid [V, *shape],
    logp [n, V], dlogp [n, V] or None)``, with the tangent of ``logp`` in the parameters."""
    site, n, nv = call.site, int(np.prod(shape, dtype=int)), values.shape[0]
    grid = jnp.broadcast_to(values.astype(dtype)[:, None], (nv, n)).reshape((nv,) + shape)

    def logp_fl(*fsub):
        full = list(call.flat)
        for i, a in zip(idx, fsub, strict=True):
            full[i] = a
        return jax.vmap(lambda g: site.logpdf_elements(g, tuple(full)))(grid).reshape(-1, n).T

    idx = float_tangents(call.flat, call.dflat)
    logp, dlogp = _jvp(logp_fl, [call.flat[i] for i in idx], [call.dflat[i] for i in idx])
    return grid, logp, dlogp


@dataclass(frozen=True)
class Strategy:
    """Base class of gradient strategies. Subclasses are final."""

    name = "STRATEGY"
    # whether the choice's value is a float even for a discrete family (straight-through)
    float_value = False
    # whether the rule needs the continuation (ENUM, MVD), or can run in a loop body
    needs_continuation = False

    def check(self, family: Family) -> None:
        """Raise :class:`StrategyError` if this strategy cannot apply to ``family``."""

    def n_operands(self) -> int:
        return 0

    def jvp_estimate(self, call: SiteCall, kont: Kont):
        raise NotImplementedError

    def local_estimate(self, call: SiteCall, acc: ScoreAccumulator):
        """Sample ``(z, dz)`` without a continuation, recording score terms in ``acc``."""
        fam = call.site.family
        alt = f"{fam.name}.reinforce" + (f" or {fam.name}.reparam" if fam.reparam else "")
        raise StrategyError(
            f"{self.name} at {call.where()} ({fam.name}) is inside a compiled loop "
            "(jax.lax.scan, or gv.scan which uses it): a loop body cannot hand its choices "
            f"the rest of the program as a continuation, which {self.name} evaluates several "
            f"times. Use {alt} inside the loop, or move the choice out of it (a whole array "
            "of choices at one address, or gv.vmap, is enumerated element-wise)"
        )

    def __repr__(self) -> str:
        return self.name


@dataclass(frozen=True, repr=False)
class Reparam(Strategy):
    """REPARAM: the pathwise estimator. ``z = g(theta, eps)`` with ``eps`` independent of
    theta, so ``d E[f(z)] = E[f'(z) dz]``: the rule returns ``kont(z, dz)`` with
    ``(z, dz) = jvp(sample)``. Gamma, beta and dirichlet use *implicit*
    reparameterization (Figurnov et al., 2018): ``dz = -(dF/dtheta) / p(z)`` with ``F``
    the CDF, which ``jax.random.gamma`` implements."""

    name = "REPARAM"

    def check(self, family):
        if not family.reparam:
            kind = "discrete" if family.discrete else "not reparameterizable"
            raise StrategyError(
                f"REPARAM cannot apply to {family.name}: it is {kind}; "
                f"use {family.name}.reinforce"
                + (", .enum" if family.enum_support is not None else "")
                + (", .mvd" if family.mvd else "")
                + " instead"
            )

    def _sample(self, call):
        idx = float_tangents(call.flat, call.dflat)

        def f(*fl):
            full = list(call.flat)
            for i, a in zip(idx, fl, strict=True):
                full[i] = a
            return call.site.sample(call.key, tuple(full))

        z, dz = _jvp(f, [call.flat[i] for i in idx], [call.dflat[i] for i in idx])
        return z, dz

    def jvp_estimate(self, call, kont):
        return kont(*self._sample(call))

    def local_estimate(self, call, acc):
        return self._sample(call)


@dataclass(frozen=True, repr=False)
class Reinforce(Strategy):
    """REINFORCE, the score-function estimator (Williams, 1992):
    ``d E[f(z)] = E[df(z) + f(z) dlog p_theta(z)]``, since ``E[dlog p] = 0``. The rule:
    ``(v, dv) = kont(z, None)``, return ``(v, dv + v * dlog p(z))``. Applies to every
    distribution, for parameters that do not move its support: the identity misses a
    boundary term otherwise, so a gradient into ``uniform``'s bounds is refused (use
    REPARAM there). Wrap with :class:`Baselined` (``dist.reinforce.with_baseline(b)``) to
    subtract a control variate."""

    name = "REINFORCE"

    def jvp_estimate(self, call, kont):
        z = call.site.sample(call.key, call.flat)
        v, dv = kont(z, None)
        dlogp = _score_jvp(call, z, "logpdf_batch")
        if dlogp is None:
            return v, dv
        b = _baseline(call, dlogp)
        if b is None:
            term = v * jnp.sum(dlogp)
        else:
            term = jnp.sum((v - b) * dlogp)
        return v, _zeros_if_none(dv, v) + term

    def local_estimate(self, call, acc):
        z = call.site.sample(call.key, call.flat)
        dlogp = _score_jvp(call, z, "logpdf_batch")
        if dlogp is not None:
            acc.add(dlogp, _baseline(call, dlogp))
        return z, None


def _baseline(call: SiteCall, dlogp):
    """The baseline operand (gradient stopped), one per row of a vectorized site, or None."""
    if not call.operands:
        return None
    b = jax.lax.stop_gradient(jnp.asarray(call.operands[0]))
    try:
        return jnp.broadcast_to(b, jnp.shape(dlogp))
    except ValueError:
        raise StrategyError(
            f"the baseline at {call.where()} ({call.site.family.name}) has shape "
            f"{jnp.shape(b)}, but its log densities have shape {jnp.shape(dlogp)} (one per "
            "row of a vectorized choice): give one scalar baseline per choice; for "
            "particles under jax.vmap or gv.vmap, map the baseline along with the choice "
            "(pass it as a vmapped argument) instead of closing over an array"
        ) from None


@dataclass(frozen=True, repr=False)
class Baselined(Reinforce):
    """REINFORCE with a control variate ``b``, independent of the choice:
    ``d E[f(z)] = E[df(z) + (f(z) - b) dlog p_theta(z)]`` (unbiased since
    ``E[b dlog p] = b E[dlog p] = 0``). ``b`` is a dynamic operand: a constant, or a
    learned parameter passed in as an argument (its gradient is not part of this
    estimator; train it on a variance loss). For a choice vectorized over particles
    (``gv.vmap``/``jax.vmap``), ``b`` may hold one baseline per particle."""

    name = "REINFORCE+baseline"

    def n_operands(self) -> int:
        return 1


@dataclass(frozen=True, repr=False)
class Enum(Strategy):
    """ENUM: exact enumeration of a finite support.

    For a scalar choice: ``E[f] = sum_v p(v) f(v)`` and
    ``dE = sum_v p(v) (dlog p(v) f(v) + df(v))``, computed exactly by evaluating the
    continuation at every value (vectorized). For an array of ``n`` independent elements
    the joint support is exponential, so elements are enumerated one at a time, the
    others kept at a sampled ``z``: with ``z^{i,v}`` = z with element ``i`` set to ``v``,

        value   = (1/n) sum_{i,v} p_i(v) f(z^{i,v})
        tangent = sum_{i,v} p_i(v) dlog p_i(v) f(z^{i,v}) + (1/n) sum_{i,v} p_i(v) df(z^{i,v})

    Both are unbiased (the first term of the tangent is, for each ``i``, the exact
    derivative of ``p_i`` given the other elements); the cost is ``n * |support|``
    evaluations, linear in ``n``. With ``n = 1`` this is exact, with zero variance."""

    name = "ENUM"
    needs_continuation = True

    def check(self, family):
        if family.enum_support is None:
            raise StrategyError(
                f"ENUM cannot apply to {family.name}: its support is not finite; "
                f"use {family.name}.reinforce"
                + (" or .mvd" if family.mvd else "")
                + (" or .reparam" if family.reparam else "")
            )

    def jvp_estimate(self, call, kont):
        site = call.site
        z = site.sample(call.key, call.flat)
        try:
            values = site.support_values(call.flat)  # [V]
        except StrategyError as e:
            raise StrategyError(f"at {call.where()}: {e}") from None
        shape, n = jnp.shape(z), int(jnp.size(z))
        if n == 0:  # an empty array of choices: nothing to enumerate, no gradient
            return kont(z, None)
        grid, logp, dlogp = _support_logp(call, values, shape, z.dtype)
        p = jnp.exp(logp)  # [n, V]
        # Values outside an element's support (binomial counts above its total) have p = 0
        # and contribute nothing. The continuation is not run at them: it runs at the
        # element's sampled value instead (possible), and the result is masked. Running it
        # at an impossible value would score -inf downstream, and the zero weight cannot
        # stop the NaN that 0 * inf makes in the reverse pass.
        cands = jnp.reshape(grid, (values.shape[0], n)).T
        cands = jnp.where(p > 0, cands, jnp.reshape(z, (n, 1)).astype(cands.dtype))
        v, dv = _eval_elementwise(z, cands, kont)
        v = jnp.where(p > 0, v, 0.0)
        value = jnp.sum(p * v) / n
        tangent = jnp.sum(jnp.where(p > 0, p * dv, 0.0)) / n
        if dlogp is not None:
            tangent = tangent + jnp.sum(p * dlogp * v)
        return value, tangent


@dataclass(frozen=True, repr=False)
class MeasureValued(Strategy):
    """MVD: measure-valued derivatives (see :mod:`genvi.distributions._mvd` for each
    family's decomposition). Value ``f(z)``; tangent
    ``sum_{i,m} w[i,m] f(z with element i := c[i,m]) + df(z)``, unbiased for
    ``d E[f]``. Needs no derivative of ``f`` in the choice, so it applies to discrete
    choices, at the cost of a few extra evaluations of the continuation per element."""

    name = "MVD"
    needs_continuation = True

    def check(self, family):
        if family.mvd is None:
            raise StrategyError(
                f"MVD is not available for {family.name}: genvi has measure-valued "
                "derivatives for normal, flip, bernoulli, categorical, poisson and "
                f"geometric; use {family.name}.reinforce"
                + (" or .reparam" if family.reparam else "")
            )

    def jvp_estimate(self, call, kont):
        site = call.site
        k1, k2 = split_key(call.key)
        z = site.sample(k1, call.flat)
        if not call.has_tangent:
            return kont(z, None)
        dflat = tuple(
            jnp.zeros(jnp.shape(a), jnp.result_type(float)) if t is None else t
            for a, t in zip(call.flat, call.dflat, strict=True)
        )
        cands, weights = site.mvd_candidates(k2, z, call.flat, dflat)
        (v, dv), (vs, _) = _eval_elementwise(z, cands, kont, with_primal=True)
        return v, dv + jnp.sum(weights * vs)


@dataclass(frozen=True, repr=False)
class LeaveOneOut(Strategy):
    """RLOO: REINFORCE with a leave-one-out baseline over the choice's own ``samples = K``
    draws (Kool, van Hoof and Welling, "Buy 4 REINFORCE samples, get a baseline for free!",
    ICLR 2019 workshop; Mnih and Rezende, 2016, for the multi-sample baseline).

    The choice is drawn ``K`` times independently, ``z_1..z_K ~ p_theta``, and the rest of
    the program is run at each (one vectorized evaluation; its own later randomness is
    shared). With ``f_k`` the value at ``z_k``:

        value   = (1/K) sum_k f_k
        tangent = (1/K) sum_k [df_k + (f_k - b_k) dlog p_theta(z_k)],
        b_k     = (1/(K-1)) sum_{j != k} f_j

    Unbiased: ``b_k`` depends only on draws independent of ``z_k``, so
    ``E[b_k dlog p(z_k)] = E[b_k] E[dlog p(z_k)] = 0``. It costs ``K`` runs of the rest of
    the program, so (as ENUM and MVD) it needs the continuation and cannot run inside a
    compiled loop. Applies wherever REINFORCE does. ``gv.RLOO`` is ``K = 4``;
    ``dist.rloo`` selects it, ``dist.with_strategy(gv.LeaveOneOut(K))`` another ``K``."""

    samples: int = 4
    name = "RLOO"
    needs_continuation = True

    def __post_init__(self):
        k = self.samples
        if isinstance(k, bool) or not isinstance(k, int) or k < 2:
            raise StrategyError(
                f"LeaveOneOut needs samples >= 2 (an int: each draw's baseline is the mean "
                f"of the others), got {k!r}"
            )

    def __repr__(self) -> str:
        return f"RLOO({self.samples})"

    def jvp_estimate(self, call, kont):
        site = call.site
        k = self.samples
        zs = jnp.stack([site.sample(kk, call.flat) for kk in split_key(call.key, k)])

        def one(zz):
            v, dv = kont(zz, None)
            return v, _zeros_if_none(dv, v)

        v, dv = jax.vmap(one)(zs)  # [K]
        value, tangent = jnp.mean(v), jnp.mean(dv)
        scores = [_score_jvp(call, zs[i], "logpdf_batch") for i in range(k)]
        present = [d for d in scores if d is not None]
        if len(present) < k:  # no tangent flows into the parameters
            return value, tangent
        dlogp = jnp.stack([jnp.sum(d) for d in present])  # [K]
        loo = (jnp.sum(v) - v) / (k - 1)
        return value, tangent + jnp.mean((v - jax.lax.stop_gradient(loo)) * dlogp)


#: The largest set :class:`UnorderedSet` takes: its weights sum over the ``k!`` orders.
MAX_SET_SIZE = 6


def _log_set_prob(lq, log_rest):
    """``log p(T)`` for unordered sets ``T`` drawn without replacement from what is left of
    the distribution once some values are removed: ``lq [n, m]`` are the log probabilities
    (under the full distribution) of the ``m`` members of ``T``, ``log_rest [n]`` the log
    mass of the values that are neither in ``T`` nor removed. Summed over the ``m!`` orders
    ``s_1..s_m`` of ``T``: ``p(T) = sum prod_i q(s_i) / (rest + sum_{j >= i} q(s_j))``, the
    denominator being the mass still available at draw ``i``, computed as a sum of
    positive terms (no cancellation when ``T`` holds nearly all of the mass)."""
    n, m = lq.shape
    if m == 0:
        return jnp.zeros((n,), lq.dtype)
    perms = np.array(list(itertools.permutations(range(m))), dtype=np.int32)
    lp = lq[:, perms]  # [n, m!, m]
    suffix = jax.lax.cumlogsumexp(lp, axis=2, reverse=True)
    denom = jnp.logaddexp(log_rest[:, None, None], suffix)
    return jax.scipy.special.logsumexp(jnp.sum(lp - denom, axis=2), axis=1)


@dataclass(frozen=True, repr=False)
class UnorderedSet(Strategy):
    """The unordered set estimator (Kool, van Hoof and Welling, "Estimating gradients for
    discrete random variables by sampling without replacement", ICLR 2020), with its
    built-in baseline, for choices of finite support (flip, bernoulli, categorical,
    binomial).

    Per element, ``k = size`` distinct values ``S`` are drawn *without replacement*
    (Gumbel-top-k) and the rest of the program is run at each (one vectorized
    evaluation, its own later randomness shared). With ``p`` the element's probabilities,
    ``p(S)`` the probability of drawing the set ``S`` in any order, and ``p^{D\\s}`` the
    distribution with value ``s`` removed and renormalized:

        R(S, s)        = p^{D\\s}(S \\ {s}) / p(S)
        value          = sum_{s in S} p(s) R(S, s) f(s)
        tangent        = sum_{s in S} [p(s) R(S, s) df(s) + dp(s) R(S, s) (f(s) - b(S, s))]
        b(S, s)        = p(s) f(s) + sum_{s' in S, s' != s} p(s') R^{D\\s}(S \\ {s}, s') f(s')
        R^{D\\s}(T, s') = p^{D\\{s,s'}}(T \\ {s'}) / p^{D\\s}(T)

    ``value`` is unbiased for ``E[f]``; ``b(S, s)`` is the same estimator of ``E[f]`` made
    from the other ``k - 1`` values (which, given ``s`` in ``S``, are a sample without
    replacement from ``D \\ {s}``), so ``E[sum_s dp(s) R(S, s) b(S, s)] =
    E[f] sum_s dp(s) = 0`` and the tangent is unbiased. With ``k`` equal to the support's
    size it is exact (ENUM).
    Unlike ``k`` independent draws (RLOO), no value is evaluated twice, which is what makes
    it strong on peaked distributions. With ``k = 1`` there is no other value to make
    the baseline from, and the rule is plain REINFORCE. An array of independent elements is handled as
    ENUM handles it: element by element, the others kept at their first draws.

    Values of zero probability are never drawn while others remain; when ``k`` exceeds
    the number of values of positive probability, every such value is in ``S`` and the
    rule enumerates them exactly. ``k`` is at most :data:`MAX_SET_SIZE` (the weights sum
    over the ``k!`` orders of the set) and at most the support's size. It needs the
    continuation (``k`` runs of the rest of the program), so it cannot run inside a
    compiled loop. Select it with ``dist.with_strategy(gv.UnorderedSet(k))``."""

    size: int = 2
    name = "UNORDERED_SET"
    needs_continuation = True

    def __post_init__(self):
        k = self.size
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_SET_SIZE:
            raise StrategyError(
                f"UnorderedSet needs a set size 1 <= size <= {MAX_SET_SIZE} (an int; its "
                f"weights sum over the size! orders of the set), got {k!r}"
            )

    def __repr__(self) -> str:
        return f"UNORDERED_SET({self.size})"

    def check(self, family):
        if family.enum_support is None:
            raise StrategyError(
                f"UnorderedSet cannot apply to {family.name}: sampling without replacement "
                "needs a finite support; use "
                f"{family.name}.reinforce or {family.name}.rloo"
                + (" or .reparam" if family.reparam else "")
            )

    def jvp_estimate(self, call, kont):
        site, k = call.site, self.size
        try:
            values = site.support_values(call.flat)  # [V]
        except StrategyError as e:
            raise StrategyError(f"at {call.where()}: {e}") from None
        nv = int(values.shape[0])
        if k > nv:
            raise StrategyError(
                f"UnorderedSet({k}) at {call.where()} ({site.family.name}): the support has "
                f"only {nv} values, so a set of {k} distinct ones cannot be drawn; use "
                f"UnorderedSet({nv}) (exact, as ENUM) or a smaller size"
            )
        out = jax.eval_shape(lambda: site.sample(call.key, call.flat))
        shape, n = out.shape, int(np.prod(out.shape, dtype=int))
        if n == 0:
            return kont(site.sample(call.key, call.flat), None)
        _, logp, dlogp = _support_logp(call, values, shape, out.dtype)  # [n, V]
        lpv = jax.lax.stop_gradient(logp)
        gumbel = _gumbel_rows(call.key, n, nv, lpv.dtype)
        _, pick = jax.lax.top_k(lpv + gumbel, k)  # [n, k]: Gumbel-top-k, in draw order
        lq = jnp.take_along_axis(lpv, pick, axis=1)
        zero = lq == -jnp.inf  # drawn only once every value of positive mass is in S
        exhausted = jnp.any(zero, axis=1, keepdims=True)
        cands = values.astype(out.dtype)[pick]  # [n, k]
        z = cands[:, 0].reshape(shape)  # a draw from p, independent of the other sets
        cands = jnp.where(zero, cands[:, :1], cands)  # never run the program at p = 0

        q = jnp.exp(lq)
        lqs = jnp.where(zero, 0.0, lq)  # finite stand-ins; those weights are replaced
        in_set = jnp.zeros((n, nv), bool).at[jnp.arange(n)[:, None], pick].set(True)
        log_rest = jax.scipy.special.logsumexp(jnp.where(in_set, -jnp.inf, lpv), axis=1)
        log_rest = jnp.where(exhausted[:, 0], -jnp.inf, log_rest)
        others = [[j for j in range(k) if j != a] for a in range(k)]
        ls = _log_set_prob(lqs, log_rest)  # [n]
        l1 = jnp.stack([_log_set_prob(lqs[:, o], log_rest) for o in others], 1)  # [n, k]
        r = jnp.exp(l1 - ls[:, None])  # R(S, s)
        r2 = jnp.ones((n, k, k), lq.dtype)  # R^{D\s}(S\{s}, s'), 1 on the diagonal
        for a in range(k):
            for b in others[a]:
                rest2 = [j for j in others[a] if j != b]
                l2 = _log_set_prob(lqs[:, rest2], log_rest)
                r2 = r2.at[:, a, b].set(jnp.exp(l2 - l1[:, a]))
        w = jnp.where(exhausted, q, q * r)  # the weights of the value estimate
        bw = jnp.where(exhausted[:, :, None], q[:, None, :], q[:, None, :] * r2)  # [n, s, s']

        v, dv = _eval_elementwise(z, cands, kont)  # [n, k]
        w, bw = jax.lax.stop_gradient(w), jax.lax.stop_gradient(bw)
        v0 = jnp.where(zero, 0.0, v)
        value = jnp.sum(w * v0) / n
        tangent = jnp.sum(jnp.where(zero, 0.0, w * dv)) / n
        if dlogp is not None:
            dq = q * jnp.take_along_axis(dlogp, pick, axis=1)
            # with k = 1 no other value is left to estimate E[f] from: plain REINFORCE
            base = jnp.einsum("nst,nt->ns", bw, v0) if k > 1 else jnp.zeros_like(v0)
            ratio = jnp.where(exhausted, 1.0, r)
            tangent = tangent + jnp.sum(jnp.where(zero, 0.0, dq * ratio * (v0 - base)))
        return value, tangent


def _gumbel_rows(key, n: int, nv: int, dtype):
    """Gumbel noise ``[n, nv]`` for the ``n`` elements of a site, from its key: one key,
    or one per row of a site vectorized by ``jax.vmap`` (the rows lead the elements)."""
    typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    keys = (key if typed else jax.random.wrap_key_data(key)).reshape(-1)
    per = n // keys.shape[0]
    noise = jax.vmap(lambda kk: jax.random.gumbel(kk, (per, nv), dtype))(keys)
    return noise.reshape(n, nv)


@dataclass(frozen=True, repr=False)
class GumbelSoftmaxBiased(Strategy):
    """Gumbel-softmax straight-through, **biased on purpose** (Jang, Gu and Poole, 2017;
    Maddison, Mnih and Teh, 2017; Bengio et al., 2013, for straight-through): for
    comparison with the unbiased estimators, never a default.

    For a binary choice (flip, bernoulli) with logit ``l``: ``L`` logistic noise,
    ``z = 1[l + L > 0]`` (an exact draw), ``s = sigmoid((l + L) / temperature)`` its
    relaxation. The rule returns ``kont(z, ds)``: the rest of the program runs at the
    discrete value, and its derivative in ``z`` (where the program uses ``z`` in
    arithmetic, as ``W @ z``) is taken as if ``z`` were ``s``. The estimate of the
    *value* is exact; the tangent is biased (the bias vanishes only as the temperature
    goes to 0, where the variance grows without bound). A discrete density at ``z`` (the
    choice's own ``log q(z)``, the model's ``log p(z)``) has no derivative in the value,
    so only arithmetic uses of ``z`` carry the straight-through term.

    The choice's value is a float (``0.0`` or ``1.0``) instead of an integer so that a
    tangent can flow; use it in arithmetic, not as an index. Select it with
    ``dist.with_strategy(gv.GumbelSoftmaxBiased(temperature))``; it runs inside compiled
    loops (it needs no continuation)."""

    temperature: float = 1.0
    name = "GUMBEL_SOFTMAX_BIASED"
    #: the value is a float 0.0/1.0 so that a straight-through tangent can flow
    float_value = True

    def __post_init__(self):
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not t > 0:
            raise StrategyError(
                f"GumbelSoftmaxBiased needs a temperature > 0 (a Python number), got {t!r}"
            )

    def __repr__(self) -> str:
        return f"GUMBEL_SOFTMAX_BIASED({self.temperature:g})"

    def check(self, family):
        if family.name not in ("flip", "bernoulli"):
            raise StrategyError(
                f"GumbelSoftmaxBiased applies to binary choices (flip, bernoulli), not to "
                f"{family.name}: its straight-through tangent needs a value used in "
                "arithmetic, and a categorical's value is an index; for "
                f"{family.name} use .reinforce, .rloo, gv.UnorderedSet(k), .mvd or .enum"
            )

    def _draw(self, call):
        site = call.site
        out = jax.eval_shape(lambda: site.sample(call.key, call.flat))
        shape, n = out.shape, int(np.prod(out.shape, dtype=int))
        values = jnp.array([0, 1], out.dtype)
        _, logp, dlogp = _support_logp(call, values, shape, out.dtype)  # [n, 2]
        logit = logp[:, 1] - logp[:, 0]
        noise = _logistic_rows(call.key, n, logit.dtype)
        ftype = jnp.result_type(float)
        z = (logit + noise > 0).astype(ftype).reshape(shape)
        if dlogp is None:
            return z, None
        soft = jax.nn.sigmoid((logit + noise) / self.temperature)
        dlogit = dlogp[:, 1] - dlogp[:, 0]
        dz = (soft * (1 - soft) / self.temperature * dlogit).astype(ftype).reshape(shape)
        return z, dz

    def jvp_estimate(self, call, kont):
        return kont(*self._draw(call))

    def local_estimate(self, call, acc):
        return self._draw(call)


def _logistic_given_binary(logit, v, b):
    """``z~ = logit + L`` drawn given ``b = 1[z > 0]``, from uniforms ``v``: the CDF
    ``sigmoid(z - logit)`` inverted on the part of ``(0, 1)`` that gives ``b``, in log
    space (``w = 1 - p + v p`` for ``b = 1``, ``w = v (1 - p)`` for ``b = 0``)."""
    lp1, lp0 = -jax.nn.softplus(-logit), -jax.nn.softplus(logit)  # log p(1), log p(0)
    log_v, log_1v = jnp.log(v), jnp.log1p(-v)
    log_w = jnp.where(b, jnp.logaddexp(lp0, log_v + lp1), log_v + lp0)
    log_1w = jnp.where(b, lp1 + log_1v, jnp.logaddexp(lp1, log_1v + lp0))
    return logit + log_w - log_1w


@dataclass(frozen=True, repr=False)
class Rebar(Strategy):
    """REBAR (Tucker, Mnih, Maddison, Lawson and Sohl-Dickstein, 2017): REINFORCE with a
    control variate made of the program itself at a continuous relaxation of the choice,
    unbiased and low-variance, for binary choices (flip, bernoulli).

    With logit ``l``, logistic noise ``L`` and ``z = l + L``, the choice is
    ``b = 1[z > 0]`` (an exact draw). ``z~`` is a second draw of ``z`` *given* ``b``
    (``z~ = l + logit(w)``, ``w`` uniform on the part of ``(0, 1)`` that gives ``b``, with
    fresh noise ``v``), and ``s(x) = sigmoid(x / temperature)`` relaxes a logit to a value
    in ``(0, 1)``. With ``f`` the rest of the program (its estimate of the objective), the
    gradient estimate is

        [f(b) - eta f(s(z~))] d log p(b) + d f(b) + eta d f(s(z)) - eta d f(s(z~))

    where ``d`` is the total derivative in the parameters, through ``z = z(l, L)`` and
    ``z~ = z~(l, v, b)`` (reparameterized). ``E[d f(s(z))]`` (the pathwise gradient of
    the relaxed objective) equals the expectation of the score term at ``z~`` plus
    ``E[d f(s(z~))]`` (the same expectation, conditioned on ``b``), so the two relaxed
    terms cancel in expectation: unbiased for any ``eta`` and ``temperature``, which only
    change the variance (``eta = 0`` is REINFORCE). The estimate of the *value* is
    ``f(b)``.

    The rest of the program runs three times: at ``b`` (as written) and, vectorized, at
    the two relaxed values. There a binary density (the choice's own ``log q``, the
    model's ``log p`` of it) takes its continuous extension
    ``x log p + (1 - x) log(1 - p)``: genvi stages the support check of flip and
    bernoulli so that the interpreter can lift it for these two evaluations alone. The
    program must therefore use the choice in arithmetic (``W @ b``, ``b * x``), not as an
    index or in a comparison, and so the value is a float (``0.0`` or ``1.0``), as for
    :class:`GumbelSoftmaxBiased`. A binary density inside a loop body evaluated by
    ``lax.scan`` is relaxed too; one inside a construct genvi cannot enter scores
    ``-inf`` at a relaxed value (a loud estimate). Choices whose continuation holds
    further REBAR choices trace it ``2^depth`` times.

    Select it with ``dist.with_strategy(gv.Rebar(eta, temperature))``. ``eta`` and
    ``temperature`` are fixed numbers here (REBAR's authors also tune them by the
    gradient of the estimator's variance, which this strategy does not). It needs the
    continuation, so it does not run inside a compiled loop. Categorical choices are not
    supported: their value is an index, which has no relaxation that the rest of a
    program could take (use ``gv.UnorderedSet(k)``, ``.rloo`` or ``.enum``)."""

    eta: float = 1.0
    temperature: float = 0.5
    name = "REBAR"
    float_value = True
    needs_continuation = True

    def __post_init__(self):
        for what, x, positive in (
            ("eta", self.eta, False),
            ("temperature", self.temperature, True),
        ):
            ok = not isinstance(x, bool) and isinstance(x, (int, float)) and np.isfinite(x)
            if not ok or (positive and not x > 0):
                need = "> 0" if positive else "finite"
                raise StrategyError(f"Rebar needs {what} {need} (a Python number), got {x!r}")

    def __repr__(self) -> str:
        return f"REBAR(eta={self.eta:g}, temperature={self.temperature:g})"

    def check(self, family):
        if family.name not in ("flip", "bernoulli"):
            raise StrategyError(
                f"Rebar applies to binary choices (flip, bernoulli), not to {family.name}: "
                "its control variate runs the rest of the program at a relaxed value in "
                f"(0, 1), and a {family.name}'s value has no such relaxation; for "
                f"{family.name} use .reinforce, .rloo, gv.UnorderedSet(k), .mvd or .enum"
            )

    def jvp_estimate(self, call, kont):
        from genvi.distributions._support import relaxed_binary

        site = call.site
        out = jax.eval_shape(lambda: site.sample(call.key, call.flat))
        shape, n = out.shape, int(np.prod(out.shape, dtype=int))
        ftype = jnp.result_type(float)
        values = jnp.array([0, 1], out.dtype)
        _, logp, dlogp = _support_logp(call, values, shape, out.dtype)  # [n, 2]
        logit = logp[:, 1] - logp[:, 0]
        k_u, k_v = split_key(call.key)
        noise = _logistic_rows(k_u, n, logit.dtype)
        b = logit + noise > 0
        hard = b.astype(ftype).reshape(shape)
        if dlogp is None or n == 0:  # no gradient into this choice: its value alone
            return kont(hard, None)
        v = _uniform_rows(k_v, n, logit.dtype)
        dlogit = dlogp[:, 1] - dlogp[:, 0]
        lam, eta = self.temperature, self.eta

        zt, dzt = jax.jvp(lambda lg: _logistic_given_binary(lg, v, b), (logit,), (dlogit,))
        z = logit + noise

        def relax(x, dx):
            sx = jax.nn.sigmoid(x / lam)
            return sx.astype(ftype).reshape(shape), (sx * (1 - sx) / lam * dx).astype(
                ftype
            ).reshape(shape)

        s, ds = relax(z, dlogit)
        st, dst = relax(zt, dzt)
        fb, dfb = kont(hard, None)
        with relaxed_binary():

            def one(x, dx):
                fv, dfv = kont(x, dx)
                return fv, _zeros_if_none(dfv, fv)

            fr, dfr = jax.vmap(one)(jnp.stack([s, st]), jnp.stack([ds, dst]))
        dlogp_b = jnp.where(b, dlogp[:, 1], dlogp[:, 0])
        score = jnp.sum(dlogp_b)
        tangent = _zeros_if_none(dfb, fb) + (fb - eta * fr[1]) * score + eta * (dfr[0] - dfr[1])
        return fb, tangent


@dataclass(frozen=True, repr=False)
class Relax(Strategy):
    """RELAX (Grathwohl, Choi, Wu, Roeder and Duvenaud, 2018): REINFORCE with a learned,
    differentiable control variate ``c`` of the choice's continuous relaxation, for
    binary and categorical choices (flip, bernoulli, categorical).

    The choice is an exact draw through noise: for a categorical with log probabilities
    ``l`` (last axis K), Gumbel noise ``G``, ``z = l + G`` and ``b = argmax z``; for a
    binary one with logit ``l``, logistic noise ``L``, ``z = l + L`` and ``b = 1[z > 0]``.
    ``z~`` is a second draw of ``z`` *given* ``b`` (truncated Gumbel, resp. logistic,
    noise, by inverting the CDF with fresh uniforms). With ``f`` the rest of the program,

        d f(b) + [f(b) - c(z~)] d log p(b) + d c(z) - d c(z~)

    the derivatives total through ``z = z(l, G)`` and ``z~ = z~(l, v, b)``. Since ``z``
    and ``z~`` have the same law, and ``E[d c(z~) | b]`` is the derivative of
    ``E[c(z~) | b]`` with ``b`` held, the last three terms have expectation zero: unbiased
    for every ``c``. ``c = 0`` is REINFORCE; a good ``c`` approximates ``f`` as a function
    of the relaxation.

    ``surrogate(params, z) -> scalar`` is the control variate for the whole site (``z``
    shaped as the value, with a last axis of K for a categorical; one row per element of
    a vectorized choice), ``params`` a dynamic operand: one array (for a network, its
    parameters flattened with ``jax.flatten_util.ravel_pytree``). The objective's gradient
    does not reach ``params``; train them to reduce the estimator's variance, e.g. on the
    sum of squares of the gradient estimate in the other parameters (its mean is the
    squared gradient, which ``params`` cannot change): ``jax.grad`` of it in ``params``
    differentiates through the estimator. Select it with
    ``dist.with_strategy(gv.Relax(surrogate), (params,))``. The rest of the program runs
    once, at ``b``, so it also runs inside compiled loops (``gv.scan``), and the value is
    the family's own (an integer)."""

    surrogate: Callable
    name = "RELAX"

    def __repr__(self) -> str:
        return f"RELAX({getattr(self.surrogate, '__name__', 'surrogate')})"

    def n_operands(self) -> int:
        return 1

    def check(self, family):
        if family.name not in ("flip", "bernoulli", "categorical"):
            raise StrategyError(
                f"Relax applies to binary and categorical choices (flip, bernoulli, "
                f"categorical), not to {family.name}: its relaxation is the Gumbel-max (or "
                "logistic) noise of such a draw"
            )

    def _terms(self, call):
        """``(b, dlogp(b) [n], baseline c(z~), extra tangent dc(z) - dc(z~))``; the tangent
        parts are None when no tangent reaches the choice's parameters."""
        site = call.site
        out = jax.eval_shape(lambda: site.sample(call.key, call.flat))
        shape, n = out.shape, int(np.prod(out.shape, dtype=int))
        categorical = site.family.name == "categorical"
        if categorical:
            values = jnp.asarray(site.support_values(call.flat))
        else:
            values = jnp.array([0, 1], out.dtype)
        nv = int(values.shape[0])
        _, logp, dlogp = _support_logp(call, values, shape, out.dtype)  # [n, V]
        k_u, k_v = split_key(call.key)
        params = call.operands[0]
        if categorical:
            noise = _gumbel_rows(k_u, n, nv, logp.dtype)
            loc, dloc = logp, dlogp
            z = loc + noise
            pick = jnp.argmax(z, axis=1)
            b = values.astype(out.dtype)[pick].reshape(shape)
            zshape = shape + (nv,)
        else:
            loc = logp[:, 1] - logp[:, 0]
            dloc = None if dlogp is None else dlogp[:, 1] - dlogp[:, 0]
            z = loc + _logistic_rows(k_u, n, loc.dtype)
            pick = (z > 0).astype(jnp.int32)
            b = pick.astype(out.dtype).reshape(shape)
            zshape = shape
        if dlogp is None or n == 0:
            return b, None, None, None
        v = (
            _uniform_rows(k_v, n * nv, loc.dtype).reshape(n, nv)
            if categorical
            else _uniform_rows(k_v, n, loc.dtype)
        )

        def conditional(lg):
            if categorical:
                log_v = -jnp.log(-jnp.log(v))  # standard Gumbel draws, by inversion
                top = jax.scipy.special.logsumexp(lg, axis=1, keepdims=True)
                m = top + jnp.take_along_axis(log_v, pick[:, None], axis=1)  # the max
                # the others: Gumbel(l_k) truncated below m, by inverting its CDF
                rest = lg - jnp.log(-jnp.log(v) + jnp.exp(lg - m))
                onehot = jax.nn.one_hot(pick, nv, dtype=bool)
                return jnp.where(onehot, m, rest)
            return _logistic_given_binary(lg, v, pick.astype(bool))

        zt, dzt = jax.jvp(conditional, (loc,), (dloc,))

        def c(x):
            out_c = jnp.asarray(self.surrogate(params, x.reshape(zshape)))
            if out_c.shape != ():
                raise StrategyError(
                    f"the RELAX surrogate at {call.where()} returned shape {out_c.shape}; "
                    "it must return one scalar for the whole site (sum over its elements)"
                )
            return out_c

        _, dc = jax.jvp(c, (z,), (dloc,))  # z = loc + noise: dz = dloc
        ct, dct = jax.jvp(c, (zt,), (dzt,))
        if categorical:
            dlogp_b = jnp.take_along_axis(dlogp, pick[:, None], axis=1)[:, 0]
        else:
            dlogp_b = jnp.where(pick.astype(bool), dlogp[:, 1], dlogp[:, 0])
        return b, dlogp_b, ct, dc - dct

    def jvp_estimate(self, call, kont):
        b, dlogp_b, ct, extra = self._terms(call)
        v, dv = kont(b, None)
        if dlogp_b is None:
            return v, dv
        return v, _zeros_if_none(dv, v) + (v - ct) * jnp.sum(dlogp_b) + extra

    def local_estimate(self, call, acc):
        b, dlogp_b, ct, extra = self._terms(call)
        if dlogp_b is not None:
            assert ct is not None and extra is not None
            # dv += v * S - B, with S += dlogp and B += c(z~) dlogp - (dc(z) - dc(z~))
            acc.add(dlogp_b, jnp.broadcast_to(ct, jnp.shape(dlogp_b)))
            assert acc.b is not None
            acc.b = acc.b - extra
        return b, None


def _uniform_rows(key, n: int, dtype):
    """Uniform noise on ``(0, 1)`` ``[n]`` for the ``n`` elements of a site (see
    :func:`_gumbel_rows`); never exactly 0, whose logarithm the callers take."""
    typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    keys = (key if typed else jax.random.wrap_key_data(key)).reshape(-1)
    per = n // keys.shape[0]
    tiny = jnp.finfo(dtype).tiny
    draw = jax.vmap(lambda kk: jax.random.uniform(kk, (per,), dtype, minval=tiny))(keys)
    return draw.reshape(n)


def _logistic_rows(key, n: int, dtype):
    """Logistic noise ``[n]`` for the ``n`` elements of a site (see :func:`_gumbel_rows`)."""
    typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    keys = (key if typed else jax.random.wrap_key_data(key)).reshape(-1)
    per = n // keys.shape[0]
    return jax.vmap(lambda kk: jax.random.logistic(kk, (per,), dtype))(keys).reshape(n)


REPARAM = Reparam()
"""The pathwise strategy (:class:`Reparam`); ``dist.reparam`` selects it."""

REINFORCE = Reinforce()
"""The score-function strategy (:class:`Reinforce`); ``dist.reinforce`` selects it."""

ENUM = Enum()
"""Exact enumeration of a finite support (:class:`Enum`); ``dist.enum`` selects it."""

MVD = MeasureValued()
"""Measure-valued derivatives (:class:`MeasureValued`); ``dist.mvd`` selects it."""

RLOO = LeaveOneOut(4)
"""REINFORCE with a leave-one-out baseline over 4 draws of the choice
(:class:`LeaveOneOut`); ``dist.rloo`` selects it."""
