"""Minibatches for :func:`genvi.fit`: a fresh shuffle of the data every epoch.

With ``n`` data points and batch size ``b``, an epoch is ``n // b`` steps. Epoch ``e``
visits the data in the order of a random permutation drawn from
``fold_in(data_key, e)``; step ``j`` of the epoch takes positions ``[j b, (j + 1) b)``
of it. Every point is therefore seen exactly once per epoch when ``b`` divides ``n``;
otherwise the ``n mod b`` points at the end of the permutation sit that epoch out (a
different few each epoch), so every batch has the same shape and the step compiles once.

The batch of step ``s`` depends only on ``(data_key, s)``: a run resumed from a
checkpoint sees exactly the batches the uninterrupted run would have seen.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Batching(NamedTuple):
    """How a dataset is cut into minibatches (static, hashable)."""

    n: int  # number of data points
    batch_size: int  # points per step; equal to n for full-batch steps
    shuffle: bool  # False for full-batch steps (every step sees all the data in order)

    @property
    def steps_per_epoch(self) -> int:
        return self.n // self.batch_size


def prepare_data(data, batch_size: int | None) -> tuple[Any, Batching]:
    """Data as JAX arrays sharing a leading axis, and its :class:`Batching`."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(data)
    if not leaves:
        raise ValueError("fit: data has no array leaves")
    sizes = {}
    for path, leaf in leaves:
        shape = np.shape(leaf)
        if len(shape) == 0:
            raise ValueError(
                f"fit: data{jax.tree_util.keystr(path)} is a scalar; every data leaf needs a "
                "leading axis over data points"
            )
        sizes[jax.tree_util.keystr(path) or "data"] = shape[0]
    if len(set(sizes.values())) > 1:
        listing = ", ".join(f"{k or 'data'}: {v}" for k, v in sizes.items())
        raise ValueError(f"fit: data leaves disagree on the number of data points ({listing})")
    n = next(iter(sizes.values()))
    return jax.tree.map(jnp.asarray, data), make_batching(n, batch_size)


def make_batching(n: int, batch_size: int | None) -> Batching:
    """The :class:`Batching` of ``n`` data points in minibatches of ``batch_size`` (None:
    full batch), checking the batch size."""
    if n < 1:
        raise ValueError("fit: data has no data points (leading axis of size 0)")
    if batch_size is None:
        return Batching(n, n, False)
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"fit: batch_size must be a positive int, got {batch_size!r}")
    if batch_size > n:
        raise ValueError(
            f"fit: batch_size={batch_size} is larger than the data ({n} points); use "
            f"batch_size <= {n}, or batch_size=None for full-batch steps"
        )
    return Batching(n, int(batch_size), True)


def epoch_permutation(data_key, epoch, n: int):
    """The visiting order of epoch ``epoch``."""
    return jax.random.permutation(jax.random.fold_in(data_key, epoch), n)


def batch_indices(data_key, step, batching: Batching, perm=None):
    """The data indices of step ``step`` (``perm``: this epoch's permutation, if known)."""
    if not batching.shuffle:
        return jnp.arange(batching.n)
    epoch, j = jnp.divmod(step, batching.steps_per_epoch)
    if perm is None:
        perm = epoch_permutation(data_key, epoch, batching.n)
    return jax.lax.dynamic_slice(perm, (j * batching.batch_size,), (batching.batch_size,))


def take(data, idx):
    """The data points at ``idx`` (every leaf indexed on its leading axis)."""
    return jax.tree.map(lambda a: a[idx], data)


def fingerprint(data) -> str:
    """A short hash of the data's shapes, dtypes and bytes (checked when resuming)."""
    import hashlib

    h = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(data)[0]:
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{jax.tree_util.keystr(path)}:{a.dtype}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]
