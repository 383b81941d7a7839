"""``genvi air``: train Attend-Infer-Repeat on multi-digit canvases and report how well its
guide counts the digits.

The model and guide are :class:`genvi.models.air.AIR`; the presence estimator and the
objective are chosen by name; the data is :func:`genvi.data.multi_digits` (scikit-learn
digits, or local MNIST with ``--mnist``); training is :func:`genvi.fit`, with a held-out
count accuracy measured every ``--eval-every`` steps. Written to ``--out``:
``reconstructions.png``, ``accuracy.png``, ``objective.png``, ``checkpoint.npz`` and
``metrics.json``.

The count accuracy is that of the guide's inference as :meth:`AIR.infer
<genvi.models.air.AIR.infer>` does it: the presence choices drawn at random. The curve
uses one draw per held-out canvas; the final report averages ``--eval-draws`` draws per
canvas (the same expected accuracy, with less noise) and also gives the accuracy of the
most frequent count among those draws (ties go to the smaller count).

Nothing here imports JAX at module level: the parser reads the defaults below.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
import time
import types
import warnings

from genvi.cli import _devices, _run_folder
from genvi.cli._run_folder import UsageError

# Defaults of `genvi air` (the parser and the help text read them from here).
DEFAULT_STEPS = 1500
DEFAULT_LR = 1e-3
DEFAULT_PRES_PRIOR = 1e-13  # genvi.models.air.AIR's default (see its docstring); tested equal
#: the standard deviation of the prior of a window's scale: AIR's default; tested equal
DEFAULT_SCALE_SD = 0.2
DEFAULT_BATCH_SIZE = 64
DEFAULT_ESTIMATOR = "enum"
DEFAULT_OBJECTIVE = "elbo"
DEFAULT_PARTICLES = {"iwae": 2, "rws": 10}  # none for the ELBO
DEFAULT_HIDDEN = 256  # the LSTM's state
DEFAULT_Z_WHAT = 50
DEFAULT_MLP_HIDDEN = 200
DEFAULT_N_TRAIN = 6000
DEFAULT_N_TEST = 1000
DEFAULT_EVAL_DRAWS = 5
DEFAULT_EVAL_FRACTION = 10  # --eval-every defaults to a tenth of the run
DEFAULT_OUT = os.path.join("runs", "air")

# The names of genvi.models.air.ESTIMATORS (a test checks they agree), here so that the
# parser can offer them without importing JAX.
ESTIMATORS = ("reinforce", "baseline", "enum", "mvd", "hybrid")
OBJECTIVES = ("elbo", "iwae", "rws")
FILES = ("reconstructions.png", "accuracy.png", "objective.png", "checkpoint.npz", "metrics.json")

# The settings that make a run what it is (a resume must not change them), and their options.
SETTINGS = {
    "estimator": "--estimator",
    "objective": "--objective",
    "particles": "--particles",
    "hidden": "--hidden",
    "z_what": "--z-what",
    "mlp_hidden": "--mlp-hidden",
    "pres_prior": "--pres-prior",
    "scale_sd": "--scale-sd",
    "batch_size": "--batch-size",
    "lr": "--lr",
    "seed": "--seed",
    "mnist": "--mnist",
    "n_train": "--n-train",
    "n_test": "--n-test",
}

_EVAL_BLOCK = 100  # held-out canvases per compiled evaluation call


# ---------------------------------------------------------------------------------------
# Settings.


def _check_options(objective: str, particles: int | None, estimator_given: bool) -> None:
    """Refuse the options that do not apply to ``objective``."""
    if objective == "elbo" and particles is not None:
        raise UsageError(
            "--particles does not apply to --objective elbo (a one-particle bound); leave "
            "it out, or use --objective iwae or rws for a multi-particle objective"
        )
    if objective == "rws" and estimator_given:
        raise UsageError(
            "--estimator does not apply to --objective rws (reweighted wake-sleep does not "
            "differentiate through the guide's presence choices); leave it out, or use "
            "--objective elbo or iwae to compare estimators"
        )


def _effective(objective: str, particles: int | None, estimator: str | None):
    """The particles (None for the ELBO) and the presence estimator (None for RWS) that
    ``objective`` uses."""
    particles = None if objective == "elbo" else particles or DEFAULT_PARTICLES[objective]
    return particles, None if objective == "rws" else estimator


def _settings(args, ckpt: str, out) -> tuple[dict, int, int, int | None]:
    """The run's settings, its target number of steps, the steps between evaluations, and
    the step it resumes from."""
    current = {
        "estimator": args.estimator,
        "objective": args.objective,
        "particles": args.particles,
        "hidden": args.hidden,
        "z_what": args.z_what,
        "mlp_hidden": args.mlp_hidden,
        "pres_prior": args.pres_prior,
        "scale_sd": args.scale_sd,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "mnist": None if args.mnist is None else os.path.abspath(os.path.expanduser(args.mnist)),
        "n_train": args.n_train,
        "n_test": args.n_test,
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
        _check_options(args.objective, args.particles, "estimator" in args.given)
        current["particles"], current["estimator"] = _effective(
            args.objective, args.particles, args.estimator
        )
        target = args.steps or DEFAULT_STEPS
    else:
        # compare what the objective makes of --particles and --estimator, not the options
        name = args.objective if "objective" in args.given else saved.get("objective")
        name = name if name in OBJECTIVES else args.objective
        _check_options(name, args.particles, "estimator" in args.given)
        particles, estimator = _effective(name, args.particles, args.estimator)
        if "particles" in args.given:
            current["particles"] = particles
        if "estimator" in args.given:
            current["estimator"] = estimator
        current = _run_folder.merge(args.out, current, args.given, saved, SETTINGS)
        target = int(args.steps or metadata.get("steps") or DEFAULT_STEPS)
    every = args.eval_every or metadata.get("eval_every")
    every = int(every or max(1, target // DEFAULT_EVAL_FRACTION))
    return current, int(target), every, step


# ---------------------------------------------------------------------------------------
# Compiled pieces, cached per configuration (a resume in the same process compiles nothing
# again).


@functools.lru_cache(maxsize=8)
def _adam(lr: float):
    import optax

    return optax.adam(lr)


@functools.lru_cache(maxsize=8)
def _training_objective(model, estimator: str, objective: str, particles: int | None):
    try:
        return model.batch_objective(estimator, objective, particles)
    except ValueError as e:
        raise UsageError(f"--objective {objective}: {e}") from None


@functools.lru_cache(maxsize=8)
def _inference(model):
    """``(key, params, images [n, C*C]) -> (counts [n], where [n, T, 3], what [n, T, Z],
    pres [n, T])``: one draw of the guide per image, presence drawn at random (the
    inference of :meth:`AIR.infer`, compiled once)."""
    import jax
    import jax.numpy as jnp

    from genvi.models import air

    guide = model.guide("reinforce")

    def one(key, gp, x):
        tr = guide.simulate(key, gp, x)
        where, pres = air.steps_of(tr.choices, model.steps)
        what = []
        for t in range(model.steps):
            a = (f"object{t}", "what")
            w = tr.choices[a] if tr.choices.has(a) else jnp.zeros(model.z_what)
            what.append(jnp.where(pres[t] > 0, w, 0.0))
        return air.count(tr.choices), where, jnp.stack(what), pres

    @jax.jit
    def run(key, params, images):
        keys = jax.random.split(key, images.shape[0])
        gp = model.guide_params(params)
        return jax.vmap(one, in_axes=(0, None, 0))(keys, gp, images)

    return run


@functools.lru_cache(maxsize=8)
def _renderer(model):
    """``(params, what [n, T, Z], where [n, T, 3], pres [n, T]) -> canvases [n, C*C]``: the
    model's mean canvas, the sum of the present objects."""
    import jax
    import jax.numpy as jnp

    def one(decoder, what, where, pres):
        parts = jax.vmap(lambda a, b: model.render(decoder, a, b))(what, where)
        return jnp.sum(pres[:, None].astype(parts.dtype) * parts, axis=0)

    @jax.jit
    def run(params, what, where, pres):
        return jax.vmap(one, in_axes=(None, 0, 0, 0))(params["decoder"], what, where, pres)

    return run


@functools.lru_cache(maxsize=8)
def _per_image_bound(model, name: str, particles: int | None):
    """``(key, params, images [n, C*C]) -> [n]``: a one-sample estimate per image of the
    ELBO (``name="elbo"``) or of the IWAE bound with ``particles``."""
    import jax

    bound = model.objective("reinforce", name, particles)

    @jax.jit
    def run(key, params, images):
        keys = jax.random.split(key, images.shape[0])
        return jax.vmap(bound, in_axes=(0, None, 0))(keys, params, images)

    return run


def block_size(n: int) -> int:
    """The images per compiled evaluation call, for ``n`` held-out images."""
    return min(n, _EVAL_BLOCK)


def _blocks(fn, key, images, *args, size: int | None = None):
    """``fn(key, *args, block)`` over blocks of ``size`` images (default
    :func:`block_size`; the last one padded so that every call has one shape and one
    compiled program), concatenated."""
    import jax
    import numpy as np

    n = images.shape[0]
    size = size or block_size(n)
    outs = []
    for i, lo in enumerate(range(0, n, size)):
        block = np.asarray(images[lo : lo + size])
        pad = size - block.shape[0]
        if pad:
            block = np.concatenate([block, np.repeat(block[-1:], pad, axis=0)])
        outs.append(jax.tree.map(np.asarray, fn(jax.random.fold_in(key, i), *args, block)))
    return jax.tree.map(lambda *xs: np.concatenate(xs)[:n], *outs)


# ---------------------------------------------------------------------------------------
# Evaluation.


def counts_drawn(model, key, params, images, draws: int):
    """``int[draws, n]``: the guide's count for each image, ``draws`` independent draws."""
    import jax
    import numpy as np

    run = _inference(model)
    return np.stack(
        [_blocks(run, jax.random.fold_in(key, d), images, params)[0] for d in range(draws)]
    ).astype(np.int64)


def majority(drawn):
    """The most frequent count of each column of ``drawn [draws, n]`` (ties: the smaller)."""
    import numpy as np

    top = int(drawn.max()) + 1 if drawn.size else 1
    tally = np.stack([(drawn == c).sum(0) for c in range(top)])
    return tally.argmax(0)


def confusion(true, inferred, n_true: int, n_inferred: int) -> list[list[int]]:
    """``[n_true][n_inferred]`` counts of (true count, inferred count) pairs."""
    import numpy as np

    m = np.zeros((n_true, n_inferred), np.int64)
    np.add.at(m, (np.asarray(true).ravel(), np.asarray(inferred).ravel()), 1)
    return m.tolist()


def held_out_objective(model, key, params, images, particles: int | None) -> dict:
    """The ELBO per image (and the IWAE bound with ``particles``, when given) on
    ``images``: means and standard errors over the images."""
    import jax
    import numpy as np

    out = {}
    for i, name in enumerate(("elbo",) if particles is None else ("elbo", "iwae")):
        run = _per_image_bound(model, name, None if name == "elbo" else particles)
        v = np.asarray(_blocks(run, jax.random.fold_in(key, i), images, params), np.float64)
        label = "test_elbo" if name == "elbo" else f"test_iwae_{particles}"
        out[label] = float(v.mean())
        out[label + "_stderr"] = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else 0.0
    return out


def box_of(where, canvas: int):
    """``(row0, col0, side)`` in pixel coordinates (pixel ``i`` covers ``[i, i + 1]``) of
    the square a window at ``where = (s, x, y)`` covers on a ``canvas``-pixel canvas
    (:func:`genvi.models.air.window_to_image`): centred at column ``(-x/s + 1) C/2`` and
    row ``(-y/s + 1) C/2``, side ``C/s``. None for a scale that is not positive."""
    s, x, y = (float(v) for v in where)
    if not (s > 0 and math.isfinite(s) and math.isfinite(x) and math.isfinite(y)):
        return None
    side = canvas / s
    col = (-x / s + 1.0) * canvas / 2.0
    row = (-y / s + 1.0) * canvas / 2.0
    return row - side / 2.0, col - side / 2.0, side


# ---------------------------------------------------------------------------------------
# Plots.


def _plot_reconstructions(model, ds, shown, canvases, recon, counts, where, pres, path):
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    from genvi import plot

    c = model.canvas
    n = len(shown)
    fig = plot._figure(1.5 * n, 3.6)
    axes = fig.subplots(2, n, squeeze=False)
    colors = ["tab:red", "tab:blue", "tab:green", "tab:orange", "tab:purple", "tab:brown"]
    for j, i in enumerate(shown):
        for row, image in ((0, canvases[j]), (1, recon[j])):
            ax = axes[row, j]
            ax.imshow(
                image.reshape(c, c), cmap="gray_r", vmin=0.0, vmax=1.0, interpolation="nearest"
            )
            ax.set_xlim(-0.5, c - 0.5)
            ax.set_ylim(c - 0.5, -0.5)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                for r0, c0, size, present in ds.test_boxes[i]:
                    if present:
                        ax.add_patch(
                            Rectangle(
                                (c0 - 0.5, r0 - 0.5),
                                size,
                                size,
                                fill=False,
                                edgecolor="0.55",
                                linewidth=0.6,
                            )
                        )
            for t in range(model.steps):
                box = box_of(where[j, t], c) if pres[j, t] else None
                if box is not None:
                    r0, c0, side = box
                    ax.add_patch(
                        Rectangle(
                            (c0 - 0.5, r0 - 0.5),
                            side,
                            side,
                            fill=False,
                            edgecolor=colors[t % len(colors)],
                            linewidth=1.2,
                        )
                    )
        axes[0, j].set_title(f"true {ds.test_counts[i]}, inferred {counts[j]}", fontsize=8)
    handles = [
        Line2D([], [], color=colors[t % len(colors)], label=f"step {t + 1}")
        for t in range(model.steps)
    ]
    handles.append(Line2D([], [], color="0.55", linewidth=0.6, label="true box"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8)
    fig.suptitle(
        "held-out canvases with the guide's boxes (top) and the model's canvas from the "
        "guide's latents (bottom)",
        fontsize=9,
    )
    return plot._save(fig, path)


def _plot_accuracy(curve: dict, chance: float, label: str, path):
    from genvi import plot

    fig = plot._figure(10, 3.6)
    axes = fig.subplots(1, 2)
    for ax, xs, xlabel in (
        (axes[0], curve["step"], "step"),
        (axes[1], curve["seconds"], "training seconds (no compilation or evaluation)"),
    ):
        ax.plot(xs, curve["accuracy"], "o-", color="C0", markersize=3, label="count accuracy")
        ax.axhline(chance, color="0.5", linestyle="--", linewidth=0.8, label="most common count")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("held-out count accuracy")
        ax.set_ylim(-0.02, 1.02)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"AIR, {label}: held-out count accuracy (one guide draw per canvas)")
    return plot._save(fig, path)


def _show_order(counts, n: int) -> list[int]:
    """``n`` canvas indices cycling through the counts (0, 1, 2, 0, 1, 2, ...)."""
    seen: dict[int, int] = {}
    rank = []
    for c in counts.tolist():
        rank.append(seen.get(c, 0))
        seen[c] = rank[-1] + 1
    order = sorted(range(len(rank)), key=lambda i: (rank[i], int(counts[i])))
    return order[:n]


# ---------------------------------------------------------------------------------------
# Output.


def _write_json(path: str, value: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=2)
    os.replace(tmp, path)


def _saved_curve(out_dir: str, settings: dict, start: int, out) -> dict:
    """The accuracy curve of the run being resumed, up to its checkpoint's step (kept in
    its metrics.json)."""
    empty = {"step": [], "seconds": [], "accuracy": []}
    path = os.path.join(out_dir, "metrics.json")
    try:
        with open(path) as f:
            saved = json.load(f)
        curve = saved["accuracy_curve"]
        if saved.get("settings") != settings:
            raise ValueError("another run's")
        points = [
            (int(s), float(t), float(a))
            for s, t, a in zip(curve["step"], curve["seconds"], curve["accuracy"], strict=True)
            if int(s) <= start
        ]
    except (OSError, ValueError, KeyError, TypeError):
        print(
            f"  warning: {path} holds no accuracy curve of this run; the curve starts at "
            f"step {start}",
            file=out,
        )
        return empty
    return {
        "step": [p[0] for p in points],
        "seconds": [p[1] for p in points],
        "accuracy": [p[2] for p in points],
    }


def _print_confusion(matrix, draws: int, out) -> None:
    n_inferred = len(matrix[0])
    width = max(6, max(len(str(v)) for r in matrix for v in r) + 2)
    print(
        f"count confusion (rows: true count; columns: inferred count, the most frequent of "
        f"{draws} draws):",
        file=out,
    )
    print("  true \\ inferred" + "".join(f"{c:>{width}d}" for c in range(n_inferred)), file=out)
    for t, row in enumerate(matrix):
        print(f"  {t:<15d}" + "".join(f"{v:>{width}d}" for v in row), file=out)


# ---------------------------------------------------------------------------------------
# The job.


def _load_data(cfg):
    from genvi import data
    from genvi.data import DataError

    try:
        return data.multi_digits(n_train=cfg.n_train, n_test=cfg.n_test, seed=0, source=cfg.mnist)
    except (DataError, ValueError) as e:
        raise UsageError(str(e)) from None


def train(args, out=None) -> dict:
    """The whole job; returns the metrics. Raises UsageError for bad input."""
    out = sys.stdout if out is None else out
    if args.mnist is not None and not os.path.exists(os.path.expanduser(args.mnist)):
        raise UsageError(
            f"--mnist {args.mnist}: no such file or folder; give a folder holding the MNIST "
            "IDX files, one IDX file or an .npz file (or leave --mnist out for the "
            "scikit-learn digits)"
        )
    ckpt = _run_folder.prepare(args.out, args.resume, args.overwrite, "air")
    settings, steps, eval_every, start = _settings(args, ckpt, out)
    cfg = types.SimpleNamespace(**settings)

    import jax
    import numpy as np

    import genvi as gv
    from genvi.models import air
    from genvi.training import CheckpointError, NonFiniteWarning
    from genvi.training._progress import interactive

    ds = _load_data(cfg)
    n_train, n_test = ds.train.shape[0], ds.test.shape[0]
    if cfg.batch_size > n_train:
        raise UsageError(
            f"--batch-size {cfg.batch_size} exceeds the {n_train} training canvases; lower "
            "it or raise --n-train"
        )
    mesh = _devices.mesh(args.devices, cfg.batch_size, "canvases")
    try:
        model = air.AIR(
            canvas=ds.canvas,
            z_what=cfg.z_what,
            hidden=cfg.hidden,
            mlp_hidden=cfg.mlp_hidden,
            pres_prior=cfg.pres_prior,
            where_scale=(cfg.scale_sd, 1.0, 1.0),
        )
    except ValueError as e:
        raise UsageError(str(e)) from None
    # (RWS simulates the guide without differentiating through it: plain sampling)
    estimator = cfg.estimator or "reinforce"
    objective = _training_objective(model, estimator, cfg.objective, cfg.particles)
    k_init, k_fit, k_eval, k_curve, k_show = jax.random.split(jax.random.key(cfg.seed), 5)
    params = model.init_params(k_init)
    label = f"{cfg.objective}" + (f" (K={cfg.particles})" if cfg.particles else "")
    if cfg.estimator is not None:
        label += f", {cfg.estimator}"
    print(
        f"genvi air: {ds.name}; {n_train} training / {n_test} held-out canvases",
        file=out,
    )
    print(
        f"  objective {label}{' presence estimator' if cfg.estimator else ''}; LSTM {cfg.hidden}, z_what {cfg.z_what}, "
        f"MLPs {cfg.mlp_hidden}, presence prior {cfg.pres_prior}, window scale prior sd "
        f"{cfg.scale_sd}; {steps} steps of "
        f"{cfg.batch_size} canvases, Adam lr {cfg.lr}, seed {cfg.seed}; held-out count "
        f"accuracy every {eval_every} steps"
        + (f"; data-parallel over {mesh} devices" if mesh else ""),
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

    metrics_path = os.path.join(args.out, "metrics.json")
    true_test = np.asarray(ds.test_counts)
    show_bar = not args.no_progress and interactive()

    def say(line: str) -> None:
        if show_bar:  # between the bar's updates, without breaking it
            from tqdm.auto import tqdm

            tqdm.write(line, file=out)
            out.flush()
        else:
            print(line, file=out, flush=True)

    def curve_accuracy(p, step: int) -> float:
        drawn = counts_drawn(model, jax.random.fold_in(k_curve, step), p, ds.test, 1)
        return float(np.mean(drawn[0] == true_test))

    if start is None:
        if not show_bar:
            print("  compiling the guide's inference...", file=out, flush=True)
        curve = {"step": [0], "seconds": [0.0], "accuracy": [curve_accuracy(params, 0)]}
        say(f"  step {0:>7d}/{steps}   held-out count accuracy {curve['accuracy'][0]:.3f}")
    else:
        curve = _saved_curve(args.out, settings, start, out)

    report_every = max(1, steps // 10)
    state = {"next": report_every}

    def on_chunk(step, p, history) -> None:
        evaluated = step % eval_every == 0 or step >= steps
        if evaluated and (not curve["step"] or curve["step"][-1] < step):
            curve["step"].append(int(step))
            curve["seconds"].append(float(np.sum(history.time)))
            curve["accuracy"].append(curve_accuracy(p, step))
            _write_json(  # the curve so far, for a resume
                metrics_path,
                {"complete": False, "settings": settings, "accuracy_curve": curve},
            )
        report = step >= state["next"] or step >= steps
        if report:
            state["next"] = (step // report_every + 1) * report_every
        if not (report or evaluated) or (show_bar and not evaluated):
            return  # (the bar shows the objective)
        line = f"  step {step:>7d}/{steps}"
        if not show_bar:
            recent = history.objective[-report_every:]
            recent = recent[np.isfinite(recent)]
            line += f"   objective {float(recent.mean()) if recent.size else float('nan'):11.3f}"
        if evaluated:
            line += f"   held-out count accuracy {curve['accuracy'][-1]:.3f}"
        say(line + f"   {float(np.sum(history.time)):7.1f} s")

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
                callbacks=[on_chunk],
                checkpoint=ckpt,
                checkpoint_every=eval_every,
                resume=ckpt if args.resume else None,
                settings=settings,
                metadata={"steps": steps, "eval_every": eval_every},
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

    # -- the held-out evaluation ----------------------------------------------------------
    t1 = time.perf_counter()
    p = result.params
    bounds = held_out_objective(model, k_eval, p, ds.test, cfg.particles)
    draws = args.eval_draws
    drawn = counts_drawn(model, jax.random.fold_in(k_eval, 1), p, ds.test, draws)
    top = majority(drawn)
    n_true, n_inferred = ds.test_boxes.shape[1] + 1, model.steps + 1
    accuracy = float(np.mean(drawn == true_test[None, :]))
    accuracy_majority = float(np.mean(top == true_test))
    if not curve["step"] or curve["step"][-1] < result.step:
        curve["step"].append(int(result.step))
        curve["seconds"].append(float(np.sum(result.history.time)))
        curve["accuracy"].append(float(np.mean(drawn[0] == true_test)))
    eval_time = time.perf_counter() - t1

    # -- plots ---------------------------------------------------------------------------
    shown = _show_order(true_test, min(8, n_test))
    images = ds.test[shown]
    # (in a block of the evaluation's size: its compiled program serves)
    n_show, where_s, what_s, pres_s = _blocks(
        _inference(model), k_show, images, p, size=block_size(n_test)
    )
    recon = np.asarray(_renderer(model)(p, what_s, where_s, pres_s))
    _plot_reconstructions(
        model,
        ds,
        shown,
        images,
        recon,
        n_show,
        where_s,
        pres_s,
        os.path.join(args.out, "reconstructions.png"),
    )
    chance = float(np.bincount(true_test).max() / n_test)
    _plot_accuracy(curve, chance, label, os.path.join(args.out, "accuracy.png"))
    gv.plot.history(result, title=f"AIR, {label}", path=os.path.join(args.out, "objective.png"))

    tail = result.history.objective[-max(1, result.step // 10) :]
    times = np.asarray(result.history.time)
    metrics = {
        "complete": True,
        "settings": settings,
        "dataset": ds.name,
        "n_train": n_train,
        "n_test": n_test,
        "canvas": ds.canvas,
        "max_objects": model.steps,
        "estimator": cfg.estimator,
        "objective": cfg.objective,
        "particles": cfg.particles or 1,
        "steps": result.step,
        "target_steps": steps,
        "devices": _devices.used(result),
        "eval_every": eval_every,
        **bounds,
        "count_accuracy": accuracy,
        "count_accuracy_majority": accuracy_majority,
        "count_accuracy_chance": chance,
        "eval_draws": draws,
        "confusion": confusion(true_test, top, n_true, n_inferred),
        "confusion_draws": confusion(
            np.broadcast_to(true_test, drawn.shape), drawn, n_true, n_inferred
        ),
        "confusion_layout": "rows: true count 0..; columns: inferred count 0..; "
        "'confusion' counts canvases by their most frequent count of eval_draws draws, "
        "'confusion_draws' counts every draw",
        "accuracy_curve": curve,
        "final_train_objective": float(np.nanmean(tail)) if tail.size else None,
        "stopped_reason": result.stopped_reason,
        "seconds_per_step": float(times.mean()) if times.size else None,
        "train_seconds": train_time,
        "compile_seconds": result.compile_time,
        "eval_seconds": eval_time,
    }
    _write_json(metrics_path, metrics)

    print(f"held-out objective, nats per canvas, {n_test} canvases (+- standard error):", file=out)
    print(
        f"  ELBO          {metrics['test_elbo']:11.3f} +- {metrics['test_elbo_stderr']:.3f}",
        file=out,
    )
    if cfg.particles is not None:
        k = cfg.particles
        print(
            f"  IWAE, K={k:<5d}{metrics[f'test_iwae_{k}']:11.3f} +- "
            f"{metrics[f'test_iwae_{k}_stderr']:.3f}",
            file=out,
        )
    print(
        f"held-out count accuracy, {n_test} canvases: {accuracy:.3f} (a guide draw per "
        f"canvas, averaged over {draws} draws); {accuracy_majority:.3f} (the most frequent "
        f"count of the {draws} draws); always guessing the most common count: {chance:.3f}",
        file=out,
    )
    _print_confusion(metrics["confusion"], draws, out)
    print(f"wrote {', '.join(FILES)} to {args.out}", file=out, flush=True)
    return metrics


def command(args) -> int:
    """Entry point of ``genvi air``: exit code 0; 2 for bad input; 1 for a run stopped by
    a non-finite value or an error; 130 when interrupted (Ctrl-C)."""
    try:
        metrics = train(args)
    except UsageError as e:
        print(f"genvi air: error: {e}", file=sys.stderr)
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
    return _run_folder.interrupted_message("air", args.out)
