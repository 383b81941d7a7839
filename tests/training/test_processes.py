"""gv.fit on two processes (jax.distributed on localhost, CPU collectives, two forced
CPU devices each) agrees with one process, writes its checkpoint once, from process 0,
and a checkpoint resumes across process counts in both directions."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import genvi as gv

HERE = os.path.dirname(__file__)
WORKER = os.path.join(HERE, "_processes_run.py")
PROCESSES = 2

pytestmark = pytest.mark.skipif(
    sys.platform == "win32", reason="JAX has no CPU collectives (gloo) on Windows"
)


def _worker_module():
    spec = importlib.util.spec_from_file_location("_processes_run", WORKER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _launch(folder, timeout=240.0):
    """Start the processes, wait for all; kill all if one fails or time runs out."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    port = _free_port()
    logs = [open(os.path.join(folder, f"log_{i}.txt"), "w+") for i in range(PROCESSES)]
    procs = [
        subprocess.Popen(
            [sys.executable, WORKER, str(i), str(PROCESSES), str(port), str(folder)],
            env=env,
            stdout=logs[i],
            stderr=subprocess.STDOUT,
        )
        for i in range(PROCESSES)
    ]
    deadline = time.monotonic() + timeout
    try:
        while any(p.poll() is None for p in procs):
            failed = [p for p in procs if p.poll() not in (None, 0)]
            if failed or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    text = []
    for i, log in enumerate(logs):
        log.seek(0)
        text.append(f"--- process {i} (exit {procs[i].returncode}) ---\n{log.read()[-3000:]}")
        log.close()
    return [p.returncode for p in procs], "\n".join(text)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("processes")
    w = _worker_module()
    xs, ys = w.data()
    # the one-process reference, and a checkpoint at half-way for the two processes to resume
    one = gv.fit(w.loss, w.PHI, data=(xs, ys), **w.common())
    gv.fit(
        w.loss,
        w.PHI,
        data=(xs, ys),
        checkpoint=os.path.join(folder, "one.ckpt"),
        **w.common(steps=w.STEPS // 2),
    )
    iwae_one = gv.fit(w.iwae_loss, w.PHI, data=(xs, ys), **w.common(steps=10))
    files_before = set(os.listdir(folder))
    codes, logs = _launch(folder)
    assert codes == [0] * PROCESSES, logs
    files = sorted(set(os.listdir(folder)) - files_before - {"log_0.txt", "log_1.txt"})
    results = []
    for i in range(PROCESSES):
        with open(os.path.join(folder, f"process_{i}.json")) as fh:
            results.append(json.load(fh))
    files = [f for f in files if not f.startswith("process_")]
    # the two-process checkpoint, resumed by one process
    resumed = gv.fit(
        w.loss, w.PHI, data=(xs, ys), resume=os.path.join(folder, "two.ckpt"), **w.common()
    )
    return dict(one=one, iwae_one=iwae_one, results=results, files=files, resumed=resumed)


def _close(a, b, rtol=1e-4, atol=1e-5):
    """Two parameter dicts (of arrays, or of the lists the processes wrote) agree."""
    assert sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_allclose(np.asarray(a[name]), np.asarray(b[name]), rtol=rtol, atol=atol)


def test_two_processes_train_as_one(runs):
    r0, r1 = runs["results"]
    assert (r0["devices"], r0["local_devices"]) == (4, 2)
    assert r0["full"] == r1["full"]  # one model, replicated
    _close(r0["full"], runs["one"].params)
    np.testing.assert_allclose(r0["history"], runs["one"].history.objective, rtol=1e-4, atol=1e-4)
    assert "'data': 4" in r0["sharding"] and "P()" in r0["sharding"]


def test_particles_spread_within_processes_data_across(runs):
    r0, r1 = runs["results"]
    assert r0["iwae"] == r1["iwae"]
    _close(r0["iwae"], runs["iwae_one"].params)


def test_the_checkpoint_is_written_once_by_process_0(runs):
    r0, r1 = runs["results"]
    assert r0["half_step"] == 20
    assert r0["writes"] == ["two.ckpt", "two.ckpt"]  # at step 10 and at the end
    assert r1["writes"] == []
    assert runs["files"] == ["two.ckpt"]  # and no temporary file left behind


def test_checkpoints_resume_across_process_counts(runs):
    r0, r1 = runs["results"]
    _close(runs["resumed"].params, runs["one"].params)  # 2 processes -> 1
    assert runs["resumed"].step == 40
    _close(r0["resumed_from_one"], runs["one"].params)  # 1 process -> 2
    assert r0["resumed_from_one"] == r1["resumed_from_one"]


def test_misuse_is_reported_by_every_process(runs):
    for r in runs["results"]:
        e = r["errors"]
        assert "mesh=" in e["no_mesh"] and "process" in e["no_mesh"]
        assert "mesh=4" in e["too_few_devices"]
        assert "span" in e["data_within_processes"]
        assert "process 0: 16, process 1: 24" in e["share_sizes"]
        assert "steps (process 0: 10, process 1: 11)" in e["steps"]
        assert "multiple of 2" in e["indivisible_share"]
