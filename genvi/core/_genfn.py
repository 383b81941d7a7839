"""The generative function interface, and ``@gen`` functions.

A generative function ``gf`` is a probabilistic program with three operations:

- ``gf.simulate(key, *args) -> Trace``: run it, sampling every choice.
- ``gf.assess(choices, *args) -> (log_density, retval)``: the log joint density of a
  complete set of choices, ``log p(choices; args)``.
- ``gf.importance(key, constraints, *args) -> (Trace, log_weight)``: run it with some
  choices fixed; the others are sampled from their prior, and
  ``log_weight = log p(constraints, sampled) - log q(sampled) = log p(constraints | sampled)``
  for the prior proposal, so ``E[exp(log_weight)] = p(constraints)`` (the marginal likelihood).

Calling ``gf(*args)`` does not run anything: it makes a :class:`GenCall`, which the
``@ "addr"`` operator hands to the running interpretation.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from genvi.core import _handlers as handlers
from genvi.core._choicemap import ChoiceMap, choice_map
from genvi.core._keys import check_key
from genvi.core._trace import Trace


class GenerativeFunction:
    """Abstract base of everything with the generative function interface."""

    name: str = "generative function"
    #: whether this makes exactly one choice at its own address (a distribution), rather
    #: than choices at addresses of its own
    single_choice: bool = False

    def simulate(self, key, *args, **kwargs) -> Trace:  # pragma: no cover - interface
        """Run the function, sampling every choice: a :class:`~genvi.Trace` whose
        ``score`` is ``log p(choices; args)``."""
        raise NotImplementedError

    def assess(self, choices, *args, **kwargs):  # pragma: no cover - interface
        """``(log p(choices; args), retval)`` for a complete set of ``choices`` (a choice
        map or nested dict); a missing or unknown address raises
        :class:`~genvi.AddressError`."""
        raise NotImplementedError

    def importance(self, key, constraints, *args, **kwargs):  # pragma: no cover
        """``(trace, log_weight)``: the ``constraints`` are fixed, the other choices are
        sampled from their prior, and ``log_weight = log p(constraints | sampled)``, whose
        exponential is an unbiased estimate of ``p(constraints)``."""
        raise NotImplementedError

    #: Whether :meth:`estimate_logpdf` may use its key (a density known only through an
    #: unbiased estimate, as for :func:`genvi.marginal`, or a callee that may have one).
    has_estimated_density: bool = False

    def estimate_logpdf(self, key, choices, *args, **kwargs):
        """``(log_density_estimate, retval)``: like :meth:`assess`, with a key for
        generative functions whose density can only be estimated.

        ``exp(log_density_estimate)`` is an unbiased estimate of ``p(choices; args)``. For
        a generative function with an exact density it *is* ``assess`` (the key is
        unused); :func:`genvi.marginal` and :func:`genvi.normalize` estimate it by
        importance sampling, and ``@gen`` functions hand a key to each callee.
        """
        return self.assess(choices, *args, **kwargs)

    def with_strategies(self, strategies) -> GenerativeFunction:
        """This generative function with the gradient strategies of some choices set
        from outside, by address; the original is unchanged.

        ``strategies`` maps addresses (relative to this function: ``"z"``, a nested
        ``("layer", "b")``, a choice in a ``gv.vmap``/``gv.scan`` body as ``("chain",
        "z")``; an address of a call covers every choice under it) to ``gv.REPARAM``,
        ``gv.REINFORCE``, ``gv.ENUM`` or ``gv.MVD``. An address that reaches no choice
        raises :class:`~genvi.AddressError`, and a strategy that cannot apply there
        :class:`~genvi.StrategyError`, when the function is first run (traced). See
        :mod:`genvi.distributions._overrides` for the rules.

        Examples:
            >>> @gv.gen
            ... def guide(p):
            ...     gv.flip(p) @ "b"
            >>> enumerated = guide.with_strategies({"b": gv.ENUM})
            >>> @gv.expectation
            ... def value(key, p):
            ...     return 1.0 * enumerated.simulate(key, p).choices["b"]
            >>> float(value.grad_estimate(jax.random.key(0), 0.3))   # d/dp E[b] = 1, exactly
            1.0
        """
        from genvi.distributions._overrides import WithStrategies

        return WithStrategies(self, strategies)

    def __call__(self, *args, **kwargs) -> GenCall:
        return GenCall(self, args, kwargs)

    def __repr__(self) -> str:
        return f"<generative function {self.name}>"


class GenCall:
    """A generative function applied to arguments, waiting for an address: ``call @ "a"``."""

    __slots__ = ("gf", "args", "kwargs")

    def __init__(self, gf: GenerativeFunction, args: tuple, kwargs: dict):
        self.gf, self.args, self.kwargs = gf, args, kwargs
        handlers.note_call(self)

    def __matmul__(self, addr: Any) -> Any:
        return handlers.visit(self, addr)

    def __repr__(self) -> str:
        return f'{self.gf.name}(...)  # give it an address: {self.gf.name}(...) @ "addr"'


class StaticGenerativeFunction(GenerativeFunction):
    """A generative function written as a Python function (see :func:`gen`)."""

    def __init__(self, fn: Callable):
        self.fn = fn
        self.name = getattr(fn, "__name__", "gen")
        functools.update_wrapper(self, fn, updated=())

    def simulate(self, key, *args, **kwargs) -> Trace:
        check_key(key, f"{self.name}.simulate", single=True)
        with handlers.SimulateHandler(self, key) as h:
            retval = self.fn(*args, **kwargs)
        return Trace(h.choices, h.score, retval, args)

    def assess(self, choices, *args, **kwargs):
        choices = choice_map(choices)
        with handlers.AssessHandler(self, choices) as h:
            retval = self.fn(*args, **kwargs)
        handlers.check_all_used(self, choices, h.choices, "assess")
        return h.score, retval

    has_estimated_density = True  # a callee may be a marginal: hand keys down

    def estimate_logpdf(self, key, choices, *args, **kwargs):
        check_key(key, f"{self.name}.estimate_logpdf", single=True)
        choices = choice_map(choices)
        with handlers.EstimateHandler(self, key, choices) as h:
            retval = self.fn(*args, **kwargs)
        handlers.check_all_used(self, choices, h.choices, "assess")
        return h.score, retval

    def importance(self, key, constraints, *args, **kwargs):
        check_key(key, f"{self.name}.importance", single=True)
        constraints = choice_map(constraints)
        with handlers.ImportanceHandler(self, key, constraints) as h:
            retval = self.fn(*args, **kwargs)
        handlers.check_all_used(self, constraints, h.choices, "importance")
        return Trace(h.choices, h.score, retval, args), h.weight


def gen(fn: Callable) -> StaticGenerativeFunction:
    """Make a generative function from a Python function.

    Inside, ``dist(args) @ "addr"`` makes a random choice at ``addr`` and
    ``other_gf(args) @ "addr"`` calls another generative function, whose choices live
    under ``addr``. The body is ordinary Python and JAX: closures, pytrees, ``jax.lax``
    control flow (random choices inside ``lax`` loops go through :func:`genvi.scan`).

    Examples:
        >>> @gv.gen
        ... def model(theta):
        ...     z = gv.normal(theta, 1.0) @ "z"
        ...     gv.normal(z, 0.5) @ "x"
        ...     return z
        >>> tr = model.simulate(jax.random.key(0), 0.0)
        >>> sorted(tr.choices.keys())
        ['x', 'z']
        >>> logp, z = model.assess(tr.choices, 0.0)
        >>> bool(jnp.allclose(logp, tr.score))
        True
    """
    return StaticGenerativeFunction(fn)


__all__ = ["ChoiceMap", "GenCall", "GenerativeFunction", "StaticGenerativeFunction", "gen"]
