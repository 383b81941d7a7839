"""How gv.scan runs its steps (genvi/combinators/_steps.py): the same values as
``lax.scan``, with the step-local work vectorized out of the loop."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import genvi as gv
from genvi.combinators._steps import run_steps
from genvi.core._derive import row_keys

N = 7


def _scan_eqns(jaxpr):
    return [e for e in jaxpr.eqns if e.primitive.name == "scan"]


def _same(a, b, rtol=1e-6):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb, strict=True):
        assert jnp.shape(x) == jnp.shape(y)
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=1e-6)


XS = {"a": jnp.linspace(-1.0, 1.0, N), "b": jnp.arange(N, dtype=jnp.float32)}


def carry_dependent(c, x):
    h, total = c
    h2 = jnp.tanh(0.5 * h + x["a"])  # depends on the carry
    local = jnp.sin(x["b"]) * 3.0  # step-local
    return (h2, total + h2 * local), {"local": local, "h": h2}


def passthrough(c, x):
    return c, jnp.cos(x["a"]) + x["b"]


def given_carry(c, x):
    # the next carry is a step input (as in assess of a chain): every step is independent
    return x["a"], (x["a"] - 0.9 * c) ** 2 + x["b"]


@pytest.mark.parametrize("f", [carry_dependent, passthrough, given_carry])
def test_same_values_and_gradients_as_lax_scan(f):
    init = (jnp.float32(0.3), jnp.float32(0.0)) if f is carry_dependent else jnp.float32(0.3)
    _same(run_steps(f, init, XS, N), jax.lax.scan(f, init, XS, length=N))

    def loss(runner, xs):
        c, ys = runner(xs)
        return sum(jnp.sum(v) for v in jax.tree_util.tree_leaves((c, ys)))

    g_new = jax.grad(lambda xs: loss(lambda v: run_steps(f, init, v, N), xs))(XS)
    g_ref = jax.grad(lambda xs: loss(lambda v: jax.lax.scan(f, init, v, length=N), xs))(XS)
    _same(g_new, g_ref, rtol=1e-5)


def test_parallel_when_the_carries_are_known():
    jaxpr = jax.make_jaxpr(lambda xs: run_steps(given_carry, jnp.float32(0.3), xs, N))(XS).jaxpr
    assert not _scan_eqns(jaxpr)
    jaxpr = jax.make_jaxpr(lambda xs: run_steps(passthrough, jnp.float32(0.3), xs, N))(XS).jaxpr
    assert not _scan_eqns(jaxpr)


def test_only_carry_dependent_work_stays_in_the_loop():
    init = (jnp.float32(0.3), jnp.float32(0.0))
    jaxpr = jax.make_jaxpr(lambda xs: run_steps(carry_dependent, init, xs, N))(XS).jaxpr
    (loop,) = _scan_eqns(jaxpr)
    body = loop.params["jaxpr"].jaxpr
    names = {e.primitive.name for e in body.eqns}
    assert "tanh" in names  # needs the carry
    assert "sin" not in names  # step-local: computed before the loop, for all steps


def test_loop_invariant_values_are_not_stacked_per_step():
    w = jnp.ones((64, 64))

    def f(h, x):
        return jnp.tanh(w @ h + x), w[0] @ x  # both parts use the weights

    xs = jnp.ones((N, 64))
    jaxpr = jax.make_jaxpr(lambda xs: run_steps(f, jnp.zeros(64), xs, N))(xs).jaxpr
    shapes = {tuple(v.aval.shape) for e in jaxpr.eqns for v in e.outvars}
    assert (N, 64, 64) not in shapes  # the weights are passed once, not broadcast to N rows
    _same(run_steps(f, jnp.zeros(64), xs, N), jax.lax.scan(f, jnp.zeros(64), xs, length=N))


def test_keys_as_step_inputs_draw_what_each_step_would():
    keys = jax.random.split(jax.random.key(3), N)

    def f(c, k):
        z = jax.random.normal(jax.random.fold_in(k, 11), ())
        return c + z, z

    _same(run_steps(f, jnp.float32(0.0), keys, N), jax.lax.scan(f, jnp.float32(0.0), keys))


@pytest.mark.parametrize("n", [0, 1])
def test_short_loops(n):
    xs = {"a": XS["a"][:n], "b": XS["b"][:n]}
    init = (jnp.float32(0.3), jnp.float32(0.0))
    _same(
        run_steps(carry_dependent, init, xs, n), jax.lax.scan(carry_dependent, init, xs, length=n)
    )


def test_effects_keep_the_plain_loop():
    seen = []

    def f(c, x):
        jax.debug.callback(lambda v: seen.append(float(v)), x["a"])
        return c + x["a"], x["b"]

    c, ys = run_steps(f, jnp.float32(0.0), XS, N)
    jax.effects_barrier()
    assert sorted(seen) == sorted(np.asarray(XS["a"]).tolist())  # once per step, no more
    _same((c, ys), jax.lax.scan(f, jnp.float32(0.0), XS))


def test_under_vmap_and_jit():
    inits = jnp.linspace(0.0, 1.0, 3)

    def f(c, x):
        return jnp.tanh(0.5 * c + x["a"]), jnp.sin(x["b"]) * c

    new = jax.jit(jax.vmap(lambda c0: run_steps(f, c0, XS, N)))(inits)
    _same(new, jax.vmap(lambda c0: jax.lax.scan(f, c0, XS))(inits))


# ----- through gv.scan ------------------------------------------------------------------


@gv.gen
def ar_step(z, drift):
    z = gv.normal(0.8 * z + drift, 1.0) @ "z"
    gv.normal(z, 0.5) @ "y"
    return z, None


@gv.gen
def mf_step(c, p):
    gv.normal(p[0], jnp.exp(p[1])) @ "z"
    return c, None


def _manual_simulate(key, drifts):
    """gv.scan's simulate as a plain Python loop over the same per-step keys."""
    keys = row_keys(key, drifts.shape[0])  # the per-step keys gv.scan derives
    z, zs, ys, score = jnp.float32(0.0), [], [], 0.0
    for t in range(drifts.shape[0]):
        tr = ar_step.simulate(keys[t], z, drifts[t])
        z = tr.retval[0]
        zs.append(tr.choices["z"])
        ys.append(tr.choices["y"])
        score = score + tr.score
    return jnp.stack(zs), jnp.stack(ys), score


def test_gv_scan_draws_are_those_of_a_plain_loop(key):
    drifts = jnp.linspace(-0.5, 0.5, N)
    chain = gv.scan(ar_step)
    tr = jax.jit(chain.simulate)(key, 0.0, drifts)
    zs, ys, score = _manual_simulate(key, drifts)
    _same((tr.choices["z"], tr.choices["y"], tr.score), (zs, ys, score), rtol=1e-5)


def test_gv_scan_assess_runs_in_parallel_and_matches_the_loop(key):
    drifts = jnp.linspace(-0.5, 0.5, N)
    chain = gv.scan(ar_step)
    tr = chain.simulate(key, 0.0, drifts)
    jaxpr = jax.make_jaxpr(lambda c: chain.assess(c, 0.0, drifts))(tr.choices).jaxpr
    assert not _scan_eqns(jaxpr)
    logp, (zT, _) = chain.assess(tr.choices, 0.0, drifts)
    np.testing.assert_allclose(logp, tr.score, rtol=1e-5)
    np.testing.assert_allclose(zT, tr.choices["z"][-1], rtol=1e-6)


def test_mean_field_guide_simulate_has_no_loop(key):
    chain = gv.scan(mf_step)
    params = jnp.stack([jnp.linspace(0, 1, N), jnp.full(N, -1.0)], axis=1)
    jaxpr = jax.make_jaxpr(lambda k: chain.simulate(k, 0.0, params).score)(key).jaxpr
    assert not _scan_eqns(jaxpr)
    tr = chain.simulate(key, 0.0, params)
    keys = row_keys(key, N)
    z = jnp.stack([mf_step.simulate(keys[t], 0.0, params[t]).choices["z"] for t in range(N)])
    np.testing.assert_allclose(tr.choices["z"], z, rtol=1e-6)


def test_enum_in_a_scan_keeps_its_error(key):
    @gv.gen
    def step(c, _):
        b = gv.flip.enum(0.3) @ "b"
        return c + b, None

    @gv.expectation
    def objective(key, p):
        tr = gv.scan(step, length=4).simulate(key, p, None)
        return jnp.sum(tr.retval[0])

    with pytest.raises(gv.StrategyError):
        objective.grad_estimate(key, 0.0)
