"""Deriving keys without a PRNG call: the key of an address, and one key per particle.

genvi derives many keys: one per address visited (a choice's key depends on where it is,
not on the order of visits), one per particle of a multi-particle objective, one per
copy of ``gv.vmap`` and per step of ``gv.scan``. JAX's ``fold_in`` and ``split`` run the
threefry hash for each: on CPU every call compiles to a rolled XLA loop, so an IWAE
with 64 particles compiled three PRNG loops where the same objective written by hand
with one key compiles one (``benchmarks/iwae_compile.py``), and a per-point REINFORCE
step paid a hash per point and address.

For threefry keys (JAX's default), genvi derives them instead by elementwise integer
arithmetic, which XLA fuses into the surrounding computation:

- ``mix``: a four-round Feistel network over the key's two 32-bit words, whose round
  function is MurmurHash3's 32-bit finalizer. A Feistel network is a bijection whatever
  its round function, so distinct keys stay distinct; the rounds spread every input bit
  over both words.
- the key of tag ``t`` (an address's 31-bit hash, or a reserved stream): ``mix(key)``
  XOR ``(t, fmix32(t ^ c))``. The first word of the constant is ``t`` itself, so two
  tags of one key never give the same key (the handler already makes the tags of sibling
  addresses distinct, rehashing a collision with a salt).
- the keys of ``n`` particles (``rows``): ``mix(key)`` XOR ``(0xC0000000, fmix32(i))``,
  ``i < n``. ``fmix32`` is a bijection of 32-bit words, so the rows are distinct; the
  high bits of the first word are no address hash's (those are below 2^31) and not a
  reserved stream's (the model's ``0x80000001``), so a row key is never an address or
  stream key of the same parent.

The derived keys are then used as threefry keys: threefry is a keyed hash designed so
that distinct keys give independent streams (JAX's own seeds ``key(0)``, ``key(1)``, ...
are keys that differ in one bit); these differ in pseudo-random bits. Derivation is pure
and elementwise, so a key gets the same derived keys under ``jax.vmap``, ``jit`` or in a
Python loop, on any device and whatever the sharding.

Keys of another implementation (``rbg``, ``unsafe_rbg``, a custom one) are derived with
JAX's ``fold_in`` and ``split``, as before.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

_THREEFRY = "threefry2x32"
_M32 = 0xFFFFFFFF  # the largest tag
#: round constants of the Feistel network (the first hexadecimal digits of pi)
_ROUNDS = (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344)
#: the second word of a tag's constant is fmix32(tag ^ _TAG_SALT)
_TAG_SALT = 0x5BD1E995
#: the first word of every particle row's constant
_ROW_WORD = 0xC0000000


def _fmix32(x):
    """MurmurHash3's 32-bit finalizer on a ``uint32`` array, JAX's or numpy's (a
    bijection of 32-bit words; the products wrap modulo 2^32)."""
    x = x ^ (x >> 16)
    x = x * np.uint32(0x85EBCA6B)
    x = x ^ (x >> 13)
    x = x * np.uint32(0xC2B2AE35)
    return x ^ (x >> 16)


def _mix(a, b):
    for c in _ROUNDS:
        a, b = b, a ^ _fmix32(b + np.uint32(c))
    return a, b


def _is_threefry(key) -> tuple[bool, bool]:
    """``(threefry, typed)`` for a key genvi accepts (see :func:`genvi.core._keys.check_key`)."""
    dtype = getattr(key, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        return str(jax.random.key_impl(key)) == _THREEFRY, True
    default = str(getattr(jax.config, "jax_default_prng_impl", ""))
    return default == _THREEFRY and jnp.shape(key)[-1:] == (2,), False


def _words(key, typed: bool):
    data = jax.random.key_data(key) if typed else jnp.asarray(key, jnp.uint32)
    return data[..., 0], data[..., 1]


def _wrap(a, b, typed: bool, like):
    data = jnp.stack([a, b], axis=-1)
    return jax.random.wrap_key_data(data, impl=jax.random.key_impl(like)) if typed else data


def derive_key(key, tag: int):
    """The key of stream ``tag`` (a Python int below 2^32) of ``key``: the key of an
    address (``tag`` its hash) or of a reserved stream. Distinct tags give distinct keys
    of one ``key``; the result is a typed key for a typed key, raw key data for raw.

    Examples:
        >>> from genvi.core._derive import derive_key
        >>> key = jax.random.key(0)
        >>> k1, k2 = derive_key(key, 1), derive_key(key, 2)
        >>> bool((jax.random.key_data(k1) != jax.random.key_data(k2)).any())
        True
        >>> bool((jax.random.key_data(derive_key(key, 1)) == jax.random.key_data(k1)).all())
        True
    """
    tag = int(tag)
    if not 0 <= tag <= _M32:
        raise ValueError(f"derive_key: the tag must be a 32-bit unsigned int, got {tag}")
    threefry, typed = _is_threefry(key)
    if not threefry:
        return jax.random.fold_in(key, tag)
    a, b = _mix(*_words(key, typed))
    c0, c1 = np.uint32(tag), _fmix32(np.array([tag ^ _TAG_SALT], np.uint32))[0]
    return _wrap(a ^ c0, b ^ c1, typed, key)


def row_keys(key, n: int):
    """``n`` independent keys made from one ``key`` (shape ``(n,)`` for a single key),
    one per particle, copy or step: what ``jax.random.split(key, n)`` gives, by
    elementwise arithmetic instead of a PRNG call for threefry keys.

    Examples:
        >>> from genvi.core._derive import row_keys
        >>> keys = row_keys(jax.random.key(0), 4)
        >>> keys.shape
        (4,)
        >>> len({tuple(map(int, k)) for k in jax.random.key_data(keys)})   # all distinct
        4
    """
    threefry, typed = _is_threefry(key)
    if not threefry:
        return jax.random.split(key, n)
    a, b = _mix(*_words(key, typed))
    i = jax.lax.iota(np.uint32, n).reshape((n,) + (1,) * jnp.ndim(a))
    rows_a = jnp.broadcast_to(a ^ np.uint32(_ROW_WORD), (n,) + jnp.shape(a))
    return _wrap(rows_a, b ^ _fmix32(i), typed, key)


__all__ = ["derive_key", "row_keys"]
