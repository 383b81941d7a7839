"""``--devices N`` of ``genvi vae`` and ``genvi air``: data-parallel training over forced
CPU devices (in a fresh process: JAX fixes its devices at start-up), the same run as on
one device, a resume on another device count, and the bad values (exit code 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from genvi.cli.main import main
from tests.cli.test_air import SMALL as AIR_SMALL
from tests.cli.test_vae import TINY

# Runs each command line of argv[2:] (JSON lists) with genvi.cli.main.main in this one
# process and writes [(exit code, stdout, stderr, metrics or None), ...] to argv[1], the
# metrics being those the command left in its --out folder.
DRIVER = r"""
import contextlib, io, json, os, sys
from genvi.cli.main import main
results = []
for argv in map(json.loads, sys.argv[2:]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
    path = os.path.join(argv[argv.index("--out") + 1], "metrics.json")
    metrics = json.load(open(path)) if code == 0 and os.path.exists(path) else None
    results.append((code, out.getvalue(), err.getvalue(), metrics))
with open(sys.argv[1], "w") as fh:
    json.dump(results, fh)
"""


def _commands(tmp_path, *commands, devices=4):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, str(out), *map(json.dumps, commands)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads(out.read_text())
    for _, _, err, _ in results:
        assert "Traceback" not in err, err
    return results


@pytest.mark.slow
def test_vae_on_four_devices_trains_as_one_and_resumes_on_one(tmp_path):
    four, one = str(tmp_path / "four"), str(tmp_path / "one")
    results = _commands(
        tmp_path,
        ["vae", "--steps", "20", "--devices", "4", "--out", four, *TINY],
        ["vae", "--steps", "20", "--out", one, *TINY],
        ["vae", "--steps", "30", "--resume", "--out", four, "--no-progress"],  # on 1 device
        ["vae", "--steps", "20", "--devices", "8", "--out", str(tmp_path / "x"), *TINY],
        ["vae", "--steps", "20", "--devices", "3", "--out", str(tmp_path / "y"), *TINY],
    )
    (c4, t4, _, m4), (c1, _, _, m1), (cr, tr, _, mr), (c8, _, e8, _), (c3, _, e3, _) = results
    assert (c4, c1, cr) == (0, 0, 0)
    assert "data-parallel over 4 devices" in t4 and "trained 20 steps on 4 devices" in t4
    assert m4["steps"] == m1["steps"] == 20
    assert (m4["devices"], m1["devices"]) == (4, 1)  # where the parameters were trained
    for name in ("final_train_objective", "test_elbo", "test_iwae_8", "train_elbo"):
        assert m4[name] == pytest.approx(m1[name], rel=1e-4, abs=1e-4), name
    assert "resuming from step 20 of 30" in tr and "data-parallel" not in tr
    assert mr["steps"] == 30 and mr["devices"] == 1
    assert c8 == 2 and "--devices 8: JAX sees 4 devices" in e8
    assert "xla_force_host_platform_device_count=8" in e8
    assert c3 == 2 and "--batch-size 20 does not split over --devices 3" in e3
    assert "e.g. 18 or 21" in e3


@pytest.mark.slow
def test_air_on_two_devices(tmp_path):
    out = str(tmp_path / "air")
    ((code, text, _, metrics),) = _commands(
        tmp_path, ["air", "--steps", "2", "--devices", "2", "--out", out, *AIR_SMALL], devices=2
    )
    assert code == 0, text
    assert "data-parallel over 2 devices" in text
    assert metrics["steps"] == 2 and metrics["devices"] == 2


def test_bad_device_counts_exit_2(tmp_path, capsys):
    for command in ("vae", "air"):
        with pytest.raises(SystemExit) as e:
            main([command, "--devices", "0", "--out", str(tmp_path / command)])
        assert e.value.code == 2
        assert "argument --devices: expected a whole number >= 1, got 0" in capsys.readouterr().err
    # this process sees one CPU device
    code = main(["vae", "--devices", "2", "--steps", "2", "--out", str(tmp_path / "v"), *TINY])
    err = capsys.readouterr().err
    assert code == 2 and "--devices 2: JAX sees 1 device (cpu)" in err
