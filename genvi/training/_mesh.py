"""Training over devices: ``gv.fit(..., mesh=...)`` on JAX's SPMD partitioner.

Two axes of the mesh have a meaning, by name:

- ``"data"`` (or the only axis of a 1-D mesh not named ``"particles"``): each step's
  minibatch is sharded along it (data parallelism);
- ``"particles"``: the particles of the objective are sharded along it (particle
  parallelism; :func:`genvi.objectives.particle_keys` lays them out, see
  :mod:`genvi.core._particles`). ``fit`` compiles the step under ``jax.set_mesh(mesh)``
  so that the objective sees the axis.

The parameters, the optimizer state and the keys are replicated. Nothing else changes:
the compiled chunk is the same program, with a sharding constraint on the minibatch and
the shardings of its inputs and outputs given to ``jax.jit``, and XLA partitions it (each
device computes the objective's terms of its share of the minibatch and of the
particles; the compiler inserts the reductions across devices). No hand-written
all-reduce: for an objective that is a sum over data points, the partitioner's reduction
is the one ``shard_map`` would be written with, and it also handles objectives that are
not (a mean, a logsumexp over the batch or the particles).

Minibatches, shuffling, checkpoints, resume, non-finite guards and the history are those
of one device: the same key draws the same minibatches (the permutation is computed, not
sharded), and JAX's partitionable threefry draws the same random numbers whatever the
sharding, so the parameters agree with a one-device run up to the reassociation of the
cross-device sums. On several processes (``jax.distributed``), see
:mod:`genvi.training._processes`.
"""

from __future__ import annotations

import numbers

import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from genvi.core._particles import PARTICLES_AXIS
from genvi.training import _processes

#: The name of the data axis of the mesh ``fit`` makes from a device count.
DATA_AXIS = "data"


def _auto(mesh: Mesh) -> Mesh:
    """The mesh with every axis of type Auto (``jax.make_mesh`` makes Explicit axes; fit
    lets the partitioner propagate shardings, which needs Auto ones)."""
    if all(t == AxisType.Auto for t in mesh.axis_types):
        return mesh
    return Mesh(mesh.devices, mesh.axis_names, axis_types=(AxisType.Auto,) * mesh.devices.ndim)


def resolve_mesh(mesh) -> tuple[Mesh, str | None]:
    """``(mesh, data axis name or None)`` from a ``jax.sharding.Mesh`` (its axis
    ``"data"``, or its only axis unless that is ``"particles"``) or a device count (the
    first ``n`` devices, in a 1-D mesh; with several processes, all of them)."""
    if isinstance(mesh, Mesh):
        names = tuple(mesh.axis_names)
        if DATA_AXIS in names:
            axis = DATA_AXIS
        elif len(names) == 1 and names[0] != PARTICLES_AXIS:
            axis = names[0]
        elif PARTICLES_AXIS in names and len(names) == 1:
            axis = None
        else:
            raise ValueError(
                f"fit: the mesh has axes {names}; name the data-parallel one {DATA_AXIS!r} "
                f"and the particle-parallel one {PARTICLES_AXIS!r} (other axes are left to "
                "the objective)"
            )
        mesh = _auto(mesh)
    else:
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
        if _processes.count() > 1 and mesh != len(devices):
            raise ValueError(
                f"fit: with {_processes.count()} processes, mesh=<count> must be every device "
                f"of every process, mesh={len(devices)} (jax.device_count()), so that each "
                f"process feeds its share of the data; got mesh={mesh}. For another layout "
                "pass a jax.sharding.Mesh"
            )
        mesh, axis = Mesh(devices[:mesh], (DATA_AXIS,)), DATA_AXIS
    if _processes.count() > 1:
        _processes.check_spans(mesh, axis)
    return mesh, axis


def check_batch(batch: int, mesh: Mesh, axis: str | None) -> None:
    """The minibatch must split evenly over the data axis."""
    if axis is None:
        return
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


def sharded(mesh: Mesh, axis: str | None) -> NamedSharding:
    """Leading axis split over ``axis``; the others whole (replicated if ``axis`` is None)."""
    return NamedSharding(mesh, PartitionSpec(axis))


def data_sharding(data, mesh: Mesh, axis: str | None):
    """How the whole data set is placed: split along its leading axis when that divides
    evenly (always, with several processes), else replicated (each step's minibatch is
    sharded either way)."""
    if axis is None:
        return replicated(mesh)
    leaves = jax.tree_util.tree_leaves(data)
    n = leaves[0].shape[0] if leaves else 0
    return sharded(mesh, axis) if n % mesh.shape[axis] == 0 else replicated(mesh)


def _is_key(x) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def put(tree, sharding: NamedSharding):
    """``jax.device_put(tree, sharding)``, also for a mesh that spans several processes
    (PRNG keys go through their key data, which ``device_put`` can place there). Every
    process must hold the same values."""

    def one(x):
        if _is_key(x):
            data = jax.device_put(jax.random.key_data(x), sharding)
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
        return jax.device_put(x, sharding)

    return jax.tree.map(one, tree)


__all__ = [
    "DATA_AXIS",
    "resolve_mesh",
    "check_batch",
    "replicated",
    "sharded",
    "data_sharding",
    "put",
]
