"""gv.plot: figures are returned and PNGs written."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from matplotlib.figure import Figure

import genvi as gv
from genvi.training import History


def _history(n=200, skipped=()):
    obj = -10.0 + 5.0 * (1 - np.exp(-np.arange(n) / 50.0))
    skip = np.zeros(n, bool)
    skip[list(skipped)] = True
    obj[skip] = np.nan
    return History(
        obj.astype(np.float32), np.linspace(5, 0.1, n, dtype=np.float32), np.full(n, 1e-3), skip
    )


def _is_png(path):
    return path.exists() and path.stat().st_size > 1000 and path.read_bytes()[:4] == b"\x89PNG"


def test_history_plot(tmp_path):
    fig = gv.plot.history(_history(), path=tmp_path / "h.png", title="run")
    assert isinstance(fig, Figure) and _is_png(tmp_path / "h.png")
    assert len(fig.axes) == 2
    fig = gv.plot.history(
        {"elbo": _history(), "iwae": _history(120, skipped=[5, 9])},
        path=tmp_path / "sub" / "two.png",
    )
    assert _is_png(tmp_path / "sub" / "two.png")
    assert fig._repr_png_()[:4] == b"\x89PNG"  # renders in Jupyter without pyplot


def test_gradient_stats_and_variance_plot(tmp_path):
    scale = jnp.array([1.0, 2.0, 3.0])

    def noisy(k):
        return {"g": scale * jax.random.normal(k, (3,))}

    key = jax.random.key(0)
    stats = gv.plot.gradient_stats({"noisy": noisy}, key, samples=500)["noisy"]
    # the same estimates, precomputed: the same numbers, by the textbook formulas
    samples = np.asarray(jax.vmap(noisy)(jax.random.split(key, 500))["g"], np.float64)
    pre = gv.plot.gradient_stats({"pre": {"g": samples}})["pre"]
    assert pre.seconds is None and pre.samples == 500 and stats.seconds > 0
    np.testing.assert_allclose(stats.variance, samples.var(axis=0, ddof=1).sum(), rtol=1e-6)
    np.testing.assert_allclose(pre.variance, stats.variance, rtol=1e-6)
    np.testing.assert_allclose(pre.mean_norm, np.linalg.norm(samples.mean(axis=0)), rtol=1e-6)
    fig = gv.plot.gradient_variance(
        {"noisy": noisy, "exact": lambda k: {"g": scale}},
        key,
        samples=200,
        path=tmp_path / "v.png",
    )
    assert isinstance(fig, Figure) and _is_png(tmp_path / "v.png") and len(fig.axes) == 3
    fig = gv.plot.gradient_variance({"pre": {"g": samples}, "measured": stats})
    assert len(fig.axes) == 1  # no timing for precomputed samples
    with pytest.raises(ValueError, match="need a key"):
        gv.plot.gradient_stats({"noisy": noisy})
    with pytest.raises(ValueError, match="leading axis of at least 2"):
        gv.plot.gradient_stats({"bad": {"g": np.zeros((1, 3))}})


def test_images_grid(tmp_path):
    x = np.random.default_rng(0).uniform(size=(23, 64))
    fig = gv.plot.images(x, ncols=10, titles=list(range(23)), path=tmp_path / "i.png")
    assert isinstance(fig, Figure) and _is_png(tmp_path / "i.png") and len(fig.axes) == 30
    gv.plot.images(x.reshape(23, 8, 8)[:3], path=tmp_path / "j.png")
    assert _is_png(tmp_path / "j.png")
    with pytest.raises(ValueError, match="rows of 10 pixels are not square"):
        gv.plot.images(np.zeros((2, 10)))
    gv.plot.images(np.zeros((2, 10)), image_shape=(2, 5))


def test_history_plot_says_units_and_which_line_is_which(tmp_path):
    fig = gv.plot.history(_history(), smooth=20)
    ax_obj, ax_grad = fig.axes
    assert ax_obj.get_ylabel() == "objective (nats)"
    assert ax_grad.get_ylabel() == "gradient norm (moving average)"
    legend = [t.get_text() for t in ax_obj.get_legend().get_texts()]
    assert legend == ["per step", "moving average (20 steps)"]
    # several runs: one entry per run (by colour), "skipped" once, then raw against smoothed
    fig = gv.plot.history(
        {"elbo": _history(skipped=[3]), "iwae": _history(120, skipped=[5, 9])}, units=None
    )
    ax_obj = fig.axes[0]
    assert ax_obj.get_ylabel() == "objective"
    legend = [t.get_text() for t in ax_obj.get_legend().get_texts()]
    assert legend == ["elbo", "skipped (non-finite)", "iwae", "per step", "moving average"]
    # a run too short to smooth draws its steps only, and says so
    fig = gv.plot.history(_history(40))
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["per step"]
    assert fig.axes[1].get_ylabel() == "gradient norm"
    fig.savefig(tmp_path / "short.png")
