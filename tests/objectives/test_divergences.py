"""The Rényi (VR) bound and the chi upper bound, against exact enumeration."""

from __future__ import annotations

import jax.numpy as jnp
import pytest

import genvi as gv

from ._exact import (
    OBS,
    PHI,
    THETA,
    check_vg,
    d_log_evidence,
    d_logp,
    d_logq,
    dguide,
    dmodel,
    exact_value_and_grad,
    logmeanexp,
    vg_draws,
)


@pytest.mark.parametrize("alpha", [0.5, -1.0])
def test_renyi_matches_its_exact_expectation(alpha):
    k = 3
    obj = gv.objectives.renyi(dmodel, dguide(gv.categorical.enum), alpha, k)
    est = vg_draws(obj, (THETA,), (PHI,), OBS)
    exact = exact_value_and_grad(
        lambda lp, lq: logmeanexp((1 - alpha) * (lp - lq)) / (1 - alpha), k
    )
    check_vg(est, exact, f"renyi alpha={alpha}")


def test_renyi_special_cases():
    """alpha = 0 is IWAE; alpha = 1 the average ELBO; the VR bound with alpha in (0, 1)
    lies between them (exactly, by enumeration), and below log p(x)."""
    iw = exact_value_and_grad(lambda lp, lq: logmeanexp(lp - lq), 2)[0]
    r0 = exact_value_and_grad(lambda lp, lq: logmeanexp(lp - lq), 2)[0]
    el = exact_value_and_grad(lambda lp, lq: jnp.mean(lp - lq), 2)[0]
    rh = exact_value_and_grad(lambda lp, lq: logmeanexp(0.5 * (lp - lq)) / 0.5, 2)[0]
    assert r0 == iw and el < rh < iw < d_log_evidence(THETA)
    obj = gv.objectives.renyi(dmodel, dguide(gv.categorical.enum), 1.0, 2)
    est = vg_draws(obj, (THETA,), (PHI,), OBS, n=4000)
    check_vg(est, exact_value_and_grad(lambda lp, lq: jnp.mean(lp - lq), 2), "renyi alpha=1")


@pytest.mark.parametrize("dist", [gv.categorical.enum, gv.categorical.reinforce])
def test_cubo_matches_its_exact_expectation(dist):
    n, k, log_scale = 2.0, 2, -2.0
    obj = gv.objectives.cubo(dmodel, dguide(dist), n=n, particles=k, log_scale=log_scale)
    est = vg_draws(obj, (THETA,), (PHI,), OBS)
    exact = exact_value_and_grad(lambda lp, lq: jnp.mean(jnp.exp(n * (lp - lq - log_scale))), k)
    check_vg(est, exact, f"cubo {dist}")
    # The bound it encodes is above log p(x), with equality only at the exact posterior.
    cubo_n = log_scale + jnp.log(exact[0]) / n
    assert cubo_n > d_log_evidence(THETA)
    post = d_logp(THETA) - d_log_evidence(THETA)
    at_post = jnp.sum(jnp.exp(d_logq(post)) * jnp.exp(n * (d_logp(THETA) - post)))
    assert jnp.allclose(jnp.log(at_post) / n, d_log_evidence(THETA), atol=1e-5)


def test_cubo_rejects_n_below_one():
    with pytest.raises(ValueError, match="n must be >= 1"):
        gv.objectives.cubo(dmodel, dguide(gv.categorical.enum), n=0.5)
