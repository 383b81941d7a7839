"""Every distribution of the library against its scipy twin (table-driven).

For each case: the log density at a few points, the log density of an array-valued choice
(the sum over its elements), the first two moments of samples (within k standard errors
measured from the samples), and a goodness-of-fit test of the samples (Kolmogorov-Smirnov
for continuous families, chi-square for discrete ones) at a fixed key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as nd
import pytest
import scipy.special as sp
import scipy.stats as st

import genvi as gv

N = 20_000  # samples per case
K_SE = 5.0  # tolerance, in standard errors
P_MIN = 1e-3  # smallest acceptable p-value of a goodness-of-fit test


def _softmax(x):
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max())
    return e / e.sum()


def _categorical_twin(logits):
    p = _softmax(logits)
    return st.rv_discrete(values=(np.arange(len(p)), p))


student_t = gv.distribution(nd.StudentT)
discrete_uniform = gv.distribution(nd.DiscreteUniform)


@dataclass
class Case:
    """One distribution: genvi object, parameters, scipy twin and test points.

    ``params2``/``twin2`` give a second parameter set, used to build array-valued
    parameters (scalar-event families only). ``marginals`` gives, for vector-valued
    families, the scipy distribution of each component.
    """

    name: str
    dist: gv.Distribution
    params: tuple
    twin: Any
    points: list
    discrete: bool = False
    params2: tuple | None = None
    twin2: Any = None
    marginals: Callable[[], list] | None = None
    moments: Callable[[], tuple] | None = None

    def __repr__(self):
        return self.name


def _mvn_case(name, dist, loc, second, cov):
    loc, cov = np.asarray(loc), np.asarray(cov)
    twin = st.multivariate_normal(loc, cov)
    return Case(
        name,
        dist,
        (jnp.asarray(loc), jnp.asarray(second)),
        twin,
        points=[loc, loc + np.array([1.3, -0.7]), np.array([-2.0, 4.0])],
        marginals=lambda: [st.norm(loc[i], np.sqrt(cov[i, i])) for i in range(len(loc))],
        moments=lambda: (loc, np.diag(cov)),
    )


ALPHA = np.array([1.5, 2.0, 4.0])
LOGITS = np.array([0.1, -1.0, 0.7, 0.0])

CASES = [
    Case(
        "normal",
        gv.normal,
        (0.5, 2.0),
        st.norm(0.5, 2.0),
        [-1.3, 0.5, 3.7],
        params2=(-1.0, 0.5),
        twin2=st.norm(-1.0, 0.5),
    ),
    Case(
        "flip",
        gv.flip,
        (0.3,),
        st.bernoulli(0.3),
        [0, 1],
        discrete=True,
        params2=(0.8,),
        twin2=st.bernoulli(0.8),
    ),
    Case(
        "bernoulli",
        gv.bernoulli,
        (-0.4,),
        st.bernoulli(sp.expit(-0.4)),
        [0, 1],
        discrete=True,
        params2=(1.5,),
        twin2=st.bernoulli(sp.expit(1.5)),
    ),
    Case(
        "categorical",
        gv.categorical,
        (jnp.asarray(LOGITS),),
        _categorical_twin(LOGITS),
        [0, 1, 2, 3],
        discrete=True,
        params2=(jnp.asarray([2.0, 0.0, -1.0, 0.5]),),
        twin2=_categorical_twin([2.0, 0.0, -1.0, 0.5]),
    ),
    Case(
        "beta",
        gv.beta,
        (2.0, 5.0),
        st.beta(2.0, 5.0),
        [0.1, 0.4, 0.9],
        params2=(0.7, 1.5),
        twin2=st.beta(0.7, 1.5),
    ),
    Case(
        "gamma",
        gv.gamma,
        (3.0, 2.0),
        st.gamma(3.0, scale=1 / 2.0),
        [0.2, 1.5, 4.0],
        params2=(0.8, 0.5),
        twin2=st.gamma(0.8, scale=1 / 0.5),
    ),
    Case(
        "dirichlet",
        gv.dirichlet,
        (jnp.asarray(ALPHA),),
        st.dirichlet(ALPHA),
        [np.array([0.2, 0.3, 0.5]), np.array([0.6, 0.1, 0.3])],
        marginals=lambda: [st.beta(a, ALPHA.sum() - a) for a in ALPHA],
        moments=lambda: (st.dirichlet(ALPHA).mean(), st.dirichlet(ALPHA).var()),
    ),
    Case(
        "poisson",
        gv.poisson,
        (3.5,),
        st.poisson(3.5),
        [0, 2, 7],
        discrete=True,
        params2=(0.6,),
        twin2=st.poisson(0.6),
    ),
    Case(
        "geometric",
        gv.geometric,
        (0.3,),
        st.geom(0.3, loc=-1),
        [0, 1, 5],
        discrete=True,
        params2=(0.7,),
        twin2=st.geom(0.7, loc=-1),
    ),
    Case(
        "uniform",
        gv.uniform,
        (-1.0, 3.0),
        st.uniform(-1.0, 4.0),
        [-0.5, 0.0, 2.9],
        params2=(2.0, 2.5),
        twin2=st.uniform(2.0, 0.5),
    ),
    Case(
        "exponential",
        gv.exponential,
        (1.5,),
        st.expon(scale=1 / 1.5),
        [0.1, 1.0, 3.0],
        params2=(0.3,),
        twin2=st.expon(scale=1 / 0.3),
    ),
    Case(
        "laplace",
        gv.laplace,
        (0.5, 2.0),
        st.laplace(0.5, 2.0),
        [-3.0, 0.5, 1.7],
        params2=(-1.0, 0.3),
        twin2=st.laplace(-1.0, 0.3),
    ),
    Case(
        "binomial",
        gv.binomial,
        (10, 0.3),
        st.binom(10, 0.3),
        [0, 3, 10],
        discrete=True,
        params2=(4, 0.9),
        twin2=st.binom(4, 0.9),
    ),
    _mvn_case("mv_normal_diag", gv.mv_normal_diag, [0.5, -1.0], [2.0, 0.5], np.diag([4.0, 0.25])),
    _mvn_case(
        "mv_normal", gv.mv_normal, [0.5, -1.0], [[2.0, 0.6], [0.6, 1.0]], [[2.0, 0.6], [0.6, 1.0]]
    ),
    Case(
        "StudentT (gv.distribution)",
        student_t,
        (4.0, 0.5, 2.0),
        st.t(4.0, 0.5, 2.0),
        [-3.0, 0.5, 6.0],
        params2=(10.0, -1.0, 0.5),
        twin2=st.t(10.0, -1.0, 0.5),
    ),
    Case(
        "DiscreteUniform (gv.distribution)",
        discrete_uniform,
        (2, 6),
        st.randint(2, 7),
        [2, 4, 6],
        discrete=True,
        params2=(0, 1),
        twin2=st.randint(0, 2),
    ),
]
SCALAR = [c for c in CASES if c.marginals is None]


def _twin_logpdf(twin, x, discrete):
    return twin.logpmf(x) if discrete else twin.logpdf(x)


@pytest.fixture(scope="module")
def samples():
    """N samples of every case, drawn once (vmap over keys, under jit)."""
    out = {}
    base = jax.random.key(1234)
    for i, c in enumerate(CASES):
        keys = jax.random.split(jax.random.fold_in(base, i), N)
        draw = jax.jit(jax.vmap(lambda k, c=c: c.dist.sample(k, *c.params)))
        out[c.name] = np.asarray(draw(keys), np.float64)
    return out


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_logpdf_matches_scipy(case):
    points = jnp.asarray(np.stack(case.points))
    got = jax.jit(jax.vmap(lambda x: case.dist.logpdf(x, *case.params)))(points)
    want = [_twin_logpdf(case.twin, x, case.discrete) for x in case.points]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_keyword_parameters(case):
    """Calling with numpyro's parameter names as keywords means the same as positionally."""
    names = case.dist.family.params[: len(case.params)]
    x = jnp.asarray(case.points[1])
    by_kw = case.dist.logpdf(x, **dict(zip(names, case.params, strict=True)))
    np.testing.assert_allclose(by_kw, case.dist.logpdf(x, *case.params), rtol=1e-6)


@pytest.mark.parametrize("case", SCALAR, ids=repr)
def test_array_parameters_give_one_choice_with_summed_density(case):
    """Parameters stacked along a new axis: one array-valued choice, density = sum."""
    x1 = case.points[1]
    x2 = case.twin2.rvs(random_state=np.random.default_rng(0))
    params = tuple(
        jnp.stack([jnp.asarray(a), jnp.asarray(b)])
        for a, b in zip(case.params, case.params2, strict=True)
    )
    value = jnp.asarray([x1, x2])
    want = _twin_logpdf(case.twin, x1, case.discrete) + _twin_logpdf(case.twin2, x2, case.discrete)
    np.testing.assert_allclose(
        jax.jit(case.dist.logpdf)(value, *params), want, rtol=1e-5, atol=1e-5
    )
    # a sample has the batch shape, and a trace's score is the same sum
    tr = jax.jit(case.dist.simulate)(jax.random.key(3), *params)
    assert tr.retval.shape == (2,)
    want_score = sum(
        _twin_logpdf(t, float(v), case.discrete)
        for t, v in zip((case.twin, case.twin2), tr.retval, strict=True)
    )
    np.testing.assert_allclose(tr.score, want_score, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_sample_moments(case, samples):
    x = samples[case.name]
    if case.moments is None:
        mean, var = np.atleast_1d(case.twin.mean()), np.atleast_1d(case.twin.var())
        x = x[:, None]
    else:
        mean, var = case.moments()
    m = x.mean(0)
    dev = x - m
    s2 = (dev**2).mean(0)
    se_mean = np.sqrt(s2 / N)
    # standard error of the sample variance: sqrt((m4 - s2^2) / N)
    se_var = np.sqrt(((dev**4).mean(0) - s2**2) / N)
    assert np.all(np.abs(m - mean) < K_SE * se_mean), (m, mean, se_mean)
    assert np.all(np.abs(s2 - var) < K_SE * se_var), (s2, var, se_var)


def _chi_square_pvalue(x, twin):
    """Chi-square goodness of fit over the values with expected count >= 5; the rest of
    the mass is merged into the last bin."""
    lo, hi = int(twin.ppf(1e-12)), int(twin.ppf(1 - 1e-12))
    values = np.arange(lo, hi + 1)
    expected = N * twin.pmf(values)
    keep = expected >= 5
    obs = np.array([(x == v).sum() for v in values[keep]], np.float64)
    exp = expected[keep]
    obs[-1] += N - obs.sum()
    exp[-1] += N - exp.sum()
    return st.chisquare(obs, exp).pvalue


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_goodness_of_fit(case, samples):
    x = samples[case.name]
    if case.discrete:
        assert np.all(x == np.round(x)), "discrete samples must be whole numbers"
        assert _chi_square_pvalue(x, case.twin) > P_MIN
    elif case.marginals is None:
        assert st.kstest(x, case.twin.cdf).pvalue > P_MIN
    else:
        for i, marginal in enumerate(case.marginals()):
            assert st.kstest(x[:, i], marginal.cdf).pvalue > P_MIN, f"component {i}"


def test_mv_normal_covariance(samples):
    """The off-diagonal covariance of mv_normal samples (within k standard errors)."""
    x = samples["mv_normal"]
    dev = x - x.mean(0)
    prod = dev[:, 0] * dev[:, 1]
    assert abs(prod.mean() - 0.6) < K_SE * prod.std() / np.sqrt(N)


def test_dirichlet_samples_lie_on_the_simplex(samples):
    x = samples["dirichlet"]
    assert np.all(x > 0)
    np.testing.assert_allclose(x.sum(1), 1.0, atol=1e-5)


def test_parameter_conventions():
    """The positional conventions of API.md section 3, each checked by a closed form."""
    # flip(p): probability of 1; bernoulli(logits)
    np.testing.assert_allclose(gv.flip.logpdf(1, 0.3), np.log(0.3), rtol=1e-6)
    np.testing.assert_allclose(gv.bernoulli.logpdf(1, 0.0), np.log(0.5), rtol=1e-6)
    np.testing.assert_allclose(gv.bernoulli.logpdf(1, 2.0), np.log(sp.expit(2.0)), rtol=1e-6)
    # categorical(logits): unnormalized logits, invariant to a shift
    lg = jnp.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(gv.categorical.logpdf(2, lg), np.log(_softmax(lg)[2]), rtol=1e-6)
    np.testing.assert_allclose(
        gv.categorical.logpdf(2, lg + 10.0), gv.categorical.logpdf(2, lg), rtol=1e-6
    )
    # gamma(concentration, rate): density a log b + (a-1) log x - b x - lgamma(a)
    a, b, x = 2.0, 3.0, 0.7
    want = a * np.log(b) + (a - 1) * np.log(x) - b * x - sp.gammaln(a)
    np.testing.assert_allclose(gv.gamma.logpdf(x, a, b), want, rtol=1e-5)
    # poisson(rate)
    np.testing.assert_allclose(
        gv.poisson.logpdf(2, 3.0), 2 * np.log(3.0) - 3.0 - np.log(2), rtol=1e-5
    )
    # geometric(probs) counts failures from 0: P(0) = p, P(k) = (1-p)^k p
    np.testing.assert_allclose(gv.geometric.logpdf(0, 0.3), np.log(0.3), rtol=1e-6)
    np.testing.assert_allclose(gv.geometric.logpdf(2, 0.3), np.log(0.7**2 * 0.3), rtol=1e-5)
    # binomial(total_count, probs)
    np.testing.assert_allclose(
        gv.binomial.logpdf(2, 5, 0.3), np.log(sp.comb(5, 2) * 0.3**2 * 0.7**3), rtol=1e-5
    )
    # beta(concentration1, concentration0): mass near 1 when concentration1 is large
    np.testing.assert_allclose(gv.beta.logpdf(0.9, 5.0, 1.0), np.log(5 * 0.9**4), rtol=1e-5)
    # exponential(rate), uniform(low, high), laplace(loc, scale)
    np.testing.assert_allclose(gv.exponential.logpdf(1.0, 2.0), np.log(2.0) - 2.0, rtol=1e-6)
    np.testing.assert_allclose(gv.uniform.logpdf(0.5, 0.0, 4.0), -np.log(4.0), rtol=1e-6)
    np.testing.assert_allclose(gv.laplace.logpdf(1.0, 0.0, 2.0), -np.log(4.0) - 0.5, rtol=1e-6)


def test_keyword_call_inside_a_generative_function(key):
    @gv.gen
    def model():
        z = gv.normal(loc=1.0, scale=2.0) @ "z"
        return gv.gamma(concentration=2.0, rate=3.0) @ "g", z

    tr = model.simulate(key)
    want = st.norm(1.0, 2.0).logpdf(tr["z"]) + st.gamma(2.0, scale=1 / 3.0).logpdf(tr["g"])
    np.testing.assert_allclose(tr.score, want, rtol=1e-5)


def test_omitted_keyword_takes_numpyro_default():
    """``student_t(4.0, scale=2.0)`` leaves ``loc`` at numpyro's default, 0."""
    np.testing.assert_allclose(
        student_t.logpdf(1.0, 4.0, scale=2.0), st.t(4.0, 0.0, 2.0).logpdf(1.0), rtol=1e-5
    )
    with pytest.raises(TypeError, match="'loc' is missing"):
        gv.normal.logpdf(0.0, scale=1.0)
    with pytest.raises(TypeError, match="normal"):
        gv.normal.logpdf(0.0, mu=0.0, scale=1.0)
