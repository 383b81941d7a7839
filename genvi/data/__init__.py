"""Data sets for the examples and the ``genvi vae`` command (nothing is downloaded).

- :func:`digits`: scikit-learn's bundled 8x8 handwritten digits, binarized;
- :func:`mnist`: MNIST from local IDX (optionally gzipped) or ``.npz`` files;
- :func:`multi_digits`: canvases of several digits each, with counts and boxes (for AIR);
- :func:`read_idx`, :func:`binarize`, :func:`split`: the pieces they are made of;
- :func:`one_per_class`: a few examples that cover the classes, to show.
"""

from genvi.data._common import DataError, Dataset, binarize, one_per_class, split
from genvi.data._digits import digits
from genvi.data._idx import read_idx
from genvi.data._mnist import mnist
from genvi.data._multi import MultiDataset, multi_digits

__all__ = [
    "digits",
    "mnist",
    "multi_digits",
    "read_idx",
    "binarize",
    "split",
    "one_per_class",
    "Dataset",
    "MultiDataset",
    "DataError",
]
