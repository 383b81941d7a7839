"""Data-parallel training: ``gv.fit(..., mesh=...)`` on JAX's SPMD partitioner.

Each step's minibatch is sharded along the mesh's data axis; the parameters, the
optimizer state and the keys are replicated. Nothing else changes: the compiled chunk is
the same program, with a sharding constraint on the minibatch and the shardings of its
inputs and outputs given to ``jax.jit``, and XLA partitions it (each device computes the
objective's terms of its share of the minibatch; the compiler inserts the reduction of
the gradient across devices). No hand-written all-reduce: for an objective that is a sum
over data points, the partitioner's reduction is the one ``shard_map`` would be written
with, and it also handles objectives that are not (a mean, a logsumexp over the batch).

Minibatches, shuffling, checkpoints, resume, non-finite guards and the history are those
of one device: the same key draws the same minibatches (the permutation is computed, not
sharded), and JAX's partitionable threefry draws the same random numbers whatever the
sharding, so the parameters agree with a one-device run up to the reassociation of the
cross-device sum.
"""

from __future__ import annotations

import numbers

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

#: The name of the data axis of the mesh ``fit`` makes from a device count.
DATA_AXIS = "data"


def resolve_mesh(mesh) -> tuple[Mesh, str]:
    """``(mesh, data axis name)`` from a ``jax.sharding.Mesh`` (its axis ``"data"``, or its
    only axis) or a device count (the first ``n`` devices, in a 1-D mesh)."""
    if isinstance(mesh, Mesh):
        names = tuple(mesh.axis_names)
        if DATA_AXIS in names:
            return mesh, DATA_AXIS
        if len(names) == 1:
            return mesh, names[0]
        raise ValueError(
            f"fit: the mesh has axes {names}; name the data-parallel one {DATA_AXIS!r} "
            "(the others are left to the objective, e.g. for particles)"
        )
    if isinstance(mesh, bool) or not isinstance(mesh, numbers.Integral) or mesh < 1:
        raise ValueError(
            f"fit: mesh must be a jax.sharding.Mesh or a device count >= 1, got {mesh!r}"
        )
    devices = jax.devices()
    mesh = int(mesh)
    if mesh > len(devices):
        raise ValueError(
            f"fit: mesh={mesh} asks for {mesh} devices but JAX sees {len(devices)} "
            f"({devices[0].platform}); on a CPU, start Python with "
            f"XLA_FLAGS=--xla_force_host_platform_device_count={mesh} to split it into "
            f"{mesh} devices"
        )
    return Mesh(devices[:mesh], (DATA_AXIS,)), DATA_AXIS


def check_batch(batch: int, mesh: Mesh, axis: str) -> None:
    """The minibatch must split evenly over the data axis."""
    size = mesh.shape[axis]
    if batch % size:
        raise ValueError(
            f"fit: the minibatch of {batch} points does not split over the {size} devices "
            f"of the mesh's {axis!r} axis; use a batch_size that is a multiple of {size} "
            f"(e.g. {max(size, batch - batch % size)}), or a mesh whose data axis divides "
            f"{batch}"
        )


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def sharded(mesh: Mesh, axis: str) -> NamedSharding:
    """Leading axis split over ``axis``; the others whole."""
    return NamedSharding(mesh, PartitionSpec(axis))


def data_sharding(data, mesh: Mesh, axis: str):
    """How the whole data set is placed: split along its leading axis when that divides
    evenly, else replicated (each step's minibatch is sharded either way)."""
    leaves = jax.tree_util.tree_leaves(data)
    n = leaves[0].shape[0] if leaves else 0
    return sharded(mesh, axis) if n % mesh.shape[axis] == 0 else replicated(mesh)


__all__ = ["DATA_AXIS", "resolve_mesh", "check_batch", "replicated", "sharded", "data_sharding"]
