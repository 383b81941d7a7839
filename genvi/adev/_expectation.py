"""``gv.expectation``: objectives as programs, and their unbiased gradient estimators."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer

from genvi._config import validation_enabled
from genvi.adev import _rawrandom as rawrandom
from genvi.adev._interpreter import run
from genvi.core._errors import ChoiceTypeError, ModelingError, runtime_errors
from genvi.core._keys import check_key


def _is_zero(t) -> bool:
    return (
        t is None
        or isinstance(t, jax.custom_derivatives.SymbolicZero)
        or (getattr(t, "dtype", None) == jax.dtypes.float0)
    )


def _estimator(jaxpr, name: str = "objective"):
    """A ``custom_jvp`` function ``(consts, key, flat_args) -> estimate`` whose JVP is the
    ADEV forward-mode estimator; ``jax.grad`` of it transposes that estimator."""

    @jax.custom_jvp
    def f(consts, key, flat):
        v, _ = run(jaxpr, list(consts), [(key, None)] + [(a, None) for a in flat], lambda o: o[0])
        return v

    def f_jvp(primals, tangents):
        consts, key, flat = primals
        tconsts, _, tflat = tangents
        ins = [(key, None)] + [
            (a, None if _is_zero(t) else t) for a, t in zip(flat, tflat, strict=True)
        ]
        cs = [c for c in consts]
        # Constants with a tangent (closed-over values being differentiated) enter as inputs.
        env_consts = [(c, None if _is_zero(t) else t) for c, t in zip(cs, tconsts, strict=True)]
        rawrandom.check(
            jaxpr,
            tuple(t is not None for _, t in env_consts),
            tuple(t is not None for _, t in ins),
            name,
        )
        v, dv = _run_with_const_tangents(jaxpr, env_consts, ins)
        return v, (jnp.zeros_like(v) if dv is None else dv)

    f.defjvp(f_jvp, symbolic_zeros=True)
    return f


def _run_with_const_tangents(jaxpr, consts, ins):
    from genvi.adev._interpreter import _run_from, _write

    env: dict = {}
    _write(env, jaxpr.constvars, consts)
    _write(env, jaxpr.invars, ins)
    return _run_from(jaxpr, env, 0, lambda o: o[0])


def _is_array_leaf(x) -> bool:
    return isinstance(x, (jax.Array, np.ndarray, np.generic, float, int, bool, complex))


class Expectation:
    """An objective written as a program: ``E[fn(key, *args)]`` over its random choices.

    ``fn(key, *args)`` returns a scalar; every random choice it makes (inside
    ``simulate``, ``importance``, combinators, nested expectations) carries a gradient
    strategy. The program is staged to a jaxpr and transformed by ADEV
    (:mod:`genvi.adev._interpreter`) into an unbiased estimator of the expectation's
    value and of its gradient.

    Methods:
        estimate(key, *args): an unbiased estimate of ``E[fn]``.
        grad_estimate(key, *args, argnums=0): an unbiased estimate of its gradient with
            respect to ``args[argnums]`` (``argnums`` counts after the key, as in
            ``jax.grad``; a tuple gives a tuple).
        value_and_grad_estimate(key, *args, argnums=0): both, in one pass.

    All three compose with ``jax.jit`` and ``jax.vmap``; called outside ``jit`` they
    compile themselves (for array arguments).
    """

    def __init__(self, fn: Callable, name: str | None = None):
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "expectation")
        functools.update_wrapper(self, fn, updated=())
        self._jitted: dict = {}

    # ---- core, traceable -----------------------------------------------------------
    def _estimate(self, key, *args):
        flat, tree = jax.tree_util.tree_flatten(args)
        for leaf in flat:
            if not (isinstance(leaf, Tracer) or _is_array_leaf(leaf)):
                raise ChoiceTypeError(
                    f"expectation {self.name}: its arguments must be arrays, numbers or "
                    f"pytrees of them; got a {type(leaf).__name__} ({str(leaf)[:40]!r}). "
                    "Pass static settings through a closure instead"
                )

        def staged(k, *fl):
            return self.fn(k, *jax.tree_util.tree_unflatten(tree, list(fl)))

        closed = jax.make_jaxpr(staged)(key, *flat)
        outs = closed.out_avals
        if len(outs) != 1 or outs[0].shape != () or not jnp.issubdtype(outs[0].dtype, jnp.floating):
            got = ", ".join(f"{a.dtype}{list(a.shape)}" for a in outs)
            raise ModelingError(
                f"expectation {self.name} must return one float scalar, got ({got}); "
                "reduce with jnp.sum or jnp.mean (e.g. over a minibatch)"
            )
        return _estimator(closed.jaxpr, self.name)(list(closed.consts), key, list(flat))

    def _value_and_grad(self, key, *args, argnums=0):
        return jax.value_and_grad(lambda *a: self._estimate(key, *a), argnums=argnums)(*args)

    # ---- public ---------------------------------------------------------------------
    def _maybe_jit(self, name, fn, key, args, **static):
        check_key(key, f"expectation {self.name}", single=True)
        leaves = jax.tree_util.tree_leaves((key, args))
        with runtime_errors():  # a genvi error raised while the compiled program runs
            if any(isinstance(x, Tracer) for x in leaves) or not all(
                _is_array_leaf(x) for x in leaves
            ):
                return fn(key, *args, **static)
            # The validation switch is read when the program is traced: a program compiled
            # with it off must not serve a call made with it on.
            cache_key = (name, tuple(sorted(static.items())), validation_enabled())
            if cache_key not in self._jitted:
                self._jitted[cache_key] = jax.jit(functools.partial(fn, **static))
            return self._jitted[cache_key](key, *args)

    def estimate(self, key, *args):
        """An unbiased estimate of the expectation."""
        return self._maybe_jit("estimate", self._estimate, key, args)

    def grad_estimate(self, key, *args, argnums: int | tuple[int, ...] = 0):
        """An unbiased estimate of the gradient in ``args[argnums]``."""
        return self.value_and_grad_estimate(key, *args, argnums=argnums)[1]

    def value_and_grad_estimate(self, key, *args, argnums: int | tuple[int, ...] = 0):
        """``(estimate, gradient estimate)`` from one evaluation."""
        _check_argnums(argnums, args, self.name)
        return self._maybe_jit("vg", self._value_and_grad, key, args, argnums=argnums)

    def __call__(self, key, *args):
        """Same as :meth:`estimate`: an expectation's value can be used inside another
        program (a nested expectation)."""
        return self.estimate(key, *args)

    def __repr__(self) -> str:
        return f"<expectation {self.name}>"


def _check_argnums(argnums, args, name):
    n = len(args)
    nums = argnums if isinstance(argnums, tuple) else (argnums,)
    for a in nums:
        if isinstance(a, bool) or not isinstance(a, int) or not (-n <= a < n):
            raise ModelingError(
                f"{name}: argnums={argnums!r} but the objective takes {n} argument(s) after the "
                "key (argnums counts from the first argument after the key)"
            )
        for leaf in jax.tree_util.tree_leaves(args[a]):
            if not jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
                raise ChoiceTypeError(
                    f"{name}: argnums={argnums!r} asks for a gradient in argument {a} (after "
                    f"the key), which holds a {jnp.result_type(leaf)} value; gradients need "
                    "float arguments (pass it as a float, e.g. jnp.asarray(x, float), or "
                    "leave it out of argnums)"
                )


def expectation(fn: Callable) -> Expectation:
    """Declare an objective: ``fn(key, *args)`` is a program whose expected value is the
    objective, and the result has unbiased ``estimate``/``grad_estimate`` methods.

    Examples:
        >>> @gv.gen
        ... def guide(phi):
        ...     gv.normal(phi, 1.0) @ "z"
        >>> @gv.expectation
        ... def objective(key, phi):            # E[z^2] = phi^2 + 1 under z ~ N(phi, 1)
        ...     z = guide.simulate(key, phi).choices["z"]
        ...     return z**2
        >>> keys = jax.random.split(jax.random.key(0), 10_000)
        >>> g = jax.vmap(lambda k: objective.grad_estimate(k, 1.5))(keys)
        >>> bool(abs(g.mean() - 3.0) < 5 * g.std() / 100)     # d/dphi (phi^2 + 1) = 2 phi = 3
        True
    """
    return Expectation(fn)
