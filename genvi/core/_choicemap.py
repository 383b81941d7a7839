"""Choice maps: the random choices of an execution, indexed by address.

A :class:`ChoiceMap` is an immutable pytree. Its keys are strings; a key maps either to a
value (an array: the value of one random choice) or to a nested :class:`ChoiceMap` (the
choices of a generative function called at that address). Hierarchical addresses are
written as tuples: ``cm["inner", "z"]``.

Because it is a pytree whose structure (the set of addresses) is static, a choice map
passes through ``jax.jit``, ``jax.vmap`` and ``jax.grad`` like any other container.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import jax
import numpy as np

from genvi.core._errors import AddressError, ChoiceTypeError

Address = tuple[str, ...]

_NO_VALUE = object()


def normalize_address(addr: Any) -> Address:
    """Turn ``"z"`` or ``("inner", "z")`` into a tuple address, checking every part."""
    parts = addr if isinstance(addr, tuple) else (addr,)
    for p in parts:
        if not isinstance(p, str):
            raise AddressError(
                f"address {addr!r} is not valid: every part of an address must be a str, "
                f'got {type(p).__name__} {p!r}. Write e.g. `gv.normal(0., 1.) @ "z"`.'
            )
    return parts


def format_address(addr: Address) -> str:
    """Human-readable form of an address: ``"z"`` or ``("inner", "z")``."""
    return repr(addr[0]) if len(addr) == 1 else repr(tuple(addr))


@jax.tree_util.register_pytree_node_class
class ChoiceMap(Mapping):
    """An immutable map from addresses to the values of random choices.

    Build one with :func:`choice_map` from a nested dict, or get one from
    ``trace.choices``. Index with a string or a tuple address (see the examples below).

    A choice map with a *leaf value* at its root (``cm.is_leaf``) is what a distribution's
    trace holds: its single choice.

    Examples:
        >>> cm = gv.choice_map({"z": 1.0, "inner": {"x": 2.0}})
        >>> float(cm["z"]), float(cm["inner", "x"])
        (1.0, 2.0)
        >>> both = cm.merge({"y": 3.0})
        >>> both.has("y"), len(both)
        (True, 3)
    """

    __slots__ = ("_data", "_value", "_origins")

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        value: Any = _NO_VALUE,
        origins: Mapping[Any, Any] | None = None,
    ):
        self._data: dict[str, Any] = dict(data) if data else {}
        self._value = value
        # Where each value directly held here came from (the distribution that sampled it,
        # see genvi.core._origin), keyed by its key in ``_data`` or ``None`` for the root
        # value. Metadata only: not part of the pytree, so it does not survive a JAX
        # transformation's flatten/unflatten (genvi's combinators carry it across theirs).
        self._origins: dict[Any, Any] = dict(origins) if origins else {}

    # ----- pytree -----
    def tree_flatten(self):
        keys = tuple(sorted(self._data))
        has_value = self._value is not _NO_VALUE
        children = tuple(self._data[k] for k in keys)
        if has_value:
            children = children + (self._value,)
        return children, (keys, has_value)

    @classmethod
    def tree_unflatten(cls, aux, children):
        keys, has_value = aux
        obj = object.__new__(cls)
        obj._data = dict(zip(keys, children[: len(keys)], strict=True))
        obj._value = children[-1] if has_value else _NO_VALUE
        obj._origins = {}
        return obj

    # ----- construction -----
    @staticmethod
    def leaf(value: Any, origin: Any = None) -> ChoiceMap:
        """A choice map holding a single value at its root (a distribution's choice)."""
        return ChoiceMap(None, value, None if origin is None else {None: origin})

    @property
    def origin(self) -> Any:
        """For a leaf map: where its value came from (the distribution that sampled it in
        a generative function), or ``None`` for a value given by hand."""
        return self._origins.get(None)

    def origins(self) -> dict[Address, Any]:
        """The origin of every value that has one, by address."""
        out: dict[Address, Any] = {}
        if None in self._origins:
            out[()] = self._origins[None]
        for k, v in self._data.items():
            if isinstance(v, ChoiceMap):
                out.update({(k,) + a: o for a, o in v.origins().items()})
            elif k in self._origins:
                out[(k,)] = self._origins[k]
        return out

    def with_origins(self, origins: Mapping[Address, Any]) -> ChoiceMap:
        """A copy with the given origins attached to the values at those addresses (those
        not present are ignored)."""
        if not origins:
            return self
        out = ChoiceMap(self._data, self._value, self._origins)
        if () in origins and out.is_leaf:
            out._origins[None] = origins[()]
        for k, v in out._data.items():
            sub = {a[1:]: o for a, o in origins.items() if a and a[0] == k}
            if not sub:
                continue
            if isinstance(v, ChoiceMap):
                out._data[k] = v.with_origins(sub)
            elif () in sub:
                out._origins[k] = sub[()]
        return out

    # ----- queries -----
    @property
    def is_leaf(self) -> bool:
        """Whether this map holds one value at its root rather than addresses."""
        return self._value is not _NO_VALUE

    @property
    def value(self) -> Any:
        """The root value of a leaf map (a distribution's choice)."""
        if self._value is _NO_VALUE:
            raise AddressError(
                f"this choice map has no value at its root; its addresses are {self.addresses()}"
            )
        return self._value

    def __getitem__(self, addr: Any) -> Any:
        item = self._lookup(normalize_address(addr) if addr != () else ())
        if isinstance(item, ChoiceMap) and item.is_leaf:
            return item.value
        return item

    def _lookup(self, addr: Address) -> Any:
        node: Any = self
        for i, part in enumerate(addr):
            if not isinstance(node, ChoiceMap) or part not in node._data:
                known = self.addresses()
                raise AddressError(
                    f"no choice at address {format_address(addr)}"
                    + (f" (no {part!r} under {format_address(addr[:i])})" if i else "")
                    + f"; the addresses present are {[format_address(a) for a in known]}"
                )
            node = node._data[part]
        return node

    def get_submap(self, addr: Any) -> ChoiceMap:
        """The choices under ``addr``, as a choice map (a leaf map for a single value)."""
        addr = normalize_address(addr)
        item = self._lookup(addr)
        if isinstance(item, ChoiceMap):
            return item
        parent = self._lookup(addr[:-1]) if addr else self
        return ChoiceMap.leaf(item, parent._origins.get(addr[-1]) if addr else None)

    def has(self, addr: Any) -> bool:
        """Whether a value or a sub-map exists at ``addr``."""
        node: Any = self
        for part in normalize_address(addr):
            if not isinstance(node, ChoiceMap) or part not in node._data:
                return False
            node = node._data[part]
        return True

    def __contains__(self, addr: object) -> bool:
        try:
            return self.has(addr)
        except AddressError:
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._data))

    def __len__(self) -> int:
        return len(self._data)

    def addresses(self) -> list[Address]:
        """Every leaf address, as tuples, in sorted order."""
        out: list[Address] = []
        if self.is_leaf:
            out.append(())
        for k in sorted(self._data):
            v = self._data[k]
            if isinstance(v, ChoiceMap):
                out.extend((k,) + a for a in v.addresses())
            else:
                out.append((k,))
        return out

    def is_empty(self) -> bool:
        return not self._data and not self.is_leaf

    # ----- combination -----
    def merge(self, other: Any) -> ChoiceMap:
        """Combine two maps with disjoint addresses; a shared address is an error."""
        other = choice_map(other)
        return _merge(self, other, ())

    def set(self, addr: Any, value: Any, origin: Any = None) -> ChoiceMap:
        """A copy of this map with ``value`` at ``addr`` (creating sub-maps as needed)."""
        addr = normalize_address(addr)
        return _set(self, addr, value, origin)

    def to_dict(self) -> Any:
        """This map as a nested dict of values."""
        if self.is_leaf and not self._data:
            return self._value
        return {
            k: (v.to_dict() if isinstance(v, ChoiceMap) else v)
            for k, v in sorted(self._data.items())
        }

    # ----- display -----
    def __repr__(self) -> str:
        from genvi.core._display import choicemap_repr

        return choicemap_repr(self)

    def _repr_html_(self) -> str:
        from genvi.core._display import choicemap_html

        return choicemap_html(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ChoiceMap):
            return NotImplemented
        a, ta = jax.tree_util.tree_flatten(self)
        b, tb = jax.tree_util.tree_flatten(other)
        return ta == tb and all(
            np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b, strict=True)
        )

    __hash__ = None  # type: ignore[assignment]


def _merge(a: ChoiceMap, b: ChoiceMap, prefix: Address) -> ChoiceMap:
    if a.is_leaf or b.is_leaf:
        if (a.is_leaf and not b.is_empty()) or (b.is_leaf and not a.is_empty()):
            raise AddressError(
                f"cannot merge: both choice maps hold a value at {format_address(prefix) if prefix else 'the root'}"
            )
        return a if a.is_leaf else b
    data = dict(a._data)
    origins = {**a._origins, **b._origins}
    for k, v in b._data.items():
        if k in data:
            x, y = data[k], v
            if isinstance(x, ChoiceMap) and isinstance(y, ChoiceMap):
                data[k] = _merge(x, y, prefix + (k,))
            else:
                raise AddressError(
                    f"cannot merge: both choice maps hold a value at address "
                    f"{format_address(prefix + (k,))}; merge needs disjoint addresses"
                )
        else:
            data[k] = v
    return ChoiceMap(data, origins=origins)


def _set(cm: ChoiceMap, addr: Address, value: Any, origin: Any = None) -> ChoiceMap:
    if not addr:
        return ChoiceMap.leaf(value, origin)
    head, rest = addr[0], addr[1:]
    data = dict(cm._data)
    origins = dict(cm._origins)
    origins.pop(head, None)
    if rest:
        sub = data.get(head)
        sub = sub if isinstance(sub, ChoiceMap) else ChoiceMap()
        data[head] = _set(sub, rest, value, origin)
    else:
        data[head] = value
        if origin is not None:
            origins[head] = origin
    return ChoiceMap(data, origins=origins)


def choice_map(x: Any = None) -> ChoiceMap:
    """Build a :class:`ChoiceMap` from a nested dict (or return a choice map unchanged).

    Keys of the dict are address parts (strings); tuple keys are expanded into nested
    addresses. Values are arrays (or anything ``jnp.asarray`` accepts).

    Examples:
        >>> cm = gv.choice_map({"z": 0.5, ("inner", "x"): 1.0})
        >>> float(cm["inner", "x"])
        1.0
        >>> cm.addresses()
        [('inner', 'x'), ('z',)]
    """
    if x is None:
        return ChoiceMap()
    if isinstance(x, ChoiceMap):
        return x
    if not isinstance(x, Mapping):
        raise ChoiceTypeError(
            f"expected a ChoiceMap or a nested dict of choices (address -> value), got "
            f'{type(x).__name__}; e.g. {{"z": 0.5}}'
        )
    out = ChoiceMap()
    for k, v in x.items():
        addr = normalize_address(k)
        if isinstance(v, Mapping) and not isinstance(v, ChoiceMap):
            v = choice_map(v)
        if isinstance(v, ChoiceMap):
            for sub in v.addresses():
                out = _checked_set(out, addr + sub, v[sub] if sub else v.value)
        else:
            out = _checked_set(out, addr, v)
    return out


def _checked_set(cm: ChoiceMap, addr: Address, value: Any) -> ChoiceMap:
    if cm.has(addr):
        raise AddressError(f"address {format_address(addr)} is given twice")
    return cm.set(addr, value)
