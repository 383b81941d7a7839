"""gv.scan: an AR(1) state-space model against its hand-written density; compiled once."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats as st

import genvi as gv

A, S, OBS = 0.8, 1.0, 0.5


@gv.gen
def step(z, drift):
    z = gv.normal(A * z + drift, S) @ "z"
    gv.normal(z, OBS) @ "y"
    return z, 2.0 * z


def ar1_logpdf(z0, zs, ys, drifts):
    prev = np.concatenate([[z0], zs[:-1]])
    return (st.norm(A * prev + drifts, S).logpdf(zs) + st.norm(zs, OBS).logpdf(ys)).sum()


DRIFTS = jnp.array([0.5, -0.2, 0.0, 1.0, 0.3])


def test_simulate_and_assess_equal_the_sum_over_steps(key):
    chain = gv.scan(step)
    tr = jax.jit(chain.simulate)(key, 1.5, DRIFTS)
    zs, ys = np.asarray(tr["z"]), np.asarray(tr["y"])
    assert zs.shape == ys.shape == (5,)
    carry, out = tr.retval
    np.testing.assert_allclose(carry, zs[-1])
    np.testing.assert_allclose(out, 2 * zs, rtol=1e-6)
    want = ar1_logpdf(1.5, zs, ys, np.asarray(DRIFTS))
    np.testing.assert_allclose(tr.score, want, rtol=1e-5)
    logp, (c, out2) = chain.assess(tr.choices, 1.5, DRIFTS)
    np.testing.assert_allclose(logp, want, rtol=1e-5)
    np.testing.assert_allclose(out2, out, rtol=1e-6)


def test_length_without_xs(key):
    chain = gv.scan(step, length=7)
    tr = chain.simulate(key, 0.0, jnp.zeros(7))
    tr_none = gv.scan(gv.gen(lambda z, _: step.fn(z, 0.0)), length=7).simulate(key, 0.0)
    assert tr_none["z"].shape == (7,)
    want = ar1_logpdf(0.0, np.asarray(tr_none["z"]), np.asarray(tr_none["y"]), np.zeros(7))
    np.testing.assert_allclose(tr_none.score, want, rtol=1e-5)
    assert tr["z"].shape == (7,)


def test_importance_with_observed_ys(key):
    chain = gv.scan(step)
    ys = jnp.array([0.3, 0.1, -0.5, 1.2, 0.8])
    tr, w = jax.jit(chain.importance)(key, {"y": ys}, 1.5, DRIFTS)
    zs = np.asarray(tr["z"])
    np.testing.assert_allclose(tr["y"], ys)
    np.testing.assert_allclose(w, st.norm(zs, OBS).logpdf(np.asarray(ys)).sum(), rtol=1e-5)
    np.testing.assert_allclose(
        tr.score, ar1_logpdf(1.5, zs, np.asarray(ys), np.asarray(DRIFTS)), rtol=1e-5
    )
    # everything constrained: the weight is the density
    _, w_all = chain.importance(key, tr.choices, 1.5, DRIFTS)
    np.testing.assert_allclose(w_all, tr.score, rtol=1e-5)


def _count_eqns(jaxpr) -> int:
    """Equations of a jaxpr, counting those of sub-jaxprs (loop and branch bodies)."""
    n = 0
    for eqn in jaxpr.eqns:
        n += 1
        for p in eqn.params.values():
            for sub in p if isinstance(p, (tuple, list)) else (p,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    n += _count_eqns(inner)
    return n


@pytest.mark.parametrize("method", ["simulate", "assess", "importance"])
def test_staged_program_does_not_grow_with_length(key, method):
    def staged(n):
        chain = gv.scan(step, length=n)
        xs = jnp.zeros(n)
        if method == "simulate":
            fn, args = (lambda k, x: chain.simulate(k, 0.0, x)), (key, xs)
        elif method == "assess":
            cm = {"z": jnp.zeros(n), "y": jnp.zeros(n)}
            fn, args = (lambda c, x: chain.assess(c, 0.0, x)), (cm, xs)
        else:
            fn, args = (lambda k, c, x: chain.importance(k, c, 0.0, x)), (key, {"y": xs}, xs)
        return jax.make_jaxpr(fn)(*args).jaxpr

    short, long = staged(3), staged(300)
    assert len(short.eqns) == len(long.eqns)
    assert _count_eqns(short) == _count_eqns(long)
    has_loop = any(e.primitive.name == "scan" for e in long.eqns)
    if method == "assess":
        # every choice is given, so the carries are known: the steps run vectorized
        assert not has_loop
    else:
        # the latent z_t depends on z_{t-1}: a loop remains, and its body is counted
        assert has_loop and _count_eqns(long) > len(long.eqns)


def test_scan_inside_a_model_with_grad(key):
    @gv.gen
    def model(a0):
        z0 = gv.normal(a0, 1.0) @ "z0"
        return gv.scan(step)(z0, DRIFTS) @ "chain"

    tr = jax.jit(model.simulate)(key, 0.2)
    assert tr.choices.addresses() == [("chain", "y"), ("chain", "z"), ("z0",)]
    z0, zs, ys = float(tr["z0"]), np.asarray(tr["chain", "z"]), np.asarray(tr["chain", "y"])
    want = st.norm(0.2, 1.0).logpdf(z0) + ar1_logpdf(z0, zs, ys, np.asarray(DRIFTS))
    np.testing.assert_allclose(tr.score, want, rtol=1e-5)
    # gradient of the density in z0: -(z0 - a0) + A (zs[0] - A z0 - d0) / S^2
    g = jax.grad(lambda c: model.assess(c, 0.2)[0])(tr.choices)
    want_g = -(z0 - 0.2) + A * (zs[0] - A * z0 - float(DRIFTS[0])) / S**2
    np.testing.assert_allclose(g["z0"], want_g, rtol=1e-4)


def test_errors(key):
    chain = gv.scan(step, length=5)
    with pytest.raises(gv.ChoiceTypeError, match="length=5 but xs has 3 rows"):
        chain.simulate(key, 0.0, jnp.zeros(3))
    with pytest.raises(
        gv.ChoiceTypeError, match=r"'y' has shape \(4,\).*leading time axis of size 5"
    ):
        chain.importance(key, {"y": jnp.zeros(4)}, 0.0, DRIFTS)
    with pytest.raises(gv.ModelingError, match="give length="):
        gv.scan(step).simulate(key, 0.0)
    with pytest.raises(gv.AddressError, match="'w' that the model never visits"):
        chain.importance(key, {"w": jnp.zeros(5)}, 0.0, DRIFTS)

    @gv.gen
    def not_a_pair(z, x):
        return gv.normal(z, 1.0) @ "z"

    with pytest.raises(gv.ModelingError, match="must return a pair"):
        gv.scan(not_a_pair, length=2).simulate(key, 0.0)
