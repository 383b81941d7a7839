"""Reweighted wake-sleep: wake updates of the model and the guide, sleep update of the guide."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from genvi.adev._expectation import Expectation, expectation
from genvi.core._choicemap import ChoiceMap, choice_map
from genvi.core._derive import row_keys
from genvi.core._errors import AddressError
from genvi.core._particles import particle_keys
from genvi.objectives._common import check_convention, check_particles, log_joint, logmeanexp, sg


class RWS(NamedTuple):
    """The three objectives of reweighted wake-sleep, each an
    :class:`~genvi.Expectation` called as ``(key, model_args, guide_args, observations)``.

    Attributes:
        wake_model: maximize in ``model_args`` (wake-theta).
        wake_guide: maximize in ``guide_args`` (wake-phi).
        sleep_guide: maximize in ``guide_args`` (sleep-phi).
    """

    wake_model: Expectation
    wake_guide: Expectation
    sleep_guide: Expectation


def _split_observed(choices: ChoiceMap, observed: ChoiceMap):
    latent, obs = ChoiceMap(), ChoiceMap()
    for a in choices.addresses():
        if any(observed.has(a[:i]) for i in range(1, len(a) + 1)):
            obs = obs.set(a, choices[a])
        else:
            latent = latent.set(a, choices[a])
    missing = [a for a in observed.addresses() if not choices.has(a)]
    if missing:
        raise AddressError(f"rws sleep: the model never samples the observed address(es) {missing}")
    return latent, obs


def rws(model, guide, particles: int = 5, amortize: Callable | None = None) -> RWS:
    """Reweighted wake-sleep (Bornschein & Bengio, "Reweighted wake-sleep", ICLR 2015;
    Le et al., "Revisiting reweighted wake-sleep", UAI 2019).

    With ``z_1..z_K ~ q`` drawn with the guide's parameters under ``stop_gradient`` (no
    gradient through the sampling, whatever the strategies), ``w_k = p(x, z_k) / q(z_k)``
    and self-normalized weights ``ŵ_k = w_k / sum_j w_j``:

    - ``wake_model``: value ``log (1/K) sum_k w_k`` (the IWAE bound); gradient in the model
      ``sum_k ŵ_k d_theta log p(x, z_k)``, which is the IWAE gradient in ``theta``
      (unbiased for it).
    - ``wake_guide``: value ``sum_k sg(ŵ_k) log q(z_k)``, a self-normalized estimate of
      ``E_{p(z | x)}[log q(z)]``; its gradient ``sum_k ŵ_k d_phi log q(z_k)`` estimates
      ``-d_phi KL(p(. | x) || q)``. Self-normalized: consistent as ``K`` grows, biased
      for finite ``K``.
    - ``sleep_guide``: ``(z, x') ~ p`` (the model run forward with parameters held fixed),
      value ``log q(z; args')`` with ``args' = amortize(guide_args, x')`` (the dreamt
      observations ``x'`` at the addresses of ``observations``), or ``guide_args`` when
      ``amortize`` is None. Unbiased for ``E_{p(z, x)}[log q(z | x)]`` and its gradient
      (``-E_x[KL(p(. | x) || q)]`` up to a constant): use it with an amortized guide.

    All three are maximized. The guide needs an exact density.

    Examples:
        >>> @gv.gen
        ... def model(theta):
        ...     z = gv.normal(theta, 1.0) @ "z"
        ...     gv.normal(z, 0.5) @ "x"
        >>> @gv.gen
        ... def guide(phi):
        ...     gv.normal(phi[0], jnp.exp(phi[1])) @ "z"
        >>> key, theta, phi, obs = jax.random.key(0), 0.0, jnp.zeros(2), {"x": 1.0}
        >>> obj = gv.objectives.rws(model, guide, particles=10)
        >>> g_theta = obj.wake_model.grad_estimate(key, (theta,), (phi,), obs, argnums=0)[0]
        >>> g_phi = obj.wake_guide.grad_estimate(key, (theta,), (phi,), obs, argnums=1)[0]
        >>> g_theta.shape, g_phi.shape
        ((), (2,))
    """
    check_particles(particles, "rws")

    def weights(key, model_args, guide_args, observations, model_grad):
        def one(k):
            k1, k2, k3 = row_keys(k, 3)
            tr = guide.simulate(k1, *sg(guide_args))
            z = sg(tr.choices)
            logq, _ = guide.estimate_logpdf(k2, z, *guide_args)
            margs = model_args if model_grad else sg(model_args)
            return log_joint(k3, model, z, observations, margs), logq

        return jax.vmap(one)(particle_keys(key, particles))

    @expectation
    def wake_model(key, model_args, guide_args, observations):
        check_convention(model_args, guide_args, observations, "wake_model")
        logp, logq = weights(key, model_args, guide_args, observations, True)
        return logmeanexp(logp - sg(logq))

    @expectation
    def wake_guide(key, model_args, guide_args, observations):
        check_convention(model_args, guide_args, observations, "wake_guide")
        logp, logq = weights(key, model_args, guide_args, observations, False)
        w = jax.nn.softmax(sg(logp - logq))
        return jnp.sum(w * logq)

    @expectation
    def sleep_guide(key, model_args, guide_args, observations):
        check_convention(model_args, guide_args, observations, "sleep_guide")
        k1, k2 = row_keys(key, 2)
        tr = model.simulate(k1, *sg(model_args))
        latent, dreamt = _split_observed(sg(tr.choices), choice_map(observations))
        gargs = guide_args if amortize is None else tuple(amortize(guide_args, dreamt))
        logq, _ = guide.estimate_logpdf(k2, latent, *gargs)
        return logq

    return RWS(wake_model, wake_guide, sleep_guide)
