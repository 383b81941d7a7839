"""Particle parallelism: the particles of an objective spread over a mesh axis
"particles" give the estimate (value and gradient) of one device on the same key; run in
a fresh process with 4 forced CPU devices (JAX fixes its devices at start-up)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import genvi as gv

HERE = os.path.dirname(__file__)
NAMES = ["iwae", "iwae_63", "vimco", "iwae_dreg", "marginal_guide"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("particles") / "r.json"
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, os.path.join(HERE, "_particles_run.py"), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    with open(out) as fh:
        return json.load(fh)


def _close(a, b, rtol=1e-5, atol=1e-5):
    """Two pytrees as the run wrote them (JSON lists and dicts of floats) agree."""
    x, y = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(x) == len(y) > 0
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", NAMES)
def test_sharded_particles_give_the_same_estimate(run, name):
    row = run["estimates"][name]
    assert run["devices"] == 4
    (value_one, grad_one), (value_sharded, grad_sharded) = row["one"], row["sharded"]
    np.testing.assert_allclose(value_sharded, value_one, rtol=1e-5)
    _close(grad_sharded, grad_one)
    # and the particles were spread: the sharded program reduces across devices, the
    # single-device one does not
    assert row["sharded_collectives"] and not row["one_collectives"]


def test_fit_on_a_data_by_particles_mesh_gives_the_one_device_run(run):
    f = run["fit"]
    _close(f["two_by_two"], f["one"], rtol=1e-4)
    np.testing.assert_allclose(f["history_two_by_two"], f["history_one"], rtol=1e-4, atol=1e-4)
    _close(f["data_only_explicit"], f["one"], rtol=1e-4)  # a jax.make_mesh (Explicit) mesh


def test_fit_with_a_particles_only_mesh_and_no_data(run):
    f = run["fit"]
    _close(f["spread"], f["alone"], rtol=1e-4)
    assert f["spread_collectives"]  # fit traced the objective under the mesh


def test_clear_errors(run):
    assert "'data'" in run["fit"]["errors"]["unnamed_axes"]
    assert "'particles'" in run["fit"]["errors"]["unnamed_axes"]
    assert "Auto" in run["explicit_error"] and "Explicit" in run["explicit_error"]


def test_without_a_mesh_particle_keys_are_the_row_keys():
    from genvi.core._derive import row_keys

    key = jax.random.key(3)
    keys = gv.objectives.particle_keys(key, 5)
    assert (jax.random.key_data(keys) == jax.random.key_data(row_keys(key, 5))).all()
    # a mesh without a "particles" axis leaves the keys alone too
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
    with jax.set_mesh(mesh):
        lowered = jax.jit(lambda k: gv.objectives.particle_keys(k, 5)).lower(key).as_text()
    assert "particles" not in lowered
    assert jnp.shape(keys) == (5,)
