"""Each automatic guide trains to the exact posterior (or, where its family cannot hold
the posterior, to the best member of its family) on conjugate models.

Tolerances are ``KSE`` measured standard errors of the guide's draws (20,000 of them;
4,000 ELBO estimates), with fixed seeds. Training averages 16 ELBO draws per step, with
STL where the guide has an exact density (its gradient's variance vanishes at a
Gaussian posterior), and a decaying learning rate, so that what is left of the
optimizer's noise is small against those standard errors.
"""

from __future__ import annotations

import numpy as np
import pytest

import genvi as gv

from ._exact import (
    BB_X,
    DC_X,
    KSE,
    NN_X,
    assert_close,
    best_logit_normal,
    beta_bernoulli,
    beta_bernoulli_posterior,
    dirichlet_categorical,
    dirichlet_posterior,
    elbo_draws,
    guide_draws,
    normal_normal,
    normal_normal_posterior,
    se_mean,
    se_sd,
    train,
)

pytestmark = pytest.mark.slow

GAUSSIAN = [
    ("normal", {}),
    ("mvn", {}),
    ("low_rank_mvn", {}),
    ("flow", {"flow": "iaf", "layers": 2}),  # in one dimension an IAF is affine: Gaussian
]


def _guide(kind, kw, model, obs):
    return getattr(gv.guides, kind)(model, (), obs, **kw)


@pytest.mark.parametrize("kind,kw", GAUSSIAN, ids=[k for k, _ in GAUSSIAN])
def test_normal_normal_exact(kind, kw):
    """A Gaussian family holds the Gaussian posterior: mean and sd of the draws match."""
    obs = {"x": NN_X}
    guide = _guide(kind, kw, normal_normal, obs)
    params = train(normal_normal, guide, obs, stl=True)
    z = guide_draws(guide, params, "z")
    mean, sd = normal_normal_posterior()
    assert_close(z.mean(), mean, se_mean(z), f"{kind}: posterior mean")
    assert_close(z.std(ddof=1), sd, se_sd(z), f"{kind}: posterior sd")


def test_delta_is_map():
    """The delta guide's objective is the log joint at its point (no randomness): it
    converges to the posterior mode, here the mean, up to the optimizer's resolution."""
    obs = {"x": NN_X}
    guide = gv.guides.delta(normal_normal, (), obs)
    params = train(normal_normal, guide, obs, stl=False, particles=1)
    mean, _ = normal_normal_posterior()
    np.testing.assert_allclose(float(guide.median(params)["z"]), mean, atol=1e-4)


def test_delta_map_is_in_the_model_parameterization():
    """MAP of a Beta(a, b) posterior in the model's own coordinates: its mode
    ``(a - 1) / (a + b - 2)`` (no Jacobian of the logit), not the logit-space mode
    ``a / (a + b)``."""
    obs = {"x": BB_X}
    guide = gv.guides.delta(beta_bernoulli, (), obs)
    params = train(beta_bernoulli, guide, obs, stl=False, particles=1)
    a, b, _ = beta_bernoulli_posterior()
    np.testing.assert_allclose(float(guide.median(params)["p"]), (a - 1) / (a + b - 2), atol=1e-4)


BETA_GAUSSIAN = [("normal", {}), ("flow", {"flow": "iaf", "layers": 2})]


@pytest.mark.parametrize("kind,kw", BETA_GAUSSIAN, ids=[k for k, _ in BETA_GAUSSIAN])
def test_beta_bernoulli_logit_normal(kind, kw):
    """A normal in logit space cannot be a Beta. Its best member (by quadrature) has the
    exact posterior mean (see _exact), but a spread of its own: the mean is checked
    against the Beta's, the sd against the best logit-normal's, and the two sds differ."""
    obs = {"x": BB_X}
    guide = _guide(kind, kw, beta_bernoulli, obs)
    params = train(beta_bernoulli, guide, obs, stl=True)
    p = guide_draws(guide, params, "p")
    a, b, _ = beta_bernoulli_posterior()
    _, _, _, best_mean, best_sd = best_logit_normal(a, b)
    beta_sd = float(np.sqrt(a * b / ((a + b) ** 2 * (a + b + 1))))
    assert abs(best_mean - a / (a + b)) < 1e-6
    assert_close(p.mean(), a / (a + b), se_mean(p), f"{kind}: posterior mean")
    assert_close(p.std(ddof=1), best_sd, se_sd(p), f"{kind}: sd of the best logit-normal")
    assert abs(best_sd - beta_sd) > KSE * se_sd(p)  # the sd test is not the Beta's


def test_beta_bernoulli_bnaf_beats_the_best_gaussian():
    """BNAF's family holds more than the Gaussians (and no Gaussian exactly: its tanh
    layers are bounded), so it is checked by its ELBO: no worse than the best
    logit-normal's, no better than the log evidence."""
    obs = {"x": BB_X}
    guide = gv.guides.flow(beta_bernoulli, (), obs, flow="bnaf")
    params = train(beta_bernoulli, guide, obs, stl=False)
    a, b, log_z = beta_bernoulli_posterior()
    best = log_z - best_logit_normal(a, b)[2]
    e = elbo_draws(beta_bernoulli, guide, params, obs)
    assert e.mean() >= best - KSE * se_mean(e), (e.mean(), best, se_mean(e))
    assert e.mean() <= log_z + KSE * se_mean(e), (e.mean(), log_z, se_mean(e))


DIRICHLET = [("normal", {}), ("mvn", {}), ("low_rank_mvn", {"rank": 1})]


@pytest.mark.parametrize("kind,kw", DIRICHLET, ids=[k for k, _ in DIRICHLET])
def test_dirichlet_posterior_mean(kind, kw):
    """A simplex latent through the stick-breaking bijection: the draws' mean is the
    exact Dirichlet mean (see _exact), component by component."""
    obs = {"x": DC_X}
    guide = _guide(kind, kw, dirichlet_categorical, obs)
    params = train(dirichlet_categorical, guide, obs, stl=True)
    theta = guide_draws(guide, params, "theta")
    assert theta.shape[1:] == (3,)
    np.testing.assert_allclose(theta.sum(-1), 1.0, atol=1e-5)
    post, _, _ = dirichlet_posterior()
    assert_close(theta.mean(0), post / post.sum(), se_mean(theta), f"{kind}: posterior mean")


@pytest.mark.parametrize("flow", ["iaf", "bnaf"])
def test_dirichlet_flows_beat_the_best_gaussian(flow):
    obs = {"x": DC_X}
    guide = gv.guides.flow(dirichlet_categorical, (), obs, flow=flow)
    params = train(dirichlet_categorical, guide, obs, stl=False)
    _, log_z, kl = dirichlet_posterior()
    e = elbo_draws(dirichlet_categorical, guide, params, obs)
    assert e.mean() >= log_z - kl - KSE * se_mean(e), (e.mean(), log_z - kl, se_mean(e))
    assert e.mean() <= log_z + KSE * se_mean(e), (e.mean(), log_z, se_mean(e))
