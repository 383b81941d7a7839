"""Plots: training histories, estimators' gradient variance, image grids.

Each function returns a :class:`matplotlib.figure.Figure` made without ``pyplot``: it
needs no display (it renders with Agg), leaves no global state behind, is shown once
when it is the value of a Jupyter cell, and is written as a PNG when ``path`` is given.
"""

from __future__ import annotations

import io
import math
import os
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

__all__ = ["history", "gradient_stats", "gradient_variance", "images", "GradientStats"]


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    class _Figure(Figure):
        def _repr_png_(self):  # rich display in Jupyter, without pyplot
            buf = io.BytesIO()
            self.savefig(buf, format="png", bbox_inches="tight")
            return buf.getvalue()

    return _Figure(figsize=(width, height), layout="constrained")


def _save(fig, path):
    if path is not None:
        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        fig.savefig(path, dpi=110)
    return fig


def _histories(h) -> dict:
    """``{label: History}`` from a History, a FitResult, or a mapping of either."""
    if isinstance(h, Mapping):
        return {str(k): getattr(v, "history", v) for k, v in h.items()}
    return {"": getattr(h, "history", h)}


def _smooth(y: np.ndarray, window: int) -> np.ndarray:
    """Moving average over ``window`` steps (shorter at the start), ignoring non-finite
    values."""
    y = np.asarray(y, np.float64)
    ok = np.isfinite(y)
    c = np.concatenate([[0.0], np.cumsum(np.where(ok, y, 0.0))])
    n = np.concatenate([[0], np.cumsum(ok)])
    hi = np.arange(1, y.size + 1)
    lo = np.maximum(hi - window, 0)
    count = n[hi] - n[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, (c[hi] - c[lo]) / np.maximum(count, 1), np.nan)


def history(
    h, *, smooth: int | None = None, units: str | None = "nats", title: str | None = None, path=None
):
    """The objective and gradient norm per step of one or several training runs.

    ``h`` is a :class:`~genvi.training.History`, a :class:`~genvi.training.FitResult`,
    or a mapping ``{label: either}`` to compare runs. The objective is drawn per step,
    faintly, with its moving average over ``smooth`` steps on top (default: a fiftieth of
    the run); the legend says which line is which. ``units`` labels the objective's axis:
    genvi's objectives (ELBO, IWAE, ...) are log densities, in nats (pass ``None`` for an
    objective without units). The gradient norm is drawn as its moving average.

    Examples:
        >>> def objective(key, params):
        ...     return -jnp.sum(params ** 2) + 0.1 * jax.random.normal(key)
        >>> result = gv.fit(objective, jnp.ones(2), key=jax.random.key(0), steps=200,
        ...                 optimizer=optax.adam(0.05))
        >>> fig = gv.plot.history(result, path="history.png")
        >>> fig.axes[0].get_ylabel()
        'objective (nats)'
        >>> import os; os.path.exists("history.png")
        True
    """
    from matplotlib.lines import Line2D

    runs = _histories(h)
    fig = _figure(10, 3.6)
    ax_obj, ax_grad = fig.subplots(1, 2)
    windows = set()
    for i, (label, hist) in enumerate(runs.items()):
        y = np.asarray(hist.objective, np.float64)
        steps = np.arange(1, y.size + 1)
        window = smooth or max(1, y.size // 50)
        windows.add(window)
        color = f"C{i}"
        if window > 1:
            ax_obj.plot(steps, y, color=color, alpha=0.25, linewidth=0.6)
        ax_obj.plot(steps, _smooth(y, window), color=color, label=label or None)
        g = np.asarray(hist.grad_norm, np.float64)
        ax_grad.plot(steps, _smooth(g, window), color=color, label=label or None)
        skipped = np.flatnonzero(np.asarray(hist.skipped))
        if skipped.size:
            ax_obj.plot(
                skipped + 1,
                np.full(skipped.size, 0.02),
                "|",
                color="red",
                transform=ax_obj.get_xaxis_transform(),
                label="skipped (non-finite)",
            )
    ax_obj.set_xlabel("step")
    ax_obj.set_ylabel(f"objective ({units})" if units else "objective")
    ax_grad.set_xlabel("step")
    smoothed = max(windows) > 1
    ax_grad.set_ylabel("gradient norm" + (" (moving average)" if smoothed else ""))
    if any(np.any(np.asarray(r.grad_norm) > 0) for r in runs.values()):
        ax_grad.set_yscale("log")
    # Which line is which: the runs by colour (when several), then raw against smoothed.
    handles, labels = ax_obj.get_legend_handles_labels()
    handles = list(dict(zip(labels, handles, strict=True)).values())  # "skipped" once
    if smoothed:
        gray = "C0" if len(runs) == 1 else "0.35"  # one run: its own colour
        average = (
            f"moving average ({windows.pop()} steps)" if len(windows) == 1 else "moving average"
        )
        handles += [
            Line2D([], [], color=gray, alpha=0.25, linewidth=0.6, label="per step"),
            Line2D([], [], color=gray, label=average),
        ]
    elif not handles:
        handles = [Line2D([], [], color="C0", label="per step")]
    ax_obj.legend(handles=handles, fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


class GradientStats(NamedTuple):
    """A gradient estimator measured over independent keys.

    Attributes:
        variance: the total variance, ``sum_i Var[g_i]`` over every coordinate of every
            parameter leaf (the trace of the covariance), with ``ddof=1``.
        mean_norm: the Euclidean norm of the mean estimate.
        seconds: wall-clock seconds per estimate (compiled, vmapped over the keys), or
            None for precomputed samples.
        samples: the number of estimates.
    """

    variance: float
    mean_norm: float
    seconds: float | None
    samples: int


def _stats_of(samples, seconds) -> GradientStats:
    import jax

    leaves = [np.asarray(x, np.float64) for x in jax.tree_util.tree_leaves(samples)]
    if not leaves:
        raise ValueError("gradient_stats: an estimator returned no arrays")
    n = leaves[0].shape[0] if leaves[0].ndim else 0
    if n < 2 or any(x.ndim == 0 or x.shape[0] != n for x in leaves):
        raise ValueError(
            "gradient_stats: samples need a leading axis of at least 2 estimates, shared by "
            f"every leaf (got shapes {[x.shape for x in leaves]})"
        )
    flat = np.concatenate([x.reshape(n, -1) for x in leaves], axis=1)
    return GradientStats(
        float(flat.var(axis=0, ddof=1).sum()), float(np.linalg.norm(flat.mean(axis=0))), seconds, n
    )


def gradient_stats(
    estimators: Mapping[str, Any], key=None, samples: int = 1000
) -> dict[str, GradientStats]:
    """Variance, mean and cost of several gradient estimators.

    Each value of ``estimators`` is either a function ``fn(key) -> gradient`` (a pytree),
    which is run on ``samples`` independent keys split from ``key`` (jitted and vmapped,
    timed after compilation), or a pytree of precomputed estimates with a leading
    sample axis.

    Examples:
        >>> @gv.gen
        ... def guide(p):
        ...     gv.flip.reinforce(p) @ "b"
        >>> @gv.gen
        ... def guide_enum(p):
        ...     gv.flip.enum(p) @ "b"
        >>> def objective_of(guide):
        ...     @gv.expectation
        ...     def objective(key, p):                 # E[(b - 0.2)^2]
        ...         return (guide.simulate(key, p).choices["b"] - 0.2) ** 2
        ...     return objective
        >>> estimators = {
        ...     "REINFORCE": lambda k: objective_of(guide).grad_estimate(k, 0.4),
        ...     "ENUM": lambda k: objective_of(guide_enum).grad_estimate(k, 0.4),
        ... }
        >>> stats = gv.plot.gradient_stats(estimators, jax.random.key(0), samples=500)
        >>> stats["ENUM"].variance < 1e-10 < stats["REINFORCE"].variance    # ENUM is exact here
        True
    """
    import jax

    out = {}
    for name, est in estimators.items():
        if callable(est):
            if key is None:
                raise ValueError("gradient_stats: estimators given as functions need a key")
            if not isinstance(samples, int) or samples < 2:
                raise ValueError(f"gradient_stats: samples must be an int >= 2, got {samples!r}")
            keys = jax.random.split(key, samples)
            run: Callable = jax.jit(jax.vmap(est))
            jax.block_until_ready(run(keys))  # compile
            t0 = time.perf_counter()
            g = jax.block_until_ready(run(keys))
            out[name] = _stats_of(g, (time.perf_counter() - t0) / samples)
        else:
            out[name] = _stats_of(est, None)
    return out


def gradient_variance(
    estimators: Mapping[str, Any],
    key=None,
    *,
    samples: int = 1000,
    title: str | None = None,
    path=None,
):
    """Bar charts comparing gradient estimators: total variance (log scale) and, when
    the estimators were timed, seconds per estimate and variance x time (the variance
    of an average of estimates that cost one second in all: lower is better).

    ``estimators`` maps names to what :func:`gradient_stats` takes (functions of a key,
    or precomputed samples) or to :class:`GradientStats` already measured.

    Examples:
        >>> @gv.gen
        ... def guide(p):
        ...     gv.flip.reinforce(p) @ "b"
        >>> @gv.gen
        ... def guide_enum(p):
        ...     gv.flip.enum(p) @ "b"
        >>> def objective_of(guide):
        ...     @gv.expectation
        ...     def objective(key, p):                 # E[(b - 0.2)^2]
        ...         return (guide.simulate(key, p).choices["b"] - 0.2) ** 2
        ...     return objective
        >>> estimators = {
        ...     "REINFORCE": lambda k: objective_of(guide).grad_estimate(k, 0.4),
        ...     "ENUM": lambda k: objective_of(guide_enum).grad_estimate(k, 0.4),
        ... }
        >>> fig = gv.plot.gradient_variance(estimators, jax.random.key(0), samples=500,
        ...                                 path="variance.png")
    """
    stats = {n: s for n, s in estimators.items() if isinstance(s, GradientStats)}
    todo = {n: e for n, e in estimators.items() if not isinstance(e, GradientStats)}
    stats.update(gradient_stats(todo, key, samples) if todo else {})
    names = list(estimators)
    if not names:
        raise ValueError("gradient_variance: no estimators given")
    timed = all(stats[n].seconds is not None for n in names)
    panels = 3 if timed else 1
    fig = _figure(3.6 * panels + 0.8, 3.4)
    axes = np.atleast_1d(fig.subplots(1, panels))
    colors = [f"C{i}" for i in range(len(names))]
    var = [stats[n].variance for n in names]
    series = [("gradient variance (sum over coordinates)", var)]
    if timed:
        secs = [float(stats[n].seconds or 0.0) for n in names]
        series += [
            ("seconds per estimate", secs),
            ("variance x seconds", [v * s for v, s in zip(var, secs, strict=True)]),
        ]
    for ax, (label, values) in zip(axes, series, strict=True):
        ax.bar(range(len(names)), values, color=colors)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
        ax.set_ylabel(label)
        if all(v > 0 for v in values):
            ax.set_yscale("log")
        for i, v in enumerate(values):
            ax.annotate(f"{v:.3g}", (i, v), ha="center", va="bottom", fontsize=8)
    fig.suptitle(title or f"gradient estimators ({stats[names[0]].samples} estimates each)")
    return _save(fig, path)


def images(
    x,
    *,
    image_shape: tuple[int, int] | None = None,
    ncols: int = 10,
    titles=None,
    title: str | None = None,
    cmap: str = "gray_r",
    path=None,
):
    """A grid of images, one per row of ``x`` (flat rows of ``rows * cols`` pixels, or
    arrays of shape ``(n, rows, cols)``), drawn with values in [0, 1].

    ``titles`` labels each image; square images need no ``image_shape``.

    Examples:
        >>> from genvi import data
        >>> ds = data.digits()
        >>> fig = gv.plot.images(ds.test[:20], ncols=10, path="digits.png")
    """
    a = np.asarray(x, np.float64)
    if a.ndim == 3:
        shape = a.shape[1:]
    elif a.ndim == 2:
        if image_shape is None:
            side = math.isqrt(a.shape[1])
            if side * side != a.shape[1]:
                raise ValueError(
                    f"images: rows of {a.shape[1]} pixels are not square; pass image_shape"
                )
            image_shape = (side, side)
        if image_shape[0] * image_shape[1] != a.shape[1]:
            raise ValueError(f"images: image_shape {image_shape} does not hold {a.shape[1]} pixels")
        shape = tuple(image_shape)
    else:
        raise ValueError(f"images: expected (n, pixels) or (n, rows, cols), got shape {a.shape}")
    n = a.shape[0]
    if n == 0:
        raise ValueError("images: no images to draw")
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig = _figure(1.1 * ncols, 1.1 * nrows + (0.4 if title else 0))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).reshape(-1)
    for i, ax in enumerate(axes):
        ax.set_axis_off()
        if i < n:
            ax.imshow(a[i].reshape(shape), cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
            if titles is not None:
                ax.set_title(str(titles[i]), fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, path)
