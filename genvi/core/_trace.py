"""Traces: the record of one execution of a generative function."""

from __future__ import annotations

from typing import Any, NamedTuple

from genvi.core._choicemap import ChoiceMap


class Trace(NamedTuple):
    """One execution of a generative function, as a pytree.

    Attributes:
        choices: the random choices made, a :class:`ChoiceMap`.
        score: ``log p(choices; args)``, the log joint density of all choices.
        retval: the value the function returned.
        args: the arguments it was called with.
    """

    choices: ChoiceMap
    score: Any
    retval: Any
    args: tuple

    def __getitem__(self, addr):  # type: ignore[override]
        """``tr["z"]`` is ``tr.choices["z"]``; integer indices keep tuple behaviour."""
        if isinstance(addr, int | slice):
            return tuple.__getitem__(self, addr)
        return self.choices[addr]

    def __repr__(self) -> str:
        from genvi.core._display import trace_repr

        return trace_repr(self)

    def _repr_html_(self) -> str:
        from genvi.core._display import trace_html

        return trace_html(self)
