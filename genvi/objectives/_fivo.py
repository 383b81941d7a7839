"""The filtering variational objective (FIVO): a sequential Monte Carlo bound for
``gv.scan`` state-space models."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from genvi.adev._expectation import Expectation, expectation
from genvi.combinators._scan import ScanGF
from genvi.core._choicemap import choice_map
from genvi.core._errors import ModelingError
from genvi.distributions._library import categorical
from genvi.objectives._common import check_convention, check_particles, sg


def fivo(model, guide, particles: int = 4, *, resampling_gradient: bool = False) -> Expectation:
    """FIVO (Maddison et al., "Filtering variational objectives", NeurIPS 2017; Le et al.,
    2018; Naesseth et al., "Variational sequential Monte Carlo", AISTATS 2018): the log of
    a particle filter's estimate of ``p(y_1:T)``, a lower bound on ``log p(y_1:T)``.

    ``model`` and ``guide`` are ``gv.scan`` chains over the same steps: the model's body
    ``(carry, x_t) -> (carry, y)`` makes the latent and observed choices of step ``t``, the
    guide's body proposes the latent ones (with its own carry, e.g. the previous latent or
    nothing). With ``K = particles`` particles, at each step every particle proposes
    ``z_t^k`` from the guide's body, is weighted by
    ``w_t^k = p(z_t^k, y_t | carry^k) / q(z_t^k | guide carry^k)``, and then all particles
    are resampled (multinomially, with probabilities proportional to ``w_t``). The
    estimate ``Z = prod_t (1/K) sum_k w_t^k`` is unbiased for ``p(y_1:T)``, so
    ``E[log Z] <= log p(y_1:T)`` (Jensen); ``K = 1`` is the ELBO of the chain.

    The resampling draws are random choices too. Their score-function term (the gradient
    of ``log Z`` through the ancestor probabilities) is unbiased but of high variance;
    FIVO as published drops it. ``resampling_gradient=False`` (default) drops it: the
    gradient is then biased (its bias vanishes as ``K`` grows), the value is not.
    ``resampling_gradient=True`` keeps it (REINFORCE on the ancestors), an unbiased
    gradient of the bound.

    Called as ``(key, model_args, guide_args, observations)`` with
    ``model_args = (carry0, xs)`` and ``guide_args = (guide_carry0, guide_xs)`` of the two
    chains, and ``observations`` the model's observed choices with a leading time axis
    (as ``gv.scan`` takes them: ``{"y": ys}``).

    Examples:
        >>> @gv.gen
        ... def step(z, a):
        ...     z = gv.normal(a * z, 1.0) @ "z"
        ...     gv.normal(z, 0.5) @ "y"
        ...     return z, None
        >>> @gv.gen
        ... def proposal(c, m):
        ...     gv.normal(m, 1.0) @ "z"
        ...     return c, None
        >>> T = 20
        >>> objective = gv.objectives.fivo(gv.scan(step), gv.scan(proposal), particles=8)
        >>> args = ((0.0, jnp.full(T, 0.9)), (0.0, jnp.zeros(T)), {"y": jnp.ones(T)})
        >>> v, g = objective.value_and_grad_estimate(jax.random.key(0), *args, argnums=1)
        >>> g[1].shape                                  # d/d guide_xs: one per step
        (20,)
    """
    check_particles(particles, "fivo")
    for what, gf in (("model", model), ("guide", guide)):
        if not isinstance(gf, ScanGF):
            raise ModelingError(
                f"fivo: the {what} must be a gv.scan chain (the particle filter steps "
                f"through its body), got {getattr(gf, 'name', type(gf).__name__)}"
            )
    k_particles = particles

    @expectation
    def fivo_objective(key, model_args, guide_args, observations):
        check_convention(model_args, guide_args, observations, "fivo")
        carry0, xs = model_args
        gcarry0, gxs = guide_args
        obs = choice_map(observations)
        n = model._length(xs)
        if guide._length(gxs) != n:
            raise ModelingError(
                f"fivo: the model chain has {n} steps but the guide chain has "
                f"{guide._length(gxs)} steps; give both the same length"
            )
        model._check(obs, n)
        origins = obs.origins()

        def broadcast(c):
            return jax.tree_util.tree_map(
                lambda a: jnp.broadcast_to(jnp.asarray(a), (k_particles,) + jnp.shape(a)), c
            )

        def particle(k, mc, gc, x, gx, ob):
            tr = guide.gf.simulate(k, gc, gx)
            gc2, _ = tr.retval
            logp, ret = model.gf.estimate_logpdf(
                jax.random.fold_in(k, 1), tr.choices.merge(ob), mc, x
            )
            mc2, _ = ret
            return logp - tr.score, mc2, gc2

        def step(state, inputs):
            mcs, gcs, log_z = state
            k, x, gx, ob = inputs
            k_prop, k_res = jax.random.split(k)
            ob = ob.with_origins(origins)
            logw, mcs2, gcs2 = jax.vmap(particle, in_axes=(0, 0, 0, None, None, None))(
                jax.random.split(k_prop, k_particles), mcs, gcs, x, gx, ob
            )
            log_z = log_z + logsumexp(logw) - jnp.log(k_particles)
            logits = logw if resampling_gradient else sg(logw)
            ancestors = jax.vmap(lambda kk: categorical.reinforce.simulate(kk, logits).retval)(
                jax.random.split(k_res, k_particles)
            )
            pick = lambda a: a[ancestors]  # noqa: E731
            return (
                jax.tree_util.tree_map(pick, mcs2),
                jax.tree_util.tree_map(pick, gcs2),
                log_z,
            ), None

        keys = jax.random.split(key, n)
        init = (broadcast(carry0), broadcast(gcarry0), jnp.zeros(()))
        (_, _, log_z), _ = jax.lax.scan(step, init, (keys, xs, gxs, obs), length=n)
        return log_z

    return fivo_objective


__all__ = ["fivo"]
