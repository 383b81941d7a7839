"""gv.vmap: independent copies; each address gains a leading axis; densities add up."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats as st

import genvi as gv


@gv.gen
def point(mu, scale):
    z = gv.normal(mu, scale) @ "z"
    gv.normal(z, 0.5) @ "x"
    return z


MU = jnp.array([0.0, 1.0, -2.0, 3.0])


def point_logpdf(z, x, mu, scale):
    return st.norm(mu, scale).logpdf(z) + st.norm(z, 0.5).logpdf(x)


def test_simulate_has_a_leading_axis_and_the_summed_density(key):
    points = gv.vmap(point, in_axes=(0, None))
    tr = jax.jit(points.simulate)(key, MU, 2.0)
    assert tr["z"].shape == (4,) and tr["x"].shape == (4,) and tr.retval.shape == (4,)
    assert len(set(np.asarray(tr["z"]).tolist())) == 4  # independent copies
    want = point_logpdf(np.asarray(tr["z"]), np.asarray(tr["x"]), np.asarray(MU), 2.0).sum()
    np.testing.assert_allclose(tr.score, want, rtol=1e-5)
    logp, ret = points.assess(tr.choices, MU, 2.0)
    np.testing.assert_allclose(logp, want, rtol=1e-5)
    np.testing.assert_allclose(ret, tr["z"])


def test_in_axes_none_and_a_mapped_scale(key):
    scales = jnp.array([1.0, 2.0, 3.0, 4.0])
    points = gv.vmap(point, in_axes=(None, 0))
    tr = points.simulate(key, 0.5, scales)
    want = point_logpdf(np.asarray(tr["z"]), np.asarray(tr["x"]), 0.5, np.asarray(scales)).sum()
    np.testing.assert_allclose(tr.score, want, rtol=1e-5)
    # default in_axes=0 maps every argument
    tr = gv.vmap(point).simulate(key, MU, scales)
    want = point_logpdf(
        np.asarray(tr["z"]), np.asarray(tr["x"]), np.asarray(MU), np.asarray(scales)
    )
    np.testing.assert_allclose(tr.score, want.sum(), rtol=1e-5)


def test_importance_constrains_every_copy(key):
    points = gv.vmap(point, in_axes=(0, None))
    xs = jnp.array([0.5, 0.7, -1.0, 2.0])
    tr, w = jax.jit(points.importance)(key, {"x": xs}, MU, 2.0)
    z = np.asarray(tr["z"])
    np.testing.assert_allclose(tr["x"], xs)
    np.testing.assert_allclose(w, st.norm(z, 0.5).logpdf(np.asarray(xs)).sum(), rtol=1e-5)
    np.testing.assert_allclose(
        tr.score, point_logpdf(z, np.asarray(xs), np.asarray(MU), 2.0).sum(), rtol=1e-5
    )


def test_nested_vmap(key):
    grid = gv.vmap(gv.vmap(point, in_axes=(0, None)), in_axes=(0, None))
    mu = jnp.arange(6.0).reshape(2, 3)
    tr = grid.simulate(key, mu, 1.0)
    assert tr["z"].shape == (2, 3)
    want = point_logpdf(np.asarray(tr["z"]), np.asarray(tr["x"]), np.asarray(mu), 1.0).sum()
    np.testing.assert_allclose(tr.score, want, rtol=1e-5)
    np.testing.assert_allclose(grid.assess(tr.choices, mu, 1.0)[0], want, rtol=1e-5)


def test_vmap_of_a_distribution_and_inside_a_model(key):
    normals = gv.vmap(gv.normal, in_axes=(0, None))

    @gv.gen
    def model():
        zs = normals(MU, 1.0) @ "zs"
        return gv.vmap(point, in_axes=(0, None))(zs, 1.0) @ "pts"

    tr = jax.jit(model.simulate)(key)
    zs = np.asarray(tr["zs"])
    assert tr.choices.addresses() == [("pts", "x"), ("pts", "z"), ("zs",)]
    want = (
        st.norm(np.asarray(MU), 1.0).logpdf(zs).sum()
        + point_logpdf(np.asarray(tr["pts", "z"]), np.asarray(tr["pts", "x"]), zs, 1.0).sum()
    )
    np.testing.assert_allclose(tr.score, want, rtol=1e-5)


def test_pytree_arguments_and_grad(key):
    @gv.gen
    def m(p):
        return gv.normal(p["loc"], p["scale"]) @ "z"

    batched = gv.vmap(m, in_axes=({"loc": 0, "scale": None},))
    cm = {"z": jnp.array([0.5, 1.0, 2.0])}
    loc = jnp.array([0.0, 1.0, 1.0])

    def logp(loc):
        return batched.assess(cm, {"loc": loc, "scale": 2.0})[0]

    np.testing.assert_allclose(logp(loc), st.norm(loc, 2.0).logpdf(cm["z"]).sum(), rtol=1e-5)
    # d/dloc_i log N(z_i; loc_i, s) = (z_i - loc_i) / s^2
    np.testing.assert_allclose(jax.grad(logp)(loc), (cm["z"] - loc) / 4.0, rtol=1e-5)


def test_errors(key):
    points = gv.vmap(point, in_axes=(0, None))
    with pytest.raises(gv.ChoiceTypeError, match=r"'x' has shape \(\).*leading axis of size 4"):
        points.importance(key, {"x": 1.0}, MU, 1.0)
    with pytest.raises(gv.ChoiceTypeError, match=r"'z' has shape \(3,\).*size 4"):
        points.assess({"z": jnp.zeros(3), "x": jnp.zeros(4)}, MU, 1.0)
    with pytest.raises(gv.ChoiceTypeError, match=r"disagree on the axis size: \[3, 4\]"):
        gv.vmap(point).simulate(key, MU, jnp.ones(3))
    with pytest.raises(gv.ChoiceTypeError, match=r"in_axes=0 but an argument has shape \(\)"):
        gv.vmap(point).simulate(key, 0.0, 1.0)
    with pytest.raises(ValueError, match="no argument is mapped"):
        gv.vmap(point, in_axes=None).simulate(key, 0.0, 1.0)
    # a missing or unknown address inside the copies is named
    with pytest.raises(gv.AddressError, match="'x'"):
        points.assess({"z": jnp.zeros(4)}, MU, 1.0)
    with pytest.raises(gv.AddressError, match="'y' that the model never visits"):
        points.importance(key, {"y": jnp.zeros(4)}, MU, 1.0)
