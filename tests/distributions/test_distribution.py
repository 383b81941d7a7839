"""Distributions as generative functions: strategy variants and their validity checks,
gv.distribution for other numpyro classes, and parameter validation (gv.validate)."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as nd
import pytest
import scipy.stats as st

import genvi as gv

# ----- strategies -----


@pytest.mark.parametrize(
    "dist, strategy",
    [
        (gv.normal, gv.REPARAM),
        (gv.gamma, gv.REPARAM),
        (gv.beta, gv.REPARAM),
        (gv.dirichlet, gv.REPARAM),
        (gv.mv_normal, gv.REPARAM),
        (gv.uniform, gv.REPARAM),
        (gv.flip, gv.REINFORCE),
        (gv.categorical, gv.REINFORCE),
        (gv.poisson, gv.REINFORCE),
        (gv.binomial, gv.REINFORCE),
        (gv.geometric, gv.REINFORCE),
    ],
)
def test_default_strategy(dist, strategy):
    assert dist.strategy == strategy


def test_strategy_variants_are_values_on_the_distribution():
    assert gv.normal.reinforce.strategy == gv.REINFORCE
    assert gv.normal.reparam.strategy == gv.REPARAM
    assert gv.normal.mvd.strategy == gv.MVD
    assert gv.flip.enum.strategy == gv.ENUM and gv.flip.mvd.strategy == gv.MVD
    assert gv.categorical.enum.strategy == gv.ENUM
    assert gv.binomial.enum.strategy == gv.ENUM
    b = gv.flip.reinforce.with_baseline(0.5)
    assert isinstance(b.strategy, gv.Baselined) and b.operands == (0.5,)
    # variants do not change the distribution they come from
    assert gv.normal.strategy == gv.REPARAM
    assert "normal" in repr(gv.normal.mvd) and "MVD" in repr(gv.normal.mvd)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: gv.flip.reparam, "REPARAM cannot apply to flip: it is discrete"),
        (lambda: gv.categorical.reparam, "REPARAM cannot apply to categorical"),
        (lambda: gv.poisson.reparam, "REPARAM cannot apply to poisson"),
        (lambda: gv.poisson.enum, "ENUM cannot apply to poisson: its support is not finite"),
        (lambda: gv.geometric.enum, "ENUM cannot apply to geometric"),
        (lambda: gv.normal.enum, "ENUM cannot apply to normal"),
        (lambda: gv.beta.mvd, "MVD is not available for beta"),
        (lambda: gv.gamma.mvd, "MVD is not available for gamma"),
        (lambda: gv.normal.with_baseline(0.0), "baseline wraps REINFORCE.*normal"),
    ],
)
def test_strategy_that_cannot_apply(make, match):
    with pytest.raises(gv.StrategyError, match=match):
        make()


def test_strategy_error_is_raised_at_the_line_that_asks_for_it(key):
    @gv.gen
    def model():
        gv.normal(0.0, 1.0) @ "z"
        return gv.poisson.enum(3.0) @ "k"

    with pytest.raises(gv.StrategyError, match="ENUM cannot apply to poisson") as info:
        model.simulate(key)
    # the innermost frame of the model in the traceback is the offending line
    lines = [e for e in info.traceback if e.frame.code.name == "model"]
    assert "gv.poisson.enum(3.0)" in str(lines[-1].statement)


@pytest.mark.parametrize(
    "dist, params",
    [(gv.normal, (0.3, 2.0)), (gv.flip, (0.4,)), (gv.categorical, (jnp.array([0.0, 1.0, 2.0]),))],
)
def test_every_strategy_samples_the_same_way(key, dist, params):
    """Outside an expectation, a strategy does not change what is sampled."""
    variants = [dist.reinforce, dist.reinforce.with_baseline(1.0)]
    for name in ("reparam", "enum", "mvd"):
        try:
            variants.append(getattr(dist, name))
        except gv.StrategyError:
            pass
    ref = jax.jit(dist.simulate)(key, *params)
    for v in variants:
        tr = jax.jit(v.simulate)(key, *params)
        assert tr.retval == ref.retval, v
        np.testing.assert_allclose(tr.score, ref.score, rtol=1e-6)


# ----- gv.distribution -----


def test_wrapped_numpyro_classes_know_their_support():
    student_t = gv.distribution(nd.StudentT)
    assert student_t.name == "StudentT" and not student_t.family.discrete
    assert student_t.strategy == gv.REPARAM
    assert student_t.family.params == ("df", "loc", "scale")
    # a support that depends on the parameters (a numpyro dependent_property)
    du = gv.distribution(nd.DiscreteUniform, name="die")
    assert du.name == "die" and du.family.discrete
    assert du.strategy == gv.REINFORCE and du.enum.strategy == gv.ENUM
    with pytest.raises(gv.StrategyError, match="REPARAM cannot apply to die"):
        _ = du.reparam
    assert gv.distribution(nd.BinomialProbs).family.discrete


def test_wrapped_distribution_in_a_model(key):
    student_t = gv.distribution(nd.StudentT)

    @gv.gen
    def model():
        return student_t(3.0, 0.5, scale=2.0) @ "t"

    tr = jax.jit(model.simulate)(key)
    np.testing.assert_allclose(tr.score, st.t(3.0, 0.5, 2.0).logpdf(tr["t"]), rtol=1e-5)


def test_logpdf_checks_the_value_shape():
    with pytest.raises(gv.ChoiceTypeError, match=r"normal.*\(top level\).*shape \(\).*\(4,\)"):
        gv.normal.logpdf(jnp.zeros(4), 0.0, 1.0)


# ----- parameter validation -----


def test_validation_is_off_by_default(key):
    assert not gv.validation_enabled()
    tr = gv.normal.simulate(key, 0.0, -1.0)  # no error: nan density, for speed
    assert np.isnan(tr.score)


@pytest.mark.parametrize(
    "dist, params, match",
    [
        (gv.normal, (0.0, -1.0), "normal at address 'z': parameter 'scale'.*-1"),
        (gv.flip, (1.5,), "flip at address 'z': parameter 'p' lies.*1.5"),
        (gv.gamma, (-2.0, 1.0), "gamma at address 'z': parameter 'concentration'"),
        (gv.poisson, (jnp.array([1.0, -3.0]),), r"poisson at address 'z'.*'rate'.*\[ 1. -3.\]"),
        (gv.categorical, (jnp.array([0.0, jnp.nan]),), "categorical at address 'z'.*'logits'"),
        (gv.mv_normal_diag, (jnp.zeros(2), jnp.array([1.0, -1.0])), "mv_normal_diag.*'scale_diag'"),
    ],
)
def test_parameters_outside_their_support_with_validation(key, dist, params, match):
    @gv.gen
    def model():
        return dist(*params) @ "z"

    with gv.validate(True):
        assert gv.validation_enabled()
        with pytest.raises(gv.SupportError, match=match):
            model.simulate(key)
        with pytest.raises(gv.SupportError, match=match):
            model.importance(key, {})
    assert not gv.validation_enabled()  # the context manager restores the setting


def test_validation_in_assess_and_at_top_level(key):
    with gv.validate(True):
        with pytest.raises(gv.SupportError, match=r"normal \(top level\): parameter 'scale'"):
            gv.normal.simulate(key, 0.0, -1.0)
        with pytest.raises(gv.SupportError, match="beta.*'concentration0'"):
            gv.beta.assess(0.5, 2.0, 0.0)
        # valid parameters pass
        assert np.isfinite(gv.normal.simulate(key, 0.0, 1.0).score)


def test_validation_of_traced_parameters_fails_when_the_program_runs(key):
    """Under jit a parameter is only known when the compiled program runs: the check is a
    host callback that raises there (JAX wraps the SupportError in its runtime error)."""
    f = jax.jit(lambda s: gv.normal.simulate(key, 0.0, s).score)
    with gv.validate(True):
        assert np.isfinite(f(1.0))
        with pytest.raises(Exception, match="normal.*parameter 'scale' lies outside its support"):
            jax.block_until_ready(f(-1.0))


def test_validate_as_a_plain_call():
    try:
        gv.validate(True)
        assert gv.validation_enabled()
        with pytest.raises(gv.SupportError, match="exponential"):
            gv.exponential.assess(1.0, -2.0)
    finally:
        gv.validate(False)
    assert not gv.validation_enabled()


def test_a_distribution_is_a_generative_function(key):
    """Its trace holds one choice at the root; its constraint may be a plain value."""
    tr = gv.normal.simulate(key, 0.5, 2.0)
    assert tr.choices.is_leaf and tr.choices.value == tr.retval
    np.testing.assert_allclose(tr.score, st.norm(0.5, 2.0).logpdf(tr.retval), rtol=1e-5)
    logp, v = gv.normal.assess(1.0, 0.5, 2.0)
    np.testing.assert_allclose(logp, st.norm(0.5, 2.0).logpdf(1.0), rtol=1e-5)
    for constraint in (1.0, gv.ChoiceMap.leaf(1.0)):
        tr, w = gv.normal.importance(key, constraint, 0.5, 2.0)
        assert tr.retval == 1.0
        np.testing.assert_allclose(w, logp, rtol=1e-6)
    tr, w = gv.normal.importance(key, {}, 0.5, 2.0)
    assert w == 0.0 and tr.retval == gv.normal.simulate(key, 0.5, 2.0).retval


def test_wrapped_non_reparameterized_sampler_defaults_to_reinforce():
    # numpyro's VonMises sampler is not reparameterized: a pathwise default would be biased.
    vm = gv.distribution(nd.VonMises)
    assert vm.strategy.name == "REINFORCE"
    with pytest.raises(gv.StrategyError, match="VonMises"):
        vm.reparam  # noqa: B018
    assert gv.distribution(nd.Cauchy).strategy.name == "REPARAM"
