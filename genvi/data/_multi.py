"""Canvases holding several digits each, for Attend-Infer-Repeat style models (multi-MNIST)."""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from genvi.data._common import DataError, split

DIGITS_SIZE = 16  # the default object size for the 8x8 scikit-learn digits (2x)


class MultiDataset(NamedTuple):
    """Canvases that hold 0 to ``max_objects`` digits each, with where each digit lies.

    Built by :func:`multi_digits`. ``n`` below is ``n_train`` for the ``train_*`` fields
    and ``n_test`` for the ``test_*`` fields; ``k = max_objects``. Slot ``j`` of a canvas
    is filled exactly when ``j < count``: the present slots come first.

    Attributes:
        train: ``float32[n_train, canvas * canvas]``, the training canvases, row-major,
            values in [0, 1].
        test: ``float32[n_test, canvas * canvas]``, the held-out canvases, built from
            source digits that no training canvas uses.
        train_counts: ``int64[n_train]``, the number of digits on each canvas (0 to k).
        test_counts: ``int64[n_test]``.
        train_boxes: ``int64[n_train, k, 4]``, per slot ``(row0, col0, size, present)``:
            the digit covers rows ``row0:row0 + size`` and columns ``col0:col0 + size``
            of the canvas; ``present`` is 1 for a digit and 0 for an empty slot (whose
            row is all zeros).
        test_boxes: ``int64[n_test, k, 4]``.
        train_classes: ``int64[n_train, k]``, the class (0-9) of each digit; -1 for an
            empty slot, and for every slot where the source has no labels (MNIST files
            without label files: use ``boxes[..., 3]`` for presence).
        test_classes: ``int64[n_test, k]``.
        train_sources: ``int64[n_train, k]``, the index of each digit in the source pool,
            -1 for an empty slot. The pool is ``sklearn.datasets.load_digits`` in its own
            order, or, for MNIST, the training images followed by the test images as
            :func:`mnist` reads them.
        test_sources: ``int64[n_test, k]``; no index here is in ``train_sources``.
        canvas: the side of a canvas, in pixels.
        object_size: the side of a digit on the canvas, in pixels.
        name: what the canvases are made of.
    """

    train: np.ndarray
    test: np.ndarray
    train_counts: np.ndarray
    test_counts: np.ndarray
    train_boxes: np.ndarray
    test_boxes: np.ndarray
    train_classes: np.ndarray
    test_classes: np.ndarray
    train_sources: np.ndarray
    test_sources: np.ndarray
    canvas: int
    object_size: int
    name: str


def _is_int(x) -> bool:
    return isinstance(x, int | np.integer) and not isinstance(x, bool | np.bool_)


def _check_int(name: str, value, lo: int, fix: str) -> int:
    if not _is_int(value):
        raise ValueError(f"multi_digits: {name} must be an int, got {value!r}; {fix}")
    if value < lo:
        raise ValueError(f"multi_digits: {name} must be at least {lo}, got {value}; {fix}")
    return int(value)


def _resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``float32[n_out, n_in]``: linear interpolation with pixel centres at ``i + 0.5``
    (as PIL and OpenCV place them), so that ``m @ v`` resamples a row ``v``."""
    pos = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    pos = np.clip(pos, 0.0, n_in - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = pos - lo
    m = np.zeros((n_out, n_in), np.float64)
    rows = np.arange(n_out)
    np.add.at(m, (rows, lo), 1.0 - frac)
    np.add.at(m, (rows, hi), frac)
    return m.astype(np.float32)


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of ``images[n, rows, cols]`` (values in [0, 1]) to ``[n, size, size]``."""
    _, rows, cols = images.shape
    if rows == size and cols == size:
        return images.astype(np.float32)
    r, c = _resize_matrix(rows, size), _resize_matrix(cols, size)
    out = np.einsum("sr,nrc,tc->nst", r, images.astype(np.float32), c, optimize=True)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _sklearn_source(seed: int):
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    pool = np.asarray(images, np.float32).reshape(-1, 8, 8) / 16.0
    train_idx, test_idx = split(np.arange(pool.shape[0]), 0.2, seed)
    return pool, np.asarray(labels, np.int64), train_idx, test_idx, "scikit-learn digits"


def _mnist_source(source, seed: int):
    from genvi.data._mnist import mnist

    path = os.path.expanduser(os.fspath(source))
    if not os.path.exists(path):
        raise DataError(
            f"multi_digits: source {path!r} does not exist; give a folder holding the MNIST "
            "IDX files, one IDX file or an .npz file, or source=None for the scikit-learn digits"
        )
    ds = mnist(path, binarized=False, seed=seed)
    rows, cols = ds.image_shape
    n_tr, n_te = ds.train.shape[0], ds.test.shape[0]
    pool = np.concatenate([ds.train, ds.test]).reshape(-1, rows, cols)
    if ds.train_labels is not None and ds.test_labels is not None:
        labels = np.concatenate([ds.train_labels, ds.test_labels]).astype(np.int64)
    else:
        labels = np.full(n_tr + n_te, -1, np.int64)
    name = "multi-" + ds.name
    return pool, labels, np.arange(n_tr), np.arange(n_tr, n_tr + n_te), name


def _canvases(rng, n, idx, pool, labels, canvas, size, max_objects):
    """``n`` canvases with digits drawn (with replacement) from ``pool[idx]``."""
    counts = rng.integers(0, max_objects + 1, n).astype(np.int64)
    src = idx[rng.integers(0, idx.shape[0], (n, max_objects))].astype(np.int64)
    pos = rng.integers(0, canvas - size + 1, (n, max_objects, 2)).astype(np.int64)
    present = np.arange(max_objects)[None, :] < counts[:, None]
    src = np.where(present, src, -1)
    pos = np.where(present[..., None], pos, 0)
    x = np.zeros((n, canvas, canvas), np.float32)
    offsets = np.arange(size)
    for j in range(max_objects):
        (i,) = np.nonzero(present[:, j])
        rows = pos[i, j, 0][:, None, None] + offsets[None, :, None]
        cols = pos[i, j, 1][:, None, None] + offsets[None, None, :]
        # one digit per canvas in a slot: no index repeats, so += adds every digit
        x[i[:, None, None], rows, cols] += pool[src[i, j]]
    np.clip(x, 0.0, 1.0, out=x)
    boxes = np.zeros((n, max_objects, 4), np.int64)
    boxes[..., :2] = pos
    boxes[..., 2] = np.where(present, size, 0)
    boxes[..., 3] = present
    classes = np.where(present, labels[np.maximum(src, 0)], -1).astype(np.int64)
    return x.reshape(n, canvas * canvas), counts, boxes, classes, src


def multi_digits(
    *,
    n_train: int = 6000,
    n_test: int = 1000,
    canvas: int = 50,
    object_size: int | None = None,
    max_objects: int = 2,
    seed: int = 0,
    source=None,
) -> MultiDataset:
    """Canvases of several digits each, with their counts and boxes: the data of
    Attend-Infer-Repeat (AIR; Eslami et al., 2016), built in well under a second.

    Each ``canvas x canvas`` image holds a number of digits drawn uniformly from
    ``0..max_objects``; each digit is resized (bilinearly) to ``object_size x object_size``
    and placed at a uniformly random integer position fully inside the canvas. Digits may
    overlap: overlapping intensities add up and are clipped to 1.

    The digits are scikit-learn's bundled 8x8 digits (intensities 0-16 scaled to [0, 1];
    ``object_size`` defaults to 16, twice their size), split 80/20 at random (``seed``)
    before any canvas is drawn, so that the held-out canvases hold only digits that no
    training canvas holds. With ``source``, a path to local MNIST files read by
    :func:`mnist` (a folder of IDX files, one IDX file or an ``.npz`` file; nothing is
    downloaded), the same generator builds multi-MNIST: the training canvases use the
    training images and the held-out ones the test images, at their own size (28x28)
    unless ``object_size`` says otherwise. Unlike Pyro's AIR example, the digits are not
    rescaled at random and overlapping canvases are kept rather than redrawn.

    Everything follows from ``seed``; the training canvases do not depend on ``n_test``.

    Args:
        n_train: the number of training canvases.
        n_test: the number of held-out canvases.
        canvas: the side of a canvas, in pixels.
        object_size: the side of a digit on the canvas, in pixels; None for 16 with the
            scikit-learn digits and the images' own size with MNIST.
        max_objects: the most digits on one canvas (0 gives empty canvases).
        seed: the seed of the split and of the canvases (a non-negative int).
        source: None for the scikit-learn digits, or the path of MNIST files.

    Returns:
        A :class:`MultiDataset`: the flattened canvases, the digit counts, the boxes
        ``(row0, col0, size, present)`` and classes of the digits, and which source digit
        each one is.

    Raises:
        ValueError: an argument of the wrong type or out of range (``object_size`` larger
            than ``canvas``, say), naming it.
        DataError: a ``source`` that does not exist or is not readable MNIST.

    Examples:
        >>> from genvi import data
        >>> ds = data.multi_digits(n_train=200, n_test=50)
        >>> ds.train.shape, ds.test.shape, ds.train.dtype
        ((200, 2500), (50, 2500), dtype('float32'))
        >>> ds.train_counts.shape, ds.train_boxes.shape, ds.train_classes.shape
        ((200,), (200, 2, 4), (200, 2))
        >>> sorted(set(ds.train_counts.tolist()))
        [0, 1, 2]
        >>> int(ds.train_boxes[ds.train_counts == 1][0, 0, 2])    # a digit is 16x16
        16
    """
    n_train = _check_int("n_train", n_train, 1, "give the number of training canvases")
    n_test = _check_int("n_test", n_test, 1, "give the number of held-out canvases")
    canvas = _check_int("canvas", canvas, 1, "give the side of a canvas in pixels (say 50)")
    max_objects = _check_int(
        "max_objects", max_objects, 0, "give the most digits on one canvas (say 2)"
    )
    seed = _check_int("seed", seed, 0, "give a non-negative int")
    if object_size is not None:
        object_size = _check_int(
            "object_size", object_size, 1, "give the side of a digit in pixels, or None"
        )
        if object_size > canvas:
            raise ValueError(
                f"multi_digits: object_size {object_size} is larger than canvas {canvas}; "
                "a digit must fit inside the canvas: lower object_size or raise canvas"
            )
    if source is None:
        pool, labels, train_idx, test_idx, name = _sklearn_source(seed)
        default_size = DIGITS_SIZE
    elif isinstance(source, str | os.PathLike):
        pool, labels, train_idx, test_idx, name = _mnist_source(source, seed)
        rows, cols = pool.shape[1:]
        if object_size is None and rows != cols:
            raise DataError(
                f"multi_digits: the images of source {source!r} are {rows}x{cols}, not square; "
                "give object_size (the side they are resized to)"
            )
        default_size = int(rows)
    else:
        raise ValueError(
            f"multi_digits: source must be None (the scikit-learn digits) or the path of "
            f"MNIST files (str or os.PathLike), got {type(source).__name__} {source!r}"
        )
    size = default_size if object_size is None else object_size
    if size > canvas:
        raise ValueError(
            f"multi_digits: object_size {size} (the default for this source) is larger than "
            f"canvas {canvas}; raise canvas or give a smaller object_size"
        )
    pool = _resize(pool, size)
    train_seq, test_seq = np.random.SeedSequence(seed).spawn(2)
    args = (pool, labels, canvas, size, max_objects)
    tr = _canvases(np.random.default_rng(train_seq), n_train, train_idx, *args)
    te = _canvases(np.random.default_rng(test_seq), n_test, test_idx, *args)
    name = f"{name}, 0-{max_objects} per {canvas}x{canvas} canvas ({size}x{size} digits)"
    return MultiDataset(
        tr[0], te[0], tr[1], te[1], tr[2], te[2], tr[3], te[3], tr[4], te[4], canvas, size, name
    )
