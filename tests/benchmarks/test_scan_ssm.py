"""benchmarks/scan_ssm.py computes what it says: every runner's ELBO estimates and
gradients agree with the closed-form ELBO of each model (no timing here)."""

from __future__ import annotations

import os
import sys

import jax
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
scan_ssm = pytest.importorskip("scan_ssm")


@pytest.mark.parametrize("model", ["lgssm", "sv"])
def test_every_runner_matches_the_closed_form(model):
    _, _, _, _, stats = scan_ssm.check_all(scan_ssm.MODELS[model], T=20, check_keys=100)
    assert set(stats) >= {"hand_scan", "hand_vec", "genvi"}
    pytest.importorskip("numpyro")
    assert "numpyro" in stats


def test_the_check_rejects_a_runner_that_computes_something_else():
    ssm = scan_ssm.MODELS["lgssm"]
    y = scan_ssm.simulate_data(ssm, jax.random.key(0), 20)
    params = scan_ssm.init_params(ssm, y)
    keys = jax.random.split(jax.random.key(1), 100)
    right = scan_ssm.hand_vg(scan_ssm.hand_vec_elbo, ssm)
    scan_ssm.check_runner("hand_vec", right, ssm, params, y, keys)

    def no_entropy(ssm, p, key, y):  # drops part of the entropy: value and log_s gradient shifted
        return scan_ssm.hand_vec_elbo(ssm, p, key, y) - jax.numpy.sum(p["guide"]["log_s"])

    with pytest.raises(scan_ssm.CheckFailed):
        scan_ssm.check_runner("wrong", scan_ssm.hand_vg(no_entropy, ssm), ssm, params, y, keys)
