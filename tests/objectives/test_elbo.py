"""ELBO and IWAE (with STL and DReG) against closed forms, quadrature and enumeration."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import genvi as gv

from ._exact import (
    GOBS,
    OBS,
    PHI,
    THETA,
    assert_unbiased,
    check_vg,
    d_log_evidence,
    dguide,
    dmodel,
    draws,
    exact_value_and_grad,
    g_elbo,
    g_iwae2_quadrature,
    g_log_evidence,
    g_posterior,
    gguide,
    gmodel,
    logmeanexp,
    vg_draws,
)

G_THETA = 0.3
G_PHI = jnp.array([0.1, -0.5])


@pytest.mark.parametrize("stl", [False, True])
def test_elbo_gaussian_value_and_gradient(stl):
    est = vg_draws(gv.objectives.elbo(gmodel, gguide, stl=stl), (G_THETA,), (G_PHI,), GOBS)
    ev, (et, ep) = jax.value_and_grad(g_elbo, argnums=(0, 1))(G_THETA, G_PHI)
    value, (gm, gg) = est
    assert_unbiased(value, ev, "elbo value")
    assert_unbiased(gm[0], et, "elbo d theta")
    assert_unbiased(gg[0], ep, "elbo d phi")


def test_elbo_at_exact_posterior_is_log_evidence():
    m, s = g_posterior(G_THETA)
    phi = jnp.array([m, jnp.log(s)])
    logz = g_log_evidence(G_THETA)
    for stl in (False, True):
        value, (_, gg) = vg_draws(
            gv.objectives.elbo(gmodel, gguide, stl=stl), (G_THETA,), (phi,), GOBS, n=2000
        )
        np.testing.assert_allclose(value, logz, atol=2e-5)  # every draw: zero variance
        if stl:  # sticking the landing: the guide's gradient vanishes draw by draw
            np.testing.assert_allclose(gg[0], 0.0, atol=2e-4)
        else:  # the plain estimator only vanishes on average
            assert_unbiased(gg[0], jnp.zeros(2), "plain elbo d phi at the posterior")


@pytest.mark.parametrize(
    "dist", [gv.categorical.enum, gv.categorical.reinforce, gv.categorical.mvd]
)
def test_elbo_discrete_guide(dist):
    est = vg_draws(gv.objectives.elbo(dmodel, dguide(dist)), (THETA,), (PHI,), OBS)
    check_vg(est, exact_value_and_grad(lambda lp, lq: jnp.sum(lp - lq), 1), f"elbo {dist}")


@pytest.mark.parametrize("dist", [gv.categorical.enum, gv.categorical.reinforce])
def test_iwae_discrete_guide(dist):
    est = vg_draws(gv.objectives.iwae(dmodel, dguide(dist), 3), (THETA,), (PHI,), OBS)
    check_vg(est, exact_value_and_grad(lambda lp, lq: logmeanexp(lp - lq), 3), f"iwae {dist}")


@pytest.mark.slow
def test_iwae_increases_with_particles_towards_log_evidence():
    guide = dguide(gv.categorical.reinforce)
    logz = d_log_evidence(THETA)
    exact = [exact_value_and_grad(lambda lp, lq: logmeanexp(lp - lq), k)[0] for k in (1, 2, 4)]
    assert exact[0] < exact[1] < exact[2] < logz  # (K = 1 and 3 are checked above)
    obj = gv.objectives.iwae(dmodel, guide, 4)
    vals = draws(lambda key: obj.estimate(key, (THETA,), (PHI,), OBS), 20_000)
    assert_unbiased(vals, exact[2], "iwae K=4")
    # Many particles on the Gaussian model: the gap to log p(x) closes.
    phi = jnp.array([-1.0, 0.3])  # a poor guide
    gaps = []
    for k in (1, 64):
        obj = gv.objectives.iwae(gmodel, gguide, k)
        vals = draws(lambda key, obj=obj: obj.estimate(key, (G_THETA,), (phi,), GOBS), 4000)
        gaps.append(float(g_log_evidence(G_THETA) - np.mean(vals)))
    assert gaps[0] > 0.5 and 0.0 < gaps[1] < 0.1 * gaps[0], gaps


def test_iwae_dreg_is_unbiased_and_has_lower_variance():
    """K = 2 on the Gaussian model, exact by Gauss-Hermite quadrature."""
    ev, (et, ep) = jax.value_and_grad(g_iwae2_quadrature, argnums=(0, 1))(G_THETA, G_PHI)
    spread = {}
    for dreg in (False, True):
        obj = gv.objectives.iwae(gmodel, gguide, 2, dreg=dreg)
        value, (gm, gg) = vg_draws(obj, (G_THETA,), (G_PHI,), GOBS)
        assert_unbiased(value, ev, f"iwae(dreg={dreg}) value")
        assert_unbiased(gm[0], et, f"iwae(dreg={dreg}) d theta")
        assert_unbiased(gg[0], ep, f"iwae(dreg={dreg}) d phi")
        spread[dreg] = np.var(np.asarray(gg[0]), axis=0).sum()
    assert spread[True] < spread[False], spread


def test_dreg_needs_a_reparameterized_guide():
    @gv.gen
    def guide(phi):
        gv.normal.reinforce(phi[0], 1.0) @ "z"

    obj = gv.objectives.iwae(gmodel, guide, 3, dreg=True)
    with pytest.raises(gv.StrategyError, match=r"'z' \(normal, REINFORCE\)"):
        obj.grad_estimate(jax.random.key(0), (G_THETA,), (G_PHI,), GOBS, argnums=1)


# ----- batched data ------------------------------------------------------------------

XS = jnp.array([0.5, -1.0, 2.0, 0.3])


@gv.gen
def point(mu):
    z = gv.normal(mu, 1.0) @ "z"
    gv.normal(z, 0.5) @ "x"


@gv.gen
def point_guide(phi):
    gv.normal(phi[0], jnp.exp(phi[1])) @ "z"


@gv.gen
def vmapped_model(theta):
    gv.vmap(point)(jnp.full(XS.shape, theta)) @ "data"


@gv.gen
def vmapped_guide(phis):
    gv.vmap(point_guide)(phis) @ "data"


@pytest.mark.slow
def test_elbo_and_iwae_with_vmap_over_data_points():
    phis = jnp.stack([jnp.linspace(-1.0, 1.0, 4), jnp.full(4, -0.4)], axis=1)
    obs = {"data": {"x": XS}}

    def exact(theta, phis):
        return jnp.sum(jax.vmap(lambda x, p: g_elbo(theta, p, x))(XS, phis))

    est = vg_draws(gv.objectives.elbo(vmapped_model, vmapped_guide), (G_THETA,), (phis,), obs)
    ev, (et, ep) = jax.value_and_grad(exact, argnums=(0, 1))(G_THETA, phis)
    value, (gm, gg) = est
    assert_unbiased(value, ev, "vmapped elbo")
    assert_unbiased(gm[0], et, "vmapped elbo d theta")
    assert_unbiased(gg[0], ep, "vmapped elbo d phi")
    # IWAE over the whole batch stays between the ELBO and log p(x).
    iw = gv.objectives.iwae(vmapped_model, vmapped_guide, 8)
    vals = draws(lambda k: iw.estimate(k, (G_THETA,), (phis,), obs), 4000)
    logz = jnp.sum(g_log_evidence(G_THETA, XS))
    assert float(ev) < float(np.mean(vals)) < float(logz)


@gv.gen
def minibatch_model(theta):
    z = gv.normal(theta, 1.0) @ "z"
    gv.normal(jnp.full(XS.shape, z), 0.5) @ "x"  # the whole minibatch at one address


def test_elbo_with_a_minibatch_at_one_address():
    def exact(theta, phi):
        m, s = phi[0], jnp.exp(phi[1])
        e_prior = -0.5 * jnp.log(2 * jnp.pi) - 0.5 * ((m - theta) ** 2 + s**2)
        e_lik = jnp.sum(-0.5 * jnp.log(2 * jnp.pi * 0.25) - ((XS - m) ** 2 + s**2) / 0.5)
        return e_prior + e_lik + 0.5 * jnp.log(2 * jnp.pi * jnp.e * s**2)

    est = vg_draws(gv.objectives.elbo(minibatch_model, gguide), (G_THETA,), (G_PHI,), {"x": XS})
    ev, (et, ep) = jax.value_and_grad(exact, argnums=(0, 1))(G_THETA, G_PHI)
    value, (gm, gg) = est
    assert_unbiased(value, ev, "minibatch elbo")
    assert_unbiased(gm[0], et, "minibatch elbo d theta")
    assert_unbiased(gg[0], ep, "minibatch elbo d phi")
