"""Posterior predictive draws, importance resampling, ArviZ export and PSIS k-hat, on
the conjugate normal-normal model whose posterior is known exactly."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import genvi as gv
from tests.adev._helpers import assert_unbiased

az = pytest.importorskip("arviz")

N = 8
X = jnp.array([0.3, -1.2, 2.1, 0.8, 1.5, -0.4, 0.0, 2.6])
POST_VAR = 1.0 / (1.0 + N)  # theta ~ N(0, 1), x_i ~ N(theta, 1)
POST_MEAN = float(jnp.sum(X) * POST_VAR)
OBS = {"data": {"x": X}}


@gv.gen
def point(theta, i):
    gv.normal(theta, 1.0) @ "x"


@gv.gen
def model(index):
    theta = gv.normal(0.0, 1.0) @ "theta"
    gv.vmap(point, in_axes=(None, 0))(theta, index) @ "data"


@gv.gen
def guide(loc, scale):
    gv.normal(loc, scale) @ "theta"


INDEX = (jnp.arange(N, dtype=jnp.float32),)
EXACT = (POST_MEAN, math.sqrt(POST_VAR))


def test_predictive_moments_with_the_exact_posterior_guide():
    pred = gv.predictive(jax.random.key(0), model, guide, INDEX, EXACT, draws=20_000)
    theta, x = pred.latents["theta"], pred.predictions["data", "x"]
    assert theta.shape == (20_000,) and x.shape == (20_000, N)
    assert pred.predictions.addresses() == [("data", "x")]
    assert sorted(pred.choices.addresses()) == [("data", "x"), ("theta",)]
    # the posterior predictive of each point: N(POST_MEAN, POST_VAR + 1)
    assert_unbiased(x, np.full(N, POST_MEAN), "predictive mean")
    assert_unbiased((x - POST_MEAN) ** 2, np.full(N, POST_VAR + 1.0), "predictive variance")
    # two points share theta: their covariance is POST_VAR
    cov = (x[:, 0] - POST_MEAN) * (x[:, 1] - POST_MEAN)
    assert_unbiased(cov[:, None], np.array([POST_VAR]), "predictive covariance")
    assert_unbiased(theta[:, None], np.array([POST_MEAN]), "posterior mean")


def test_to_arviz_round_trips_shapes_and_names():
    pred = gv.predictive(jax.random.key(1), model, guide, INDEX, EXACT, draws=600)
    idata = gv.to_arviz(pred, observations=OBS, chains=3)
    assert set(idata.groups()) == {"posterior", "posterior_predictive", "observed_data"}
    post, pp = idata.posterior, idata.posterior_predictive
    assert list(post.data_vars) == ["theta"] and list(pp.data_vars) == ["data.x"]
    assert post["theta"].dims[:2] == ("chain", "draw")
    assert post["theta"].shape == (3, 200) and pp["data.x"].shape == (3, 200, N)
    np.testing.assert_array_equal(
        pp["data.x"].values.reshape(600, N), np.asarray(pred.predictions["data", "x"])
    )
    np.testing.assert_array_equal(idata.observed_data["data.x"].values, np.asarray(X))
    summary = az.summary(idata)
    assert list(summary.index) == ["theta"]
    assert abs(summary.loc["theta", "mean"] - POST_MEAN) < 5 * summary.loc["theta", "mcse_mean"]


def test_to_arviz_of_a_choice_map_and_its_errors():
    pred = gv.predictive(jax.random.key(1), model, guide, INDEX, EXACT, draws=10)
    idata = gv.to_arviz(pred.latents, posterior_predictive=pred.predictions)
    assert idata.posterior["theta"].shape == (1, 10)
    res = gv.importance_resample(
        jax.random.key(2), model, guide, INDEX, EXACT, OBS, draws=10, particles=100
    )
    assert gv.to_arviz(res, chains=2).posterior["theta"].shape == (2, 5)
    with pytest.raises(ValueError, match="does not split into chains=3"):
        gv.to_arviz(pred, chains=3)
    with pytest.raises(ValueError, match="leave posterior_predictive out"):
        gv.to_arviz(pred, posterior_predictive=pred.predictions)


D = 10  # a 10-dimensional conjugate model for the k-hat checks


@gv.gen
def model_d():
    z = gv.normal(jnp.zeros(D), 1.0) @ "z"
    gv.normal(z, 1.0) @ "x"


@gv.gen
def guide_d(scale):
    gv.normal(jnp.ones(D), scale) @ "z"  # the posterior given x = 2: N(1, 1/2) per dim


def test_psis_khat_reads_guide_quality():
    obs = {"x": 2.0 * jnp.ones(D)}
    exact = gv.psis_khat(jax.random.key(0), model_d, guide_d, (), (0.5**0.5,), obs)
    narrow = gv.psis_khat(jax.random.key(0), model_d, guide_d, (), (0.2,), obs)
    assert exact < 0.5, exact
    assert narrow > 0.7, narrow


def test_importance_resampling_moves_a_mismatched_guide_to_the_posterior():
    """A guide 2 posterior sds off and 1.5 times as wide: its own draws miss the posterior
    mean by many standard errors; the resampled draws lie within 5 standard errors of it.
    The se of a mean of ``draws`` resampled from particles of effective sample size ESS:
    ``sd sqrt(1 / draws + 1 / ESS)`` (the resampling noise and the particles' own)."""
    sd = math.sqrt(POST_VAR)
    off = (POST_MEAN + 2 * sd, 1.5 * sd)
    draws = 4000
    plain = gv.predictive(jax.random.key(2), model, guide, INDEX, off, draws=draws)
    res = gv.importance_resample(
        jax.random.key(3), model, guide, INDEX, off, OBS, draws=draws, particles=20_000
    )
    ess = float(res.effective_sample_size)
    se = sd * math.sqrt(1 / draws + 1 / ess)
    err_guide = abs(float(plain.latents["theta"].mean()) - POST_MEAN)
    err_resampled = abs(float(res.latents["theta"].mean()) - POST_MEAN)
    assert err_guide > 20 * se
    assert err_resampled < 5 * se, (err_resampled, se, ess)
    # the option of predictive does the same
    pred = gv.predictive(
        jax.random.key(3), model, guide, INDEX, off, OBS, draws=draws, resample=20_000
    )
    assert abs(float(pred.latents["theta"].mean()) - POST_MEAN) < 5 * se


def test_errors():
    with pytest.raises(ValueError, match="observations are needed"):
        gv.predictive(jax.random.key(0), model, guide, INDEX, EXACT, resample=100)
    with pytest.raises(ValueError, match="observations are needed"):
        gv.psis_khat(jax.random.key(0), model, guide, INDEX, EXACT)
    with pytest.raises(ValueError, match="draws must be an int >= 1"):
        gv.predictive(jax.random.key(0), model, guide, INDEX, EXACT, draws=0)
    with pytest.raises(gv.ChoiceTypeError, match="model_args must be a tuple"):
        gv.predictive(jax.random.key(0), model, guide, INDEX[0], EXACT)
