"""``genvi vae``: train a variational autoencoder on binarized digits (or MNIST) and
report its held-out bound.

The model and guide are :mod:`genvi.models.vae`; the objective is any lower bound of
:mod:`genvi.objectives` chosen by name, applied per image; training is :func:`genvi.fit`.
Written to ``--out``: ``loss.png``, ``reconstructions.png``, ``samples.png``,
``checkpoint.npz`` and ``metrics.json``.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import os
import sys
import time
import types
import warnings

from genvi.cli import _devices, _run_folder
from genvi.cli._parser import DEFAULT_ALPHA, DEFAULT_PARTICLES, DEFAULT_STEPS, FILES
from genvi.cli._run_folder import UsageError

# The settings that make a run what it is (a resume must not change them), and their options.
SETTINGS = {
    "objective": "--objective",
    "particles": "--particles",
    "alpha": "--alpha",
    "latent": "--latent",
    "hidden": "--hidden",
    "batch_size": "--batch-size",
    "lr": "--lr",
    "seed": "--seed",
    "mnist": "--mnist",
}


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


def _load_data(mnist: str | None):
    from genvi import data

    if mnist is None:
        return data.digits(seed=0)
    return data.mnist(mnist, seed=0)


def _effective(name: str, particles: int | None, alpha: float | None):
    """The particles and alpha the objective ``name`` uses (None where it takes none)."""
    options = _options(name)
    if "particles" in options:
        particles = particles or DEFAULT_PARTICLES
    elif particles in (None, 1):
        particles = None
    if "alpha" in options:
        alpha = DEFAULT_ALPHA if alpha is None else alpha
    return particles, alpha


def _settings(args, ckpt: str, out) -> tuple[dict, int, int | None]:
    """The run's settings, its target number of steps, and the step it resumes from."""
    current = {
        "objective": args.objective,
        "particles": args.particles,
        "alpha": args.alpha,
        "latent": args.latent,
        "hidden": args.hidden,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "mnist": None if args.mnist is None else os.path.abspath(args.mnist),
    }
    step, saved, metadata = (None, None, {})
    if args.resume:
        step, saved, metadata = _run_folder.read(ckpt)
    if saved is None:
        if args.resume:
            print(
                "  warning: the checkpoint holds no settings (written by an older genvi); the "
                "options given are taken to be those of its run",
                file=out,
            )
        name, particles, alpha = args.objective, args.particles, args.alpha
        _objective(name, particles, alpha)  # refuse bad combinations
        particles, alpha = _effective(name, particles, alpha)
        return dict(current, particles=particles, alpha=alpha), args.steps or DEFAULT_STEPS, step
    # compare what the objective makes of the options given, not the raw options
    name = args.objective if "objective" in args.given else saved.get("objective", args.objective)
    if "particles" in args.given or "alpha" in args.given:
        _objective(name, current["particles"], current["alpha"])
        current["particles"], current["alpha"] = _effective(
            name, current["particles"], current["alpha"]
        )
    settings = _run_folder.merge(args.out, current, args.given, saved, SETTINGS)
    _objective(settings["objective"], settings["particles"], settings["alpha"])
    target = args.steps or metadata.get("steps") or DEFAULT_STEPS
    return settings, int(target), step


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
    ckpt = _run_folder.prepare(args.out, args.resume, args.overwrite, "vae")
    import jax
    import jax.numpy as jnp
    import numpy as np

    import genvi as gv
    from genvi.data import DataError
    from genvi.models import vae
    from genvi.training import CheckpointError, NonFiniteWarning
    from genvi.training._progress import interactive

    settings, steps, start = _settings(args, ckpt, out)
    cfg = types.SimpleNamespace(**settings)
    objective = _training_objective(cfg.objective, cfg.particles, cfg.alpha)
    try:
        ds = _load_data(cfg.mnist)
    except DataError as e:
        raise UsageError(str(e)) from None
    n_train, pixels = ds.train.shape
    if cfg.batch_size > n_train:
        raise UsageError(f"--batch-size {cfg.batch_size} exceeds the {n_train} training images")
    mesh = _devices.mesh(args.devices, cfg.batch_size, "images")
    k_init, k_fit, k_eval, k_sample = jax.random.split(jax.random.key(cfg.seed), 4)
    params = vae.init_params(k_init, pixels=pixels, latent=cfg.latent, hidden=cfg.hidden)
    label = cfg.objective + (f" (K={cfg.particles})" if cfg.particles else "")
    if cfg.alpha is not None:
        label += f", alpha {cfg.alpha}"
    print(
        f"genvi vae: {ds.name}, {n_train} training / {ds.test.shape[0]} held-out images of "
        f"{ds.image_shape[0]}x{ds.image_shape[1]} pixels",
        file=out,
    )
    print(
        f"  objective {label}, latent {cfg.latent}, hidden {cfg.hidden}, "
        f"{steps} steps of {cfg.batch_size} images, Adam lr {cfg.lr}, seed {cfg.seed}"
        + (f", data-parallel over {mesh} devices" if mesh else ""),
        file=out,
        flush=True,
    )
    if start is not None and start >= steps:
        print(
            f"  the checkpoint in {args.out} is already at step {start}, and the run's target "
            f"is {steps} steps: nothing to train (pass --steps N with N > {start} to train "
            "further); evaluating its parameters",
            file=out,
            flush=True,
        )
    elif start is not None:
        print(f"  resuming from step {start} of {steps}", file=out, flush=True)
    if args.overwrite:
        _run_folder.remove_run(args.out, FILES)
    # a progress bar when someone watches a terminal, else a line per tenth of the run
    show_bar = not args.no_progress and interactive()
    if not show_bar and (start or 0) < steps:
        print("  compiling the training step...", file=out, flush=True)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = gv.fit(
                objective,
                params,
                key=k_fit,
                steps=steps,
                optimizer=_adam(cfg.lr),
                data=ds.train,
                batch_size=cfg.batch_size,
                progress=show_bar,
                callbacks=[] if show_bar else [_reporter(steps, out)],
                checkpoint=ckpt,
                checkpoint_every=args.checkpoint_every,
                resume=ckpt if args.resume else None,
                settings=settings,
                metadata={"steps": steps},
                mesh=mesh,
            )
        except CheckpointError as e:
            raise UsageError(
                f"{'--resume: ' if args.resume else ''}{e.problem}; "
                + (
                    "resume with the options of that run, or start afresh with --overwrite"
                    if args.resume
                    else "choose another --out"
                )
            ) from None
    train_time = time.perf_counter() - t0
    for w in caught:  # what fit warned about, except what the lines below report anyway
        text = str(w.message)
        if text == result.message:
            continue
        if issubclass(w.category, NonFiniteWarning) or text.startswith("fit: writing"):
            print(f"  warning: {text}", file=out)
    message = result.message
    if result.stopped_reason == "nonfinite":  # fit's advice names its own arguments
        message = message.split(" Lower the learning rate")[0] + " Try a lower --lr."
    taken = result.step - (start or 0)
    if taken > 0 or result.stopped_reason != "steps":
        print(
            f"  trained {taken} steps"
            + (f" (to step {result.step})" if start else "")
            + (f" on {_devices.used(result)} devices" if _devices.used(result) > 1 else "")
            + f" in {train_time:.1f} s (compilation {result.compile_time:.1f} s); "
            f"stopped: {message}",
            file=out,
            flush=True,
        )
    if result.stopped_reason in ("interrupted", "error"):
        return {"stopped_reason": result.stopped_reason}

    n_eval = min(args.eval_size, ds.test.shape[0], n_train)
    x_test, x_train = jnp.asarray(ds.test[:n_eval]), jnp.asarray(ds.train[:n_eval])
    t1 = time.perf_counter()
    metrics = _evaluate(k_eval, result.params, x_test, x_train, args.eval_particles)
    eval_time = time.perf_counter() - t1

    gv.plot.history(result, title=f"VAE, {label}", path=os.path.join(args.out, "loss.png"))
    n_show = min(10, ds.test.shape[0])
    shown = ds.test[gv.data.one_per_class(ds.test_labels, n_show)]  # one image per digit
    recon = np.asarray(vae.reconstruct(result.params, jnp.asarray(shown)))
    gv.plot.images(
        np.concatenate([shown, recon]),
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
            "objective": cfg.objective,
            "particles": cfg.particles or 1,
            "alpha": cfg.alpha,
            "latent": cfg.latent,
            "hidden": cfg.hidden,
            "steps": result.step,
            "target_steps": steps,
            "batch_size": cfg.batch_size,
            "devices": _devices.used(result),
            "lr": cfg.lr,
            "seed": cfg.seed,
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


def command(args) -> int:
    """Entry point of ``genvi vae``: exit code 0; 2 for bad input; 1 for a run stopped by
    a non-finite value or an error; 130 when interrupted (Ctrl-C)."""
    try:
        metrics = train(args)
    except UsageError as e:
        print(f"genvi vae: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # only without the command's Ctrl-C handler (genvi.cli.main)
        metrics = {"stopped_reason": "interrupted"}
    reason = metrics["stopped_reason"]
    if reason == "interrupted":
        print(interrupted_message(args), file=sys.stderr)
        return 130
    return 1 if reason in ("nonfinite", "error") else 0


def interrupted_message(args) -> str:
    """What a Ctrl-C kept, and how to continue (``--resume`` only if a checkpoint exists)."""
    return _run_folder.interrupted_message("vae", args.out)
