"""``gv.switch`` and ``gv.cond``: stochastic branching between generative functions."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from genvi.core._choicemap import ChoiceMap, choice_map, format_address
from genvi.core._errors import AddressError, ChoiceTypeError, ModelingError
from genvi.core._genfn import GenerativeFunction
from genvi.core._trace import Trace


def _is_batched(x) -> bool:
    """Whether ``x`` is batched by a ``jax.vmap`` being traced."""
    from jax._src.interpreters import batching

    return isinstance(x, batching.BatchTracer) and x.batch_dim is not batching.not_mapped


def _concrete_index(index):
    try:
        return int(index)
    except (TypeError, jax.errors.ConcretizationTypeError, jax.errors.TracerIntegerConversionError):
        return None


def _restrict(cm: ChoiceMap, addrs) -> ChoiceMap:
    out = ChoiceMap()
    for a in addrs:
        if cm.has(a):
            out = out.set(a, cm[a])
    return out


class SwitchGF(GenerativeFunction):
    """Run branch ``index`` of ``gfs`` (all called with the same arguments).

    Only the taken branch's choices count in the score. With a concrete index the trace
    holds only that branch's choices; with a traced index (under ``jit``/``vmap``, or an
    index that is itself random) every branch's addresses are present so the trace has a
    static structure, and the untaken branches' values are zeros that do not count.
    Branches must return values of the same structure, as with ``jax.lax.switch``.
    """

    def __init__(self, *gfs: GenerativeFunction):
        if not gfs:
            raise ValueError("switch needs at least one generative function")
        self.gfs = gfs
        self.name = "switch(" + ", ".join(g.name for g in gfs) + ")"

    # The choice structure (shapes) of each branch, found by tracing its simulate.
    def _shapes(self, args):
        key = jax.random.key(0)
        return [jax.eval_shape(lambda k, g=g: g.simulate(k, *args).choices, key) for g in self.gfs]

    def _union(self, shapes):
        union: dict = {}
        for b, cm in enumerate(shapes):
            for a in cm.addresses():
                s = cm[a] if a else cm.value
                if a in union and (union[a].shape, union[a].dtype) != (s.shape, s.dtype):
                    raise ChoiceTypeError(
                        f"{self.name}: branches disagree at address {format_address(a)}: "
                        f"{union[a].dtype}{list(union[a].shape)} vs {s.dtype}{list(s.shape)} "
                        f"(branch {b}); use different addresses or the same shape"
                    )
                union[a] = s
        return union

    def _pad(self, cm: ChoiceMap, union) -> ChoiceMap:
        out = cm
        for a, s in union.items():
            if not out.has(a):
                out = out.set(a, jnp.zeros(s.shape, s.dtype))
        return out

    def _branches(self, method, args, union):
        def make(g):
            def run(*operands):
                tr, extra = method(g, *operands)
                return self._pad(tr.choices, union), tr.score, tr.retval, extra

            return run

        return [make(g) for g in self.gfs]

    def _select(self, index, method, operands, args, union):
        """Every branch, then ``select_n`` on the index: what ``jax.lax.switch`` becomes
        under ``jax.vmap`` with a batched index, without its broadcasting of every operand
        to the batch (JAX's rule batches all of them, so a network's weights passed to a
        branch would be copied once per batch element)."""
        outs = [run(*operands) for run in self._branches(method, args, union)]
        flat = [jax.tree_util.tree_flatten(o) for o in outs]
        treedef = flat[0][1]
        for _, t in flat[1:]:
            if t != treedef:
                raise TypeError(f"branch outputs differ in structure: {treedef} vs {t}")
        idx = jnp.clip(index, 0, len(outs) - 1)
        if len(outs) == 2:
            idx = idx.astype(bool)
        leaves = []
        for parts in zip(*(f[0] for f in flat), strict=True):
            parts = [jnp.asarray(p) for p in parts]
            shape = jnp.broadcast_shapes(*(p.shape for p in parts))
            dtype = jnp.result_type(*parts)
            parts = [jnp.broadcast_to(p.astype(dtype), shape) for p in parts]
            leaves.append(jax.lax.select_n(jnp.broadcast_to(idx, shape), *parts))
        return jax.tree_util.tree_unflatten(treedef, leaves)

    #: whether the index is a predicate (``gv.cond``): any nonzero value takes branch 1
    boolean = False

    def _dispatch(self, index, method, operands, args):
        if index is None or isinstance(index, (str, bytes)):
            raise ChoiceTypeError(
                f"{self.name}: the branch index must be an integer (a number or an integer "
                f"array, traced or not), got {type(index).__name__} {index!r}"
            )
        if self.boolean:
            i = _concrete_index(index)
            index = int(i != 0) if i is not None else (jnp.asarray(index) != 0).astype(jnp.int32)
        i = _concrete_index(index)
        if i is not None:
            if not 0 <= i < len(self.gfs):
                raise ModelingError(
                    f"{self.name}: branch index {i} is out of range; there are "
                    f"{len(self.gfs)} branches (indices 0 to {len(self.gfs) - 1}). A traced "
                    "index, known only when the program runs, is clamped into that range as "
                    "jax.lax.switch does"
                )
            return method(self.gfs[i], *operands)
        union = self._union(self._shapes(args))
        index = jnp.asarray(index, jnp.int32)
        try:
            if _is_batched(index):
                choices, score, retval, extra = self._select(index, method, operands, args, union)
            else:
                choices, score, retval, extra = jax.lax.switch(
                    index, self._branches(method, args, union), *operands
                )
        except TypeError as e:
            raise ChoiceTypeError(
                f"{self.name}: branches must return values of the same structure and shape ({e})"
            ) from None
        return Trace(choices, score, retval, args), extra

    def simulate(self, key, index, *args) -> Trace:
        tr, _ = self._dispatch(
            index, lambda g, k: (g.simulate(k, *args), jnp.zeros(())), (key,), args
        )
        return Trace(tr.choices, tr.score, tr.retval, (index, *args))

    def _check_addresses(self, cm: ChoiceMap, args, index_known, what):
        shapes = self._shapes(args)
        known = set()
        for s in shapes:
            known.update(s.addresses())
        unknown = [a for a in cm.addresses() if a not in known]
        if unknown:
            raise AddressError(
                f"{what} of {self.name}: no branch has address(es) "
                f"{', '.join(format_address(a) for a in unknown)}; the branches' addresses are "
                f"{sorted(format_address(a) for a in known)}"
            )
        return shapes

    def _assess_with(self, choices, index, args, density, what):
        cm = choice_map(choices)
        shapes = self._check_addresses(cm, args, None, what)
        i = _concrete_index(index)
        if i is None:
            for b, s in enumerate(shapes):
                missing = [a for a in s.addresses() if not cm.has(a)]
                if missing:
                    raise AddressError(
                        f"{what} of {self.name} with a traced index: branch {b} needs "
                        f"{', '.join(format_address(a) for a in missing)}; with a traced index "
                        "give the choices of every branch (untaken ones are ignored)"
                    )

        def method(g, c):
            sub = _restrict(c, shapes[self.gfs.index(g)].addresses())
            logp, ret = density(g, sub)
            return Trace(sub, logp, ret, args), jnp.zeros(())

        tr, _ = self._dispatch(index, method, (cm,), args)
        return tr.score, tr.retval

    def assess(self, choices, index, *args):
        return self._assess_with(
            choices, index, args, lambda g, sub: g.assess(sub, *args), "assess"
        )

    @property
    def has_estimated_density(self):  # type: ignore[override]
        return any(g.has_estimated_density for g in self.gfs)

    def estimate_logpdf(self, key, choices, index, *args):
        """Like :meth:`assess`, handing ``key`` to the branch taken, so a branch may hold
        a :func:`genvi.marginal` (its density then an unbiased estimate)."""
        return self._assess_with(
            choices,
            index,
            args,
            lambda g, sub: g.estimate_logpdf(key, sub, *args),
            "estimate_logpdf",
        )

    def importance(self, key, constraints, index, *args):
        cm = choice_map(constraints)
        shapes = self._check_addresses(cm, args, None, "importance")

        def method(g, k, c):
            sub = _restrict(c, shapes[self.gfs.index(g)].addresses())
            return g.importance(k, sub, *args)

        tr, w = self._dispatch(index, method, (key, cm), args)
        return Trace(tr.choices, tr.score, tr.retval, (index, *args)), w


def switch(*gfs: GenerativeFunction) -> SwitchGF:
    """A generative function called as ``(index, *args)`` that runs ``gfs[index](*args)``.

    Examples:
        >>> @gv.gen
        ... def a(mu):
        ...     return gv.normal(mu, 1.0) @ "x"
        >>> @gv.gen
        ... def b(mu):
        ...     return gv.laplace(mu, 1.0) @ "x"
        >>> sw = gv.switch(a, b)
        >>> logp, x = sw.assess({"x": 0.0}, 1, 0.0)     # branch 1: the laplace density at 0
        >>> round(float(logp), 4)
        -0.6931
    """
    return SwitchGF(*gfs)


def cond(gf_true: GenerativeFunction, gf_false: GenerativeFunction) -> SwitchGF:
    """A generative function called as ``(pred, *args)``: ``gf_true`` if ``pred`` else
    ``gf_false``. ``pred`` may be a traced boolean or 0/1 value (a random choice, say).

    Examples:
        >>> @gv.gen
        ... def small():
        ...     return gv.normal(0.0, 1.0) @ "x"
        >>> @gv.gen
        ... def large():
        ...     return gv.normal(0.0, 10.0) @ "x"
        >>> @gv.gen
        ... def model():
        ...     b = gv.flip(0.3) @ "b"
        ...     return gv.cond(large, small)(b) @ "branch"
        >>> tr = model.simulate(jax.random.key(0))
        >>> tr.choices["branch", "x"].shape
        ()
    """
    sw = SwitchGF(gf_false, gf_true)
    sw.boolean = True
    sw.name = f"cond({gf_true.name}, {gf_false.name})"
    return sw
