"""gv.fit: convergence to an exact optimum, minibatches, determinism, non-finite values,
callbacks, argument errors."""

import math
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import genvi as gv
from genvi.training import NonFiniteWarning
from genvi.training._batches import Batching, batch_indices
from genvi.training._progress import compiling, interactive

# ---- a conjugate model: z ~ N(0, 1), x_i ~ N(z, NOISE), observed XS ------------------
NOISE = 0.5
XS = jnp.array([1.1, 0.7, 1.6])


@gv.gen
def model():
    z = gv.normal(0.0, 1.0) @ "z"
    gv.normal(jnp.full(XS.shape, z), NOISE) @ "x"


@gv.gen
def guide(phi):
    gv.normal(phi["mean"], jnp.exp(phi["log_sd"])) @ "z"


def exact_posterior():
    precision = 1.0 + XS.size / NOISE**2
    return float(jnp.sum(XS) / NOISE**2 / precision), 1.0 / math.sqrt(precision)


def test_fit_converges_to_the_exact_posterior():
    # With sticking-the-landing gradients and a reparameterized guide, the gradient
    # estimate is exactly zero for every sample at the exact posterior: the stochastic
    # iteration has a noiseless fixed point there, so the only error left is the
    # optimizer's (no variance floor); 1e-2 is far above it and far below any miss.
    elbo = gv.objectives.elbo(model, guide, stl=True)
    phi0 = {"mean": jnp.zeros(()), "log_sd": jnp.zeros(())}
    result = gv.fit(
        lambda k, phi: elbo(k, (), (phi,), {"x": XS}),
        phi0,
        key=jax.random.key(0),
        steps=1500,
        optimizer=optax.adam(optax.exponential_decay(0.05, 1500, 0.05)),
    )
    mean, sd = exact_posterior()
    assert result.stopped_reason == "steps" and result.step == 1500
    assert abs(float(result.params["mean"]) - mean) < 1e-2
    assert abs(float(jnp.exp(result.params["log_sd"])) - sd) < 1e-2
    assert result.history.steps == 1500
    for field in ("objective", "grad_norm", "time"):
        assert np.all(np.isfinite(getattr(result.history, field)))
    # the objective climbs: last tenth above the first tenth
    assert result.history.objective[-150:].mean() > result.history.objective[:150].mean()
    assert result.history.grad_norm[-150:].mean() < 1e-2 * result.history.grad_norm[:150].mean()


def test_minibatch_order_is_a_fresh_permutation_each_epoch():
    key = jax.random.key(3)
    for n, b in [(12, 4), (13, 4)]:
        batching = Batching(n, b, True)
        spe = batching.steps_per_epoch
        epochs = [
            np.concatenate(
                [np.asarray(batch_indices(key, e * spe + j, batching)) for j in range(spe)]
            )
            for e in range(3)
        ]
        for order in epochs:
            assert len(set(order.tolist())) == spe * b  # no point twice in an epoch
        assert not np.array_equal(epochs[0], epochs[1])


def test_fit_visits_every_point_once_per_epoch():
    # d objective / d w = indicator of the batch's points: after e epochs of SGD with
    # step 1, w counts how often each point was drawn.
    def objective(key, params, batch):
        return jnp.sum(params["w"][batch.astype(jnp.int32)])

    n, b = 12, 4
    result = gv.fit(
        objective,
        {"w": jnp.zeros(n)},
        key=jax.random.key(1),
        steps=2 * (n // b),
        optimizer=optax.sgd(1.0),
        data=np.arange(n, dtype=np.float32),
        batch_size=b,
        chunk=5,
    )
    np.testing.assert_array_equal(np.asarray(result.params["w"]), np.full(n, 2.0))
    # 13 points, batches of 4: 12 distinct points an epoch, one sits out
    n = 13
    result = gv.fit(
        objective,
        {"w": jnp.zeros(n)},
        key=jax.random.key(1),
        steps=3,
        optimizer=optax.sgd(1.0),
        data=np.arange(n, dtype=np.float32),
        batch_size=4,
    )
    w = np.asarray(result.params["w"])
    assert sorted(w.tolist()) == [0.0] + [1.0] * 12


def _data_objective():
    @gv.expectation
    def objective(key, params, batch):
        tr = guide.simulate(key, params)
        return jnp.mean(jax.scipy.stats.norm.logpdf(batch, tr.choices["z"], NOISE)) - tr.score

    return objective


DATA = np.random.default_rng(0).normal(1.0, NOISE, size=20).astype(np.float32)
PHI0 = {"mean": jnp.zeros(()), "log_sd": jnp.zeros(())}


def test_fit_is_deterministic_given_the_key():
    kw = dict(steps=30, data=DATA, batch_size=5, optimizer=optax.adam(0.05), chunk=8)
    a = gv.fit(_data_objective(), PHI0, key=jax.random.key(7), **kw)
    # a fresh objective (compiled afresh) and the same one again (the compiled program
    # is reused): both give the same run
    b = gv.fit(_data_objective(), PHI0, key=jax.random.key(7), **kw)
    objective = _data_objective()
    b2 = gv.fit(objective, PHI0, key=jax.random.key(7), **kw)
    b3 = gv.fit(objective, PHI0, key=jax.random.key(7), **kw)
    assert b3.compile_time < b2.compile_time
    c = gv.fit(objective, PHI0, key=jax.random.key(8), **kw)
    for name in PHI0:
        assert np.array_equal(np.asarray(a.params[name]), np.asarray(b.params[name]))
        assert np.array_equal(np.asarray(a.params[name]), np.asarray(b3.params[name]))
        assert not np.array_equal(np.asarray(a.params[name]), np.asarray(c.params[name]))
    np.testing.assert_array_equal(a.history.objective, b.history.objective)


def test_kernel_and_wrapper_agree():
    # fit = init + make_step iterated; the state key is the first half of split(key)
    def objective(key, params):
        return -jnp.sum((params["w"] - jax.random.normal(key, (2,))) ** 2)

    opt = optax.adam(0.1)
    key = jax.random.key(4)
    state = gv.training.init({"w": jnp.zeros(2)}, opt, jax.random.split(key)[0])
    step = jax.jit(gv.training.make_step(objective, opt, has_data=False))
    for _ in range(7):
        state, info = step(state, None)
    result = gv.fit(objective, {"w": jnp.zeros(2)}, key=key, steps=7, optimizer=opt, chunk=3)
    np.testing.assert_array_equal(np.asarray(state.params["w"]), np.asarray(result.params["w"]))
    assert int(state.step) == 7 and int(info.nonfinite) == -1


# ---- non-finite values ----------------------------------------------------------------
def _sqrt_objective(key, params):
    # d/dw of where(w > 0, sqrt(w), 0) is NaN for w < 0 (0 * NaN) while the value stays
    # finite: the gradient of params['w'] turns non-finite, nothing else does.
    w = params["w"]
    return -jnp.sum(params["a"] ** 2) - w + 0.01 * jnp.where(w > 0, jnp.sqrt(w), 0.0)


def test_nonfinite_gradient_stops_naming_the_parameter():
    params = {"a": jnp.ones(()), "w": jnp.asarray(0.35)}
    with pytest.warns(NonFiniteWarning, match=r"the gradient of params\['w'\]"):
        result = gv.fit(
            _sqrt_objective,
            params,
            key=jax.random.key(0),
            steps=50,
            optimizer=optax.sgd(0.1),
            chunk=4,
        )
    assert result.stopped_reason == "nonfinite"
    assert "params['a']" not in result.message
    # replay SGD by hand: the last good parameters are those of the first w < 0
    w, a, k = 0.35, 1.0, 0
    while w >= 0:
        w, a, k = w + 0.1 * (-1.0 + 0.005 / math.sqrt(w)), a + 0.1 * (-2 * a), k + 1
    assert result.step == k and result.history.steps == k
    assert f"step {k}" in result.message
    assert float(result.params["w"]) == pytest.approx(w, abs=1e-5)
    assert float(result.params["a"]) == pytest.approx(a, abs=1e-5)
    assert np.all(np.isfinite(result.history.objective))


def test_nonfinite_objective_of_a_program_stops_with_the_last_good_params():
    # E_{z ~ N(m, s)}[-z^2] - 0.01 E[log q(z)], by SGD with step 1: the scale s overshoots
    # below 0 within a few steps, and then log q(z) = log N(z; m, s) is NaN: the objective
    # is the first non-finite value.
    @gv.gen
    def q(p):
        gv.normal(p["m"], p["s"]) @ "z"

    @gv.expectation
    def objective(key, p):
        tr = q.simulate(key, p)
        return -(tr.choices["z"] ** 2) - 0.01 * tr.score

    kw = dict(key=jax.random.key(0), optimizer=optax.sgd(1.0), chunk=4)
    p0 = {"m": jnp.asarray(0.0), "s": jnp.asarray(1.0)}
    with pytest.warns(NonFiniteWarning, match="the objective is not finite"):
        result = gv.fit(objective, p0, steps=50, **kw)
    k = result.step
    assert result.stopped_reason == "nonfinite" and 0 < k < 50 and result.history.steps == k
    assert float(result.params["s"]) < 0  # finite, but log q is not defined there
    # the parameters returned are exactly those after the k good steps
    with warnings.catch_warnings():
        warnings.simplefilter("error", NonFiniteWarning)
        replay = gv.fit(objective, p0, steps=k, **kw)
    for name in p0:
        assert np.array_equal(np.asarray(replay.params[name]), np.asarray(result.params[name]))
    np.testing.assert_array_equal(replay.history.objective, result.history.objective)


def test_skip_mode_drops_nonfinite_steps_and_goes_on():
    def objective(key, params):
        poison = jnp.where(jax.random.uniform(key) < 0.2, jnp.nan, 1.0)
        return -poison * jnp.sum((params["w"] - 1.0) ** 2)

    with pytest.warns(NonFiniteWarning, match=r"skipped \d+ of 200 steps"):
        result = gv.fit(
            objective,
            {"w": jnp.zeros(3)},
            key=jax.random.key(2),
            steps=200,
            optimizer=optax.sgd(0.1),
            on_nonfinite="skip",
            chunk=64,
        )
    h = result.history
    assert result.stopped_reason == "steps" and result.step == 200 and h.steps == 200
    np.testing.assert_array_equal(h.skipped, ~np.isfinite(h.objective))
    assert 10 < h.skipped.sum() < 90  # about 20% of 200
    np.testing.assert_allclose(np.asarray(result.params["w"]), 1.0, atol=1e-6)


# ---- callbacks, progress, arguments ---------------------------------------------------
def test_callbacks_see_progress_and_can_stop():
    seen = []

    def cb(step, params, history):
        seen.append((step, history.steps))
        return step >= 20

    result = gv.fit(
        lambda k, p: -jnp.sum(p["w"] ** 2),
        {"w": jnp.ones(2)},
        key=jax.random.key(0),
        steps=100,
        chunk=10,
        callbacks=[cb],
    )
    assert result.stopped_reason == "callback" and result.step == 20
    assert seen == [(10, 10), (20, 20)]


def _quadratic(key, params):
    return -jnp.sum(params["w"] ** 2)


def test_compiling_line_counts_the_seconds_and_is_silent_when_off_or_quick(capsys):
    with compiling(True, every=0.05):
        time.sleep(0.3)
    err = capsys.readouterr().err
    assert "\rfit: compiling... 0 s" in err and "fit: compiled in 0." in err
    with compiling(False, every=0.05):
        time.sleep(0.2)
    with compiling(True, every=5.0):  # done before the first tick: e.g. a cached program
        pass
    assert capsys.readouterr().err == ""


def test_progress_bar_shows_the_objective_and_is_off_unattended(capsys, monkeypatch):
    gv.fit(_quadratic, {"w": jnp.ones(2)}, key=jax.random.key(0), steps=20, chunk=10, progress=True)
    assert "objective" in capsys.readouterr().err
    monkeypatch.setenv("CI", "1")
    assert not interactive()
    gv.fit(_quadratic, {"w": jnp.ones(2)}, key=jax.random.key(0), steps=20, chunk=10)
    assert capsys.readouterr().err == ""


def test_argument_errors_name_the_culprit():
    key = jax.random.key(0)
    with pytest.raises(TypeError, match="one float scalar"):
        gv.fit(lambda k, p: p["w"], {"w": jnp.ones(3)}, key=key, steps=1)
    with pytest.raises(TypeError, match=r"params\['n'\] has dtype int32"):
        gv.fit(lambda k, p: p["w"], {"w": 1.0, "n": jnp.int32(3)}, key=key, steps=1)
    with pytest.raises(ValueError, match="batch_size=50 is larger than the data"):
        gv.fit(
            lambda k, p, b: p["w"], {"w": 1.0}, key=key, steps=1, data=np.zeros(10), batch_size=50
        )
    with pytest.raises(ValueError, match="on_nonfinite"):
        gv.fit(lambda k, p: p["w"], {"w": 1.0}, key=key, steps=1, on_nonfinite="ignore")
    with pytest.raises(ValueError, match="checkpoint_every needs checkpoint"):
        gv.fit(lambda k, p: p["w"], {"w": 1.0}, key=key, steps=1, checkpoint_every=5)
    with pytest.raises(ValueError, match="disagree on the number of data points"):
        gv.fit(
            lambda k, p, b: p["w"],
            {"w": 1.0},
            key=key,
            steps=1,
            data={"x": np.zeros(10), "y": np.zeros(9)},
            batch_size=2,
        )


def test_minimize_descends():
    result = gv.fit(
        lambda k, p: jnp.sum((p["w"] - 3.0) ** 2),
        {"w": jnp.zeros(2)},
        key=jax.random.key(0),
        steps=300,
        optimizer=optax.adam(0.1),
        maximize=False,
    )
    np.testing.assert_allclose(np.asarray(result.params["w"]), 3.0, atol=1e-2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert result.message == "completed 300 steps"


def test_skip_mode_stops_after_too_many_consecutive_skips():
    def objective(key, params):  # every step after the 5th is non-finite
        return jnp.where(params["n"] < 4.5, 1.0, jnp.nan) * params["n"]

    kw = dict(key=jax.random.key(0), optimizer=optax.sgd(1.0), on_nonfinite="skip", chunk=4)
    with pytest.warns(NonFiniteWarning, match="the last 7 steps were all skipped"):
        result = gv.fit(objective, {"n": jnp.zeros(())}, steps=100, max_consecutive_skips=7, **kw)
    # steps 0..4 raise n by 1 each; steps 5..11 are skipped; the run stops after step 12
    assert result.stopped_reason == "nonfinite" and result.step == 12 and result.skipped == 7
    assert float(result.params["n"]) == 5.0  # the last good parameters
    assert "from step 5" in result.message and "max_consecutive_skips" in result.message
    np.testing.assert_array_equal(result.history.skipped, [False] * 5 + [True] * 7)
    # a run that completes says how many steps it skipped
    with pytest.warns(NonFiniteWarning, match="skipped 15 of 20 steps"):
        done = gv.fit(objective, {"n": jnp.zeros(())}, steps=20, **kw)
    assert done.stopped_reason == "steps" and done.skipped == 15
    assert done.message == "completed 20 steps (15 of them skipped because of non-finite values)"
    with pytest.raises(ValueError, match="max_consecutive_skips must be an int >= 1"):
        gv.fit(objective, {"n": jnp.zeros(())}, steps=20, max_consecutive_skips=0, **kw)


def test_an_optimizer_name_is_refused_naming_what_to_pass():
    with pytest.raises(TypeError, match=r"optax.GradientTransformation.*optimizer=optax.adam\("):
        gv.fit(_quadratic, {"w": jnp.ones(2)}, key=jax.random.key(0), steps=1, optimizer="adam")
    with pytest.raises(TypeError, match="got function"):
        gv.fit(_quadratic, {"w": jnp.ones(2)}, key=jax.random.key(0), steps=1, optimizer=optax.sgd)


def test_a_genvi_error_inside_a_compiled_step_stops_cleanly(tmp_path):
    # A host callback that raises a genvi error (as distributions do under gv.validate)
    # once the scale parameter crosses 1: SGD raises it by 0.1 a step from 0.35, so the
    # check fails at step 7 (scale 1.05), in the middle of the second chunk.
    from genvi.core._errors import runtime_check_message

    def check(scale):
        if scale > 1.0:
            raise gv.SupportError(
                runtime_check_message(
                    gv.SupportError, f"normal at address 'z': scale={float(scale):.2f} > 1"
                )
            )

    def objective(key, params):
        jax.debug.callback(check, params["scale"])
        return params["scale"]

    path = tmp_path / "c.npz"
    with pytest.warns(RuntimeWarning, match="fit stopped at step 7: SupportError"):
        result = gv.fit(
            objective,
            {"scale": jnp.asarray(0.35)},
            key=jax.random.key(0),
            steps=50,
            optimizer=optax.sgd(0.1),
            chunk=4,
            checkpoint=path,
        )
    assert result.stopped_reason == "error" and isinstance(result.error, gv.SupportError)
    assert "normal at address 'z': scale=1.05 > 1" in result.message
    assert result.step == 7 and result.history.steps == 7
    assert float(result.params["scale"]) == pytest.approx(1.05)
    saved = gv.training.load_checkpoint(path, {"scale": jnp.zeros(())})
    assert int(saved.state.step) == 7
    assert float(saved.state.params["scale"]) == float(result.params["scale"])
