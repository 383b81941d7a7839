"""The calling convention shared by every library objective.

Each objective is built from a model and a guide (and options) and is an
:class:`~genvi.Expectation` called as::

    objective(key, model_args, guide_args, observations)

- ``model_args``: tuple of arguments for ``model`` (its parameters, say ``(theta,)``);
- ``guide_args``: tuple of arguments for ``guide`` (``(phi,)`` or ``(phi, x)`` for an
  amortized guide);
- ``observations``: a choice map (or nested dict) of the model's observed addresses.

Every value is a *lower bound* to maximize (``cubo`` is the exception: an upper bound to
minimize). Gradients: ``objective.grad_estimate(key, model_args, guide_args, obs,
argnums=(0, 1))`` gives ``(d/d model_args, d/d guide_args)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from genvi.core.choicemap import choice_map


def log_weight(key, model, guide, model_args, guide_args, observations):
    """One importance log weight ``log p(x, z) - log q(z)`` with ``z ~ guide``."""
    tr = guide.simulate(key, *guide_args)
    logp, _ = model.assess(tr.choices.merge(choice_map(observations)), *model_args)
    return logp - tr.score


def check_particles(particles: int, name: str) -> int:
    if not isinstance(particles, int) or particles < 1:
        raise ValueError(f"{name}: particles must be an int >= 1, got {particles!r}")
    return particles


def log_weights(key, particles, model, guide, model_args, guide_args, observations):
    """``particles`` independent log weights (vectorized with ``jax.vmap``)."""
    keys = jax.random.split(key, particles)
    return jax.vmap(
        lambda k: log_weight(k, model, guide, model_args, guide_args, observations)
    )(keys)


def logmeanexp(x, axis=None):
    n = x.shape[axis] if axis is not None else x.size
    return jax.scipy.special.logsumexp(x, axis=axis) - jnp.log(n)
