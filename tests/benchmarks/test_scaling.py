"""benchmarks/scaling.py runs what it says, at tiny sizes: one process per device count,
the run partitioned over that many devices, ratios to one device, and the strong-scaling
runs (the same run on every device count) agreeing with one device (no timing here)."""

from __future__ import annotations

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
scaling = pytest.importorskip("scaling")


@pytest.mark.slow
def test_scaling_smoke(tmp_path):
    out = tmp_path / "scaling.json"
    argv = "--devices 1 2 --models vae --steps 3 --rounds 1 --repeats 1 --batch-per-device 4"
    summary = scaling.main(
        [*argv.split(), "--global-batch", "8", "--hidden", "8", "--json", str(out)]
    )
    assert json.loads(out.read_text()) == json.loads(json.dumps(summary))
    rows = {(r["mode"], r["devices"]): r for r in summary["rows"]}
    assert set(rows) == {("weak", 1), ("weak", 2), ("strong", 1), ("strong", 2)}
    for (mode, devices), r in rows.items():
        assert r["devices_used"] == devices
        assert r["step_ms"] > 0 and r["images_per_s"] > 0
        assert r["batch"] == (4 * devices if mode == "weak" else 8)
    assert rows[("weak", 1)]["throughput_ratio"] == rows[("strong", 1)]["step_time_ratio"] == 1
    assert rows[("strong", 2)]["max_rel_drift_from_one_device"] < 1e-4
    assert "| vae | strong | 2 | 8 |" in scaling.table(summary)
