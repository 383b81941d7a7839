"""The handwritten digits that ship with scikit-learn (8x8 images; nothing downloaded)."""

from __future__ import annotations

import numpy as np

from genvi.data._common import Dataset, binarize, split


def digits(*, binarized: bool = True, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """The 1,797 scikit-learn digits (``sklearn.datasets.load_digits``), 8x8 images with
    intensities 0-16 scaled to [0, 1], binarized at 0.5 by default (pixel ``> 8``), split
    at random into training and held-out parts, with their labels (the digit, 0-9).

    Small enough to train a VAE in seconds on a CPU, and small enough to overfit: with the
    default model the held-out bound stops improving after about 10,000 steps while the
    training bound goes on rising. :func:`mnist` reads the real thing from local files.

    Examples:
        >>> from genvi import data
        >>> ds = data.digits()
        >>> ds.train.shape, ds.test.shape, ds.image_shape
        ((1438, 64), (359, 64), (8, 8))
        >>> ds.test_labels[:10]
        array([6, 6, 6, 2, 5, 6, 6, 2, 2, 1])
    """
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    x = np.asarray(images, np.float32) / 16.0
    if binarized:
        x = binarize(x)
    train, test = split(x, test_fraction, seed)
    train_labels, test_labels = split(np.asarray(labels, np.int64), test_fraction, seed)
    name = "scikit-learn digits" + (" (binarized)" if binarized else "")
    return Dataset(train, test, (8, 8), name, train_labels, test_labels)
