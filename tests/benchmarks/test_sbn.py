"""benchmarks/sbn.py computes what it says: the estimators' gradients agree with the exact
ELBO gradient of a tiny SBN (brute force over the hidden units), the checks reject a
runner that computes something else, and a quick run produces every output."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
sbn = pytest.importorskip("sbn")


def test_gradients_match_brute_force_and_the_biased_one_is_seen():
    pytest.importorskip("numpyro")
    names = [
        "reinforce",
        "nvil",
        "rloo4",
        "enum",
        "rebar",
        "relax",
        "gumbel_st",
        "numpyro_tracegraph",
    ]
    stats = sbn.check_exact(2, names, n_keys=1000)  # raises CheckFailed if one is biased
    assert set(stats) == set(names)
    # The check can fail: Gumbel straight-through is biased, and it shows.
    assert stats["gumbel_st"]["max_abs_z"] > 5.0


def test_the_value_check_rejects_a_shifted_estimate():
    rng = np.random.default_rng(0)
    v = rng.normal(size=100)
    sbn.check_values({"same": v + 0.01}, {"same": v})
    with pytest.raises(sbn.CheckFailed):
        sbn.check_values({"shifted": v + 1.0}, {"shifted": v})


def test_quick_run(tmp_path):
    pytest.importorskip("numpyro")
    pytest.importorskip("matplotlib")
    out_json, out_png = tmp_path / "sbn.json", tmp_path / "sbn.png"
    argv = ["--quick", "--layers", "1", "2", "--estimators", "reinforce,enum", "--max-runs", "20"]
    out = sbn.main(argv + ["--json", str(out_json), "--plot", str(out_png)])
    assert json.loads(out_json.read_text())["winners"] == out["winners"]
    assert out_png.stat().st_size > 0
    one, two = out["results"]["1"], out["results"]["2"]
    assert set(one["rows"]) == {"genvi_reinforce", "genvi_enum", "numpyro_tracegraph"}
    # ENUM nests per layer: (2 * 8 + 1)^2 = 289 runs per image > 20, so it is skipped at 2.
    assert set(two["rows"]) == {"genvi_reinforce", "numpyro_tracegraph"}
    assert "genvi_enum" in two["skipped"]
    for res in (one, two):
        assert set(res["value_check"]) == set(res["rows"]) - {"genvi_reinforce"}
        assert res["densities_equal"]["genvi"] == pytest.approx(res["densities_equal"]["numpyro"])
        for row in res["rows"].values():
            assert {
                "median_step_ms",
                "ratio_to_numpyro",
                "grad_var_init",
                "grad_var_end",
                "var_x_step_init",
                "heldout_elbo",
                "heldout_iwae8",
            } <= set(row)
            assert np.isfinite(row["heldout_elbo"]) and row["grad_var_init"] > 0
    assert set(out["winners"]["1"]) >= {"best_heldout_elbo", "lowest_var_x_step_init"}
