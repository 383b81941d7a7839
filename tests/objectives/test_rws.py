"""Reweighted wake-sleep: each of its three objectives against its exact expectation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import genvi as gv

from ._exact import (
    MU,
    OBS,
    PHI,
    THETA,
    assert_unbiased,
    d_logq,
    dguide,
    dmodel,
    enumerate_k,
    exact_value_and_grad,
    logmeanexp,
    vg_draws,
)

K = 3


def test_wake_model_is_the_iwae_gradient_in_theta():
    obj = gv.objectives.rws(dmodel, dguide(gv.categorical.reinforce), K)
    value, (gm, gg) = vg_draws(obj.wake_model, (THETA,), (PHI,), OBS)
    ev, (et, _) = exact_value_and_grad(lambda lp, lq: logmeanexp(lp - lq), K)
    assert_unbiased(value, ev, "wake_model value")
    assert_unbiased(gm[0], et, "wake_model d theta")
    np.testing.assert_array_equal(gg[0], 0.0)  # no gradient for the guide


def test_wake_guide_matches_the_exact_expectation_of_its_estimator():
    obj = gv.objectives.rws(dmodel, dguide(gv.categorical.reinforce), K)
    est = vg_draws(obj.wake_guide, (THETA,), (PHI,), OBS)

    def surrogate(lp, lq_sampled, phi):
        # the estimator's value and gradient: sum_k w_k log q(z_k), sampling held fixed
        w = jax.nn.softmax(lp - lq_sampled)
        return jnp.sum(w * lq_sampled)

    def expect_value(theta, phi):
        return enumerate_k(lambda lp, lq: surrogate(lp, lq, phi), theta, phi, K)

    def expect_grad(theta, phi):
        from ._exact import configs, d_logp

        c = configs(K)
        prob = jnp.exp(jnp.sum(d_logq(phi)[c], axis=1))
        lp = d_logp(theta)[c]

        def g(lpi, ci):
            w = jax.nn.softmax(lpi - d_logq(phi)[ci])
            return jax.grad(lambda p: jnp.sum(w * d_logq(p)[ci]))(phi)

        return jnp.sum(prob[:, None] * jax.vmap(g)(lp, c), axis=0)

    value, (gm, gg) = est
    assert_unbiased(value, expect_value(THETA, PHI), "wake_guide value")
    assert_unbiased(gg[0], expect_grad(THETA, PHI), "wake_guide d phi")
    np.testing.assert_array_equal(gm[0], 0.0)


def test_sleep_guide_plain_and_amortized():
    obj = gv.objectives.rws(dmodel, dguide(gv.categorical.reinforce), K)
    exact = jax.value_and_grad(lambda t, p: jnp.sum(jax.nn.softmax(t) * d_logq(p)), argnums=(0, 1))(
        THETA, PHI
    )
    value, (gm, gg) = vg_draws(obj.sleep_guide, (THETA,), (PHI,), OBS)
    assert_unbiased(value, exact[0], "sleep value")
    assert_unbiased(gg[0], exact[1][1], "sleep d phi")
    np.testing.assert_array_equal(gm[0], 0.0)

    # An amortized guide q(z | x) = Categorical(a + b x): x is dreamt by the model.
    @gv.gen
    def amortized(ab, x):
        gv.categorical(ab[0] + ab[1] * x) @ "z"

    ab = jnp.stack([PHI, jnp.array([0.5, -0.2, 0.3])])
    obj = gv.objectives.rws(dmodel, amortized, K, amortize=lambda ga, x: (ga[0], x["x"]))

    def exact_amortized(ab):
        e, w = np.polynomial.hermite_e.hermegauss(40)
        w = jnp.asarray(w / np.sqrt(2 * np.pi))
        total = 0.0
        for z in range(3):
            xs = MU[z] + jnp.asarray(e)  # x | z ~ N(MU[z], 1)
            lq = jax.vmap(lambda x, z=z: jax.nn.log_softmax(ab[0] + ab[1] * x)[z])(xs)
            total = total + jax.nn.softmax(THETA)[z] * jnp.sum(w * lq)
        return total

    ev, eg = jax.value_and_grad(exact_amortized)(ab)
    value, (_, gg) = vg_draws(obj.sleep_guide, (THETA,), (ab, 0.0), OBS)
    assert_unbiased(value, ev, "amortized sleep value")
    assert_unbiased(gg[0], eg, "amortized sleep d phi")


def test_rws_is_three_expectations():
    obj = gv.objectives.rws(dmodel, dguide(gv.categorical.reinforce), K)
    assert isinstance(obj, gv.objectives.RWS)
    assert all(isinstance(e, gv.Expectation) for e in obj)
