"""``gv.fit`` on several processes (``jax.distributed``): agreeing, and assembling the data.

JAX runs one program per process (multi-controller): every process calls ``gv.fit`` with
the same arguments, except ``data``, which is that process's share of the data set.
Each collective below (``process_allgather``) must be reached by every process; they are
placed so that a mistake made on one process (a different ``steps``, a share of another
size, an unwritable checkpoint on process 0) is reported by *every* process as the same
``ValueError`` instead of leaving the others waiting.

The global data set is the concatenation of the shares in the order of the mesh's data
axis (process order for ``mesh=<count>``); every share has the same number of points.
The minibatches are drawn from the global data set exactly as on one process, so the run
is the one a single process would make on the concatenated data.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import TypeVar

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from genvi.training._batches import prepare_data

_T = TypeVar("_T")


def count() -> int:
    """The number of processes of the JAX runtime (1 unless ``jax.distributed`` is up)."""
    return jax.process_count()


def _gather(values) -> np.ndarray:
    """``values`` (a 1-D int32 vector) from every process: ``[process, ...]``."""
    return np.asarray(multihost_utils.process_allgather(np.asarray(values, np.int32)))


def digest(*objects) -> int:
    """A 31-bit digest of arrays and JSON-able values (to compare them across processes)."""
    h = hashlib.sha256()
    for obj in objects:
        for leaf in jax.tree_util.tree_leaves(obj):
            if isinstance(leaf, (jax.Array, np.ndarray)) or np.isscalar(leaf):
                if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(
                    leaf.dtype, jax.dtypes.prng_key
                ):
                    leaf = jax.random.key_data(leaf)
                a = np.ascontiguousarray(np.asarray(leaf))
                h.update(f"{a.dtype}{a.shape}".encode())
                h.update(a.tobytes())
            else:
                h.update(json.dumps(leaf, sort_keys=True, default=str).encode())
        h.update(str(jax.tree.structure(obj)).encode())
    return int.from_bytes(h.digest()[:4], "little") & 0x7FFFFFFF


def all_ok(error: BaseException | None, what: str) -> None:
    """Every process says whether its part of ``what`` went well. If one failed, it
    raises its own error and every other process raises a ``ValueError`` naming it."""
    flags = _gather([0 if error is None else 1])[:, 0]
    if error is not None:
        raise error
    bad = [int(p) for p in np.flatnonzero(flags)]
    if bad:
        who = ", ".join(str(p) for p in bad)
        raise ValueError(
            f"fit: {what} failed on process {who} (see its error); every process stops here"
        )


def agree(named: dict[str, int], shown: frozenset = frozenset()) -> None:
    """Every process must give the same value of each entry of ``named`` (ints or
    digests); otherwise every process raises a ``ValueError`` naming the first entry
    that differs, with each process's value when the entry is in ``shown``."""
    names = list(named)
    table = _gather([named[n] for n in names])
    for i, name in enumerate(names):
        column = table[:, i]
        if (column != column[0]).any():
            if name in shown:
                values = ", ".join(f"process {p}: {int(v)}" for p, v in enumerate(column))
                detail = f" ({values})"
            else:
                differ = [p for p in range(len(column)) if column[p] != column[0]]
                detail = f" (process {differ[0]} differs from process 0)"
            raise ValueError(
                f"fit: the processes disagree on {name}{detail}; with jax.distributed every "
                "process calls gv.fit with the same arguments (the same params, key, steps, "
                "batch_size, ...) and a share of the data of the same size"
            )


def any_process(*flags: bool) -> tuple[bool, ...]:
    """Each flag, true if it is true on any process."""
    table = _gather([int(bool(f)) for f in flags])
    return tuple(bool(x) for x in np.any(table, axis=0).tolist())


def check_spans(mesh: Mesh, axis: str | None) -> None:
    """With several processes, the data axis must split the data between the processes:
    each process's devices hold an equal, contiguous block of the data axis, and no two
    processes the same block (each process then feeds the points of its block)."""
    n = count()
    if axis is None:
        raise ValueError(
            f"fit: {n} processes train data-parallel, so the mesh needs a data axis spanning "
            f"them (axes {tuple(mesh.axis_names)} have none named 'data'); e.g. "
            "mesh=jax.device_count()"
        )
    owners = {d.process_index for d in mesh.devices.flatten().tolist()}
    if owners != set(range(n)):
        missing = sorted(set(range(n)) - owners)
        raise ValueError(
            f"fit: the mesh has no device of process {missing[0]} of {n}; with "
            "jax.distributed the mesh must span every process, e.g. mesh=jax.device_count() "
            f"(= {jax.device_count()} here)"
        )
    size = mesh.shape[axis]
    where = mesh.axis_names.index(axis)
    blocks: dict[int, set] = {}
    for idx, device in np.ndenumerate(mesh.devices):
        blocks.setdefault(device.process_index, set()).add(idx[where])
    per = size // n
    for p, coords in sorted(blocks.items()):
        lo = min(coords)
        if size % n or coords != set(range(lo, lo + per)):
            raise ValueError(
                f"fit: the mesh's data axis {axis!r} (size {size}) does not span the {n} "
                f"processes evenly: process {p}'s devices sit at positions {sorted(coords)} "
                f"of it; each process must hold its own contiguous block of {size}/{n} "
                "positions (put the data axis first and order the devices by process, as "
                "mesh=jax.device_count() does)"
            )
    if len(set().union(*blocks.values())) != size:  # blocks of size/n each: they overlap
        raise ValueError(
            f"fit: two processes hold the same block of the mesh's data axis {axis!r}; the "
            "data axis must span the processes (the other axes may not)"
        )


def everywhere(processes: int, what: str, fn: Callable[..., _T], *args) -> _T:
    """``fn(*args)``; with several processes, each learns whether any failed (and then
    raises), so that none is left waiting for the others."""
    if processes == 1:
        return fn(*args)
    try:
        out = fn(*args)
    except Exception as e:
        all_ok(e, what)  # raises e
        raise
    all_ok(None, what)
    return out


def on_writer(processes: int, what: str, fn: Callable, *args) -> None:
    """``fn(*args)`` on process 0 alone, the others learning whether it failed."""
    if processes == 1:
        fn(*args)
    elif jax.process_index() == 0:
        everywhere(processes, what, fn, *args)
    else:
        all_ok(None, what)


#: The arguments of fit compared across processes as numbers, shown when they differ.
_COUNTS = ("steps", "chunk", "batch_size", "max_consecutive_skips", "checkpoint_every")


def agree_on_args(data, state, key, **args) -> None:
    """With several processes: a valid data share on each, and the same arguments
    everywhere (``args``: fit's other arguments, by name)."""
    error = None
    if data is None:
        error = ValueError("fit: with several processes, each gives its share of data=")
    else:
        try:
            prepare_data(data, None)
        except ValueError as e:
            error = e
    all_ok(error, "checking the data share")
    named = {name: -1 if args[name] is None else int(args[name]) for name in _COUNTS}
    named |= {
        "maximize": int(bool(args["maximize"])),
        "on_nonfinite": digest(args["on_nonfinite"]),
        "checkpoint (given or not)": int(args["checkpoint"] is not None),
        "resume (given or not)": int(args["resume"] is not None),
        "key": digest(key),
        "params": digest(state.params),
        "the optimizer's state": digest(state.opt_state),
        "settings": digest(args["settings"]),
        "metadata": digest(args["metadata"]),
    }
    agree(named, shown=frozenset(_COUNTS) | {"maximize"})


def global_data(local, mesh: Mesh, axis: str):
    """The global data set, as arrays sharded over the data axis, from this process's
    share ``local`` (same structure, shapes and dtypes on every process; checked)."""
    leaves = jax.tree_util.tree_leaves(local)
    n_local = int(np.shape(leaves[0])[0])
    agree(
        {
            "the number of data points of each process's share": n_local,
            "the structure, shapes and dtypes of the data": digest(
                [(np.shape(x)[1:], str(np.asarray(x).dtype)) for x in leaves],
                str(jax.tree.structure(local)),
            ),
        },
        shown=frozenset({"the number of data points of each process's share"}),
    )
    per_process = mesh.shape[axis] // count()
    if n_local % per_process:
        raise ValueError(
            f"fit: each process's share of the data ({n_local} points) must split over its "
            f"{per_process} positions of the mesh's data axis {axis!r}; give every process a "
            f"multiple of {per_process} points"
        )
    sharding = NamedSharding(mesh, PartitionSpec(axis))
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(
            sharding, np.asarray(x), (n_local * count(), *np.shape(x)[1:])
        ),
        local,
    )


def gather_to_host(data):
    """The whole global data set on every host, as NumPy arrays (to fingerprint it)."""
    return jax.tree.map(
        lambda x: np.asarray(multihost_utils.process_allgather(x, tiled=True)), data
    )


__all__ = [
    "count",
    "digest",
    "all_ok",
    "agree",
    "any_process",
    "check_spans",
    "everywhere",
    "on_writer",
    "agree_on_args",
    "global_data",
    "gather_to_host",
]
