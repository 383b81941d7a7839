"""The documentation is part of the product: these tests fail when it falls behind the code.

1. Every public name has a docstring (as the API reference renders it: griffe reads the
   source, so module-level instances such as ``gv.normal`` need an attribute docstring).
2. The API reference (``docs/api/*.md``) has a ``::: path`` entry for every public name.
3. Every public function (and generative function) has an example in doctest form
   (``>>>``), and every example in the docstrings of the public names runs and prints
   what it says.
4. The ``python`` code blocks of each page of the guide (``docs/*.md``, ``docs/concepts``,
   ``docs/how-to``) run,
   in order, in one namespace per page. Fragments that are not meant to run are marked
   ``py`` instead of ``python``.

*Public* means: the names in ``genvi.__all__``, and those of each public module under
``genvi`` (its ``__all__``; a package without ``__all__`` contributes its public
submodules instead). The examples run with ``jax``, ``jnp`` (``jax.numpy``), ``np``,
``optax`` and ``gv`` (``genvi``) already imported, as the API reference says.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import griffe
import pytest

import genvi

ROOT = Path(__file__).resolve().parents[1]
API_DIR = ROOT / "docs" / "api"
NOT_API = {"genvi.cli"}  # the command line is documented in docs/how-to/cli.md


def _public_modules() -> list[str]:
    """``genvi`` and every public module or package under it (no ``_private`` part)."""
    out = ["genvi"]

    def walk(pkg):
        for info in pkgutil.iter_modules(pkg.__path__, pkg.__name__ + "."):
            if info.name.rsplit(".", 1)[1].startswith("_") or info.name in NOT_API:
                continue
            mod = importlib.import_module(info.name)
            if hasattr(mod, "__all__"):
                out.append(info.name)
            elif info.ispkg:
                walk(mod)
            else:
                out.append(info.name)

    walk(genvi)
    return out


def _public_names(modname: str) -> list[str]:
    mod = importlib.import_module(modname)
    if hasattr(mod, "__all__"):
        return list(mod.__all__)
    # A module without __all__: what it defines itself (not what it imports).
    return sorted(
        n
        for n, o in vars(mod).items()
        if not n.startswith("_")
        and not inspect.ismodule(o)
        and getattr(o, "__module__", None) == modname
    )


def _public() -> list[tuple[str, str]]:
    seen, out = set(), []
    for m in _public_modules():
        for n in _public_names(m):
            obj = getattr(importlib.import_module(m), n)
            ident = (id(obj), n) if not inspect.ismodule(obj) else (obj.__name__, n)
            if ident in seen:
                continue
            seen.add(ident)
            out.append((m, n))
    return out


PUBLIC = _public()
_GRIFFE = griffe.load("genvi", search_paths=[str(ROOT)], resolve_aliases=True)


def _griffe(path: str):
    obj = _GRIFFE
    for part in path.split(".")[1:]:
        obj = obj[part]
    return obj.final_target if obj.is_alias else obj


def _target(mod: str, name: str):
    """The griffe object documenting ``mod.name``. Functions, classes and modules are found
    by their runtime ``__module__``/``__qualname__``: a package re-exporting a function
    named like one of its modules (``genvi.combinators.vmap`` was once both) is ambiguous statically."""
    obj = getattr(importlib.import_module(mod), name)
    if inspect.ismodule(obj):
        return _griffe(obj.__name__)
    if inspect.isfunction(obj) or inspect.isclass(obj):
        return _griffe(f"{obj.__module__}.{obj.__qualname__}")
    return _griffe(f"{mod}.{name}")  # an instance: its attribute docstring


def _doc(mod: str, name: str) -> str:
    d = _target(mod, name).docstring
    return d.value if d is not None else ""


def _ids(pairs):
    return [f"{m}.{n}" for m, n in pairs]


def test_public_api_is_found():
    names = {n for _, n in PUBLIC}
    # a sanity check of the discovery itself: the contract's names are all there
    for n in ("gen", "expectation", "objectives", "normal", "vmap", "importance_sampling"):
        assert n in names
    assert len(PUBLIC) > 50


@pytest.mark.parametrize("mod,name", PUBLIC, ids=_ids(PUBLIC))
def test_public_name_has_docstring(mod, name):
    doc = _doc(mod, name).strip()
    assert doc, (
        f"{mod}.{name} has no docstring; every public name needs one (for a module-level "
        "instance, a string literal right after the assignment)"
    )


def _api_entries() -> set[str]:
    """The targets of every ``::: path`` entry of the API reference, resolved."""
    out = set()
    for page in sorted(API_DIR.glob("*.md")):
        for path in re.findall(r"^::: *([\w.]+)", page.read_text(), flags=re.M):
            out.add(_griffe(path).path)
    return out


def test_api_reference_lists_every_public_name():
    entries = _api_entries()
    missing = [
        f"{m}.{n} ({_target(m, n).path})" for m, n in PUBLIC if _target(m, n).path not in entries
    ]
    assert not missing, (
        f"the API reference (docs/api/*.md) has no `::: ...` entry for {missing}; add one "
        "(with the path in parentheses where the short one names a module)"
    )


# ------------------------------------------------------------------------------------------
# Examples.


def _needs_example(mod: str, name: str) -> bool:
    """Functions and generative functions (distributions included) need an example; classes
    are shown by the functions that make them, and their docstrings say what they hold."""
    obj = getattr(importlib.import_module(mod), name)
    return inspect.isfunction(obj) or isinstance(obj, genvi.GenerativeFunction)


NEED_EXAMPLE = [(m, n) for m, n in PUBLIC if _needs_example(m, n)]


@pytest.mark.parametrize("mod,name", NEED_EXAMPLE, ids=_ids(NEED_EXAMPLE))
def test_public_name_has_an_example(mod, name):
    assert ">>>" in _doc(mod, name), (
        f"{mod}.{name} has no example in doctest form (an `Examples:` section with `>>>` "
        "lines); every public function and class needs a short one that runs"
    )


def _docstrings_with_examples() -> list[tuple[str, str]]:
    """``(path, docstring)`` of every public object, its public members and its module,
    whose docstring holds a ``>>>`` example."""
    out, seen = [], set()

    def add(obj):
        if obj.path in seen:
            return
        seen.add(obj.path)
        if obj.docstring is not None and ">>>" in obj.docstring.value:
            out.append((obj.path, obj.docstring.value))

    for m, n in PUBLIC:
        obj = _target(m, n)
        add(obj)
        if obj.is_class:
            for member_name, member in obj.members.items():
                if not member_name.startswith("_") and not member.is_alias:
                    add(member)
    for m in _public_modules():
        add(_griffe(m))
    return sorted(out)


EXAMPLES = _docstrings_with_examples()


@pytest.mark.slow
@pytest.mark.parametrize("path,doc", EXAMPLES, ids=[p for p, _ in EXAMPLES])
def test_docstring_example_runs(path, doc, tmp_path, monkeypatch):
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    globs = {"gv": genvi, "jax": jax, "jnp": jnp, "np": np, "optax": optax}
    test = doctest.DocTestParser().get_doctest(doc, globs, path, path, 0)
    runner = doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    report = []
    runner.run(test, out=report.append)
    assert runner.failures == 0, f"the example of {path} fails:\n" + "".join(report)


# ------------------------------------------------------------------------------------------
# The guide's code blocks.

GUIDE_DIRS = ("concepts", "how-to")  # and the top-level pages; not api/ nor examples/
GUIDE_PAGES = sorted(
    str(p.relative_to(ROOT / "docs"))
    for p in (ROOT / "docs").rglob("*.md")
    if (len(p.relative_to(ROOT / "docs").parts) == 1 or p.parent.name in GUIDE_DIRS)
    and "```python" in p.read_text()
)


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.M | re.S)


def test_guide_pages_are_found():
    assert "getting-started.md" in GUIDE_PAGES and len(GUIDE_PAGES) >= 10


@pytest.mark.slow
@pytest.mark.parametrize("page", GUIDE_PAGES)
def test_guide_code_runs(page, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)  # pages that write files write them here
    namespace: dict = {"__name__": f"docs/{page}"}
    blocks = _python_blocks((ROOT / "docs" / page).read_text())
    assert blocks, f"docs/{page} is listed as a guide page but has no python block"
    for i, block in enumerate(blocks):
        code = compile(block, f"docs/{page} (python block {i + 1})", "exec")
        exec(code, namespace)
