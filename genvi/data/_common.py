"""What every data loader shares: the error type, the dataset record, binarizing, splits."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from genvi.core._errors import GenviError


class DataError(GenviError, ValueError):
    """A data file that is missing, truncated or not in the expected format."""


class Dataset(NamedTuple):
    """Images as flat float32 rows, split into training and held-out parts.

    Attributes:
        train: ``float32[n_train, pixels]`` (values in [0, 1], or {0, 1} when binarized).
        test: ``float32[n_test, pixels]``.
        image_shape: ``(rows, cols)``; ``pixels = rows * cols``.
        name: where the data came from.
        train_labels: ``int[n_train]``, the class of each training image (the digit), or
            None where the files hold no labels. The models here do not use them; they
            pick representative images to show (:func:`one_per_class`).
        test_labels: ``int[n_test]``, or None.
    """

    train: np.ndarray
    test: np.ndarray
    image_shape: tuple[int, int]
    name: str
    train_labels: np.ndarray | None = None
    test_labels: np.ndarray | None = None


def binarize(x, threshold: float = 0.5) -> np.ndarray:
    """``1.0`` where ``x > threshold`` (intensities scaled to [0, 1]), else ``0.0``.

    Examples:
        >>> from genvi import data
        >>> data.binarize(np.array([0.2, 0.7]))
        array([0., 1.], dtype=float32)
    """
    return (np.asarray(x) > threshold).astype(np.float32)


def split(x, test_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A random split of the rows of ``x`` into ``(train, test)``; the test part has
    ``round(test_fraction * n)`` rows (at least one of each when ``n >= 2``).

    Examples:
        >>> from genvi import data
        >>> train, test = data.split(np.arange(10), 0.2)
        >>> len(train), len(test)
        (8, 2)
    """
    x = np.asarray(x)
    n = x.shape[0]
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"split: test_fraction must lie in (0, 1), got {test_fraction!r}")
    if n < 2:
        raise DataError(f"split: need at least 2 data points to split, got {n}")
    n_test = min(max(1, round(test_fraction * n)), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    return x[perm[n_test:]], x[perm[:n_test]]


def to_unit_images(x, source: str) -> tuple[np.ndarray, tuple[int, int]]:
    """Images ``(n, rows, cols)`` or ``(n, rows * cols)`` (square) as float32 rows in
    [0, 1]: integer values (0-255) are divided by 255; floats must lie in [0, 1]."""
    x = np.asarray(x)
    if x.ndim == 3:
        shape = (int(x.shape[1]), int(x.shape[2]))
    elif x.ndim == 2:
        side = math.isqrt(int(x.shape[1]))
        if side * side != x.shape[1]:
            raise DataError(
                f"{source}: rows of {x.shape[1]} pixels are not square images; give images "
                "as (n, rows, cols) or (n, side * side)"
            )
        shape = (side, side)
    else:
        raise DataError(
            f"{source}: expected images of shape (n, rows, cols) or (n, pixels), got shape "
            f"{x.shape}"
        )
    if x.shape[0] == 0 or shape[0] * shape[1] == 0:
        raise DataError(f"{source}: no images (shape {x.shape})")
    if x.dtype == np.bool_:
        x = x.astype(np.float32)
    if np.issubdtype(x.dtype, np.integer):
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi > 255:
            raise DataError(f"{source}: integer pixel values lie in [{lo}, {hi}]; expected 0-255")
        flat = x.reshape(x.shape[0], -1).astype(np.float32) / 255.0
    elif np.issubdtype(x.dtype, np.floating):
        flat = x.reshape(x.shape[0], -1).astype(np.float32)
        if not np.all(np.isfinite(flat)):
            raise DataError(f"{source}: the images contain NaN or infinite values")
        lo, hi = float(flat.min()), float(flat.max())
        if lo < 0.0 or hi > 1.0:
            raise DataError(
                f"{source}: pixel values lie in [{lo:g}, {hi:g}]; expected integers 0-255 "
                "or floats in [0, 1]"
            )
    else:
        raise DataError(f"{source}: images of dtype {x.dtype} are not supported")
    return flat, shape


def one_per_class(labels, n: int | None = None) -> np.ndarray:
    """Indices of ``n`` examples that cover the classes evenly: the first example of each
    class (in the order of the classes), then the second of each, and so on; ``n``
    defaults to the number of classes. Where ``labels`` is None (a data set without
    labels), the first ``n`` indices.

    Showing ``x[one_per_class(labels, 10)]`` instead of ``x[:10]`` shows each digit
    once, where the first ten images of a random split may hold the same digit many times.

    Examples:
        >>> from genvi import data
        >>> data.one_per_class(np.array([3, 1, 3, 0, 1, 0]))
        array([3, 1, 0])
        >>> data.one_per_class(np.array([3, 1, 3, 0, 1, 0]), 5)     # then the second of each
        array([3, 1, 0, 5, 4])
        >>> ds = data.digits()
        >>> ds.test_labels[data.one_per_class(ds.test_labels, 10)]
        array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    """
    if n is not None and (isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0):
        raise ValueError(f"one_per_class: n must be a non-negative int or None, got {n!r}")
    if labels is None:
        if n is None:
            raise ValueError("one_per_class: without labels, give the number of indices n")
        return np.arange(n)
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"one_per_class: labels must be one-dimensional, got shape {y.shape}")
    # each example's rank within its class (0 for the first), then sort by (rank, class)
    order = np.argsort(y, kind="stable")
    _, starts, counts = np.unique(y[order], return_index=True, return_counts=True)
    rank = np.empty(y.shape[0], np.int64)
    rank[order] = np.arange(y.shape[0]) - np.repeat(starts, counts)
    picked = np.lexsort((y, rank))
    return picked[: counts.size if n is None else n]
