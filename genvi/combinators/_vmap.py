"""``gv.vmap``: independent copies of a generative function, vectorized; with
``subsample=N``, copies that stand for a uniform minibatch of ``N`` data points."""

from __future__ import annotations

import operator
from typing import Any

import jax
import jax.numpy as jnp

from genvi.core._choicemap import ChoiceMap, choice_map, format_address
from genvi.core._derive import row_keys
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
    copies' scores. Each copy gets its own key (:func:`genvi.core._derive.row_keys`), so
    the copies are independent. With ``subsample`` set to ``N``, the score, the density
    of ``assess`` and ``estimate_logpdf`` and the importance weight are that sum times
    ``N / n`` (see :func:`vmap`).
    """

    def __init__(self, gf: GenerativeFunction, in_axes: Any = 0, subsample: int | None = None):
        self.gf = gf
        self.in_axes = in_axes
        self.subsample = _check_subsample(subsample, gf.name)
        self.name = f"vmap({gf.name})"

    def _prep(self, args):
        axes = _axes(self.in_axes, len(args))
        return axes, _axis_size(args, axes, self.gf.name)

    def scale(self, n: int) -> float:
        """The factor of the copies' summed log densities for ``n`` copies: ``N / n``
        with ``subsample=N``, else 1. Raises ``ValueError`` when ``n > N``."""
        if self.subsample is None:
            return 1.0
        if n > self.subsample:
            raise ValueError(
                f"{self.name}: a minibatch of {n} copies, but subsample={self.subsample} says "
                f"they are a subsample of {self.subsample} data points; a uniform subsample "
                f"without replacement has at most {self.subsample} of them. Pass the number "
                "of data points in the whole data set as subsample="
            )
        return self.subsample / n

    def _sum(self, x, n):
        s = self.scale(n)
        return jnp.sum(x) if s == 1.0 else s * jnp.sum(x)

    def simulate(self, key, *args) -> Trace:
        check_key(key, f"{self.name}.simulate", single=True)
        axes, n = self._prep(args)
        keys = row_keys(key, n)
        seen: dict = {}

        def one(k, *a):
            tr = self.gf.simulate(k, *a)
            seen.update(tr.choices.origins())
            return tr

        tr = jax.vmap(one, in_axes=(0, *axes))(keys, *args)
        return Trace(tr.choices.with_origins(seen), self._sum(tr.score, n), tr.retval, args)

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
        return self._sum(logp, n), retval

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
        )(row_keys(key, n), cm, *args)
        return self._sum(logp, n), retval

    def importance(self, key, constraints, *args):
        check_key(key, f"{self.name}.importance", single=True)
        axes, n = self._prep(args)
        cm = choice_map(constraints)
        self._check_leading(cm, n)
        keys = row_keys(key, n)
        origins = cm.origins()
        seen: dict = {}

        def one(k, c, *a):
            tr, w = self.gf.importance(k, c.with_origins(origins), *a)
            seen.update(tr.choices.origins())
            return tr, w

        tr, w = jax.vmap(one, in_axes=(0, 0, *axes))(keys, cm, *args)
        score = self._sum(tr.score, n)
        return Trace(tr.choices.with_origins(seen), score, tr.retval, args), self._sum(w, n)


def _check_subsample(subsample, name):
    if subsample is None:
        return None
    try:
        n = operator.index(subsample)  # ints and numpy ints; not floats, not bools
    except TypeError:
        n = None
    if n is None or isinstance(subsample, bool) or n < 1:
        raise ValueError(
            f"vmap({name}): subsample must be the number of data points in the whole data "
            f"set, an int >= 1, got {subsample!r}"
        )
    return int(n)


def vmap(gf: GenerativeFunction, in_axes: Any = 0, *, subsample: int | None = None) -> VmapGF:
    """Vectorize a generative function: independent copies along ``in_axes`` (as ``jax.vmap``).

    Each address of ``gf`` gains a leading axis of size ``n`` (the mapped axis), and the
    log density is the sum of the copies' log densities.

    **Data subsampling.** ``subsample=N`` says that the ``n`` copies are a uniform random
    subsample (without replacement) of ``N`` data points, such as a minibatch drawn by
    :func:`genvi.fit` with ``data=`` and ``batch_size=``. The copies' summed log density
    is then scaled by ``N / n`` (``n`` read from the mapped axis when the function is
    traced; ``n > N`` raises ``ValueError``): in the trace's ``score``, in ``assess`` and
    ``estimate_logpdf``, and in the weight of ``importance``. For a sum over the data,
    ``E_B[(N / n) sum_{i in B} f_i] = sum_{i=1}^N f_i`` when ``B`` is a uniform subset of
    size ``n``, so an ELBO whose per-datum terms are all scaled this way is an unbiased
    estimate of the full-data ELBO, and its gradient (from any strategies: REPARAM,
    REINFORCE, ENUM, MVD) of the full-data gradient. These are the semantics of NumPyro's
    and Pyro's ``plate(..., subsample_size=n)``: the whole per-datum contribution is
    scaled, the guide's as well as the model's.

    A model with *local* latents inside the subsampled vmap needs a guide whose matching
    part is ``gv.vmap(..., subsample=N)`` too: otherwise ``log q`` of the local latents
    is not scaled, the local entropy terms are weighted ``n / N`` times too little and the
    minibatch ELBO is a biased estimate (of no bound). Global latents (outside the vmap)
    need nothing. Non-linear objectives of the log weight (``iwae``, ``vimco``, ``renyi``)
    are not unbiased under subsampling, as in every PPL: use the ELBO.

    Examples:
        >>> @gv.gen
        ... def point(mu):
        ...     return gv.normal(mu, 1.0) @ "x"
        >>> points = gv.vmap(point, in_axes=0)
        >>> tr = points.simulate(jax.random.key(0), jnp.zeros(10))
        >>> tr.choices["x"].shape
        (10,)

        A minibatch of 10 points standing for 1000: the log density is scaled by 100.

        >>> batch = gv.vmap(point, in_axes=0, subsample=1000)
        >>> lp_batch, _ = batch.assess({"x": jnp.zeros(10)}, jnp.zeros(10))
        >>> lp_plain, _ = points.assess({"x": jnp.zeros(10)}, jnp.zeros(10))
        >>> bool(jnp.allclose(lp_batch, 100 * lp_plain))
        True
    """
    return VmapGF(gf, in_axes, subsample)
