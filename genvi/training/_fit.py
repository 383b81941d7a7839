"""``gv.fit``: the training loop, over any optax optimizer.

Layers (as in Blackjax): a pure kernel (:func:`~genvi.training.init`,
:func:`~genvi.training.make_step`) and this convenience wrapper, which runs the step in
compiled ``jax.lax.scan`` chunks, draws minibatches, guards against non-finite values,
writes checkpoints, shows progress and keeps the history.
"""

from __future__ import annotations

import os
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from genvi.training._batches import (
    Batching,
    batch_indices,
    epoch_permutation,
    fingerprint,
    prepare_data,
    take,
)
from genvi.training._checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from genvi.training._history import History
from genvi.training._kernel import (
    as_typed_key,
    describe_nonfinite,
    guard,
    init,
    make_step,
    prepare_params,
)
from genvi.training._progress import Progress


class NonFiniteWarning(RuntimeWarning):
    """A training step produced a NaN or an infinity."""


class FitResult(NamedTuple):
    """What :func:`fit` returns.

    Attributes:
        params: the trained parameters (the last finite ones if the run stopped on a
            non-finite value).
        opt_state: the optimizer state that goes with them.
        key: the PRNG key of the next step.
        step: the number of steps taken in all (including those before a resume).
        history: the :class:`~genvi.training.History` of every step taken.
        stopped_reason: ``"steps"`` (all steps done), ``"nonfinite"``, ``"callback"`` or
            ``"interrupted"`` (``KeyboardInterrupt``).
        message: a sentence saying why the run stopped.
        compile_time: seconds spent compiling.
    """

    params: Any
    opt_state: Any
    key: Any
    step: int
    history: History
    stopped_reason: str
    message: str
    compile_time: float


def _chunk_runner(step_fn, chunk: int, batching: Batching | None, on_nonfinite: str):
    """``run(state, data_key, data, n_active) -> (state, infos, active)``: up to ``chunk``
    steps in one ``lax.scan``; the first ``n_active`` run (fewer after a non-finite stop),
    the rest are skipped by a ``lax.cond``, so one compiled program serves every chunk."""
    shuffle = batching is not None and batching.shuffle
    bt = batching if batching is not None else Batching(1, 1, False)

    def run(state, data_key, data, n_active):
        if shuffle:
            spe = bt.steps_per_epoch
            perm0 = epoch_permutation(data_key, state.step // spe, bt.n)
        else:
            perm0 = jnp.zeros((0,), jnp.int32)

        def one(operand):
            state, perm = operand
            if shuffle:
                epoch, j = jnp.divmod(state.step, spe)
                perm = jax.lax.cond(
                    j == 0, lambda: epoch_permutation(data_key, epoch, bt.n), lambda: perm
                )
                batch = take(data, batch_indices(data_key, state.step, bt, perm))
            else:
                batch = data
            new, info = step_fn(state, batch)
            return (guard(state, new, info, on_nonfinite), perm), info

        info_shape = jax.eval_shape(one, (state, perm0))[1]

        def idle(operand):
            return operand, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), info_shape)

        def body(carry, i):
            state, perm, stopped = carry
            active = (i < n_active) & ~stopped
            (state, perm), info = jax.lax.cond(active, one, idle, (state, perm))
            if on_nonfinite == "stop":
                stopped = stopped | (active & (info.nonfinite >= 0))
            return (state, perm, stopped), (info, active)

        carry = (state, perm0, jnp.bool_(False))
        (state, _, _), (infos, active) = jax.lax.scan(body, carry, jnp.arange(chunk))
        return state, infos, active

    return run


_COMPILED: OrderedDict = OrderedDict()
_CACHE_SIZE = 8


def _signature(tree):
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return treedef, tuple(
        (jnp.shape(x), jnp.result_type(x), jax.typeof(x).weak_type) for x in leaves
    )


def _compiled_chunk(objective, optimizer, maximize, chunk, batching, on_nonfinite, args):
    """The compiled chunk program, from a small cache: calling ``fit`` again with the same
    objective and optimizer objects and the same shapes (to continue training, or in a
    loop over settings that do not change the program) does not compile again."""
    key = (objective, optimizer, maximize, chunk, batching, on_nonfinite, _signature(args))
    try:
        hit = _COMPILED.get(key)
    except TypeError:  # an unhashable objective or optimizer: no caching
        key, hit = None, None
    if hit is not None:
        _COMPILED.move_to_end(key)
        return hit
    step_fn = make_step(objective, optimizer, maximize=maximize, has_data=args[2] is not None)
    runner = jax.jit(_chunk_runner(step_fn, chunk, batching, on_nonfinite))
    compiled = runner.lower(*args, jnp.int32(0)).compile()
    if key is not None:
        _COMPILED[key] = compiled
        while len(_COMPILED) > _CACHE_SIZE:
            _COMPILED.popitem(last=False)
    return compiled


def _check_args(steps, chunk, on_nonfinite, checkpoint, checkpoint_every):
    if not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"fit: steps must be an int >= 0, got {steps!r}")
    if not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"fit: chunk must be an int >= 1, got {chunk!r}")
    if on_nonfinite not in ("stop", "skip"):
        raise ValueError(f"fit: on_nonfinite must be 'stop' or 'skip', got {on_nonfinite!r}")
    if checkpoint_every is not None:
        if checkpoint is None:
            raise ValueError("fit: checkpoint_every needs checkpoint=<path> to write to")
        if not isinstance(checkpoint_every, (int, np.integer)) or checkpoint_every < 1:
            raise ValueError(f"fit: checkpoint_every must be an int >= 1, got {checkpoint_every!r}")


def _run_info(batching: Batching | None, data, maximize: bool, hash_data: bool) -> dict:
    return {
        "maximize": bool(maximize),
        "n_data": None if batching is None else batching.n,
        "batch_size": None if batching is None else batching.batch_size,
        "shuffle": None if batching is None else batching.shuffle,
        "data_fingerprint": fingerprint(data) if hash_data and data is not None else None,
    }


def _resume(path, params, opt_state, info: dict):
    ckpt = load_checkpoint(path, params, opt_state)
    saved = ckpt.info
    for name, what in [
        ("maximize", "maximize"),
        ("n_data", "number of data points"),
        ("batch_size", "batch size"),
        ("shuffle", "batching (minibatches or full batch)"),
        ("data_fingerprint", "data"),
    ]:
        if saved.get(name, info[name]) != info[name]:
            raise CheckpointError(
                f"checkpoint {os.fspath(path)!r} was written by a run with a different "
                f"{what} ({name}={saved.get(name)!r} there, {info[name]!r} now); resuming "
                "would not continue that run exactly. Use the same settings, or start afresh "
                "without resume="
            )
    return ckpt


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
    on_nonfinite: str = "stop",
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
        optimizer: any ``optax.GradientTransformation``.
        data: a pytree of arrays with a leading axis over data points, or None.
        batch_size: points per step, reshuffled every epoch (see
            :mod:`genvi.training._batches`); None: all the data every step.
        maximize: ascend (True) or descend (False).
        chunk: steps per compiled ``lax.scan`` call (the granularity of progress updates,
            callbacks and checkpoints).
        progress: a tqdm progress bar: True, False, or None to show it only when someone
            is watching (Jupyter or a terminal; never under CI).
        callbacks: functions ``cb(step, params, history)`` called after each chunk; one
            returning True stops the run (``stopped_reason="callback"``).
        checkpoint: a path: the state is written there atomically at the end (and every
            ``checkpoint_every`` steps).
        checkpoint_every: see ``checkpoint``.
        resume: a checkpoint path to continue from. The continuation is exact: ``s``
            steps, then a resume to ``steps``, gives bit for bit the parameters of one
            run of ``steps``. A missing, corrupt or mismatched checkpoint raises
            :class:`~genvi.training.CheckpointError`.
        on_nonfinite: ``"stop"``: at the first step whose objective, gradient or updated
            parameters are not finite, stop, keep the parameters from before that step,
            and warn naming the value (e.g. ``the gradient of params['decoder']['w1']``);
            ``"skip"``: drop that step's update and go on (the step is marked in
            ``history.skipped``).

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
    _check_args(steps, chunk, on_nonfinite, checkpoint, checkpoint_every)
    callbacks = (callbacks,) if callable(callbacks) else tuple(callbacks)
    optimizer = optax.adam(1e-3) if optimizer is None else optimizer
    key = as_typed_key(key)
    state_key, data_key = jax.random.split(key)
    state = init(prepare_params(params), optimizer, state_key)
    batching = None
    if data is not None:
        data, batching = prepare_data(data, batch_size)
    elif batch_size is not None:
        raise ValueError("fit: batch_size was given but data is None")
    info = _run_info(batching, data, maximize, checkpoint is not None or resume is not None)
    history = History.empty()
    if resume is not None:
        ckpt = _resume(resume, state.params, state.opt_state, info)
        state = ckpt.state
        data_key = ckpt.data_key if ckpt.data_key is not None else data_key
        history = ckpt.history if ckpt.history is not None else history

    t0 = time.perf_counter()
    if int(state.step) < steps:  # a finished run resumed needs no compilation
        compiled = _compiled_chunk(
            objective,
            optimizer,
            maximize,
            int(chunk),
            batching,
            on_nonfinite,
            (state, data_key, data),
        )
    compile_time = time.perf_counter() - t0

    def write():
        if checkpoint is not None:
            save_checkpoint(checkpoint, state, data_key=data_key, history=history, info=info)

    step = int(state.step)
    reason, message = "steps", f"completed {steps} steps"
    if step >= steps:
        message = f"the checkpoint is already at step {step} >= steps={steps}"
    bar = Progress(progress, steps, min(step, steps))
    skipped_first = None
    try:
        while step < steps:
            n = min(int(chunk), steps - step)
            if checkpoint_every is not None:
                n = min(n, (step // checkpoint_every + 1) * checkpoint_every - step)
            t_start = time.perf_counter()
            new_state, infos, active = compiled(state, data_key, data, jnp.int32(n))
            new_state = jax.block_until_ready(new_state)
            infos = jax.tree.map(np.asarray, infos)
            active = np.asarray(active)
            elapsed = time.perf_counter() - t_start
            n_run = int(active.sum())
            codes = infos.nonfinite[:n_run]
            bad = np.flatnonzero(codes >= 0)
            keep = int(bad[0]) if on_nonfinite == "stop" and bad.size else n_run
            new_history = history.extend(
                infos.objective[:keep],
                infos.grad_norm[:keep],
                np.full(keep, elapsed / max(n_run, 1)),
                codes[:keep] >= 0,
            )
            state, history = new_state, new_history  # the chunk is committed
            if on_nonfinite == "skip" and bad.size and skipped_first is None:
                what = describe_nonfinite(int(codes[bad[0]]), state.params)
                skipped_first = (step + int(bad[0]), what)
            step = int(state.step)
            finite = infos.objective[:keep][np.isfinite(infos.objective[:keep])]
            bar.update(keep, float(finite.mean()) if finite.size else None)
            if on_nonfinite == "stop" and bad.size:
                what = describe_nonfinite(int(codes[bad[0]]), state.params)
                reason = "nonfinite"
                message = (
                    f"fit stopped at step {step}: {what} is not finite (objective "
                    f"{float(infos.objective[bad[0]]):.6g}); the parameters returned are the "
                    f"last finite ones, from before step {step}. Lower the learning rate, "
                    "check the model's parameter ranges, or pass on_nonfinite='skip'."
                )
                warnings.warn(message, NonFiniteWarning, stacklevel=2)
                break
            if checkpoint_every is not None and step % checkpoint_every == 0 and step < steps:
                write()
            if any([cb(step, state.params, history) is True for cb in callbacks]):
                reason, message = "callback", f"a callback stopped the run at step {step}"
                break
    except KeyboardInterrupt:  # keep what was committed; the checkpoint is written below
        step = int(state.step)
        reason = "interrupted"
        message = f"interrupted at step {step}; the state after {step} steps is kept"
    finally:
        bar.close()
    if skipped_first is not None:
        n_skipped = int(history.skipped.sum())
        warnings.warn(
            f"fit skipped {n_skipped} of {history.steps} steps because of non-finite values "
            f"(the first at step {skipped_first[0]}: {skipped_first[1]})",
            NonFiniteWarning,
            stacklevel=2,
        )
    if reason == "interrupted":
        warnings.warn(message, RuntimeWarning, stacklevel=2)
    write()
    return FitResult(
        state.params, state.opt_state, state.key, step, history, reason, message, compile_time
    )
