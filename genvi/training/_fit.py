"""``gv.fit``: the training loop, over any optax optimizer.

Layers (as in Blackjax): a pure kernel (:func:`~genvi.training.init`,
:func:`~genvi.training.make_step`) and this convenience wrapper, which runs the step in
compiled ``jax.lax.scan`` chunks (:mod:`genvi.training._chunks`), draws minibatches,
guards against non-finite values, writes checkpoints, shows progress, keeps the history
(:mod:`genvi.training._loop`), and stops cleanly on Ctrl-C
(:mod:`genvi.training._interrupt`) or on a genvi error raised inside a compiled step.
This module checks the arguments, resumes, compiles, and hands over to the loop.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
import optax

from genvi.training import _interrupt, _mesh, _processes
from genvi.training._batches import Batching, fingerprint, prepare_data
from genvi.training._checkpoint import (
    CheckpointError,
    check_writable,
    load_checkpoint,
)
from genvi.training._chunks import compiled_chunk
from genvi.training._history import History
from genvi.training._kernel import as_typed_key, init, prepare_params
from genvi.training._loop import Loop, quiet_callback_logs
from genvi.training._progress import compiling, interactive


class ResumeWarning(UserWarning):
    """A resumed run was given a setting that the checkpoint overrides (e.g. another key)."""


class FitResult(NamedTuple):
    """What :func:`fit` returns.

    Attributes:
        params: the trained parameters (the last good ones if the run stopped on a
            non-finite value or an error).
        opt_state: the optimizer state that goes with them.
        key: the PRNG key of the next step.
        step: the number of steps taken in all (including those before a resume).
        history: the :class:`~genvi.training.History` of every step taken.
        stopped_reason: ``"steps"`` (all steps done), ``"nonfinite"``, ``"error"`` (a
            genvi error raised inside a compiled step, see ``error``), ``"callback"`` or
            ``"interrupted"`` (Ctrl-C).
        message: a sentence saying why the run stopped.
        compile_time: seconds spent compiling.
        skipped: how many steps were skipped because of non-finite values
            (``on_nonfinite="skip"``), in all.
        error: the genvi error that stopped the run (``stopped_reason="error"``), else
            None.
    """

    params: Any
    opt_state: Any
    key: Any
    step: int
    history: History
    stopped_reason: str
    message: str
    compile_time: float
    skipped: int = 0
    error: Exception | None = None


def _check_args(steps, chunk, on_nonfinite, checkpoint, checkpoint_every, max_skips, optimizer):
    if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"fit: steps must be an int >= 0, got {steps!r}")
    if not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"fit: chunk must be an int >= 1, got {chunk!r}")
    if on_nonfinite not in ("stop", "skip"):
        raise ValueError(f"fit: on_nonfinite must be 'stop' or 'skip', got {on_nonfinite!r}")
    if max_skips is not None and (not isinstance(max_skips, (int, np.integer)) or max_skips < 1):
        raise ValueError(
            f"fit: max_consecutive_skips must be an int >= 1 or None, got {max_skips!r}"
        )
    if checkpoint_every is not None:
        if checkpoint is None:
            raise ValueError("fit: checkpoint_every needs checkpoint=<path> to write to")
        if not isinstance(checkpoint_every, (int, np.integer)) or checkpoint_every < 1:
            raise ValueError(f"fit: checkpoint_every must be an int >= 1, got {checkpoint_every!r}")
    if optimizer is not None and not (
        callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None))
    ):
        hint = f"optax.{optimizer}(1e-3)" if isinstance(optimizer, str) else "optax.adam(1e-3)"
        raise TypeError(
            f"fit: optimizer must be an optax.GradientTransformation (an object with init and "
            f"update), got {type(optimizer).__name__} {optimizer!r}; pass e.g. "
            f"optimizer={hint}"
        )


def _json_dict(value, name: str) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError(f"fit: {name} must be a dict, got {type(value).__name__}")
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as e:
        raise TypeError(
            f"fit: {name} must be JSON-able (strings, numbers, booleans, None, lists and "
            f"dicts of them): {e}"
        ) from None


def _run_info(batching: Batching | None, data, maximize, hash_data, key, settings, metadata):
    return {
        "maximize": bool(maximize),
        "n_data": None if batching is None else batching.n,
        "batch_size": None if batching is None else batching.batch_size,
        "shuffle": None if batching is None else batching.shuffle,
        "data_fingerprint": fingerprint(data) if hash_data and data is not None else None,
        "key": np.asarray(jax.random.key_data(key)).ravel().tolist(),
        "settings": settings,
        "metadata": metadata,
    }


_RESUME_ADVICE = "use the same settings, or start afresh without resume="


def _resume(path, params, opt_state, info: dict):
    ckpt = load_checkpoint(path, params, opt_state)
    saved, where = ckpt.info, os.fspath(path)
    for name, what in [
        ("maximize", "maximize"),
        ("n_data", "number of data points"),
        ("batch_size", "batch size"),
        ("shuffle", "batching (minibatches or full batch)"),
        ("data_fingerprint", "data"),
    ]:
        if saved.get(name, info[name]) != info[name]:
            raise CheckpointError(
                f"checkpoint {where!r} was written by a run with a different {what} "
                f"({name}={saved.get(name)!r} there, {info[name]!r} now); resuming would not "
                "continue that run exactly",
                _RESUME_ADVICE,
            )
    then, now = saved.get("settings"), info["settings"]
    if isinstance(then, dict) and now is not None:
        for name in sorted(set(then) | set(now), key=str):
            if then.get(name) != now.get(name):
                raise CheckpointError(
                    f"checkpoint {where!r} was written by a run with settings[{name!r}] = "
                    f"{then.get(name)!r}, not {now.get(name)!r} as now",
                    _RESUME_ADVICE,
                )
    if saved.get("key") is not None and saved["key"] != info["key"]:
        warnings.warn(
            f"fit: the checkpoint {where!r} was written by a run with key data "
            f"{saved['key']}, but key={info['key']} was given (as key data): the checkpoint's "
            "keys are used, so this continues that run and the key given is ignored. Pass "
            "the run's key to silence this, or start afresh without resume= to use the new key",
            ResumeWarning,
            stacklevel=3,
        )
    return ckpt


def _ambient(mesh):
    """The step is traced under ``jax.set_mesh(mesh)``, so that the objective's particles
    see the mesh's ``"particles"`` axis (see :func:`genvi.objectives.particle_keys`)."""
    return contextlib.nullcontext() if mesh is None else jax.set_mesh(mesh)


def fit(
    objective: Callable,
    params,
    *,
    key,
    steps: int,
    optimizer: optax.GradientTransformation | None = None,
    data=None,
    batch_size: int | None = None,
    maximize: bool = True,
    chunk: int = 100,
    progress: bool | None = None,
    callbacks: Sequence[Callable] = (),
    checkpoint=None,
    checkpoint_every: int | None = None,
    resume=None,
    settings: dict | None = None,
    metadata: dict | None = None,
    on_nonfinite: str = "stop",
    max_consecutive_skips: int | None = 100,
    mesh=None,
) -> FitResult:
    """Train ``params`` by stochastic gradient ascent on ``objective`` (descent with
    ``maximize=False``) with an optax ``optimizer`` (default ``optax.adam(1e-3)``).

    ``objective(key, params, batch)`` (``objective(key, params)`` when ``data`` is None)
    returns a float scalar, typically an estimate from :func:`genvi.expectation`: its
    ``jax.grad`` is then an unbiased estimate of the gradient of the expected objective
    (ADEV), and each step follows it. Step ``s`` uses a fresh key split from the last.

    Args:
        objective: the function to maximize (or minimize).
        params: a pytree of floating-point arrays, the starting point.
        key: a PRNG key; the run is a deterministic function of it.
        steps: the total number of steps (counted from step 0, also when resuming).
        optimizer: any ``optax.GradientTransformation`` (an optimizer's name, such as
            ``"adam"``, is refused: pass ``optax.adam(1e-3)``).
        data: a pytree of arrays with a leading axis over data points, or None (on
            several processes: this process's share, see ``mesh``).
        batch_size: points per step, reshuffled every epoch (see
            :mod:`genvi.training._batches`); None: all the data every step.
        maximize: ascend (True) or descend (False).
        chunk: steps per compiled ``lax.scan`` call (the granularity of progress updates,
            callbacks, checkpoints and Ctrl-C).
        progress: a tqdm progress bar, and a "compiling..." line with the elapsed time
            while the step compiles: True, False, or None to show them only when someone
            is watching (Jupyter or a terminal; never under CI).
        callbacks: functions ``cb(step, params, history)`` called after each chunk; one
            returning True stops the run (``stopped_reason="callback"``).
        checkpoint: a path: the state is written there atomically at the end (and every
            ``checkpoint_every`` steps). The path is checked before training (not a
            folder; its folder exists or can be created and is writable), else
            :class:`~genvi.training.CheckpointError`; a write that still fails later is
            reported by a ``RuntimeWarning`` and the result is returned all the same.
        checkpoint_every: see ``checkpoint``.
        resume: a checkpoint path to continue from. The continuation is exact: ``s``
            steps, then a resume to ``steps``, gives bit for bit the parameters of one
            run of ``steps``. A missing, corrupt or mismatched checkpoint (other data,
            batch size, ``maximize`` or ``settings``) raises
            :class:`~genvi.training.CheckpointError`. The checkpoint's keys are used; a
            ``key`` other than the one of the run that wrote it gets a ``ResumeWarning``
            (a ``UserWarning``) naming both.
        settings: a JSON-able dict of the settings that define the run (e.g. the learning
            rate, the objective's name, the seed), stored with the checkpoint (in
            ``Checkpoint.info["settings"]``); resuming with other settings raises
            :class:`~genvi.training.CheckpointError` naming the setting and both values.
        metadata: a JSON-able dict stored with the checkpoint as it is (in
            ``Checkpoint.info["metadata"]``) and not checked when resuming: what a
            program wants to remember about the run (e.g. the number of steps it aims
            for).
        on_nonfinite: ``"stop"``: at the first step whose objective, gradient or updated
            parameters are not finite, stop, keep the parameters from before that step,
            and warn naming the value (e.g. ``the gradient of params['decoder']['w1']``);
            ``"skip"``: drop that step's update and go on (the step is marked in
            ``history.skipped`` and counted in ``FitResult.skipped``).
        max_consecutive_skips: with ``on_nonfinite="skip"``, stop
            (``stopped_reason="nonfinite"``) once this many steps in a row were skipped,
            keeping the last good parameters; None: never stop for that.
        mesh: training over devices: a ``jax.sharding.Mesh`` or a device count (the
            first ``n`` of ``jax.devices()``, as a mesh with one axis ``"data"``). Its
            axis ``"data"`` (or its only axis, unless that is ``"particles"``) splits each
            step's minibatch (data parallelism); its axis ``"particles"``, if any, splits
            the objective's particles (particle parallelism: every particle loop made
            with :func:`genvi.objectives.particle_keys`, as in all the library's
            objectives, is spread over it; the step is compiled under
            ``jax.set_mesh(mesh)`` for that). The parameters and optimizer state are
            replicated and XLA partitions the step (see :mod:`genvi.training._mesh`);
            everything else is as on one device, and the parameters agree with a
            one-device run up to the reassociation of sums. The minibatch must divide
            evenly over the data axis (a ``ValueError`` names both sizes otherwise). On a
            CPU, ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` makes ``N``
            devices.

            **Several processes** (after ``jax.distributed.initialize``): every process
            calls ``fit`` with the same arguments, except ``data``, which is *that
            process's share* of the data set: the same number of points on each, the
            global data set being the shares concatenated in the order of the data axis
            (process order for ``mesh=jax.device_count()``, the only count allowed
            then). ``batch_size`` is the *global* batch, the points of one step over all
            processes, as on one process; each process's share must split over its
            devices of the data axis, and the data axis must span the processes (each
            process holding its own block of it). The run is the one a single process
            makes on the concatenated data. Arguments that differ between processes,
            shares of different sizes, or a mesh that does not span them raise the same
            ``ValueError`` on every process, naming what differs. The checkpoint is
            written by process 0 alone (atomically, as always); ``resume=`` is read by
            every process, so the file must be at that path for each (a shared file
            system, or a copy). A checkpoint holds the replicated state only, so it
            resumes on any number of devices or processes. A Ctrl-C or a callback's
            stop on one process stops every process after the same chunk. The result
            holds the same replicated arrays on every process (``jax.device_get`` gives
            NumPy copies). See the how-to page "Train on several processes or hosts".

    A Ctrl-C stops the run after the chunk in progress (or right after compilation),
    keeps the state and writes the checkpoint (``stopped_reason="interrupted"``); a
    second one raises ``KeyboardInterrupt`` at once. A genvi error raised inside a
    compiled step (e.g. :class:`genvi.SupportError` from a distribution's parameter
    check under ``gv.validate(True)``) stops the run the same way
    (``stopped_reason="error"``, a ``RuntimeWarning``), keeping the parameters from
    before the failing step and naming the error in ``message``.

    Returns:
        A :class:`FitResult`.

    Examples:
        >>> @gv.gen
        ... def guide(phi):
        ...     gv.normal(phi["mean"], jnp.exp(phi["log_sd"])) @ "z"
        >>> @gv.expectation
        ... def elbo(key, phi):                  # model: z ~ N(0, 1), x ~ N(z, 1), observed x = 2
        ...     tr = guide.simulate(key, phi)
        ...     z = tr.choices["z"]
        ...     log_p = jax.scipy.stats.norm.logpdf(z) + jax.scipy.stats.norm.logpdf(2.0, z)
        ...     return log_p - tr.score
        >>> phi = {"mean": jnp.zeros(()), "log_sd": jnp.zeros(())}
        >>> result = gv.fit(elbo, phi, key=jax.random.key(0), steps=1000, optimizer=optax.adam(0.05))
        >>> result.message
        'completed 1000 steps'
        >>> bool(abs(result.params["mean"] - 1.0) < 0.2)     # the posterior mean is 1
        True
    """
    _check_args(
        steps, chunk, on_nonfinite, checkpoint, checkpoint_every, max_consecutive_skips, optimizer
    )
    callbacks = (callbacks,) if callable(callbacks) else tuple(callbacks)
    optimizer = optax.adam(1e-3) if optimizer is None else optimizer
    settings = _json_dict(settings, "settings")
    metadata = _json_dict(metadata, "metadata")
    key = as_typed_key(key)
    state_key, data_key = jax.random.split(key)
    state = init(prepare_params(params), optimizer, state_key)
    processes = _processes.count()
    the_mesh, axis = (None, None) if mesh is None else _mesh.resolve_mesh(mesh)
    if processes > 1 and the_mesh is None:
        raise ValueError(
            f"fit: this is process {jax.process_index()} of {processes} (jax.distributed), "
            "so give mesh= spanning them, e.g. mesh=jax.device_count(), to train one model "
            "together (each process feeding its share of the data); without it each process "
            "would train alone"
        )
    if the_mesh is not None and axis is not None and data is None:
        raise ValueError(
            "fit: mesh= shards each step's minibatch over devices; give data= (and "
            "batch_size=) to train data-parallel, or a mesh with only a 'particles' axis to "
            "spread the particles alone"
        )
    batching = None
    if processes > 1:
        assert the_mesh is not None and axis is not None  # checked by resolve_mesh
        _processes.agree_on_args(
            data,
            state,
            key,
            steps=steps,
            chunk=chunk,
            batch_size=batch_size,
            max_consecutive_skips=max_consecutive_skips,
            checkpoint_every=checkpoint_every,
            maximize=maximize,
            on_nonfinite=on_nonfinite,
            checkpoint=checkpoint,
            resume=resume,
            settings=settings,
            metadata=metadata,
        )
        data = _processes.global_data(data, the_mesh, axis)
    if data is not None:
        data, batching = prepare_data(data, batch_size)
    elif batch_size is not None:
        raise ValueError("fit: batch_size was given but data is None")
    writer = jax.process_index() == 0  # with several processes, process 0 writes alone
    if checkpoint is not None:
        _processes.on_writer(
            processes, "checking the checkpoint path on process 0", check_writable, checkpoint
        )
    hash_data = checkpoint is not None or resume is not None
    host_data = _processes.gather_to_host(data) if processes > 1 and hash_data else data
    info = _run_info(batching, host_data, maximize, hash_data, key, settings, metadata)
    del host_data
    history = History.empty()
    if resume is not None:
        ckpt = _processes.everywhere(
            processes,
            "reading the checkpoint",
            _resume,
            resume,
            state.params,
            state.opt_state,
            info,
        )
        state = ckpt.state
        data_key = ckpt.data_key if ckpt.data_key is not None else data_key
        history = ckpt.history if ckpt.history is not None else history
        if processes > 1:
            _processes.agree(
                {
                    "the checkpoint's step": int(state.step),
                    "the checkpoint": _processes.digest(state),
                },
                shown=frozenset({"the checkpoint's step"}),
            )
    shardings = None
    if the_mesh is not None:
        if batching is not None:
            _mesh.check_batch(
                batching.batch_size if batching.shuffle else batching.n, the_mesh, axis
            )
        rep = _mesh.replicated(the_mesh)
        data_sh = _mesh.data_sharding(data, the_mesh, axis)
        shardings = (rep, data_sh, _mesh.sharded(the_mesh, axis))
        state = _mesh.put(state, rep)
        data_key = _mesh.put(data_key, rep)
        data = _mesh.put(data, data_sh)
    show = (interactive() if progress is None else bool(progress)) and writer
    loop = Loop(
        state, data_key, data, history, steps, int(chunk), checkpoint, checkpoint_every, info
    )
    loop.writer = writer
    loop.sync = _processes.any_process if processes > 1 else None
    with _interrupt.watch() as guard, quiet_callback_logs():
        t0 = time.perf_counter()
        if int(state.step) < steps:  # a finished run resumed needs no compilation
            with compiling(show), _ambient(the_mesh):
                loop.compiled = compiled_chunk(
                    objective,
                    optimizer,
                    maximize,
                    int(chunk),
                    batching,
                    on_nonfinite,
                    (state, data_key, data),
                    shardings,
                )
        compile_time = time.perf_counter() - t0
        guard.graceful = True  # from here on a Ctrl-C can be honoured by a clean stop
        try:
            loop.run(guard, on_nonfinite, max_consecutive_skips, callbacks, show)
        finally:
            guard.graceful = False
    return FitResult(
        loop.state.params,
        loop.state.opt_state,
        loop.state.key,
        loop.step,
        loop.history,
        loop.reason,
        loop.message,
        compile_time,
        int(loop.history.skipped.sum()),
        loop.error,
    )
