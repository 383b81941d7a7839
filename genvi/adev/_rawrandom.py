"""Randomness that genvi cannot see: ``jax.random`` draws inside an objective.

genvi's estimators account for every random choice made through a genvi distribution
(the ``sample`` primitive). A value drawn with ``jax.random`` directly is, to ADEV, a
deterministic function of a key: differentiating through it is pathwise. That is exact
for a continuous function of the draw (``mu + sigma * jax.random.normal(key)``), and
wrong where the program jumps: ``jax.random.bernoulli(key, p)`` is ``uniform < p``, whose
pathwise derivative in ``p`` is 0 everywhere, while ``d/dp E[f(b)] = f(1) - f(0)``.

This module finds, before the estimator runs, each *discontinuous* operation
(comparison, ``argmax``, rounding, a cast to integers) whose operands depend both on a
raw ``jax.random`` draw and on a value being differentiated. Those inside a
``jax.random`` sampler (``bernoulli``, ``categorical``, ``choice``, ...) raise a
:class:`~genvi.ModelingError` naming the genvi distribution to use; others, which may be
intended (a straight-through estimator, say), warn with :class:`RawRandomnessWarning`.
The analysis is static (over the staged program) and costs nothing at run time.
"""

from __future__ import annotations

import functools
import warnings

from jax.extend.core import Literal

from genvi.core._errors import GenviError, ModelingError
from genvi.distributions._primitive import sample_p


class RawRandomnessWarning(UserWarning):
    """A discontinuous function of a raw ``jax.random`` draw and of a differentiated value
    inside an expectation: its pathwise gradient misses the jumps.

    genvi raises :class:`genvi.ModelingError` instead when the draw is one of
    ``jax.random``'s discrete samplers (``bernoulli``, ``categorical``, ...), and names the
    genvi distribution to use.

    Examples:
        >>> @gv.expectation
        ... def objective(key, mu):
        ...     return (mu + jax.random.normal(key) > 0).astype(float)
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     _ = objective.grad_estimate(jax.random.key(0), 0.3)
        >>> caught[0].category is gv.RawRandomnessWarning
        True
    """


_SOURCES = {"random_bits", "threefry2x32"}
_DISCONTINUOUS = {
    "lt",
    "le",
    "gt",
    "ge",
    "eq",
    "ne",
    "argmax",
    "argmin",
    "floor",
    "ceil",
    "round",
    "sign",
    "convert_element_type",
}
_CALLS = {"jit", "pjit", "closed_call", "core_call", "checkpoint", "remat", "remat2"}

_INSTEAD = {
    "bernoulli": "gv.flip(p) (or gv.bernoulli(logits))",
    "categorical": "gv.categorical(logits)",
    "choice": "gv.categorical(logits)",
    "randint": "gv.categorical(logits)",
    "poisson": "gv.poisson(rate)",
    "binomial": "gv.binomial(total_count, probs)",
    "geometric": "gv.geometric(probs)",
    "permutation": "a genvi distribution",
}


def _is_discontinuous(eqn) -> bool:
    name = eqn.primitive.name
    if name not in _DISCONTINUOUS:
        return False
    if name == "convert_element_type":
        import jax.numpy as jnp

        new = eqn.params.get("new_dtype")
        return new is not None and not jnp.issubdtype(new, jnp.inexact)
    return True


def _sampler(eqn) -> str | None:
    """The public ``jax.random`` function this equation was traced in, if any."""
    tb = getattr(eqn.source_info, "traceback", None)
    found = None
    for fr in getattr(tb, "frames", ()):
        if fr.file_name.replace("\\", "/").endswith("jax/_src/random.py"):
            found = fr.function_name.lstrip("_")
    return found


class _Found(GenviError):
    pass


def check(jaxpr, const_tangents: tuple, in_tangents: tuple, name: str) -> None:
    """Raise or warn (see the module docstring) for ``jaxpr`` whose constants and inputs
    carry a tangent where the masks say so."""
    found = _analyse(jaxpr, const_tangents, in_tangents)
    if found is None:
        return
    prim, sampler = found
    if sampler in _INSTEAD:
        raise ModelingError(
            f"expectation {name}: jax.random.{sampler} draws a value whose law depends on "
            "a parameter being differentiated. genvi cannot see that draw, so its gradient "
            f"would be lost (JAX differentiates it as 0). Make the choice with "
            f'{_INSTEAD[sampler]} @ "addr" inside a @gv.gen function, with the gradient '
            "strategy you want (.reinforce, .enum, .mvd)"
        )
    where = f" (in jax.random.{sampler})" if sampler else ""
    warnings.warn(
        f"expectation {name}: `{prim}`{where} is a discontinuous function of a raw "
        "jax.random draw and of a parameter being differentiated; its pathwise gradient "
        "misses the jumps, so the gradient estimate is biased. Draw the value with a genvi "
        'distribution instead (e.g. gv.flip(p) @ "b"), whose strategy accounts for them',
        RawRandomnessWarning,
        stacklevel=3,
    )


@functools.lru_cache(maxsize=512)
def _analyse(jaxpr, const_tangents: tuple, in_tangents: tuple):
    try:
        _propagate(
            jaxpr,
            [False] * len(jaxpr.constvars) + [False] * len(jaxpr.invars),
            list(const_tangents) + list(in_tangents),
        )
    except _Found as f:
        return f.args[0]
    return None


def _propagate(jaxpr, r_in: list, t_in: list) -> tuple[list, list]:
    """Static propagation of two bits per variable: R (depends on a raw random draw) and T
    (depends on a differentiated value). Returns the bits of the outputs."""
    r: dict = {}
    t: dict = {}
    for v, rb, tb in zip(list(jaxpr.constvars) + list(jaxpr.invars), r_in, t_in, strict=True):
        r[v], t[v] = rb, tb

    def get(v):
        if isinstance(v, Literal):
            return False, False
        return r.get(v, False), t.get(v, False)

    for eqn in jaxpr.eqns:
        ins = [get(v) for v in eqn.invars]
        rs, ts = [a for a, _ in ins], [b for _, b in ins]
        name = eqn.primitive.name
        if eqn.primitive is sample_p:
            n_ops = eqn.params["n_ops"]
            outs = [(False, any(ts[1 : len(ts) - n_ops]))] * len(eqn.outvars)
        elif name in _SOURCES:
            outs = [(True, False)] * len(eqn.outvars)
        elif name in _CALLS or name.startswith("custom_"):
            inner = _inner(eqn)
            if inner is None:
                outs = [(any(rs), any(ts))] * len(eqn.outvars)
            else:
                jx, n_consts = inner
                ro, to = _propagate(jx, [False] * n_consts + rs, [False] * n_consts + ts)
                outs = list(zip(ro, to, strict=True))
        elif name == "cond":
            outs = [(False, False)] * len(eqn.outvars)
            for br in eqn.params["branches"]:
                n = len(br.jaxpr.constvars)
                ro, to = _propagate(br.jaxpr, [False] * n + rs[1:], [False] * n + ts[1:])
                outs = [(a or c, b or d) for (a, b), c, d in zip(outs, ro, to, strict=True)]
        elif name == "scan":
            outs = _loop(eqn, rs, ts)
        else:
            outs = [(any(rs), any(ts))] * len(eqn.outvars)
            if name not in ("while",) and _is_discontinuous(eqn) and any(rs) and any(ts):
                raise _Found((name, _sampler(eqn)))
        for v, (rb, tb) in zip(eqn.outvars, outs, strict=True):
            r[v], t[v] = rb, tb
    outs = [get(v) for v in jaxpr.outvars]
    return [a for a, _ in outs], [b for _, b in outs]


def _inner(eqn):
    for k in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        j = eqn.params.get(k)
        if j is None:
            continue
        jx = j.jaxpr if hasattr(j, "consts") else j  # a ClosedJaxpr's constants are values
        if hasattr(jx, "invars") and len(jx.invars) == len(eqn.invars):
            return jx, len(jx.constvars)
    return None


def _loop(eqn, rs, ts):
    p = eqn.params
    body = p["jaxpr"].jaxpr
    nc, ncar = p["num_consts"], p["num_carry"]
    cr, ct = rs[nc : nc + ncar], ts[nc : nc + ncar]
    n_body_consts = len(body.constvars)
    for _ in range(4):  # the carry's bits reach a fixed point in a few passes
        ro, to = _propagate(
            body,
            [False] * n_body_consts + rs[:nc] + cr + rs[nc + ncar :],
            [False] * n_body_consts + ts[:nc] + ct + ts[nc + ncar :],
        )
        ncr = [a or b for a, b in zip(cr, ro[:ncar], strict=True)]
        nct = [a or b for a, b in zip(ct, to[:ncar], strict=True)]
        if ncr == cr and nct == ct:
            break
        cr, ct = ncr, nct
    return list(zip(cr + ro[ncar:], ct + to[ncar:], strict=True))


__all__ = ["RawRandomnessWarning", "check"]
