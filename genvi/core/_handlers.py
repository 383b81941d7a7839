"""The interpretation stack of the modeling language.

Inside a ``@gen`` function, ``gf(args) @ "addr"`` asks the *innermost active handler* to
interpret that call: simulate it (sampling), assess it (reading the value from a choice
map) or run importance sampling on it (constrained or not). The handlers live on one
stack per thread (a ``ContextVar``), kept here and nowhere else.

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

import contextvars
import zlib
from typing import Any

import jax.numpy as jnp

from genvi.core._choicemap import (
    Address,
    ChoiceMap,
    choice_map,
    format_address,
    normalize_address,
)
from genvi.core._derive import derive_key
from genvi.core._errors import AddressError, ModelingError
from genvi.core._origin import check_compatible, origin_of

# The stack of active handlers and of the addresses being visited, per thread and per
# asyncio task (a ContextVar holding immutable tuples): two threads tracing generative
# functions at once never see each other's handlers.
_STACK: contextvars.ContextVar[tuple[Handler, ...]] = contextvars.ContextVar(
    "genvi_handlers", default=()
)
_ADDRESS: contextvars.ContextVar[tuple[Address, ...]] = contextvars.ContextVar(
    "genvi_addresses", default=()
)


def current_address() -> Address:
    """The full address of the choice being interpreted (empty at the top level)."""
    out: Address = ()
    for a in _ADDRESS.get():
        out = out + a
    return out


def active() -> bool:
    """Whether a generative function is being interpreted in this thread."""
    return bool(_STACK.get())


def _trace_state():
    """An opaque token of JAX's current trace (which transformation is being traced)."""
    from jax._src import core as _core

    return _core.get_opaque_trace_state(convention="genvi")


def note_call(call) -> None:
    """Remember a call ``gf(...)`` made while a generative function runs: one that never
    gets its ``@ "addr"`` would silently drop its choice (see :meth:`Handler.__exit__`)."""
    stack = _STACK.get()
    if stack:
        stack[-1].unaddressed[id(call)] = call


def visit(call, addr: Any) -> Any:
    """Interpret the call ``gf(*args, **kwargs) @ addr`` with the innermost handler."""
    gf, args, kwargs = call.gf, call.args, call.kwargs
    stack = _STACK.get()
    if not stack:
        raise ModelingError(
            f"`{gf.name}(...) @ {addr!r}` was used outside a generative function being run; "
            "decorate the function with @gv.gen and call it through simulate, assess or "
            "importance"
        )
    addr = normalize_address(addr)
    handler = stack[-1]
    if addr == ():
        raise AddressError(
            f"{gf.name}(...) @ () in {handler.owner.name}: the empty address names no choice; "
            'give every random choice a non-empty address, e.g. @ "z"'
        )
    handler.check_trace(addr, gf)
    for h in reversed(stack):
        if h.unaddressed.pop(id(call), None) is not None:
            break
    token = _ADDRESS.set(_ADDRESS.get() + (addr,))
    try:
        return handler.visit(addr, gf, args, kwargs)
    finally:
        _ADDRESS.reset(token)


def address_key(key, addr: Address):
    """The key of the choice at ``addr`` in a generative function run with ``key``, for
    an address whose hash no earlier sibling address shares (see
    :meth:`Handler.key_for`). Hand-written code that must draw the same noise as genvi
    (the benchmarks) uses it."""
    return derive_key(key, _address_hash(normalize_address(addr), 0))


def _address_hash(addr: Address, salt: int) -> int:
    # Parts are joined with a separator no printable address contains, so ("a", "b") and
    # "a/b" get different keys.
    text = "\x1f".join(addr) + ("" if salt == 0 else f"\x1e{salt}")
    return zlib.crc32(text.encode()) & 0x7FFFFFFF


class Handler:
    """Base handler: records choices and accumulates a log density."""

    def __init__(self, owner):
        self.owner = owner
        self.choices = ChoiceMap()
        self.score = jnp.zeros(())
        self._hashes: dict[int, Address] = {}
        self._token = None
        self._trace = None
        self._empty_calls: set[Address] = set()
        #: calls made in the body that have not (yet) been given an address
        self.unaddressed: dict[int, Any] = {}

    def __enter__(self):
        self._trace = _trace_state()
        self._token = _STACK.set(_STACK.get() + (self,))
        return self

    def __exit__(self, *exc):
        stack = _STACK.get()
        assert stack and stack[-1] is self, "handler stack corrupted"
        assert self._token is not None
        _STACK.reset(self._token)
        if exc[0] is None and self.unaddressed:
            names = sorted({c.gf.name for c in self.unaddressed.values()})
            raise ModelingError(
                f"in {self.owner.name}: {', '.join(f'{n}(...)' for n in names)} was called but "
                "never given an address, so its random choice would be silently dropped; write "
                f'`{names[0]}(...) @ "addr"` to make the choice'
            )
        return False

    def key_for(self, key, addr: Address):
        """The key of the choice (or call) at ``addr``: ``key``'s stream of a hash of the
        address (:func:`genvi.core._derive.derive_key`), so that a choice's randomness
        depends on its address, not on the order of visits. Two addresses of one
        generative function never share a key: should a second address hash to a value an
        earlier one has (a 1 in 2^31 chance a pair), it is rehashed with a salt until it
        is unique. The program visits its addresses in a fixed order, so keys stay
        deterministic given ``key``."""
        salt = 0
        h = _address_hash(addr, salt)
        while self._hashes.get(h, addr) != addr:
            salt += 1
            h = _address_hash(addr, salt)
        self._hashes[h] = addr
        return derive_key(key, h)

    def check_trace(self, addr: Address, gf) -> None:
        """Raise if this visit happens inside a JAX transformation that began inside the
        generative function's body (a raw ``lax.scan``, ``fori_loop``, ``while_loop``,
        ``lax.cond``, ``jax.vmap`` or ``jax.jit`` there): the choice's value would be a
        tracer of that inner transformation, leaking out of it into the trace."""
        if _trace_state() == self._trace:
            return
        where = format_address(current_address() + addr)
        raise ModelingError(
            f"{gf.name}(...) @ {where} in {self.owner.name} is inside a JAX transformation "
            "started in the body of the generative function (jax.lax.scan, fori_loop, "
            "while_loop, cond or switch, jax.vmap, jax.jit, ...). Random choices cannot be "
            "made there: their values would leak out of the transformation. Use genvi's "
            "combinators instead: gv.scan for a loop over steps, gv.vmap for independent "
            "copies, gv.cond / gv.switch for branches, each around a @gv.gen function that "
            "makes the choices"
        )

    def _record(self, addr: Address, choices: ChoiceMap):
        taken = self.choices.has(addr) or addr in self._empty_calls
        if taken or any(self.choices.has(addr[:i]) for i in range(1, len(addr))):
            raise AddressError(
                f"address {format_address(current_address())} is used twice in {self.owner.name}; "
                'every random choice needs its own address (in a loop, use f"x{i}" or gv.vmap)'
            )
        if choices.is_leaf:
            self.choices = self.choices.set(addr, choices.value, choices.origin)
        elif choices.is_empty():
            # A call that made no choice adds no address: an empty sub-map would give the
            # trace a structure without values (and branches of gv.cond different ones).
            self._empty_calls.add(addr)
        else:
            self.choices = self.choices.set(addr, choices)

    def _origin(self, gf, args, kwargs):
        return origin_of(gf, args, kwargs, self.owner.name) if gf.single_choice else None

    def _check_given(self, addr, gf, sub: ChoiceMap, args, kwargs):
        """A value sampled by a distribution elsewhere (a guide) must be scorable here."""
        if gf.single_choice and sub.is_leaf and sub.origin is not None:
            check_compatible(
                sub.origin, gf, args, kwargs, current_address() or addr, self.owner.name
            )

    def visit(self, addr, gf, args, kwargs):  # pragma: no cover - interface
        raise NotImplementedError


class SimulateHandler(Handler):
    def __init__(self, owner, key):
        super().__init__(owner)
        self.key = key

    def visit(self, addr, gf, args, kwargs):
        tr = gf.simulate(self.key_for(self.key, addr), *args, **kwargs)
        origin = self._origin(gf, args, kwargs)
        self._record(addr, tr.choices if origin is None else tr.choices.with_origins({(): origin}))
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
                f"Given: {listing([owner + a for a in self.given.addresses()]) or 'nothing'}"
            )
        return self._visit_with(addr, gf, self.given.get_submap(addr), args, kwargs)

    def _visit_with(self, addr, gf, sub, args, kwargs):
        self._check_given(addr, gf, sub, args, kwargs)
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
        return gf.estimate_logpdf(self.key_for(self.key, addr), sub, *args, **kwargs)


class ImportanceHandler(Handler):
    def __init__(self, owner, key, constraints):
        super().__init__(owner)
        self.key = key
        self.given = choice_map(constraints)
        self.weight = jnp.zeros(())

    def visit(self, addr, gf, args, kwargs):
        sub = self.given.get_submap(addr) if self.given.has(addr) else ChoiceMap()
        self._check_given(addr, gf, sub, args, kwargs)
        tr, w = gf.importance(self.key_for(self.key, addr), sub, *args, **kwargs)
        origin = sub.origin if sub.is_leaf else self._origin(gf, args, kwargs)
        self._record(addr, tr.choices if origin is None else tr.choices.with_origins({(): origin}))
        self.score = self.score + tr.score
        self.weight = self.weight + w
        return tr.retval


def check_all_used(owner, given: ChoiceMap, visited: ChoiceMap, what: str):
    """Raise if ``given`` holds an address that the run never visited (a typo, usually)."""
    unused = [a for a in given.addresses() if not _covered(visited, a)]
    if unused:
        # Inside a nested call, name the full hierarchical addresses.
        prefix = current_address()
        known = [prefix + a for a in visited.addresses()]
        raise AddressError(
            f"{what} of {owner.name}: the choice map has "
            f"{'an address' if len(unused) == 1 else 'addresses'} "
            f"{listing([prefix + a for a in unused])} that the model never visits "
            f"(misspelled?). Addresses the model visits: {listing(known) or 'none'}"
        )


def listing(addrs: list, limit: int = 12) -> str:
    """Addresses for an error message: all of a few, the first ``limit`` of many."""
    shown = ", ".join(format_address(a) for a in addrs[:limit])
    if len(addrs) > limit:
        shown += f", ... ({len(addrs) - limit} more, {len(addrs)} in all)"
    return shown


def _covered(visited: ChoiceMap, addr: Address) -> bool:
    for i in range(len(addr), 0, -1):
        if visited.has(addr[:i]):
            return True
    return False
