"""The constructors of automatic guides: ``gv.guides.normal``, ``mvn``, ``low_rank_mvn``,
``delta`` and ``flow``."""

from __future__ import annotations

import math
from collections.abc import Mapping

import jax.numpy as jnp

from genvi.core._choicemap import format_address, normalize_address
from genvi.core._errors import AddressError
from genvi.distributions._strategies import Strategy
from genvi.guides import _families as F
from genvi.guides._discover import check_inputs, find_latents
from genvi.guides._discrete import Factor, strategies_by_address
from genvi.guides._guide import AutoGuide


def _check_scale(init_scale, who):
    if (
        isinstance(init_scale, bool)
        or not isinstance(init_scale, (int, float))
        or not init_scale > 0
    ):
        raise ValueError(f"{who}: init_scale must be a number > 0, got {init_scale!r}")
    return float(init_scale)


def _check_int(value, name, who, minimum=1):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{who}: {name} must be an int >= {minimum}, got {value!r}")
    return value


def _build(kind, model, model_args, observations, init_loc, discrete, make_family) -> AutoGuide:
    who = f"gv.guides.{kind}({getattr(model, 'name', model)!s:.40})"
    model_args, obs = check_inputs(model, model_args, observations, who)
    latents = find_latents(model, model_args, obs, who)
    if isinstance(init_loc, Mapping):
        init_loc = {normalize_address(k): v for k, v in init_loc.items()}
        known = {lat.addr for lat in latents if not lat.discrete}
        unknown = [a for a in init_loc if a not in known]
        if unknown:
            raise AddressError(
                f"{who}: init_loc names {', '.join(format_address(a) for a in unknown)}, "
                "which is not a continuous latent of the model; its continuous latents are "
                f"{', '.join(format_address(a) for a in sorted(known)) or 'none'}"
            )
    elif init_loc not in ("prior", "zeros"):
        raise ValueError(
            f"{who}: init_loc must be 'prior', 'zeros' or a dict of latent values by "
            f"address, got {init_loc!r}"
        )
    cont = [lat for lat in latents if not lat.discrete]
    dtype = jnp.result_type(*[lat.dtype for lat in cont]) if cont else jnp.result_type(float)
    dim = sum(lat.usize for lat in cont)
    family = make_family(dim, dtype, who)
    strategies = strategies_by_address(discrete, latents, who)
    factors = {
        a: Factor(lat, strategies[a], who) for lat in latents if (a := lat.addr) in strategies
    }
    options = {"init_loc": init_loc, "discrete": discrete}
    return AutoGuide(model, model_args, obs, latents, family, factors, options)


def normal(
    model,
    model_args=(),
    observations=None,
    *,
    init_scale: float = 0.1,
    init_loc: str | Mapping = "prior",
    discrete: str | Strategy | Mapping = "auto",
) -> AutoGuide:
    """A mean-field normal guide in the unconstrained space (ADVI; Kucukelbir et al.,
    2017): every continuous latent is mapped to the real line by numpyro's
    ``biject_to(support)``, and the unconstrained vector ``u`` has the density
    ``N(u; loc, diag(scale^2))``. A latent ``z = T(u)`` is scored with the change of
    variables, ``log q(z) = log N(u; loc, scale) - log|det dT/du|``.

    The guide is a generative function of one argument, its parameters
    (``params = guide.init(key)``: a dict with ``"loc"`` and ``"scale"``, the scale
    stored unconstrained and mapped by softplus, and ``"discrete"`` for the factors of
    discrete latents); its choices are exactly the model's latent choices (every address
    ``model(*model_args)`` samples that ``observations`` does not give, nested and
    ``gv.vmap``/``gv.scan`` ones included, with the model's shapes and dtypes). Train it
    with any objective called as ``(key, model_args, (params,), observations)``.

    Args:
        model: the model, a generative function.
        model_args: the model's arguments (a tuple): they fix its structure, and the
            supports whose bounds depend on parameters (``uniform(low, high)``) are read
            at these values.
        observations: a dict or choice map of the model's observed addresses; an address
            the model never samples raises :class:`~genvi.AddressError` naming it.
        init_scale: the starting ``scale`` of every unconstrained coordinate.
        init_loc: ``"prior"`` (the elementwise median, in the unconstrained space, of 15
            prior draws made with ``init``'s key), ``"zeros"`` (``u = 0``), or a dict of
            starting values of some latents by address (the prior median for the others).
        discrete: the gradient strategy of the factors of discrete latents: ``"auto"``
            (ENUM where a latent has at most 16 (element, value) pairs, else REINFORCE),
            ``"enum"``, ``"reinforce"``, ``"mvd"`` (or ``gv.ENUM``, ``gv.REINFORCE``,
            ``gv.MVD``), or a dict of them by address (``"auto"`` for the others).

    Each discrete latent gets its own factor, independent of the rest: a categorical over
    the values of a finite support (flip, bernoulli, categorical, binomial with a static
    count) with learned logits per element, starting uniform; a poisson (learned log
    rate) or geometric (learned logits) otherwise. Several ENUM latents multiply the
    cost of the estimator (each enumerates the rest of the program).

    Refused with a :class:`~genvi.ModelingError` (or :class:`~genvi.StrategyError`)
    naming the latent and what to write by hand instead: a support numpyro has no
    bijection for; a support whose bounds depend on other latents or are computed inside
    ``gv.scan``; a discrete support that is neither finite, poisson nor geometric, or an
    infinite one with ENUM; and a latent inside ``gv.cond``/``gv.switch`` with a traced
    index (its presence changes with the branch taken: the guide would propose a value
    the model does not score, and the bound would not hold). A branch index known when
    the model runs (a Python int) is fine.

    Examples:
        >>> @gv.gen
        ... def model():
        ...     p = gv.beta(1.0, 1.0) @ "p"
        ...     gv.flip(jnp.full(10, p)) @ "x"
        >>> x = jnp.array([1, 1, 0, 1, 1, 1, 0, 1, 1, 1])
        >>> guide = gv.guides.normal(model, (), {"x": x})
        >>> guide.addresses
        [('p',)]
        >>> params = guide.init(jax.random.key(0))
        >>> sorted(params)
        ['loc', 'scale']
        >>> objective = gv.objectives.elbo(model, guide)
        >>> value = objective.estimate(jax.random.key(1), (), (params,), {"x": x})
        >>> tr = guide.simulate(jax.random.key(2), params)
        >>> bool(0.0 < tr.choices["p"] < 1.0)
        True
    """
    scale = _check_scale(init_scale, "gv.guides.normal")
    return _build(
        "normal", model, model_args, observations, init_loc, discrete,
        lambda dim, dtype, who: F.Normal(dim, dtype, scale),
    )  # fmt: skip


def mvn(
    model,
    model_args=(),
    observations=None,
    *,
    init_scale: float = 0.1,
    init_loc: str | Mapping = "prior",
    discrete: str | Strategy | Mapping = "auto",
) -> AutoGuide:
    """A full-rank multivariate normal guide in the unconstrained space:
    ``u ~ N(loc, L L^T)`` with ``L`` lower triangular (``params["scale_tril"]``: the
    ``D (D + 1) / 2`` unconstrained entries that numpyro's ``SoftplusLowerCholesky``
    transform maps to ``L``; it starts at ``init_scale * I``). It captures every linear
    correlation between the latents, at ``O(D^2)`` parameters and ``O(D^3)`` per step.
    Options and the rest as for :func:`normal`.

    Examples:
        >>> @gv.gen
        ... def model():
        ...     w = gv.normal(jnp.zeros(2), 1.0) @ "w"
        ...     gv.normal(w[0] + w[1], 0.1) @ "y"
        >>> guide = gv.guides.mvn(model, (), {"y": 1.0})
        >>> params = guide.init(jax.random.key(0))
        >>> params["loc"].shape, params["scale_tril"].shape
        ((2,), (3,))
    """
    scale = _check_scale(init_scale, "gv.guides.mvn")
    return _build(
        "mvn", model, model_args, observations, init_loc, discrete,
        lambda dim, dtype, who: F.MVN(dim, dtype, scale),
    )  # fmt: skip


def low_rank_mvn(
    model,
    model_args=(),
    observations=None,
    *,
    rank: int | None = None,
    init_scale: float = 0.1,
    init_loc: str | Mapping = "prior",
    discrete: str | Strategy | Mapping = "auto",
) -> AutoGuide:
    """A low-rank plus diagonal multivariate normal guide in the unconstrained space:
    ``u ~ N(loc, s (W W^T + I) s)``, ``s = diag(scale)``, ``W`` of shape ``[D, rank]``
    (``params["cov_factor"]``, starting at small random values: ``W = 0`` is a stationary
    point), as numpyro's ``AutoLowRankMultivariateNormal``. ``rank`` defaults to
    ``round(sqrt(D))`` (at least 1). Options and the rest as for :func:`normal`.

    Examples:
        >>> @gv.gen
        ... def model():
        ...     w = gv.normal(jnp.zeros(4), 1.0) @ "w"
        ...     gv.normal(jnp.sum(w), 0.1) @ "y"
        >>> guide = gv.guides.low_rank_mvn(model, (), {"y": 1.0}, rank=1)
        >>> guide.init(jax.random.key(0))["cov_factor"].shape
        (4, 1)
    """
    scale = _check_scale(init_scale, "gv.guides.low_rank_mvn")
    if rank is not None:
        _check_int(rank, "rank", "gv.guides.low_rank_mvn")

    def make(dim, dtype, who):
        r = rank if rank is not None else max(1, int(round(math.sqrt(dim))))
        return F.LowRankMVN(dim, dtype, scale, r)

    return _build("low_rank_mvn", model, model_args, observations, init_loc, discrete, make)


def delta(
    model,
    model_args=(),
    observations=None,
    *,
    init_loc: str | Mapping = "prior",
    discrete: str | Strategy | Mapping = "auto",
) -> AutoGuide:
    """A point-mass guide: the continuous latents are ``T(loc)``, a learned point (no
    draw), and the score of that part is 0. The ELBO then is
    ``E[log p(x, T(loc), k) - log q(k)]``, the log joint at the point (plus the
    discrete factors' terms): maximizing it is MAP estimation, in the model's own
    (constrained) parameterization, with no Jacobian term. It is not a lower bound on
    ``log p(x)`` (a point mass has no density against the model's). ``assess`` gives 0 at
    the point (to a few ulps) and -inf elsewhere, so objectives that score the guide at
    values it did not propose (rws, vimco-style wake updates) do not apply. Discrete
    latents still get learned factors. Options as for :func:`normal` (no
    ``init_scale``).

    Examples:
        >>> @gv.gen
        ... def model():
        ...     z = gv.normal(0.0, 1.0) @ "z"
        ...     gv.normal(z, 1.0) @ "x"
        >>> guide = gv.guides.delta(model, (), {"x": 2.0}, init_loc="zeros")
        >>> params = guide.init(jax.random.key(0))
        >>> objective = gv.objectives.elbo(model, guide)
        >>> g = objective.grad_estimate(jax.random.key(1), (), (params,), {"x": 2.0}, argnums=1)
        >>> float(g[0]["loc"][0])       # d/dz log p(x=2, z) at z = 0: x - 2 z
        2.0
    """
    return _build(
        "delta", model, model_args, observations, init_loc, discrete,
        lambda dim, dtype, who: F.Delta(dim, dtype),
    )  # fmt: skip


_FLOWS = ("iaf", "bnaf")


def flow(
    model,
    model_args=(),
    observations=None,
    *,
    flow: str = "iaf",
    layers: int | None = None,
    hidden=None,
    init_scale: float = 0.1,
    init_loc: str | Mapping = "prior",
    discrete: str | Strategy | Mapping = "auto",
) -> AutoGuide:
    """A normalizing-flow guide in the unconstrained space: ``eps ~ N(0, I)`` (of size
    ``D``), ``u = loc + scale * f(eps)`` with ``f`` a stack of ``layers`` numpyro
    autoregressive transforms, the order of the coordinates reversed between layers, and
    ``log q(u) = log N(eps) - log|det df/deps| - sum(log scale)``.

    - ``flow="iaf"``: inverse autoregressive flow (Kingma et al., 2016), each layer
      ``numpyro.nn.AutoregressiveNN`` with hidden sizes ``hidden`` (default
      ``[max(8, 2 D)] * 2``) and ELU; ``layers`` defaults to 3. Its density at a given
      value (``assess``, ``elbo(stl=True)``) inverts the flow in ``D`` passes.
    - ``flow="bnaf"``: block neural autoregressive flow (De Cao et al., 2019),
      ``numpyro.nn.BlockNeuralAutoregressiveNN`` with hidden factors ``hidden`` (default
      ``[8, 8]``), gated residuals between layers; ``layers`` defaults to 1. More
      expressive per layer, but it has no inverse: only objectives that sample the guide
      apply (``elbo``, ``iwae``, ...; ``assess`` and ``stl`` raise a ModelingError).

    ``params`` holds ``"loc"``, ``"scale"`` (starting at ``init_loc`` and ``init_scale``
    as for :func:`normal`) and ``"flow"``, the networks' weights (numpyro's
    initialization). The other options are those of :func:`normal`.

    Examples:
        >>> @gv.gen
        ... def model():
        ...     z = gv.normal(jnp.zeros(2), 1.0) @ "z"
        ...     gv.normal(z[0] * z[1], 0.5) @ "x"
        >>> guide = gv.guides.flow(model, (), {"x": 1.0}, flow="iaf", layers=2)
        >>> params = guide.init(jax.random.key(0))
        >>> len(params["flow"])
        2
        >>> tr = guide.simulate(jax.random.key(1), params)
        >>> logq, _ = guide.assess(tr.choices, params)
        >>> bool(jnp.allclose(logq, tr.score, atol=1e-4))
        True
    """
    who = "gv.guides.flow"
    if flow not in _FLOWS:
        raise ValueError(f"{who}: flow must be one of {_FLOWS}, got {flow!r}")
    scale = _check_scale(init_scale, who)
    n_layers = (
        _check_int(layers, "layers", who) if layers is not None else (3 if flow == "iaf" else 1)
    )
    if hidden is not None and (
        not isinstance(hidden, (list, tuple))
        or not hidden
        or not all(isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in hidden)
    ):
        raise ValueError(f"{who}: hidden must be a non-empty list of ints >= 1, got {hidden!r}")

    def make(dim, dtype, who):
        sizes = (
            hidden if hidden is not None else ([max(8, 2 * dim)] * 2 if flow == "iaf" else [8, 8])
        )
        return F.Flow(dim, dtype, scale, flow, n_layers, tuple(sizes))

    return _build("flow", model, model_args, observations, init_loc, discrete, make)


__all__ = ["delta", "flow", "low_rank_mvn", "mvn", "normal"]
