"""Gradient strategies set from outside a program: ``gf.with_strategies({...})``.

A strategy is normally written where the choice is made (``gv.flip.enum(p) @ "b"``).
``gf.with_strategies({"b": gv.MVD, ("layer", "z"): gv.REINFORCE})`` returns a generative
function that runs ``gf`` with the strategies of the named choices replaced, without
editing ``gf``; the original is unchanged.

An address names the choice it reaches, relative to ``gf``: a choice inside a nested call
as a tuple (``("layer", "z")``), a choice in the body of a ``gv.vmap`` or ``gv.scan`` by
the address the combinator is called at followed by the body's (``("chain", "z")``). An
address may also name a call rather than a choice: its strategy then applies to every
choice under it. Where several entries reach a choice, the longest address wins, and an
assignment made by an outer ``with_strategies`` wins over an inner one (the outer caller
is the one overriding).

While a wrapped function runs, the assignment lives in a :class:`contextvars.ContextVar`
(per thread), consulted by each distribution when it binds its choice: nothing global is
changed, and tracing under ``jax.jit``, ``jax.vmap`` or an expectation sees the new
strategies. Errors arrive at trace time: an address that reaches no choice of ``gf``
(:class:`~genvi.AddressError`, listing the addresses that exist), a strategy that cannot
apply to the distribution there (:class:`~genvi.StrategyError`, naming both), a value that
is not a strategy. REINFORCE with a baseline needs its baseline value, which only the
program has: write ``dist.reinforce.with_baseline(b)`` there.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from dataclasses import dataclass, field

from genvi.core import _handlers as handlers
from genvi.core._choicemap import Address, choice_map, format_address, normalize_address
from genvi.core._errors import AddressError, StrategyError
from genvi.core._genfn import GenerativeFunction
from genvi.distributions import _strategies as S


@dataclass
class _Assignment:
    prefix: Address  # where the wrapped function runs, in full addresses
    table: dict[Address, S.Strategy]
    owner: str
    seen: set[Address] = field(default_factory=set)
    #: when not None, every choice under ``prefix`` is listed here as it is bound:
    #: ``(relative address, family, strategy it runs with, strategy of the program)``
    record: list | None = None
    #: when not None, ``(relative address, site, flat parameters)`` of every choice
    sites: list | None = None


_ACTIVE: contextvars.ContextVar[tuple[_Assignment, ...]] = contextvars.ContextVar(
    "genvi_strategy_overrides", default=()
)


def _lookup(assignment: _Assignment, addr: Address):
    """The entry of ``assignment`` reaching the full address ``addr``: the longest
    address that is ``addr`` relative to the prefix, or a prefix of it."""
    p = assignment.prefix
    if addr[: len(p)] != p:
        return None
    rel = addr[len(p) :]
    for n in range(len(rel), -1, -1):
        if rel[:n] in assignment.table:
            return rel[:n]
    return None


def resolve(family, strategy: S.Strategy, operands: tuple, addr: Address):
    """The strategy and operands a choice of ``family`` at ``addr`` runs with: the
    outermost active assignment that reaches it, else its own."""
    chosen = None
    active = _ACTIVE.get()
    for assignment in active:  # outermost first: the outer caller overrides
        entry = _lookup(assignment, addr)
        if entry is None:
            continue
        assignment.seen.add(entry)
        if chosen is None:
            chosen = (assignment, entry)
    if chosen is not None:
        assignment, entry = chosen
        new = assignment.table[entry]
        try:
            new.check(family)
        except StrategyError as e:
            raise StrategyError(
                f"{assignment.owner}.with_strategies: {new.name} cannot apply to the "
                f"{family.name} choice at {format_address(addr)} (assigned by the entry "
                f"{format_address(entry) if entry else '()'}): {e}"
            ) from None
        result = (new, ())
    else:
        result = (strategy, operands)
    for assignment in active:
        p = assignment.prefix
        if assignment.record is not None and addr[: len(p)] == p:
            assignment.record.append((addr[len(p) :], family, result[0], strategy))
    return result


def note_site(addr: Address, site, flat) -> None:
    """Record a choice's site and parameters for the active recordings that ask for them
    (how :func:`genvi.sum_out` finds the supports of the choices it sums out)."""
    for assignment in _ACTIVE.get():
        p = assignment.prefix
        if assignment.sites is not None and addr[: len(p)] == p:
            assignment.sites.append((addr[len(p) :], site, flat))


class Recording(GenerativeFunction):
    """``gf`` unchanged, listing the choices it binds while it runs (in ``.sites``:
    ``(relative address, family, strategy, strategy written in the program)``): how
    :func:`genvi.select_strategies` finds the choices of a guide inside an objective."""

    def __init__(self, gf: GenerativeFunction):
        self.gf = gf
        self.name = gf.name
        self.single_choice = gf.single_choice
        self.has_estimated_density = gf.has_estimated_density
        self.sites: list = []
        #: set ``keep_sites`` to also list ``(address, site, flat parameters)`` here
        self.keep_sites = False
        self.site_params: list = []

    def _run(self, method, *args, **kwargs):
        assignment = _Assignment(
            handlers.current_address(),
            {},
            self.gf.name,
            record=self.sites,
            sites=self.site_params if self.keep_sites else None,
        )
        token = _ACTIVE.set(_ACTIVE.get() + (assignment,))
        try:
            return getattr(self.gf, method)(*args, **kwargs)
        finally:
            _ACTIVE.reset(token)

    def simulate(self, key, *args, **kwargs):
        return self._run("simulate", key, *args, **kwargs)

    def importance(self, key, constraints, *args, **kwargs):
        return self._run("importance", key, constraints, *args, **kwargs)

    def assess(self, choices, *args, **kwargs):
        return self._run("assess", choices, *args, **kwargs)

    def estimate_logpdf(self, key, choices, *args, **kwargs):
        return self._run("estimate_logpdf", key, choices, *args, **kwargs)


def _check_table(strategies, owner: str) -> dict[Address, S.Strategy]:
    if not isinstance(strategies, Mapping):
        raise TypeError(
            f"{owner}.with_strategies takes a mapping from addresses to strategies, e.g. "
            f'{{"z": gv.ENUM}}, got {type(strategies).__name__}'
        )
    table: dict[Address, S.Strategy] = {}
    for addr, strategy in strategies.items():
        a = normalize_address(addr)
        if isinstance(strategy, S.Baselined):
            raise StrategyError(
                f"{owner}.with_strategies: the entry {format_address(a)} asks for "
                "REINFORCE with a baseline, whose baseline value only the program has; "
                "write dist.reinforce.with_baseline(b) where the choice is made, or assign "
                "gv.REINFORCE here"
            )
        if not isinstance(strategy, S.Strategy):
            raise TypeError(
                f"{owner}.with_strategies: the entry {format_address(a)} maps to "
                f"{strategy!r}, which is not a gradient strategy; use gv.REPARAM, "
                "gv.REINFORCE, gv.ENUM or gv.MVD"
            )
        if a in table:
            raise AddressError(
                f"{owner}.with_strategies: the address {format_address(a)} is given twice"
            )
        table[a] = strategy
    if not table:
        raise ValueError(f"{owner}.with_strategies: no address given")
    return table


class WithStrategies(GenerativeFunction):
    """``gf`` with the strategies of some choices replaced; see :meth:`with_strategies
    <genvi.GenerativeFunction.with_strategies>`."""

    def __init__(self, gf: GenerativeFunction, strategies):
        self.gf = gf
        self.table = _check_table(strategies, gf.name)
        self.name = gf.name
        self.single_choice = gf.single_choice
        self.has_estimated_density = gf.has_estimated_density

    def __repr__(self) -> str:
        pairs = ", ".join(f"{format_address(a)}: {s.name}" for a, s in self.table.items())
        return f"<generative function {self.gf.name} with strategies {{{pairs}}}>"

    def _run(self, method: str, addresses_of, *args, **kwargs):
        assignment = _Assignment(handlers.current_address(), self.table, self.gf.name)
        token = _ACTIVE.set(_ACTIVE.get() + (assignment,))
        try:
            out = getattr(self.gf, method)(*args, **kwargs)
        finally:
            _ACTIVE.reset(token)
        known = addresses_of(out)
        missing = [
            a
            for a in self.table
            if a not in assignment.seen and not any(k[: len(a)] == a for k in known)
        ]
        if missing:
            listing = ", ".join(format_address(a) for a in known[:12])
            more = f" and {len(known) - 12} more" if len(known) > 12 else ""
            raise AddressError(
                f"{self.gf.name}.with_strategies: no choice of {self.gf.name} is at "
                f"{', '.join(format_address(a) for a in missing)}; its choices are at "
                f"{listing}{more} (addresses are relative to {self.gf.name}: a choice in "
                "a nested call or a combinator's body is (call address, choice address))"
            )
        return out

    def simulate(self, key, *args, **kwargs):
        return self._run("simulate", lambda tr: list(tr.choices.addresses()), key, *args, **kwargs)

    def importance(self, key, constraints, *args, **kwargs):
        return self._run(
            "importance",
            lambda out: list(out[0].choices.addresses()),
            key,
            constraints,
            *args,
            **kwargs,
        )

    def assess(self, choices, *args, **kwargs):
        addrs = list(choice_map(choices).addresses())
        return self._run("assess", lambda _: addrs, choices, *args, **kwargs)

    def estimate_logpdf(self, key, choices, *args, **kwargs):
        addrs = list(choice_map(choices).addresses())
        return self._run("estimate_logpdf", lambda _: addrs, key, choices, *args, **kwargs)


__all__ = ["WithStrategies", "Recording", "resolve"]
