"""Data loaders: the scikit-learn digits, IDX files, MNIST folders and .npz files."""

import gzip
import struct

import numpy as np
import pytest

from genvi import data
from genvi.data import DataError

_CODES = {
    np.uint8: 0x08,
    np.int8: 0x09,
    np.int16: 0x0B,
    np.int32: 0x0C,
    np.float32: 0x0D,
    np.float64: 0x0E,
}


def write_idx(path, array, compress=False):
    """An IDX file written from its specification (header, big-endian data)."""
    a = np.asarray(array)
    raw = bytes([0, 0, _CODES[a.dtype.type], a.ndim])
    raw += b"".join(struct.pack(">I", s) for s in a.shape)
    raw += a.astype(a.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


def test_digits_are_binarized_8x8_and_split_reproducibly():
    ds = data.digits()
    assert ds.image_shape == (8, 8)
    assert ds.train.shape[1] == ds.test.shape[1] == 64
    assert ds.train.shape[0] + ds.test.shape[0] == 1797
    assert ds.test.shape[0] == round(0.2 * 1797)
    assert set(np.unique(ds.train).tolist()) == {0.0, 1.0} and ds.train.dtype == np.float32
    again = data.digits()
    np.testing.assert_array_equal(ds.train, again.train)
    raw = data.digits(binarized=False)
    assert raw.train.max() == 1.0 and len(np.unique(raw.train)) == 17  # intensities 0..16 / 16


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32, np.float64])
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trips(tmp_path, dtype, compress):
    a = (np.arange(2 * 3 * 4) * 7 % 200).astype(dtype).reshape(2, 3, 4)
    back = data.read_idx(write_idx(tmp_path / "a.idx", a, compress))
    assert back.dtype == np.dtype(dtype) and back.shape == (2, 3, 4)
    np.testing.assert_array_equal(back, a)


def test_malformed_idx_files_are_named(tmp_path):
    good = write_idx(tmp_path / "good", np.zeros((3, 4, 4), np.uint8)).read_bytes()
    (tmp_path / "short").write_bytes(good[:-5])
    with pytest.raises(DataError, match=r"short' is truncated: .*shape \(3, 4, 4\)"):
        data.read_idx(tmp_path / "short")
    (tmp_path / "long").write_bytes(good + b"xx")
    with pytest.raises(DataError, match="'.*long' is too long"):
        data.read_idx(tmp_path / "long")
    (tmp_path / "text").write_bytes(b"hello world")
    with pytest.raises(DataError, match="text' is not an IDX file"):
        data.read_idx(tmp_path / "text")
    (tmp_path / "header").write_bytes(good[:9])
    with pytest.raises(DataError, match="header.*truncated: its header needs 16 bytes"):
        data.read_idx(tmp_path / "header")
    (tmp_path / "bad.gz").write_bytes(gzip.compress(good)[:-10])
    with pytest.raises(DataError, match="bad.gz' is a damaged gzip file"):
        data.read_idx(tmp_path / "bad.gz")
    with pytest.raises(DataError, match="no such file"):
        data.read_idx(tmp_path / "absent")


def _images(n, side=4, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, side, side), dtype=np.uint8)


def test_mnist_from_an_idx_folder(tmp_path):
    train, test = _images(12), _images(5, seed=1)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", train, compress=True)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", test)
    ds = data.mnist(tmp_path)
    assert ds.image_shape == (4, 4) and ds.train.shape == (12, 16) and ds.test.shape == (5, 16)
    np.testing.assert_array_equal(
        ds.train, (train.reshape(12, 16) / 255.0 > 0.5).astype(np.float32)
    )
    grey = data.mnist(tmp_path, binarized=False)
    np.testing.assert_allclose(grey.test, test.reshape(5, 16) / 255.0, rtol=1e-6)


def test_mnist_from_one_idx_file_is_split(tmp_path):
    path = write_idx(tmp_path / "images.idx", _images(14))
    ds = data.mnist(path)
    assert ds.train.shape == (12, 16) and ds.test.shape == (2, 16)  # 1/7 held out


def test_mnist_from_npz(tmp_path):
    np.savez(tmp_path / "pair.npz", x_train=_images(10), x_test=_images(3, seed=2))
    ds = data.mnist(tmp_path / "pair.npz")
    assert ds.train.shape == (10, 16) and ds.test.shape == (3, 16)
    flat = (_images(20).reshape(20, 16) / 255.0).astype(np.float32)
    np.savez(tmp_path / "single.npz", images=flat)
    ds = data.mnist(tmp_path / "single.npz", binarized=False)
    assert ds.train.shape[0] + ds.test.shape[0] == 20 and ds.image_shape == (4, 4)


def test_malformed_mnist_inputs_are_explained(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        data.mnist(tmp_path / "nowhere")
    with pytest.raises(DataError, match="does not hold MNIST image files"):
        data.mnist(tmp_path)
    labels = write_idx(tmp_path / "labels.idx", np.arange(10, dtype=np.uint8))
    with pytest.raises(DataError, match=r"shape \(10,\), not images.*label file"):
        data.mnist(labels)
    np.savez(tmp_path / "keys.npz", a=np.zeros((3, 4, 4)), b=np.zeros((3, 4, 4)))
    with pytest.raises(DataError, match=r"holds arrays \['a', 'b'\]; expected .*x_train"):
        data.mnist(tmp_path / "keys.npz")
    np.savez(tmp_path / "range.npz", x=np.full((5, 4, 4), 3.5))
    with pytest.raises(DataError, match=r"pixel values lie in \[3.5, 3.5\]"):
        data.mnist(tmp_path / "range.npz")
    np.savez(tmp_path / "nonsquare.npz", x=np.zeros((5, 10)))
    with pytest.raises(DataError, match="rows of 10 pixels are not square"):
        data.mnist(tmp_path / "nonsquare.npz")
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 nothing")
    with pytest.raises(DataError, match="broken.npz' is not a readable .npz"):
        data.mnist(tmp_path / "broken.npz")


def test_split_and_binarize():
    train, test = data.split(np.arange(10), 0.2, seed=3)
    assert len(train) == 8 and len(test) == 2
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(10))
    np.testing.assert_array_equal(data.binarize(np.array([0.2, 0.5, 0.7])), [0.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="test_fraction"):
        data.split(np.arange(10), 1.5)


def test_labels_follow_their_images():
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    ds = data.digits(binarized=False)
    assert ds.train_labels.shape == (1438,) and ds.test_labels.shape == (359,)
    # each held-out image is the scikit-learn image of the same index as its label
    lookup = {
        row.tobytes(): y for row, y in zip((images / 16.0).astype(np.float32), labels, strict=True)
    }
    assert all(lookup[row.tobytes()] == y for row, y in zip(ds.test, ds.test_labels, strict=True))


def test_mnist_labels_from_idx_folders_and_npz(tmp_path):
    train, test = _images(12), _images(5, seed=1)
    y_train, y_test = np.arange(12, dtype=np.uint8) % 10, np.arange(5, dtype=np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte", train)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", test)
    assert data.mnist(tmp_path).test_labels is None  # no label files: no labels
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", y_train, compress=True)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", y_test)
    ds = data.mnist(tmp_path)
    np.testing.assert_array_equal(ds.train_labels, y_train)
    np.testing.assert_array_equal(ds.test_labels, y_test)
    np.savez(tmp_path / "l.npz", x_train=train, x_test=test, y_train=y_train, y_test=y_test)
    np.testing.assert_array_equal(data.mnist(tmp_path / "l.npz").test_labels, y_test)
    np.savez(tmp_path / "bad.npz", x_train=train, x_test=test, y_train=y_train[:3], y_test=y_test)
    with pytest.raises(DataError, match=r"labels of shape \(3,\).*do not fit 12 images"):
        data.mnist(tmp_path / "bad.npz")


def test_one_per_class():
    y = np.array([2, 2, 0, 1, 2, 0, 1, 1])
    np.testing.assert_array_equal(data.one_per_class(y), [2, 3, 0])
    np.testing.assert_array_equal(data.one_per_class(y, 7), [2, 3, 0, 5, 6, 1, 7])
    np.testing.assert_array_equal(data.one_per_class(y, 100), [2, 3, 0, 5, 6, 1, 7, 4])
    assert data.one_per_class(y, 0).size == 0
    np.testing.assert_array_equal(data.one_per_class(None, 3), [0, 1, 2])  # no labels
    ds = data.digits()
    shown = data.one_per_class(ds.test_labels, 10)
    assert sorted(ds.test_labels[shown].tolist()) == list(range(10))
    assert len(set(ds.test_labels[:10].tolist())) < 10  # what it replaces: ds.test[:10]
    with pytest.raises(ValueError, match="give the number of indices"):
        data.one_per_class(None)
    with pytest.raises(ValueError, match="non-negative int"):
        data.one_per_class(y, -1)
    with pytest.raises(ValueError, match="one-dimensional"):
        data.one_per_class(y.reshape(2, 4))
