"""The interpretation stack of the modeling language.

Inside a ``@gen`` function, ``gf(args) @ "addr"`` asks the *innermost active handler* to
interpret that call: simulate it (sampling), assess it (reading the value from a choice
map) or run importance sampling on it (constrained or not). The handlers live on one
module-level stack, kept here and nowhere else.

Invariants:

- A handler is pushed when a generative function's body starts being interpreted and
  popped when it ends, also on error (``with handler:``). The stack is therefore empty
  outside any interpretation, and ``@`` outside one is an error.
- Interpretation happens while JAX traces (or runs) the Python body, so the stack only
  ever holds Python objects; nothing of it reaches a compiled program.
- ``current_address()`` is the full hierarchical address of the call being interpreted,
  made of the addresses of every enclosing visit.
"""

from __future__ import annotations

import zlib
from typing import Any

import jax
import jax.numpy as jnp

from genvi.core._choicemap import (
    Address,
    ChoiceMap,
    choice_map,
    format_address,
    normalize_address,
)
from genvi.core._errors import AddressError, ModelingError

_STACK: list[Handler] = []
_ADDRESS: list[Address] = []


def current_address() -> Address:
    """The full address of the choice being interpreted (empty at the top level)."""
    out: Address = ()
    for a in _ADDRESS:
        out = out + a
    return out


def visit(addr: Any, gf, args: tuple, kwargs: dict) -> Any:
    """Interpret the call ``gf(*args, **kwargs) @ addr`` with the innermost handler."""
    if not _STACK:
        raise ModelingError(
            f"`{gf.name}(...) @ {addr!r}` was used outside a generative function being run; "
            "decorate the function with @gv.gen and call it through simulate, assess or "
            "importance"
        )
    addr = normalize_address(addr)
    _ADDRESS.append(addr)
    try:
        return _STACK[-1].visit(addr, gf, args, kwargs)
    finally:
        _ADDRESS.pop()


def address_key(key, addr: Address):
    """A key for the choice at ``addr``: ``key`` folded with a stable hash of the address,
    so a choice's randomness depends on its address, not on the order of visits."""
    # Parts are joined with a separator no printable address contains, so ("a", "b") and
    # "a/b" get different keys.
    h = zlib.crc32("\x1f".join(addr).encode()) & 0x7FFFFFFF
    return jax.random.fold_in(key, h)


class Handler:
    """Base handler: records choices and accumulates a log density."""

    def __init__(self, owner):
        self.owner = owner
        self.choices = ChoiceMap()
        self.score = jnp.zeros(())

    def __enter__(self):
        _STACK.append(self)
        return self

    def __exit__(self, *exc):
        popped = _STACK.pop()
        assert popped is self, "handler stack corrupted"
        return False

    def _record(self, addr: Address, choices: ChoiceMap):
        if self.choices.has(addr) or any(self.choices.has(addr[:i]) for i in range(1, len(addr))):
            raise AddressError(
                f"address {format_address(current_address())} is used twice in {self.owner.name}; "
                'every random choice needs its own address (in a loop, use f"x{i}" or gv.vmap)'
            )
        self.choices = self.choices.set(addr, choices.value if choices.is_leaf else choices)

    def visit(self, addr, gf, args, kwargs):  # pragma: no cover - interface
        raise NotImplementedError


class SimulateHandler(Handler):
    def __init__(self, owner, key):
        super().__init__(owner)
        self.key = key

    def visit(self, addr, gf, args, kwargs):
        tr = gf.simulate(address_key(self.key, addr), *args, **kwargs)
        self._record(addr, tr.choices)
        self.score = self.score + tr.score
        return tr.retval


class AssessHandler(Handler):
    def __init__(self, owner, choices):
        super().__init__(owner)
        self.given = choice_map(choices)

    def visit(self, addr, gf, args, kwargs):
        if not self.given.has(addr) and not gf.single_choice:
            # A call with addresses of its own gets an empty map: it names the first choice
            # it misses by its full address (and a call that makes no choice needs none).
            return self._visit_with(addr, gf, ChoiceMap(), args, kwargs)
        if not self.given.has(addr):
            owner = current_address()[: len(current_address()) - len(addr)]
            raise AddressError(
                f"assess of {self.owner.name}: no value for the choice at address "
                f"{format_address(current_address())} ({gf.name}); assess needs every choice. "
                f"Given: {', '.join(format_address(owner + a) for a in self.given.addresses()) or 'nothing'}"
            )
        return self._visit_with(addr, gf, self.given.get_submap(addr), args, kwargs)

    def _visit_with(self, addr, gf, sub, args, kwargs):
        logp, retval = self._density(addr, gf, sub, args, kwargs)
        self._record(addr, sub)
        self.score = self.score + logp
        return retval

    def _density(self, addr, gf, sub, args, kwargs):
        return gf.assess(sub, *args, **kwargs)


class EstimateHandler(AssessHandler):
    """Like :class:`AssessHandler`, with a key handed to each callee's
    ``estimate_logpdf`` (so a nested ``gv.marginal`` can estimate its density). Callees
    whose ``estimate_logpdf`` is the exact ``assess`` get no key: nothing is added to the
    program for them."""

    def __init__(self, owner, key, choices):
        super().__init__(owner, choices)
        self.key = key

    def _density(self, addr, gf, sub, args, kwargs):
        if not gf.has_estimated_density:
            return gf.assess(sub, *args, **kwargs)
        return gf.estimate_logpdf(address_key(self.key, addr), sub, *args, **kwargs)


class ImportanceHandler(Handler):
    def __init__(self, owner, key, constraints):
        super().__init__(owner)
        self.key = key
        self.given = choice_map(constraints)
        self.weight = jnp.zeros(())

    def visit(self, addr, gf, args, kwargs):
        sub = self.given.get_submap(addr) if self.given.has(addr) else ChoiceMap()
        tr, w = gf.importance(address_key(self.key, addr), sub, *args, **kwargs)
        self._record(addr, tr.choices)
        self.score = self.score + tr.score
        self.weight = self.weight + w
        return tr.retval


def check_all_used(owner, given: ChoiceMap, visited: ChoiceMap, what: str):
    """Raise if ``given`` holds an address that the run never visited (a typo, usually)."""
    unused = [a for a in given.addresses() if not _covered(visited, a)]
    if unused:
        # Inside a nested call, name the full hierarchical addresses.
        prefix = current_address()
        known = [format_address(prefix + a) for a in visited.addresses()]
        raise AddressError(
            f"{what} of {owner.name}: the choice map has "
            f"{'an address' if len(unused) == 1 else 'addresses'} "
            f"{', '.join(format_address(prefix + a) for a in unused)} that the model never visits "
            f"(misspelled?). Addresses the model visits: {', '.join(known) or 'none'}"
        )


def _covered(visited: ChoiceMap, addr: Address) -> bool:
    for i in range(len(addr), 0, -1):
        if visited.has(addr[:i]):
            return True
    return False
