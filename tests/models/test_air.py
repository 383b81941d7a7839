"""Attend-Infer-Repeat (genvi.models.air): the spatial transformer against hand-computed
placements, the model's density on a fixed trace against a hand-written sum, and the
gradient of every presence estimator against ENUM's (exact in the presence choices)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import genvi as gv
from genvi.models import air

TINY = air.AIR(canvas=8, window=4, steps=3, z_what=2, hidden=4, mlp_hidden=4)


# ---------------------------------------------------------------------------------------
# The spatial transformer.


def _grid_sample(img, a, b):
    """Bilinear sampling of ``img`` at normalized (column a, row b), zeros outside, with
    explicit neighbours (as PyTorch's grid_sample, align_corners=False)."""
    n_r, n_c = img.shape
    col = ((a + 1) * n_c - 1) / 2
    row = ((b + 1) * n_r - 1) / 2
    c0, r0 = math.floor(col), math.floor(row)
    out = 0.0
    for r, wr in ((r0, 1 - (row - r0)), (r0 + 1, row - r0)):
        for c, wc in ((c0, 1 - (col - c0)), (c0 + 1, col - c0)):
            if 0 <= r < n_r and 0 <= c < n_c:
                out += wr * wc * img[r, c]
    return out


def _place_by_hand(where, window, canvas):
    s, x, y = (float(v) for v in where)
    out = np.zeros((canvas, canvas))
    for i in range(canvas):
        for j in range(canvas):
            u, v = (2 * j + 1) / canvas - 1, (2 * i + 1) / canvas - 1
            out[i, j] = _grid_sample(np.asarray(window), s * u + x, s * v + y)
    return out


def test_identity_and_integer_shifts():
    window = jax.random.uniform(jax.random.key(0), (6, 6))
    same = air.window_to_image(jnp.array([1.0, 0.0, 0.0]), window, 6)
    np.testing.assert_allclose(same, window, atol=1e-6)
    # shift x by 2 pixels' worth (2 * 2 / 6): canvas column j reads window column j + 2
    moved = air.window_to_image(jnp.array([1.0, 4.0 / 6.0, 0.0]), window, 6)
    np.testing.assert_allclose(moved[:, :4], window[:, 2:], atol=1e-6)
    np.testing.assert_allclose(moved[:, 4:], 0.0, atol=1e-6)
    # and y moves rows the same way
    moved = air.window_to_image(jnp.array([1.0, 0.0, -4.0 / 6.0]), window, 6)
    np.testing.assert_allclose(moved[2:], window[:4], atol=1e-6)


def test_a_bright_pixel_lands_where_the_formula_says():
    # window pixel (row 5, col 10) of 16: normalized (w_x, w_y) = ((2*10+1)/16 - 1, (2*5+1)/16 - 1);
    # canvas (50) reads window at s*u + x, so it lands at u = (w_x - x) / s, pixel ((u+1)*50-1)/2
    window = jnp.zeros((16, 16)).at[5, 10].set(1.0)
    s, x, y = 2.0, 0.2, -0.4
    image = np.asarray(air.window_to_image(jnp.array([s, x, y]), window, 50))
    wx, wy = (2 * 10 + 1) / 16 - 1, (2 * 5 + 1) / 16 - 1
    col = (((wx - x) / s + 1) * 50 - 1) / 2
    row = (((wy - y) / s + 1) * 50 - 1) / 2
    r, c = np.unravel_index(np.argmax(image), image.shape)
    assert abs(r - row) <= 0.5 and abs(c - col) <= 0.5
    np.testing.assert_allclose(image, _place_by_hand((s, x, y), window, 50), atol=1e-5)


@pytest.mark.parametrize("where", [(3.0, 0.0, 0.0), (2.5, 0.7, -0.3), (0.8, -0.2, 0.9)])
def test_placement_and_crop_match_explicit_bilinear_sampling(where):
    window = jax.random.uniform(jax.random.key(1), (5, 5))
    image = air.window_to_image(jnp.array(where), window, 12)
    np.testing.assert_allclose(image, _place_by_hand(where, window, 12), atol=1e-5)
    canvas = jax.random.uniform(jax.random.key(2), (12, 12))
    crop = np.asarray(air.image_to_window(jnp.array(where), canvas, 5))
    s, x, y = where
    inv = (1 / s, -x / s, -y / s)
    np.testing.assert_allclose(crop, _place_by_hand(inv, canvas, 5)[:5, :5], atol=1e-5)


def test_transformer_gradients_are_finite_and_match_finite_differences():
    window = jax.random.uniform(jax.random.key(3), (4, 4))

    def f(where):
        return jnp.sum(air.window_to_image(where, window, 8) ** 2)

    where = jnp.array([2.2, 0.13, -0.21])
    g = jax.grad(f)(where)
    eps = 1e-3
    for i in range(3):
        e = jnp.zeros(3).at[i].set(eps)
        fd = (f(where + e) - f(where - e)) / (2 * eps)
        assert abs(float(g[i]) - float(fd)) < 1e-2 * (1 + abs(float(fd)))


# ---------------------------------------------------------------------------------------
# The model's density.


def _trace(n_objects: int, key=0):
    ks = jax.random.split(jax.random.key(key), 8)
    cm: dict = {"pres": int(n_objects > 0)}
    obj: dict
    for t in range(n_objects):
        obj = {
            "where": jnp.array([2.5, 0.3 * t - 0.2, 0.1]) + 0.05 * jax.random.normal(ks[t], (3,)),
            "what": jax.random.normal(ks[3 + t], (TINY.z_what,)),
        }
        if t < TINY.steps - 1:
            obj["more"] = int(t + 1 < n_objects)
        cm[f"object{t}"] = obj
    return cm


@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_model_log_density_is_the_hand_written_sum(n):
    params = TINY.init_params(jax.random.key(0))
    cm = _trace(n)
    x = jax.random.uniform(jax.random.key(9), (TINY.canvas**2,))
    cm["x"] = x
    logp, _ = TINY.model.assess(cm, params["decoder"])
    p = TINY.pres_prior
    want = math.log(p) if n > 0 else math.log(1 - p)
    canvas = np.zeros((TINY.canvas, TINY.canvas))
    for t in range(n):
        obj = cm[f"object{t}"]
        want += stats.norm.logpdf(obj["where"], TINY.where_loc, TINY.where_scale).sum()
        want += stats.norm.logpdf(obj["what"]).sum()
        if "more" in obj:
            want += math.log(p) if obj["more"] else math.log(1 - p)
        h = np.asarray(obj["what"])
        for layer in params["decoder"][:-1]:
            h = np.maximum(h @ np.asarray(layer["w"]) + np.asarray(layer["b"]), 0)
        out = h @ np.asarray(params["decoder"][-1]["w"]) + np.asarray(params["decoder"][-1]["b"])
        window = 1 / (1 + np.exp(-(out + TINY.decoder_bias)))
        window = window.reshape(TINY.window, TINY.window)
        canvas += _place_by_hand(obj["where"], window, TINY.canvas)
    want += stats.norm.logpdf(np.asarray(x), canvas.reshape(-1), TINY.likelihood_sd).sum()
    assert float(logp) == pytest.approx(want, rel=1e-5, abs=1e-3)
    # the same density with the branches traced (a jit'ed assess sees all addresses padded)
    padded = _trace(3)
    padded["x"] = x
    padded["pres"] = cm["pres"]
    for t in range(TINY.steps - 1):
        padded[f"object{t}"]["more"] = cm.get(f"object{t}", {}).get("more", 0)
    for t in range(n):
        padded[f"object{t}"] = dict(padded[f"object{t}"], **cm[f"object{t}"])
    logp_jit, _ = jax.jit(TINY.model.assess)(padded, params["decoder"])
    assert float(logp_jit) == pytest.approx(want, rel=1e-5, abs=1e-3)


def test_count_and_steps_of_a_guide_trace():
    params = TINY.init_params(jax.random.key(0))
    gp = TINY.guide_params(params)
    x = jnp.zeros(TINY.canvas**2)
    guide = TINY.guide("reinforce")

    def one(k):
        tr = guide.simulate(k, gp, x)
        return air.count(tr.choices), air.steps_of(tr.choices, TINY.steps)[1]

    n, pres = jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(1), 200))
    np.testing.assert_array_equal(np.asarray(n), np.asarray(pres).sum(1))
    # presence is a prefix: once absent, absent after
    assert np.all(np.diff(np.asarray(pres, np.int64), axis=1) <= 0)
    assert set(np.unique(np.asarray(n))) <= {0, 1, 2, 3}


def test_guide_and_model_have_the_same_addresses():
    params = TINY.init_params(jax.random.key(0))
    x = jnp.zeros(TINY.canvas**2)
    g = jax.jit(lambda k: TINY.guide("enum").simulate(k, TINY.guide_params(params), x).choices)
    m = jax.jit(lambda k: TINY.model.simulate(k, params["decoder"]).choices)
    guide_addrs = set(g(jax.random.key(0)).addresses())
    model_addrs = set(m(jax.random.key(0)).addresses()) - {("x",)}
    assert guide_addrs == model_addrs


# ---------------------------------------------------------------------------------------
# The estimators: unbiased, agreeing with ENUM.


def _grad_draws(estimator, n, seed, objective="elbo", particles=None):
    params = TINY.init_params(jax.random.key(0), pres_logit=0.3)
    x = jnp.asarray(
        TINY.model.simulate(jax.random.key(42), params["decoder"]).choices["x"], jnp.float32
    )
    f = TINY.objective(estimator, objective, particles)
    directions = jax.random.normal(jax.random.key(7), (4, _size(params)))

    def one(k):
        v, g = jax.value_and_grad(f, argnums=1)(k, params, x)
        g = {k2: v2 for k2, v2 in g.items() if k2 != "baseline"}
        flat = jnp.concatenate([jnp.ravel(a) for a in jax.tree.leaves(g)])
        pres_bias = g["predict"][-1]["b"][0]
        return v, jnp.concatenate([pres_bias[None], directions[:, : flat.size] @ flat])

    keys = jax.random.split(jax.random.key(seed), n)
    v, g = jax.jit(jax.vmap(one))(keys)
    return np.asarray(v, np.float64), np.asarray(g, np.float64)


def _size(params):
    return sum(
        int(np.size(a)) for k, v in params.items() if k != "baseline" for a in jax.tree.leaves(v)
    )


def assert_agree(a, b, what, k=5.0):
    ma, mb = a.mean(0), b.mean(0)
    se = np.sqrt(a.var(0, ddof=1) / a.shape[0] + b.var(0, ddof=1) / b.shape[0])
    err = np.abs(ma - mb)
    assert np.all(err <= k * se + 1e-6), f"{what}: {ma} vs {mb} (se {se})"


@pytest.fixture(scope="module")
def enum_draws():
    return {obj: _grad_draws("enum", 4000, 1, obj) for obj in ("elbo", "iwae")}


@pytest.mark.parametrize(
    "estimator, objective",
    [
        ("reinforce", "elbo"),
        ("baseline", "elbo"),
        ("mvd", "elbo"),
        ("hybrid", "elbo"),
        ("reinforce", "iwae"),
        ("baseline", "iwae"),
        ("hybrid", "iwae"),
    ],
)
def test_estimators_agree_with_enum(enum_draws, estimator, objective):
    """Every estimator is unbiased, so its mean gradient (in the presence logit's bias and
    in four random directions of all the parameters) agrees with ENUM's, which is exact in
    the presence choices (and reparameterized, hence random, in the rest)."""
    v_enum, g_enum = enum_draws[objective]
    v, g = _grad_draws(estimator, 4000, 2, objective)
    assert_agree(v, v_enum, f"{estimator}/{objective} value")
    assert_agree(g, g_enum, f"{estimator}/{objective} gradient")


def test_baseline_is_trained_toward_the_objective():
    params = TINY.init_params(jax.random.key(0))
    x = jnp.zeros(TINY.canvas**2)
    f = TINY.objective("baseline")
    v, g = jax.jit(jax.value_and_grad(f, argnums=1))(jax.random.key(3), params, x)
    # the baseline starts near 0 and the objective is far below: ascent pulls it down to it
    assert float(v) < -1.0
    assert float(g["baseline"][-1]["b"][0]) < 0
    # and the value is the plain ELBO's (the baseline term is zero in value)
    plain = TINY.objective("reinforce")
    assert float(plain(jax.random.key(3), params, x)) == pytest.approx(float(v), rel=1e-5)
    # with particles too: the IWAE bound's value, on the same key
    for key in (jax.random.key(3), jax.random.key(8)):
        with_b = TINY.objective("baseline", "iwae", particles=3)(key, params, x)
        without = TINY.objective("reinforce", "iwae", particles=3)(key, params, x)
        assert float(with_b) == pytest.approx(float(without), rel=1e-5)


def test_rws_objective_trains_model_and_guide():
    # a presence prior of 0.5: with the default 1e-13 the self-normalized weights of an
    # untrained guide sit on its particles without objects, and the encoder gets ~nothing
    cfg = air.AIR(canvas=8, window=4, steps=3, z_what=2, hidden=4, mlp_hidden=4, pres_prior=0.5)
    params = cfg.init_params(jax.random.key(0))
    x = jax.random.uniform(jax.random.key(4), (cfg.canvas**2,))
    f = cfg.objective("enum", "rws")
    v, g = jax.jit(jax.value_and_grad(f, argnums=1))(jax.random.key(3), params, x)
    assert np.isfinite(float(v))
    for part in ("decoder", "lstm", "encoder"):
        assert any(float(jnp.abs(a).sum()) > 0 for a in jax.tree.leaves(g[part])), part


# ---------------------------------------------------------------------------------------
# Misuse.


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="unknown estimator 'reinfroce'"):
        TINY.guide("reinfroce")
    with pytest.raises(ValueError, match="2 presence strategies for 3 steps"):
        TINY.guide(("enum", "mvd"))
    with pytest.raises(ValueError, match="unknown presence strategy 'exact'"):
        TINY.guide(("enum", "exact", "mvd"))
    with pytest.raises(ValueError, match="unknown objective 'elob'"):
        TINY.objective("enum", "elob")
    with pytest.raises(ValueError, match="one particle"):
        TINY.objective("enum", "elbo", particles=3)
    with pytest.raises(ValueError, match="canvas must be an int >= 1"):
        air.AIR(canvas=0)
    with pytest.raises(ValueError, match="pres_prior"):
        air.AIR(pres_prior=1.0)
    params = TINY.init_params(jax.random.key(0))
    with pytest.raises(gv.ChoiceTypeError, match=r"shape \(64,\)"):
        TINY.guide("enum").simulate(jax.random.key(0), TINY.guide_params(params), jnp.zeros(8 * 9))
    with pytest.raises(gv.ChoiceTypeError, match=r"minibatch must have shape \[B, 64\]"):
        TINY.batch_objective("enum")(jax.random.key(0), params, jnp.zeros((2, 8, 8)))


@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_guide_log_density_is_the_hand_written_sum(n):
    params = TINY.init_params(jax.random.key(0), pres_logit=0.4)
    gp = TINY.guide_params(params)
    x = jax.random.uniform(jax.random.key(9), (TINY.canvas**2,))
    cm = _trace(n)
    want, state = 0.0, (jnp.zeros(TINY.hidden), jnp.zeros(TINY.hidden))
    prev_where, prev_what, prev_pres = jnp.zeros(3), jnp.zeros(TINY.z_what), 1.0
    for t in range(min(n + 1, TINY.steps)):
        inputs = jnp.concatenate([x, prev_where, prev_what, jnp.array([prev_pres])])
        state = air.lstm(gp["lstm"], inputs, state)
        out = air.mlp(gp["predict"], state[0])
        logit = out[0]
        if TINY.max_logit is not None:  # the squashed logit
            logit = TINY.max_logit * jnp.tanh(logit / TINY.max_logit)
        present = t < n
        want += float(jax.nn.log_sigmoid(logit if present else -logit))
        if not present:
            break
        obj = cm[f"object{t}"]
        want += stats.norm.logpdf(obj["where"], out[1:4], jax.nn.softplus(out[4:7])).sum()
        crop = air.image_to_window(obj["where"], x.reshape(8, 8), TINY.window).reshape(-1)
        e = air.mlp(gp["encoder"], crop)
        want += stats.norm.logpdf(obj["what"], e[:2], jax.nn.softplus(e[2:])).sum()
        prev_where, prev_what = obj["where"], obj["what"]
    guide = TINY.guide("enum")
    logq, _ = guide.assess(cm, gp, x)
    assert float(logq) == pytest.approx(want, rel=1e-5, abs=1e-4)
    padded = _trace(3)
    padded["pres"] = cm["pres"]
    for t in range(TINY.steps - 1):
        padded[f"object{t}"]["more"] = cm.get(f"object{t}", {}).get("more", 0)
    for t in range(n):
        padded[f"object{t}"] = dict(padded[f"object{t}"], **cm[f"object{t}"])
    logq_jit, _ = jax.jit(guide.assess)(padded, gp, x)
    assert float(logq_jit) == pytest.approx(want, rel=1e-5, abs=1e-4)


def test_a_fresh_configuration_first_used_inside_jit_leaks_no_tracer():
    cfg = air.AIR(canvas=8, window=4, steps=2, z_what=2, hidden=4, mlp_hidden=4)
    params = cfg.init_params(jax.random.key(0))
    x = jnp.zeros((2, 64))
    f = cfg.batch_objective("reinforce")
    # builds (and caches) the model under a trace; an UnexpectedTracerError would follow
    value = jax.jit(f)(jax.random.key(0), params, x)
    grads = jax.jit(jax.grad(f, argnums=1))(jax.random.key(1), params, x)
    tr = cfg.model.simulate(jax.random.key(2), params["decoder"])  # and outside one
    assert np.isfinite(float(value))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    assert tr.choices["x"].shape == (64,)


@pytest.mark.parametrize("where", [(2.0, 0.0, 0.0), (3.0, 0.6, -0.9), (2.5, -1.0, 0.5)])
def test_boxes_frame_the_placed_window(where):
    cfg = air.AIR(canvas=40, window=8)
    image = np.asarray(air.window_to_image(jnp.array(where), jnp.ones((8, 8)), 40))
    row0, col0, side = np.asarray(cfg.boxes(jnp.array(where)))
    rows, cols = np.nonzero(image > 0.5)
    assert abs(rows.min() - row0) <= 1 and abs(rows.max() + 1 - (row0 + side)) <= 1
    assert abs(cols.min() - col0) <= 1 and abs(cols.max() + 1 - (col0 + side)) <= 1


def test_a_short_training_run_learns_to_count_above_chance():
    """Small networks, 400 steps of ENUM on the default canvases: the held-out count
    accuracy (presence drawn from the guide) rises from the untrained guide's to well
    above chance (a third: the counts 0, 1, 2 are equally frequent) and above always
    answering the most frequent count."""
    import optax

    from genvi import data

    ds = data.multi_digits(n_train=2000, n_test=300, seed=1)
    cfg = air.AIR(hidden=32, mlp_hidden=64, z_what=10)
    params = cfg.init_params(jax.random.key(0))

    def accuracy(p):
        n, _, _ = cfg.infer(jax.random.key(5), p, ds.test)
        return float(np.mean(np.asarray(n) == ds.test_counts))

    before = accuracy(params)
    result = gv.fit(
        cfg.batch_objective("enum"),
        params,
        key=jax.random.key(1),
        steps=400,
        data=ds.train,
        batch_size=32,
        optimizer=optax.adam(1e-3),
        progress=False,
    )
    assert result.stopped_reason == "steps"
    after = accuracy(result.params)
    majority = np.bincount(ds.test_counts).max() / ds.test_counts.size
    assert after > max(0.5, majority + 0.1, before + 0.1), (before, after, majority)


def test_lstm_with_a_projected_part_is_the_same_step_and_refuses_a_double_count():
    cell = air.init_linear(jax.random.key(0), 6 + 2 + 5, 4 * 5)
    state = (jnp.full(5, 0.3), jnp.full(5, -0.2))
    x, rest = jnp.arange(6.0) / 6, jnp.array([0.5, -1.0])
    h, c = air.lstm(cell, jnp.concatenate([x, rest]), state)
    h2, c2 = air.lstm(cell, rest, state, projected=x @ cell["w"][:6])
    np.testing.assert_allclose(h2, h, atol=1e-6)
    np.testing.assert_allclose(c2, c, atol=1e-6)
    with pytest.raises(ValueError, match="without the projected part"):  # x counted twice
        air.lstm(cell, jnp.concatenate([x, rest]), state, projected=x @ cell["w"][:6])
    with pytest.raises(ValueError, match="shape"):
        air.lstm(cell, rest, state, projected=jnp.zeros(3))
