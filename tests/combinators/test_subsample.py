"""``gv.vmap(..., subsample=N)``: a minibatch ELBO that is unbiased for the full-data ELBO.

Each check draws many (minibatch, key) pairs, takes the minibatch ELBO's value and
gradient, and compares their mean with the full-data ELBO and its gradient, in closed
form, within measured standard errors (``assert_unbiased``).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import genvi as gv
from tests.adev._helpers import assert_unbiased

N, B = 12, 4
X = jnp.array([0.3, -1.2, 2.1, 0.8, 1.5, -0.4, 0.0, 2.6, 1.1, -0.9, 0.5, 1.9])
SIGMA = jnp.array([1.0, 0.5, 2.0, 1.0, 0.8, 1.5, 1.0, 0.7, 1.2, 1.0, 0.6, 1.3])
C = 2.0  # the shift of a point whose discrete latent is 1
PRIOR_Z = 0.3


def _log_normal_expect(x, mean, var_q, sigma):
    """``E_{theta ~ N(mean, var_q)} log N(x; theta, sigma)``."""
    return -0.5 * jnp.log(2 * jnp.pi * sigma**2) - ((x - mean) ** 2 + var_q) / (2 * sigma**2)


def _minibatches(n_draws, seed):
    keys = jax.random.split(jax.random.key(seed), n_draws)
    return jax.vmap(lambda k: jax.random.permutation(k, N)[:B])(keys)


# ---------------------------------------------------------------------------------------
# Normal-normal: a global latent, N points with known noise scales.


@gv.gen
def point(theta, sigma):
    gv.normal(theta, sigma) @ "x"


def normal_model(subsample):
    @gv.gen
    def model(mu0, sigma):
        theta = gv.normal(mu0, 1.0) @ "theta"
        gv.vmap(point, in_axes=(None, 0), subsample=subsample)(theta, sigma) @ "data"

    return model


@gv.gen
def theta_guide(phi):
    gv.normal(phi["m"], jnp.exp(phi["s"])) @ "theta"


def normal_exact(mu0, phi):
    m, var = phi["m"], jnp.exp(2 * phi["s"])
    prior = _log_normal_expect(mu0, m, var, 1.0)
    entropy = 0.5 * jnp.log(2 * jnp.pi * jnp.e * var)
    return prior + entropy + jnp.sum(_log_normal_expect(X, m, var, SIGMA))


PHI = {"m": jnp.asarray(0.4), "s": jnp.asarray(-0.7)}
MU0 = jnp.asarray(0.2)


def _check_minibatch_elbo(objective, args_of, exact, params, what, n_draws=20_000):
    """Mean over minibatches and keys of the minibatch ELBO's value and gradient in
    ``params = (model_param, guide_params)`` against ``exact``."""
    idx = _minibatches(n_draws, seed=1)
    keys = jax.random.split(jax.random.key(2), n_draws)

    def one(k, i):
        # the estimate's value, and its jax.grad: ADEV's unbiased gradient estimate
        return jax.value_and_grad(lambda p: objective(k, *args_of(p, i)))(params)

    values, grads = jax.jit(jax.vmap(one))(keys, idx)
    ev, eg = jax.value_and_grad(exact, argnums=(0, 1))(*params)
    assert_unbiased(values, ev, f"{what}: value")
    for got, want, name in zip(
        jax.tree.leaves(grads), jax.tree.leaves(eg), ["mu0", *sorted(params[1])], strict=True
    ):
        assert_unbiased(got, want, f"{what}: gradient in {name}")


def _normal_args(params, i):
    mu0, phi = params
    return (mu0, SIGMA[i]), (phi,), {"data": {"x": X[i]}}


def test_normal_normal_minibatch_elbo_is_unbiased():
    objective = gv.objectives.elbo(normal_model(N), theta_guide)
    _check_minibatch_elbo(objective, _normal_args, normal_exact, (MU0, PHI), "normal-normal")


def test_full_batch_has_scale_one():
    model = normal_model(N)
    choices = {"theta": 0.3, "data": {"x": X}}
    scaled, _ = model.assess(choices, MU0, SIGMA)
    plain, _ = normal_model(None).assess(choices, MU0, SIGMA)
    assert jnp.allclose(scaled, plain)


def test_without_subsample_the_minibatch_elbo_is_biased():
    """The check above can fail: the same minibatches without the scale miss the
    full-data ELBO by far more than its standard error."""
    objective = gv.objectives.elbo(normal_model(None), theta_guide)
    idx = _minibatches(2000, seed=1)
    keys = jax.random.split(jax.random.key(2), 2000)
    values = jax.jit(jax.vmap(lambda k, i: objective.estimate(k, *_normal_args((MU0, PHI), i))))(
        keys, idx
    )
    with pytest.raises(AssertionError):
        assert_unbiased(values, normal_exact(MU0, PHI), "unscaled")


def test_scale_in_simulate_and_importance():
    model = normal_model(N)
    tr = model.simulate(jax.random.key(0), MU0, SIGMA[:B])
    lp, _ = model.assess(tr.choices, MU0, SIGMA[:B])
    assert jnp.allclose(tr.score, lp)
    inner = tr.choices["data", "x"]
    lp_data = jnp.sum(jax.scipy.stats.norm.logpdf(inner, tr.choices["theta"], SIGMA[:B]))
    lp_theta = jax.scipy.stats.norm.logpdf(tr.choices["theta"], MU0, 1.0)
    assert jnp.allclose(lp, lp_theta + (N / B) * lp_data, rtol=1e-5)
    given = {"theta": tr.choices["theta"], "data": {"x": inner}}
    _, w = model.importance(jax.random.key(1), given, MU0, SIGMA[:B])
    assert jnp.allclose(w, lp, rtol=1e-5)


@pytest.mark.parametrize("bad", [2.5, 0, -3, True, "12", 12.0])
def test_subsample_must_be_a_positive_int(bad):
    with pytest.raises(ValueError, match="subsample must be the number of data points"):
        gv.vmap(point, in_axes=(None, 0), subsample=bad)


def test_minibatch_larger_than_data_is_refused():
    model = normal_model(3)
    with pytest.raises(ValueError, match="a minibatch of 4 copies, but subsample=3"):
        model.simulate(jax.random.key(0), MU0, SIGMA[:4])


# ---------------------------------------------------------------------------------------
# A discrete latent per point (a two-component shift), under ENUM and REINFORCE.


@gv.gen
def mixture_point(theta, sigma):
    z = gv.flip(PRIOR_Z) @ "z"
    gv.normal(theta + C * z, sigma) @ "x"


def mixture_model(subsample):
    @gv.gen
    def model(mu0, sigma):
        theta = gv.normal(mu0, 1.0) @ "theta"
        gv.vmap(mixture_point, in_axes=(None, 0), subsample=subsample)(theta, sigma) @ "data"

    return model


def mixture_guide(flip, subsample):
    @gv.gen
    def local(phi, x):
        flip(jax.nn.sigmoid(phi["a"] + phi["b"] * x)) @ "z"

    @gv.gen
    def guide(phi, xs):
        gv.normal(phi["m"], jnp.exp(phi["s"])) @ "theta"
        gv.vmap(local, in_axes=(None, 0), subsample=subsample)(phi, xs) @ "data"

    return guide


def mixture_exact(mu0, phi):
    m, var = phi["m"], jnp.exp(2 * phi["s"])
    q1 = jax.nn.sigmoid(phi["a"] + phi["b"] * X)
    total = _log_normal_expect(mu0, m, var, 1.0) + 0.5 * jnp.log(2 * jnp.pi * jnp.e * var)
    for z, qz, pz in ((0.0, 1 - q1, 1 - PRIOR_Z), (1.0, q1, PRIOR_Z)):
        ll = _log_normal_expect(X - C * z, m, var, SIGMA)
        total = total + jnp.sum(qz * (jnp.log(pz) + ll - jnp.log(qz)))
    return total


MIX_PHI = {k: jnp.asarray(v) for k, v in {"m": 0.4, "s": -0.7, "a": -0.5, "b": 0.6}.items()}


def _mixture_args(params, i):
    mu0, phi = params
    return (mu0, SIGMA[i]), (phi, X[i]), {"data": {"x": X[i]}}


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["enum", "reinforce"])
def test_discrete_local_latent_minibatch_elbo_is_unbiased(strategy):
    flip = getattr(gv.flip, strategy)
    objective = gv.objectives.elbo(mixture_model(N), mixture_guide(flip, N))
    _check_minibatch_elbo(
        objective, _mixture_args, mixture_exact, (MU0, MIX_PHI), f"mixture ({strategy})"
    )


def test_scaled_model_without_scaled_guide_is_biased():
    """The documented misuse: scaling the model's local part but not the guide's leaves
    the local entropy under-weighted, and the estimate misses the full-data ELBO."""
    objective = gv.objectives.elbo(mixture_model(N), mixture_guide(gv.flip.enum, None))
    idx = _minibatches(2000, seed=1)
    keys = jax.random.split(jax.random.key(2), 2000)
    values = jax.jit(
        jax.vmap(lambda k, i: objective.estimate(k, *_mixture_args((MU0, MIX_PHI), i)))
    )(keys, idx)
    with pytest.raises(AssertionError):
        assert_unbiased(values, mixture_exact(MU0, MIX_PHI), "model scaled, guide not")


# ---------------------------------------------------------------------------------------
# gv.fit with data= and batch_size= reaches the exact posterior mean.


MU_FAR = -10.0  # a prior mean far from the data: the unscaled posterior is far off


@pytest.mark.slow
@pytest.mark.parametrize("subsample", [True, False])
def test_fit_with_minibatches_reaches_the_posterior_mean(subsample):
    """Plain SGD at a constant step size on the minibatch ELBO: the ELBO is quadratic in
    the guide's mean ``m`` and the gradient noise (minibatch and REPARAM) has mean zero,
    so ``E[m_t]`` follows the exact gradient recursion and tends to the posterior mean.
    Iterates 50 steps apart (many contraction times apart) are nearly independent: their
    mean is compared with the posterior mean within 5 measured standard errors. Without
    the scale, the same run settles on the posterior of B points, far outside."""
    n, b = 200, 20
    x = 1.5 + jax.random.normal(jax.random.key(3), (n,))
    sigma = jnp.ones(n)
    model = normal_model(n if subsample else None)
    objective = gv.objectives.elbo(model, theta_guide)

    def fn(key, phi, batch):
        model_args = (jnp.asarray(MU_FAR), batch["sigma"])
        return objective(key, model_args, (phi,), {"data": {"x": batch["x"]}})

    seen = []
    result = gv.fit(
        fn,
        {"m": jnp.asarray(0.0), "s": jnp.asarray(-2.0)},
        key=jax.random.key(4),
        steps=6000,
        optimizer=optax.sgd(1e-3),
        data={"x": x, "sigma": sigma},
        batch_size=b,
        chunk=50,
        progress=False,
        callbacks=[lambda step, params, history: seen.append(float(params["m"]))],
    )
    assert result.stopped_reason == "steps"
    ms = np.asarray(seen[20:])
    post_mean = float((jnp.sum(x) + MU_FAR) / (1.0 + n))
    se = ms.std(ddof=1) / math.sqrt(ms.size)
    err = abs(ms.mean() - post_mean)
    if subsample:
        assert err <= 5 * se + 1e-4, (ms.mean(), post_mean, se)
    else:
        assert err > 10 * se, (ms.mean(), post_mean, se)
