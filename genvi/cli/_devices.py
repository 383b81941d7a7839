"""``--devices N``: train data-parallel over ``N`` devices (``gv.fit(mesh=N)``).

Checked before any training, as the other options are (one line, exit code 2): more
devices than JAX sees, or a batch that does not split evenly over them. ``0`` or a
negative count is refused by the parser itself. The device count is not a setting of the
run: a checkpoint written on ``N`` devices resumes on any other number.

Imports JAX only when called (the parser stays standard library only).
"""

from __future__ import annotations

from genvi.cli._run_folder import UsageError

HELP = (
    "train data-parallel over this many devices (the first of jax.devices()): each "
    "minibatch is split between them, so --batch-size must be a multiple of it; a "
    "checkpoint resumes on any number of devices. On a CPU, start the command with "
    "XLA_FLAGS=--xla_force_host_platform_device_count=N to split it into N devices "
    "(default: one device)"
)


def mesh(devices: int | None, batch_size: int, what: str = "images") -> int | None:
    """The ``mesh=`` of :func:`genvi.fit` for ``--devices`` (None: one device), or a
    :class:`~genvi.cli._run_folder.UsageError` saying what to change."""
    if devices is None:
        return None
    import jax

    seen = jax.devices()
    if devices > len(seen):
        raise UsageError(
            f"--devices {devices}: JAX sees {len(seen)} device{'s' if len(seen) > 1 else ''} "
            f"({seen[0].platform}); on a CPU, set "
            f"XLA_FLAGS=--xla_force_host_platform_device_count={devices} in the environment "
            f"of the command to split it into {devices} devices"
        )
    if batch_size % devices:
        lower = batch_size - batch_size % devices
        hint = f"{lower} or {lower + devices}" if lower else f"{devices}"
        raise UsageError(
            f"--batch-size {batch_size} does not split over --devices {devices} ({what} per "
            f"device must be a whole number); use a multiple of {devices}, e.g. {hint}"
        )
    return devices


def used(result) -> int:
    """How many devices a :func:`genvi.fit` result's parameters live on (what the run
    actually trained on, reported in the output and in ``metrics.json``)."""
    import jax

    return len(jax.tree.leaves(result.params)[0].sharding.device_set)
