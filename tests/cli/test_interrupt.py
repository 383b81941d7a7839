"""Ctrl-C in ``genvi vae``, by sending SIGINT to the real command at chosen moments: while
XLA compiles (where a ``KeyboardInterrupt`` used to crash the process with exit 139 or be
swallowed), while it trains, and twice. Every trial must exit with code 130, print no
traceback and no "Exception ignored", and say ``--resume`` exactly when a checkpoint
exists."""

import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest

from genvi.training._checkpoint import read_meta

TINY = [
    "--latent",
    "2",
    "--hidden",
    "8",
    "--batch-size",
    "20",
    "--checkpoint-every",
    "50",
    "--eval-particles",
    "4",
    "--eval-size",
    "20",
    "--no-progress",
]
TIMEOUT = 120


class Command:
    """``genvi vae`` in a subprocess, its stdout read line by line."""

    def __init__(self, *argv):
        env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "genvi.cli.main", "vae", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: queue.Queue = queue.Queue()
        self.out: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for_line(self, text: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                continue
            assert line is not None, f"the command ended before printing {text!r}: {self.out}"
            self.out.append(line)
            if text in line:
                return
        self.kill()
        pytest.fail(f"no line {text!r} within {TIMEOUT} s: {self.out}")

    def wait_for_file(self, path) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not os.path.exists(path):
            assert self.proc.poll() is None, "the command ended before writing a checkpoint"
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"no {path} within {TIMEOUT} s")
            time.sleep(0.05)

    def interrupt(self, times: int = 1) -> tuple[int, str]:
        for _ in range(times):
            self.proc.send_signal(signal.SIGINT)
            time.sleep(0.05)
        try:
            _, err = self.proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail("the command did not stop after Ctrl-C")
        return self.proc.returncode, err

    def kill(self):
        self.proc.kill()
        self.proc.communicate()


def _check(code: int, err: str, out_dir) -> None:
    assert code == 130, f"exit code {code}, stderr:\n{err}"
    assert "Traceback" not in err and "Exception ignored" not in err, err
    ckpt = out_dir / "checkpoint.npz"
    if ckpt.exists():
        assert f"continue with: genvi vae --resume --out {out_dir}" in err, err
    else:
        assert "nothing was kept" in err and "--resume" not in err, err


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 0.7, 2.0, 4.0])
def test_ctrl_c_while_compiling_exits_130(tmp_path, delay):
    out = tmp_path / "run"
    cmd = Command("--steps", "100000", "--out", str(out), *TINY)
    cmd.wait_for_line("compiling the training step")
    time.sleep(delay)  # the first trials land in compilation, the last may land in training
    code, err = cmd.interrupt()
    _check(code, err, out)


def _checkpoint_step(out_dir) -> int:
    return int(read_meta(out_dir / "checkpoint.npz")["step"])


@pytest.mark.slow
def test_ctrl_c_while_training_keeps_the_checkpoint_and_resume_goes_on(tmp_path):
    out = tmp_path / "run"
    cmd = Command("--steps", "1000000", "--out", str(out), *TINY)
    cmd.wait_for_file(out / "checkpoint.npz")
    code, err = cmd.interrupt()
    _check(code, err, out)
    step = _checkpoint_step(out)  # the chunk in progress was finished and written
    assert step > 0 and step % 50 == 0 and f"at step {step} of 1000000" in err
    assert "stopping after the current chunk" in err
    # the resumed run, interrupted while it compiles, still points to --resume
    cmd = Command("--resume", "--out", str(out), *TINY)
    cmd.wait_for_line(f"resuming from step {step} of 1000000")
    cmd.wait_for_line("compiling the training step")
    code, err = cmd.interrupt()
    _check(code, err, out)
    assert "continue with: genvi vae --resume" in err and _checkpoint_step(out) >= step


@pytest.mark.slow
def test_a_second_ctrl_c_quits_at_once_keeping_the_last_checkpoint(tmp_path):
    out = tmp_path / "run"
    cmd = Command("--steps", "1000000", "--out", str(out), *TINY)
    cmd.wait_for_file(out / "checkpoint.npz")
    code, err = cmd.interrupt(2)
    _check(code, err, out)
    step = _checkpoint_step(out)
    assert step > 0 and f"at step {step} of 1000000" in err


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.3, 0.6, 1.0, 1.6])
def test_ctrl_c_while_the_libraries_load_exits_130(tmp_path, delay):
    # Importing JAX takes seconds; the command's arguments are parsed before it, and a
    # Ctrl-C then ends the process at once (a KeyboardInterrupt there used to be swallowed
    # by JAX's import-time callbacks, or end in a traceback).
    out = tmp_path / "run"
    cmd = Command("--steps", "100000", "--out", str(out), *TINY)
    time.sleep(delay)
    code, err = cmd.interrupt()
    assert code == 130, f"exit code {code}, stderr:\n{err}"
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert "interrupted" in err
    assert not (out / "checkpoint.npz").exists()


def test_help_answers_without_importing_jax():
    code = (
        "import sys\n"
        "from genvi.cli.main import main\n"
        "try:\n"
        "    main(['vae', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('jax' in sys.modules)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert proc.stdout.strip().splitlines()[-1] == "False", proc.stdout
