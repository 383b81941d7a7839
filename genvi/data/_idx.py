"""Reading IDX files, the format MNIST is distributed in (optionally gzipped).

An IDX file is a 4-byte magic number ``00 00 T D`` (``T``: element type, ``D``: number
of dimensions), ``D`` big-endian uint32 sizes, then the elements, big-endian, in
row-major order.
"""

from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

from genvi.data._common import DataError

_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise DataError(f"no such file: {path!r}") from None
    except IsADirectoryError:
        raise DataError(f"{path!r} is a folder, expected an IDX file") from None
    except OSError as e:
        raise DataError(f"cannot read {path!r}: {e}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path!r} is a damaged gzip file ({e})") from None
    return raw


def read_idx(path) -> np.ndarray:
    """The array stored in an IDX file (``.gz`` compressed or not), in native byte order.

    Raises :class:`~genvi.data.DataError` naming the file when it is missing, not IDX,
    or shorter or longer than its header says.

    Examples:
        >>> from genvi import data
        >>> header = bytes([0, 0, 0x08, 2]) + (2).to_bytes(4, "big") + (3).to_bytes(4, "big")
        >>> with open("tiny-idx2-ubyte", "wb") as f:
        ...     _ = f.write(header + bytes(range(6)))
        >>> data.read_idx("tiny-idx2-ubyte")
        array([[0, 1, 2],
               [3, 4, 5]], dtype=uint8)
    """
    path = os.fspath(path)
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _TYPES or raw[3] == 0:
        raise DataError(
            f"{path!r} is not an IDX file (its first bytes {raw[:4].hex(' ') or 'are missing'}; "
            "an IDX file starts with 00 00, a type code and the number of dimensions)"
        )
    dtype, ndim = _TYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(
            f"{path!r} is truncated: its header needs {header} bytes, it has {len(raw)}"
        )
    shape = tuple(int(s) for s in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        word = "truncated" if len(raw) - header < expected else "too long"
        raise DataError(
            f"{path!r} is {word}: its header says shape {shape} of {dtype.name}, i.e. "
            f"{expected} bytes of data, but it holds {len(raw) - header}"
        )
    a = np.frombuffer(raw, dtype, offset=header).reshape(shape)
    return a.astype(dtype.newbyteorder("="))
