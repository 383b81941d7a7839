"""``genvi vae``: end to end with tiny step counts, and its input errors (exit code 2)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from genvi.cli.main import main
from genvi.cli.vae import FILES
from genvi.training._checkpoint import read_meta

TINY = [
    "--latent",
    "2",
    "--hidden",
    "8",
    "--batch-size",
    "20",
    "--eval-particles",
    "8",
    "--eval-size",
    "30",
    "--checkpoint-every",
    "10",
    "--no-progress",
]


def _run(argv, capsys):
    """``genvi <argv>`` in this process: (exit code, stdout, stderr)."""
    try:
        code = main(argv)
    except SystemExit as e:  # argparse errors
        code = e.code
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


@pytest.mark.slow
def test_vae_trains_writes_everything_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["vae", "--steps", "20", "--out", str(out), *TINY]) == 0
    text = capsys.readouterr().out
    assert "held-out bound on log p(x)" in text and "IWAE, K=8" in text
    for name in FILES:
        assert (out / name).stat().st_size > 0, name
    for name in ("loss.png", "reconstructions.png", "samples.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 20 and metrics["objective"] == "iwae" and metrics["particles"] == 5
    assert metrics["n_eval"] == 30 and metrics["stopped_reason"] == "steps"
    for name in ("test_iwae_8", "test_elbo", "train_iwae_8", "train_elbo"):
        assert np.isfinite(metrics[name]) and metrics[name] < 0
    # IWAE(8) >= ELBO image by image in expectation; on 30 images with these errors:
    assert metrics["test_iwae_8"] > metrics["test_elbo"] - 4 * metrics["test_elbo_stderr"]
    # continue the same run to 30 steps: the options left out are the run's
    code, text, _ = _run(["vae", "--steps", "30", "--out", str(out), "--resume", *TINY], capsys)
    assert code == 0 and "resuming from step 20 of 30" in text
    assert json.loads((out / "metrics.json").read_text())["steps"] == 30
    # without --steps, a resumed run aims for its own target: here reached already
    code, text, _ = _run(["vae", "--out", str(out), "--resume", "--eval-particles", "8"], capsys)
    assert code == 0 and "already at step 30, and the run's target is 30 steps" in text
    assert "nothing to train" in text and "steps=" not in text
    assert json.loads((out / "metrics.json").read_text())["latent"] == 2  # the run's, not 8


@pytest.mark.slow
def test_a_run_in_out_is_never_replaced_or_changed_silently(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["vae", "--steps", "10", "--out", str(out), *TINY]) == 0
    capsys.readouterr()
    code, _, err = _run(["vae", "--steps", "10", "--out", str(out), *TINY], capsys)
    assert code == 2 and "already holds a run (its checkpoint.npz is at step 10 of 10)" in err
    assert "--resume" in err and "--overwrite" in err
    resume = ["vae", "--steps", "20", "--out", str(out), "--resume", *TINY]
    for extra, message in [
        (["--lr", "0.01"], "trained with --lr 0.001, not --lr 0.01"),
        (["--hidden", "9"], "trained with --hidden 8, not --hidden 9"),
        (["--objective", "elbo"], "trained with --objective iwae, not --objective elbo"),
        (["--particles", "3"], "trained with --particles 5, not --particles 3"),
        (["--seed", "1"], "trained with --seed 0, not --seed 1"),
        (["--overwrite"], "--resume and --overwrite exclude each other"),
    ]:
        code, _, err = _run(resume + extra, capsys)
        assert code == 2 and message in err, (extra, err)
        assert "resume=" not in err and "settings[" not in err
    assert int(read_meta(out / "checkpoint.npz")["step"]) == 10  # untouched
    # --overwrite replaces the run: its files are removed first, then written anew
    (out / "metrics.json").write_text("{}")
    code, _, _ = _run(["vae", "--steps", "6", "--out", str(out), "--overwrite", *TINY], capsys)
    assert code == 0 and json.loads((out / "metrics.json").read_text())["steps"] == 6
    assert int(read_meta(out / "checkpoint.npz")["step"]) == 6


@pytest.mark.slow
def test_the_command_refuses_a_rerun_and_a_changed_resume(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["vae", "--steps", "10", "--out", str(out), *TINY]) == 0
    # the real command, in subprocesses (each refusal comes before any compilation)
    again = _command("vae", "--steps", "20", "--out", str(out), *TINY)
    assert again.returncode == 2 and "genvi vae: error: --out" in again.stderr
    assert "continue it with `genvi vae --resume --out" in again.stderr
    changed = _command("vae", "--out", str(out), "--resume", "--lr", "0.01", *TINY)
    assert changed.returncode == 2
    assert "genvi vae: error: --resume: the run in" in changed.stderr
    assert "--lr 0.001, not --lr 0.01" in changed.stderr
    for proc in (again, changed):
        assert "Traceback" not in proc.stderr and "compiling" not in proc.stdout


def test_vae_on_mnist_npz_and_elbo(tmp_path, capsys):
    rng = np.random.default_rng(0)
    path = tmp_path / "mnist.npz"
    np.savez(
        path,
        x_train=rng.integers(0, 256, (40, 6, 6), dtype=np.uint8),
        x_test=rng.integers(0, 256, (10, 6, 6), dtype=np.uint8),
    )
    out = tmp_path / "m"
    assert (
        main(
            [
                "vae",
                "--mnist",
                str(path),
                "--objective",
                "elbo",
                "--steps",
                "4",
                "--out",
                str(out),
                *TINY,
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_train"] == 40 and metrics["n_eval"] == 10 and metrics["particles"] == 1
    assert "6x6 pixels" in capsys.readouterr().out


def _exit_code(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as e:  # argparse errors
        code = e.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--steps", "0"], "argument --steps: expected a whole number >= 1, got 0"),
        (["--lr", "-1"], "argument --lr: expected a positive number"),
        (["--objective", "nope"], "argument --objective: invalid choice: 'nope'"),
        (["--batch-size", "5000"], "--batch-size 5000 exceeds the 1438 training images"),
        (
            ["--objective", "elbo", "--particles", "4"],
            "--particles does not apply to --objective elbo",
        ),
        (["--objective", "vimco", "--particles", "1"], "--objective vimco: "),
        (["--alpha", "0.3"], "--alpha applies to --objective renyi only, not iwae"),
        (["--mnist", "MISSING"], "no such file or folder"),
        (["--resume"], "no checkpoint to resume from"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(tmp_path, capsys, argv, message):
    argv = [a.replace("MISSING", str(tmp_path / "missing")) for a in argv]
    code, err = _exit_code(["vae", "--out", str(tmp_path / "o"), *argv], capsys)
    assert code == 2
    assert message in err


def test_malformed_data_and_bad_out_folder_exit_2(tmp_path, capsys):
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_bytes(
        b"\x00\x00\x08\x03" + (5).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + b"\x00" * 100
    )
    code, err = _exit_code(["vae", "--mnist", str(bad), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "is truncated" in err and "train-images-idx3-ubyte" in err
    (tmp_path / "file").write_text("x")
    code, err = _exit_code(["vae", "--out", str(tmp_path / "file")], capsys)
    assert code == 2 and "is a file, not a folder" in err


def _command(*argv):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run(
        [sys.executable, "-m", "genvi.cli.main", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_console_script_reports_errors_without_traceback(tmp_path):
    proc = _command("vae", "--mnist", str(tmp_path / "none.npz"), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert "genvi vae: error: no such file or folder" in proc.stderr
    assert "Traceback" not in proc.stderr
