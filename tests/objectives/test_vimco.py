"""VIMCO and its building blocks (leave-one-out baselines, score terms)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import genvi as gv

from ._exact import (
    OBS,
    PHI,
    THETA,
    check_vg,
    dguide,
    dmodel,
    exact_value_and_grad,
    logmeanexp,
    vg_draws,
)


def test_loo_baselines_by_hand():
    lw = jnp.array([-1.0, -2.0, -0.5, 0.3])
    b = gv.objectives.loo_baselines(lw)
    for k in range(4):
        others = [lw[j] for j in range(4) if j != k]
        replaced = lw.at[k].set(sum(others) / 3)
        assert jnp.allclose(b[k], logmeanexp(replaced), atol=1e-6)
    # along another axis, batched
    b2 = gv.objectives.loo_baselines(jnp.stack([lw, 2 * lw]), axis=1)
    assert jnp.allclose(b2[0], b, atol=1e-6)


def test_score_term_adds_a_gradient_and_no_value():
    def f(t):
        logp = jnp.log(t) * 2.0
        return 3.0 + gv.objectives.score_term(5.0 * t, logp)

    v, g = jax.value_and_grad(f)(1.5)
    assert v == 3.0
    assert jnp.allclose(g, 5.0 * 1.5 * 2.0 / 1.5)  # coefficient * d logp, coefficient held


def test_vimco_is_unbiased_for_the_iwae_gradient_with_lower_variance():
    k = 4
    exact = exact_value_and_grad(lambda lp, lq: logmeanexp(lp - lq), k)
    vimco = vg_draws(gv.objectives.vimco(dmodel, dguide(gv.categorical), k), (THETA,), (PHI,), OBS)
    check_vg(vimco, exact, "vimco")
    plain = vg_draws(
        gv.objectives.iwae(dmodel, dguide(gv.categorical.reinforce), k), (THETA,), (PHI,), OBS
    )
    check_vg(plain, exact, "iwae reinforce")
    var_vimco = np.var(np.asarray(vimco[1][1][0]), axis=0).sum()
    var_plain = np.var(np.asarray(plain[1][1][0]), axis=0).sum()
    assert var_vimco < 0.5 * var_plain, (var_vimco, var_plain)


def test_vimco_with_a_continuous_guide():
    """The score-function route also works for REPARAM guides (their pathwise gradient is
    not used): VIMCO and IWAE agree on the Gaussian model."""
    from ._exact import GOBS, gguide, gmodel

    phi = jnp.array([0.1, -0.5])
    a = vg_draws(gv.objectives.vimco(gmodel, gguide, 3), (0.3,), (phi,), GOBS)
    b = vg_draws(gv.objectives.iwae(gmodel, gguide, 3), (0.3,), (phi,), GOBS, seed=1)
    for x, y in [(a[0], b[0]), (a[1][0][0], b[1][0][0]), (a[1][1][0], b[1][1][0])]:
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        se = np.sqrt(x.var(0) / len(x) + y.var(0) / len(y))
        assert np.all(np.abs(x.mean(0) - y.mean(0)) <= 5 * se), (x.mean(0), y.mean(0), se)
