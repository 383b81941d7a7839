"""benchmarks/hmm.py computes what it says, in both workloads: the hand forward algorithm
equals brute force over K^T paths, genvi's gv.sum_out equals it in value and gradient
(``marginal``), and genvi's ELBO with a global latent around the summed-out chain equals
the hand-written one on the same draw (``global``); NumPyro's runners, where funsor is
installed, likewise (no timing beyond a tiny run)."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
hmm = pytest.importorskip("hmm")


def test_runners_agree_with_the_forward_algorithm():
    fns, notes = hmm.check_all(3, 8, numpyro=False)
    assert set(fns) == {"hand", "genvi"}


def test_global_latent_runners_agree_on_the_same_draw():
    runners, notes = hmm.check_global(3, 8, numpyro=False)
    assert runners == ["hand", "genvi"]


def test_the_check_rejects_a_wrong_value():
    import jax

    p = hmm.init_params(3)
    ys = hmm.simulate(jax.random.key(0), hmm.true_params(3), 5)
    good = jax.value_and_grad(hmm.hand_logp)(p, ys)
    with pytest.raises(hmm.CheckFailed):
        hmm.check_close(
            "wrong", jax.value_and_grad(lambda q, y: hmm.hand_logp(q, y) + 1.0)(p, ys), good
        )
    # the global workload's check sees a draw that is not the runner's
    theta, phi = hmm.init_global(3)
    key = jax.random.key(1)
    vg = jax.value_and_grad(hmm.hand_elbo_eps, argnums=(0, 1))
    with pytest.raises(hmm.CheckFailed):
        hmm.check_close(
            "other draw",
            vg(theta, phi, hmm.genvi_eps(phi, key), ys),
            vg(theta, phi, hmm.genvi_eps(phi, jax.random.key(2)), ys),
        )


def test_quick_run_of_both_workloads():
    out = hmm.main(["--quick", "--no-numpyro"])
    for w in hmm.WORKLOADS:
        assert set(out[f"{w} T=8"]["median_step_ms"]) == {"hand", "genvi"}


def test_numpyro_runners():
    pytest.importorskip("funsor")
    fns, notes = hmm.check_all(3, 6, unrolled_max_t=6)
    assert {"numpyro_scan", "numpyro_unrolled"} <= set(fns), notes
    runners, notes = hmm.check_global(3, 6, unrolled_max_t=6)
    assert {"numpyro_scan", "numpyro_unrolled"} <= set(runners), notes
    # the reproduction: contrib.funsor.log_density of the scan model is log p(y)
    exact, log_density, _ = hmm.numpyro_scan_repro(3)
    np.testing.assert_allclose(log_density, exact, rtol=1e-5)
