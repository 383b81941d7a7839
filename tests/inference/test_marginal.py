"""gv.marginal: unbiased density and reciprocal-density estimates, as guide and as model."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import norm

import genvi as gv

from ._stats import assert_unbiased, draws

A, S = 2.0, 0.5
POST_SD = S / np.sqrt(A**2 + S**2)  # sd of u | z


@gv.gen
def hier(a):
    u = gv.normal(0.0, 1.0) @ "u"
    gv.normal(a * u, S) @ "z"


@gv.gen
def narrow(kept, a):
    """A proposal for u | z, narrower than the posterior (both estimates then have finite
    variance)."""
    gv.normal(kept["z"] * a / (a**2 + S**2), 0.8 * POST_SD) @ "u"


def marginal_z(z):
    return norm.logpdf(z, 0.0, np.sqrt(A**2 + S**2))


@pytest.mark.parametrize("particles", [1, 3])
def test_density_and_reciprocal_estimates_are_unbiased(particles):
    q = gv.marginal(hier, "u", narrow, particles)
    z0 = 0.7

    def one(key):
        k1, k2 = jax.random.split(key)
        tr = q.simulate(k1, A)
        est, _ = q.estimate_logpdf(k2, {"z": z0}, A)
        # E[exp(-score) | z] = 1/p(z), so E[p(z) exp(-score)] = 1
        return jnp.exp(est), jnp.exp(marginal_z(tr.choices["z"]) - tr.score)

    dens, recip = draws(one)
    assert_unbiased(dens, jnp.exp(marginal_z(z0)), "density")
    assert_unbiased(recip, 1.0, "reciprocal")


M3 = jnp.array([-0.5, 0.0, 0.7])  # close components: light-tailed reciprocal estimates
LU = jnp.array([0.3, -0.2, 0.5])


@gv.gen
def mixture():
    u = gv.categorical(LU) @ "u"
    return gv.normal(M3[u], 1.0) @ "z"


@gv.gen
def nested():
    z = mixture() @ "inner"
    gv.normal(z, 1.0) @ "y"


def mixture_logpdf(z):
    return jax.scipy.special.logsumexp(jax.nn.log_softmax(LU) + norm.logpdf(z, M3, 1.0))


@pytest.mark.parametrize("particles", [1, 2])
def test_prior_proposal_with_a_discrete_latent_and_a_nested_address(particles):
    q = gv.marginal(mixture, "u", particles=particles)
    qn = gv.marginal(nested, ("inner", "u"), particles=particles)
    z0, y0 = 0.4, 1.1

    def one(key):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        tr = q.simulate(k1)
        est, _ = q.estimate_logpdf(k2, {"z": z0})
        trn = qn.simulate(k3)
        zn, yn = trn.choices["inner", "z"], trn.choices["y"]
        estn, _ = qn.estimate_logpdf(k4, {"inner": {"z": z0}, "y": y0})
        exact_n = mixture_logpdf(zn) + norm.logpdf(yn, zn, 1.0)
        return (
            jnp.exp(est),
            jnp.exp(mixture_logpdf(tr.choices["z"]) - tr.score),
            jnp.exp(estn),
            jnp.exp(exact_n - trn.score),
        )

    dens, recip, dens_n, recip_n = draws(one)
    assert_unbiased(dens, jnp.exp(mixture_logpdf(z0)), "density")
    assert_unbiased(recip, 1.0, "reciprocal")
    exact_n = jnp.exp(mixture_logpdf(z0) + norm.logpdf(y0, z0, 1.0))
    assert_unbiased(dens_n, exact_n, "nested density")
    assert_unbiased(recip_n, 1.0, "nested reciprocal")


def test_importance_weights_are_proper():
    """Partly constrained: the weight's mean is the constrained marginal; fully: the
    density estimate."""
    q = gv.marginal(nested, ("inner", "u"), particles=2)
    z0, y0 = 0.4, 1.1

    def one(key):
        k1, k2 = jax.random.split(key)
        tr, w = q.importance(k1, {"y": y0})
        _, w_full = q.importance(k2, {"inner": {"z": z0}, "y": y0})
        assert set(tr.choices.addresses()) == {("inner", "z"), ("y",)}
        return jnp.exp(w), jnp.exp(w_full)

    w, w_full = draws(one)
    sd = np.sqrt(1.0 + 1.0)  # y = z + N(0, 1), z | u ~ N(M3[u], 1)
    py = jnp.exp(jax.scipy.special.logsumexp(jax.nn.log_softmax(LU) + norm.logpdf(y0, M3, sd)))
    assert_unbiased(w, py, "partial importance weight")
    assert_unbiased(w_full, jnp.exp(mixture_logpdf(z0) + norm.logpdf(y0, z0, 1.0)), "full")


# ----- a marginal standing where the model stands ----------------------------------


@gv.gen
def joint():
    u = gv.flip(0.3) @ "u"
    z = gv.normal(jnp.where(u == 1, 2.0, -1.0), 1.0) @ "z"
    gv.normal(z, 0.5) @ "x"


MARG = gv.marginal(joint, "u", particles=2)


@gv.gen
def outer_model():
    MARG() @ "h"  # a marginal called inside a @gen model


@gv.gen
def zguide(phi):
    gv.normal(phi[0], jnp.exp(phi[1])) @ "z"


@gv.gen
def hguide(phi):
    zguide(phi) @ "h"


def test_a_marginal_model_inside_a_gen_model_in_an_elbo():
    """E[log p̂(x, z) - log q(z)] with p̂ from 2 prior draws of u: exact by enumerating
    (u_1, u_2) and Gauss-Hermite quadrature over z."""
    phi = jnp.array([0.4, -0.3])
    x = 0.9

    def exact(phi):
        e, w = np.polynomial.hermite_e.hermegauss(60)
        w = jnp.asarray(w / np.sqrt(2 * np.pi))
        z = phi[0] + jnp.exp(phi[1]) * jnp.asarray(e)
        pu = jnp.array([0.7, 0.3])
        lpz = jnp.stack([norm.logpdf(z, -1.0, 1.0), norm.logpdf(z, 2.0, 1.0)]) + norm.logpdf(
            x, z, 0.5
        )
        total = 0.0
        for u1 in range(2):
            for u2 in range(2):
                total = total + pu[u1] * pu[u2] * (jnp.logaddexp(lpz[u1], lpz[u2]) - jnp.log(2.0))
        return jnp.sum(w * (total - norm.logpdf(z, phi[0], jnp.exp(phi[1]))))

    obj = gv.objectives.elbo(outer_model, hguide)
    value, grad = draws(
        lambda k: obj.value_and_grad_estimate(k, (), (phi,), {"h": {"x": x}}, argnums=1)
    )
    ev, eg = jax.value_and_grad(exact)(phi)
    assert_unbiased(value, ev, "elbo with a marginal model")
    assert_unbiased(grad[0], eg, "its gradient")
    # assess has no key: it says what to use instead
    with pytest.raises(gv.ModelingError, match="estimate_logpdf"):
        outer_model.assess({"h": {"z": 0.1, "x": x}})


# ----- errors -------------------------------------------------------------------------


def test_marginal_errors():
    key = jax.random.key(0)
    with pytest.raises(gv.AddressError, match="makes no choice at 'w'"):
        gv.marginal(hier, "w").simulate(key, A)
    with pytest.raises(gv.AddressError, match="hold 'u', which .* integrates out"):
        gv.marginal(hier, "u").estimate_logpdf(key, {"z": 0.1, "u": 0.2}, A)

    @gv.gen
    def wrong(kept, a):
        gv.normal(0.0, 1.0) @ "v"

    with pytest.raises(gv.AddressError, match="samples 'v', which is not marginalized"):
        gv.marginal(hier, "u", wrong).estimate_logpdf(key, {"z": 0.1}, A)
    with pytest.raises(gv.ModelingError, match="estimate_logpdf"):
        gv.marginal(hier, "u").assess({"z": 0.1}, A)

    @gv.gen
    def copy(m):
        u = gv.normal(m, 1.0) @ "u"
        gv.normal(u, 1.0) @ "z"

    @gv.gen
    def batched():
        gv.vmap(copy)(jnp.zeros(3)) @ "v"

    with pytest.raises(gv.ModelingError, match=r"give the marginal a proposal"):
        gv.marginal(batched, ("v", "u")).simulate(key)
    assert "marginal(hier) over 'u', proposal prior" in repr(gv.marginal(hier, "u"))


def test_keys_reach_marginals_inside_vmap():
    """``gv.vmap`` of a marginal: ``estimate_logpdf`` hands each copy its own key, so the
    product of the copies' estimates is unbiased for the product of their densities."""
    copies = gv.vmap(gv.marginal(hier, "u", narrow, particles=2))
    a = jnp.array([2.0, 2.2, 2.5])  # the proposal stays wider than half the posterior
    zs = jnp.array([0.3, -0.8, 1.2])
    est = draws(lambda k: jnp.exp(copies.estimate_logpdf(k, {"z": zs}, a)[0]))
    exact = jnp.prod(jnp.exp(norm.logpdf(zs, 0.0, jnp.sqrt(a**2 + S**2))))
    assert_unbiased(est, exact, "vmap of a marginal")
    assert copies.has_estimated_density and not gv.vmap(gv.normal).has_estimated_density


def test_keys_reach_marginals_inside_scan():
    @gv.gen
    def step(a, _):
        u = gv.normal(0.0, 1.0) @ "u"
        gv.normal(a * u, S) @ "z"
        return a, None

    @gv.gen
    def prop(kept, a, _):
        gv.normal(kept["z"] * a / (a**2 + S**2), 0.8 * POST_SD) @ "u"

    chain = gv.scan(gv.marginal(step, "u", prop, particles=2), length=3)
    zs = jnp.array([0.3, -0.8, 1.2])
    est = draws(lambda k: jnp.exp(chain.estimate_logpdf(k, {"z": zs}, A, None)[0]))
    assert_unbiased(est, jnp.prod(jnp.exp(marginal_z(zs))), "scan of a marginal")
