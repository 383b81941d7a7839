"""The ``genvi`` command's arguments: every subcommand's options, their checks and help.

Standard library only, and nothing here imports JAX or the rest of genvi: the command
parses (and answers ``--help`` or a bad flag) before it loads anything heavy. Each
subcommand's ``run(args)`` lives in its own module (``genvi.cli.vae``, ...), imported
after parsing.

Every option records that it was given on the command line (``args.given``, a set of
destination names), so that ``genvi vae --resume`` can take the options left out from the
checkpoint's run and refuse those given with another value.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

from genvi.cli import _devices as _devices_help  # standard library only at import time

# genvi vae
BOUNDS = ("elbo", "iwae", "renyi", "vimco")  # lower bounds applied per image
DEFAULT_PARTICLES = 5
DEFAULT_ALPHA = 0.5
DEFAULT_STEPS = 10_000
FILES = ("loss.png", "reconstructions.png", "samples.png", "checkpoint.npz", "metrics.json")

SUBCOMMANDS = ("quickstart", "vae", "air", "cone")
DEFAULT_SUBCOMMAND = "vae"
SEED_LIMIT = 2**63  # PRNG seeds are 64-bit integers
DEVICES_HELP = _devices_help.HELP


class Parser(argparse.ArgumentParser):
    """Errors as one line ``<prog>: error: <message>`` after the usage, exit code 2."""

    commands: dict[str, Parser]

    def error(self, message):  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help texts with ``(default: ...)``, except where the default is None or False
    (the help text then says what happens)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.default == argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def _record(namespace, dest: str, value) -> None:
    setattr(namespace, dest, value)
    namespace.given = set(getattr(namespace, "given", ())) | {dest}


class _Given(argparse.Action):
    """``store``, remembering that the option was given."""

    def __call__(self, parser, namespace, values, option_string=None):
        _record(namespace, self.dest, values)


class _GivenFlag(argparse.Action):
    """``store_true``, remembering that the flag was given."""

    def __init__(self, option_strings, dest, default=False, help=None):
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        _record(namespace, self.dest, True)


def _number(kind, low: float, low_ok: bool, what: str, high: float | None = None):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        if value < low or (value == low and not low_ok) or (high is not None and value >= high):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


positive_int = _number(int, 1, True, "a whole number >= 1")
positive_float = _number(float, 0.0, False, "a positive number")
seed = _number(int, 0, True, "a whole number in [0, 2**63)", SEED_LIMIT)


def probability(text: str) -> float:
    """A number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a probability strictly between 0 and 1, got {text!r}"
        ) from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(
            f"expected a probability strictly between 0 and 1, got {text}"
        )
    return value


probability.__name__ = "float"


def _add(p, *names, **kw):
    if kw.get("action") is None:
        kw["action"] = _Given
    return p.add_argument(*names, **kw)


def _flag(p, *names, help: str):
    return p.add_argument(*names, action=_GivenFlag, help=help)


def _quickstart(sub) -> Parser:
    p = sub.add_parser(
        "quickstart",
        help="a small model: posterior by importance sampling and VI, against the exact one",
        description=(
            "A model small enough to solve exactly (z ~ N(0, 1) read three times with "
            "noise 0.5): its posterior and marginal likelihood by importance sampling and "
            "by variational inference (ELBO, Adam), printed next to the exact values."
        ),
        formatter_class=HelpFormatter,
    )
    _add(p, "--seed", type=seed, default=0, help="random seed")
    _add(p, "--particles", type=positive_int, default=20_000, help="importance samples")
    _add(p, "--steps", type=positive_int, default=500, help="Adam steps of the VI fit")
    return p


def _vae(sub) -> Parser:
    p = sub.add_parser(
        "vae",
        help="train a VAE on the scikit-learn digits (or MNIST) and report its held-out bound",
        description=(
            "Train a variational autoencoder on the binarized 8x8 digits that ship with "
            "scikit-learn (no download), or on MNIST from local files, then estimate "
            "log p(x) on held-out images. Writes " + ", ".join(FILES) + " to --out. "
            "Ctrl-C stops cleanly (exit code 130) and keeps the last checkpoint; continue "
            "with --resume."
        ),
        formatter_class=HelpFormatter,
    )
    _add(
        p,
        "--mnist",
        metavar="PATH",
        help="MNIST instead of the digits: a folder of IDX files (train-images-idx3-ubyte"
        "[.gz], t10k-images-idx3-ubyte[.gz]), one IDX file, or an .npz file",
    )
    _add(p, "--objective", choices=BOUNDS, default="iwae", help="the bound to maximize")
    _add(
        p,
        "--particles",
        type=positive_int,
        help=f"particles per image of multi-particle bounds (default: {DEFAULT_PARTICLES})",
    )
    _add(
        p, "--alpha", type=float, help=f"the alpha of --objective renyi (default: {DEFAULT_ALPHA})"
    )
    _add(p, "--latent", type=positive_int, default=8, help="latent size")
    _add(p, "--hidden", type=positive_int, default=128, help="hidden units of encoder and decoder")
    _add(
        p,
        "--steps",
        type=positive_int,
        help=f"total training steps, counted from step 0 (default: {DEFAULT_STEPS}; with "
        "--resume, the target of the run being continued)",
    )
    _add(p, "--batch-size", type=positive_int, default=100, help="images per step")
    _add(p, "--devices", type=positive_int, help=DEVICES_HELP)
    _add(p, "--lr", type=positive_float, default=1e-3, help="Adam learning rate")
    _add(p, "--seed", type=seed, default=0, help="random seed")
    _add(p, "--out", default=os.path.join("runs", "vae"), help="output folder")
    _add(
        p,
        "--eval-particles",
        type=positive_int,
        default=1000,
        help="particles of the held-out IWAE estimate of log p(x)",
    )
    _add(
        p,
        "--eval-size",
        type=positive_int,
        default=1000,
        help="held-out images to evaluate, at most",
    )
    _add(p, "--checkpoint-every", type=positive_int, default=1000, help="steps between checkpoints")
    _flag(
        p,
        "--resume",
        help="continue the run whose checkpoint is in --out: options left out are that "
        "run's; options that change its meaning (objective, sizes, learning rate, seed, "
        "data) must not differ",
    )
    _flag(p, "--overwrite", help="replace the run (checkpoint and results) already in --out")
    _flag(p, "--no-progress", help="no progress bar (a line every tenth of the run instead)")
    return p


def _air(sub) -> Parser:
    from genvi.cli import air  # standard library only at import time

    p = sub.add_parser(
        "air",
        help="train Attend-Infer-Repeat on multi-digit canvases and report its count accuracy",
        description=(
            "Train Attend-Infer-Repeat (AIR) on 50x50 canvases of 0 to 2 digits "
            "(genvi.data.multi_digits: the scikit-learn digits, or local MNIST), then report "
            "the held-out ELBO and how often the guide counts the digits right. Writes "
            + ", ".join(air.FILES)
            + " to --out. Ctrl-C stops cleanly (exit code 130) and keeps the last "
            "checkpoint; continue with --resume."
        ),
        formatter_class=HelpFormatter,
    )
    _add(
        p,
        "--mnist",
        metavar="PATH",
        help="canvases of MNIST digits instead of the scikit-learn digits: a folder of IDX "
        "files (train-images-idx3-ubyte[.gz], t10k-images-idx3-ubyte[.gz]), one IDX file, or "
        "an .npz file",
    )
    _add(
        p,
        "--estimator",
        choices=air.ESTIMATORS,
        default=air.DEFAULT_ESTIMATOR,
        help="the gradient estimator of the presence choices (baseline: reinforce with a "
        "learned baseline; hybrid: enum at the first step, mvd at the later ones); not for "
        "--objective rws",
    )
    _add(
        p,
        "--objective",
        choices=air.OBJECTIVES,
        default=air.DEFAULT_OBJECTIVE,
        help="the objective to maximize (rws: reweighted wake-sleep)",
    )
    _add(
        p,
        "--particles",
        type=positive_int,
        help="particles per canvas of --objective iwae (default: "
        f"{air.DEFAULT_PARTICLES['iwae']}) or rws (default: {air.DEFAULT_PARTICLES['rws']}); "
        "not for elbo",
    )
    _add(
        p,
        "--steps",
        type=positive_int,
        help=f"total training steps, counted from step 0 (default: {air.DEFAULT_STEPS}; "
        "with --resume, the target of the run being continued)",
    )
    _add(
        p,
        "--batch-size",
        type=positive_int,
        default=air.DEFAULT_BATCH_SIZE,
        help="canvases per step",
    )
    _add(p, "--devices", type=positive_int, help=DEVICES_HELP)
    _add(p, "--lr", type=positive_float, default=air.DEFAULT_LR, help="Adam learning rate")
    _add(p, "--seed", type=seed, default=0, help="random seed")
    _add(p, "--hidden", type=positive_int, default=air.DEFAULT_HIDDEN, help="LSTM state size")
    _add(
        p,
        "--z-what",
        type=positive_int,
        default=air.DEFAULT_Z_WHAT,
        help="size of an object's appearance code",
    )
    _add(
        p,
        "--mlp-hidden",
        type=positive_int,
        default=air.DEFAULT_MLP_HIDDEN,
        help="hidden units of the decoder, encoder, predictor and baseline",
    )
    _add(
        p,
        "--pres-prior",
        type=probability,
        default=air.DEFAULT_PRES_PRIOR,
        help="the prior probability that another object is present",
    )
    _add(
        p,
        "--scale-sd",
        type=positive_float,
        default=air.DEFAULT_SCALE_SD,
        help="standard deviation of the prior of an object window's scale (0.1 makes one big "
        "window over two digits cost more than a second object; see the AIR docs page)",
    )
    _add(
        p,
        "--n-train",
        type=positive_int,
        default=air.DEFAULT_N_TRAIN,
        help="training canvases",
    )
    _add(
        p,
        "--n-test",
        type=positive_int,
        default=air.DEFAULT_N_TEST,
        help="held-out canvases (every evaluation uses them all)",
    )
    _add(
        p,
        "--eval-every",
        type=positive_int,
        help="steps between held-out count-accuracy evaluations, the points of the accuracy "
        f"curve; a checkpoint is written at each (default: a {air.DEFAULT_EVAL_FRACTION}th of "
        "--steps; with --resume, the run's)",
    )
    _add(
        p,
        "--eval-draws",
        type=positive_int,
        default=air.DEFAULT_EVAL_DRAWS,
        help="guide draws per held-out canvas of the final count accuracy",
    )
    _add(p, "--out", default=air.DEFAULT_OUT, help="output folder")
    _flag(
        p,
        "--resume",
        help="continue the run whose checkpoint is in --out: options left out are that "
        "run's; options that change its meaning (estimator, objective, particles, sizes, "
        "prior, batch size, learning rate, seed, data) must not differ",
    )
    _flag(p, "--overwrite", help="replace the run (checkpoint and results) already in --out")
    _flag(p, "--no-progress", help="no progress bar (a line every tenth of the run instead)")
    return p


def _cone(sub) -> Parser:
    p = sub.add_parser(
        "cone",
        help="the cone example: ELBO, IWAE, HVI, IWHVI and DIWHVI, trained and compared",
        description=(
            "A point observed near the surface z = x^2 + y^2: five objectives trained with "
            "Adam and estimated with many samples, each a lower bound on log p(z = 5), "
            "computed here by numerical integration for reference."
        ),
        formatter_class=HelpFormatter,
    )
    _add(
        p,
        "--steps",
        type=positive_int,
        help="Adam steps per objective (default: 5000; 200 when GENVI_CI=1)",
    )
    _add(p, "--seed", type=seed, default=0, help="random seed")
    _add(p, "--samples", type=positive_int, default=10_000, help="samples of each final estimate")
    _add(p, "--lr", type=positive_float, default=0.02, help="Adam step size")
    _add(
        p,
        "--proposal",
        choices=("learned", "prior"),
        default="learned",
        help="proposal for the angle u in gv.marginal: a learned wrapped normal, or its prior",
    )
    _add(p, "--out", help="folder to write cone.json and cone.md to (default: none written)")
    return p


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("genvi")
    except metadata.PackageNotFoundError:
        return "unknown"


def build_parser() -> Parser:
    """The parser of the ``genvi`` command (its subcommands' parsers in ``.commands``)."""
    p = Parser(
        prog="genvi",
        description="genvi: programmable variational inference in JAX. Without a "
        f"subcommand, options go to `genvi {DEFAULT_SUBCOMMAND}`.",
    )
    p.add_argument("--version", action="version", version=f"genvi {_version()}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")
    p.commands = {
        "quickstart": _quickstart(sub),
        "vae": _vae(sub),
        "air": _air(sub),
        "cone": _cone(sub),
    }
    return p


def with_default_subcommand(argv: list[str]) -> list[str]:
    """``argv`` with the default subcommand put first when it starts with an option
    (``genvi --steps 500`` is ``genvi vae --steps 500``)."""
    if argv and argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version"):
        return [DEFAULT_SUBCOMMAND, *argv]
    return argv


def parse(argv: list[str]) -> argparse.Namespace:
    """The arguments of ``genvi <argv>``; exits with code 2 and one line
    ``genvi <subcommand>: error: ...`` on a bad one (0 after ``--help``)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(with_default_subcommand(argv))
    if extra:  # reported by the subcommand, in its own words
        parser.commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    if not hasattr(args, "given"):
        args.given = set()
    return args
