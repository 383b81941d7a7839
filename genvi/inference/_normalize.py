"""``gv.normalize``: an unnormalized target made into an (approximate) sampler, by SIR.

The target is a model with observations: ``γ(z) = p(x, z)``, with normalizing constant
``Z = ∫ γ(z) dz = p(x)`` and normalized form ``π(z) = p(z | x)``. Sampling importance
resampling (SIR) with a proposal ``q(z)`` and ``K = particles`` particles draws
``z_1..z_K ~ q``, weighs them ``w_k = γ(z_k) / q(z_k)``, and returns ``z_j`` with
``j ~ Categorical(w / sum w)``. The law of ``z_j`` is ``q_SIR``, which tends to ``π`` as
``K`` grows; its density is intractable but has unbiased estimates. With
``Ẑ = (1/K) sum_k w_k``:

- ``E[Ẑ] = Z``: each ``w_k`` has mean ``E_q[γ/q] = Z``.
- **reciprocal** (the score of ``simulate``): ``exp(-score) = Ẑ / γ(z_j)`` is unbiased for
  ``1 / q_SIR(z_j)``. For any test function ``g``, with ``P`` the law of the SIR run,
  ``E_P[g(z_j) Ẑ / γ(z_j)] = sum_j E_{q^K}[(w_j / (K Ẑ)) g(z_j) Ẑ / γ(z_j)]
  = sum_j (1/K) E_q[g(z) / q(z)] = ∫ g``, which is also ``E[g(z_j) / q_SIR(z_j)]``: so
  ``E[Ẑ / γ(z_j) | z_j] = 1 / q_SIR(z_j)``.
- **density** (``estimate_logpdf`` at a given ``z``): put ``z`` in as one particle with
  ``K - 1`` fresh ones; ``γ(z) / Ẑ`` is unbiased for ``q_SIR(z)``, because by symmetry
  ``q_SIR(z) = K · (1/K) E[q(z) w(z) / Ẑ] = E[γ(z) / Ẑ]`` over the fresh particles.

So a normalized target stands where a guide stands (an ELBO with it stays a lower bound,
by Jensen on the reciprocal estimate) and where a model stands (log of an unbiased
density estimate). References: Rubin (1988) for SIR; the estimates follow Lew et al.
(UAI 2022) and Becker et al. (PLDI 2024).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from genvi.core._choicemap import choice_map
from genvi.core._derive import row_keys
from genvi.core._errors import ModelingError
from genvi.core._genfn import GenerativeFunction
from genvi.core._particles import particle_keys
from genvi.core._trace import Trace
from genvi.distributions._distribution import Distribution
from genvi.distributions._library import categorical
from genvi.inference._marginal import _check_particles


def _logmeanexp(x):
    return logsumexp(x) - jnp.log(x.shape[0])


def _check_args(model_args, proposal_args):
    for what, args in (("model_args", model_args), ("proposal_args", proposal_args)):
        if not isinstance(args, tuple):
            raise TypeError(
                f"normalize: {what} must be a tuple of arguments (e.g. (theta,) or ()), "
                f"got {type(args).__name__}"
            )


class Normalized(GenerativeFunction):
    """The SIR approximation of ``p(z | observations)``; see :func:`normalize`.

    Called with two tuples, ``(model_args, proposal_args)``.
    """

    has_estimated_density = True

    def __init__(self, model, observations, proposal, particles: int = 1, selection=None):
        self.model = model
        self.observations = choice_map(observations)
        self.proposal = proposal
        self.particles = _check_particles(particles, f"normalize({model.name})")
        selection = categorical.enum if selection is None else selection
        if not (isinstance(selection, Distribution) and selection.family.name == "categorical"):
            raise TypeError(
                "normalize: selection must be gv.categorical with a strategy "
                f"(gv.categorical.enum, .reinforce or .mvd), got {selection!r}"
            )
        self.selection = selection
        self.name = f"normalize({model.name})"

    def __repr__(self) -> str:
        return (
            f"<{self.name} with proposal {self.proposal.name}, {self.particles} particle(s), "
            f"selection by {self.selection.strategy.name}>"
        )

    def _one(self, key, z, model_args, proposal_args, logq):
        from genvi.objectives._common import _log_joint

        logp, ret = _log_joint(key, self.model, z, self.observations, model_args, "the proposal")
        return logp, logp - logq, ret

    def _particles(self, key, model_args, proposal_args, n):
        """``n`` particles from the proposal: ``(choices, log γ, log w, retvals)``."""

        def one(k):
            k1, k2 = row_keys(k, 2)
            tr = self.proposal.simulate(k1, *proposal_args)
            logp, logw, ret = self._one(k2, tr.choices, model_args, proposal_args, tr.score)
            return tr.choices, logp, logw, ret

        return jax.vmap(one)(particle_keys(key, n))

    def simulate(self, key, model_args=(), proposal_args=()) -> Trace:
        """One SIR draw ``z_j``; score ``log γ(z_j) - log Ẑ`` (``exp(-score)`` is unbiased
        for ``1 / q_SIR(z_j)``); retval: the model's return value at ``z_j``."""
        _check_args(model_args, proposal_args)
        k1, k2 = row_keys(key, 2)
        zs, logp, logw, rets = self._particles(k1, model_args, proposal_args, self.particles)
        j = self.selection.simulate(k2, logw).retval
        pick = lambda a: a[j]  # noqa: E731
        z = jax.tree_util.tree_map(pick, zs)
        score = logp[j] - _logmeanexp(logw)
        return Trace(z, score, jax.tree_util.tree_map(pick, rets), (model_args, proposal_args))

    def estimate_logpdf(self, key, choices, model_args=(), proposal_args=()):
        """``(log q̂_SIR(z), retval)``: ``z`` as one particle with ``K - 1`` fresh ones;
        ``exp`` of it is an unbiased estimate of ``q_SIR(z)``."""
        _check_args(model_args, proposal_args)
        z = choice_map(choices)
        k1, k2, k3 = row_keys(key, 3)
        logq, _ = self.proposal.estimate_logpdf(k1, z, *proposal_args)
        logp, logw_z, ret = self._one(k2, z, model_args, proposal_args, logq)
        logws = logw_z[None]
        if self.particles > 1:
            _, _, lw, _ = self._particles(k3, model_args, proposal_args, self.particles - 1)
            logws = jnp.concatenate([logws, lw])
        return logp - _logmeanexp(logws), ret

    def estimate_log_normalizer(self, key, model_args=(), proposal_args=()):
        """``log Ẑ`` from ``K`` fresh particles; ``Ẑ`` is an unbiased estimate of
        ``Z = p(observations)``."""
        _check_args(model_args, proposal_args)
        _, _, logw, _ = self._particles(key, model_args, proposal_args, self.particles)
        return _logmeanexp(logw)

    def assess(self, choices, *args):
        raise ModelingError(
            f"{self.name} has no exact density (it is a sampling-importance-resampling "
            "approximation), so assess, which takes no key, cannot compute it: use "
            "estimate_logpdf(key, choices, model_args, proposal_args)"
        )

    def importance(self, key, constraints, model_args=(), proposal_args=()):
        """No constraint: ``(simulate(...), 0)``. Every latent constrained:
        ``(trace, log q̂_SIR(z))``. Partial constraints are not supported."""
        cm = choice_map(constraints)
        if cm.is_empty():
            return self.simulate(key, model_args, proposal_args), jnp.zeros(())
        shape = jax.eval_shape(
            lambda k: self.proposal.simulate(k, *proposal_args).choices, jax.random.key(0)
        )
        if set(shape.addresses()) != set(cm.addresses()):
            raise ModelingError(
                f"importance of {self.name}: constrain all of its choices "
                f"{sorted(shape.addresses())} or none; got {sorted(cm.addresses())}"
            )
        logp, ret = self.estimate_logpdf(key, cm, model_args, proposal_args)
        return Trace(cm, logp, ret, (model_args, proposal_args)), logp


def normalize(
    model: GenerativeFunction,
    observations,
    proposal: GenerativeFunction,
    particles: int = 1,
    selection=None,
) -> Normalized:
    """The posterior ``p(z | observations)`` of ``model``, approximated by
    sampling importance resampling (SIR) with ``proposal`` and ``particles`` particles.

    Args:
        model: the generative function ``p(x, z; model_args)``.
        observations: a choice map (or nested dict) ``x`` of observed addresses.
        proposal: a generative function ``q(z; proposal_args)`` over the model's latent
            addresses (as a guide would be).
        particles: ``K >= 1``.
        selection: how the returned particle is chosen, ``j ~ Categorical(w / sum w)``:
            ``gv.categorical.enum`` (default: every index is evaluated, exactly
            weighted — zero variance from the selection, ``K`` evaluations of the rest of
            the objective), or ``gv.categorical.reinforce`` / ``.mvd`` (one evaluation,
            more variance). The gradient flows through the weights either way.

    Returns:
        A generative function over ``z``, called as ``(model_args, proposal_args)``
        (two tuples), with ``simulate`` (score: ``log γ(z_j) - log Ẑ``; ``exp(-score)``
        unbiased for ``1 / q_SIR(z_j)``), ``estimate_logpdf`` (``exp`` unbiased for
        ``q_SIR(z)``), ``importance`` and ``estimate_log_normalizer(key, model_args,
        proposal_args)`` (``exp`` unbiased for ``p(observations)``). The derivations are
        in :mod:`genvi.inference._normalize`.

    Examples:
        >>> @gv.gen
        ... def model(theta):
        ...     z = gv.normal(theta, 1.0) @ "z"
        ...     gv.normal(z, 0.5) @ "x"
        >>> @gv.gen
        ... def proposal(phi):
        ...     gv.normal(phi, 1.0) @ "z"
        >>> key = jax.random.key(0)
        >>> post = gv.normalize(model, {"x": 1.0}, proposal, particles=10)
        >>> tr = post.simulate(key, (0.0,), (0.0,))     # approximately p(z | x = 1)
        >>> tr.choices.addresses()
        [('z',)]
        >>> log_z = post.estimate_log_normalizer(key, (0.0,), (0.0,))
        >>> elbo = gv.objectives.elbo(model, post)      # as a guide: guide_args = ((theta,), (phi,))
        >>> elbo.estimate(key, (0.0,), ((0.0,), (0.0,)), {"x": 1.0}).shape
        ()
    """
    return Normalized(model, observations, proposal, particles, selection)


__all__ = ["Normalized", "normalize"]
