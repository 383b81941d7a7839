"""``gv.sum_out``: a generative function with discrete choices summed out exactly.

genvi's ENUM strategy computes an *expectation* inside a gradient estimator; it does not
change a model's density. :func:`sum_out` does: ``gv.sum_out(gf, over)`` is ``gf`` with
the discrete choices at ``over`` marginalized exactly, ``p(z) = sum_u p(z, u)``. Its
density is exact, so ``assess`` needs no key, and it stands wherever a model stands (called
at an address inside a model, in any objective), with gradients in every parameter by
ordinary autodiff through the sums.

Two algorithms, chosen from the shape of ``gf``:

- **enumeration** (``gf`` any generative function, ``over`` naming scalar choices with a
  finite support: flip, bernoulli, categorical, binomial): the log-sum-exp of
  ``gf.assess`` over the joint support grid, evaluated vectorized. Cost: one vectorized
  evaluation of ``gf`` per grid point (the product of the supports, at most 2^16). An
  array of independent choices is summed out by putting the per-element program in
  ``gv.vmap`` around ``gv.sum_out``: ``gv.vmap(gv.sum_out(point, "k"))``, linear in the
  number of elements.
- **the forward algorithm** (``gf`` a ``gv.scan(step)`` and ``over`` one address of the
  step's discrete choice, where the step returns that choice as its carry: the hidden
  Markov form ``step(z_prev, x) -> (z, y)``): the per-step table of log factors
  ``log p(z_t = j, rest_t | z_{t-1} = i)`` is evaluated for all steps and pairs at once,
  and a log-space forward recursion sums the chain out in ``O(T K^2)``. The initial carry
  is any value the step accepts (a fixed state, or an extra "start" index whose
  transition row is the initial distribution).

``sum_out(...).posterior`` is the exact posterior of the summed-out choices given the
kept ones, as a generative function: sampling by the grid's normalized weights, or for a
chain by forward filtering, backward sampling (FFBS); its ``assess`` is the exact log
posterior density.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from genvi.combinators._scan import ScanGF
from genvi.core._choicemap import Address, ChoiceMap, choice_map, format_address
from genvi.core._errors import AddressError, ModelingError
from genvi.core._genfn import GenerativeFunction
from genvi.core._keys import check_key
from genvi.core._trace import Trace
from genvi.distributions._overrides import Recording
from genvi.inference._marginal import _addresses, partition

#: The largest support grid the enumeration accepts.
MAX_GRID = 1 << 16


def _supports(gf, over, args) -> dict[Address, jax.Array]:
    """The support of each choice at ``over``, found by tracing ``gf``'s ``simulate`` once
    under :func:`jax.eval_shape`: only shapes and static counts are read, and nothing of
    that run reaches the program around it (under ``gv.expectation`` a draw made here
    would be taken for a choice of the objective and add a gradient term)."""
    found: dict[Address, np.ndarray] = {}
    addresses: list = []
    problems: list[Exception] = []

    def run():
        rec = Recording(gf)
        rec.keep_sites = True
        tr = rec.simulate(jax.random.key(0), *args)
        addresses.extend(tr.choices.addresses())
        for addr, site, flat in rec.site_params:
            if addr not in over:
                continue
            try:
                found[addr] = _support_of(addr, site, flat, tr.choices[addr])
            except Exception as e:  # noqa: BLE001 - raised outside the trace below
                problems.append(e)
                return None
        return None

    jax.eval_shape(run)
    if problems:
        raise problems[0]
    missing = [a for a in over if a not in found]
    if missing:
        raise AddressError(
            f"sum_out({gf.name}): no choice at {', '.join(map(format_address, missing))}; "
            f"its choices are at {', '.join(map(format_address, addresses))}"
        )
    return {a: jnp.asarray(v) for a, v in found.items()}


def _support_of(addr, site, flat, value) -> np.ndarray:
    if site.family.enum_support is None:
        raise ModelingError(
            f"sum_out: the choice at {format_address(addr)} is a {site.family.name}, "
            "whose support is not finite; only discrete choices with a finite support "
            "(flip, bernoulli, categorical, binomial) can be summed out"
        )
    if jnp.shape(value) != ():
        raise ModelingError(
            f"sum_out: the choice at {format_address(addr)} is an array of shape "
            f"{jnp.shape(value)}; summing out its joint support would take "
            "|support|^n terms. For independent elements, put the per-element program "
            "in gv.vmap and sum_out inside it: gv.vmap(gv.sum_out(point, ...))"
        )
    with jax.ensure_compile_time_eval():
        support = site.support_values(flat)
    try:
        return np.asarray(support)
    except jax.errors.TracerArrayConversionError:
        raise ModelingError(
            f"sum_out: the support of the {site.family.name} at {format_address(addr)} "
            "depends on a traced value; its size must be known when the program is traced "
            "(a Python int or a concrete array)"
        ) from None


class SumOut(GenerativeFunction):
    """``gf`` with the discrete choices at ``over`` summed out exactly; see :func:`sum_out`."""

    has_estimated_density = False

    def __init__(self, gf: GenerativeFunction, over):
        if not isinstance(gf, GenerativeFunction):
            raise ModelingError(f"sum_out takes a generative function, got {type(gf).__name__}")
        self.gf = gf
        self.over = _addresses(over)
        self.name = f"sum_out({gf.name})"
        self.chain = isinstance(gf, ScanGF)
        if self.chain and len(self.over) != 1:
            raise ModelingError(
                f"{self.name}: a gv.scan chain is summed out over one address of its step "
                f"(the discrete state), got {len(self.over)}"
            )

    def __repr__(self) -> str:
        how = "forward algorithm" if self.chain else "enumeration"
        return f"<{self.name} over {', '.join(map(format_address, self.over))} ({how})>"

    # ----- checks -----------------------------------------------------------------------
    def _kept(self, choices, what) -> ChoiceMap:
        cm = choice_map(choices)
        bad = [a for a in cm.addresses() if any(a[: len(o)] == o for o in self.over)]
        if bad:
            raise AddressError(
                f"{what} of {self.name}: the choices given hold "
                f"{', '.join(map(format_address, bad))}, which {self.name} sums out; give "
                "only the kept choices"
            )
        return cm

    # ----- enumeration ------------------------------------------------------------------
    def _grid(self, args):
        supports = _supports(self.gf, self.over, args)
        sizes = [len(supports[a]) for a in self.over]
        total = int(np.prod(sizes))
        if total > MAX_GRID:
            raise ModelingError(
                f"{self.name}: the joint support of {', '.join(map(format_address, self.over))} "
                f"has {' x '.join(map(str, sizes))} = {total} points, more than {MAX_GRID}; "
                "sum out fewer choices at once (independent ones through gv.vmap)"
            )
        mesh = jnp.meshgrid(*(supports[a] for a in self.over), indexing="ij")
        return [m.reshape(-1) for m in mesh]

    def _grid_logps(self, kept: ChoiceMap, args):
        grid = self._grid(args)

        def one(*vals):
            cm = kept
            for a, v in zip(self.over, vals, strict=True):
                cm = cm.set(a, v)
            return self.gf.assess(cm, *args)

        logps, rets = jax.vmap(one)(*grid)
        return grid, logps, rets

    # ----- the forward algorithm ----------------------------------------------------------
    def _chain_tables(self, kept: ChoiceMap, args):
        scan: ScanGF = self.gf  # type: ignore[assignment]
        carry0, xs = args
        n = scan._length(xs)
        scan._check(kept, n)
        (addr,) = self.over
        supports = _supports(scan.gf, self.over, (carry0, _row(xs, 0)))
        values = jnp.asarray(supports[addr])
        origins = kept.origins()

        def factor(carry, v, obs_t, x_t):
            logp, (carry_out, _) = scan.gf.assess(
                obs_t.with_origins(origins).set(addr, v), carry, x_t
            )
            return logp, carry_out

        self._check_carry(factor, carry0, values, kept, xs)
        obs0 = jax.tree_util.tree_map(lambda a: a[0], kept)
        first, _ = jax.vmap(lambda v: factor(carry0, v, obs0, _row(xs, 0)))(values)  # [K]

        def table(obs_t, x_t):
            return jax.vmap(lambda i: jax.vmap(lambda j: factor(i, j, obs_t, x_t)[0])(values))(
                values.astype(jnp.result_type(values))
            )  # [K, K]: from state i to state j

        rest_obs = jax.tree_util.tree_map(lambda a: a[1:], kept)
        rest_xs = None if xs is None else jax.tree_util.tree_map(lambda a: a[1:], xs)
        if n > 1:
            tables = (
                jax.vmap(table)(rest_obs, rest_xs)
                if rest_xs is not None
                else jax.vmap(lambda o: table(o, None))(rest_obs)
            )
        else:
            tables = jnp.zeros((0, values.shape[0], values.shape[0]))
        return values, first, tables

    def _check_carry(self, factor, carry0, values, kept, xs):
        """The step must hand its summed-out choice on as the carry (the hidden Markov
        form), or the forward algorithm would not compute the chain's density. Checked
        on the traced step, at trace time: its carry output must be its choice's value."""
        obs0 = jax.tree_util.tree_map(lambda a: a[0], kept)
        jaxpr = jax.make_jaxpr(lambda v: factor(values[0], v, obs0, _row(xs, 0))[1])(values[0])
        if not _passes_through(jaxpr.jaxpr):
            raise ModelingError(
                f"{self.name}: the forward algorithm needs the step of the chain to return "
                f"its choice at {format_address(self.over[0])} as the carry "
                "(step(z_prev, x) -> (z, y)); this step returns something else, so the "
                "chain's state is not the summed-out choice. Put the discrete state in the "
                "carry, or sum out with enumeration over an unrolled model"
            )

    def _forward(self, first, tables):
        def step(alpha, table):
            alpha = logsumexp(alpha[:, None] + table, axis=0)
            return alpha, alpha

        last, alphas = jax.lax.scan(step, first, tables)
        return last, jnp.concatenate([first[None], alphas], axis=0)

    # ----- the generative function interface ------------------------------------------------
    def assess(self, choices, *args):
        """``(log p(kept), retval)``: exact, by enumeration or the forward algorithm.
        ``retval`` is ``gf``'s return value at the most probable value of the summed-out
        choices given the kept ones."""
        kept = self._kept(choices, "assess")
        if self.chain:
            values, first, tables = self._chain_tables(kept, args)
            last, alphas = self._forward(first, tables)
            path = self._map_path(values, alphas, tables)
            cm = kept.set(self.over[0], path)
            _, ret = self.gf.assess(cm, *args)
            return logsumexp(last), ret
        _, logps, rets = self._grid_logps(kept, args)
        best = jnp.argmax(logps)
        return logsumexp(logps), jax.tree_util.tree_map(lambda r: r[best], rets)

    def _map_path(self, values, alphas, tables):
        """The most probable final state and, backwards, the most probable predecessor of
        each given the next (a filtering-based path used only for the return value)."""
        z_last = jnp.argmax(alphas[-1])

        def back(j, inputs):
            alpha, table = inputs
            i = jnp.argmax(alpha + table[:, j])
            return i, i

        _, idx = jax.lax.scan(back, z_last, (alphas[:-1], tables), reverse=True)
        return values[jnp.concatenate([idx, z_last[None]])]

    def estimate_logpdf(self, key, choices, *args):
        return self.assess(choices, *args)

    def simulate(self, key, *args) -> Trace:
        """Sample ``(z, u) ~ p`` and keep ``z``; the score is the exact ``log p(z)``."""
        check_key(key, f"{self.name}.simulate", single=True)
        tr = self.gf.simulate(key, *args)
        kept, _ = partition(tr.choices, list(self.over))
        logp, _ = self.assess(kept, *args)
        return Trace(kept, logp, tr.retval, args)

    def importance(self, key, constraints, *args):
        """With every kept choice constrained: ``(trace, log p(kept))``, exact. With none:
        a simulation (weight 0)."""
        check_key(key, f"{self.name}.importance", single=True)
        cm = self._kept(constraints, "importance")
        if cm.is_empty():
            return self.simulate(key, *args), jnp.zeros(())
        tr = self.gf.simulate(key, *args)
        kept, _ = partition(tr.choices, list(self.over))
        missing = [a for a in kept.addresses() if not cm.has(a)]
        if missing:
            raise ModelingError(
                f"importance of {self.name}: constrain every kept choice (missing "
                f"{', '.join(map(format_address, missing))}) or none; a partial constraint "
                "would need a second sum over the summed-out choices per sample"
            )
        logp, ret = self.assess(cm, *args)
        return Trace(cm, logp, ret, args), logp

    @property
    def posterior(self) -> Posterior:
        """The exact posterior of the summed-out choices given the kept ones, as a
        generative function called as ``(kept_choices, *args)``."""
        return Posterior(self)


class Posterior(GenerativeFunction):
    """``p(u | kept)`` for a :class:`SumOut`: ``simulate`` draws ``u`` exactly (FFBS for a
    chain), ``assess`` gives ``log p(u | kept) = log p(kept, u) - log p(kept)``."""

    has_estimated_density = False

    def __init__(self, parent: SumOut):
        self.parent = parent
        self.name = f"posterior({parent.name})"

    def simulate(self, key, kept_choices, *args) -> Trace:
        check_key(key, f"{self.name}.simulate", single=True)
        p = self.parent
        kept = p._kept(kept_choices, "posterior")
        if p.chain:
            values, first, tables = p._chain_tables(kept, args)
            last, alphas = p._forward(first, tables)
            k_last, k_back = jax.random.split(key)
            z_last = jax.random.categorical(k_last, last)
            keys = jax.random.split(k_back, tables.shape[0])

            def back(j, inputs):
                k, alpha, table = inputs
                i = jax.random.categorical(k, alpha + table[:, j])
                return i, i

            _, idx = jax.lax.scan(back, z_last, (keys, alphas[:-1], tables), reverse=True)
            path = values[jnp.concatenate([idx, z_last[None]])]
            u = ChoiceMap().set(p.over[0], path)
        else:
            grid, logps, _ = p._grid_logps(kept, args)
            i = jax.random.categorical(key, logps)
            u = ChoiceMap()
            for a, g in zip(p.over, grid, strict=True):
                u = u.set(a, g[i])
        score, ret = self.assess(u, kept, *args)
        return Trace(u, score, ret, (kept_choices, *args))

    def assess(self, choices, kept_choices, *args):
        p = self.parent
        kept = p._kept(kept_choices, "posterior")
        u = choice_map(choices)
        joint, ret = p.gf.assess(kept.merge(u), *args)
        marginal, _ = p.assess(kept, *args)
        return joint - marginal, ret

    def estimate_logpdf(self, key, choices, kept_choices, *args):
        return self.assess(choices, kept_choices, *args)

    def importance(self, key, constraints, kept_choices, *args):
        cm = choice_map(constraints)
        if cm.is_empty():
            return self.simulate(key, kept_choices, *args), jnp.zeros(())
        w, ret = self.assess(cm, kept_choices, *args)
        return Trace(cm, w, ret, (kept_choices, *args)), w


def _row(xs, t):
    return None if xs is None else jax.tree_util.tree_map(lambda a: a[t], xs)


_IDENTITY = {"convert_element_type", "copy", "copy_p"}
_CALLS = {"pjit", "jit", "closed_call", "core_call"}


def _passes_through(jaxpr, inp=None) -> bool:
    """Whether the (first) output of ``jaxpr`` is its input ``inp`` (default: its first),
    up to copies, dtype conversions and nested calls that pass it through."""
    out = jaxpr.outvars[0]
    inp = jaxpr.invars[0] if inp is None else inp
    producers = {v: e for e in jaxpr.eqns for v in e.outvars}
    while out is not inp:
        eqn = producers.get(out)
        if eqn is None:
            return False
        if eqn.primitive.name in _IDENTITY and len(eqn.invars) == 1:
            out = eqn.invars[0]
        elif eqn.primitive.name in _CALLS and len(eqn.outvars) == 1:
            inner = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
            inner = getattr(inner, "jaxpr", inner)
            idx = [k for k, v in enumerate(inner.invars) if _passes_through(inner, v)]
            if not idx:
                return False
            out = eqn.invars[idx[0]]
        else:
            return False
    return True


def sum_out(gf: GenerativeFunction, over) -> SumOut:
    """``gf`` with the discrete choices at ``over`` summed out exactly (see the module
    docstring for the two algorithms, their costs and the posterior).

    Args:
        gf: a generative function; a ``gv.scan`` chain for the forward algorithm.
        over: an address or a list of addresses of scalar choices with a finite support
            (for a chain: the one address of the step's discrete state).

    Returns:
        A :class:`SumOut`, a generative function over the kept choices with an exact
        density; ``.posterior`` samples and scores the summed-out choices given them.

    Examples:
        >>> @gv.gen
        ... def mixture(means):
        ...     k = gv.categorical(jnp.log(jnp.array([0.3, 0.7]))) @ "k"
        ...     gv.normal(means[k], 1.0) @ "x"
        >>> marginal = gv.sum_out(mixture, "k")
        >>> logp, _ = marginal.assess({"x": 0.5}, jnp.array([-1.0, 2.0]))
        >>> hand = jnp.log(0.3 * jax.scipy.stats.norm.pdf(0.5, -1.0)
        ...                + 0.7 * jax.scipy.stats.norm.pdf(0.5, 2.0))
        >>> bool(jnp.allclose(logp, hand))
        True
    """
    return SumOut(gf, over)


__all__ = ["sum_out", "SumOut", "Posterior"]
