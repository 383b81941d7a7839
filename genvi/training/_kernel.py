"""The pure training kernel underneath :func:`genvi.fit`: a state, ``init`` and ``step``.

One step draws a fresh key, evaluates the objective and its gradient in the parameters,
and applies an optax update (ascent when maximizing)::

    key, k = split(state.key)
    v, g = value_and_grad(objective)(k, params[, batch])
    updates, opt_state = optimizer.update(-g if maximize else g, opt_state, params)
    params = params + updates

For an objective written with :func:`genvi.expectation`, ``jax.grad`` of its ``estimate``
is the ADEV estimator, so ``g`` is an unbiased estimate of the gradient of the expected
objective and this is stochastic gradient ascent on it.

Every step also reports which value, if any, is not finite, in a fixed order: the
objective, then each gradient leaf, then each updated parameter leaf (the order of
``jax.tree_util.tree_leaves``). The kernel never hides such a step: deciding to stop or
to skip is the caller's business (:func:`guard`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class FitState(NamedTuple):
    """Everything a step reads and writes.

    Attributes:
        step: the number of steps taken (an int32 scalar).
        params: the parameters (any pytree of floating-point arrays).
        opt_state: the optimizer's state.
        key: the PRNG key of the next step.
    """

    step: Any
    params: Any
    opt_state: Any
    key: Any


class StepInfo(NamedTuple):
    """What a step reports.

    Attributes:
        objective: the objective's value (the estimate, for a stochastic objective).
        grad_norm: the global Euclidean norm of the gradient.
        nonfinite: ``-1`` when every value is finite, else the index of the first
            non-finite one in the order objective, gradient leaves, parameter leaves
            (see :func:`describe_nonfinite`).
    """

    objective: Any
    grad_norm: Any
    nonfinite: Any


def as_typed_key(key):
    """A typed PRNG key from a typed key or a raw ``uint32[2]`` key."""
    if jnp.issubdtype(jnp.asarray(key).dtype, jax.dtypes.prng_key):
        return key
    return jax.random.wrap_key_data(jnp.asarray(key, dtype=jnp.uint32))


def prepare_params(params):
    """Params as strongly typed JAX arrays, checking that every leaf is floating point."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(params)
    if not leaves:
        raise ValueError("fit: params has no array leaves: there is nothing to train")
    for path, leaf in leaves:
        dtype = jnp.asarray(leaf).dtype
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(
                f"fit: params{jax.tree_util.keystr(path)} has dtype {dtype}; only "
                "floating-point leaves can be trained. Close over integer or boolean "
                "constants in the objective instead of passing them as params."
            )
    return jax.tree.map(lambda x: jnp.array(x, dtype=jnp.asarray(x).dtype), params)


def init(params, optimizer: optax.GradientTransformation, key) -> FitState:
    """The state at step 0: ``params``, ``optimizer.init(params)`` and ``key``.

    Examples:
        >>> state = gv.training.init({"w": jnp.zeros(3)}, optax.adam(1e-2), jax.random.key(0))
        >>> int(state.step), state.params["w"].shape
        (0, (3,))
    """
    params = prepare_params(params)
    return FitState(jnp.zeros((), jnp.int32), params, optimizer.init(params), as_typed_key(key))


def global_norm(tree):
    """``sqrt(sum of squares)`` over every leaf."""
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree_util.tree_leaves(tree)))


def make_step(
    objective: Callable,
    optimizer: optax.GradientTransformation,
    *,
    maximize: bool = True,
    has_data: bool = True,
) -> Callable:
    """A pure step ``step(state, batch) -> (state, StepInfo)``.

    ``objective(key, params, batch)`` (or ``objective(key, params)`` when
    ``has_data=False``, and then ``batch`` is ignored) must return a float scalar.
    The step is traceable: jit it, or scan it.

    Examples:
        >>> def objective(key, params):
        ...     return -jnp.sum((params["w"] - 1.0) ** 2)
        >>> step = jax.jit(gv.training.make_step(objective, optax.sgd(0.1), has_data=False))
        >>> state = gv.training.init({"w": jnp.zeros(3)}, optax.sgd(0.1), jax.random.key(0))
        >>> state, info = step(state, None)
        >>> int(state.step), float(info.objective)
        (1, -3.0)
        >>> state.params["w"]                     # one step of gradient ascent: 0 + 0.1 * 2
        Array([0.2, 0.2, 0.2], dtype=float32)
    """

    def value(params, key, batch):
        out = objective(key, params, batch) if has_data else objective(key, params)
        if jnp.shape(out) != () or not jnp.issubdtype(jnp.result_type(out), jnp.floating):
            raise TypeError(
                f"fit: the objective must return one float scalar, got "
                f"{jnp.result_type(out)}{list(jnp.shape(out))}; reduce it with jnp.mean or "
                "jnp.sum (e.g. over the minibatch)"
            )
        return out

    def step(state: FitState, batch) -> tuple[FitState, StepInfo]:
        key, k = jax.random.split(state.key)
        v, g = jax.value_and_grad(value)(state.params, k, batch)
        direction = jax.tree.map(jnp.negative, g) if maximize else g
        updates, opt_state = optimizer.update(direction, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        finite = [jnp.isfinite(v)]
        finite += [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(g)]
        finite += [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(params)]
        finite = jnp.stack(finite)
        code = jnp.where(jnp.all(finite), -1, jnp.argmin(finite)).astype(jnp.int32)
        info = StepInfo(v, global_norm(g), code)
        return FitState(state.step + 1, params, opt_state, key), info

    return step


def guard(old: FitState, new: FitState, info: StepInfo, on_nonfinite: str) -> FitState:
    """The state to keep after a step: ``new`` if every value was finite; otherwise
    ``old`` (``"stop"``: the caller stops here) or ``old`` with the step counted and the
    key advanced (``"skip"``: the update is dropped, training goes on with fresh noise)."""
    ok = info.nonfinite < 0
    if on_nonfinite == "skip":
        fallback = FitState(new.step, old.params, old.opt_state, new.key)
    else:
        fallback = old
    return jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, fallback)


def describe_nonfinite(code: int, params) -> str:
    """Which value a :class:`StepInfo` ``nonfinite`` code points to, in words."""
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    n = len(paths)
    if code == 0:
        return "the objective"
    if 1 <= code <= n:
        return f"the gradient of params{paths[code - 1]}"
    if n < code <= 2 * n:
        return f"the updated value of params{paths[code - 1 - n]}"
    return f"value #{code}"
