"""The generative function interface of ``@gen`` functions: simulate, assess, importance,
hierarchical addresses, pytrees, closures, lax control flow, array-valued choices, and
jit / vmap / grad of every method."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats as st

import genvi as gv


@gv.gen
def model(theta):
    z = gv.normal(theta, 1.0) @ "z"
    gv.normal(z, 0.5) @ "x"
    return z


@gv.gen
def outer(theta):
    a = model(theta) @ "m1"
    b = model(a) @ "m2"
    return a + b


@gv.gen
def top(theta):
    return outer(theta) @ "o"


def model_logpdf(z, x, theta):
    return st.norm(theta, 1.0).logpdf(z) + st.norm(z, 0.5).logpdf(x)


def test_simulate_score_is_the_log_joint_density(key):
    tr = model.simulate(key, 0.3)
    assert isinstance(tr, gv.Trace)
    assert tr.args == (0.3,)
    assert tr.retval == tr.choices["z"] == tr["z"]
    np.testing.assert_allclose(tr.score, model_logpdf(tr["z"], tr["x"], 0.3), rtol=1e-5)


def test_assess_of_simulated_choices_gives_the_score(key):
    tr = jax.jit(top.simulate)(key, 0.3)
    logp, retval = top.assess(tr.choices, 0.3)
    np.testing.assert_allclose(logp, tr.score, rtol=1e-6)
    np.testing.assert_allclose(retval, tr.retval, rtol=1e-6)


def test_hierarchical_addresses_and_density(key):
    tr = jax.jit(top.simulate)(key, 0.3)
    c = tr.choices
    assert c.addresses() == [("o", "m1", "x"), ("o", "m1", "z"), ("o", "m2", "x"), ("o", "m2", "z")]
    # tuple indexing, chained indexing and trace indexing agree
    assert c["o", "m1", "z"] == c["o"]["m1"]["z"] == tr["o", "m1", "z"]
    z1, x1, z2, x2 = (c["o", m, a] for m in ("m1", "m2") for a in ("z", "x"))
    want = model_logpdf(z1, x1, 0.3) + model_logpdf(z2, x2, z1)
    np.testing.assert_allclose(tr.score, want, rtol=1e-5)
    np.testing.assert_allclose(tr.retval, z1 + z2, rtol=1e-6)


def test_importance_fully_constrained_weight_is_the_density(key):
    cm = {"o": {"m1": {"z": 0.1, "x": -0.4}, "m2": {"z": 0.7, "x": 1.2}}}
    tr, w = top.importance(key, cm, 0.3)
    logp, _ = top.assess(cm, 0.3)
    want = model_logpdf(0.1, -0.4, 0.3) + model_logpdf(0.7, 1.2, 0.1)
    np.testing.assert_allclose(w, want, rtol=1e-5)
    np.testing.assert_allclose(logp, want, rtol=1e-5)
    np.testing.assert_allclose(tr.score, want, rtol=1e-5)
    given = gv.choice_map(cm)
    assert tr.choices.addresses() == given.addresses()
    for a in given.addresses():
        np.testing.assert_allclose(tr.choices[a], given[a], rtol=1e-6)


def test_importance_partially_constrained(key):
    tr, w = model.importance(key, {"x": 1.5}, 0.3)
    z = tr["z"]
    assert tr["x"] == 1.5
    # prior proposal: the weight is the likelihood of the constrained choice
    np.testing.assert_allclose(w, st.norm(z, 0.5).logpdf(1.5), rtol=1e-5)
    np.testing.assert_allclose(tr.score, model_logpdf(z, 1.5, 0.3), rtol=1e-5)


def test_importance_without_constraints_is_simulate(key):
    tr, w = top.importance(key, {}, 0.3)
    tr2 = top.simulate(key, 0.3)
    assert w == 0.0
    assert tr.choices == tr2.choices
    np.testing.assert_allclose(tr.score, tr2.score, rtol=1e-6)


def test_nested_dict_tuple_keys_and_choice_maps_are_interchangeable(key):
    nested = {"o": {"m1": {"x": 1.0}, "m2": {"x": 2.0}}}
    tupled = {("o", "m1", "x"): 1.0, ("o", "m2", "x"): 2.0}
    merged = gv.choice_map({"o": {"m1": {"x": 1.0}}}).merge({"o": {"m2": {"x": 2.0}}})
    results = [top.importance(key, cm, 0.3) for cm in (nested, tupled, merged)]
    for tr, w in results[1:]:
        assert tr.choices == results[0][0].choices
        np.testing.assert_allclose(w, results[0][1], rtol=1e-6)


def test_randomness_depends_on_the_address_not_on_the_order(key):
    @gv.gen
    def ab():
        gv.normal(0.0, 1.0) @ "a"
        gv.normal(0.0, 1.0) @ "b"

    @gv.gen
    def ba():
        gv.normal(0.0, 1.0) @ "b"
        gv.normal(0.0, 1.0) @ "a"

    assert ab.simulate(key).choices == ba.simulate(key).choices
    c = ab.simulate(key).choices
    assert c["a"] != c["b"]


def test_pytree_arguments_and_return_values(key):
    @gv.gen
    def m(params, data):
        mu = params["loc"] + params["shift"][0]
        z = gv.normal(mu, params["scale"]) @ "z"
        gv.normal(jnp.full(data["x"].shape, z), 1.0) @ "x"
        return {"z": z, "pair": (z, 2 * z)}

    params = {"loc": 0.5, "shift": (1.0,), "scale": 2.0}
    data = {"x": jnp.arange(3.0)}
    tr = jax.jit(m.simulate)(key, params, data)
    assert tr.retval["pair"][1] == 2 * tr["z"]
    assert tr["x"].shape == (3,)
    z, x = float(tr["z"]), np.asarray(tr["x"])
    want = st.norm(1.5, 2.0).logpdf(z) + st.norm(z, 1.0).logpdf(x).sum()
    np.testing.assert_allclose(tr.score, want, rtol=1e-5)
    logp, ret = jax.jit(m.assess)(tr.choices, params, data)
    np.testing.assert_allclose(logp, want, rtol=1e-5)
    assert jax.tree_util.tree_structure(ret) == jax.tree_util.tree_structure(tr.retval)


def test_closures(key):
    scale = jnp.asarray(3.0)

    def make(mu):
        @gv.gen
        def m():
            return gv.normal(mu, scale) @ "z"

        return m

    m = make(2.0)
    tr = m.simulate(key)
    np.testing.assert_allclose(tr.score, st.norm(2.0, 3.0).logpdf(tr["z"]), rtol=1e-5)


def test_lax_control_flow_without_random_choices_in_the_loop(key):
    @gv.gen
    def m(xs):
        total = jax.lax.fori_loop(0, xs.shape[0], lambda i, acc: acc + xs[i], 0.0)
        sign = jax.lax.cond(total > 0, lambda: 1.0, lambda: -1.0)
        _, cums = jax.lax.scan(lambda c, x: (c + x, c + x), 0.0, xs)
        mu = jax.lax.while_loop(lambda v: v < 10.0, lambda v: v * 2.0, 1.0)  # 16
        z = gv.normal(sign * total + mu, 1.0) @ "z"
        gv.normal(cums, 1.0) @ "y"
        return z

    xs = jnp.array([1.0, 2.0, -0.5])
    tr = jax.jit(m.simulate)(key, xs)
    z, y = float(tr["z"]), np.asarray(tr["y"])
    want = st.norm(2.5 + 16.0, 1.0).logpdf(z) + st.norm([1.0, 3.0, 2.5], 1.0).logpdf(y).sum()
    np.testing.assert_allclose(tr.score, want, rtol=1e-5)
    np.testing.assert_allclose(m.assess(tr.choices, xs)[0], want, rtol=1e-5)


def test_array_valued_choices(key):
    @gv.gen
    def m(mu):
        v = gv.mv_normal_diag(mu, jnp.array([1.0, 2.0])) @ "v"
        gv.normal(jnp.broadcast_to(v.sum(), (5,)), 1.0) @ "batch"  # a minibatch at one address
        gv.categorical(jnp.zeros((4, 3))) @ "ks"
        return v

    tr = jax.jit(m.simulate)(key, jnp.array([0.5, -1.0]))
    assert tr["v"].shape == (2,) and tr["batch"].shape == (5,) and tr["ks"].shape == (4,)
    v, b = np.asarray(tr["v"]), np.asarray(tr["batch"])
    want = (
        st.norm([0.5, -1.0], [1.0, 2.0]).logpdf(v).sum()
        + st.norm(v.sum(), 1.0).logpdf(b).sum()
        + 4 * np.log(1 / 3)
    )
    np.testing.assert_allclose(tr.score, want, rtol=1e-5)
    cm = {"v": jnp.zeros(2), "batch": jnp.ones(5), "ks": jnp.array([0, 1, 2, 0])}
    logp, _ = m.assess(cm, jnp.array([0.5, -1.0]))
    want = st.norm([0.5, -1.0], [1.0, 2.0]).logpdf(0.0).sum() + 5 * st.norm(0, 1).logpdf(1.0)
    np.testing.assert_allclose(logp, want + 4 * np.log(1 / 3), rtol=1e-5)


def test_every_method_under_jit_matches_eager(key):
    cm = {"o": {"m1": {"x": 1.0}}}
    tr_e, tr_j = top.simulate(key, 0.3), jax.jit(top.simulate)(key, 0.3)
    assert tr_e.choices.addresses() == tr_j.choices.addresses()
    for a in tr_e.choices.addresses():
        np.testing.assert_allclose(tr_e.choices[a], tr_j.choices[a], rtol=1e-6)
    np.testing.assert_allclose(
        jax.jit(top.assess)(tr_e.choices, 0.3)[0], top.assess(tr_e.choices, 0.3)[0], rtol=1e-6
    )
    (_, w_e), (_, w_j) = top.importance(key, cm, 0.3), jax.jit(top.importance)(key, cm, 0.3)
    np.testing.assert_allclose(w_e, w_j, rtol=1e-6)


def test_vmap_over_keys_and_over_arguments(key):
    keys = jax.random.split(key, 5)
    trs = jax.jit(jax.vmap(model.simulate, in_axes=(0, None)))(keys, 0.3)
    assert trs["z"].shape == (5,) and trs.score.shape == (5,)
    for i in (0, 4):
        np.testing.assert_allclose(trs["z"][i], model.simulate(keys[i], 0.3)["z"], rtol=1e-6)
    np.testing.assert_allclose(trs.score, model_logpdf(trs["z"], trs["x"], 0.3), rtol=1e-5)
    # over arguments: the same key, different theta; reparameterized z shifts with theta
    thetas = jnp.array([0.0, 1.0, 2.0])
    trs = jax.vmap(model.simulate, in_axes=(None, 0))(key, thetas)
    np.testing.assert_allclose(trs["z"] - thetas, trs["z"][0] - thetas[0], rtol=1e-5)
    # assess and importance over batched choice maps
    cm = {"z": jnp.array([0.0, 1.0]), "x": jnp.array([0.5, 0.5])}
    logp, _ = jax.vmap(model.assess, in_axes=(0, None))(cm, 0.3)
    np.testing.assert_allclose(logp, model_logpdf(np.array([0.0, 1.0]), 0.5, 0.3), rtol=1e-5)
    _, w = jax.vmap(model.importance, in_axes=(0, 0, None))(keys[:2], {"z": cm["z"]}, 0.3)
    np.testing.assert_allclose(w, st.norm(0.3, 1.0).logpdf([0.0, 1.0]), rtol=1e-5)


def test_grad_of_assess_in_arguments_and_in_continuous_choices():
    z, x, theta = 0.4, 1.1, 0.3

    def logp(theta, z, x):
        return model.assess({"z": z, "x": x}, theta)[0]

    g_theta, g_z, g_x = jax.grad(logp, argnums=(0, 1, 2))(theta, z, x)
    # d/dtheta = (z - theta); d/dz = -(z - theta) + (x - z)/0.25; d/dx = -(x - z)/0.25
    np.testing.assert_allclose(g_theta, z - theta, rtol=1e-5)
    np.testing.assert_allclose(g_z, -(z - theta) + (x - z) / 0.25, rtol=1e-5)
    np.testing.assert_allclose(g_x, -(x - z) / 0.25, rtol=1e-5)
    # gradient with respect to a whole choice map (a pytree), under jit
    g = jax.jit(jax.grad(lambda cm: top.assess(cm, theta)[0]))(
        gv.choice_map({"o": {"m1": {"z": z, "x": x}, "m2": {"z": 0.0, "x": 0.2}}})
    )
    # z1 appears in m1 and as the mean of m2's z
    np.testing.assert_allclose(
        g["o", "m1", "z"], -(z - theta) + (x - z) / 0.25 + (0.0 - z), rtol=1e-5
    )
    np.testing.assert_allclose(g["o", "m2", "x"], -(0.2 - 0.0) / 0.25, rtol=1e-5)


def test_grad_through_simulate_and_importance(key):
    # with z = theta + eps reparameterized, the weight log N(x; z, 0.5) has gradient
    # (x - z) / 0.25 in theta
    tr, _ = model.importance(key, {"x": 1.5}, 0.3)
    g = jax.grad(lambda t: model.importance(key, {"x": 1.5}, t)[1])(0.3)
    np.testing.assert_allclose(g, (1.5 - tr["z"]) / 0.25, rtol=1e-4)
    # the retval of simulate moves one-for-one with theta
    g = jax.grad(lambda t: model.simulate(key, t).retval)(0.3)
    np.testing.assert_allclose(g, 1.0, rtol=1e-6)


@pytest.mark.parametrize("dist, args", [(gv.flip, (0.3,)), (gv.poisson, (2.0,))])
def test_grad_in_parameters_of_a_discrete_choice(dist, args):
    """assess of a discrete choice is differentiable in its parameters (not its value)."""

    @gv.gen
    def m(p):
        return dist(p) @ "k"

    g = jax.grad(lambda p: m.assess({"k": 1}, p)[0])(args[0])
    # flip: d log p = 1/p; poisson: d (log r - r) = 1/r - 1
    want = 1 / args[0] if dist is gv.flip else 1 / args[0] - 1
    np.testing.assert_allclose(g, want, rtol=1e-5)


def test_trace_is_a_pytree(key):
    tr = model.simulate(key, 0.3)
    leaves = jax.tree_util.tree_leaves(tr)
    assert len(leaves) == 5  # x, z, score, retval, theta
    doubled = jax.jit(lambda t: t.score * 2)(tr)
    np.testing.assert_allclose(doubled, 2 * tr.score)
    assert tr[1] is tr.score  # integer indexing keeps NamedTuple behaviour


def test_a_call_that_makes_no_choice_needs_no_constraint(key):
    @gv.gen
    def deterministic(x):
        return 2.0 * x

    @gv.gen
    def m():
        y = deterministic(1.5) @ "det"
        return gv.normal(y, 1.0) @ "z"

    logp, _ = m.assess({"z": 3.0})
    np.testing.assert_allclose(logp, st.norm(3.0, 1.0).logpdf(3.0), rtol=1e-6)
    tr, w = m.importance(key, {"z": 3.0})
    np.testing.assert_allclose(w, logp, rtol=1e-6)
    np.testing.assert_allclose(
        m.simulate(key).score, st.norm(3.0, 1.0).logpdf(m.simulate(key)["z"]), rtol=1e-5
    )
