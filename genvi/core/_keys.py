"""Checking PRNG keys at genvi's entry points.

genvi takes explicit JAX keys: a new-style typed key (``jax.random.key(0)``, dtype
``key<impl>``) or a legacy raw key (``jax.random.PRNGKey(0)``, ``uint32`` of the default
implementation's key shape, ``(2,)`` for threefry). Anything else (``None``, a number, a
string, an integer array that is not key data) would otherwise fail deep inside JAX
with a message about ``genvi_sample`` or an empty ``AssertionError``.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from genvi.core._errors import ChoiceTypeError

_FIX = "pass a PRNG key first, e.g. jax.random.key(0) (split it for independent draws)"


@functools.lru_cache(maxsize=8)
def _raw_key_shape(impl_name: str) -> tuple[int, ...]:
    """The shape of a legacy raw key of JAX's default implementation (cached per
    implementation name: the cache only ever holds the same answer for the same name)."""
    del impl_name  # the cache key; the answer is read from JAX itself
    return tuple(jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0))).shape)


def _describe(key) -> str:
    if key is None:
        return "None"
    shape, dtype = getattr(key, "shape", None), getattr(key, "dtype", None)
    if shape is not None and dtype is not None:
        return f"an array of dtype {dtype} and shape {tuple(shape)}"
    text = repr(key)
    text = text if len(text) <= 40 else text[:37] + "..."
    return f"{type(key).__name__} {text}"


def check_key(key, where: str, *, single: bool = False):
    """Return ``key`` if it is a PRNG key, else raise :class:`genvi.ChoiceTypeError`.

    Accepted: a typed key array (``jax.random.key``) of any shape, and a legacy raw key
    (``jax.random.PRNGKey``: ``uint32`` whose trailing shape is the default
    implementation's, ``(2,)`` for threefry) with any leading batch shape; concrete,
    numpy or traced. With ``single=True`` only one key is accepted (a scalar typed key,
    or raw key data without batch axes), as a sampler needs.

    ``where`` names the caller in the message (``"normal.simulate at address 'z'"``).

    Examples:
        >>> from genvi.core._keys import check_key
        >>> check_key(jax.random.key(0), "f").shape
        ()
        >>> check_key(None, "gv.normal.sample")
        Traceback (most recent call last):
        ...
        genvi.core._errors.ChoiceTypeError: gv.normal.sample: expected a PRNG key, got None; pass a PRNG key first, e.g. jax.random.key(0) (split it for independent draws)
    """
    dtype = getattr(key, "dtype", None)
    shape = getattr(key, "shape", None)
    if dtype is not None and shape is not None and isinstance(key, (jax.Array, np.ndarray)):
        shape = tuple(shape)
        if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
            if single and shape != ():
                raise ChoiceTypeError(
                    f"{where}: expected one PRNG key, got a batch of keys of shape {shape}; "
                    "draw one value per key with jax.vmap over the keys, or give one key"
                )
            return key
        raw = _raw_key_shape(str(getattr(jax.config, "jax_default_prng_impl", "")))
        if dtype == np.uint32 and shape[len(shape) - len(raw) :] == raw:
            if single and len(shape) != len(raw):
                raise ChoiceTypeError(
                    f"{where}: expected one PRNG key, got a batch of raw keys of shape "
                    f"{shape}; draw one value per key with jax.vmap over the keys, "
                    "or give one key"
                )
            return key
        hint = ""
        if np.issubdtype(dtype, np.integer) and shape[-1:] == raw[-1:]:
            hint = (
                " (raw key data must have dtype uint32; wrap an integer seed as "
                "jax.random.key(seed) instead)"
            )
        raise ChoiceTypeError(f"{where}: expected a PRNG key, got {_describe(key)}{hint}; {_FIX}")
    raise ChoiceTypeError(f"{where}: expected a PRNG key, got {_describe(key)}; {_FIX}")
