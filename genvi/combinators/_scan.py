"""``gv.scan``: a Markov chain / state-space model, compiled once with ``lax.scan``."""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp

from genvi.combinators._steps import run_steps
from genvi.core._choicemap import choice_map, format_address
from genvi.core._derive import row_keys
from genvi.core._errors import ChoiceTypeError, ModelingError
from genvi.core._genfn import GenerativeFunction
from genvi.core._keys import check_key
from genvi.core._trace import Trace


class ScanGF(GenerativeFunction):
    """Iterate ``gf(carry, x) -> (carry, y)`` over ``xs`` (or ``length`` steps), like
    ``jax.lax.scan``. Called as ``(carry0, xs)``; returns ``(carry_final, ys)``. Each
    address of ``gf`` gains a leading time axis of size ``length``; the score is the sum
    over steps. The body is traced once: the staged program does not grow with ``length``.

    The work of a step that does not depend on the carry (its keys, draws from per-step
    parameters, densities of given choices) runs for all steps at once, before the loop;
    when no part of the next carry depends on the previous one (``assess`` of a chain
    whose choices are all given, a mean-field guide), no sequential pass is left at all.
    See :func:`genvi.combinators._steps.run_steps`.
    """

    def __init__(self, gf: GenerativeFunction, length: int | None = None):
        if not isinstance(gf, GenerativeFunction):
            raise ModelingError(
                f"gv.scan takes a generative function (a @gv.gen function), got "
                f"{type(gf).__name__} {gf!r}"
            )
        if length is not None and (
            isinstance(length, bool) or not isinstance(length, numbers.Integral) or length < 0
        ):
            raise ModelingError(
                f"gv.scan({gf.name}): length must be a non-negative int (the number of "
                f"steps), got {length!r}"
            )
        self.gf = gf
        self.length = length
        self.name = f"scan({gf.name})"

    def _length(self, xs):
        leaves = jax.tree_util.tree_leaves(xs)
        if leaves:
            n = jnp.shape(leaves[0])[0]
            if self.length is not None and self.length != n:
                raise ChoiceTypeError(f"{self.name}: length={self.length} but xs has {n} rows")
            return n
        if self.length is None:
            raise ModelingError(f"{self.name}: give length= when xs is None")
        return self.length

    @staticmethod
    def _split_ret(ret, name):
        if not (isinstance(ret, tuple) and len(ret) == 2):
            raise ModelingError(
                f"the body of {name} must return a pair (carry, y), got {type(ret).__name__}"
            )
        return ret

    def simulate(self, key, carry, xs=None) -> Trace:
        check_key(key, f"{self.name}.simulate", single=True)
        n = self._length(xs)
        keys = row_keys(key, n)

        seen: dict = {}

        def body(c, kx):
            k, x = kx
            tr = self.gf.simulate(k, c, x)
            seen.update(tr.choices.origins())
            c2, y = self._split_ret(tr.retval, self.name)
            return c2, (tr.choices, tr.score, y)

        c, (choices, scores, ys) = run_steps(body, carry, (keys, xs), n)
        return Trace(choices.with_origins(seen), jnp.sum(scores), (c, ys), (carry, xs))

    def _check(self, cm, n):
        for addr in cm.addresses():
            v = cm[addr] if addr else cm.value
            if jnp.ndim(v) < 1 or jnp.shape(v)[0] != n:
                raise ChoiceTypeError(
                    f"{self.name}: the value at address {format_address(addr)} has shape "
                    f"{jnp.shape(v)}; it needs a leading time axis of size {n}"
                )

    def assess(self, choices, carry, xs=None):
        n = self._length(xs)
        cm = choice_map(choices)
        self._check(cm, n)
        origins = cm.origins()

        def body(c, chx):
            ch, x = chx
            logp, ret = self.gf.assess(ch.with_origins(origins), c, x)
            c2, y = self._split_ret(ret, self.name)
            return c2, (logp, y)

        c, (logps, ys) = run_steps(body, carry, (cm, xs), n)
        return jnp.sum(logps), (c, ys)

    @property
    def has_estimated_density(self):
        return self.gf.has_estimated_density

    def estimate_logpdf(self, key, choices, carry, xs=None):
        if not self.gf.has_estimated_density:
            return self.assess(choices, carry, xs)
        n = self._length(xs)
        cm = choice_map(choices)
        self._check(cm, n)
        origins = cm.origins()

        def body(c, kchx):
            k, ch, x = kchx
            logp, ret = self.gf.estimate_logpdf(k, ch.with_origins(origins), c, x)
            c2, y = self._split_ret(ret, self.name)
            return c2, (logp, y)

        keys = row_keys(key, n)
        c, (logps, ys) = run_steps(body, carry, (keys, cm, xs), n)
        return jnp.sum(logps), (c, ys)

    def importance(self, key, constraints, carry, xs=None):
        check_key(key, f"{self.name}.importance", single=True)
        n = self._length(xs)
        cm = choice_map(constraints)
        self._check(cm, n)
        keys = row_keys(key, n)
        origins = cm.origins()
        seen: dict = {}

        def body(c, kchx):
            k, ch, x = kchx
            tr, w = self.gf.importance(k, ch.with_origins(origins), c, x)
            seen.update(tr.choices.origins())
            c2, y = self._split_ret(tr.retval, self.name)
            return c2, (tr.choices, tr.score, w, y)

        c, (choices, scores, ws, ys) = run_steps(body, carry, (keys, cm, xs), n)
        trace = Trace(choices.with_origins(seen), jnp.sum(scores), (c, ys), (carry, xs))
        return trace, jnp.sum(ws)


def scan(gf: GenerativeFunction, length: int | None = None) -> ScanGF:
    """A generative function iterating ``gf(carry, x) -> (carry, y)`` with ``lax.scan``.

    Examples:
        >>> @gv.gen
        ... def step(z, _):
        ...     z = gv.normal(0.9 * z, 1.0) @ "z"
        ...     gv.normal(z, 0.5) @ "y"
        ...     return z, None
        >>> chain = gv.scan(step, length=100)
        >>> tr = chain.simulate(jax.random.key(0), 0.0, None)
        >>> tr.choices["z"].shape
        (100,)
    """
    return ScanGF(gf, length)
