"""The automatic guide: a generative function over exactly the model's latent choices.

Its one argument is its parameters. ``simulate`` draws the unconstrained vector ``u`` of
the continuous latents from the guide's family (:mod:`genvi.guides._families`), maps
each latent's block onto the model's support with numpyro's
``biject_to(support)`` (``z_i = T_i(u_i)``) and draws each discrete latent from its
factor (:mod:`genvi.guides._discrete`). The trace holds each latent at the model's
address with the model's shape and dtype, and its score is the density of those
constrained values, by the change of variables:

    log q(z) = log q_u(u) - sum_i log|det dT_i/du_i (u_i)| + sum_j log q_j(k_j)

``assess`` inverts the bijections (``u_i = T_i^{-1}(z_i)``) and scores the same formula.
For the delta guide ``u = loc`` is a point and the score is 0 (a point mass has no
density; see :func:`genvi.guides.delta`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from genvi.core import _handlers as handlers
from genvi.core._choicemap import ChoiceMap, choice_map, format_address
from genvi.core._errors import AddressError, ChoiceTypeError, ModelingError
from genvi.core._genfn import GenerativeFunction
from genvi.core._keys import check_key
from genvi.core._trace import Trace
from genvi.guides._discover import Latent
from genvi.guides._families import Continuous

#: The address (under the guide's own) that the joint draw of the continuous latents
#: names in ADEV's messages; it is not an address of the trace.
INTERNAL = "(unconstrained latents)"
#: How many prior draws ``init_loc="prior"`` takes the median of.
PRIOR_DRAWS = 15


class LatentInfo(NamedTuple):
    """One latent choice of the model, as its automatic guide proposes it.

    Attributes:
        address: the model's address (a tuple).
        shape: the value's shape.
        dtype: the value's dtype.
        support: the model's support there (numpyro's constraint, by name).
        discrete: whether the latent is discrete.
        proposal: what the guide proposes there: the unconstrained block it maps from
            (continuous), or the factor and its strategy (discrete).
    """

    address: tuple
    shape: tuple
    dtype: Any
    support: str
    discrete: bool
    proposal: str


class AutoGuide(GenerativeFunction):
    """A guide built from a model by :mod:`genvi.guides` (see :func:`genvi.guides.normal`).

    A generative function of one argument, its parameters (a dict made by :meth:`init`),
    whose choices are exactly the model's latent choices given the observations it was
    built with. Attributes: ``model``, ``kind`` (``"normal"``, ``"mvn"``, ...),
    ``dim`` (the size of the unconstrained vector of the continuous latents) and
    ``latents`` (a tuple of :class:`LatentInfo`).
    """

    def __init__(self, model, model_args, obs, latents: list[Latent], family, factors, options):
        self.model = model
        self._model_args = model_args
        self._obs = obs
        self._latents = latents
        self._family: Continuous = family
        self._factors: dict = factors
        self._options = options
        self._init_jit = None
        self.kind = family.kind
        self.name = f"{self.kind}_guide({model.name})"
        self._cont = [lat for lat in latents if not lat.discrete]
        self._disc = [lat for lat in latents if lat.discrete]
        self.dim = sum(lat.usize for lat in self._cont)
        offsets = np.cumsum([0] + [lat.usize for lat in self._cont])
        self._slices = [
            slice(int(a), int(b)) for a, b in zip(offsets[:-1], offsets[1:], strict=True)
        ]
        self._origins = {
            lat.addr: dataclasses.replace(
                lat.origin, dist=f"gv.guides.{self.kind}", owner=self.name
            )
            for lat in latents
            if lat.origin is not None
        }
        self._param_struct = jax.eval_shape(
            lambda k: self._init_from(k, jnp.zeros((self.dim,), family.dtype), {}),
            jax.random.key(0),
        )

    # ----- description -----
    @property
    def latents(self) -> tuple[LatentInfo, ...]:
        out = []
        for lat in self._latents:
            if lat.discrete:
                proposal = self._factors[lat.addr].describe()
            else:
                i = self._cont.index(lat)
                s = self._slices[i]
                proposal = f"u[{s.start}:{s.stop}] mapped onto {lat.support}"
            out.append(
                LatentInfo(lat.addr, lat.shape, lat.dtype, lat.support, lat.discrete, proposal)
            )
        return tuple(out)

    @property
    def addresses(self) -> list:
        """The model's latent addresses, which are this guide's, in sorted order."""
        return [lat.addr for lat in self._latents]

    def __repr__(self) -> str:
        n_c, n_d = len(self._cont), len(self._disc)
        return (
            f"<automatic guide gv.guides.{self.kind} for {self.model.name}: {n_c} continuous "
            f"latent(s) in {self.dim} unconstrained dimension(s), {n_d} discrete>"
        )

    # ----- parameters -----
    def init(self, key) -> dict:
        """Starting parameters (a dict: the family's, and ``"discrete"``: the factors',
        nested by address). With ``init_loc="prior"`` the location starts at the
        elementwise median, in the unconstrained space, of 15 prior draws made with
        ``key``; with ``"zeros"`` at ``u = 0``; with a dict of values, at those values
        (and the prior median elsewhere)."""
        check_key(key, f"{self.name}.init", single=True)
        if self._init_jit is None:
            self._init_jit = jax.jit(self._init)
        return self._init_jit(key)

    def _init(self, key) -> dict:
        k_prior, k_family = jax.random.split(key)
        init_loc = self._options["init_loc"]
        draws = {}
        if not (isinstance(init_loc, str) and init_loc == "zeros"):
            draws = self._prior_draws(k_prior)
        blocks = []
        for lat in self._cont:
            if isinstance(init_loc, dict) and lat.addr in init_loc:
                value = jnp.asarray(init_loc[lat.addr], lat.dtype)
                u = lat.inverse(jnp.broadcast_to(value, lat.shape))
            elif lat.addr in draws:
                us = jax.vmap(lat.inverse)(draws[lat.addr])
                us = jnp.where(jnp.isfinite(us), us, jnp.nan)
                u = jnp.nan_to_num(jnp.nanmedian(us, axis=0), nan=0.0)
            else:
                u = jnp.zeros(lat.ushape, lat.dtype)
            blocks.append(jnp.reshape(u, (-1,)).astype(self._family.dtype))
        loc = jnp.concatenate(blocks) if blocks else jnp.zeros((0,), self._family.dtype)
        return self._init_from(k_family, loc, draws)

    def _init_from(self, key, loc, draws) -> dict:
        params = self._family.init(key, loc) if self._cont else {}
        if self._disc:
            nested: dict = {}
            for lat in self._disc:
                value = self._factors[lat.addr].init(draws.get(lat.addr), self._family.dtype)
                node = nested
                for part in lat.addr[:-1]:
                    node = node.setdefault(part, {})
                node[lat.addr[-1]] = value
            params["discrete"] = nested
        return params

    def _prior_draws(self, key) -> dict:
        model, obs, args = self.model, self._obs, self._model_args
        addrs = [lat.addr for lat in self._latents]

        def one(k):
            tr, _ = model.importance(k, obs, *args)
            return [tr.choices[a] for a in addrs]

        values = jax.vmap(one)(jax.random.split(key, PRIOR_DRAWS))
        return dict(zip(addrs, values, strict=True))

    def _params(self, args, what: str):
        if len(args) != 1:
            raise ModelingError(
                f"{self.name}.{what} takes one argument, the guide's parameters (from "
                f"guide.init(key)), got {len(args)}; in an objective pass guide_args=(params,)"
            )
        params = args[0]
        want = jax.tree_util.tree_structure(self._param_struct)
        got = jax.tree_util.tree_structure(params)
        shapes_ok = want == got and all(
            jnp.shape(a) == b.shape
            for a, b in zip(
                jax.tree_util.tree_leaves(params),
                jax.tree_util.tree_leaves(self._param_struct),
                strict=True,
            )
        )
        if not shapes_ok:
            expect = jax.tree_util.tree_map(lambda s: s.shape, self._param_struct)
            raise ChoiceTypeError(
                f"{self.name}.{what}: the parameters do not have the structure of "
                f"guide.init(key), whose shapes are {expect}; got "
                f"{jax.tree_util.tree_map(jnp.shape, params)}"
            )
        return params

    def _discrete_param(self, params, addr):
        node = params["discrete"]
        for part in addr:
            node = node[part]
        return node

    # ----- the bijections -----
    def _constrain(self, u):
        values, ldjs = [], []
        for lat, s in zip(self._cont, self._slices, strict=True):
            z, ldj = lat.forward(jnp.reshape(u[s], lat.ushape).astype(lat.dtype))
            values.append(jnp.reshape(z, lat.shape))
            ldjs.append(ldj)
        return values, ldjs

    def _unconstrain(self, values):
        blocks = [
            jnp.reshape(lat.inverse(v), (-1,)).astype(self._family.dtype)
            for lat, v in zip(self._cont, values, strict=True)
        ]
        return jnp.concatenate(blocks) if blocks else jnp.zeros((0,), self._family.dtype)

    def median(self, params) -> ChoiceMap:
        """The continuous latents at the image of the family's center (``loc``; for a
        flow, the image of ``eps = 0``): the marginal medians where every bijection is
        elementwise and increasing (real, positive, interval supports) for the normal,
        mvn and low-rank guides; the point of the delta guide.

        Examples:
            >>> @gv.gen
            ... def model():
            ...     gv.gamma(2.0, 1.0) @ "rate"
            >>> guide = gv.guides.normal(model, (), {}, init_loc="zeros")
            >>> float(guide.median(guide.init(jax.random.key(0)))["rate"])    # exp(0)
            1.0
        """
        params = self._params((params,), "median")
        values, _ = self._constrain(self._family.center(params))
        cm = ChoiceMap()
        for lat, v in zip(self._cont, values, strict=True):
            cm = cm.set(lat.addr, v)
        return cm

    # ----- the generative function interface -----
    def _record(self, values: dict) -> ChoiceMap:
        cm = ChoiceMap()
        for lat in self._latents:
            cm = cm.set(lat.addr, values[lat.addr], self._origins.get(lat.addr))
        return cm

    def _sample_continuous(self, key, params, prefix):
        u, logq = self._family.sample(key, params, prefix + (INTERNAL,))
        zs, ldjs = self._constrain(u)
        score = logq if self._family.point_mass else logq - sum(ldjs)
        return u, zs, ldjs, score

    def simulate(self, key, *args) -> Trace:
        check_key(key, f"{self.name}.simulate", single=True)
        params = self._params(args, "simulate")
        prefix = handlers.current_address()
        k_cont, k_disc = jax.random.split(key)
        values: dict = {}
        score = jnp.zeros((), self._family.dtype)
        if self._cont:
            _, zs, _, score = self._sample_continuous(k_cont, params, prefix)
            values.update({lat.addr: z for lat, z in zip(self._cont, zs, strict=True)})
        for i, lat in enumerate(self._disc):
            z, lp = self._factors[lat.addr].sample(
                jax.random.fold_in(k_disc, i),
                self._discrete_param(params, lat.addr),
                prefix + lat.addr,
            )
            values[lat.addr] = z
            score = score + lp
        cm = self._record(values)
        return Trace(cm, score, cm, (params,))

    def _given(self, choices, what: str, complete: bool) -> dict:
        cm = choice_map(choices)
        known = {lat.addr: lat for lat in self._latents}
        unknown = [a for a in cm.addresses() if a not in known]
        if unknown:
            raise AddressError(
                f"{what} of {self.name}: {', '.join(format_address(a) for a in unknown)} "
                f"{'is not a latent' if len(unknown) == 1 else 'are not latents'} of "
                f"{self.model.name} (given its observations); the guide's addresses are "
                f"{', '.join(format_address(a) for a in known) or 'none'}"
            )
        if complete:
            missing = [a for a in known if not cm.has(a)]
            if missing:
                raise AddressError(
                    f"{what} of {self.name}: no value for "
                    f"{', '.join(format_address(a) for a in missing)}; {what} needs every "
                    "latent"
                )
        out = {}
        for a in cm.addresses():
            lat, value = known[a], jnp.asarray(cm[a])
            if value.shape != lat.shape:
                raise ChoiceTypeError(
                    f"{what} of {self.name}: the value at {format_address(a)} has shape "
                    f"{value.shape}, but the model's latent there has shape {lat.shape}"
                )
            out[a] = value if lat.discrete else value.astype(lat.dtype)
        return out

    def _continuous_logpdf(self, params, values: list):
        if self._family.point_mass:
            point, _ = self._constrain(self._family.center(params))
            same = jnp.array(True)
            for z, p in zip(values, point, strict=True):
                tol = 8 * jnp.finfo(p.dtype).eps * jnp.maximum(1.0, jnp.abs(p))
                same = same & jnp.all(jnp.abs(z - p) <= tol)
            return jnp.where(same, 0.0, -jnp.inf).astype(self._family.dtype)
        u = self._unconstrain(values)
        _, ldjs = self._constrain(u)
        return self._family.logpdf(params, u) - sum(ldjs)

    def assess(self, choices, *args):
        params = self._params(args, "assess")
        given = self._given(choices, "assess", complete=True)
        logq = jnp.zeros((), self._family.dtype)
        if self._cont:
            logq = self._continuous_logpdf(params, [given[lat.addr] for lat in self._cont])
        for lat in self._disc:
            param = self._discrete_param(params, lat.addr)
            logq = logq + self._factors[lat.addr].logpdf(param, given[lat.addr])
        return logq, self._record(given)

    def importance(self, key, constraints, *args):
        check_key(key, f"{self.name}.importance", single=True)
        params = self._params(args, "importance")
        given = self._given(constraints, "importance", complete=False)
        if not given:
            return self.simulate(key, params), jnp.zeros((), self._family.dtype)
        prefix = handlers.current_address()
        k_cont, k_disc = jax.random.split(key)
        values: dict = dict(given)
        score = weight = jnp.zeros((), self._family.dtype)
        fixed = [lat.addr in given for lat in self._cont]
        if self._cont and all(fixed):
            score = weight = self._continuous_logpdf(
                params, [given[lat.addr] for lat in self._cont]
            )
        elif self._cont and not any(fixed):
            _, zs, _, score = self._sample_continuous(k_cont, params, prefix)
            values.update({lat.addr: z for lat, z in zip(self._cont, zs, strict=True)})
        elif self._cont:
            score, weight = self._partial(k_cont, params, prefix, given, values)
        for i, lat in enumerate(self._disc):
            fac, param = self._factors[lat.addr], self._discrete_param(params, lat.addr)
            if lat.addr in given:
                lp = fac.logpdf(param, given[lat.addr])
                weight = weight + lp
            else:
                values[lat.addr], lp = fac.sample(
                    jax.random.fold_in(k_disc, i), param, prefix + lat.addr
                )
            score = score + lp
        return Trace(self._record(values), score, self._record(values), (params,)), weight

    def _partial(self, key, params, prefix, given, values):
        """Some continuous latents constrained: only for factorized families, whose
        coordinates are independent (the others are drawn from their marginals)."""
        if not self._family.factorized:
            names = [format_address(lat.addr) for lat in self._cont if lat.addr in given]
            raise ModelingError(
                f"importance of {self.name} with only some of its continuous latents "
                f"constrained ({', '.join(names)}): the {self.kind} guide correlates them, "
                "so sampling the others would need their conditional distribution; "
                "constrain all of them or none (or use gv.guides.normal, whose coordinates "
                "are independent)"
            )
        u, zs, _, _ = self._sample_continuous(key, params, prefix)
        if self._family.point_mass:
            ok = jnp.array(True)
            for lat, z in zip(self._cont, zs, strict=True):
                if lat.addr in given:
                    tol = 8 * jnp.finfo(z.dtype).eps * jnp.maximum(1.0, jnp.abs(z))
                    ok = ok & jnp.all(jnp.abs(given[lat.addr] - z) <= tol)
                else:
                    values[lat.addr] = z
            w = jnp.where(ok, 0.0, -jnp.inf).astype(self._family.dtype)
            return w, w
        blocks, given_mask = [], []
        for lat, s, z in zip(self._cont, self._slices, zs, strict=True):
            if lat.addr in given:
                blocks.append(jnp.reshape(lat.inverse(given[lat.addr]), (-1,)))
            else:
                blocks.append(u[s])
                values[lat.addr] = z
            given_mask.append(lat.addr in given)
        u = jnp.concatenate(blocks).astype(self._family.dtype)
        _, ldjs = self._constrain(u)
        coords = self._family.coords_logpdf(params, u)
        per = [jnp.sum(coords[s]) - ldj for s, ldj in zip(self._slices, ldjs, strict=True)]
        score = sum(per)
        weight = sum(p for p, g in zip(per, given_mask, strict=True) if g)
        return score, weight


__all__ = ["AutoGuide", "LatentInfo"]
