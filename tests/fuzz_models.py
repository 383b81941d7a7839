"""Random small genvi models for the fuzz tests (tests/test_fuzz.py).

A model is described by a *spec*: plain frozen dataclasses (hashable, with a readable
``repr``, so that Hypothesis prints a falsifying example as a model one can rebuild by
hand) made of

- :class:`Leaf`: one random choice of a library family, with base parameters, a batch
  shape (scalar or a small vector), whether the model's parameters depend on the running
  state, whether the choice is observed (in the ELBO test), and the gradient strategy the
  *guide* samples it with;
- :class:`Call`: a ``@gv.gen`` function called at an address (nesting);
- :class:`Vmap`: ``gv.vmap`` of a block over ``n`` copies;
- :class:`Scan`: ``gv.scan`` of a block over ``n`` steps (the state is the carry), over
  ``length=n`` or over ``xs``;
- :class:`Switch`: ``gv.switch`` / ``gv.cond`` between blocks, with a concrete index or
  a random one (a categorical or flip choice made just before, at ``<addr>i``); branches
  may share an address (same shape and dtype, possibly another family).

:func:`build` turns a spec into a generative function ``model(theta)``. Every block
threads a float32 scalar state ``s`` in (-1, 1): each choice's parameters may depend on
it (so gradients in ``theta`` and ``phi`` flow through every choice), and each choice's
value updates it (``s = tanh(s + mean(value) / 2)``). Parameters are transformed so that
they stay valid for any state: locations and logits are shifted, positive parameters
scaled by ``exp(0.3 s)``, probabilities moved on the logit scale. Supports never depend
on the state (``uniform``'s bounds and ``binomial``'s count are constants), so that the
model with some leaves removed (:func:`build` with ``role="guide"``: observed leaves are
dropped) is a guide whose samples the model can always score.

The *guide* is the same spec with the observed leaves removed and each leaf sampled with
its :attr:`Leaf.strategy`; :func:`with_guide_choices` draws which leaves are observed and
strategies that apply to each family (ENUM for finite supports, MVD where genvi has a
rule, neither inside ``gv.scan``).

:func:`reference_logpdf` is an oracle for the log joint density that walks the spec in
plain Python; :func:`default_choices` builds a valid choice map without sampling.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st

import genvi as gv

# ---------------------------------------------------------------------------------------
# Families: how to draw base parameters, and how the state moves them.

#: family -> (kind of each parameter, is discrete, has an event axis)
#: kinds: "loc" (shifted by s), "pos" (scaled), "conc" (>= 1.1 after scaling, unless
#: EXTREME), "prob",
#: "logits" (vector, shifted), "const" (not moved: support bounds, counts)
FAMILIES: dict[str, tuple[tuple[str, ...], bool, bool]] = {
    "normal": (("loc", "pos"), False, False),
    "mv_normal_diag": (("loc", "pos"), False, True),
    "flip": (("prob",), True, False),
    "bernoulli": (("loc",), True, False),  # logits: shifted like a location
    "categorical": (("logits",), True, True),
    "beta": (("conc", "conc"), False, False),
    "gamma": (("conc", "pos"), False, False),
    "dirichlet": (("conc",), False, True),
    "poisson": (("pos",), True, False),
    "geometric": (("prob",), True, False),
    "uniform": (("const", "const"), False, False),
    "exponential": (("pos",), False, False),
    "laplace": (("loc", "pos"), False, False),
    "binomial": (("const", "prob"), True, False),
}

DISCRETE = tuple(f for f, (_, d, _) in FAMILIES.items() if d)
CONTINUOUS = tuple(f for f, (_, d, _) in FAMILIES.items() if not d)
ENUMERABLE = ("flip", "bernoulli", "categorical", "binomial")
WITH_MVD = ("normal", "flip", "bernoulli", "categorical", "poisson", "geometric")
REPARAMETERIZABLE = CONTINUOUS
#: families whose samplers are rejection loops, each costing seconds of XLA compilation:
#: drawn a third as often as the others (the strategy sweeps cover every family)
SLOW_TO_COMPILE = ("beta", "gamma", "dirichlet", "poisson", "binomial")
WEIGHTED_FAMILIES = tuple(f for f in FAMILIES for _ in range(1 if f in SLOW_TO_COMPILE else 3))


def strategies_for(family: str, in_scan: bool) -> tuple[str, ...]:
    """The guide strategies that apply to ``family`` ("default" is the family's own:
    REPARAM for continuous families, REINFORCE for discrete ones). ENUM and MVD need the
    rest of the program as a continuation, which a ``gv.scan`` body cannot give."""
    out = ["default", "reinforce"]
    if family in REPARAMETERIZABLE:
        out.append("reparam")
    if not in_scan:
        if family in ENUMERABLE:
            out.append("enum")
        if family in WITH_MVD:
            out.append("mvd")
    return tuple(out)


def needs_continuation(strategy: str) -> bool:
    return strategy in ("enum", "mvd")


# ---------------------------------------------------------------------------------------
# Specs


@dataclass(frozen=True)
class Leaf:
    family: str
    params: tuple  # base parameters: floats, or nested tuples of floats (arrays); ints
    batch: tuple = ()  # () or (n,)
    depends: bool = True  # whether the parameters move with the state
    observed: bool = False
    strategy: str = "default"
    #: whether another branch of the enclosing switch has a choice at the same address
    #: (of the same shape and dtype): such a choice is never observed
    shared: bool = False

    def __repr__(self) -> str:
        extra = "" if self.depends else ", depends=False"
        extra += ", observed=True" if self.observed else ""
        extra += ", shared=True" if self.shared else ""
        extra += "" if self.strategy == "default" else f", strategy={self.strategy!r}"
        return f"Leaf({self.family!r}, {self.params!r}, batch={self.batch!r}{extra})"


@dataclass(frozen=True)
class Block:
    items: tuple  # ((address, node), ...)

    def __repr__(self) -> str:  # evaluable: Block((("a0", Leaf(...)), ...))
        return f"Block({self.items!r})"


@dataclass(frozen=True)
class Call:
    body: Block


@dataclass(frozen=True)
class Vmap:
    body: Block
    n: int


@dataclass(frozen=True)
class Scan:
    body: Block
    n: int
    xs: bool = False  # scanned over xs (a float per step) rather than over length=n


@dataclass(frozen=True)
class Switch:
    branches: tuple  # Blocks
    index: Any  # a concrete int (bool for cond), or a Leaf: the random index choice
    cond: bool = False  # gv.cond(branches[0] = true, branches[1] = false)


Node = Any  # Leaf | Call | Vmap | Scan | Switch


# ---------------------------------------------------------------------------------------
# Building generative functions from specs


def _f32(x):
    return jnp.asarray(x, jnp.float32)


def _params(leaf: Leaf, s):
    """The parameters of ``leaf`` at state ``s`` (a float32 scalar in (-1, 1))."""
    kinds, _, _ = FAMILIES[leaf.family]
    t = s if leaf.depends else jnp.zeros((), jnp.float32)
    out = []
    for kind, base in zip(kinds, leaf.params, strict=True):
        if kind == "const":
            out.append(base if isinstance(base, int) else _f32(base))
            continue
        b = _f32(base)
        if kind in ("loc", "logits"):
            out.append(b + t)
        elif kind in ("pos", "conc"):
            out.append(b * jnp.exp(0.3 * t))
        elif kind == "prob":
            out.append(jax.nn.sigmoid(jnp.log(b) - jnp.log1p(-b) + t))
        else:  # pragma: no cover
            raise AssertionError(kind)
    return out


def dist_of(leaf: Leaf, role: str):
    d = getattr(gv, leaf.family)
    if role == "guide" and leaf.strategy != "default":
        d = getattr(d, leaf.strategy)
    return d


def _update(s, value):
    v = jnp.mean(jnp.asarray(value).astype(jnp.float32))
    return _f32(jnp.tanh(s + 0.5 * v))


def _named(fn, name):
    fn.__name__ = fn.__qualname__ = name
    return gv.gen(fn)


def _index_dist(sw: Switch, role: str):
    return dist_of(sw.index, role)


def build_block(block: Block, role: str, name: str):
    """A callable ``run(s) -> s`` making the block's choices (inside a gen function)."""
    parts = []
    for addr, node in block.items:
        if isinstance(node, Leaf):
            if role == "guide" and node.observed:
                continue
            parts.append((addr, "leaf", node, None))
        elif isinstance(node, Call):
            sub = build_block(node.body, role, f"{name}_{addr}")
            parts.append((addr, "call", node, _named(lambda s, sub=sub: sub(s), f"{name}_{addr}")))
        elif isinstance(node, Vmap):
            sub = build_block(node.body, role, f"{name}_{addr}")
            one = _named(lambda s, x, sub=sub: sub(_f32(jnp.tanh(s + x))), f"{name}_{addr}")
            parts.append((addr, "vmap", node, gv.vmap(one, in_axes=(None, 0))))
        elif isinstance(node, Scan):
            sub = build_block(node.body, role, f"{name}_{addr}")
            if node.xs:
                step = _named(
                    lambda c, x, sub=sub: (sub(_f32(jnp.tanh(c + x))), x), f"{name}_{addr}"
                )
                parts.append((addr, "scan", node, gv.scan(step)))
            else:
                step = _named(lambda c, x, sub=sub: (sub(c), None), f"{name}_{addr}")
                parts.append((addr, "scan", node, gv.scan(step, length=node.n)))
        elif isinstance(node, Switch):
            gfs = [
                _named(
                    lambda s, sub=build_block(b, role, f"{name}_{addr}{i}"): sub(s),
                    f"{name}_{addr}{i}",
                )
                for i, b in enumerate(node.branches)
            ]
            comb = gv.cond(gfs[0], gfs[1]) if node.cond else gv.switch(*gfs)
            parts.append((addr, "switch", node, comb))
        else:  # pragma: no cover
            raise AssertionError(node)

    def run(s):
        for addr, kind, node, gf in parts:
            if kind == "leaf":
                v = dist_of(node, role)(*_params(node, s)) @ addr
                s = _update(s, v)
            elif kind == "call":
                s = _update(s, gf(s) @ addr)
            elif kind == "vmap":
                xs = jnp.linspace(-0.5, 0.5, node.n, dtype=jnp.float32)
                s = _update(s, gf(s, xs) @ addr)
            elif kind == "scan":
                xs = jnp.linspace(-0.5, 0.5, node.n, dtype=jnp.float32) if node.xs else None
                c, _ = gf(s, xs) @ addr
                s = _update(s, c)
            else:  # switch
                if isinstance(node.index, Leaf):
                    idx = _index_dist(node, role)(*_params(node.index, s)) @ f"{addr}i"
                else:
                    idx = node.index
                s = _update(s, gf(idx, s) @ addr)
        return s

    return run


def build(block: Block, role: str = "model"):
    """``model(theta)`` (or, with ``role="guide"``, the guide ``guide(phi)``: observed
    leaves dropped, strategies applied) as a generative function."""
    run = build_block(block, role, role)

    def top(theta):
        return run(_f32(jnp.tanh(theta)))

    return _named(top, role)


# ---------------------------------------------------------------------------------------
# Queries on specs


def leaf_paths(block: Block, prefix=(), ctx=()):
    """``(address, leaf, context)`` of every leaf (random switch indices included), where
    ``context`` lists the enclosing combinators ("vmap", "scan", "switch", "call"). With
    a concrete switch index, only the taken branch's leaves."""
    for addr, node in block.items:
        if isinstance(node, Leaf):
            yield prefix + (addr,), node, ctx
        elif isinstance(node, Call):
            yield from leaf_paths(node.body, prefix + (addr,), ctx + ("call",))
        elif isinstance(node, Vmap):
            yield from leaf_paths(node.body, prefix + (addr,), ctx + ("vmap",))
        elif isinstance(node, Scan):
            yield from leaf_paths(node.body, prefix + (addr,), ctx + ("scan",))
        elif isinstance(node, Switch):
            if isinstance(node.index, Leaf):
                yield prefix + (f"{addr}i",), node.index, ctx
                for b in node.branches:
                    yield from leaf_paths(b, prefix + (addr,), ctx + ("switch",))
            else:
                taken = _taken(node)
                yield from leaf_paths(node.branches[taken], prefix + (addr,), ctx + ("switch",))


def live_paths(block: Block, prefix=()):
    """The leaf addresses that an eager ``assess`` of :func:`default_choices` reads: those
    of the branches taken by concrete indices, and by random ones at their default value
    0 (branch 0 of a switch; the false branch, 1, of a cond). The other branches' values
    are ignored with a concrete index."""
    for addr, node in block.items:
        path = prefix + (addr,)
        if isinstance(node, Leaf):
            yield path
        elif isinstance(node, (Call, Vmap, Scan)):
            yield from live_paths(node.body, path)
        else:
            if isinstance(node.index, Leaf):
                yield prefix + (f"{addr}i",)
                taken = 1 if node.cond else 0
            else:
                taken = _taken(node)
            yield from live_paths(node.branches[taken], path)


def _taken(sw: Switch) -> int:
    if sw.cond:
        return 0 if sw.index else 1
    return int(sw.index)


def has_random_switch(block: Block) -> bool:
    for _, node in block.items:
        if isinstance(node, Switch):
            if isinstance(node.index, Leaf):
                return True
            if any(has_random_switch(b) for b in node.branches):
                return True
        elif isinstance(node, (Call, Vmap, Scan)) and has_random_switch(node.body):
            return True
    return False


def map_leaves(block: Block, fn, ctx=()) -> Block:
    """A copy of the spec with ``fn(leaf, ctx) -> leaf`` applied to every leaf."""
    items = []
    for addr, node in block.items:
        if isinstance(node, Leaf):
            node = fn(node, ctx)
        elif isinstance(node, Call):
            node = Call(map_leaves(node.body, fn, ctx + ("call",)))
        elif isinstance(node, Vmap):
            node = Vmap(map_leaves(node.body, fn, ctx + ("vmap",)), node.n)
        elif isinstance(node, Scan):
            node = Scan(map_leaves(node.body, fn, ctx + ("scan",)), node.n, node.xs)
        elif isinstance(node, Switch):
            index = fn(node.index, ctx + ("index",)) if isinstance(node.index, Leaf) else node.index
            branches = tuple(map_leaves(b, fn, ctx + ("switch",)) for b in node.branches)
            node = Switch(branches, index, node.cond)
        items.append((addr, node))
    return Block(tuple(items))


# ---------------------------------------------------------------------------------------
# Hypothesis strategies


def _floats(lo, hi):
    # a coarse grid keeps shrinking readable and values exactly representable
    return st.integers(0, 8).map(lambda i: round(lo + (hi - lo) * i / 8, 4))


#: parameter values near the edges of their supports (drawn with ``extreme=True``)
EXTREMES = {
    "loc": (-25.0, -3.0, 0.0, 3.0, 25.0),
    "pos": (0.02, 0.2, 1.0, 5.0, 40.0),
    "conc": (0.3, 0.7, 1.0, 10.0, 60.0),
    "prob": (1e-3, 0.02, 0.5, 0.98, 0.999),
    "logits": (-12.0, -3.0, 0.0, 3.0, 12.0),
}

#: set by the tests: whether :func:`leaves` may draw edge values (see ``EXTREMES``)
EXTREME = {"on": False}


@st.composite
def leaves(draw, family=None, batch=None, allow_vector=True):
    family = family or draw(st.sampled_from(WEIGHTED_FAMILIES))
    kinds, _, event = FAMILIES[family]
    if batch is None:
        batch = draw(st.sampled_from(((), (2,), (3,)))) if allow_vector else ()
    k = draw(st.integers(2, 3)) if event else None
    shape = tuple(batch) + ((k,) if event else ())

    def arr(elem):
        n = int(np.prod(shape)) if shape else 1
        vals = [draw(elem) for _ in range(n)]
        a = np.asarray(vals, dtype=float).reshape(shape)
        return _tuplify(a)

    params: list = []
    if family == "uniform":
        lo = draw(_floats(-1.0, 0.5))
        params = [_bcast(lo, shape), _bcast(lo + draw(_floats(0.5, 2.0)), shape)]
    elif family == "binomial":
        params = [draw(st.integers(1, 3)), arr(_floats(0.15, 0.85))]
    elif EXTREME["on"] and draw(st.booleans()):
        for kind in kinds:
            params.append(arr(st.sampled_from(EXTREMES[kind])))
    else:
        for kind in kinds:
            if kind == "loc":
                params.append(arr(_floats(-1.5, 1.5)))
            elif kind == "pos":
                params.append(arr(_floats(0.5, 2.0)))
            elif kind == "conc":
                params.append(arr(_floats(1.5, 4.0)))
            elif kind == "prob":
                params.append(arr(_floats(0.15, 0.85)))
            elif kind == "logits":
                params.append(arr(_floats(-1.0, 1.0)))
    return Leaf(family, tuple(params), tuple(batch), depends=draw(st.booleans()))


def _tuplify(a: np.ndarray):
    return float(a) if a.ndim == 0 else tuple(_tuplify(x) for x in a)


def _bcast(x: float, shape):
    return _tuplify(np.broadcast_to(np.asarray(x, float), shape))


@dataclass
class _Budget:
    leaves: int
    names: itertools.count = field(default_factory=itertools.count)

    def name(self) -> str:
        return f"a{next(self.names)}"


@st.composite
def _block(draw, budget: _Budget, depth: int, min_items: int = 1):
    n_items = draw(st.integers(min_items, 3))
    items = []
    for _ in range(n_items):
        if budget.leaves <= 0 and items:
            break
        kinds = ["leaf", "leaf"]
        if depth > 0 and budget.leaves >= 2:
            kinds += ["call", "vmap", "scan", "switch"]
        kind = draw(st.sampled_from(kinds))
        addr = budget.name()
        if kind == "leaf":
            budget.leaves -= 1
            items.append((addr, draw(leaves())))
        elif kind == "call":
            items.append((addr, Call(draw(_block(budget, depth - 1)))))
        elif kind == "vmap":
            items.append((addr, Vmap(draw(_block(budget, depth - 1)), draw(st.integers(2, 3)))))
        elif kind == "scan":
            body = draw(_block(budget, depth - 1))
            items.append((addr, Scan(body, draw(st.integers(2, 3)), xs=draw(st.booleans()))))
        else:
            n = draw(st.integers(2, 3))
            cond = n == 2 and draw(st.booleans())
            branches = [draw(_block(budget, depth - 1)) for _ in range(n)]
            if draw(st.booleans()):
                branches = draw(_share_first_address(branches))
            if draw(st.booleans()):  # a random index, made just before at f"{addr}i"
                if cond:
                    index = Leaf("flip", (draw(_floats(0.2, 0.8)),), depends=draw(st.booleans()))
                else:
                    logits = tuple(draw(_floats(-1.0, 1.0)) for _ in range(n))
                    index = Leaf("categorical", (logits,), depends=draw(st.booleans()))
            else:
                index = draw(st.booleans()) if cond else draw(st.integers(0, n - 1))
            items.append((addr, Switch(tuple(branches), index, cond)))
    return Block(tuple(items))


#: families with scalar events, by the dtype of their values (a choice shared by two
#: switch branches must have the same shape and dtype in both)
FLOAT_VALUED = ("normal", "beta", "gamma", "uniform", "exponential", "laplace", "geometric")
INT_VALUED = ("flip", "bernoulli", "categorical", "poisson", "binomial")


@st.composite
def _share_first_address(draw, branches: list):
    """Branches whose first choices share one address: branch 0's first item is (or is
    made) a leaf, and every other branch starts with a leaf at that address, of the same
    shape and dtype but possibly another family."""
    addr0, node0 = branches[0].items[0]
    if not isinstance(node0, Leaf) or node0.family in VECTOR_VALUED:
        node0 = draw(leaves(family=draw(st.sampled_from(FLOAT_VALUED + INT_VALUED))))
        addr0 = addr0 + "s"
        branches[0] = Block(((addr0, node0),) + branches[0].items)
    kind = FLOAT_VALUED if node0.family in FLOAT_VALUED else INT_VALUED
    out = [Block(((addr0, replace(node0, shared=True)),) + branches[0].items[1:])]
    for b in branches[1:]:
        other = draw(leaves(family=draw(st.sampled_from(kind)), batch=node0.batch))
        out.append(Block(((addr0, replace(other, shared=True)),) + b.items))
    return out


@st.composite
def models(draw, max_leaves: int = 5, depth: int = 2):
    """Random model specs (a :class:`Block`) with at most ``max_leaves`` leaves."""
    return draw(_block(_Budget(draw(st.integers(1, max_leaves))), depth))


@st.composite
def with_guide_choices(draw, block: Block, max_continuation: int = 3):
    """The spec with some leaves observed (never a random switch index) and a strategy for
    each latent leaf, among those that apply in its context. At most ``max_continuation``
    leaves get ENUM or MVD (their cost multiplies)."""
    left = [max_continuation]

    def choose(leaf: Leaf, ctx):
        observed = False if ("index" in ctx or leaf.shared) else draw(st.booleans())
        options = strategies_for(leaf.family, "scan" in ctx)
        if left[0] <= 0:
            options = tuple(o for o in options if not needs_continuation(o))
        strategy = draw(st.sampled_from(options))
        if needs_continuation(strategy) and not observed:
            left[0] -= 1
        return replace(leaf, observed=observed, strategy=strategy)

    return map_leaves(block, choose)


def observations(block: Block, choices) -> dict:
    """The observed leaves' values, taken from a model trace's ``choices``."""
    out: dict = {}
    for path, leaf, _ in leaf_paths(block):
        if leaf.observed and choices.has(path):
            d = out
            for p in path[:-1]:
                d = d.setdefault(p, {})
            d[path[-1]] = choices[path]
    return out


# ---------------------------------------------------------------------------------------
# A reference log density: the spec walked in plain Python, one leaf at a time


def reference_logpdf(block: Block, choices, theta, only=None) -> float:
    """``sum`` of ``gv.<family>.logpdf(value, *params)`` over the leaves of the spec at the
    values in ``choices`` (a choice map with concrete values), walking ``gv.vmap`` copies
    and ``gv.scan`` steps one at a time and only the taken branch of each switch: an
    oracle for ``score`` that shares no code with genvi's handlers and combinators. With
    ``only`` (a set of leaf addresses), the sum over those leaves only (every leaf's value
    still moves the state)."""
    total = [0.0]

    def value_at(path, ix):
        v = np.asarray(choices[path])
        return v[ix] if ix else v

    def walk(b: Block, prefix, ix, s):
        for addr, node in b.items:
            path = prefix + (addr,)
            if isinstance(node, Leaf):
                v = value_at(path, ix)
                if only is None or path in only:
                    lp = getattr(gv, node.family).logpdf(v, *_params(node, s))
                    total[0] += float(lp)
                s = _update(s, v)
            elif isinstance(node, Call):
                s = _update(s, walk(node.body, path, ix, s))
            elif isinstance(node, Vmap):
                xs = jnp.linspace(-0.5, 0.5, node.n, dtype=jnp.float32)
                outs = [
                    walk(node.body, path, ix + (i,), _f32(jnp.tanh(s + xs[i])))
                    for i in range(node.n)
                ]
                s = _update(s, jnp.stack(outs))
            elif isinstance(node, Scan):
                c = s
                xs = jnp.linspace(-0.5, 0.5, node.n, dtype=jnp.float32)
                for t in range(node.n):
                    c_in = _f32(jnp.tanh(c + xs[t])) if node.xs else c
                    c = walk(node.body, path, ix + (t,), c_in)
                s = _update(s, c)
            else:
                if isinstance(node.index, Leaf):
                    ipath = prefix + (f"{addr}i",)
                    iv = value_at(ipath, ix)
                    if only is None or ipath in only:
                        total[0] += float(
                            getattr(gv, node.index.family).logpdf(iv, *_params(node.index, s))
                        )
                    i = int(iv)
                    taken = (0 if i else 1) if node.cond else i
                else:
                    taken = _taken(node)
                s = _update(s, walk(node.branches[taken], path, ix, s))
        return s

    walk(block, (), (), _f32(jnp.tanh(theta)))
    return total[0]


# ---------------------------------------------------------------------------------------
# Valid values without sampling (compiling a sampler costs seconds for some families)


#: families whose values have an event axis (the last axis of their parameters)
VECTOR_VALUED = ("mv_normal_diag", "dirichlet")


def _default_value(leaf: Leaf, lead: tuple):
    if leaf.family in VECTOR_VALUED:
        k = int(np.shape(leaf.params[0])[-1])
        shape = lead + tuple(leaf.batch) + (k,)
    else:
        shape = lead + tuple(leaf.batch)
    f = leaf.family
    if f == "uniform":
        lo, hi = np.asarray(leaf.params[0]), np.asarray(leaf.params[1])
        return jnp.broadcast_to(jnp.asarray((lo + hi) / 2, jnp.float32), shape)
    if f == "dirichlet":
        return jnp.full(shape, 1.0 / shape[-1], jnp.float32)
    ints = {"flip": 1, "bernoulli": 0, "categorical": 1, "poisson": 1, "binomial": 1}
    if f in ints:
        return jnp.full(shape, ints[f], jnp.int32)
    floats = {"beta": 0.5, "gamma": 1.0, "exponential": 1.0, "geometric": 1.0}
    return jnp.full(shape, floats.get(f, 0.0), jnp.float32)


def default_choices(block: Block, observed_only: bool = False) -> dict:
    """A complete, valid choice map of the spec (a nested dict) built without sampling:
    a fixed value inside each family's support, with the leading axes of enclosing
    ``gv.vmap``/``gv.scan`` nodes. A random switch index takes value 0 (branch 0, or the
    false branch of a cond); the leaves of every branch are given, as a traced index
    needs. With ``observed_only``, only the observed leaves (the observations)."""
    out: dict = {}

    def put(path, value):
        d = out
        for p in path[:-1]:
            d = d.setdefault(p, {})
        d[path[-1]] = value

    def walk(b: Block, prefix, lead):
        for addr, node in b.items:
            path = prefix + (addr,)
            if isinstance(node, Leaf):
                if node.observed or not observed_only:
                    put(path, _default_value(node, lead))
            elif isinstance(node, Call):
                walk(node.body, path, lead)
            elif isinstance(node, (Vmap, Scan)):
                walk(node.body, path, lead + (node.n,))
            else:
                if isinstance(node.index, Leaf):
                    if not observed_only:
                        put(prefix + (f"{addr}i",), jnp.zeros(lead, jnp.int32))
                    # the branch taken at index 0 last: its value wins at a shared address
                    taken = 1 if node.cond else 0
                    order = [i for i in range(len(node.branches)) if i != taken] + [taken]
                    for i in order:
                        walk(node.branches[i], path, lead)
                else:
                    walk(node.branches[_taken(node)], path, lead)

    walk(block, (), ())
    return out


def count_elements(choices) -> int:
    return int(sum(np.size(choices[a]) for a in choices.addresses()))
