"""The guide's choices are exactly the model's latent choices; what cannot be handled is
refused with a genvi error naming the latent and what to write instead."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as nd
import pytest

import genvi as gv

KINDS = ["normal", "mvn", "low_rank_mvn", "delta", "flow"]


@gv.gen
def inner(mu):
    z = gv.normal(mu, 1.0) @ "z"
    gv.normal(z, 1.0) @ "x"
    return z


@gv.gen
def point(hi):
    gv.uniform(0.0, hi) @ "v"
    return gv.beta(2.0, 3.0) @ "w"


@gv.gen
def step(c, _):
    s = gv.normal(c, 1.0) @ "s"
    return s, s


@gv.gen
def big(theta):
    m = gv.normal(theta, 1.0) @ "m"
    gv.gamma(2.0, jnp.ones(2)) @ "rates"
    gv.uniform(0.0, jnp.exp(theta)) @ "u"
    gv.dirichlet(jnp.ones(4)) @ "simplex"
    gv.flip(0.3) @ "k"
    gv.categorical(jnp.zeros((2, 3))) @ "c"
    gv.binomial(jnp.array([2, 4]), 0.5) @ "n"
    gv.poisson(3.0) @ "count"
    inner(m) @ ("deep", "inner")
    gv.vmap(point)(jnp.arange(1.0, 4.0)) @ "points"
    gv.scan(step, length=4)(0.0, None) @ "chain"


OBS = {"deep": {"inner": {"x": 1.0}}}


def _model_latents():
    tr = jax.jit(big.simulate)(jax.random.key(3), 0.5)
    return {
        a: (jnp.shape(tr.choices[a]), tr.choices[a].dtype)
        for a in tr.choices.addresses()
        if a != ("deep", "inner", "x")
    }


@pytest.mark.parametrize("kind", KINDS)
def test_addresses_shapes_and_dtypes_are_the_models(kind):
    guide = getattr(gv.guides, kind)(big, (0.5,), OBS, init_loc="zeros")
    want = _model_latents()
    assert guide.addresses == sorted(want)
    tr = jax.jit(guide.simulate)(jax.random.key(0), guide.init(jax.random.key(1)))
    got = {a: (jnp.shape(tr.choices[a]), tr.choices[a].dtype) for a in tr.choices.addresses()}
    assert got == want
    assert [i.address for i in guide.latents] == guide.addresses


def test_values_lie_in_the_supports():
    guide = gv.guides.normal(big, (0.5,), OBS, init_scale=3.0, init_loc="zeros")
    params = guide.init(jax.random.key(0))
    cm = jax.jit(jax.vmap(lambda k: guide.simulate(k, params).choices))(
        jax.random.split(jax.random.key(1), 200)
    )
    assert np.all(cm["rates"] > 0)
    assert np.all((cm["u"] >= 0) & (cm["u"] <= np.exp(0.5)))
    np.testing.assert_allclose(cm["simplex"].sum(-1), 1.0, atol=1e-5)
    assert set(np.unique(cm["k"])) <= {0, 1} and set(np.unique(cm["c"])) <= {0, 1, 2}
    assert np.all(cm["n"] <= np.array([2, 4])) and np.all(cm["n"] >= 0)
    assert np.all(cm["count"] >= 0)
    hi = np.arange(1.0, 4.0)
    assert np.all((cm["points", "v"] >= 0) & (cm["points", "v"] <= hi))  # per-row bounds
    assert np.all((cm["points", "w"] > 0) & (cm["points", "w"] < 1))


def test_model_scores_the_guides_choices_without_complaint():
    guide = gv.guides.mvn(big, (0.5,), OBS, init_loc="zeros")

    def log_joint(key, params):
        tr = guide.simulate(key, params)
        return big.assess(tr.choices.merge(OBS), 0.5)[0]

    assert np.isfinite(jax.jit(log_joint)(jax.random.key(0), guide.init(jax.random.key(1))))


def test_strategies_of_discrete_latents():
    guide = gv.guides.normal(big, (0.5,), OBS)
    proposal = {i.address: i.proposal for i in guide.latents}
    assert proposal[("k",)].endswith("ENUM")  # 2 values
    assert proposal[("c",)].endswith("ENUM")  # 2 elements x 3 values
    assert proposal[("count",)] == "poisson factor, REINFORCE"
    guide = gv.guides.normal(big, (0.5,), OBS, discrete={"k": "reinforce", "c": gv.MVD})
    proposal = {i.address: i.proposal for i in guide.latents}
    assert proposal[("k",)].endswith("REINFORCE") and proposal[("c",)].endswith("MVD")


def test_latents_known_when_the_model_runs_are_fine():
    @gv.gen
    def a():
        return gv.normal(0.0, 1.0) @ "y"

    @gv.gen
    def b():
        return gv.gamma(1.0, 1.0) @ "y"

    @gv.gen
    def model():
        gv.cond(a, b)(False) @ "branch"  # a Python bool: one branch, known in advance

    guide = gv.guides.normal(model, (), {})
    assert guide.addresses == [("branch", "y")]
    assert guide.latents[0].support.startswith("Positive")


def test_init_loc():
    @gv.gen
    def model():
        gv.gamma(2.0, 1.0) @ "rate"
        gv.beta(1.0, 1.0) @ "p"

    guide = gv.guides.normal(model, (), {}, init_loc="zeros")
    med = guide.median(guide.init(jax.random.key(0)))
    np.testing.assert_allclose([med["p"], med["rate"]], [0.5, 1.0], rtol=1e-6)
    guide = gv.guides.normal(model, (), {}, init_loc={"rate": 3.0})
    med = guide.median(guide.init(jax.random.key(0)))
    np.testing.assert_allclose(med["rate"], 3.0, rtol=1e-5)
    assert 0.0 < float(med["p"]) < 1.0
    # "prior": the median of prior draws, different for different keys
    guide = gv.guides.normal(model, (), {})
    r1 = guide.median(guide.init(jax.random.key(0)))["rate"]
    r2 = guide.median(guide.init(jax.random.key(1)))["rate"]
    assert float(r1) != float(r2) and float(r1) > 0


# ----- errors -------------------------------------------------------------------------


@gv.gen
def _a():
    return gv.normal(0.0, 1.0) @ "y"


@gv.gen
def _b():
    return gv.gamma(1.0, 1.0) @ "y2"


@gv.gen
def random_branch():
    k = gv.flip(0.3) @ "k"
    gv.cond(_a, _b)(k) @ "br"


@gv.gen
def _pt(k):
    gv.switch(_a, _b)(k) @ "br"


@gv.gen
def random_branch_vmapped():
    k = gv.flip(jnp.full(3, 0.3)) @ "k"
    gv.vmap(_pt)(k) @ "pts"


@gv.gen
def dependent_support():
    s = gv.gamma(1.0, 1.0) @ "s"
    gv.uniform(0.0, s) @ "u"


@gv.gen
def _scan_step(c, _):
    z = gv.uniform(0.0, c + 1.0) @ "s"
    return z, z


@gv.gen
def support_in_scan():
    gv.scan(_scan_step, length=3)(1.0, None) @ "ch"


@gv.gen
def counts():
    gv.poisson(3.0) @ "n"


@gv.gen
def negbin():
    gv.distribution(nd.NegativeBinomial2)(3.0, 2.0) @ "n"


@gv.gen
def sphere():
    gv.distribution(nd.ProjectedNormal)(jnp.ones(3)) @ "v"


@gv.gen
def _positive():
    gv.gamma(2.0, 1.0) @ "r"


_SUB = gv.guides.normal(_positive, (), {}, init_loc="zeros")  # a generative function of its own


@gv.gen
def opaque():
    _SUB(_SUB.init(jax.random.key(0))) @ "sub"


ERRORS = [
    ("opaque latent", opaque, {}, {}, gv.ModelingError, ["'sub', 'r'", "by hand"]),
    ("random branch", random_branch, {}, {}, gv.ModelingError, ["'br', 'y'", "gv.cond"]),
    ("vmapped branch", random_branch_vmapped, {}, {}, gv.ModelingError, ["'pts', 'br', 'y'"]),
    ("dependent support", dependent_support, {}, {}, gv.ModelingError, ["'u'", "other latent"]),
    ("support in scan", support_in_scan, {}, {}, gv.ModelingError, ["'ch', 's'", "gv.scan"]),
    ("poisson enum", counts, {}, {"discrete": "enum"}, gv.StrategyError, ["'n'", "reinforce"]),
    ("poisson ENUM", counts, {}, {"discrete": gv.ENUM}, gv.StrategyError, ["'n'", "infinite"]),
    ("negative binomial", negbin, {}, {}, gv.ModelingError, ["'n'", "by hand"]),
    ("no bijection", sphere, {}, {}, gv.ModelingError, ["'v'", "Sphere", "by hand"]),
    ("unknown observation", counts, {"x": 1.0, "y": 2.0}, {}, gv.AddressError, ["'x'", "'y'"]),
    ("non-dict observations", counts, [1.0], {}, gv.ChoiceTypeError, ["observations", "list"]),
    ("unknown discrete=", counts, {}, {"discrete": {"m": "enum"}}, gv.AddressError, ["'m'"]),
    ("reparam discrete", counts, {}, {"discrete": gv.REPARAM}, gv.StrategyError, ["'n'"]),
    ("unknown init_loc", counts, {}, {"init_loc": {"z": 1.0}}, gv.AddressError, ["'z'"]),
]


@pytest.mark.parametrize(
    "model,obs,options,error,names", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_errors_name_the_culprit(model, obs, options, error, names):
    with pytest.raises(error) as info:
        gv.guides.normal(model, (), obs, **options)
    for name in names:
        assert name in str(info.value), str(info.value)


def test_option_errors():
    options: list[dict[str, Any]] = [
        {"init_scale": 0.0},
        {"init_loc": "median"},
        {"discrete": "exact"},
    ]
    for kw in options:
        with pytest.raises(ValueError):
            gv.guides.normal(counts, (), {}, **kw)
    with pytest.raises(ValueError, match="flow must be one of"):
        gv.guides.flow(counts, (), {}, flow="spline")
    with pytest.raises(ValueError, match="rank"):
        gv.guides.low_rank_mvn(counts, (), {}, rank=0)
    with pytest.raises(gv.ModelingError, match="generative function"):
        gv.guides.normal(lambda: 0.0, (), {})
    with pytest.raises(gv.ChoiceTypeError, match="model_args"):
        gv.guides.normal(counts, 3.0, {})


def test_call_errors():
    guide = gv.guides.normal(inner, (0.0,), {"x": 1.0}, init_loc="zeros")
    params = guide.init(jax.random.key(0))
    with pytest.raises(gv.ModelingError, match="one argument"):
        guide.simulate(jax.random.key(0), params, 1.0)
    with pytest.raises(gv.ChoiceTypeError, match="structure of guide.init"):
        guide.simulate(jax.random.key(0), {"loc": params["loc"]})
    tr = guide.simulate(jax.random.key(0), params)
    with pytest.raises(gv.AddressError, match="'nope'"):
        guide.assess(tr.choices.merge({"nope": 1.0}), params)
    with pytest.raises(gv.AddressError, match="no value for 'z'"):
        guide.assess({}, params)
    with pytest.raises(gv.ChoiceTypeError, match="shape"):
        guide.assess({"z": jnp.zeros(2)}, params)
    bnaf = gv.guides.flow(inner, (0.0,), {"x": 1.0}, flow="bnaf")
    p = bnaf.init(jax.random.key(0))
    with pytest.raises(gv.ModelingError, match="no inverse"):
        bnaf.assess(bnaf.simulate(jax.random.key(1), p).choices, p)
    mvn = gv.guides.mvn(two, (), {}, init_loc="zeros")
    with pytest.raises(gv.ModelingError, match="only some"):
        mvn.importance(jax.random.key(0), {"a": 0.0}, mvn.init(jax.random.key(0)))


@gv.gen
def two():
    gv.normal(0.0, 1.0) @ "a"
    gv.gamma(2.0, 1.0) @ "b"
