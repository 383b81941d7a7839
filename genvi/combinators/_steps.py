"""How ``gv.scan`` runs its steps: only the work that needs the carry stays in the loop.

A state-space model's loop body mixes two kinds of work. Some of it depends only on the
step's own inputs (its key, its row of ``xs``): deriving the per-address keys, drawing a
guide's choices from per-step parameters, scoring a given observation against a given
latent. The rest depends on the carry (the previous state). ``lax.scan`` runs all of it
sequentially, one small step at a time; on CPU every PRNG call inside the body is itself
a small rolled loop, so a body that draws two choices runs nested loops per step.

:func:`run_steps` computes the same ``(carry, ys)`` as ``jax.lax.scan(f, init, xs)`` but
splits the body by data dependence first (JAX's partial evaluation of the body's jaxpr,
with the carry unknown):

- the *step-local* part (what depends only on ``xs`` and on values the body closes over)
  runs for all steps at once, under ``jax.vmap``, before the loop;
- if no carry output depends on the carry (the choices that make the next state are
  given, as in ``assess`` of a chain, or the carry is passed through unchanged, as in a
  mean-field guide), the carries are known in advance and the rest of the body runs
  vectorized too: **no sequential pass at all**;
- otherwise only the carry-dependent part stays in a ``lax.scan``, fed with the
  step-local results it needs (the *residuals*).

Values that depend on neither the carry nor ``xs`` (a network's weights) are passed once,
never stacked per step. The values are the ones ``lax.scan`` computes (the same
operations on the same inputs; vectorized arithmetic may differ in the last bits), and
the draws are the same: a batched sampler draws what each step's key would.

The plain ``lax.scan`` is used instead when the split cannot help or is not sound: a body
with effects (debug callbacks, as validation adds), a body whose choices need the
continuation of the program (ENUM, MVD: they keep their loop-specific errors), zero or one
steps, a carry whose type changes, or step-local results too large to keep for every step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import ClosedJaxpr, jaxpr_as_fun

try:  # JAX's partial evaluation of jaxprs (internal; the plain loop runs without it)
    from jax._src.interpreters import partial_eval as pe
except ImportError:  # pragma: no cover - a JAX without it
    pe = None

from genvi.distributions._primitive import sample_p

#: Step-local results kept for every step above this many bytes fall back to ``lax.scan``.
MAX_RESIDUAL_BYTES = 1 << 28


def _needs_loop_semantics(jaxpr) -> bool:
    """Whether a choice in ``jaxpr`` (or under it) needs the program's continuation."""
    from jax.extend.core import subjaxprs

    for eqn in jaxpr.eqns:
        if eqn.primitive is sample_p and eqn.params["strategy"].needs_continuation:
            return True
    return any(_needs_loop_semantics(sub) for sub in subjaxprs(jaxpr))


def _nbytes(avals) -> int:
    total = 0
    for a in avals:
        itemsize = getattr(getattr(a, "dtype", None), "itemsize", 8) or 8
        total += int(np.prod(getattr(a, "shape", ()), dtype=np.int64)) * itemsize
    return total


def _depends_on(closed: ClosedJaxpr, n_free: int, n_mapped: int) -> list[bool]:
    """Which outputs of ``closed`` (inputs: ``n_free`` loop-invariant values, then
    ``n_mapped`` per-step values) depend on a per-step input."""
    assert pe is not None
    _, _, out_dep, _ = pe.partial_eval_jaxpr_nounits(
        closed, [False] * n_free + [True] * n_mapped, instantiate=False
    )
    return list(out_dep)


def _stack_axes(values, mapped, n):
    """``values`` computed under vmap with ``out_axes=None`` where not ``mapped``:
    broadcast those to a leading axis of ``n`` (what ``lax.scan`` stacks)."""
    return [
        v if m else jnp.broadcast_to(v, (n,) + jnp.shape(v))
        for v, m in zip(values, mapped, strict=True)
    ]


def run_steps(f, init, xs, length: int):
    """``jax.lax.scan(f, init, xs, length=length)``, with the step-local work of ``f``
    vectorized out of the loop (see the module docstring). ``f(carry, x) -> (carry, y)``."""
    init_flat, init_tree = jax.tree_util.tree_flatten(init)
    xs_flat, xs_tree = jax.tree_util.tree_flatten(xs)
    xs_flat = [jnp.asarray(x) for x in xs_flat]
    if pe is None or length < 2 or any(jnp.ndim(x) < 1 for x in xs_flat):
        return jax.lax.scan(f, init, xs, length=length)
    init_flat = [jnp.asarray(c) for c in init_flat]
    carry_avals = [jax.ShapeDtypeStruct(jnp.shape(c), c.dtype) for c in init_flat]
    x_avals = [jax.ShapeDtypeStruct(jnp.shape(x)[1:], x.dtype) for x in xs_flat]
    nc, nx = len(init_flat), len(xs_flat)
    trees: dict = {}

    def flat_body(*args):
        carry = jax.tree_util.tree_unflatten(init_tree, args[:nc])
        x = jax.tree_util.tree_unflatten(xs_tree, args[nc:])
        c2, y = f(carry, x)
        c2_flat, c2_tree = jax.tree_util.tree_flatten(c2)
        y_flat, trees["y"] = jax.tree_util.tree_flatten(y)
        trees["carry"] = c2_tree
        return [*c2_flat, *y_flat]

    closed = jax.make_jaxpr(flat_body)(*carry_avals, *x_avals)
    forwarded = [
        i
        for i, v in enumerate(closed.jaxpr.outvars[:nc])
        if v is closed.jaxpr.invars[i] and trees.get("carry") == init_tree
    ]
    if forwarded:
        # Parts of the carry that every step returns unchanged are loop invariants: hold
        # them fixed at their initial values and run the steps on the rest of the carry.
        keep = [i for i in range(nc) if i not in forwarded]

        def merged(rest):
            full = list(init_flat)
            for i, v in zip(keep, rest, strict=True):
                full[i] = v
            return jax.tree_util.tree_unflatten(init_tree, full)

        def reduced(rest, x):
            c2, y = f(merged(rest), x)
            c2_flat = jax.tree_util.tree_leaves(c2)
            return [c2_flat[i] for i in keep], y

        rest, ys = run_steps(reduced, [init_flat[i] for i in keep], xs, length)
        return merged(rest), ys
    out_avals = closed.out_avals
    c2_avals = out_avals[: len(carry_avals)]
    if (
        trees["carry"] != init_tree
        or len(c2_avals) != nc
        or any(
            (a.shape, a.dtype) != (b.shape, b.dtype)
            for a, b in zip(c2_avals, carry_avals, strict=True)
        )
        or closed.effects
        or _needs_loop_semantics(closed.jaxpr)
    ):
        return jax.lax.scan(f, init, xs, length=length)
    ny = len(out_avals) - nc

    # Loop-invariant values the body closes over become explicit inputs, so that they are
    # passed once (never broadcast per step) to whichever part needs them.
    consts = list(closed.consts)
    body = ClosedJaxpr(pe.convert_constvars_jaxpr(closed.jaxpr), ())
    nk = len(consts)
    # Inputs of `body`: consts (known), carry (unknown), xs (known).
    unknowns = [False] * nk + [True] * nc + [False] * nx
    known, unknown, out_uk, res_avals = pe.partial_eval_jaxpr_nounits(
        body, unknowns, instantiate=False
    )
    carry_uk = out_uk[:nc]
    parallel = not any(carry_uk)
    if not parallel:
        known, unknown, out_uk, res_avals = pe.partial_eval_jaxpr_nounits(
            body, unknowns, instantiate=[True] * nc + [False] * ny
        )
    if _nbytes(res_avals) * length > MAX_RESIDUAL_BYTES:
        return jax.lax.scan(f, init, xs, length=length)

    # The known part: inputs consts + xs; outputs known outs, then residuals.
    mapped = _depends_on(known, nk, nx)
    known_fn = jaxpr_as_fun(known)
    out_axes = [0 if m else None for m in mapped]
    known_out = jax.vmap(
        lambda *x: known_fn(*consts, *x), in_axes=0, out_axes=out_axes, axis_size=length
    )(*xs_flat)
    n_known_outs = len(known_out) - len(res_avals)
    known_outs = _stack_axes(known_out[:n_known_outs], mapped[:n_known_outs], length)
    residuals = list(known_out[n_known_outs:])
    res_mapped = mapped[n_known_outs:]
    unknown_fn = jaxpr_as_fun(unknown)

    if parallel:
        # Every next carry is known: the carry entering step t is the known output of
        # step t - 1 (the initial carry for t = 0), so the rest runs vectorized as well.
        c_known = known_outs[:nc]
        carries_in = [
            jnp.concatenate([c0[None], c[:-1]], axis=0)
            for c0, c in zip(init_flat, c_known, strict=True)
        ]
        res_axes = [0 if m else None for m in res_mapped]
        unknown_out = jax.vmap(unknown_fn, in_axes=(*res_axes, *([0] * nc)), axis_size=length)(
            *residuals, *carries_in
        )
        final = [c[-1] for c in c_known]
        ys_known, ys_unknown = iter(known_outs[nc:]), iter(unknown_out)
        ys = [next(ys_unknown) if uk else next(ys_known) for uk in out_uk[nc:]]
    else:
        fixed = {i: r for i, (r, m) in enumerate(zip(residuals, res_mapped, strict=True)) if not m}
        per_step = [r for r, m in zip(residuals, res_mapped, strict=True) if m]

        def loop_body(carry, rs):
            rs = iter(rs)
            res = [fixed[i] if i in fixed else next(rs) for i in range(len(residuals))]
            outs = unknown_fn(*res, *carry)
            return list(outs[:nc]), list(outs[nc:])

        final, ys_loop = jax.lax.scan(loop_body, init_flat, per_step, length=length)
        ys_known, ys_unknown = iter(known_outs), iter(ys_loop)
        ys = [next(ys_unknown) if uk else next(ys_known) for uk in out_uk[nc:]]
    carry = jax.tree_util.tree_unflatten(init_tree, list(final))
    return carry, jax.tree_util.tree_unflatten(trees["y"], ys)


__all__ = ["run_steps", "MAX_RESIDUAL_BYTES"]
