"""HVI, IWHVI and DIWHVI (ELBO / IWAE over gv.marginal), exact by enumeration.

The guide is hierarchical and discrete: ``u ~ Bernoulli(sigmoid(phi_u))`` (ENUM), then
``z ~ Categorical(softmax(phi_z[u]))`` (REINFORCE); ``u`` is integrated out with the
prior or with a learned proposal ``r(u | z) = Bernoulli(sigmoid(phi_r[z]))``. Every
expectation is a finite sum over ``(u_0, z, u_1, ..)``.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import pytest

import genvi as gv

from ._exact import OBS, THETA, check_vg, d_logp, dmodel, vg_draws

HPHI = {
    "u": jnp.asarray(0.4),
    "z": jnp.array([[0.5, -0.3, 0.2], [-0.6, 0.1, 0.9]]),
    "r": jnp.array([0.3, -0.8, 1.2]),
}


@gv.gen
def hguide(phi):
    u = gv.flip.enum(jax.nn.sigmoid(phi["u"])) @ "u"
    gv.categorical.reinforce(phi["z"][u]) @ "z"


@gv.gen
def rproposal(kept, phi):
    gv.flip.enum(jax.nn.sigmoid(phi["r"][kept["z"]])) @ "u"


def _q(phi):
    """log q(u) [2], log q(z | u) [2, 3], log r(u | z) [3, 2]."""
    pu = jax.nn.sigmoid(phi["u"])
    lqu = jnp.log(jnp.array([1 - pu, pu]))
    lqz = jax.nn.log_softmax(phi["z"], axis=-1)
    pr = jax.nn.sigmoid(phi["r"])
    lr = jnp.log(jnp.stack([1 - pr, pr], axis=-1))
    return lqu, lqz, lr


def _outer_terms(phi, inner, learned):
    """For each (u_0, z, u_1..u_{inner-1}): its probability and log p(x, z) - log q̂(z)."""
    lqu, lqz, lr = _q(phi)

    def logw(u, z):  # log of q(z, u) / r(u; z)
        return lqu[u] + lqz[u, z] - (lr[z, u] if learned else lqu[u])

    probs, vals = [], []
    for u0, z, *rest in itertools.product(range(2), range(3), *[range(2)] * (inner - 1)):
        p = jnp.exp(lqu[u0] + lqz[u0, z])
        for u in rest:
            p = p * jnp.exp(lr[z, u] if learned else lqu[u])
        ws = jnp.stack([logw(u0, z)] + [logw(u, z) for u in rest])
        probs.append(p)
        vals.append((z, jax.scipy.special.logsumexp(ws) - jnp.log(inner)))
    return probs, vals


def exact_iwhvi(theta, phi, inner, learned):
    probs, vals = _outer_terms(phi, inner, learned)
    lp = d_logp(theta)
    return sum(p * (lp[z] - lq) for p, (z, lq) in zip(probs, vals, strict=True))


def exact_diwhvi(theta, phi, inner, outer, learned):
    probs, vals = _outer_terms(phi, inner, learned)
    lp = d_logp(theta)
    terms = [lp[z] - lq for z, lq in vals]
    total = 0.0
    for idx in itertools.product(range(len(probs)), repeat=outer):
        p = jnp.prod(jnp.stack([probs[i] for i in idx]))
        lw = jnp.stack([terms[i] for i in idx])
        total = total + p * (jax.scipy.special.logsumexp(lw) - jnp.log(outer))
    return total


def _exact(fn, *args):
    return jax.value_and_grad(lambda t, p: fn(t, p, *args), argnums=(0, 1))(THETA, HPHI)


def _check(est, exact, what):
    value, (gm, gg) = est
    ev, (et, ep) = exact
    check_vg((value, (gm, (gg[0]["z"],))), (ev, (et, ep["z"])), what)
    check_vg((value, (gm, (gg[0]["u"],))), (ev, (et, ep["u"])), what + " (u)")
    check_vg((value, (gm, (gg[0]["r"],))), (ev, (et, ep["r"])), what + " (proposal)")


@pytest.mark.slow
@pytest.mark.parametrize("learned", [False, True])
def test_hvi_and_iwhvi_match_enumeration(learned):
    prop = rproposal if learned else None
    for inner, obj in [
        (1, gv.objectives.hvi(dmodel, hguide, "u", prop)),
        (3, gv.objectives.iwhvi(dmodel, hguide, "u", prop, inner_particles=3)),
    ]:
        est = vg_draws(obj, (THETA,), (HPHI,), OBS)
        _check(est, _exact(exact_iwhvi, inner, learned), f"iwhvi K={inner} learned={learned}")


@pytest.mark.slow
def test_diwhvi_matches_enumeration():
    obj = gv.objectives.diwhvi(dmodel, hguide, "u", rproposal, particles=2, inner_particles=2)
    est = vg_draws(obj, (THETA,), (HPHI,), OBS)
    _check(est, _exact(exact_diwhvi, 2, 2, True), "diwhvi")


def test_inner_particles_tighten_the_bound():
    """Exact values: HVI <= IWHVI(K) <= ELBO of the marginal guide <= log p(x)."""
    lqu, lqz, _ = _q(HPHI)
    marg = jax.scipy.special.logsumexp(lqu[:, None] + lqz, axis=0)  # log q(z)
    elbo_marginal = jnp.sum(jnp.exp(marg) * (d_logp(THETA) - marg))
    values = [exact_iwhvi(THETA, HPHI, k, False) for k in (1, 2, 4)]
    assert values[0] < values[1] < values[2] < elbo_marginal
