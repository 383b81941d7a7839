"""Multi-digit canvases (``genvi.data.multi_digits``): shapes, determinism, counts, boxes,
pixel mass, disjoint train/test sources, the MNIST path and argument errors."""

import gzip
import struct
import time

import numpy as np
import pytest
from sklearn.datasets import load_digits

from genvi import data
from genvi.data import DataError, MultiDataset
from genvi.data._multi import _resize


def write_idx(path, array, compress=False):
    """A uint8 IDX file (magic, big-endian dimensions, then the bytes), as MNIST has."""
    a = np.asarray(array, np.uint8)
    raw = bytes([0, 0, 0x08, a.ndim]) + b"".join(struct.pack(">I", s) for s in a.shape)
    raw += a.tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


@pytest.fixture(scope="module")
def ds():
    return data.multi_digits(n_train=600, n_test=200, seed=3)


def _parts(ds: MultiDataset):
    yield ds.train, ds.train_counts, ds.train_boxes, ds.train_classes, ds.train_sources
    yield ds.test, ds.test_counts, ds.test_boxes, ds.test_classes, ds.test_sources


def _sklearn_digits():
    """The scikit-learn digits as float32 [1797, 8, 8] in [0, 1], and their labels."""
    x, y = load_digits(return_X_y=True)
    return np.asarray(x, np.float32).reshape(-1, 8, 8) / 16.0, np.asarray(y)


def _upscaled_digits(size=16):
    return _resize(_sklearn_digits()[0], size)


def test_shapes_and_dtypes(ds):
    assert isinstance(ds, MultiDataset)
    assert ds.canvas == 50 and ds.object_size == 16
    for (x, counts, boxes, classes, sources), n in zip(_parts(ds), (600, 200), strict=True):
        assert x.shape == (n, 2500) and x.dtype == np.float32
        assert x.min() >= 0.0 and x.max() <= 1.0
        assert counts.shape == (n,) and counts.dtype == np.int64
        assert boxes.shape == (n, 2, 4) and boxes.dtype == np.int64
        assert classes.shape == (n, 2) and classes.dtype == np.int64
        assert sources.shape == (n, 2) and sources.dtype == np.int64
    assert "scikit-learn digits" in ds.name


def test_default_call_is_fast():
    data.multi_digits(n_train=10, n_test=10)  # imports scikit-learn
    start = time.perf_counter()
    ds = data.multi_digits()
    assert time.perf_counter() - start < 2.0
    assert ds.train.shape == (6000, 2500) and ds.test.shape == (1000, 2500)


def test_deterministic_given_the_seed(ds):
    again = data.multi_digits(n_train=600, n_test=200, seed=3)
    for a, b in zip(ds, again, strict=True):
        np.testing.assert_array_equal(a, b)
    other = data.multi_digits(n_train=600, n_test=200, seed=4)
    assert not np.array_equal(ds.train, other.train)
    assert not np.array_equal(ds.test, other.test)
    # the training canvases do not depend on the number of held-out ones
    fewer = data.multi_digits(n_train=600, n_test=7, seed=3)
    np.testing.assert_array_equal(fewer.train, ds.train)


def test_counts_are_in_range_and_all_appear(ds):
    for _, counts, boxes, classes, sources in _parts(ds):
        assert set(counts.tolist()) == {0, 1, 2}
        present = boxes[..., 3]
        np.testing.assert_array_equal(present.sum(1), counts)
        # the present slots come first
        np.testing.assert_array_equal(present, np.arange(2)[None, :] < counts[:, None])
        assert np.all((classes >= 0) == (present == 1)) and classes.max() <= 9
        assert np.all((sources >= 0) == (present == 1))
        assert np.all(boxes[present == 0] == 0)
    big = data.multi_digits(n_train=300, n_test=10, max_objects=5)
    assert set(big.train_counts.tolist()) == set(range(6))


def test_pixel_mass_and_empty_canvases(ds):
    digits = _upscaled_digits()
    labels = _sklearn_digits()[1]
    for x, counts, boxes, classes, sources in _parts(ds):
        assert np.all(x[counts == 0] == 0.0)
        (ones,) = np.nonzero(counts == 1)
        assert ones.size > 0
        for i in ones:
            src = sources[i, 0]
            np.testing.assert_allclose(x[i].sum(), digits[src].sum(), rtol=1e-5)
            r0, c0, size, _ = boxes[i, 0]
            img = x[i].reshape(50, 50)
            np.testing.assert_allclose(img[r0 : r0 + size, c0 : c0 + size], digits[src])
            assert classes[i, 0] == labels[src]


def test_pixels_lie_inside_the_boxes(ds):
    for x, counts, boxes, _, _ in _parts(ds):
        covered = np.zeros((x.shape[0], 50, 50), bool)
        for i, j in zip(*np.nonzero(boxes[..., 3]), strict=True):
            r0, c0, size, _ = boxes[i, j]
            assert size == 16 and 0 <= r0 <= 50 - size and 0 <= c0 <= 50 - size
            covered[i, r0 : r0 + size, c0 : c0 + size] = True
        assert not np.any((x.reshape(-1, 50, 50) > 0) & ~covered)
        # overlaps are summed and clipped: a two-digit canvas holds at most both masses
        assert np.all(x[counts == 2].sum(1) > 0)


def test_train_and_test_digits_are_disjoint(ds):
    train = set(ds.train_sources[ds.train_sources >= 0].tolist())
    test = set(ds.test_sources[ds.test_sources >= 0].tolist())
    assert train and test and not train & test
    n = _sklearn_digits()[0].shape[0]
    assert max(train | test) < n


def test_other_sizes_and_no_objects():
    small = data.multi_digits(n_train=50, n_test=20, canvas=20, object_size=8, max_objects=3)
    assert small.train.shape == (50, 400) and small.object_size == 8
    assert np.all(small.train[small.train_counts == 0] == 0)
    # at object_size 8 the digits are the originals
    digits = _sklearn_digits()[0]
    i = int(np.nonzero(small.train_counts == 1)[0][0])
    r0, c0, size, _ = small.train_boxes[i, 0]
    np.testing.assert_allclose(
        small.train[i].reshape(20, 20)[r0 : r0 + size, c0 : c0 + size],
        digits[small.train_sources[i, 0]],
    )
    full = data.multi_digits(n_train=5, n_test=5, canvas=16, max_objects=1)
    assert np.all(full.train_boxes[..., :2] == 0)
    empty = data.multi_digits(n_train=5, n_test=5, max_objects=0)
    assert empty.train_boxes.shape == (5, 0, 4) and np.all(empty.train == 0)
    assert np.all(empty.train_counts == 0)


def test_resize_is_smooth_and_preserves_constants():
    flat = np.full((1, 8, 8), 0.25, np.float32)
    np.testing.assert_allclose(_resize(flat, 16), 0.25, rtol=1e-6)
    np.testing.assert_allclose(_resize(flat, 5), 0.25, rtol=1e-6)
    ramp = np.tile(np.arange(8, dtype=np.float32) / 7, (1, 8, 1))
    up = _resize(ramp, 16)[0, 0]
    assert np.all(np.diff(up) >= 0) and up[0] == 0.0 and up[-1] == 1.0


def _mnist_like(n, seed, side=28):
    rng = np.random.default_rng(seed)
    x = np.zeros((n, side, side), np.uint8)
    x[:, 6:-6, 10:-10] = rng.integers(1, 256, (n, side - 12, side - 20), dtype=np.uint8)
    return x


def test_mnist_from_idx_files(tmp_path):
    train, test = _mnist_like(30, 0), _mnist_like(10, 1)
    write_idx(tmp_path / "train-images-idx3-ubyte", train)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", test, compress=True)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(30, dtype=np.uint8) % 10)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(10, dtype=np.uint8) % 10)
    ds = data.multi_digits(n_train=100, n_test=40, source=tmp_path)
    assert ds.object_size == 28 and ds.canvas == 50 and "MNIST" in ds.name
    assert ds.train.shape == (100, 2500) and ds.test.shape == (40, 2500)
    # the training canvases use the training images (pool indices 0..29), the held-out
    # ones the test images (30..39)
    assert ds.train_sources.max() < 30 and ds.test_sources[ds.test_sources >= 0].min() >= 30
    pool = np.concatenate([train, test]).astype(np.float32) / 255.0
    for i in np.nonzero(ds.test_counts == 1)[0]:
        r0, c0, size, _ = ds.test_boxes[i, 0]
        src = ds.test_sources[i, 0]
        img = ds.test[i].reshape(50, 50)
        np.testing.assert_allclose(img[r0 : r0 + size, c0 : c0 + size], pool[src])
        assert ds.test_classes[i, 0] == (src - 30) % 10
    scaled = data.multi_digits(n_train=10, n_test=10, object_size=14, source=str(tmp_path))
    assert scaled.object_size == 14


def test_mnist_from_npz_without_labels(tmp_path):
    path = tmp_path / "mini.npz"
    np.savez(path, x_train=_mnist_like(20, 0), x_test=_mnist_like(5, 1))
    ds = data.multi_digits(n_train=30, n_test=10, source=path, canvas=40)
    assert ds.train.shape == (30, 1600)
    assert np.all(ds.train_classes == -1)  # no labels in the file
    assert set(ds.train_boxes[..., 3].sum(1).tolist()) <= {0, 1, 2}
    with pytest.raises(ValueError, match="object_size 28 .*default.* larger than canvas 20"):
        data.multi_digits(n_train=3, n_test=3, source=path, canvas=20)


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        ({"object_size": 60}, "object_size 60 is larger than canvas 50"),
        ({"object_size": 0}, "object_size must be at least 1"),
        ({"object_size": 2.5}, "object_size must be an int"),
        ({"max_objects": -1}, "max_objects must be at least 0"),
        ({"n_train": 0}, "n_train must be at least 1"),
        ({"n_test": 0}, "n_test must be at least 1"),
        ({"n_train": 10.0}, "n_train must be an int"),
        ({"n_test": "5"}, "n_test must be an int"),
        ({"n_train": True}, "n_train must be an int"),
        ({"canvas": 0}, "canvas must be at least 1"),
        ({"seed": -1}, "seed must be at least 0"),
        ({"seed": None}, "seed must be an int"),
        ({"source": 3}, "source must be None .* or the path"),
    ],
)
def test_bad_arguments_are_named(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        data.multi_digits(**kwargs)


def test_missing_source_is_named(tmp_path):
    with pytest.raises(DataError, match="source .*nowhere.* does not exist"):
        data.multi_digits(source=tmp_path / "nowhere")
