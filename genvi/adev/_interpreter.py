"""The ADEV interpreter: a staged objective, evaluated with dual numbers in CPS.

``run(jaxpr, consts, args)`` evaluates a jaxpr on *dual numbers* ``(primal, tangent)``
(``tangent`` is ``None`` where it is zero). Deterministic equations are differentiated in
forward mode with ``jax.jvp``. At each ``sample_p`` equation the strategy's rule
(:mod:`genvi.distributions._strategies`) receives the rest of the program as a
continuation ``kont(z, dz) -> (v, dv)`` and returns an unbiased dual estimate of the
objective. Nested calls (``jax.jit``, ``remat``) are inlined so the continuation runs
through them.

Compiled control flow cannot hand out its continuation as a Python function, so random
choices inside ``lax.scan`` / ``lax.cond`` (and thus ``gv.scan`` and ``gv.cond`` with a
traced index) run in *local* mode: REPARAM differentiates through the sample, REINFORCE
records its score term ``dlog p`` (and ``b dlog p`` for a baseline) in a
:class:`~genvi.distributions._strategies.ScoreAccumulator`, applied once the continuation
after the loop has returned ``(v, dv)``: ``dv += v * S - B``. This is the same estimator
as the CPS rule, since every REINFORCE choice's continuation ends in the same ``v``.
Strategies that must evaluate the continuation several times (ENUM, MVD) raise a clear
error there; a ``lax.cond`` whose branches hold such choices is handled in CPS instead,
by running the continuation once per branch and selecting the taken one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import Jaxpr, Literal, subjaxprs

from genvi.combinators._switch import _is_batched
from genvi.core._errors import StrategyError
from genvi.distributions._primitive import sample_p
from genvi.distributions._strategies import ScoreAccumulator, SiteCall
from genvi.distributions._support import RELAXABLE_CHECK, binary_relaxed

Dual = tuple  # (primal, tangent or None)
_INLINE = {"jit", "pjit", "closed_call", "core_call", "checkpoint", "remat", "remat2"}


# ---------------------------------------------------------------------------------------
# Static queries on jaxprs.


@functools.lru_cache(maxsize=4096)
def _sample_eqns(jaxpr: Jaxpr) -> tuple:
    """Every ``sample_p`` equation in ``jaxpr`` and its sub-jaxprs."""
    out = []
    for eqn in jaxpr.eqns:
        if eqn.primitive is sample_p:
            out.append(eqn)
    for sub in subjaxprs(jaxpr):
        out.extend(_sample_eqns(sub))
    return tuple(out)


def _eqn_has_samples(eqn) -> bool:
    from jax.extend.core import jaxprs_in_params

    return any(_sample_eqns(j) for j in jaxprs_in_params(eqn.params))


def _is_relaxable_check(eqn) -> bool:
    return eqn.primitive.name in _INLINE and eqn.params.get("name") == RELAXABLE_CHECK


@functools.lru_cache(maxsize=4096)
def _has_relaxable(jaxpr: Jaxpr) -> bool:
    """Whether ``jaxpr`` or a sub-jaxpr holds a staged boolean-support check."""
    return any(_is_relaxable_check(e) for e in jaxpr.eqns) or any(
        _has_relaxable(sub) for sub in subjaxprs(jaxpr)
    )


def _interpreted(eqn) -> bool:
    """Whether ``eqn`` must be evaluated by this interpreter (not bound whole): it holds
    random choices, or, while a continuation runs at relaxed binary values (``Rebar``),
    a boolean-support check that must be relaxed."""
    if _eqn_has_samples(eqn):
        return True
    if not binary_relaxed():
        return False
    from jax.extend.core import jaxprs_in_params

    return any(_has_relaxable(j) for j in jaxprs_in_params(eqn.params))


def _needs_continuation(jaxprs) -> bool:
    return any(e.params["strategy"].needs_continuation for j in jaxprs for e in _sample_eqns(j))


def _is_float(x) -> bool:
    return jnp.issubdtype(jnp.result_type(x), jnp.inexact)


def _inst(t, p):
    """A concrete tangent for ``p``: zeros where ``t`` is None (None for non-float ``p``)."""
    if not _is_float(p):
        return None
    return jnp.zeros(jnp.shape(p), jnp.result_type(p)) if t is None else t


def _float0_or_zero(p, t):
    if t is not None:
        return t
    if _is_float(p):
        return jnp.zeros(jnp.shape(p), jnp.result_type(p))
    return np.zeros(jnp.shape(p), jax.dtypes.float0)


# ---------------------------------------------------------------------------------------
# Deterministic equations.


def _bind_fn(eqn):
    params = eqn.primitive.get_bind_params(eqn.params)

    def f(*args):
        with eqn.ctx.manager:
            return eqn.primitive.bind(*args, **params)

    return f


def eval_eqn(eqn, ins: list[Dual]) -> list[Dual]:
    """Forward-mode evaluation of one deterministic equation on dual numbers."""
    if binary_relaxed() and _is_relaxable_check(eqn):
        # a relaxed binary value (Rebar): the density takes its continuous extension
        return [(jnp.ones(jnp.shape(ins[0][0]), bool), None)]
    f = _bind_fn(eqn)
    primals = [p for p, _ in ins]
    if all(t is None or not _is_float(p) for p, t in ins):
        out = f(*primals)
        outs = out if eqn.primitive.multiple_results else [out]
        return [(o, None) for o in outs]
    if eqn.primitive.name == "cond" and _is_batched(primals[0]):
        return _select_cond(eqn, ins)
    tangents = [_float0_or_zero(p, t) for p, t in ins]
    out, tout = jax.jvp(f, primals, tangents)
    if not eqn.primitive.multiple_results:
        out, tout = [out], [tout]
    return [(o, t if _is_float(o) else None) for o, t in zip(out, tout, strict=True)]


# ---------------------------------------------------------------------------------------
# Branches on a batched index.
#
# JAX batches a ``cond`` whose index is batched by evaluating every branch and selecting,
# and it wraps the operands of the untaken branches in ``stop_gradient``. Inside this
# estimator the operands include tangents, so the estimator's linear program would hold a
# ``stop_gradient``, which JAX cannot transpose (reverse mode fails). Such a ``cond`` is
# therefore evaluated here as what JAX would make of it, without the ``stop_gradient``:
# every branch in forward mode, then ``select_n`` on the index. Nothing is registered with
# JAX: code outside genvi behaves exactly as without it.


def _select(index, n: int, cases: list):
    idx = jnp.clip(index, 0, n - 1).astype(jnp.int32)
    if n == 1:
        return cases[0]
    if n == 2:
        idx = idx.astype(bool)
    return jax.lax.select_n(idx, *cases)


def _select_duals(index, per_branch: list[list[Dual]]) -> list[Dual]:
    n = len(per_branch)
    out = []
    for k in range(len(per_branch[0])):
        duals = [b[k] for b in per_branch]
        p = _select(index, n, [d[0] for d in duals])
        if all(d[1] is None for d in duals) or not _is_float(p):
            out.append((p, None))
        else:
            out.append((p, _select(index, n, [_inst(d[1], d[0]) for d in duals])))
    return out


def _select_cond(eqn, ins: list[Dual]) -> list[Dual]:
    index, ops = ins[0][0], ins[1:]
    per_branch = []
    for br in eqn.params["branches"]:
        per_branch.append(run_local(br.jaxpr, list(br.consts), ops, ScoreAccumulator()))
    return _select_duals(index, per_branch)


# ---------------------------------------------------------------------------------------
# The interpreter.


def _read(env, v) -> Dual:
    if isinstance(v, Literal):
        return (v.val, None)
    return env[v]


def _write(env, vs, duals):
    from jax.extend.core import DropVar

    for v, d in zip(vs, duals, strict=True):
        if not isinstance(v, DropVar):
            env[v] = d


def _site_call(eqn, ins: list[Dual]) -> SiteCall:
    n_ops = eqn.params["n_ops"]
    key = ins[0][0]
    rest = ins[1:]
    site_ins, op_ins = rest[: len(rest) - n_ops], rest[len(rest) - n_ops :]
    return SiteCall(
        key=key,
        site=eqn.params["site"],
        flat=tuple(p for p, _ in site_ins),
        dflat=tuple(t if _is_float(p) else None for p, t in site_ins),
        operands=tuple(p for p, _ in op_ins),
        addr=eqn.params["addr"],
    )


def run(jaxpr: Jaxpr, consts: list, args: list[Dual], kont: Callable[[list[Dual]], Dual]) -> Dual:
    """Evaluate ``jaxpr`` on dual ``args``; ``kont`` receives its dual outputs and returns
    the dual estimate of the objective."""
    env: dict = {}
    _write(env, jaxpr.constvars, [(c, None) for c in consts])
    _write(env, jaxpr.invars, args)
    return _run_from(jaxpr, env, 0, kont)


def _run_from(jaxpr: Jaxpr, env: dict, i: int, kont) -> Dual:
    """Evaluate equations ``i:`` of ``jaxpr``, then ``kont``.

    Choices whose strategy needs no continuation (REPARAM, REINFORCE) are handled in
    place, their score terms collected in one accumulator applied when this segment's
    estimate returns: every such choice's continuation ends in that same estimate, so
    this equals the CPS rule, without one Python frame per choice. ENUM and MVD choices
    receive the rest of the segment as their continuation."""
    acc = ScoreAccumulator()
    v, dv = _run_segment(jaxpr, dict(env), i, kont, acc)
    return _apply_scores(v, dv, acc)


def _run_segment(jaxpr: Jaxpr, env: dict, i: int, kont, acc: ScoreAccumulator) -> Dual:
    eqns = jaxpr.eqns
    while i < len(eqns):
        eqn = eqns[i]
        ins = [_read(env, v) for v in eqn.invars]
        if eqn.primitive is sample_p:
            call = _site_call(eqn, ins)
            strategy = eqn.params["strategy"]
            if not strategy.needs_continuation:
                z, dz = strategy.local_estimate(call, acc)
                _write(env, eqn.outvars, [(z, dz if _is_float(z) else None)])
                i += 1
                continue

            def cont(z, dz, _i=i, _eqn=eqn):
                env2 = dict(env)
                env2[_eqn.outvars[0]] = (z, dz if dz is not None and _is_float(z) else None)
                return _run_from(jaxpr, env2, _i + 1, kont)

            return strategy.jvp_estimate(call, cont)
        if _interpreted(eqn):
            name = eqn.primitive.name
            if name in _INLINE and _needs_continuation([_inner_jaxpr(eqn)[0]]):
                inner, inner_consts = _inner_jaxpr(eqn)

                def cont_outs(outs, _i=i, _eqn=eqn):
                    env2 = dict(env)
                    _write(env2, _eqn.outvars, outs)
                    return _run_from(jaxpr, env2, _i + 1, kont)

                return run(inner, inner_consts, ins, cont_outs)
            if name == "cond" and _needs_continuation(b.jaxpr for b in eqn.params["branches"]):
                return _cond_cps(eqn, ins, env, jaxpr, i, kont)
            # Inlined calls without ENUM/MVD, loops and branches: evaluate locally.
            _write(env, eqn.outvars, eval_local_eqn(eqn, ins, acc))
            i += 1
            continue
        _write(env, eqn.outvars, eval_eqn(eqn, ins))
        i += 1
    return kont([_read(env, v) for v in jaxpr.outvars])


def _apply_scores(v, dv, acc: ScoreAccumulator) -> Dual:
    if acc.s is None:
        return v, dv
    dv = jnp.zeros_like(v) if dv is None else dv
    dv = dv + v * acc.s
    if acc.b is not None:
        dv = dv - acc.b
    return v, dv


def _inner_jaxpr(eqn) -> tuple[Jaxpr, list]:
    j = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
    assert j is not None, f"{eqn.primitive.name} has no inner jaxpr"
    if hasattr(j, "jaxpr"):  # ClosedJaxpr
        return j.jaxpr, list(j.consts)
    return j, []


def _cond_cps(eqn, ins, env, jaxpr, i, kont) -> Dual:
    """``lax.cond``/``lax.switch`` whose branches need the continuation: run the rest of
    the program once per branch and select the estimate of the branch taken."""
    index = ins[0][0]
    results = []
    for br in eqn.params["branches"]:

        def cont_outs(outs, _i=i):
            env2 = dict(env)
            _write(env2, eqn.outvars, outs)
            return _run_from(jaxpr, env2, _i + 1, kont)

        results.append(run(br.jaxpr, list(br.consts), ins[1:], cont_outs))
    vs = [v for v, _ in results]
    v = jax.lax.select_n(jnp.clip(index, 0, len(vs) - 1).astype(jnp.int32), *vs)
    if all(dv is None for _, dv in results):
        return v, None
    dvs = [jnp.zeros_like(r[0]) if r[1] is None else r[1] for r in results]
    return v, jax.lax.select_n(jnp.clip(index, 0, len(vs) - 1).astype(jnp.int32), *dvs)


# ---------------------------------------------------------------------------------------
# Local mode (no continuation): loops and branches.


def run_local(jaxpr: Jaxpr, consts: list, args: list[Dual], acc: ScoreAccumulator) -> list[Dual]:
    """Evaluate ``jaxpr`` without continuations, recording REINFORCE score terms in ``acc``."""
    env: dict = {}
    _write(env, jaxpr.constvars, [(c, None) for c in consts])
    _write(env, jaxpr.invars, args)
    for eqn in jaxpr.eqns:
        ins = [_read(env, v) for v in eqn.invars]
        if eqn.primitive is sample_p:
            call = _site_call(eqn, ins)
            z, dz = eqn.params["strategy"].local_estimate(call, acc)
            _write(env, eqn.outvars, [(z, dz if _is_float(z) else None)])
        elif _interpreted(eqn):
            _write(env, eqn.outvars, eval_local_eqn(eqn, ins, acc))
        else:
            _write(env, eqn.outvars, eval_eqn(eqn, ins))
    return [_read(env, v) for v in jaxpr.outvars]


def eval_local_eqn(eqn, ins: list[Dual], acc: ScoreAccumulator) -> list[Dual]:
    name = eqn.primitive.name
    if name in _INLINE:
        inner, consts = _inner_jaxpr(eqn)
        return run_local(inner, consts, ins, acc)
    if name == "cond":
        return _local_cond(eqn, ins, acc)
    if name == "scan":
        return _local_scan(eqn, ins, acc)
    if name == "while" and all(t is None for _, t in ins):
        return eval_eqn(eqn, ins)  # nothing to differentiate: plain sampling
    if not _eqn_has_samples(eqn):
        # only a boolean-support check that cannot be reached here: bound whole, so a
        # relaxed value inside scores -inf (a loud estimate), never a wrong finite one
        return eval_eqn(eqn, ins)
    from jax.extend.core import jaxprs_in_params

    from genvi.core._choicemap import format_address

    addrs = sorted(
        {
            format_address(e.params["addr"]) if e.params["addr"] else "an anonymous sample"
            for j in jaxprs_in_params(eqn.params)
            for e in _sample_eqns(j)
        }
    )
    where = f" ({', '.join(addrs)})" if addrs else ""
    if name == "while":
        raise StrategyError(
            f"random choices{where} are inside a jax.lax.while_loop (or a fori_loop with a "
            "traced trip count) that a gradient flows into: a loop of unknown length cannot "
            "be differentiated in reverse mode. Use jax.lax.scan or gv.scan with a fixed "
            "length, or move the choices out of the loop"
        )
    raise StrategyError(
        f"random choices{where} are inside `{name}`, which genvi's gradient estimators "
        f"cannot see through; move the choices out of `{name}`"
    )


def _acc_pair(acc: ScoreAccumulator):
    zero = jnp.zeros((), jnp.result_type(float))
    return (zero if acc.s is None else acc.s, zero if acc.b is None else acc.b)


def _local_cond(eqn, ins, acc) -> list[Dual]:
    index = ins[0][0]
    ops = ins[1:]
    if _is_batched(index):
        # Every branch runs anyway under a batched index (see _select_cond); select their
        # outputs and score terms.
        per_branch, scores = [], []
        for br in eqn.params["branches"]:
            a = ScoreAccumulator()
            per_branch.append(run_local(br.jaxpr, list(br.consts), ops, a))
            scores.append(_acc_pair(a))
        n = len(scores)
        s = _select(index, n, [sb[0] for sb in scores])
        b = _select(index, n, [sb[1] for sb in scores])
        acc.s = s if acc.s is None else acc.s + s
        acc.b = b if acc.b is None else acc.b + b
        return _select_duals(index, per_branch)
    ops_p = [p for p, _ in ops]
    ops_t = [_inst(t, p) for p, t in ops]

    def make(br):
        def f(ps, ts):
            a = ScoreAccumulator()
            outs = run_local(br.jaxpr, list(br.consts), list(zip(ps, ts, strict=True)), a)
            return [p for p, _ in outs], [_inst(t, p) for p, t in outs], _acc_pair(a)

        return f

    outs_p, outs_t, (s, b) = jax.lax.switch(
        index, [make(br) for br in eqn.params["branches"]], ops_p, ops_t
    )
    acc.s = s if acc.s is None else acc.s + s
    acc.b = b if acc.b is None else acc.b + b
    return list(zip(outs_p, outs_t, strict=True))


def _local_scan(eqn, ins, acc) -> list[Dual]:
    p = eqn.params
    body = p["jaxpr"]
    nc, ncar = p["num_consts"], p["num_carry"]
    consts, carry, xs = ins[:nc], ins[nc : nc + ncar], ins[nc + ncar :]
    carry_p = [c for c, _ in carry]
    carry_t = [_inst(t, c) for c, t in carry]
    xs_p = [x for x, _ in xs]
    xs_t = [t if _is_float(x) else None for x, t in xs]
    zero = jnp.zeros((), jnp.result_type(float))

    def step(c, x):
        cp, ct, s, b = c
        xp, xt = x
        a = ScoreAccumulator()
        args = consts + list(zip(cp, ct, strict=True)) + list(zip(xp, xt, strict=True))
        outs = run_local(body.jaxpr, list(body.consts), args, a)
        new_c, ys = outs[:ncar], outs[ncar:]
        s2, b2 = _acc_pair(a)
        return (
            [q for q, _ in new_c],
            [_inst(t, q) for q, t in new_c],
            s + s2,
            b + b2,
        ), ([q for q, _ in ys], [_inst(t, q) for q, t in ys])

    (cp, ct, s, b), (ys_p, ys_t) = jax.lax.scan(
        step, (carry_p, carry_t, zero, zero), (xs_p, xs_t), length=p["length"], reverse=p["reverse"]
    )
    acc.s = s if acc.s is None else acc.s + s
    acc.b = b if acc.b is None else acc.b + b
    return list(zip(cp, ct, strict=True)) + list(zip(ys_p, ys_t, strict=True))


__all__ = ["run", "run_local", "eval_eqn"]
