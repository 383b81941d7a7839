"""``gv.vmap``: independent copies of a generative function, vectorized."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from genvi.core._choicemap import ChoiceMap, choice_map, format_address
from genvi.core._errors import ChoiceTypeError
from genvi.core._genfn import GenerativeFunction
from genvi.core._keys import check_key
from genvi.core._trace import Trace


def _axes(in_axes, n_args):
    if isinstance(in_axes, (list, tuple)):
        if len(in_axes) != n_args:
            raise ValueError(f"in_axes has {len(in_axes)} entries for {n_args} arguments")
        return tuple(in_axes)
    return (in_axes,) * n_args


def _axis_size(args, axes, name):
    # Each entry of ``axes`` is, as in ``jax.vmap``, an int, None, or a pytree prefix of its
    # argument holding ints and Nones (``{"loc": 0, "scale": None}``).
    sizes = set()

    def add(ax, sub):
        if ax is None:
            return
        for leaf in jax.tree_util.tree_leaves(sub):
            shape = jnp.shape(leaf)
            if not -len(shape) <= ax < len(shape):
                raise ChoiceTypeError(
                    f"vmap({name}): in_axes={ax} but an argument has shape {shape}"
                )
            sizes.add(shape[ax])

    for a, ax in zip(args, axes, strict=True):
        jax.tree_util.tree_map(add, ax, a, is_leaf=lambda x: x is None)
    if not sizes:
        raise ValueError(f"vmap({name}): no argument is mapped (every in_axes is None)")
    if len(sizes) > 1:
        raise ChoiceTypeError(
            f"vmap({name}): mapped arguments disagree on the axis size: {sorted(sizes)}"
        )
    return sizes.pop()


class VmapGF(GenerativeFunction):
    """``n`` independent copies of ``gf``, one per slice of the mapped arguments.

    Each address of ``gf`` gains a leading axis of size ``n``; the score is the sum of the
    copies' scores. Keys are split, so the copies are independent.
    """

    def __init__(self, gf: GenerativeFunction, in_axes: Any = 0):
        self.gf = gf
        self.in_axes = in_axes
        self.name = f"vmap({gf.name})"

    def _prep(self, args):
        axes = _axes(self.in_axes, len(args))
        return axes, _axis_size(args, axes, self.gf.name)

    def simulate(self, key, *args) -> Trace:
        check_key(key, f"{self.name}.simulate", single=True)
        axes, n = self._prep(args)
        keys = jax.random.split(key, n)
        seen: dict = {}

        def one(k, *a):
            tr = self.gf.simulate(k, *a)
            seen.update(tr.choices.origins())
            return tr

        tr = jax.vmap(one, in_axes=(0, *axes))(keys, *args)
        return Trace(tr.choices.with_origins(seen), jnp.sum(tr.score), tr.retval, args)

    def _check_leading(self, cm: ChoiceMap, n: int):
        for addr in cm.addresses():
            v = cm[addr] if addr else cm.value
            if jnp.ndim(v) < 1 or jnp.shape(v)[0] != n:
                raise ChoiceTypeError(
                    f"{self.name}: the value at address {format_address(addr) if addr else '(root)'} "
                    f"has shape {jnp.shape(v)}, but this vmap makes {n} copies, so it needs a "
                    f"leading axis of size {n}"
                )

    def assess(self, choices, *args):
        axes, n = self._prep(args)
        cm = choice_map(choices)
        self._check_leading(cm, n)
        origins = cm.origins()
        logp, retval = jax.vmap(
            lambda c, *a: self.gf.assess(c.with_origins(origins), *a), in_axes=(0, *axes)
        )(cm, *args)
        return jnp.sum(logp), retval

    @property
    def has_estimated_density(self):
        return self.gf.has_estimated_density

    def estimate_logpdf(self, key, choices, *args):
        if not self.gf.has_estimated_density:
            return self.assess(choices, *args)
        axes, n = self._prep(args)
        cm = choice_map(choices)
        self._check_leading(cm, n)
        origins = cm.origins()
        logp, retval = jax.vmap(
            lambda k, c, *a: self.gf.estimate_logpdf(k, c.with_origins(origins), *a),
            in_axes=(0, 0, *axes),
        )(jax.random.split(key, n), cm, *args)
        return jnp.sum(logp), retval

    def importance(self, key, constraints, *args):
        check_key(key, f"{self.name}.importance", single=True)
        axes, n = self._prep(args)
        cm = choice_map(constraints)
        self._check_leading(cm, n)
        keys = jax.random.split(key, n)
        origins = cm.origins()
        seen: dict = {}

        def one(k, c, *a):
            tr, w = self.gf.importance(k, c.with_origins(origins), *a)
            seen.update(tr.choices.origins())
            return tr, w

        tr, w = jax.vmap(one, in_axes=(0, 0, *axes))(keys, cm, *args)
        return Trace(tr.choices.with_origins(seen), jnp.sum(tr.score), tr.retval, args), jnp.sum(w)


def vmap(gf: GenerativeFunction, in_axes: Any = 0) -> VmapGF:
    """Vectorize a generative function: independent copies along ``in_axes`` (as ``jax.vmap``).

    Examples:
        >>> @gv.gen
        ... def point(mu):
        ...     return gv.normal(mu, 1.0) @ "x"
        >>> points = gv.vmap(point, in_axes=0)
        >>> tr = points.simulate(jax.random.key(0), jnp.zeros(10))
        >>> tr.choices["x"].shape
        (10,)
    """
    return VmapGF(gf, in_axes)
