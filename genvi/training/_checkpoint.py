"""Checkpoints: a training state on disk, written atomically, read back exactly.

Format: one NumPy ``.npz`` archive (no pickled objects) holding every array leaf of the
parameters and of the optimizer state, the PRNG keys' data and the history, plus a JSON
description (``meta``): format version, step, key implementation, the tree structure,
path, dtype and shape of every leaf, free-form ``info``, and a SHA-256 digest of all
array bytes. Reading needs a template of the same structure (``like``), so nothing is
ever reconstructed from code stored in the file.

Writing is atomic: the archive is written to a temporary file in the same folder
(``<name>.<8 hex digits>.tmp``, created with the process umask like any other file),
flushed to disk (``fsync``), then renamed over the target with :func:`os.replace`. A
crash at any moment leaves either the previous checkpoint or the new one, never a
partial file; the temporary file a killed process leaves behind is removed by the next
successful write of the same checkpoint.

Reading checks everything: a truncated or corrupt file (the zip archive's CRC-32 of every
member, then a SHA-256 digest of all array bytes), or a structure, shape or dtype
different from the template raise :class:`CheckpointError` naming the file and the first
leaf that differs. Whatever the damage, reading raises :class:`CheckpointError` and
nothing else.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from genvi.core._errors import GenviError
from genvi.training._history import History
from genvi.training._kernel import FitState

FORMAT = "genvi-checkpoint"
VERSION = 1


class CheckpointError(GenviError, ValueError):
    """A checkpoint that is missing, corrupt, truncated, cannot be written, or does not
    match the run.

    Attributes:
        problem: what is wrong, in one sentence.
        advice: what to do about it, in the terms of the Python API (``resume=``); the
            message is ``problem; advice``. The ``genvi`` command prints ``problem`` with
            advice in terms of its own options.
    """

    def __init__(self, problem: str, advice: str = ""):
        super().__init__(f"{problem}; {advice}" if advice else problem)
        self.problem = problem
        self.advice = advice


_AFRESH = "resume from another checkpoint, or start afresh without resume="


class Checkpoint(NamedTuple):
    """A checkpoint read back by :func:`load_checkpoint`.

    Attributes:
        state: the :class:`~genvi.training.FitState` (``opt_state`` is ``None`` when no
            optimizer-state template was given).
        data_key: the key of the minibatch shuffles (``None`` if none was saved).
        history: the :class:`~genvi.training.History` up to ``state.step`` (or ``None``).
        info: the free-form JSON metadata saved with it.
    """

    state: FitState
    data_key: Any
    history: History | None
    info: dict


def _describe(tree) -> dict:
    flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
    return {
        "treedef": str(treedef),
        "leaves": [
            [jax.tree_util.keystr(p), str(jnp.asarray(x).dtype), list(np.shape(x))] for p, x in flat
        ],
    }


def _to_numpy(x) -> np.ndarray:
    a = np.ascontiguousarray(np.asarray(x))
    return a if a.dtype.kind in "biufc" else a.view(np.uint8)


def _key_data(key):
    return np.asarray(jax.random.key_data(key)), str(jax.random.key_impl(key))


def _digest(arrays: dict) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = arrays[name]
        h.update(f"{name}:{a.dtype}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _fsync_folder(folder: str) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a folder
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _temporary_pattern(path: str) -> re.Pattern:
    # ours: 8 hex digits; older genvi versions used tempfile.mkstemp (8 of [a-z0-9_])
    return re.compile(re.escape(os.path.basename(path)) + r"\.[A-Za-z0-9_]{8}\.tmp")


def _create_temporary(path: str) -> tuple[int, str]:
    """A new temporary file beside ``path``, opened for writing. Its mode is 0o666 less
    the process umask, as for any file the process creates (``tempfile.mkstemp`` would
    force 0o600, and the checkpoint would keep it after the rename)."""
    folder = os.path.dirname(os.path.abspath(path))
    for _ in range(100):
        tmp = os.path.join(folder, f"{os.path.basename(path)}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot find a free temporary name beside {path!r}")


def _remove_stray_temporaries(path: str, keep: str | None = None) -> None:
    """Remove the temporary files of ``path`` that a killed write left behind."""
    folder = os.path.dirname(os.path.abspath(path))
    pattern = _temporary_pattern(path)
    with contextlib.suppress(OSError):
        for name in os.listdir(folder):
            full = os.path.join(folder, name)
            if pattern.fullmatch(name) and full != keep:
                with contextlib.suppress(OSError):
                    os.unlink(full)


def atomic_write(path, write) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it, and rename it
    to ``path``. On any error the temporary file is removed and ``path`` is untouched;
    after a successful write, temporary files of ``path`` left by a killed process are
    removed."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_folder(folder)
    _remove_stray_temporaries(path)


def check_writable(path) -> None:
    """Raise :class:`CheckpointError` now, before any training, if a checkpoint cannot
    be written at ``path``: it is a folder, its folder cannot be created, or that folder
    is not writable (checked by creating and removing a temporary file there)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise CheckpointError(
            f"checkpoint={path!r} is a folder",
            f"give the path of a file, e.g. {os.path.join(path, 'checkpoint.npz')!r}",
        )
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise CheckpointError(
            f"cannot create the folder {folder!r} of checkpoint={path!r} "
            f"({e.strerror or type(e).__name__})",
            "give a path in a folder that exists or can be created",
        ) from None
    try:
        fd, tmp = _create_temporary(path)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise CheckpointError(
            f"cannot write checkpoint={path!r}: creating a file in {folder!r} fails "
            f"({e.strerror or type(e).__name__})",
            "give a path in a writable folder",
        ) from None


def save_checkpoint(
    path, state: FitState, *, data_key=None, history: History | None = None, info=None
) -> None:
    """Write ``state`` (and the data key, history and JSON-able ``info``) to ``path``,
    atomically.

    Examples:
        >>> state = gv.training.init({"w": jnp.arange(3.0)}, optax.adam(1e-2), jax.random.key(0))
        >>> gv.training.save_checkpoint("ckpt.npz", state)
        >>> ckpt = gv.training.load_checkpoint("ckpt.npz", {"w": jnp.zeros(3)})
        >>> ckpt.state.params["w"]
        Array([0., 1., 2.], dtype=float32)
    """
    arrays: dict[str, np.ndarray] = {}
    for i, x in enumerate(jax.tree_util.tree_leaves(state.params)):
        arrays[f"params_{i}"] = _to_numpy(x)
    for i, x in enumerate(jax.tree_util.tree_leaves(state.opt_state)):
        arrays[f"opt_state_{i}"] = _to_numpy(x)
    arrays["key"], impl = _key_data(state.key)
    data_impl = None
    if data_key is not None:
        arrays["data_key"], data_impl = _key_data(data_key)
    if history is not None:
        for name, a in history.as_dict().items():
            arrays[f"history_{name}"] = np.asarray(a)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "step": int(state.step),
        "key_impl": impl,
        "data_key_impl": data_impl,
        "params": _describe(state.params),
        "opt_state": _describe(state.opt_state),
        "history": history is not None,
        "info": info or {},
        "sha256": _digest(arrays),
    }
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    atomic_write(path, lambda f: np.savez(f, **arrays))  # pyright: ignore[reportArgumentType]


def _corrupt(path: str, detail: str) -> CheckpointError:
    return CheckpointError(f"checkpoint {path!r} is corrupt or truncated ({detail})", _AFRESH)


def _read(path) -> tuple[dict, dict]:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"no checkpoint at {path!r} (the file does not exist)")
    if os.path.isdir(path):
        raise CheckpointError(f"{path!r} is a folder, not a checkpoint file")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
        meta = arrays.pop("meta", None)
        if meta is not None:
            meta = json.loads(meta.tobytes().decode())
    except Exception as e:  # noqa: BLE001 - zip, npy and JSON parsers raise many kinds
        # (BadZipFile, ValueError, EOFError, NotImplementedError for a damaged compression
        # field, RuntimeError for a damaged encryption flag, ...): every one means the
        # same thing here.
        raise _corrupt(path, f"{type(e).__name__}: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path!r} is not a genvi checkpoint (no genvi metadata)")
    missing = [k for k in ("step", "key_impl", "params", "opt_state", "sha256") if k not in meta]
    if missing:
        raise _corrupt(path, f"its metadata lacks {missing}")
    if meta.get("version") != VERSION:
        raise CheckpointError(
            f"checkpoint {path!r} has format version {meta.get('version')!r}; this genvi "
            f"reads version {VERSION}"
        )
    if _digest(arrays) != meta.get("sha256"):
        raise _corrupt(path, "its contents do not match the digest written with it")
    return meta, arrays


def read_meta(path) -> dict:
    """The verified JSON description of the checkpoint at ``path`` (its ``step``, its
    ``info`` and the layout of its leaves), without a template."""
    try:
        return _read(path)[0]
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - see load_checkpoint
        raise _corrupt(os.fspath(path), f"{type(e).__name__}: {e}") from None


def _restore(path, what: str, stored: dict, arrays: dict, like):
    expected = _describe(like)
    got, want = stored["leaves"], expected["leaves"]
    got_paths, want_paths = [g[0] for g in got], [w[0] for w in want]
    if got_paths != want_paths:
        missing = [p for p in want_paths if p not in got_paths]
        extra = [p for p in got_paths if p not in want_paths]
        detail = []
        if missing:
            detail.append("it lacks " + ", ".join(f"{what}{p}" for p in missing[:3]))
        if extra:
            detail.append(
                "it has " + ", ".join(f"{what}{p}" for p in extra[:3]) + " not in the template"
            )
        if not detail:
            detail.append("its leaves are in a different order")
        raise CheckpointError(
            f"checkpoint {path!r} does not match the {what} given: {'; '.join(detail)} "
            f"(checkpoint structure {stored['treedef']}, given {expected['treedef']})"
        )
    for (p, dt, shape), (_, wdt, wshape) in zip(got, want, strict=True):
        if shape != wshape or dt != wdt:
            raise CheckpointError(
                f"checkpoint {path!r} does not match the {what} given: {what}{p} is "
                f"{dt}{shape} in the checkpoint but {wdt}{wshape} in the template"
            )
    if stored["treedef"] != expected["treedef"]:
        raise CheckpointError(
            f"checkpoint {path!r} does not match the {what} given: structure "
            f"{stored['treedef']} in the checkpoint, {expected['treedef']} given"
        )
    leaves = []
    for i, (_, dt, shape) in enumerate(got):
        a = arrays[f"{what}_{i}"]
        if a.dtype != np.dtype(dt):
            a = a.view(jnp.dtype(dt))
        leaves.append(jnp.asarray(a.reshape(shape)))
    return jax.tree_util.tree_unflatten(jax.tree.structure(like), leaves)


def load_checkpoint(path, params_like, opt_state_like=None) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (or by :func:`genvi.fit`).

    ``params_like`` (and ``opt_state_like``, if the optimizer state is wanted) are
    templates: pytrees of the same structure, shapes and dtypes, e.g. freshly initialized
    parameters and ``optimizer.init(params)``. Anything that differs raises
    :class:`CheckpointError`, as does a corrupt or truncated file.

    Examples:
        >>> opt = optax.adam(1e-2)
        >>> params = {"w": jnp.arange(3.0)}
        >>> gv.training.save_checkpoint("ckpt.npz", gv.training.init(params, opt, jax.random.key(0)))
        >>> ckpt = gv.training.load_checkpoint("ckpt.npz", params, opt.init(params))
        >>> int(ckpt.state.step), ckpt.state.params["w"].shape
        (0, (3,))
        >>> gv.training.load_checkpoint("ckpt.npz", {"w": jnp.zeros(4)})
        Traceback (most recent call last):
        ...
        genvi.training._checkpoint.CheckpointError: ...
    """
    path = os.fspath(path)
    try:
        return _load(path, params_like, opt_state_like)
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - metadata that parses but is damaged inside
        raise _corrupt(path, f"{type(e).__name__}: {e}") from None


def _load(path: str, params_like, opt_state_like) -> Checkpoint:
    meta, arrays = _read(path)
    params = _restore(path, "params", meta["params"], arrays, params_like)
    opt_state = None
    if opt_state_like is not None:
        opt_state = _restore(path, "opt_state", meta["opt_state"], arrays, opt_state_like)
    key = jax.random.wrap_key_data(jnp.asarray(arrays["key"]), impl=meta["key_impl"])
    data_key = None
    if meta.get("data_key_impl") is not None:
        data_key = jax.random.wrap_key_data(
            jnp.asarray(arrays["data_key"]), impl=meta["data_key_impl"]
        )
    history = None
    if meta.get("history"):
        history = History(*(arrays[f"history_{name}"] for name in History._fields))
    step = jnp.asarray(meta["step"], jnp.int32)
    return Checkpoint(FitState(step, params, opt_state, key), data_key, history, meta["info"])
