"""``genvi vae``: train a variational autoencoder on binarized digits (or MNIST) and
report its held-out bound.

The model and guide are :mod:`genvi.models.vae`; the objective is any lower bound of
:mod:`genvi.objectives` chosen by name, applied per image; training is :func:`genvi.fit`.
Written to ``--out``: ``loss.png``, ``reconstructions.png``, ``samples.png``,
``checkpoint.npz`` and ``metrics.json``.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import math
import os
import sys
import time
import warnings

# Lower bounds that take (model, guide, ...) and apply per image, in order of preference;
# the command offers those the installed genvi has.
BOUNDS = ("elbo", "iwae", "renyi", "vimco")
DEFAULT_PARTICLES = 5
DEFAULT_ALPHA = 0.5
FILES = ("loss.png", "reconstructions.png", "samples.png", "checkpoint.npz", "metrics.json")


class UsageError(Exception):
    """A bad argument or data file: reported as one line, exit code 2."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def available_objectives() -> list[str]:
    import genvi as gv

    return [name for name in BOUNDS if callable(getattr(gv.objectives, name, None))]


def register(subparsers) -> None:
    """Add the ``vae`` subcommand to the ``genvi`` command's subparsers."""
    p = subparsers.add_parser(
        "vae",
        help="train a VAE on the scikit-learn digits (or MNIST) and report its held-out bound",
        description=(
            "Train a variational autoencoder on the binarized 8x8 digits that ship with "
            "scikit-learn (no download), or on MNIST from local files, then estimate "
            "log p(x) on held-out images. Writes loss.png, reconstructions.png, samples.png, "
            "checkpoint.npz and metrics.json to --out."
        ),
    )
    p.add_argument(
        "--mnist",
        metavar="PATH",
        help="MNIST instead of the digits: a folder of IDX "
        "files (train-images-idx3-ubyte[.gz], t10k-images-idx3-ubyte[.gz]), one IDX "
        "file, or an .npz file",
    )
    p.add_argument(
        "--objective",
        choices=available_objectives(),
        default="iwae",
        help="the bound to maximize, from genvi.objectives (default: iwae)",
    )
    p.add_argument(
        "--particles",
        type=_positive_int,
        default=None,
        help=f"particles per image for multi-particle bounds (default {DEFAULT_PARTICLES})",
    )
    p.add_argument(
        "--alpha",
        type=float,
        default=None,
        help=f"the alpha of --objective renyi (default {DEFAULT_ALPHA})",
    )
    p.add_argument("--latent", type=_positive_int, default=8, help="latent size (default 8)")
    p.add_argument(
        "--hidden",
        type=_positive_int,
        default=128,
        help="hidden units of encoder and decoder (default 128)",
    )
    p.add_argument(
        "--steps", type=_positive_int, default=10_000, help="training steps (default 10000)"
    )
    p.add_argument(
        "--batch-size", type=_positive_int, default=100, help="images per step (default 100)"
    )
    p.add_argument(
        "--lr", type=_positive_float, default=1e-3, help="Adam learning rate (default 1e-3)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--out", default=os.path.join("runs", "vae"), help="output folder (default runs/vae)"
    )
    p.add_argument(
        "--eval-particles",
        type=_positive_int,
        default=1000,
        help="particles of the held-out IWAE estimate of log p(x) (default 1000)",
    )
    p.add_argument(
        "--eval-size",
        type=_positive_int,
        default=1000,
        help="held-out images to evaluate, at most (default 1000)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=_positive_int,
        default=1000,
        help="steps between checkpoints (default 1000)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from the checkpoint in --out (same options as the first run)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


@functools.lru_cache(maxsize=8)
def _adam(lr: float):
    import optax

    return optax.adam(lr)


@functools.lru_cache(maxsize=8)
def _training_objective(name: str, particles: int | None, alpha: float | None):
    """The per-image bound averaged over a minibatch (cached: a second run in the same
    process, e.g. a resume, reuses the compiled program)."""
    from genvi.models import vae

    return vae.batch_objective(_objective(name, particles, alpha))


def _options(name: str) -> set[str]:
    """The options (besides model and guide) that the objective ``name`` takes."""
    import genvi as gv

    params = inspect.signature(getattr(gv.objectives, name)).parameters
    return set(params) - {"model", "guide"}


def _objective(name: str, particles: int | None, alpha: float | None):
    import genvi as gv
    from genvi.models import vae

    options = _options(name)
    kwargs = {}
    if "particles" in options:
        kwargs["particles"] = particles or DEFAULT_PARTICLES
    elif particles not in (None, 1):
        raise UsageError(
            f"--particles does not apply to --objective {name} (a one-particle bound); "
            "use --objective iwae for a multi-particle bound"
        )
    if "alpha" in options:
        kwargs["alpha"] = DEFAULT_ALPHA if alpha is None else alpha
    elif alpha is not None:
        raise UsageError(f"--alpha applies to --objective renyi only, not {name}")
    try:
        return getattr(gv.objectives, name)(vae.model, vae.guide, **kwargs)
    except ValueError as e:  # e.g. too few particles for this objective
        raise UsageError(f"--objective {name}: {e}") from None


def _load_data(args):
    from genvi import data

    if args.mnist is None:
        return data.digits(seed=0)
    return data.mnist(args.mnist, seed=0)


def _prepare_out(out: str, resume: bool) -> str:
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out!r} is a file, not a folder")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create the output folder {out!r}: {e}") from None
    ckpt = os.path.join(out, "checkpoint.npz")
    if resume and not os.path.exists(ckpt):
        raise UsageError(f"--resume: there is no checkpoint to resume from at {ckpt!r}")
    return ckpt


def _reporter(steps: int, out):
    """A callback printing a progress line about every tenth of the run."""
    every = max(1, steps // 10)
    state = {"next": every, "t0": time.perf_counter()}

    def report(step, params, history):
        if step >= state["next"] or step == steps:
            import numpy as np

            recent = history.objective[-every:]
            recent = recent[np.isfinite(recent)]
            mean = float(recent.mean()) if recent.size else float("nan")
            print(
                f"  step {step:>7d}/{steps}   objective {mean:9.3f}   "
                f"{time.perf_counter() - state['t0']:6.1f} s",
                file=out,
                flush=True,
            )
            state["next"] = (step // every + 1) * every

    return report


def _evaluate(key, params, x_test, x_train, particles: int) -> dict:
    """Per-image ELBO and IWAE(particles) estimates of log p(x), held-out and training
    images, as means and standard errors."""
    import jax.numpy as jnp
    import numpy as np

    import genvi as gv
    from genvi.models import vae

    bounds = {
        "elbo": gv.objectives.elbo(vae.model, vae.guide),
        f"iwae_{particles}": gv.objectives.iwae(vae.model, vae.guide, particles),
    }
    est = vae.per_image_estimates(bounds, key, params, jnp.concatenate([x_test, x_train]))
    out = {}
    n = x_test.shape[0]
    for name in bounds:
        v = np.asarray(est[name], np.float64)
        for split, part in (("test", v[:n]), ("train", v[n:])):
            out[f"{split}_{name}"] = float(part.mean())
            out[f"{split}_{name}_stderr"] = float(part.std(ddof=1) / math.sqrt(part.size))
    return out


def train(args, out=None) -> dict:
    """The whole job; returns the metrics. Raises UsageError for bad input."""
    out = sys.stdout if out is None else out
    import jax
    import jax.numpy as jnp
    import numpy as np

    import genvi as gv
    from genvi.data import DataError
    from genvi.models import vae
    from genvi.training import CheckpointError, NonFiniteWarning
    from genvi.training._progress import interactive

    objective = _training_objective(args.objective, args.particles, args.alpha)
    try:
        ds = _load_data(args)
    except DataError as e:
        raise UsageError(str(e)) from None
    n_train, pixels = ds.train.shape
    if args.batch_size > n_train:
        raise UsageError(f"--batch-size {args.batch_size} exceeds the {n_train} training images")
    ckpt = _prepare_out(args.out, args.resume)
    particles = args.particles or DEFAULT_PARTICLES
    k_init, k_fit, k_eval, k_sample = jax.random.split(jax.random.key(args.seed), 4)
    params = vae.init_params(k_init, pixels=pixels, latent=args.latent, hidden=args.hidden)
    multi = "particles" in _options(args.objective)
    label = args.objective + (f" (K={particles})" if multi else "")
    if "alpha" in _options(args.objective):
        label += f", alpha {DEFAULT_ALPHA if args.alpha is None else args.alpha}"
    print(
        f"genvi vae: {ds.name}, {n_train} training / {ds.test.shape[0]} held-out images of "
        f"{ds.image_shape[0]}x{ds.image_shape[1]} pixels",
        file=out,
    )
    print(
        f"  objective {label}, latent {args.latent}, hidden {args.hidden}, "
        f"{args.steps} steps of {args.batch_size} images, Adam lr {args.lr}",
        file=out,
        flush=True,
    )
    # a progress bar when someone watches a terminal, else a line per tenth of the run
    show_bar = not args.no_progress and interactive()
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NonFiniteWarning)
        try:
            result = gv.fit(
                objective,
                params,
                key=k_fit,
                steps=args.steps,
                optimizer=_adam(args.lr),
                data=ds.train,
                batch_size=args.batch_size,
                progress=show_bar,
                callbacks=[] if show_bar else [_reporter(args.steps, out)],
                checkpoint=ckpt,
                checkpoint_every=args.checkpoint_every,
                resume=ckpt if args.resume else None,
            )
        except CheckpointError as e:
            raise UsageError(str(e)) from None
    train_time = time.perf_counter() - t0
    for w in caught:
        if issubclass(w.category, NonFiniteWarning):
            print(f"  warning: {w.message}", file=out)
    print(
        f"  trained {result.step} steps in {train_time:.1f} s "
        f"(compilation {result.compile_time:.1f} s); stopped: {result.message}",
        file=out,
        flush=True,
    )
    if result.stopped_reason == "interrupted":
        return {"stopped_reason": "interrupted"}

    n_eval = min(args.eval_size, ds.test.shape[0], n_train)
    x_test, x_train = jnp.asarray(ds.test[:n_eval]), jnp.asarray(ds.train[:n_eval])
    t1 = time.perf_counter()
    metrics = _evaluate(k_eval, result.params, x_test, x_train, args.eval_particles)
    eval_time = time.perf_counter() - t1

    gv.plot.history(result, title=f"VAE, {label}", path=os.path.join(args.out, "loss.png"))
    n_show = min(10, ds.test.shape[0])
    recon = np.asarray(vae.reconstruct(result.params, jnp.asarray(ds.test[:n_show])))
    gv.plot.images(
        np.concatenate([ds.test[:n_show], recon]),
        image_shape=ds.image_shape,
        ncols=n_show,
        title="held-out images (top) and reconstructions (bottom)",
        path=os.path.join(args.out, "reconstructions.png"),
    )
    samples = np.asarray(vae.sample(k_sample, result.params, 50))
    gv.plot.images(
        samples,
        image_shape=ds.image_shape,
        ncols=10,
        title="samples: pixel probabilities decoded from z ~ N(0, I)",
        path=os.path.join(args.out, "samples.png"),
    )

    tail = result.history.objective[-max(1, result.step // 10) :]
    metrics.update(
        {
            "dataset": ds.name,
            "n_train": n_train,
            "n_test": int(ds.test.shape[0]),
            "n_eval": n_eval,
            "eval_particles": args.eval_particles,
            "objective": args.objective,
            "particles": particles if multi else 1,
            "alpha": args.alpha,
            "latent": args.latent,
            "hidden": args.hidden,
            "steps": result.step,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "seed": args.seed,
            "final_train_objective": float(np.nanmean(tail)) if tail.size else None,
            "stopped_reason": result.stopped_reason,
            "train_seconds": train_time,
            "compile_seconds": result.compile_time,
            "eval_seconds": eval_time,
        }
    )
    with open(os.path.join(args.out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    K = args.eval_particles
    print(
        f"held-out bound on log p(x), nats per image, {n_eval} images (+- standard error):",
        file=out,
    )
    print(
        f"  IWAE, K={K:<6d} {metrics[f'test_iwae_{K}']:9.3f} +- "
        f"{metrics[f'test_iwae_{K}_stderr']:.3f}   (training images: "
        f"{metrics[f'train_iwae_{K}']:.3f})",
        file=out,
    )
    print(
        f"  ELBO          {metrics['test_elbo']:9.3f} +- {metrics['test_elbo_stderr']:.3f}   "
        f"(training images: {metrics['train_elbo']:.3f})",
        file=out,
    )
    print(f"wrote {', '.join(FILES)} to {args.out}", file=out, flush=True)
    return metrics


def run(args) -> int:
    """Entry point of ``genvi vae`` (exit code 0; 2 for bad input; 1 for a run stopped by
    a non-finite value; 130 when interrupted)."""
    try:
        metrics = train(args)
    except UsageError as e:
        print(f"genvi vae: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        metrics = {"stopped_reason": "interrupted"}
    reason = metrics["stopped_reason"]
    if reason == "interrupted":
        print(
            f"interrupted; continue with: genvi vae --resume --out {args.out} (same options)",
            file=sys.stderr,
        )
        return 130
    return 1 if reason == "nonfinite" else 0
