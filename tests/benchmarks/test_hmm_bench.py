"""benchmarks/hmm.py computes what it says: hand forward algorithm = brute force =
genvi's gv.sum_out, values and gradients (no timing here)."""

from __future__ import annotations

import os
import sys

import jax
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
hmm = pytest.importorskip("hmm")


def test_runners_agree():
    ys = hmm.make_data(jax.random.key(0), 3, 6)
    values = hmm.check(3, ys, None)  # raises if genvi or hand differ from brute force
    np.testing.assert_allclose(values["genvi"], values["hand"], rtol=1e-4)
    np.testing.assert_allclose(
        hmm.hand_logp(hmm.init_params(3), ys), hmm.brute_logp(hmm.init_params(3), ys), rtol=1e-5
    )
