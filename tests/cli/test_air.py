"""``genvi air``: a short real run (every file written, the metrics, a resume), the refusals
of a changed resume, its input errors (exit code 2), and its pieces: the boxes drawn
against the spatial transformer, the inference against ``AIR.infer``, the held-out bounds."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genvi.cli import air as air_cli
from genvi.cli.main import main
from genvi.models import air
from genvi.training._checkpoint import read_meta
from tests.cli.test_main import DRIVER

SMALL = [
    "--hidden",
    "16",
    "--z-what",
    "4",
    "--mlp-hidden",
    "16",
    "--batch-size",
    "16",
    "--n-train",
    "64",
    "--n-test",
    "24",
    "--estimator",
    "reinforce",
    "--eval-every",
    "10",
    "--eval-draws",
    "3",
    "--no-progress",
]

# the model of a run with SMALL: the tests of the pieces below reuse its compiled programs
MODEL = air.AIR(canvas=50, z_what=4, hidden=16, mlp_hidden=16)
N_TEST = 24


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
def test_air_trains_writes_everything_resumes_and_refuses_changes(tmp_path, capsys):
    out = tmp_path / "run"
    code, text, _ = _run(["air", "--steps", "20", "--out", str(out), *SMALL], capsys)
    assert code == 0
    assert "held-out objective" in text and "ELBO" in text and "IWAE" not in text
    assert "held-out count accuracy, 24 canvases" in text and "true \\ inferred" in text
    assert "step      10/20" in text and "held-out count accuracy" in text
    for name in air_cli.FILES:
        assert (out / name).stat().st_size > 0, name
    for name in ("reconstructions.png", "accuracy.png", "objective.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    m = json.loads((out / "metrics.json").read_text())
    assert m["complete"] and m["steps"] == 20 and m["stopped_reason"] == "steps"
    assert m["settings"]["estimator"] == "reinforce" and m["settings"]["particles"] is None
    assert m["objective"] == "elbo" and m["particles"] == 1 and m["n_test"] == 24
    assert np.isfinite(m["test_elbo"]) and m["test_elbo_stderr"] > 0
    for name in ("count_accuracy", "count_accuracy_majority", "count_accuracy_chance"):
        assert 0.0 <= m[name] <= 1.0, name
    confusion = np.array(m["confusion"])
    assert confusion.shape == (3, 4) and confusion.sum() == 24  # true 0-2, inferred 0-3
    assert np.trace(confusion) / 24 == pytest.approx(m["count_accuracy_majority"])
    draws = np.array(m["confusion_draws"])
    assert draws.sum() == 24 * 3 and np.trace(draws) / 72 == pytest.approx(m["count_accuracy"])
    curve = m["accuracy_curve"]
    assert curve["step"] == [0, 10, 20] and len(curve["seconds"]) == len(curve["accuracy"]) == 3
    assert curve["seconds"][0] == 0.0 and curve["seconds"][1] < curve["seconds"][2]
    assert m["seconds_per_step"] > 0 and m["compile_seconds"] > 0
    assert int(read_meta(out / "checkpoint.npz")["step"]) == 20

    # continue the same run to 30 steps: the options left out are the run's
    code, text, _ = _run(["air", "--steps", "30", "--out", str(out), "--resume"], capsys)
    assert code == 0 and "resuming from step 20 of 30" in text
    m = json.loads((out / "metrics.json").read_text())
    assert m["steps"] == 30 and m["settings"]["hidden"] == 16 and m["eval_every"] == 10
    assert m["accuracy_curve"]["step"] == [0, 10, 20, 30]
    # without --steps, a resumed run aims for its own target: here reached already
    code, text, _ = _run(["air", "--out", str(out), "--resume"], capsys)
    assert code == 0 and "already at step 30, and the run's target is 30 steps" in text

    # never replaced or changed silently
    code, _, err = _run(["air", "--steps", "40", "--out", str(out), *SMALL], capsys)
    assert code == 2 and "already holds a run (its checkpoint.npz is at step 30 of 30)" in err
    assert "genvi air --resume --out" in err
    resume = ["air", "--steps", "40", "--out", str(out), "--resume"]
    for extra, message in [
        (["--lr", "0.01"], "trained with --lr 0.001, not --lr 0.01"),
        (["--hidden", "9"], "trained with --hidden 16, not --hidden 9"),
        (["--estimator", "enum"], "trained with --estimator reinforce, not --estimator enum"),
        (["--objective", "iwae"], "trained with --objective elbo, not --objective iwae"),
        (["--particles", "3"], "--particles does not apply to --objective elbo"),
        (["--objective", "rws"], "trained with --objective elbo, not --objective rws"),
        (["--pres-prior", "0.5"], "trained with --pres-prior 1e-13, not --pres-prior 0.5"),
        (["--scale-sd", "0.1"], "trained with --scale-sd 0.2, not --scale-sd 0.1"),
        (["--n-train", "80"], "trained with --n-train 64, not --n-train 80"),
        (["--seed", "1"], "trained with --seed 0, not --seed 1"),
        (["--overwrite"], "--resume and --overwrite exclude each other"),
    ]:
        code, _, err = _run(resume + extra, capsys)
        assert code == 2 and message in err, (extra, err)
        assert "resume=" not in err and "settings[" not in err
    assert int(read_meta(out / "checkpoint.npz")["step"]) == 30  # untouched


def _exit_code(argv, capsys):
    code, _, err = _run(argv, capsys)
    return code, err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--estimator", "nope"], "argument --estimator: invalid choice: 'nope' (choose from"),
        (["--objective", "vimco"], "argument --objective: invalid choice: 'vimco'"),
        (["--particles", "3"], "--particles does not apply to --objective elbo"),
        (["--objective", "rws", "--particles", "0"], "argument --particles: expected a whole"),
        (
            ["--objective", "rws", "--estimator", "enum"],
            "--estimator does not apply to --objective rws",
        ),
        (["--steps", "0"], "argument --steps: expected a whole number >= 1, got 0"),
        (["--steps", "ten"], "argument --steps: expected a whole number >= 1, got 'ten'"),
        (["--lr", "fast"], "argument --lr: expected a positive number, got 'fast'"),
        (["--batch-size", "1.5"], "argument --batch-size: expected a whole number >= 1"),
        (["--eval-every", "0"], "argument --eval-every: expected a whole number >= 1, got 0"),
        (["--hidden", "-3"], "argument --hidden: expected a whole number >= 1, got -3"),
        (
            ["--pres-prior", "1.5"],
            "argument --pres-prior: expected a probability strictly between 0 and 1, got 1.5",
        ),
        (["--scale-sd", "0"], "argument --scale-sd: expected a positive number, got 0"),
        (["--scale-sd", "wide"], "argument --scale-sd: expected a positive number, got 'wide'"),
        (["--mnist", "MISSING"], "error: --mnist MISSING: no such file or folder"),
        (["--resume"], "--resume: there is no checkpoint to resume from"),
        (["--resume", "--overwrite"], "--resume and --overwrite exclude each other"),
        (
            ["--n-train", "20", "--batch-size", "32"],
            "--batch-size 32 exceeds the 20 training canvases; lower it or raise --n-train",
        ),
        (["--bogus"], "genvi air: error: unrecognized arguments: --bogus"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(tmp_path, capsys, argv, message):
    missing = str(tmp_path / "missing")
    argv = [a.replace("MISSING", missing) for a in argv]
    code, err = _exit_code(["air", "--out", str(tmp_path / "o"), *argv], capsys)
    assert code == 2
    assert message.replace("MISSING", missing) in err
    if "nope" in argv:  # the valid estimators are listed
        assert all(name in err for name in air.ESTIMATORS)
    assert not (tmp_path / "o" / "checkpoint.npz").exists()


def test_malformed_mnist_exits_2(tmp_path, capsys):
    bad = tmp_path / "mnist.npz"
    np.savez(bad, nothing=np.zeros(3))
    code, err = _exit_code(["air", "--mnist", str(bad), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "genvi air: error:" in err and "mnist.npz" in err


def test_help_and_errors_come_before_jax_is_imported():
    def light(*argv):
        return subprocess.run(
            [sys.executable, "-c", DRIVER, *argv], capture_output=True, text=True, timeout=60
        )

    proc = light("air", "--help")
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    for default in (
        f"(default: {air_cli.DEFAULT_STEPS};",
        f"(default: {air_cli.DEFAULT_LR})",
        f"(default: {air_cli.DEFAULT_PRES_PRIOR})",
        "(default: enum)",
        "(default: runs/air)",
    ):
        assert default in text, default
    proc = light("air", "--estimator", "x")
    assert proc.returncode == 2 and "genvi air: error: argument --estimator" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_names_agree_with_the_model():
    assert air_cli.ESTIMATORS == tuple(air.ESTIMATORS)
    assert set(air_cli.DEFAULT_PARTICLES) | {"elbo"} == set(air_cli.OBJECTIVES)


@pytest.mark.parametrize(
    "where", [(3.0, 0.0, 0.0), (3.0, 0.5, -0.9), (2.0, -0.3, 0.4), (1.6, 0.2, 0.1)]
)
def test_boxes_are_where_the_spatial_transformer_puts_a_window(where):
    canvas = 50
    image = np.asarray(air.window_to_image(jnp.array(where), jnp.ones((16, 16)), canvas))
    box = air_cli.box_of(where, canvas)
    assert box is not None
    row0, col0, side = box
    rows, cols = np.nonzero(image.sum(1) > 1e-6)[0], np.nonzero(image.sum(0) > 1e-6)[0]
    # the support is the box, up to the bilinear fringe (a window pixel) on each side
    tol = 1 + side / 16
    assert abs(rows.min() - row0) <= tol and abs(rows.max() + 1 - (row0 + side)) <= tol
    assert abs(cols.min() - col0) <= tol and abs(cols.max() + 1 - (col0 + side)) <= tol
    centre = np.arange(canvas) + 0.5  # pixel i covers [i, i + 1]
    mass = image.sum()
    assert (image.sum(1) * centre).sum() / mass == pytest.approx(row0 + side / 2, abs=0.25)
    assert (image.sum(0) * centre).sum() / mass == pytest.approx(col0 + side / 2, abs=0.25)
    assert mass == pytest.approx(side * side, rel=0.02)
    assert air_cli.box_of((0.0, 0.1, 0.1), canvas) is None


def _params_and_images():
    params = MODEL.init_params(jax.random.key(0), pres_logit=0.0)
    images = np.asarray(jax.random.uniform(jax.random.key(1), (N_TEST, 50 * 50)))
    return params, images


def test_inference_is_air_infer_and_renders_the_present_objects():
    params, images = _params_and_images()
    key = jax.random.key(2)
    out = air_cli._inference(MODEL)(key, params, images)
    counts, where, what, pres = (np.asarray(a) for a in out)
    n, w, p = MODEL.infer(key, params, images)
    np.testing.assert_array_equal(counts, n)
    np.testing.assert_array_equal(pres, p)
    np.testing.assert_allclose(where, w, atol=1e-6)
    assert set(counts.tolist()) >= {0, 1}  # presence at probability 1/2
    assert what.shape == (N_TEST, 3, 4) and np.all(what[pres == 0] == 0)
    i = int(np.argmax(counts))
    picked = [i, *range(7)]  # eight, as the figure shows
    canvases = np.asarray(
        air_cli._renderer(MODEL)(params, what[picked], where[picked], pres[picked])
    )
    expected = sum(
        np.asarray(MODEL.render(params["decoder"], what[i, t], where[i, t]))
        for t in range(int(counts[i]))
    )
    np.testing.assert_allclose(canvases[0], expected, atol=1e-5)
    drawn = air_cli.counts_drawn(MODEL, key, params, images, 4)
    assert drawn.shape == (4, N_TEST) and drawn.min() >= 0 and drawn.max() <= 3
    assert len({tuple(d) for d in drawn.tolist()}) > 1  # independent draws


def test_majority_confusion_and_held_out_bounds():
    drawn = np.array([[0, 1, 2, 3], [0, 2, 2, 1], [1, 2, 0, 1]])
    np.testing.assert_array_equal(air_cli.majority(drawn), [0, 2, 2, 1])
    np.testing.assert_array_equal(air_cli.majority(np.array([[2], [1]])), [1])  # a tie
    assert air_cli.confusion([0, 1, 1], [0, 2, 1], 2, 3) == [[1, 0, 0], [0, 1, 1]]
    params, images = _params_and_images()
    m = air_cli.held_out_objective(MODEL, jax.random.key(3), params, images, 2)
    assert set(m) == {"test_elbo", "test_elbo_stderr", "test_iwae_2", "test_iwae_2_stderr"}
    assert all(np.isfinite(v) for v in m.values()) and m["test_elbo_stderr"] > 0
    # IWAE(2) >= ELBO in expectation, image by image
    assert m["test_iwae_2"] > m["test_elbo"] - 4 * m["test_elbo_stderr"]
    only = air_cli.held_out_objective(MODEL, jax.random.key(3), params, images, None)
    assert set(only) == {"test_elbo", "test_elbo_stderr"}
    assert only["test_elbo"] == m["test_elbo"]  # the same key, the same estimates


def test_the_command_defaults_are_the_model_defaults():
    assert air_cli.DEFAULT_PRES_PRIOR == air.AIR().pres_prior
    assert air_cli.DEFAULT_SCALE_SD == air.AIR().where_scale[0]
    assert air_cli.DEFAULT_HIDDEN == air.AIR().hidden
    assert air_cli.DEFAULT_Z_WHAT == air.AIR().z_what
    assert air_cli.DEFAULT_MLP_HIDDEN == air.AIR().mlp_hidden


def test_scale_sd_reaches_the_model(tmp_path, capsys, monkeypatch):
    """``--scale-sd`` is the first of the model's ``where_scale``, not an option that is
    parsed and dropped: the model the command builds gets it (a fake AIR records it)."""
    made = []

    class Stop(Exception):
        pass

    def fake_air(**kwargs):
        made.append(kwargs)
        raise Stop

    monkeypatch.setattr(air, "AIR", fake_air)
    for argv, want in ([], (0.2, 1.0, 1.0)), (["--scale-sd", "0.1"], (0.1, 1.0, 1.0)):
        with pytest.raises(Stop):
            main(["air", "--out", str(tmp_path / f"o{len(made)}"), *SMALL, *argv])
        assert made[-1]["where_scale"] == want
