"""benchmarks/hmm.py computes what it says: the hand forward algorithm equals brute force
over K^T paths, and genvi's gv.sum_out equals it in value and gradient (no timing)."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
hmm = pytest.importorskip("hmm")


def test_runners_agree_with_the_forward_algorithm():
    fns, notes = hmm.check_all(3, 8, numpyro=False)
    assert set(fns) == {"hand", "genvi"}


def test_the_check_rejects_a_wrong_value():
    import jax

    p = hmm.init_params(3)
    ys = hmm.simulate(jax.random.key(0), hmm.true_params(3), 5)
    good = jax.value_and_grad(hmm.hand_logp)(p, ys)
    with pytest.raises(hmm.CheckFailed):
        hmm.check_close(
            "wrong", jax.value_and_grad(lambda q, y: hmm.hand_logp(q, y) + 1.0)(p, ys), good
        )


def test_quick_run():
    pytest.importorskip("numpyro")
    out = hmm.main(["--quick"])
    assert "T=20" in out
