"""The continuous part of each automatic guide: a distribution over the unconstrained
vector ``u`` of size ``D`` (every continuous latent, mapped to the real line and
flattened, concatenated in address order).

Each family draws ``u`` through genvi's ``sample`` primitive with REPARAM (so the ADEV
transformation differentiates the draw pathwise) and gives ``log q(u)``:

- :class:`Normal`: ``u ~ N(loc, diag(scale^2))``, one array-valued draw;
- :class:`MVN`: ``u ~ N(loc, L L^T)``, ``L`` lower triangular (numpyro's
  ``MultivariateNormal``);
- :class:`LowRankMVN`: ``u ~ N(loc, s (W W^T + I) s)`` with ``s = diag(scale)`` and ``W``
  of shape ``[D, rank]`` (numpyro's ``LowRankMultivariateNormal``, as numpyro's
  ``AutoLowRankMultivariateNormal`` parameterizes it);
- :class:`Delta`: ``u = loc``, a point mass: no draw and no density;
- :class:`Flow`: ``eps ~ N(0, I)``, ``u = loc + scale * f(eps)`` with ``f`` a stack of
  numpyro's inverse autoregressive (IAF; Kingma et al., 2016) or block neural
  autoregressive (BNAF; De Cao et al., 2019) transforms, reversed between layers, and
  ``log q(u) = log N(eps) - log|det df/deps| - sum log scale``.

Positive parameters are stored unconstrained and mapped with numpyro's ``biject_to`` of
their constraint (softplus), so any optimizer can move them freely.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpyro.distributions as nd
from jax.example_libraries import stax
from numpyro.distributions import constraints as C
from numpyro.distributions import transforms as T
from numpyro.distributions.flows import (
    BlockNeuralAutoregressiveTransform,
    InverseAutoregressiveTransform,
)
from numpyro.nn import AutoregressiveNN, BlockNeuralAutoregressiveNN

from genvi.core._errors import ModelingError
from genvi.distributions import _library as lib
from genvi.distributions._distribution import distribution
from genvi.guides._discrete import density, draw

_POSITIVE = T.biject_to(C.softplus_positive)
_TRIL = T.biject_to(C.softplus_lower_cholesky)


@functools.cache
def _numpyro_dist(name: str):
    return distribution(getattr(nd, name))


class Continuous:
    """Interface: a distribution over ``u`` in R^D with learned parameters."""

    kind = "continuous"
    #: whether ``log q(u)`` is a sum over coordinates (importance may then constrain some
    #: latents and sample the others)
    factorized = False
    #: a point mass: no density, the value is a learned point
    point_mass = False

    def __init__(self, dim: int, dtype):
        self.dim = dim
        self.dtype = dtype

    def init(self, key, loc) -> dict:  # pragma: no cover - interface
        raise NotImplementedError

    def sample(self, key, params, addr):  # pragma: no cover - interface
        """``(u, log q(u))``."""
        raise NotImplementedError

    def logpdf(self, params, u):  # pragma: no cover - interface
        raise NotImplementedError

    def coords_logpdf(self, params, u):  # pragma: no cover - interface
        """``log q`` of each coordinate of ``u`` (factorized families)."""
        raise NotImplementedError

    def center(self, params):
        """A central point of ``q`` in the unconstrained space."""
        return params["loc"]

    def _scale(self, init_scale: float):
        return jnp.full((self.dim,), _POSITIVE.inv(jnp.asarray(init_scale, self.dtype)))


class Normal(Continuous):
    kind = "normal"
    factorized = True

    def __init__(self, dim, dtype, init_scale: float):
        super().__init__(dim, dtype)
        self.init_scale = init_scale

    def init(self, key, loc):
        return {"loc": loc, "scale": self._scale(self.init_scale)}

    def _args(self, params):
        return (params["loc"], _POSITIVE(params["scale"]))

    def sample(self, key, params, addr):
        return draw(lib.normal, key, self._args(params), addr)

    def logpdf(self, params, u):
        return density(lib.normal, u, self._args(params))

    def coords_logpdf(self, params, u):
        return nd.Normal(*self._args(params)).log_prob(u)


class MVN(Continuous):
    kind = "mvn"

    def __init__(self, dim, dtype, init_scale: float):
        super().__init__(dim, dtype)
        self.init_scale = init_scale

    def init(self, key, loc):
        tril = _TRIL.inv(self.init_scale * jnp.eye(self.dim, dtype=self.dtype))
        return {"loc": loc, "scale_tril": tril}

    def _args(self, params):
        return (params["loc"], None, None, _TRIL(params["scale_tril"]))

    def sample(self, key, params, addr):
        return draw(_numpyro_dist("MultivariateNormal"), key, self._args(params), addr)

    def logpdf(self, params, u):
        return density(_numpyro_dist("MultivariateNormal"), u, self._args(params))


class LowRankMVN(Continuous):
    kind = "low_rank_mvn"

    def __init__(self, dim, dtype, init_scale: float, rank: int):
        super().__init__(dim, dtype)
        self.init_scale = init_scale
        self.rank = rank

    def init(self, key, loc):
        # Small random factors: W = 0 is a stationary point of the expected ELBO.
        w = 0.1 * jax.random.normal(key, (self.dim, self.rank), self.dtype)
        return {"loc": loc, "cov_factor": w, "scale": self._scale(self.init_scale)}

    def _args(self, params):
        scale = _POSITIVE(params["scale"])
        return (params["loc"], params["cov_factor"] * scale[:, None], scale**2)

    def sample(self, key, params, addr):
        return draw(_numpyro_dist("LowRankMultivariateNormal"), key, self._args(params), addr)

    def logpdf(self, params, u):
        return density(_numpyro_dist("LowRankMultivariateNormal"), u, self._args(params))


class Delta(Continuous):
    kind = "delta"
    factorized = True
    point_mass = True

    def init(self, key, loc):
        return {"loc": loc}

    def sample(self, key, params, addr):
        return params["loc"], jnp.zeros((), self.dtype)


class Flow(Continuous):
    kind = "flow"

    def __init__(self, dim, dtype, init_scale: float, flow: str, layers: int, hidden):
        super().__init__(dim, dtype)
        self.init_scale = init_scale
        self.flow = flow
        self.layers = layers
        self.nets = []
        for i in range(layers if dim else 0):
            if flow == "iaf":
                net = AutoregressiveNN(
                    dim, list(hidden), permutation=jnp.arange(dim), nonlinearity=stax.Elu
                )
            else:
                residual = "gated" if i < layers - 1 else None
                net = BlockNeuralAutoregressiveNN(dim, list(hidden), residual)
            self.nets.append(net)

    def init(self, key, loc):
        keys = jax.random.split(key, self.layers)
        layers = [init(k, (self.dim,))[1] for (init, _), k in zip(self.nets, keys, strict=True)]
        return {"loc": loc, "scale": self._scale(self.init_scale), "flow": layers}

    def transform(self, params) -> T.Transform:
        parts: list[T.Transform] = []
        for i, ((_, apply), p) in enumerate(zip(self.nets, params["flow"], strict=True)):
            if i > 0:
                parts.append(T.PermuteTransform(jnp.arange(self.dim)[::-1]))
            net = functools.partial(apply, p)
            if self.flow == "iaf":
                parts.append(InverseAutoregressiveTransform(net))
            else:
                parts.append(BlockNeuralAutoregressiveTransform(net))
        parts.append(T.AffineTransform(params["loc"], _POSITIVE(params["scale"])))
        return T.ComposeTransform(parts)

    def _base(self):
        return (jnp.zeros((self.dim,), self.dtype), jnp.ones((self.dim,), self.dtype))

    def sample(self, key, params, addr):
        eps, logp = draw(lib.normal, key, self._base(), addr)
        t = self.transform(params)
        u, inter = t.call_with_intermediates(eps)
        return u, logp - jnp.sum(t.log_abs_det_jacobian(eps, u, inter))

    def logpdf(self, params, u):
        t = self.transform(params)
        try:
            eps = t.inv(u)
        except NotImplementedError:
            raise ModelingError(
                "the BNAF guide has no density at a value it did not sample itself: numpyro's "
                "block neural autoregressive transform has no inverse. Use it with objectives "
                "that only sample the guide (elbo, iwae, renyi, ...), not with elbo(stl=True), "
                "assess or importance; or use flow='iaf'"
            ) from None
        return density(lib.normal, eps, self._base()) - jnp.sum(t.log_abs_det_jacobian(eps, u))

    def center(self, params):
        t = self.transform(params)
        return t(jnp.zeros((self.dim,), self.dtype))


__all__ = ["MVN", "Continuous", "Delta", "Flow", "LowRankMVN", "Normal"]
