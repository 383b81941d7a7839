"""The ``genvi`` command's arguments: parsed before anything heavy is imported, one error
format, help texts with defaults, options without a subcommand going to ``vae``."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from genvi.cli import cone
from genvi.cli.main import main

GENVI = Path(__file__).resolve().parents[2] / "genvi"

# Runs genvi.cli.main with the package's own __init__ (which imports JAX) replaced by an
# empty module, and with JAX, NumPy, optax and numpyro made unimportable: what the command
# does before it needs them (parse, --help, argument errors) must work so.
DRIVER = f"""
import importlib.abc, sys, types
HEAVY = ("jax", "jaxlib", "numpy", "optax", "numpyro", "matplotlib", "scipy")
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HEAVY:
            raise ImportError("the command imported " + name + " before parsing")
sys.meta_path.insert(0, Block())
package = types.ModuleType("genvi")
package.__path__ = [{str(GENVI)!r}]
sys.modules["genvi"] = package
from genvi.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def _light(*argv):
    return subprocess.run(
        [sys.executable, "-c", DRIVER, *argv], capture_output=True, text=True, timeout=60
    )


def _command(*argv):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run(
        [sys.executable, "-m", "genvi.cli.main", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.mark.parametrize(
    "argv, code, text",
    [
        (["--help"], 0, "quickstart"),
        (["--version"], 0, "genvi "),
        (["vae", "--help"], 0, "--overwrite"),
        (["quickstart", "--help"], 0, "(default: 20000)"),
        (["cone", "--help"], 0, "(default: 0.02)"),
        (
            ["quickstart", "--steps", "-5"],
            2,
            "genvi quickstart: error: argument --steps: expected a whole number >= 1, got -5",
        ),
        (
            ["quickstart", "--particles", "0"],
            2,
            "genvi quickstart: error: argument --particles: expected a whole number >= 1, got 0",
        ),
        (["quickstart", "--seed", "-1"], 2, "genvi quickstart: error: argument --seed"),
        (["cone", "--lr", "0"], 2, "genvi cone: error: argument --lr: expected a positive number"),
        (["vae", "--lr", "nan"], 2, "genvi vae: error: argument --lr: expected a positive number"),
        (["vae", "--objective", "x"], 2, "genvi vae: error: argument --objective: invalid choice"),
        (["--steps", "0"], 2, "genvi vae: error: argument --steps"),  # no subcommand: vae
        (["--bogus"], 2, "genvi vae: error: unrecognized arguments: --bogus"),
        (["nope"], 2, "genvi: error: argument COMMAND: invalid choice: 'nope'"),
    ],
)
def test_arguments_are_parsed_before_jax_is_imported(argv, code, text):
    proc = _light(*argv)
    assert proc.returncode == code, proc.stderr
    assert text in (proc.stdout if code == 0 else proc.stderr)
    assert "Traceback" not in proc.stderr


def test_every_option_has_help_and_its_default():
    for command, options in [
        ("quickstart", ["--seed", "--particles", "--steps"]),
        ("vae", ["--objective", "--latent", "--hidden", "--batch-size", "--lr", "--out"]),
        ("cone", ["--seed", "--samples", "--lr", "--proposal"]),
    ]:
        text = _light(command, "--help").stdout
        for option in options:
            line = next(line for line in text.splitlines() if line.strip().startswith(option))
            block = text[text.index(line) :].split("\n  -")[0]
            assert "(default: " in " ".join(block.split()), (command, option, block)
    vae_help = " ".join(_light("vae", "--help").stdout.split())
    assert "(default: 10000; with --resume, the target of the run being continued)" in vae_help
    assert "(default: 5)" in vae_help and "(default: None)" not in vae_help


def test_the_real_command_answers_help_and_bad_flags():
    proc = _command("vae", "--help")
    assert proc.returncode == 0 and "--checkpoint-every" in proc.stdout
    proc = _command("--batch-size", "0")
    assert proc.returncode == 2 and "genvi vae: error: argument --batch-size" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cone_prints_progress_per_objective(capsys, monkeypatch):
    real = cone.setups
    monkeypatch.setattr(cone, "setups", lambda **kw: dict(list(real(**kw).items())[:1]))
    assert main(["cone", "--steps", "3", "--samples", "20"]) == 0
    text = capsys.readouterr().out
    assert "[1/1] ELBO: compiling and training 3 steps..." in text
    assert "[1/1] ELBO: " in text and "estimated from 20 samples" in text
