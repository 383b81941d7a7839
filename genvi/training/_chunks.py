"""The compiled program of :func:`genvi.fit`: up to ``chunk`` steps in one ``lax.scan``.

``run(state, data_key, data, n_active, skip_run, max_skips) -> (state, infos, active)``
takes the first ``n_active`` steps of the chunk; the rest are skipped by a ``lax.cond``,
so one compiled program serves every chunk, whatever its length. Inside the chunk the
scan also stops early:

- ``on_nonfinite="stop"``: at the first step with a non-finite value (that step is not
  applied, see :func:`~genvi.training._kernel.guard`);
- ``on_nonfinite="skip"``: when ``max_skips`` steps in a row have been skipped, counting
  the ``skip_run`` skipped steps that ended the chunk before.

``active[i]`` says whether step ``i`` of the chunk ran. ``n_active``, ``skip_run`` and
``max_skips`` are traced, so changing them never compiles again.
"""

from __future__ import annotations

from collections import OrderedDict

import jax
import jax.numpy as jnp

from genvi.training._batches import Batching, batch_indices, epoch_permutation, take
from genvi.training._kernel import guard, make_step

NO_LIMIT = 2**31 - 1  # max_skips when there is no limit


def chunk_runner(
    step_fn, chunk: int, batching: Batching | None, on_nonfinite: str, batch_sharding=None
):
    """The uncompiled chunk program (see the module docstring). With ``batch_sharding``
    (data-parallel training), each step's minibatch is constrained to it."""
    shuffle = batching is not None and batching.shuffle
    bt = batching if batching is not None else Batching(1, 1, False)

    def run(state, data_key, data, n_active, skip_run, max_skips):
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
            if batch_sharding is not None:
                batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
            new, info = step_fn(state, batch)
            return (guard(state, new, info, on_nonfinite), perm), info

        info_shape = jax.eval_shape(one, (state, perm0))[1]

        def idle(operand):
            return operand, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), info_shape)

        def body(carry, i):
            state, perm, stopped, run_length = carry
            active = (i < n_active) & ~stopped
            (state, perm), info = jax.lax.cond(active, one, idle, (state, perm))
            bad = active & (info.nonfinite >= 0)
            if on_nonfinite == "stop":
                stopped = stopped | bad
            else:
                run_length = jnp.where(active, jnp.where(bad, run_length + 1, 0), run_length)
                stopped = stopped | (run_length >= max_skips)
            return (state, perm, stopped, run_length), (info, active)

        carry = (state, perm0, jnp.bool_(False), jnp.asarray(skip_run, jnp.int32))
        (state, _, _, _), (infos, active) = jax.lax.scan(body, carry, jnp.arange(chunk))
        return state, infos, active

    return run


_COMPILED: OrderedDict = OrderedDict()
_CACHE_SIZE = 8


def _signature(tree):
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return treedef, tuple(
        (jnp.shape(x), jnp.result_type(x), jax.typeof(x).weak_type) for x in leaves
    )


def compiled_chunk(
    objective, optimizer, maximize, chunk, batching, on_nonfinite, args, shardings=None
):
    """The compiled chunk program, from a small cache: calling ``fit`` again with the same
    objective and optimizer objects and the same shapes (to continue training, or in a
    loop over settings that do not change the program) does not compile again.
    ``shardings``: ``(replicated, data, batch)`` shardings for data-parallel training.
    The program depends on the mesh it is traced under (``jax.set_mesh``; see
    :func:`genvi.objectives.particle_keys`), so that is part of the cache key too."""
    key = (
        objective,
        optimizer,
        maximize,
        chunk,
        batching,
        on_nonfinite,
        _signature(args),
        shardings,
        jax.sharding.get_abstract_mesh(),
    )
    try:
        hit = _COMPILED.get(key)
    except TypeError:  # an unhashable objective or optimizer: no caching
        key, hit = None, None
    if hit is not None:
        _COMPILED.move_to_end(key)
        return hit
    step_fn = make_step(objective, optimizer, maximize=maximize, has_data=args[2] is not None)
    if shardings is None:
        runner = jax.jit(chunk_runner(step_fn, chunk, batching, on_nonfinite))
    else:
        rep, data_sh, batch_sh = shardings
        runner = jax.jit(
            chunk_runner(step_fn, chunk, batching, on_nonfinite, batch_sh),
            in_shardings=(rep, rep, data_sh, rep, rep, rep),
            out_shardings=rep,
        )
    scalar = jnp.int32(0)
    compiled = runner.lower(*args, scalar, scalar, scalar).compile()
    if key is not None:
        _COMPILED[key] = compiled
        while len(_COMPILED) > _CACHE_SIZE:
            _COMPILED.popitem(last=False)
    return compiled
