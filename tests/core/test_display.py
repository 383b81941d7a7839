"""Readable text and HTML renderings of traces and choice maps."""

import re

import jax
import jax.numpy as jnp

import genvi as gv


@gv.gen
def _inner(mu):
    return gv.mv_normal_diag(mu, jnp.ones(3)) @ "v"


@gv.gen
def _model():
    z = gv.normal(0.0, 1.0) @ "z"
    v = _inner(jnp.zeros(3) + z) @ "inner"
    gv.flip(0.5) @ "b"
    return v


def _trace():
    return jax.jit(_model.simulate)(jax.random.key(0))


def test_trace_repr_shows_addresses_shapes_and_values():
    tr = _trace()
    text = repr(tr)
    assert text.startswith("Trace(score=")
    for name in ("'z'", "'inner'", "'v'", "'b'"):
        assert name in text
    assert "float32[3]" in text  # shape of the vector choice
    assert f"'z': {float(tr['z']):.6g} (float32)" in text  # the value of z
    assert "int32" in text  # dtype of the flip


def test_choicemap_repr_nests_addresses():
    tr = _trace()
    text = repr(tr.choices)
    lines = text.splitlines()
    inner = next(i for i, line in enumerate(lines) if "'inner'" in line)
    # 'v' is printed under 'inner', indented more deeply
    v_line = lines[inner + 1]
    assert "'v'" in v_line
    assert len(v_line) - len(v_line.lstrip()) > len(lines[inner]) - len(lines[inner].lstrip())
    assert repr(gv.choice_map()) == "ChoiceMap(empty)"
    # Python numbers are shown with JAX's dtype
    assert repr(gv.choice_map({"a": 1.5, "n": 2})) == (
        "ChoiceMap(\n  'a': 1.5 (float32)\n  'n': 2 (int32)\n)"
    )


def test_long_arrays_are_elided():
    cm = gv.choice_map({"x": jnp.arange(100.0)})
    text = repr(cm)
    assert "float32[100]" in text and "..." in text
    assert len(text) < 200


def test_html_has_a_row_per_choice_with_dtype_and_shape():
    tr = _trace()
    html = tr._repr_html_()
    assert html.count("<tr>") == 1 + 3  # header + one row per choice
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", html)
    rows = [cells[i : i + 4] for i in range(0, len(cells), 4)]
    by_address = {r[0]: r[1:] for r in rows}
    assert set(by_address) == {"b", "inner / v", "z"}  # full hierarchical addresses
    assert by_address["inner / v"][:2] == ["float32", "[3]"]
    assert by_address["b"][:2] == ["int32", "[]"]
    assert by_address["z"][2] == f"{float(tr['z']):.6g} (float32)"
    assert re.search(r"score = -?\d", html)
    cm_html = tr.choices._repr_html_()
    assert cm_html.startswith("<table>") and "inner / v" in cm_html


def test_repr_of_traced_values_inside_jit():
    seen = []

    def f(key):
        tr = _model.simulate(key)
        seen.append(repr(tr.choices))
        return tr.score

    jax.jit(f)(jax.random.key(1))
    assert "<traced float32[3]>" in seen[0] and "'z'" in seen[0]
