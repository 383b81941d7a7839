"""Measure-valued derivatives (Pflug 1989; Mohamed et al. 2020, sec. 6).

For a parameter theta of p, write d/dtheta p(z) = c(theta) (p+(z) - p-(z)) with p+ and p-
probability distributions. Then

    d/dtheta E_p[f(z)] = c(theta) (E_{p+}[f] - E_{p-}[f]),

estimated without bias by evaluating f at one draw from each of p+ and p- (coupled with the
primal draw where that is valid). For a scalar-event family and a value with n elements,
each element i gets candidate values c[i, m] and weights w[i, m] (linear in the parameter
tangents); the forward-mode estimate of the gradient is

    sum_{i, m} w[i, m] f(z with element i replaced by c[i, m]) + (df)(z).

The decompositions used:

- normal(mu, sigma): d/dmu: c = 1/(sigma sqrt(2 pi)), p+- = mu +- sigma * Rayleigh;
  d/dsigma: c = 1/sigma, p+ = mu + sigma * (random sign) * Maxwell, p- = the normal itself.
- flip(p) / bernoulli(logits): d/dp: c = 1, p+ = delta_1, p- = delta_0.
- categorical(logits): d/dl_k E f = pi_k (f(k) - E f).
- poisson(rate): d/drate: c = 1, p+ = 1 + Poisson(rate), p- = Poisson(rate).
- geometric(p) (failures before the first success): d/dp: c = 1/p, p+ = Geometric(p),
  p- = 1 + Geometric(p) + Geometric(p) (the size-biased geometric).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def _bc(x, shape):
    return jnp.broadcast_to(jnp.asarray(x), shape)


def mvd_candidates(rule: str | None, key, z, args, dargs):
    """Candidate values ``[n, M]`` and their weights ``[n, M]`` for each element of ``z``."""
    shape = jnp.shape(z)
    if rule == "normal":
        if len(args) == 1:  # scale left at numpyro's default, 1
            args, dargs = (args[0], 1.0), (dargs[0], 0.0)
        loc, scale = (_bc(a, shape) for a in args)
        dloc, dscale = (_bc(a, shape) for a in dargs)
        k1, k2, k3 = jax.random.split(key, 3)
        rayleigh = jnp.sqrt(-2.0 * jnp.log(jax.random.uniform(k1, shape, minval=1e-38)))
        maxwell = jnp.linalg.norm(jax.random.normal(k2, shape + (3,)), axis=-1)
        sign = jnp.where(jax.random.bernoulli(k3, 0.5, shape), 1.0, -1.0)
        c_mu = 1.0 / (scale * math.sqrt(2 * math.pi))
        cands = jnp.stack(
            [loc + scale * rayleigh, loc - scale * rayleigh, loc + sign * scale * maxwell, z], -1
        )
        weights = jnp.stack([dloc * c_mu, -dloc * c_mu, dscale / scale, -dscale / scale], -1)
    elif rule in ("flip", "bernoulli"):
        (p,), (dp,) = args, dargs
        dp = _bc(dp, shape)
        if rule == "bernoulli":
            prob = jax.nn.sigmoid(_bc(p, shape))
            dp = prob * (1 - prob) * dp
        cands = jnp.stack([jnp.ones(shape, z.dtype), jnp.zeros(shape, z.dtype)], -1)
        weights = jnp.stack([dp, -dp], -1)
    elif rule == "categorical":
        (logits,), (dlogits,) = args, dargs
        k = jnp.shape(logits)[-1]
        logits = jnp.broadcast_to(logits, shape + (k,))
        dlogits = jnp.broadcast_to(dlogits, shape + (k,))
        pi = jax.nn.softmax(logits, -1)
        w = pi * dlogits
        cands = jnp.concatenate(
            [jnp.broadcast_to(jnp.arange(k, dtype=z.dtype), shape + (k,)), z[..., None]], -1
        )
        weights = jnp.concatenate([w, -jnp.sum(w, -1, keepdims=True)], -1)
    elif rule == "poisson":
        (_,), (drate,) = args, dargs
        drate = _bc(drate, shape)
        cands = jnp.stack([z + 1, z], -1)
        weights = jnp.stack([drate, -drate], -1)
    elif rule == "geometric":
        (p,), (dp,) = args, dargs
        p, dp = _bc(p, shape), _bc(dp, shape)
        u = jax.random.uniform(key, shape, minval=1e-38)
        extra = jnp.floor(jnp.log(u) / jnp.log1p(-p)).astype(z.dtype)
        cands = jnp.stack([z, 1 + z + extra], -1)
        weights = jnp.stack([dp / p, -dp / p], -1)
    else:  # pragma: no cover - strategies check support first
        raise AssertionError(rule)
    m = cands.shape[-1]
    return cands.reshape((-1, m)).astype(z.dtype), weights.reshape((-1, m))
