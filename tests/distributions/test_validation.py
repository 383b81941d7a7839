"""gv.validate: dependent constraints (uniform's bounds), genvi's parameter names in the
messages, errors raised in compiled code coming back as SupportError, a quiet JAX log
for them (only them), values checked by logpdf, and a switch that is per thread."""

from __future__ import annotations

import logging
import threading

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as nd
import pytest

import genvi as gv
from genvi.core._errors import from_runtime_error, runtime_errors

discrete_uniform = gv.distribution(nd.DiscreteUniform)


# ----- dependent constraints -----


def test_uniform_with_validation_checks_that_low_is_below_high(key):
    with gv.validate(True):
        # valid bounds pass everywhere (this crashed on any uniform before)
        assert np.isfinite(gv.uniform.simulate(key, 0.0, 1.0).score)
        assert gv.uniform.assess(0.5, 0.0, 2.0)[0] == pytest.approx(-np.log(2.0))
        assert np.isfinite(jax.jit(lambda a: gv.uniform.simulate(key, a, 1.0).score)(0.0))
        assert np.isfinite(gv.uniform.logpdf(jnp.full(3, 0.5), jnp.zeros(3), jnp.ones(3)))
        for low, high in [(1.0, 0.0), (0.5, 0.5), (jnp.array([0.0, 2.0]), jnp.ones(2))]:
            match = r"uniform \(top level\): parameter 'low' must be below 'high'.*low="
            with pytest.raises(gv.SupportError, match=match):
                gv.uniform.simulate(key, low, high)
        with pytest.raises(gv.SupportError, match=r"low=2.0, high=1.0"):
            with runtime_errors():
                jax.block_until_ready(
                    jax.jit(lambda a: gv.uniform.simulate(key, a, 1.0).score)(2.0)
                )


def test_integer_bounds_may_be_equal(key):
    with gv.validate(True):
        assert discrete_uniform.sample(key, 2, 2) == 2
        with pytest.raises(gv.SupportError, match="'low' must be at most 'high'.*low=5, high=2"):
            discrete_uniform.logpdf(3, 5, 2)


# ----- messages in genvi's terms -----


@pytest.mark.parametrize(
    "dist, params, name, not_named",
    [
        (gv.flip, (1.5,), "p", "probs"),
        (gv.mv_normal_diag, (jnp.zeros(2), jnp.array([1.0, -1.0])), "scale_diag", "'scale'"),
        (gv.mv_normal, (jnp.zeros(2), -jnp.eye(2)), "covariance_matrix", "scale_tril"),
        (gv.binomial, (3, 1.5), "probs", "total_count"),
        (gv.binomial, (-3, 0.5), "total_count", "'probs'"),
        (gv.categorical, (jnp.array([0.0, jnp.inf]),), "logits", "probs"),
    ],
)
def test_messages_name_genvis_parameter(key, dist, params, name, not_named):
    @gv.gen
    def model():
        return dist(*params) @ "z"

    with gv.validate(True), pytest.raises(gv.SupportError) as info:
        model.simulate(key)
    msg = str(info.value)
    assert msg.startswith(f"{dist.name} at address 'z': parameter '{name}' lies outside")
    assert not_named not in msg


# ----- errors raised in compiled code -----


@gv.gen
def flip_model(p):
    return gv.flip(p) @ "b"


def test_a_traced_parameter_fails_as_a_marked_runtime_error(key):
    f = jax.jit(lambda p: flip_model.simulate(key, p).score)
    with gv.validate(True):
        assert np.isfinite(f(0.5))
        with pytest.raises(jax.errors.JaxRuntimeError) as info:
            jax.block_until_ready(f(1.5))
        err = from_runtime_error(info.value)
        assert isinstance(err, gv.SupportError)
        assert str(err) == (
            "flip at address 'b': parameter 'p' lies outside its support "
            "(UnitInterval(lower_bound=0.0, upper_bound=1.0)); got 1.5"
        )
        with pytest.raises(gv.SupportError, match="flip at address 'b'.*'p'.*got 2.5"):
            with runtime_errors():
                jax.block_until_ready(f(2.5))


def test_grad_estimate_raises_support_error(key):
    @gv.expectation
    def objective(key, p):
        return jnp.sum(flip_model.simulate(key, p).retval * 1.0)

    with gv.validate(True):
        with pytest.raises(gv.SupportError, match="flip at address 'b': parameter 'p'"):
            objective.grad_estimate(key, 1.5)


@pytest.mark.parametrize(
    "run",
    [
        lambda k: jax.vmap(lambda s: gv.normal.simulate(k, 0.0, s).score)(jnp.array([1.0, -1.0])),
        lambda k: jax.grad(lambda s: gv.normal.logpdf(0.0, 0.0, s))(-1.0),
        lambda k: jax.jacfwd(lambda s: gv.normal.assess(0.0, 0.0, s)[0])(-1.0),
    ],
    ids=["vmap", "grad", "jacfwd"],
)
def test_eager_transformations_raise_a_plain_support_error(key, run):
    with gv.validate(True), pytest.raises(gv.SupportError) as info:
        run(key)
    assert str(info.value).startswith("normal (top level): parameter 'scale' lies outside")
    assert "[genvi:" not in str(info.value) and "genvi]" not in str(info.value)


def test_the_jax_callback_log_is_quiet_for_genvi_errors_only(key, caplog):
    f = jax.jit(lambda p: flip_model.simulate(key, p).score)
    with caplog.at_level(logging.ERROR, logger="jax._src.debugging"):
        with gv.validate(True), pytest.raises(gv.SupportError):
            with runtime_errors():
                jax.block_until_ready(f(1.5))
        assert not [r for r in caplog.records if r.name == "jax._src.debugging"]

        def boom(x):
            raise ValueError("not genvi's")

        g = jax.jit(lambda x: (jax.debug.callback(boom, x), x + 1)[1])
        with pytest.raises(jax.errors.JaxRuntimeError, match="not genvi's"):
            jax.block_until_ready(g(1.0))
        logged = [r for r in caplog.records if r.name == "jax._src.debugging"]
        assert logged and "not genvi's" in str(logged[-1].exc_info[1])


# ----- logpdf -----


def test_logpdf_validates_parameters_and_values():
    with gv.validate(True):
        with pytest.raises(gv.SupportError, match=r"normal \(top level\): parameter 'scale'"):
            gv.normal.logpdf(0.0, 0.0, -1.0)
        with pytest.raises(gv.SupportError, match=r"uniform \(top level\): the value 3.0 lies"):
            gv.uniform.logpdf(3.0, 0.0, 1.0)
        with pytest.raises(gv.SupportError, match=r"the value \[0.5 0.5 0.5\] lies.*dirichlet"):
            gv.dirichlet.logpdf(jnp.full(3, 0.5), jnp.ones(3))
        msg = r"the value int32\[20\], at \(0,\): -3, \(1,\): -2, \(2,\): -1, lies outside"
        with pytest.raises(gv.SupportError, match=msg):
            gv.poisson.logpdf(jnp.arange(20) - 3, jnp.ones(20))
        with pytest.raises(gv.SupportError, match="categorical.*the value 3 lies"):
            with runtime_errors():
                jax.block_until_ready(jax.jit(lambda v: gv.categorical.logpdf(v, jnp.zeros(3)))(3))
        # values in the support pass, bounds of a closed support included
        assert gv.uniform.logpdf(0.0, 0.0, 1.0) == 0.0
        assert np.isfinite(gv.exponential.logpdf(0.0, 2.0))
        assert np.isfinite(gv.categorical.logpdf(2, jnp.zeros(3)))
    # without validation: -inf, no error
    assert gv.uniform.logpdf(3.0, 0.0, 1.0) == -jnp.inf


def test_assess_does_not_refuse_a_value_outside_the_support():
    """A model may score a proposal it gives density zero (an importance weight of 0);
    only the explicit density query, logpdf, names such a value."""
    with gv.validate(True):
        assert gv.uniform.assess(3.0, 0.0, 1.0)[0] == -jnp.inf


# ----- the switch -----


def test_the_switch_is_per_thread(key):
    barrier = threading.Barrier(2, timeout=60)
    seen: dict = {}

    def validating():
        with gv.validate(True):
            barrier.wait()  # the other thread looks while this one validates
            barrier.wait()
            try:
                gv.normal.simulate(key, 0.0, -1.0)
                seen["a"] = "no error"
            except gv.SupportError:
                seen["a"] = "SupportError"
        gv.validate(True)  # a plain call: this thread only, for the rest of it
        seen["a_after"] = gv.validation_enabled()

    def plain():
        barrier.wait()
        seen["b"] = gv.validation_enabled()
        seen["b_score"] = float(gv.normal.simulate(key, 0.0, -1.0).score)
        barrier.wait()

    threads = [threading.Thread(target=validating), threading.Thread(target=plain)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert seen == {"a": "SupportError", "a_after": True, "b": False, "b_score": seen["b_score"]}
    assert np.isnan(seen["b_score"])  # no check in the other thread: numpyro's nan
    assert not gv.validation_enabled()  # nor in this one


def test_the_switch_nests_and_restores():
    with gv.validate(True):
        with gv.validate(False):
            assert not gv.validation_enabled()
        assert gv.validation_enabled()
        gv.validate(False)  # a plain call inside a block lasts until the block ends
        assert not gv.validation_enabled()
    assert not gv.validation_enabled()


def test_numpyros_own_validation_default_is_left_alone():
    """genvi turns numpyro's checks off per instance: with valid parameters numpyro's
    process-wide default is never switched (a thread watching it sees no change), and
    the rebuild that invalid concrete parameters need switches it under a lock, so that
    threads doing it at once leave it as it was."""
    default = nd.Distribution._validate_args
    stop = threading.Event()
    seen = set()

    def watch():
        while not stop.is_set():
            seen.add(nd.Distribution._validate_args)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for _ in range(20):
            gv.beta.logpdf(0.3, 2.0, 3.0)
            gv.mv_normal_diag.logpdf(jnp.zeros(2), jnp.zeros(2), jnp.ones(2))
            gv.flip.enum.family.enum_support(0.3)
    finally:
        stop.set()
        watcher.join()
    assert seen == {default}
    # the distributions genvi builds, with the ones inside them, do not check
    d = gv.beta.family.dist((2.0, 3.0))
    assert not d._validate_args and not d._dirichlet._validate_args

    scores = []

    def invalid():
        for _ in range(10):  # numpyro's inner check refuses concentration0 = 0
            scores.append(float(gv.beta.logpdf(0.3, 2.0, 0.0)))

    threads = [threading.Thread(target=invalid) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert scores == [-np.inf] * 60  # numpyro's formula (lbeta(2, 0) = inf), no error
    assert nd.Distribution._validate_args == default
