"""The calling convention shared by every library objective, and its building blocks.

Each objective is built from a model and a guide (and options) and is an
:class:`~genvi.Expectation` called as::

    objective(key, model_args, guide_args, observations)

- ``model_args``: tuple of arguments for ``model`` (its parameters, say ``(theta,)``);
- ``guide_args``: tuple of arguments for ``guide`` (``(phi,)`` or ``(phi, x)`` for an
  amortized guide);
- ``observations``: a choice map (or nested dict) of the model's observed addresses.

The guide samples the model's latent choices, at the same addresses; the model is scored
on the guide's choices merged with the observations. Densities are taken with
``estimate_logpdf`` (a key per call), so a :func:`genvi.marginal` or
:func:`genvi.normalize` can stand where the model or the guide stands. Data in batches
work as they do in the model: a minibatch at one address, or ``gv.vmap`` over data points.

Every value is a *lower bound* to maximize (``cubo`` is the exception: an upper bound to
minimize). Gradients: ``objective.grad_estimate(key, model_args, guide_args, obs,
argnums=(0, 1))`` gives ``(d/d model_args, d/d guide_args)``.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
from jax.extend.core import subjaxprs

from genvi.core._choicemap import ChoiceMap, choice_map, format_address
from genvi.core._derive import derive_key
from genvi.core._errors import AddressError, ChoiceTypeError, StrategyError
from genvi.core._particles import particle_keys

sg = jax.lax.stop_gradient


def check_convention(model_args, guide_args, observations, name: str) -> None:
    """The shared calling convention ``(key, model_args, guide_args, observations)``:
    argument tuples and a choice map, checked when the objective is traced."""
    for what, args, example in (
        ("model_args", model_args, "(theta,)"),
        ("guide_args", guide_args, "(phi,)"),
    ):
        if not isinstance(args, (tuple, list)):
            raise ChoiceTypeError(
                f"{name}: {what} must be a tuple of the {what.split('_')[0]}'s arguments, "
                f"e.g. {example} (or () for none), got {type(args).__name__}; objectives are "
                "called as (key, model_args, guide_args, observations)"
            )
    if observations is not None and not isinstance(observations, Mapping):
        raise ChoiceTypeError(
            f"{name}: observations must be a choice map or a nested dict of the model's "
            f'observed addresses, e.g. {{"x": x}}, got {type(observations).__name__}'
        )


def _addr_list(cm: ChoiceMap) -> str:
    return ", ".join(format_address(a) for a in cm.addresses()) or "none"


def _observed(obs: ChoiceMap, addr) -> bool:
    """Whether ``obs`` holds ``addr``, something under it, or a value at a prefix of it."""
    if obs.has(addr):
        return True
    return any(obs.has(addr[:i]) and obs.get_submap(addr[:i]).is_leaf for i in range(1, len(addr)))


def _log_joint(key, model, latents, observations, model_args, who="the guide"):
    latents = choice_map(latents)
    obs = choice_map(observations)
    clash = [a for a in latents.addresses() if _observed(obs, a)]
    if clash:
        raise AddressError(
            f"{who} samples {', '.join(format_address(a) for a in clash)}, which "
            f"{'is' if len(clash) == 1 else 'are'} also given as observation(s) of the model "
            f"{model.name}; {who} must sample only the model's latent choices"
        )
    try:
        return model.estimate_logpdf(key, latents.merge(obs), *model_args)
    except (AddressError, ChoiceTypeError) as e:
        context = (
            f"\n(while scoring the model {model.name} on the choices sampled by {who} "
            f"[{_addr_list(latents)}] and the observations [{_addr_list(obs)}]: {who} must "
            "sample exactly the model's latent choices, at the same addresses and with the "
            "same shapes"
        )
        raise type(e)(f"{e}{context}{_diagnose(model, model_args, latents, obs, who)})") from None


def _diagnose(model, model_args, latents: ChoiceMap, obs: ChoiceMap, who: str) -> str:
    """What differs between the model's choices and the guide's (for an error message)."""
    try:
        shapes = jax.eval_shape(lambda k: model.simulate(k, *model_args).choices, jax.random.key(0))
    except Exception:  # noqa: BLE001 - only a diagnosis: keep the original error
        return ""
    model_addrs = {a: shapes[a] if a else shapes.value for a in shapes.addresses()}
    found = []
    for a in latents.addresses():
        if a not in model_addrs:
            found.append(f"{who} samples {format_address(a)}, which the model does not have")
        elif jnp.shape(latents[a]) != model_addrs[a].shape:
            found.append(
                f"at {format_address(a)} {who}'s value has shape {jnp.shape(latents[a])} but "
                f"the model's has shape {model_addrs[a].shape}"
            )
    for a in model_addrs:
        if not latents.has(a) and not obs.has(a):
            found.append(
                f"the model needs {format_address(a)}, which {who} does not sample and the "
                "observations do not give"
            )
    return ("; " + "; ".join(found)) if found else ""


def log_joint(key, model, latents, observations, model_args):
    """``log p(observations, latents; model_args)``, with a key for models whose density
    is estimated (``exp`` of the result is then an unbiased estimate).

    Errors say which side is at fault: an address that ``latents`` and ``observations``
    share, a latent the model does not have, a latent it needs that is missing, or a
    shape that differs, each naming the address.

    Examples:
        >>> @gv.gen
        ... def model():
        ...     z = gv.normal(0.0, 1.0) @ "z"
        ...     gv.normal(z, 1.0) @ "x"
        >>> lp = gv.objectives.log_joint(jax.random.key(0), model, {"z": 0.0}, {"x": 0.0}, ())
        >>> round(float(lp), 4)                          # two standard normal densities at 0
        -1.8379
    """
    return _log_joint(key, model, latents, observations, model_args)[0]


def log_weight(key, model, guide, model_args, guide_args, observations):
    """One importance log weight ``log p(x, z) - log q(z)`` with ``z ~ guide``.

    With a :func:`genvi.marginal` guide, ``log q`` is the trace's score, whose ``exp(-.)``
    is an unbiased estimate of ``1/q(z)``; with a marginal model, ``log p`` is the log of
    an unbiased estimate. Either way ``E[log_weight] <= log p(x)``.

    Examples:
        >>> @gv.gen
        ... def model(theta):
        ...     z = gv.normal(theta, 1.0) @ "z"
        ...     gv.normal(z, 0.5) @ "x"
        >>> @gv.gen
        ... def guide(phi):
        ...     gv.normal(phi[0], jnp.exp(phi[1])) @ "z"
        >>> key, theta, phi, obs = jax.random.key(0), 0.0, jnp.zeros(2), {"x": 1.0}
        >>> lw = gv.objectives.log_weight(key, model, guide, (theta,), (phi,), obs)
        >>> lw.shape
        ()
    """
    tr = guide.simulate(key, *guide_args)
    return log_joint(model_key(key), model, tr.choices, observations, model_args) - tr.score


#: Folded into a weight's key to make the model's: at least 2^31, so it is no address's
#: hash (those are below 2^31) and no index of a split, and the model's randomness never
#: meets the guide's.
_MODEL_STREAM = 0x80000001


def model_key(key):
    """The key a log weight hands the model when the guide was run with ``key``:
    ``key`` folded with a constant no address hash takes, so the model's randomness (a
    marginal's particles) is independent of the guide's. A model with an exact density
    never uses it, and the compiled program then never computes it (no PRNG call per
    particle).

    Examples:
        >>> key = jax.random.key(0)
        >>> k_model = gv.objectives.model_key(key)   # what log_weight(key, ...) gives the model
        >>> bool((jax.random.key_data(k_model) != jax.random.key_data(key)).any())
        True
    """
    return derive_key(key, _MODEL_STREAM)


def check_particles(particles: int, name: str, minimum: int = 1) -> int:
    """Raise ``ValueError`` unless ``particles`` is an int ``>= minimum``.

    Examples:
        >>> gv.objectives.check_particles(5, "my_objective")
        5
        >>> gv.objectives.check_particles(0, "my_objective")
        Traceback (most recent call last):
        ...
        ValueError: my_objective: particles must be an int >= 1, got 0
    """
    if isinstance(particles, bool) or not isinstance(particles, int) or particles < minimum:
        raise ValueError(f"{name}: particles must be an int >= {minimum}, got {particles!r}")
    return particles


def log_weights(key, particles, model, guide, model_args, guide_args, observations):
    """``particles`` independent log weights (vectorized with ``jax.vmap``).

    Examples:
        >>> @gv.gen
        ... def model(theta):
        ...     z = gv.normal(theta, 1.0) @ "z"
        ...     gv.normal(z, 0.5) @ "x"
        >>> @gv.gen
        ... def guide(phi):
        ...     gv.normal(phi[0], jnp.exp(phi[1])) @ "z"
        >>> key, theta, phi, obs = jax.random.key(0), 0.0, jnp.zeros(2), {"x": 1.0}
        >>> lw = gv.objectives.log_weights(key, 100, model, guide, (theta,), (phi,), obs)
        >>> lw.shape
        (100,)
        >>> log_ml = gv.objectives.logmeanexp(lw)       # an estimate of log p(x)
    """
    keys = particle_keys(key, particles)
    return jax.vmap(lambda k: log_weight(k, model, guide, model_args, guide_args, observations))(
        keys
    )


def logmeanexp(x, axis=None):
    """``log(mean(exp(x)))``, computed stably.

    Examples:
        >>> round(float(gv.objectives.logmeanexp(jnp.log(jnp.array([1.0, 2.0, 3.0])))), 4)   # log 2
        0.6931
    """
    n = x.shape[axis] if axis is not None else x.size
    return jax.scipy.special.logsumexp(x, axis=axis) - jnp.log(n)


def score_term(coefficient, logp):
    """``sg(coefficient) * (logp - sg(logp))``: adds ``coefficient * d logp`` to the
    gradient and zero to the value (``sg`` is ``jax.lax.stop_gradient``).

    The building block of score-function (REINFORCE) estimators written by hand: sample
    ``z`` with the distribution's parameters under ``stop_gradient`` (so the sample sites
    add no gradient of their own), recompute ``logp = log q(z)`` with gradient, and add
    ``score_term(f(z) - b, logp)``: its gradient is ``(f - b) d log q(z)``, unbiased for
    ``d E_q[f]`` (minus ``E[d f]``) when the baseline ``b`` does not depend on ``z``.
    Elementwise on arrays: sum the result.

    Examples:
        >>> logq = lambda phi: gv.normal.logpdf(0.3, phi, 1.0)
        >>> f = 2.0
        >>> value, grad = jax.value_and_grad(lambda phi: gv.objectives.score_term(f, logq(phi)))(0.0)
        >>> float(value), round(float(grad), 4)          # zero value; gradient f * d log q = 2 * 0.3
        (0.0, 0.6)
    """
    return sg(coefficient) * (logp - sg(logp))


def loo_baselines(logw, axis=0):
    """Leave-one-out baselines of VIMCO (Mnih & Rezende, 2016), geometric variant.

    ``b_k = log((1/K) (sum_{j != k} w_j + exp(m_k)))`` with ``m_k`` the mean of the
    *other* log weights: the multi-sample bound ``L = log((1/K) sum_j w_j)`` with particle
    ``k`` replaced by a value that does not depend on it. ``L - b_k`` is the signal that
    multiplies ``d log q(z_k)``; ``b_k`` does not depend on ``z_k``, so subtracting it keeps
    the estimator unbiased. Needs ``K >= 2`` along ``axis``.

    Examples:
        >>> lw = jnp.array([-1.0, -2.0, -0.5])
        >>> b = gv.objectives.loo_baselines(lw)   # b[0]: w_0 replaced by exp(mean(-2.0, -0.5))
        >>> expected = gv.objectives.logmeanexp(jnp.array([-1.25, -2.0, -0.5]))
        >>> bool(jnp.isclose(b[0], expected))
        True
    """
    logw = jnp.moveaxis(jnp.asarray(logw), axis, -1)
    k = logw.shape[-1]
    if k < 2:
        raise ValueError(f"loo_baselines needs at least 2 particles, got {k}")
    others = (jnp.sum(logw, axis=-1, keepdims=True) - logw) / (k - 1)  # m_k
    eye = jnp.eye(k, dtype=bool)
    mat = jnp.where(eye, others[..., :, None], logw[..., None, :])  # row k: w_k replaced
    b = jax.scipy.special.logsumexp(mat, axis=-1) - jnp.log(k)
    return jnp.moveaxis(b, -1, axis)


def check_reparam(guide, guide_args, objective: str):
    """Raise :class:`~genvi.StrategyError` unless every random choice of ``guide`` is
    sampled with REPARAM (checked on the staged program, when the objective is traced).

    Examples:
        >>> @gv.gen
        ... def guide(p):
        ...     gv.flip(p) @ "b"
        >>> gv.objectives.check_reparam(guide, (0.5,), "my_objective")
        Traceback (most recent call last):
        ...
        genvi.core._errors.StrategyError: my_objective needs a guide whose choices are all REPARAM, ...
    """
    from genvi.distributions._primitive import sample_p
    from genvi.distributions._strategies import Reparam

    closed = jax.make_jaxpr(lambda k: guide.simulate(k, *guide_args).score)(jax.random.key(0))
    bad = []

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive is sample_p and not isinstance(eqn.params["strategy"], Reparam):
                bad.append(
                    f"{format_address(eqn.params['addr']) if eqn.params['addr'] else '?'} "
                    f"({eqn.params['site'].family.name}, {eqn.params['strategy'].name})"
                )
        for sub in subjaxprs(jaxpr):
            walk(sub)

    walk(closed.jaxpr)
    if bad:
        raise StrategyError(
            f"{objective} needs a guide whose choices are all REPARAM, but {guide.name} "
            f"samples {', '.join(bad)}; use the plain estimator for such guides"
        )


__all__ = [
    "check_particles",
    "check_reparam",
    "log_joint",
    "log_weight",
    "log_weights",
    "logmeanexp",
    "loo_baselines",
    "score_term",
]
