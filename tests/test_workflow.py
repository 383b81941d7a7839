"""The Bayesian workflow of docs/examples/bayesian-workflow.md, checked against NUTS.

Two models, each fitted by SVI with genvi's automatic guides and by NumPyro's NUTS on the
same model written in NumPyro (the reference posterior):

- Bayesian logistic regression on scikit-learn's breast-cancer data (30 standardized
  features and an intercept, N(0, 1) priors), its data part ``gv.vmap(..., subsample=N)``
  and trained on minibatches with ``gv.fit(data=..., batch_size=...)``;
- the eight schools, non-centred.

Tolerances. A guide's mean (or sd) of a coordinate is compared with NUTS's by

    |guide - nuts| <= 4 * sqrt(mcse_nuts^2 + se_guide^2) + allowance * sd_nuts

``mcse_nuts`` is ArviZ's Monte Carlo standard error (``mcse_mean`` / ``mcse_sd`` of
``az.summary``) of the NUTS run, ``se_guide`` the standard error of the guide's own
estimate from its independent draws (``sd / sqrt(n)`` for a mean, ``sd / sqrt(2 (n - 1))``
for an sd). Four standard errors make a false alarm of one coordinate about 6e-5 (a
normal tail), about 2e-3 over the ~70 coordinates checked here. ``allowance`` covers
what is not Monte Carlo error: the bias of the variational family and the stationary
noise of stochastic optimization with a finite number of steps; each is stated, with
its reason, where it is used. Mean-field's sds are checked one-sided: its spread is
expected below NUTS's (KL(q || p) under-disperses a correlated posterior), and the test
says how far below.

Settings are small to keep the file under a minute on one core: NUTS with one chain of
500 warm-up and 500 kept draws, SVI with fewer steps and a larger learning rate than
the docs page's.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest

import genvi as gv

az = pytest.importorskip("arviz")
datasets = pytest.importorskip("sklearn.datasets")

pytestmark = pytest.mark.slow

DRAWS = 4000  # independent draws from each trained guide


def _nuts(model, *args, warmup=500, samples=500, target_accept=0.8):
    from numpyro.infer import MCMC, NUTS

    mcmc = MCMC(
        NUTS(model, target_accept_prob=target_accept),
        num_warmup=warmup,
        num_samples=samples,
        num_chains=1,
        progress_bar=False,
    )
    mcmc.run(jax.random.key(0), *args)
    return mcmc


def _summary(mcmc, names):
    import warnings

    with warnings.catch_warnings():  # one chain: ArviZ warns that it cannot compute r_hat
        warnings.simplefilter("ignore")
        return az.summary(az.from_numpyro(mcmc), var_names=names, kind="all")


def _rows(summary, name, size=None):
    """The NUTS mean, sd, mcse_mean and mcse_sd of variable ``name`` (arrays over its
    elements; ``size`` for a vector)."""
    idx = [name] if size is None else [f"{name}[{i}]" for i in range(size)]
    cols = ("mean", "sd", "mcse_mean", "mcse_sd")
    return {c: summary.loc[idx, c].to_numpy(np.float64) for c in cols}


def _check_mean(guide_draws, ref, allowance, what):
    g = np.asarray(guide_draws, np.float64)
    n = g.shape[0]
    se = g.std(0, ddof=1) / np.sqrt(n)
    tol = 4 * np.sqrt(ref["mcse_mean"] ** 2 + se**2) + allowance * ref["sd"]
    err = np.abs(g.mean(0) - ref["mean"])
    assert np.all(err <= tol), (
        f"{what}: guide means {np.round(g.mean(0), 3)} vs NUTS {np.round(ref['mean'], 3)}; "
        f"off by {np.round(err, 3)}, tolerance {np.round(tol, 3)}"
    )


def _sd_tol(guide_draws, ref, allowance):
    g = np.asarray(guide_draws, np.float64)
    n = g.shape[0]
    sd = g.std(0, ddof=1)
    se = sd / np.sqrt(2 * (n - 1))
    return sd, 4 * np.sqrt(ref["mcse_sd"] ** 2 + se**2) + allowance * ref["sd"]


def _check_sd(guide_draws, ref, allowance, what):
    sd, tol = _sd_tol(guide_draws, ref, allowance)
    err = np.abs(sd - ref["sd"])
    assert np.all(err <= tol), (
        f"{what}: guide sds {np.round(sd, 3)} vs NUTS {np.round(ref['sd'], 3)}; "
        f"off by {np.round(err, 3)}, tolerance {np.round(tol, 3)}"
    )


def _draws(guide, params, key):
    return jax.jit(jax.vmap(lambda k: guide.simulate(k, params).choices))(
        jax.random.split(key, DRAWS)
    )


# ------------------------------------------------------------------------------------------
# Bayesian logistic regression on the breast-cancer data.


@pytest.fixture(scope="module")
def cancer():
    bc = datasets.load_breast_cancer()
    X, y = np.asarray(bc.data), np.asarray(bc.target)
    perm = np.random.default_rng(0).permutation(len(y))
    test, train = perm[:114], perm[114:]  # a 20 % held-out split
    mean, sd = X[train].mean(0), X[train].std(0)  # standardized by the training part
    Xs = ((X - mean) / sd).astype(np.float32)
    return {
        "X": jnp.asarray(Xs[train]),
        "y": jnp.asarray(y[train]),
        "X_test": jnp.asarray(Xs[test]),
        "y_test": jnp.asarray(y[test]),
    }


def _logistic(n, d):
    @gv.gen
    def point(w, b, x):
        gv.bernoulli(x @ w + b) @ "y"

    @gv.gen
    def model(X):
        w = gv.normal(jnp.zeros(d), 1.0) @ "w"
        b = gv.normal(0.0, 1.0) @ "b"
        gv.vmap(point, in_axes=(None, None, 0), subsample=n)(w, b, X) @ "data"

    return model


def _np_logistic(X, y=None):
    w = numpyro.sample("w", dist.Normal(jnp.zeros(X.shape[1]), 1.0).to_event(1))
    b = numpyro.sample("b", dist.Normal(0.0, 1.0))
    with numpyro.plate("data", X.shape[0]):
        numpyro.sample("y", dist.Bernoulli(logits=X @ w + b), obs=y)


@pytest.fixture(scope="module")
def logistic_nuts(cancer):
    mcmc = _nuts(_np_logistic, cancer["X"], cancer["y"])
    return mcmc.get_samples(), _summary(mcmc, ["w", "b"])


# (steps, peak learning rate) per guide; a cosine decay to 2 % of the peak.
LOGISTIC_FITS = {"normal": (4000, 0.02), "mvn": (6000, 0.01)}


@pytest.fixture(scope="module")
def logistic_fits(cancer):
    X, y = cancer["X"], cancer["y"]
    n, d = X.shape
    model = _logistic(n, d)
    obs = {"data": {"y": y}}
    out = {}
    for kind, (steps, lr) in LOGISTIC_FITS.items():
        guide = getattr(gv.guides, kind)(model, (X,), obs, init_scale=0.5)
        elbo = gv.objectives.elbo(model, guide, stl=True)

        def objective(key, params, batch, elbo=elbo):
            return elbo(key, (batch["X"],), (params,), {"data": {"y": batch["y"]}})

        result = gv.fit(
            objective,
            guide.init(jax.random.key(1)),
            key=jax.random.key(2),
            steps=steps,
            chunk=1000,
            optimizer=optax.adam(optax.cosine_decay_schedule(lr, steps, 0.02)),
            data={"X": X, "y": y},
            batch_size=100,
            progress=False,
        )
        assert result.stopped_reason == "steps", result.message
        khat = gv.psis_khat(
            jax.random.key(4), model, guide, (X,), (result.params,), obs, particles=2000
        )
        out[kind] = (
            model,
            guide,
            result.params,
            _draws(guide, result.params, jax.random.key(3)),
            khat,
        )
    return out


def test_logistic_full_rank_matches_nuts(logistic_fits, logistic_nuts):
    _, summary = logistic_nuts
    _, _, _, draws, khat = logistic_fits["mvn"]
    # Allowance 0.15 sd: with n = 455 points the posterior is close to normal, so a
    # full-rank normal has little bias (0.05 to 0.08 sd at most, measured with 20,000 steps); the
    # rest is the optimizer's noise around its optimum after 6,000 minibatch steps.
    for name, size in (("w", 30), ("b", None)):
        ref = _rows(summary, name, size)
        _check_mean(draws[name], ref, 0.15, f"mvn, {name}")
        _check_sd(draws[name], ref, 0.15, f"mvn, {name}")
    assert khat < 0.7, f"full-rank guide's k-hat {khat:.2f}: it should cover the posterior"


def test_logistic_mean_field_underestimates_spread(logistic_fits, logistic_nuts):
    _, summary = logistic_nuts
    _, _, _, draws, khat = logistic_fits["normal"]
    ref = _rows(summary, "w", 30)
    # Means: mean-field gets the means of a normal posterior exactly, but this one is not
    # quite normal and strongly correlated (radius, perimeter and area are nearly
    # collinear): allowance 0.35 sd (0.17 to 0.29 sd measured, by the number of steps).
    _check_mean(draws["w"], ref, 0.35, "mean-field, w")
    # Sds, one-sided: never above NUTS's beyond Monte Carlo error ...
    sd, tol = _sd_tol(draws["w"], ref, 0.0)
    assert np.all(sd <= ref["sd"] + tol), (
        f"mean-field sds {np.round(sd, 3)} above NUTS's {np.round(ref['sd'], 3)}"
    )
    # ... and clearly below on the whole (ratios 0.40 to 0.81, median 0.61, measured).
    ratio = sd / ref["sd"]
    assert np.median(ratio) < 0.8 and ratio.min() < 0.6, np.round(ratio, 2)
    # A too narrow guide has heavy-tailed importance weights.
    assert khat > 0.7, f"mean-field k-hat {khat:.2f}"


def test_logistic_held_out_accuracy(cancer, logistic_fits, logistic_nuts):
    samples, _ = logistic_nuts
    X_test, y_test = cancer["X_test"], cancer["y_test"]

    def accuracy(w, b):
        p = jax.nn.sigmoid(X_test @ w.T + b).mean(1)  # posterior predictive P(y = 1)
        return float(((p > 0.5) == y_test).mean())

    acc_nuts = accuracy(samples["w"], samples["b"])
    assert acc_nuts > 0.95
    for kind, (model, guide, params, _, _) in logistic_fits.items():
        pred = gv.predictive(jax.random.key(5), model, guide, (X_test,), (params,), draws=1000)
        acc = accuracy(pred.latents["w"], pred.latents["b"])
        # 114 held-out points: one point is 0.9 %; allow three more mistakes than NUTS.
        assert acc >= acc_nuts - 3 / 114, (kind, acc, acc_nuts)
        # The predictive draws of y agree with the probabilities.
        assert pred.predictions["data", "y"].shape == (1000, 114)


# ------------------------------------------------------------------------------------------
# Eight schools, non-centred.

Y = jnp.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SIGMA = jnp.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
half_cauchy = gv.distribution(dist.HalfCauchy)


@gv.gen
def schools(sigma):
    mu = gv.normal(0.0, 5.0) @ "mu"
    tau = half_cauchy(5.0) @ "tau"
    theta_tilde = gv.normal(jnp.zeros(8), 1.0) @ "theta_tilde"
    gv.normal(mu + tau * theta_tilde, sigma) @ "y"


def _np_schools(sigma, y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("J", 8):
        theta_tilde = numpyro.sample("theta_tilde", dist.Normal(0.0, 1.0))
        theta = numpyro.deterministic("theta", mu + tau * theta_tilde)
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


@pytest.fixture(scope="module")
def schools_nuts():
    mcmc = _nuts(_np_schools, SIGMA, Y, warmup=500, samples=1000, target_accept=0.9)
    return _summary(mcmc, ["mu", "tau", "theta"])


@pytest.fixture(scope="module")
def schools_fits():
    obs = {"y": Y}
    out = {}
    for kind in ("normal", "mvn"):
        guide = getattr(gv.guides, kind)(schools, (SIGMA,), obs, init_scale=1.0)
        elbo = gv.objectives.elbo(schools, guide, stl=True)
        steps = 4000
        result = gv.fit(
            lambda k, p, elbo=elbo: elbo(k, (SIGMA,), (p,), obs),
            guide.init(jax.random.key(1)),
            key=jax.random.key(2),
            steps=steps,
            chunk=1000,
            optimizer=optax.adam(optax.cosine_decay_schedule(0.05, steps, 0.02)),
            progress=False,
        )
        assert result.stopped_reason == "steps", result.message
        d = _draws(guide, result.params, jax.random.key(3))
        theta = d["mu"][:, None] + d["tau"][:, None] * d["theta_tilde"]
        khat = gv.psis_khat(
            jax.random.key(4), schools, guide, (SIGMA,), (result.params,), obs, particles=4000
        )
        out[kind] = ({"mu": d["mu"], "tau": d["tau"], "theta": theta}, khat)
    return out


@pytest.mark.parametrize("kind", ["normal", "mvn"])
def test_schools_matches_nuts(kind, schools_fits, schools_nuts):
    draws, khat = schools_fits[kind]
    # mu: allowance 0.15 sd for the optimizer's noise and the normal family's small bias
    # (under 0.05 sd measured). theta = mu + tau * theta_tilde inherits the light tail of
    # the guide's tau (below): allowance 0.2 sd (0.17 sd at most measured, theta_1's).
    for name, size, allowance in (("mu", None, 0.15), ("theta", 8, 0.2)):
        ref = _rows(schools_nuts, name, size)
        _check_mean(draws[name], ref, allowance, f"{kind}, {name}")
        _check_sd(draws[name], ref, allowance, f"{kind}, {name}")
    # tau: a normal in log tau has lighter tails than the half-Cauchy posterior, so the
    # guide's mean and sd of tau are expected below NUTS's (3.0 vs 3.7 and 2.5 vs 3.4,
    # measured): one-sided checks, and not too far below (half of NUTS's).
    ref = _rows(schools_nuts, "tau", None)
    g = np.asarray(draws["tau"], np.float64)
    se = g.std(ddof=1) / np.sqrt(g.size)
    tol = 4 * np.sqrt(ref["mcse_mean"] ** 2 + se**2)
    assert g.mean() <= ref["mean"] + tol, (g.mean(), ref["mean"])
    assert g.mean() >= 0.5 * ref["mean"], (g.mean(), ref["mean"])
    sd, tol = _sd_tol(draws["tau"], ref, 0.0)
    assert sd <= ref["sd"] + tol and sd >= 0.5 * ref["sd"], (sd, ref["sd"])
    # The eight schools' posterior is hard for a normal guide: usable, not good.
    assert khat < 1.0, f"{kind}: k-hat {khat:.2f}"
