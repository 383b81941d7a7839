"""MNIST (or any MNIST-like image set) from local files: IDX (optionally gzipped) or .npz."""

from __future__ import annotations

import os
import zipfile

import numpy as np

from genvi.data._common import DataError, Dataset, binarize, split, to_unit_images
from genvi.data._idx import read_idx

TRAIN_NAMES = ("train-images-idx3-ubyte", "train-images.idx3-ubyte")
TEST_NAMES = ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte")
NPZ_PAIRS = (("x_train", "x_test"), ("train", "test"), ("train_images", "test_images"))
TRAIN_LABEL_NAMES = ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte")
TEST_LABEL_NAMES = ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte")
NPZ_LABELS = (("y_train", "y_test"), ("train_labels", "test_labels"))


def _find(folder: str, names) -> str | None:
    for name in names:
        for suffix in ("", ".gz"):
            p = os.path.join(folder, name + suffix)
            if os.path.isfile(p):
                return p
    return None


def _images(path: str) -> np.ndarray:
    a = read_idx(path)
    if a.ndim != 3:
        raise DataError(
            f"{path!r} holds an array of shape {a.shape}, not images (n, rows, cols); "
            "is it a label file? Point --mnist at the image files"
        )
    return a


def _load_npz(path: str):
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path!r} is not a readable .npz file ({type(e).__name__}: {e})") from None
    labels = next(
        ((arrays[a], arrays[b]) for a, b in NPZ_LABELS if a in arrays and b in arrays), None
    )
    for tr, te in NPZ_PAIRS:
        if tr in arrays and te in arrays:
            return (arrays[tr], f"{path}[{tr}]"), (arrays[te], f"{path}[{te}]"), labels
    if len(arrays) == 1:
        ((name, a),) = arrays.items()
        return (a, f"{path}[{name}]"), None, None
    raise DataError(
        f"{path!r} holds arrays {sorted(arrays)}; expected a training/test pair named "
        + " or ".join(f"({a!r}, {b!r})" for a, b in NPZ_PAIRS)
        + ", or a single array of images"
    )


def mnist(path, *, binarized: bool = True, test_fraction: float = 1 / 7, seed: int = 0) -> Dataset:
    """MNIST from local files, scaled to [0, 1] and binarized at 0.5 by default.

    ``path`` is one of:

    - a folder holding ``train-images-idx3-ubyte`` and ``t10k-images-idx3-ubyte``
      (each optionally ``.gz``): the standard training and test sets, with their labels
      where ``train-labels-idx1-ubyte`` and ``t10k-labels-idx1-ubyte`` are there too;
    - one IDX image file: split at random (``test_fraction``);
    - an ``.npz`` file with arrays ``x_train``/``x_test`` (or ``train``/``test``, or
      ``train_images``/``test_images``), and labels ``y_train``/``y_test`` (or
      ``train_labels``/``test_labels``) if it has them; or a single image array, split at
      random (without labels).

    Images are ``uint8`` (0-255) or floats in [0, 1], shaped ``(n, rows, cols)`` or
    ``(n, side * side)``. Anything else raises :class:`~genvi.data.DataError` naming
    the file.

    Examples:
        >>> from genvi import data
        >>> images = np.random.default_rng(0).integers(0, 256, (70, 28, 28), dtype=np.uint8)
        >>> np.savez("mini.npz", x_train=images[:60], x_test=images[60:])
        >>> ds = data.mnist("mini.npz")        # or a folder with the four IDX files of MNIST
        >>> ds.train.shape, ds.test.shape
        ((60, 784), (10, 784))
    """
    path = os.path.expanduser(os.fspath(path))
    labels = None
    if os.path.isdir(path):
        train_p, test_p = _find(path, TRAIN_NAMES), _find(path, TEST_NAMES)
        if train_p is None or test_p is None:
            raise DataError(
                f"the folder {path!r} does not hold MNIST image files: expected "
                f"{TRAIN_NAMES[0]} and {TEST_NAMES[0]} (optionally .gz); point --mnist at "
                "that folder, at one IDX file, or at an .npz file"
            )
        train, test = (_images(train_p), train_p), (_images(test_p), test_p)
        train_l, test_l = _find(path, TRAIN_LABEL_NAMES), _find(path, TEST_LABEL_NAMES)
        if train_l is not None and test_l is not None:
            labels = (read_idx(train_l), read_idx(test_l))
    elif not os.path.exists(path):
        raise DataError(f"no such file or folder: {path!r}")
    elif path.endswith(".npz"):
        train, test, labels = _load_npz(path)
    else:
        train, test = (_images(path), path), None
    x_train, shape = to_unit_images(*train)
    if test is None:
        x_train, x_test = split(x_train, test_fraction, seed)
    else:
        x_test, test_shape = to_unit_images(*test)
        if test_shape != shape:
            raise DataError(
                f"training images are {shape[0]}x{shape[1]} but test images are "
                f"{test_shape[0]}x{test_shape[1]} ({path!r})"
            )
    if labels is not None:
        labels = tuple(
            _check_labels(y, x, path) for y, x in zip(labels, (x_train, x_test), strict=True)
        )
    if binarized:
        x_train, x_test = binarize(x_train), binarize(x_test)
    name = f"MNIST from {os.path.basename(path.rstrip(os.sep))}"
    return Dataset(x_train, x_test, shape, name, *(labels or (None, None)))


def _check_labels(y, x, path: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != x.shape[0] or not np.issubdtype(y.dtype, np.integer):
        raise DataError(
            f"{path!r}: labels of shape {y.shape} and dtype {y.dtype} do not fit "
            f"{x.shape[0]} images; expected one integer label per image"
        )
    return y.astype(np.int64)
