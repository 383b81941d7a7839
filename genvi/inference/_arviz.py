"""ArviZ export of draws, and the PSIS diagnostic of a guide (both need ``arviz``)."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from genvi.core._choicemap import ChoiceMap, choice_map
from genvi.core._keys import check_key
from genvi.inference._predictive import Predictive, Resampled, _check


def _arviz(who: str):
    try:
        import arviz
    except ImportError:  # pragma: no cover - arviz is in the dev extra
        raise ImportError(
            f"{who} needs ArviZ, an optional dependency of genvi: pip install arviz "
            "(or pip install 'genvi[arviz]')"
        ) from None
    return arviz


def _name(addr) -> str:
    return ".".join(str(a) for a in addr)


def _variables(cm: ChoiceMap, chains: int | None, what: str) -> dict[str, np.ndarray]:
    out = {}
    for a in cm.addresses():
        v = np.asarray(cm[a])
        if chains is not None:
            if v.ndim < 1 or v.shape[0] % chains:
                raise ValueError(
                    f"to_arviz: the {what} at {_name(a)!r} has shape {v.shape}, whose leading "
                    f"(draws) axis does not split into chains={chains} chains of equal length"
                )
            v = v.reshape((chains, v.shape[0] // chains) + v.shape[1:])
        out[_name(a)] = v
    return out


def to_arviz(
    draws: Predictive | Resampled | Any,
    *,
    posterior_predictive=None,
    observations=None,
    chains: int = 1,
):
    """An ``arviz.InferenceData`` of genvi draws, for ``arviz.summary``,
    ``plot_posterior``, ``plot_ppc`` and the rest of ArviZ.

    Args:
        draws: a :class:`Predictive` (its latents become the ``posterior`` group, its
            predictions ``posterior_predictive``), a :class:`Resampled`, or a choice map
            (or nested dict) of latents whose values have a leading axis of draws.
        posterior_predictive: a choice map of predictions with the same leading axis
            (when ``draws`` is not a :class:`Predictive`).
        observations: the observed data, a choice map or nested dict without a draws
            axis: the ``observed_data`` group.
        chains: the leading axis of ``chains * n`` draws is split into ``chains`` chains
            of ``n`` draws (ArviZ's ``chain`` and ``draw`` dimensions); independent draws
            from a guide make one chain.

    Variables are named by their addresses, the parts of a hierarchical address joined by
    ``"."`` (``("data", "x")`` becomes ``"data.x"``). Needs ``arviz`` (in genvi's ``dev``
    and ``arviz`` extras).

    Examples:
        >>> @gv.gen
        ... def model():
        ...     z = gv.normal(0.0, 1.0) @ "z"
        ...     gv.normal(z, 1.0) @ "x"
        >>> @gv.gen
        ... def guide():
        ...     gv.normal(1.0, 0.7) @ "z"
        >>> pred = gv.predictive(jax.random.key(0), model, guide, draws=400)
        >>> idata = gv.to_arviz(pred, observations={"x": 2.0}, chains=2)
        >>> idata.posterior["z"].shape                   # (chain, draw)
        (2, 200)
        >>> sorted(idata.groups())
        ['observed_data', 'posterior', 'posterior_predictive']
    """
    az = _arviz("to_arviz")
    if isinstance(chains, bool) or not isinstance(chains, int) or chains < 1:
        raise ValueError(f"to_arviz: chains must be an int >= 1, got {chains!r}")
    if isinstance(draws, Predictive):
        if posterior_predictive is not None:
            raise ValueError(
                "to_arviz: draws is a Predictive, which holds its predictions already; "
                "leave posterior_predictive out"
            )
        latents, predictions = draws.latents, draws.predictions
    else:
        latents = draws.latents if isinstance(draws, Resampled) else choice_map(draws)
        predictions = None if posterior_predictive is None else choice_map(posterior_predictive)
    groups: dict[str, Any] = {"posterior": _variables(latents, chains, "latent")}
    if predictions is not None and not predictions.is_empty():
        groups["posterior_predictive"] = _variables(predictions, chains, "prediction")
    if observations is not None:
        groups["observed_data"] = _variables(choice_map(observations), None, "observation")
    return az.from_dict(**groups)


def psis_khat(
    key,
    model,
    guide,
    model_args: tuple = (),
    guide_args: tuple = (),
    observations=None,
    *,
    particles: int = 1000,
) -> float:
    """The Pareto k-hat of the guide's importance weights: a one-number check of how
    well a guide matches the posterior (Yao, Vehtari, Simpson & Gelman, 2018, "Yes, but
    did it work?: Evaluating variational inference").

    ``particles`` draws ``z_k ~ q`` give the log weights ``log p(x, z_k) - log q(z_k)``;
    a generalized Pareto distribution is fit to their largest values (Pareto-smoothed
    importance sampling, ArviZ's ``psislw``) and its shape ``k`` is returned. The weights
    have finite moments of order below ``1 / k``. Reading:

    - ``k < 0.5``: good; the guide is close to the posterior, and importance sampling
      with it (:func:`importance_resample`) converges fast;
    - ``0.5 <= k < 0.7``: usable; the guide misses some of the posterior, and
      importance-weighted estimates converge slowly but usefully;
    - ``k >= 0.7``: unreliable; the guide is far from the posterior (typically too narrow,
      or in the wrong place), its estimates should not be trusted.

    Needs ``arviz``; runs on the host (not under ``jax.jit``).

    Examples:
        >>> @gv.gen
        ... def model():
        ...     z = gv.normal(jnp.zeros(10), 1.0) @ "z"
        ...     gv.normal(z, 1.0) @ "x"
        >>> @gv.gen
        ... def guide(scale):
        ...     gv.normal(jnp.ones(10), scale) @ "z"
        >>> key, obs = jax.random.key(0), {"x": 2.0 * jnp.ones(10)}  # posterior: N(1, 0.707^2)
        >>> gv.psis_khat(key, model, guide, (), (0.707,), obs) < 0.5       # exact
        True
        >>> gv.psis_khat(key, model, guide, (), (0.2,), obs) > 0.7         # far too narrow
        True
    """
    from genvi.objectives._common import log_weights

    az = _arviz("psis_khat")
    who = "psis_khat"
    check_key(key, who, single=True)
    _check(who, model_args, guide_args, particles, "particles")
    if observations is None:
        raise ValueError(
            f"{who}: observations are needed to weigh the guide's draws by p(x, z) / q(z); "
            "pass the model's observed addresses, e.g. {'x': x}"
        )
    lw = jax.jit(
        lambda k: log_weights(k, particles, model, guide, model_args, guide_args, observations)
    )(key)
    lw = np.asarray(lw, np.float64)
    if not np.all(np.isfinite(lw)):
        raise ValueError(
            f"{who}: {int(np.sum(~np.isfinite(lw)))} of {particles} log weights are not finite "
            "(a guide draw outside the model's support, or an overflow): the guide does not "
            "cover the posterior"
        )
    _, khat = az.psislw(lw)
    return float(khat)


__all__ = ["psis_khat", "to_arviz"]
