"""Readable text and HTML renderings of traces and choice maps (for terminals and Jupyter)."""

from __future__ import annotations

import html
from typing import Any

import jax
import numpy as np
from jax.core import Tracer

_MAX_ELEMS = 6


def _describe(v: Any) -> str:
    if isinstance(v, Tracer):
        return f"<traced {v.dtype}{list(v.shape)}>"
    try:
        # a Python number is shown with the dtype JAX gives it (float32, not float64)
        a = np.asarray(jax.numpy.asarray(v) if isinstance(v, (bool, int, float)) else v)
    except Exception:  # noqa: BLE001 - anything unprintable is shown by type
        return type(v).__name__
    if a.ndim == 0:
        x = a.item()
        return f"{x:.6g} ({a.dtype})" if isinstance(x, float) else f"{x!r} ({a.dtype})"
    flat = a.reshape(-1)
    body = np.array2string(flat[:_MAX_ELEMS], precision=4, separator=", ")
    if flat.size > _MAX_ELEMS:
        body = body[:-1] + ", ...]"
    return f"{a.dtype}{list(a.shape)} {body}"


def _lines(cm, indent: str) -> list[str]:
    from genvi.core._choicemap import ChoiceMap

    out = []
    if cm.is_leaf:
        out.append(f"{indent}(value) {_describe(cm.value)}")
    for k in sorted(cm._data):
        v = cm._data[k]
        if isinstance(v, ChoiceMap):
            out.append(f"{indent}{k!r}:")
            out.extend(_lines(v, indent + "  "))
        else:
            out.append(f"{indent}{k!r}: {_describe(v)}")
    return out


def choicemap_repr(cm) -> str:
    lines = _lines(cm, "  ")
    return "ChoiceMap(empty)" if not lines else "ChoiceMap(\n" + "\n".join(lines) + "\n)"


def trace_repr(tr) -> str:
    body = "\n".join(_lines(tr.choices, "    "))
    return (
        f"Trace(score={_describe(tr.score)}, retval={_describe_tree(tr.retval)},\n"
        f"  choices:\n{body}\n)"
    )


def _describe_tree(x: Any) -> str:
    leaves = jax.tree_util.tree_leaves(x)
    if len(leaves) == 1 and not isinstance(x, (dict, list, tuple)):
        return _describe(leaves[0])
    return f"<pytree with {len(leaves)} leaves>"


def _html_rows(cm, prefix: tuple) -> list[str]:
    from genvi.core._choicemap import ChoiceMap

    rows = []
    if cm.is_leaf:
        rows.append(_row(prefix or ("(value)",), cm.value))
    for k in sorted(cm._data):
        v = cm._data[k]
        if isinstance(v, ChoiceMap):
            rows.extend(_html_rows(v, prefix + (k,)))
        else:
            rows.append(_row(prefix + (k,), v))
    return rows


def _row(addr: tuple, v: Any) -> str:
    shape = getattr(v, "shape", ())
    dtype = getattr(v, "dtype", type(v).__name__)
    # the full hierarchical address, so a row reads on its own: inner / v
    name = " / ".join(html.escape(str(a)) for a in addr)
    return (
        f"<tr><td style='text-align:left;font-family:monospace'>{name}</td>"
        f"<td>{html.escape(str(dtype))}</td><td>{html.escape(str(list(shape)))}</td>"
        f"<td style='text-align:left;font-family:monospace'>{html.escape(_describe(v))}</td></tr>"
    )


_HEAD = "<tr><th>address</th><th>dtype</th><th>shape</th><th>value</th></tr>"


def choicemap_html(cm) -> str:
    return f"<table><caption>ChoiceMap</caption>{_HEAD}{''.join(_html_rows(cm, ()))}</table>"


def trace_html(tr) -> str:
    return (
        f"<div><b>Trace</b> score = {html.escape(_describe(tr.score))}"
        f"<table>{_HEAD}{''.join(_html_rows(tr.choices, ()))}</table></div>"
    )
