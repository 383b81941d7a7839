"""Data-parallel gv.fit(mesh=...): the same run on 1 device and on 4 (forced CPU devices,
in a fresh process since JAX fixes its devices at start-up)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

HERE = os.path.dirname(__file__)


@pytest.fixture(scope="module")
def four_devices(tmp_path_factory):
    out = tmp_path_factory.mktemp("mesh")
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, os.path.join(HERE, "_mesh_run.py"), str(out / "r.json"), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    with open(out / "r.json") as fh:
        return json.load(fh)


def test_four_devices_give_the_one_device_parameters(four_devices):
    r = four_devices
    assert r["devices"] == 4
    for name in ("m", "s"):
        np.testing.assert_allclose(r["four"][name], r["one"][name], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(r["history_four"], r["history_one"], rtol=1e-4, atol=1e-4)
    assert "'data': 4" in r["sharding"] and "P()" in r["sharding"]  # replicated parameters


def test_a_checkpoint_from_four_devices_resumes_on_one(four_devices):
    r = four_devices
    assert r["half_step"] == 20
    for name in ("m", "s"):
        np.testing.assert_allclose(r["resumed"][name], r["one"][name], rtol=1e-4, atol=1e-5)


def test_clear_errors(four_devices):
    e = four_devices["errors"]
    assert "6 points" in e["indivisible"] and "4 devices" in e["indivisible"]
    assert "mesh=8" in e["too_many"] and "sees 4" in e["too_many"]
    assert "data=" in e["no_data"]


def test_one_device_mesh_is_the_plain_run():
    import jax.numpy as jnp
    import optax

    import genvi as gv

    def loss(key, p, batch):
        return -jnp.sum((batch - p["m"]) ** 2) + 0.0 * jax.random.normal(key)

    data = jnp.arange(8.0)
    kw = dict(
        key=jax.random.key(0),
        steps=5,
        data=data,
        batch_size=4,
        optimizer=optax.sgd(0.1),
        progress=False,
    )
    a = gv.fit(loss, {"m": jnp.zeros(())}, **kw)
    b = gv.fit(loss, {"m": jnp.zeros(())}, mesh=1, **kw)
    np.testing.assert_allclose(a.params["m"], b.params["m"], rtol=1e-6)
    with pytest.raises(ValueError, match="device count"):
        gv.fit(loss, {"m": jnp.zeros(())}, mesh=0, **kw)
