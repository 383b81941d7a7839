"""The handwritten digits that ship with scikit-learn (8x8 images; nothing downloaded)."""

from __future__ import annotations

import numpy as np

from genvi.data._common import Dataset, binarize, split


def digits(*, binarized: bool = True, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """The 1,797 scikit-learn digits (``sklearn.datasets.load_digits``), 8x8 images with
    intensities 0-16 scaled to [0, 1], binarized at 0.5 by default (pixel ``> 8``), split
    at random into training and held-out parts.

    Examples:
        >>> from genvi import data
        >>> ds = data.digits()
        >>> ds.train.shape, ds.test.shape, ds.image_shape
        ((1438, 64), (359, 64), (8, 8))
    """
    from sklearn.datasets import load_digits

    images, _ = load_digits(return_X_y=True)
    x = np.asarray(images, np.float32) / 16.0
    if binarized:
        x = binarize(x)
    train, test = split(x, test_fraction, seed)
    return Dataset(
        train, test, (8, 8), "scikit-learn digits" + (" (binarized)" if binarized else "")
    )
