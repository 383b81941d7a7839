"""``gv.marginal``: a generative function with some of its addresses integrated out.

Write ``z`` for the choices that are kept and ``u`` for those at the addresses in
``over``; ``p(z, u)`` is the joint density of the original generative function ``gf``.
The marginal ``p(z) = ∫ p(z, u) du`` is intractable in general; :func:`marginal` makes a
generative function over ``z`` alone whose density is *estimated* by importance sampling
over ``u``, with a proposal ``r(u; z)`` (by default the prior: ``gf`` run with ``z``
fixed) and ``K = particles`` particles. Its weights are ``w(u) = p(z, u) / r(u; z)``.

Two estimates, for the two ways a density enters an objective (Lew et al., "Recursive
Monte Carlo and variational inference with auxiliary variables", UAI 2022; Becker et
al., PLDI 2024):

- **density** (the marginal as a *model*): ``estimate_logpdf(key, z, *args)`` draws
  ``u_1..u_K ~ r`` and returns ``log p̂(z)`` with ``p̂(z) = (1/K) sum_k w(u_k)``.
  ``E[p̂(z)] = E_r[w(u)] = ∫ p(z, u) du = p(z)``: unbiased.
- **reciprocal density** (the marginal as a *guide*): ``simulate(key, *args)`` samples
  ``(z, u_0) ~ p`` and keeps ``z``; its score is ``log p̂(z)`` with
  ``p̂(z) = (1/K)(w(u_0) + sum_{k=1}^{K-1} w(u_k))``, ``u_1..u_{K-1} ~ r``.
  ``E[1 / p̂(z) | z] = 1 / p(z)``: given ``z``, ``u_0 ~ p(u | z) = w(u_0) r(u_0; z) / p(z)``,
  so the law of ``(u_0, .., u_{K-1})`` is that of ``K`` draws from ``r`` reweighted by
  ``w(u_0) / p(z)``; ``p̂`` is symmetric in the particles, so the reweighting may be taken
  as ``(1/K) sum_k w(u_k) / p(z) = p̂ / p(z)``, and ``E[1/p̂] = E_r[(p̂/p(z)) / p̂] = 1/p(z)``.

In an ELBO, ``E[log p(x, z) - score]`` with ``E[-score] = E[log(1/p̂)] <= log E[1/p̂] =
-log q(z)`` (Jensen) stays a lower bound on ``log p(x)``, whose gap shrinks as ``K``
grows: this is hierarchical VI (``K = 1``) and its importance-weighted forms
(:func:`genvi.objectives.hvi`, ``iwhvi``, ``diwhvi``). As a model, ``log p̂`` inside a
log-weight gives ``E[log p̂] <= log p(z)`` (again Jensen): bounds stay bounds.

Gradients flow through every choice (of ``gf``, of the proposal) with its own strategy.
Both claims need ``r(u; z) > 0`` wherever ``p(z, u) > 0``, and exact densities for ``gf``
and the proposal.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from genvi.core import _handlers as handlers
from genvi.core._choicemap import Address, ChoiceMap, choice_map, format_address, normalize_address
from genvi.core._derive import row_keys
from genvi.core._errors import AddressError, ModelingError
from genvi.core._genfn import GenerativeFunction, StaticGenerativeFunction
from genvi.core._particles import particle_keys
from genvi.core._trace import Trace


def _addresses(over: Any) -> tuple[Address, ...]:
    """``"u"``, ``("inner", "u")`` (one hierarchical address) or a list of them."""
    items = list(over) if isinstance(over, (list, set, frozenset)) else [over]
    if isinstance(over, tuple) and over and all(isinstance(a, tuple) for a in over):
        items = list(over)  # already a tuple of normalized addresses
    if not items:
        raise ValueError("marginal: `over` names no address; give at least one")
    return tuple(normalize_address(a) for a in items)


def _under(addr: Address, prefixes) -> bool:
    return any(addr[: len(p)] == p for p in prefixes)


def partition(choices: ChoiceMap, over) -> tuple[ChoiceMap, ChoiceMap]:
    """Split ``choices`` into ``(kept, marginalized)``: the choices at (or under) an
    address of ``over`` and the others."""
    prefixes = _addresses(over)
    kept, marg = ChoiceMap(), ChoiceMap()
    for a in choices.addresses():
        sub = choices.get_submap(a)  # keeps the value's origin
        if _under(a, prefixes):
            marg = marg.set(a, sub.value, sub.origin)
        else:
            kept = kept.set(a, sub.value, sub.origin)
    return kept, marg


def _shortlist(addrs: list, n: int = 8) -> list:
    return addrs if len(addrs) <= n else addrs[:n] + [f"... ({len(addrs) - n} more)"]


def _check_particles(particles, name) -> int:
    if isinstance(particles, bool) or not isinstance(particles, int) or particles < 1:
        raise ValueError(f"{name}: particles must be an int >= 1, got {particles!r}")
    return particles


class _SplitHandler(handlers.EstimateHandler):
    """Assess ``gf`` and also add up the log density of the choices under ``over``:
    ``log p(z, u) = log p(z | ..) + log p(u | ..)``, the second being the prior proposal's
    density of ``u``."""

    def __init__(self, owner, key, choices, over):
        super().__init__(owner, key, choices)
        self.over = over
        self.over_score = jnp.zeros(())

    def _density(self, addr, gf, sub, args, kwargs):
        if _under(addr, self.over):
            logp, ret = super()._density(addr, gf, sub, args, kwargs)
            self.over_score = self.over_score + logp
            return logp, ret
        inner = tuple(o[len(addr) :] for o in self.over if o[: len(addr)] == addr)
        if not inner:
            return super()._density(addr, gf, sub, args, kwargs)
        total, over_part, ret = split_logpdf(
            self.key_for(self.key, addr), gf, sub, inner, args, kwargs
        )
        self.over_score = self.over_score + over_part
        return total, ret


def split_logpdf(key, gf, choices, over, args, kwargs=None):
    """``(log p(z, u), log p(u | ..), retval)``: the joint log density of ``choices`` and the
    part of it contributed by the choices under ``over`` (their prior conditionals)."""
    if not isinstance(gf, StaticGenerativeFunction):
        names = ", ".join(format_address(o) for o in over)
        raise ModelingError(
            f"marginal: with the prior as proposal, genvi must separate the density of {names} "
            f"inside {gf.name}, which it can do only through @gv.gen functions; give the "
            "marginal a proposal (proposal=...) for these addresses instead"
        )
    cm = choice_map(choices)
    with _SplitHandler(gf, key, cm, over) as h:
        retval = gf.fn(*args, **(kwargs or {}))
    handlers.check_all_used(gf, cm, h.choices, "assess")
    return h.score, h.over_score, retval


def _logmeanexp(x):
    return logsumexp(x) - jnp.log(x.shape[0])


class Marginal(GenerativeFunction):
    """``gf`` with the choices at ``over`` integrated out; see :func:`marginal`."""

    has_estimated_density = True

    def __init__(self, gf: GenerativeFunction, over, proposal=None, particles: int = 1):
        self.gf = gf
        self.over = _addresses(over)
        self.proposal = proposal
        self.particles = _check_particles(particles, f"marginal({gf.name})")
        self.name = f"marginal({gf.name})"

    def __repr__(self) -> str:
        over = ", ".join(format_address(o) for o in self.over)
        prop = "prior" if self.proposal is None else self.proposal.name
        return f"<{self.name} over {over}, proposal {prop}, {self.particles} particle(s)>"

    # ----- helpers -----
    def _check_no_marginalized(self, cm: ChoiceMap, what: str):
        bad = [a for a in cm.addresses() if _under(a, self.over)]
        if bad:
            raise AddressError(
                f"{what} of {self.name}: the choices given hold "
                f"{', '.join(format_address(a) for a in bad)}, which {self.name} integrates "
                "out; give only the kept choices"
            )

    def _check_proposal_choices(self, cm: ChoiceMap):
        assert self.proposal is not None
        bad = [a for a in cm.addresses() if not _under(a, self.over)]
        if bad:
            raise AddressError(
                f"the proposal {self.proposal.name} of {self.name} samples "
                f"{', '.join(format_address(a) for a in bad)}, which {'is' if len(bad) == 1 else 'are'} "
                f"not marginalized (over = {', '.join(format_address(o) for o in self.over)}); "
                "a proposal samples exactly the marginalized addresses"
            )

    def _fresh(self, key, kept: ChoiceMap, args):
        """One particle ``u ~ r(.; z)``: ``(log w(u), retval)``."""
        if self.proposal is None:
            tr, logw = self.gf.importance(key, kept, *args)
            self._check_density_choices(kept, tr.choices)
            return logw, tr.retval
        k1, k2 = row_keys(key, 2)
        ptr = self.proposal.simulate(k1, kept, *args)
        self._check_proposal_choices(ptr.choices)
        logp, ret = self.gf.estimate_logpdf(k2, kept.merge(ptr.choices), *args)
        return logp - ptr.score, ret

    def _fresh_many(self, key, kept, args, n):
        keys = particle_keys(key, n)
        return jax.vmap(lambda k: self._fresh(k, kept, args))(keys)

    # ----- the generative function interface -----
    def simulate(self, key, *args) -> Trace:
        """Sample ``(z, u_0) ~ p`` and keep ``z``. The score is ``log p̂(z)`` from
        ``u_0`` and ``particles - 1`` fresh draws of the proposal: ``exp(-score)`` is an
        unbiased estimate of ``1 / p(z)``."""
        k0, k1, k2 = row_keys(key, 3)
        tr = self.gf.simulate(k0, *args)
        kept, u0 = partition(tr.choices, list(self.over))
        self._check_present(u0, tr.choices)
        lw0 = self._first_weight(k1, tr, kept, u0, args)
        log_est = lw0
        if self.particles > 1:
            lws, _ = self._fresh_many(k2, kept, args, self.particles - 1)
            log_est = _logmeanexp(jnp.concatenate([lw0[None], lws]))
        return Trace(kept, log_est, tr.retval, args)

    def _check_present(self, u0: ChoiceMap, full: ChoiceMap):
        missing = [o for o in self.over if not any(a[: len(o)] == o for a in u0.addresses())]
        if missing:
            raise AddressError(
                f"{self.name}: {self.gf.name} makes no choice at "
                f"{', '.join(format_address(o) for o in missing)}, which `over` names; its "
                f"addresses are {', '.join(format_address(a) for a in full.addresses())}"
            )

    def _check_density_choices(self, given: ChoiceMap, full: ChoiceMap):
        """As a model, every kept choice must be given: a kept choice that is missing (an
        observation left out, an empty choice map, an ``over`` address misspelled so that
        the choice it meant is kept) would be sampled from the prior, silently integrating
        it out too. And every ``over`` address must be one that ``gf`` makes."""
        kept, u = partition(full, list(self.over))
        missing = [a for a in kept.addresses() if not given.has(a)]
        if missing:
            over = ", ".join(format_address(o) for o in self.over)
            raise AddressError(
                f"density of {self.name}: no value for the kept choice"
                f"{'s' if len(missing) > 1 else ''} "
                f"{', '.join(_shortlist([format_address(a) for a in missing]))}, which would be "
                f"integrated out silently. A marginal integrates out only its `over` addresses "
                f"({over}); give a value for every other choice of {self.gf.name}, or add the "
                "address to `over`"
            )
        self._check_present(u, full)

    def _first_weight(self, key, tr, kept, u0, args):
        """``log w(u_0)`` for the ``u_0`` that generated the sample."""
        if self.proposal is None:
            total, over_part, _ = split_logpdf(key, self.gf, tr.choices, self.over, args)
            return total - over_part
        logr, _ = self.proposal.estimate_logpdf(key, u0, kept, *args)
        return tr.score - logr

    def estimate_logpdf(self, key, choices, *args):
        """``(log p̂(z), retval)`` with ``p̂(z) = (1/K) sum_k w(u_k)``, ``u_k ~ r``:
        ``exp`` of it is an unbiased estimate of ``p(z)``. ``retval`` is the first
        particle's."""
        kept = choice_map(choices)
        self._check_no_marginalized(kept, "estimate_logpdf")
        lws, rets = self._fresh_many(key, kept, args, self.particles)
        return _logmeanexp(lws), jax.tree_util.tree_map(lambda a: a[0], rets)

    def assess(self, choices, *args):
        raise ModelingError(
            f"{self.name} has no exact density (its addresses "
            f"{', '.join(format_address(o) for o in self.over)} are integrated out by "
            "importance sampling), so assess, which takes no key, cannot compute it: use "
            "estimate_logpdf(key, choices, *args) (library objectives do)"
        )

    def importance(self, key, constraints, *args):
        """With every kept choice constrained: ``(trace, log p̂(z))`` (an unbiased density
        estimate as weight). Otherwise ``gf.importance`` runs and the marginalized choices
        are dropped from its trace: its weight stays proper for the marginal (integrating
        ``u`` out of a properly weighted ``(z, u)``). The trace's score is then the
        ``K``-particle estimate that includes the sampled ``u``."""
        cm = choice_map(constraints)
        self._check_no_marginalized(cm, "importance")
        k0, k1, k2 = row_keys(key, 3)
        if cm.is_empty():
            return self.simulate(k0, *args), jnp.zeros(())
        tr, w = self.gf.importance(k0, cm, *args)
        kept, u0 = partition(tr.choices, list(self.over))
        if set(kept.addresses()) == set(cm.addresses()):
            logp, ret = self.estimate_logpdf(k1, cm, *args)
            return Trace(cm, logp, ret, args), logp
        lw0 = self._first_weight(k1, tr, kept, u0, args)
        log_est = lw0
        if self.particles > 1:
            lws, _ = self._fresh_many(k2, kept, args, self.particles - 1)
            log_est = _logmeanexp(jnp.concatenate([lw0[None], lws]))
        return Trace(kept, log_est, tr.retval, args), w


def marginal(gf: GenerativeFunction, over, proposal=None, particles: int = 1) -> Marginal:
    """``gf`` with the choices at the addresses ``over`` integrated out.

    Args:
        gf: a generative function ``p(z, u; args)``.
        over: the address(es) to integrate out: ``"u"``, a hierarchical address
            ``("inner", "u")``, or a list of addresses. Everything under an address is
            included.
        proposal: a generative function ``r(u; z, args)`` called as
            ``proposal(kept_choices, *args)`` (the kept choices as a choice map, then the
            same arguments as ``gf``; put its parameters among them) that samples exactly
            the ``over`` addresses. ``None`` (default) uses the prior: ``gf`` run by
            ``importance`` with the kept choices fixed (then ``u`` must be reachable
            through ``@gv.gen`` calls).
        particles: ``K >= 1``, the number of importance samples per estimate.

    Returns:
        A generative function over the kept choices, called with ``gf``'s arguments.
        Its ``simulate(key, *args)`` makes a trace of the kept choices whose
        ``exp(-score)`` is an unbiased estimate of ``1 / p(z)`` (so it can be a guide);
        ``exp`` of ``estimate_logpdf(key, choices, *args)`` is an unbiased estimate of
        ``p(z)`` (so it can be a model); it also has ``importance(key, constraints,
        *args)``, while ``assess`` raises (an estimated density needs a key).

    The maths and why each estimate is unbiased are in :mod:`genvi.inference._marginal`.

    Examples:
        >>> @gv.gen
        ... def hierarchical(phi):
        ...     u = gv.normal(0.0, 1.0) @ "u"
        ...     gv.normal(phi * u, 0.5) @ "z"
        >>> q = gv.marginal(hierarchical, over="u", particles=10)
        >>> key = jax.random.key(0)
        >>> tr = q.simulate(key, 2.0)
        >>> tr.choices.addresses()                      # "u" is integrated out
        [('z',)]
        >>> logp_hat, _ = q.estimate_logpdf(key, tr.choices, 2.0)
        >>> logp_hat.shape
        ()
    """
    return Marginal(gf, over, proposal, particles)


__all__ = ["Marginal", "marginal", "partition", "split_logpdf"]
