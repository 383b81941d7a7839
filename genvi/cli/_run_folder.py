"""The run folder (``--out``) of a training subcommand: one run per folder.

- A folder that holds a checkpoint is never replaced silently: the command continues that
  run (``--resume``) or replaces it (``--overwrite``), and refuses to guess.
- The run's settings (those that change its meaning: objective, sizes, learning rate,
  seed, data) and its target number of steps are stored with the checkpoint
  (:func:`genvi.fit`'s ``settings`` and ``metadata``). ``--resume`` takes the options left
  out from there, and refuses an option given with another value, naming both.
- Messages speak of the command's options, never of :func:`genvi.fit`'s arguments.

Standard library only at import time (genvi.training is imported when a checkpoint is
read).
"""

from __future__ import annotations

import os
from typing import Any

CHECKPOINT = "checkpoint.npz"


class UsageError(Exception):
    """A bad argument or data file: reported as one line, exit code 2."""


def checkpoint_path(out: str) -> str:
    return os.path.join(out, CHECKPOINT)


def prepare(out: str, resume: bool, overwrite: bool, command: str) -> str:
    """Check ``--out`` against ``--resume`` / ``--overwrite`` and create it; returns the
    checkpoint's path."""
    if resume and overwrite:
        raise UsageError(
            "--resume and --overwrite exclude each other: --resume continues the run in "
            "--out, --overwrite replaces it"
        )
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out!r} is a file, not a folder")
    ckpt = checkpoint_path(out)
    if resume and not os.path.exists(ckpt):
        raise UsageError(f"--resume: there is no checkpoint to resume from at {ckpt!r}")
    if os.path.exists(ckpt) and not (resume or overwrite):
        raise UsageError(
            f"--out {out!r} already holds a run (its {CHECKPOINT} is at {describe(ckpt)}); "
            f"continue it with "
            f"`genvi {command} --resume --out {out}`, replace it with --overwrite, or choose "
            "another --out"
        )
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create the output folder {out!r}: {e.strerror or e}") from None
    return ckpt


def describe(ckpt: str) -> str:
    """``"step 1200 of 5000"``, as far as the checkpoint can be read."""
    try:
        step, _, metadata = read(ckpt)
    except UsageError:
        return "a step that cannot be read (the file is damaged)"
    target = metadata.get("steps")
    return f"step {step}" + (f" of {target}" if target is not None else "")


def read(ckpt: str) -> tuple[int, dict | None, dict]:
    """The checkpoint's step, its settings (None if it holds none) and its metadata."""
    from genvi.training import CheckpointError
    from genvi.training._checkpoint import read_meta

    try:
        meta = read_meta(ckpt)
    except CheckpointError as e:
        raise UsageError(
            f"--resume: {e.problem}; start afresh with --overwrite, or choose another --out"
        ) from None
    info = meta.get("info") or {}
    settings = info.get("settings")
    metadata = info.get("metadata") or {}
    return int(meta["step"]), settings if isinstance(settings, dict) else None, metadata


def _show(flag: str, value: Any) -> str:
    if value is None:
        return f"no {flag}"
    if value is True:
        return flag
    return f"{flag} {value}"


def merge(out: str, current: dict, given: set, saved: dict | None, flags: dict) -> dict:
    """The settings of a resumed run: ``saved`` for the names not ``given`` on the command
    line; a name given with a value other than the saved one is refused. ``flags`` maps
    each setting's name to its option."""
    if saved is None:
        return dict(current)
    merged = dict(current)
    for name, flag in flags.items():
        if name not in saved:
            continue
        if name in given and current[name] != saved[name]:
            raise UsageError(
                f"--resume: the run in {out!r} was trained with {_show(flag, saved[name])}, "
                f"not {_show(flag, current[name])}; leave {flag} out to continue it as it "
                "was, or start a new run with --overwrite (it replaces that one) or another "
                "--out"
            )
        merged[name] = saved[name]
    return merged


def remove_run(out: str, files) -> None:
    """Remove the files of the run in ``out`` (for ``--overwrite``)."""
    for name in files:
        path = os.path.join(out, name)
        try:
            if os.path.isfile(path):
                os.unlink(path)
        except OSError as e:
            raise UsageError(f"--overwrite: cannot remove {path!r}: {e.strerror or e}") from None


def interrupted_message(command: str, out: str) -> str:
    """What a Ctrl-C leaves behind, and how to go on (``--resume`` only if it can)."""
    ckpt = checkpoint_path(out)
    if os.path.exists(ckpt):
        return (
            f"genvi {command}: interrupted; the checkpoint {ckpt} keeps the run at "
            f"{describe(ckpt)}; continue with: genvi {command} --resume --out {out}"
        )
    return f"genvi {command}: interrupted before the first checkpoint was written; nothing was kept"
