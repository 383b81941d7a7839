"""The guide's density is the change of variables from its unconstrained draw: checked
against the density computed by hand (the log-Jacobian from ``jax.jacfwd``), and by
integrating it over a bounded support."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import multivariate_normal, norm
from numpyro.distributions import constraints as C
from numpyro.distributions.transforms import biject_to

import genvi as gv

HI = jnp.array([1.0, 2.0, 4.0])


@gv.gen
def _row(hi):
    gv.uniform(0.0, hi) @ "v"


@gv.gen
def model():
    gv.beta(2.0, 3.0) @ "p"
    gv.gamma(2.0, jnp.ones(2)) @ "r"
    gv.dirichlet(jnp.ones(3)) @ "s"
    gv.uniform(-1.0, 3.0) @ "u"
    gv.vmap(_row)(HI) @ "pts"


# The unconstrained coordinates, in address order: p, ("pts", "v"), r, s, u.
VALUES = {
    "p": 0.3,
    "pts": {"v": jnp.array([0.2, 1.5, 0.7])},
    "r": jnp.array([0.5, 2.0]),
    "s": jnp.array([0.2, 0.5, 0.3]),
    "u": 2.5,
}


def _to_u(values):
    """Each block by hand: u = logit, log, stick-breaking inverse, scaled logits."""
    sb = biject_to(C.simplex)
    return [
        jnp.atleast_1d(jax.scipy.special.logit(values["p"])),
        jax.scipy.special.logit(values["pts"]["v"] / HI),
        jnp.log(values["r"]),
        sb.inv(values["s"]),
        jnp.atleast_1d(jax.scipy.special.logit((values["u"] + 1.0) / 4.0)),
    ]


def _log_jacobian(blocks):
    """log|det dz/du| of each block, from jax.jacfwd of the forward maps (the simplex by
    its first K - 1 coordinates, the measure of the Dirichlet's density)."""
    sig = jax.nn.sigmoid
    maps = [
        sig,
        lambda u: HI * sig(u),
        jnp.exp,
        lambda u: biject_to(C.simplex)(u)[:-1],
        lambda u: -1.0 + 4.0 * sig(u),
    ]
    return sum(jnp.linalg.slogdet(jax.jacfwd(f)(b))[1] for f, b in zip(maps, blocks, strict=True))


# well-conditioned starting points, perturbed below
SCALE = {k: {"init_scale": 0.5} for k in ("normal", "mvn", "low_rank_mvn", "flow")}
SCALE["delta"] = {}


def _random_params(guide, seed=3):
    p = guide.init(jax.random.key(0))
    leaves, tree = jax.tree_util.tree_flatten(p)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    leaves = [x + 0.1 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys, strict=True)]
    return jax.tree_util.tree_unflatten(tree, leaves)


def _hand(kind, params, u):
    loc = params["loc"]
    softplus = jax.nn.softplus
    if kind == "normal":
        return jnp.sum(norm.logpdf(u, loc, softplus(params["scale"])))
    if kind == "mvn":
        tril = biject_to(C.softplus_lower_cholesky)(params["scale_tril"])
        return multivariate_normal.logpdf(u, loc, tril @ tril.T)
    s = softplus(params["scale"])
    w = params["cov_factor"]
    cov = (s[:, None] * (w @ w.T + jnp.eye(u.size))) * s[None, :]
    return multivariate_normal.logpdf(u, loc, cov)


@pytest.mark.parametrize("kind", ["normal", "mvn", "low_rank_mvn"])
def test_density_by_hand(kind):
    guide = getattr(gv.guides, kind)(model, (), {}, init_loc="zeros", **SCALE[kind])
    params = _random_params(guide)
    blocks = _to_u(VALUES)
    u = jnp.concatenate(blocks)
    expected = _hand(kind, params, u) - _log_jacobian(blocks)
    logq, _ = guide.assess(VALUES, params)
    np.testing.assert_allclose(logq, expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("kind", ["normal", "mvn", "low_rank_mvn", "flow", "delta"])
def test_simulate_score_is_assess(kind):
    guide = getattr(gv.guides, kind)(model, (), {}, init_loc="zeros", **SCALE[kind])
    params = _random_params(guide)

    def both(key):
        tr = guide.simulate(key, params)
        return tr.score, guide.assess(tr.choices, params)[0]

    score, logq = jax.jit(jax.vmap(both))(jax.random.split(jax.random.key(1), 50))
    np.testing.assert_allclose(score, logq, rtol=1e-4, atol=1e-3)
    if kind == "delta":
        assert np.all(np.asarray(score) == 0.0)


@gv.gen
def one_beta():
    gv.beta(2.0, 3.0) @ "p"


@pytest.mark.parametrize("kind", ["normal", "mvn", "low_rank_mvn", "flow"])
def test_density_integrates_to_one(kind):
    """exp(log q(p)) over p in (0, 1), by the trapezoid rule on a fine grid: a missing or
    wrong log-Jacobian would not integrate to 1."""
    guide = getattr(gv.guides, kind)(one_beta, (), {}, init_loc="zeros", init_scale=0.8)
    params = _random_params(guide)
    grid = jnp.linspace(0.0, 1.0, 40_001)[1:-1]
    logq = jax.jit(jax.vmap(lambda p: guide.assess({"p": p}, params)[0]))(grid)
    total = float(jnp.trapezoid(jnp.exp(logq), grid))
    np.testing.assert_allclose(total, 1.0, atol=1e-3)


def test_delta_density_is_a_point_mass():
    guide = gv.guides.delta(one_beta, (), {}, init_loc={"p": 0.25})
    params = guide.init(jax.random.key(0))
    tr = guide.simulate(jax.random.key(1), params)
    np.testing.assert_allclose(tr.choices["p"], 0.25, rtol=1e-6)
    assert float(tr.score) == 0.0
    assert float(guide.assess(tr.choices, params)[0]) == 0.0
    assert float(guide.assess({"p": 0.3}, params)[0]) == -np.inf


def test_discrete_factor_density():
    @gv.gen
    def disc():
        gv.categorical(jnp.zeros((2, 3))) @ "c"
        gv.binomial(jnp.array([1, 3]), 0.5) @ "n"

    guide = gv.guides.normal(disc, (), {})
    params = _random_params(guide)
    logits_c = params["discrete"]["c"]
    logits_n = params["discrete"]["n"]
    c, n = jnp.array([2, 0]), jnp.array([1, 3])
    expected = jnp.sum(jax.nn.log_softmax(logits_c)[jnp.arange(2), c])
    masked = jnp.where(jnp.arange(4) <= jnp.array([[1], [3]]), logits_n, -jnp.inf)
    expected += jnp.sum(jax.nn.log_softmax(masked)[jnp.arange(2), n])
    logq, _ = guide.assess({"c": c, "n": n}, params)
    np.testing.assert_allclose(logq, expected, rtol=1e-6)
    # a count above its element's total has probability 0
    assert float(guide.assess({"c": c, "n": jnp.array([2, 3])}, params)[0]) == -np.inf
