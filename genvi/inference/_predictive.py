"""Draws from a trained guide: posterior predictive sampling and importance resampling."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from genvi.core._choicemap import ChoiceMap, choice_map
from genvi.core._errors import ChoiceTypeError
from genvi.core._genfn import GenerativeFunction
from genvi.core._keys import check_key


def _check(who, model_args, guide_args, draws, name="draws"):
    for what, args in (("model_args", model_args), ("guide_args", guide_args)):
        if not isinstance(args, (tuple, list)):
            raise ChoiceTypeError(
                f"{who}: {what} must be a tuple of arguments, e.g. (theta,) (or () for none), "
                f"got {type(args).__name__}"
            )
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ValueError(f"{who}: {name} must be an int >= 1, got {draws!r}")


def _without(choices: ChoiceMap, latents: ChoiceMap) -> ChoiceMap:
    """The choices of ``choices`` at addresses that ``latents`` does not hold."""
    out = ChoiceMap()
    for a in choices.addresses():
        if a and not latents.has(a):
            out = out.set(a, choices[a])
    return out


class Resampled(NamedTuple):
    """Draws of :func:`importance_resample`.

    Attributes:
        latents: a choice map of the resampled latents, each with a leading axis of
            ``draws``.
        log_weights: the log importance weights ``log p(x, z_k) - log q(z_k)`` of the
            ``particles`` guide draws resampled from.
    """

    latents: ChoiceMap
    log_weights: Any

    @property
    def effective_sample_size(self):
        """Kish's effective sample size of the particles, ``1 / sum w_k^2`` with
        normalized weights: near ``particles`` for a guide close to the posterior."""
        w = jax.nn.softmax(self.log_weights)
        return 1.0 / jnp.sum(w**2)


def importance_resample(
    key,
    model: GenerativeFunction,
    guide: GenerativeFunction,
    model_args: tuple = (),
    guide_args: tuple = (),
    observations=None,
    *,
    draws: int = 1000,
    particles: int = 10_000,
) -> Resampled:
    """Posterior draws refined by sampling-importance-resampling (SIR; Rubin, 1988).

    Draws ``particles`` latents ``z_k ~ q`` from ``guide``, weighs them with
    ``w_k = p(x, z_k) / q(z_k)`` (``x`` the ``observations``) and draws ``draws`` of them
    with replacement in proportion to ``w_k``. As ``particles`` grows the draws tend to
    the exact posterior ``p(z | x)``, for any guide whose support covers it; for a fixed
    number they correct much of a guide's mismatch (a mean off, a scale too narrow
    shows as weights of very unequal size: see ``effective_sample_size`` and
    :func:`psis_khat`). Vectorized with ``jax.vmap`` and compiled.

    Returns:
        A :class:`Resampled`: the latents (a choice map with a leading axis of
        ``draws``) and the particles' log weights.

    Examples:
        >>> @gv.gen
        ... def model():
        ...     z = gv.normal(0.0, 1.0) @ "z"
        ...     gv.normal(z, 1.0) @ "x"
        >>> @gv.gen
        ... def guide():                             # too wide and off: posterior N(1, 0.5)
        ...     gv.normal(0.0, 2.0) @ "z"
        >>> res = gv.importance_resample(jax.random.key(0), model, guide, (), (), {"x": 2.0},
        ...                              draws=2000, particles=20_000)
        >>> res.latents["z"].shape
        (2000,)
        >>> bool(abs(res.latents["z"].mean() - 1.0) < 0.1)      # the posterior mean is 1
        True
    """
    from genvi.core._particles import particle_keys
    from genvi.objectives._common import log_joint, model_key

    who = "importance_resample"
    check_key(key, who, single=True)
    _check(who, model_args, guide_args, draws)
    _check(who, model_args, guide_args, particles, "particles")
    if observations is None:
        raise ValueError(
            f"{who}: observations are needed to weigh the guide's draws by p(x, z) / q(z); "
            "pass the model's observed addresses, e.g. {'x': x}"
        )
    obs = choice_map(observations)

    def particle(k):
        tr = guide.simulate(k, *guide_args)
        return tr.choices, log_joint(model_key(k), model, tr.choices, obs, model_args) - tr.score

    @jax.jit
    def run(key):
        k1, k2 = jax.random.split(key)
        choices, lw = jax.vmap(particle)(particle_keys(k1, particles))
        idx = jax.random.categorical(k2, lw, shape=(draws,))
        return jax.tree.map(lambda a: a[idx], choices), lw

    latents, lw = run(key)
    return Resampled(latents, lw)


class Predictive(NamedTuple):
    """Posterior predictive draws from :func:`predictive`.

    Attributes:
        latents: the latents drawn from the guide (or resampled), a choice map whose
            values have a leading axis of ``draws``.
        predictions: the model's other choices (its observed addresses, and any it
            makes beyond them) drawn from the model given each draw of the latents, with
            the same leading axis.
    """

    latents: ChoiceMap
    predictions: ChoiceMap

    @property
    def choices(self) -> ChoiceMap:
        """Every choice of the model, latents and predictions merged."""
        return self.latents.merge(self.predictions)


def predictive(
    key,
    model: GenerativeFunction,
    guide: GenerativeFunction,
    model_args: tuple = (),
    guide_args: tuple = (),
    observations=None,
    *,
    draws: int = 1000,
    resample: int | None = None,
) -> Predictive:
    """Posterior predictive draws: latents ``z ~ q`` from a (trained) ``guide``, then
    the model's other choices ``x_new ~ p(x | z)`` from ``model`` given each ``z``.

    The model is run with ``model.importance`` constrained by the latents only, so the
    observed addresses get fresh draws: replicated data for posterior predictive checks
    (``gv.to_arviz`` then ``arviz.plot_ppc``). Pass model arguments that describe the data
    to predict (new covariates; for a model with ``gv.vmap(..., subsample=N)``, all ``N``
    points, whose scale is then 1). With ``resample=K``, the latents are
    :func:`importance_resample`'s draws from ``K`` guide particles instead (this needs
    ``observations``, to weigh them). Vectorized with ``jax.vmap`` and compiled.

    Returns:
        A :class:`Predictive` of two choice maps (``latents`` and ``predictions``) whose
        values have a leading axis of ``draws``.

    Examples:
        >>> @gv.gen
        ... def model():
        ...     z = gv.normal(0.0, 1.0) @ "z"
        ...     gv.normal(z, 1.0) @ "x"
        >>> @gv.gen
        ... def posterior():                        # the exact posterior given x = 2
        ...     gv.normal(1.0, 0.5**0.5) @ "z"
        >>> pred = gv.predictive(jax.random.key(0), model, posterior, draws=4000)
        >>> pred.latents["z"].shape, pred.predictions["x"].shape
        ((4000,), (4000,))
        >>> bool(abs(pred.predictions["x"].var() - 1.5) < 0.15)  # predictive N(1, 1 + 1/2)
        True
    """
    who = "predictive"
    check_key(key, who, single=True)
    _check(who, model_args, guide_args, draws)
    k1, k2 = jax.random.split(key)
    if resample is not None:
        latents = importance_resample(
            k1,
            model,
            guide,
            model_args,
            guide_args,
            observations,
            draws=draws,
            particles=resample,
        ).latents
    else:
        latents = jax.jit(jax.vmap(lambda k: guide.simulate(k, *guide_args).choices))(
            jax.random.split(k1, draws)
        )

    @jax.jit
    def simulate(keys, latents):
        return jax.vmap(lambda k, z: model.importance(k, z, *model_args)[0].choices)(keys, latents)

    choices = simulate(jax.random.split(k2, draws), latents)
    return Predictive(latents, _without(choices, latents))


__all__ = ["Predictive", "Resampled", "importance_resample", "predictive"]
