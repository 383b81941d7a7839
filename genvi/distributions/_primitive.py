"""The ``sample`` primitive: every random choice goes through it.

``sample_p`` takes a PRNG key, the flattened parameters of a distribution and the
strategy's own operands (a baseline, say); its static parameters are the
:class:`~genvi.distributions._family.SiteSpec` (family and parameter structure), the
:class:`~genvi.distributions._strategies.Strategy` and the address. Outside an
expectation it simply samples (and differentiates pathwise under ``jax.grad``); inside
:func:`genvi.expectation` the ADEV interpreter finds each ``sample_p`` in the staged
program and applies the strategy's rule.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.core import ShapedArray
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from genvi.distributions._family import BatchedSite

sample_p = Primitive("genvi_sample")
_NOT_MAPPED = getattr(batching, "not_mapped", None)


def sample_bind(key, flat, operands, *, site, strategy, addr):
    """Bind :data:`sample_p` on ``key``, parameters ``flat`` and strategy ``operands``."""
    return sample_p.bind(
        key, *flat, *operands, site=site, strategy=strategy, addr=addr, n_ops=len(operands)
    )


def _split(args, n_ops):
    key, rest = args[0], args[1:]
    return key, tuple(rest[: len(rest) - n_ops]), tuple(rest[len(rest) - n_ops :])


def _impl(*args, site, strategy, addr, n_ops):
    key, flat, _ = _split(args, n_ops)
    value = site.sample(key, flat)
    if strategy.float_value:  # a straight-through strategy: the value carries a tangent
        value = value.astype(jnp.result_type(float))
    return value


def _abstract_eval(*avals, site, strategy, addr, n_ops):
    structs = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in avals]
    out = jax.eval_shape(
        lambda *a: _impl(*a, site=site, strategy=strategy, addr=addr, n_ops=n_ops), *structs
    )
    return ShapedArray(out.shape, out.dtype)


def _jvp(primals, tangents, *, site, strategy, addr, n_ops):
    # Outside an expectation, differentiating a sample is pathwise (zero for discrete).
    key, flat, _ = _split(primals, n_ops)
    _, dflat, _ = _split(tangents, n_ops)
    dflat = [ad.instantiate_zeros(t) for t in dflat]
    if strategy.float_value:  # a discrete value as a float: no pathwise derivative
        value = _impl(*primals, site=site, strategy=strategy, addr=addr, n_ops=n_ops)
        return value, jnp.zeros_like(value)
    return jax.jvp(lambda *f: site.sample(key, f), tuple(flat), tuple(dflat))


def _batch(args, dims, *, site, strategy, addr, n_ops):
    size = next(a.shape[d] for a, d in zip(args, dims, strict=True) if d is not _NOT_MAPPED)
    moved = [
        a if d is _NOT_MAPPED else jnp.moveaxis(a, d, 0) for a, d in zip(args, dims, strict=True)
    ]
    n_site = len(args) - n_ops
    site_dims = tuple(None if d is _NOT_MAPPED else 0 for d in dims[:n_site])
    # Strategy operands (a per-particle baseline) line up with the batched site's per-row
    # log densities: every one gets this level's leading axis, broadcast where it is not
    # mapped, so that under nested vmaps its leading axes are the site's batch axes in
    # order (an operand mapped only by an outer vmap must not align with an inner axis).
    ops = [
        jnp.broadcast_to(a, (size,) + jnp.shape(a)) if d is _NOT_MAPPED else m
        for a, d, m in zip(args[n_site:], dims[n_site:], moved[n_site:], strict=True)
    ]
    new_site = BatchedSite(site, site_dims, size)
    out = sample_p.bind(
        *moved[:n_site], *ops, site=new_site, strategy=strategy, addr=addr, n_ops=n_ops
    )
    return out, 0


@functools.lru_cache(maxsize=1024)
def _compiled_impl(site, strategy, addr, n_ops):
    return jax.jit(functools.partial(_impl, site=site, strategy=strategy, addr=addr, n_ops=n_ops))


def _eager_impl(*args, site, strategy, addr, n_ops):
    # Eager sampling runs compiled: op-by-op dispatch of a sampler is many times slower.
    return _compiled_impl(site, strategy, addr, n_ops)(*args)


sample_p.def_impl(_eager_impl)
sample_p.def_abstract_eval(_abstract_eval)
mlir.register_lowering(sample_p, mlir.lower_fun(_impl, multiple_results=False))
ad.primitive_jvps[sample_p] = _jvp
batching.primitive_batchers[sample_p] = _batch
