"""Keys derived by elementwise arithmetic (genvi/core/_derive.py): distinct where they
must be, deterministic, the same under vmap as in a loop, falling back to JAX's own
derivation for other implementations, and streams that look independent."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import genvi as gv
from genvi.core._derive import _mix, derive_key, row_keys
from genvi.core._handlers import address_key
from genvi.objectives._common import _MODEL_STREAM, model_key


def _data(k):
    return np.asarray(jax.random.key_data(k))


def test_mix_is_a_bijection_on_a_block_of_keys():
    # 2^16 keys differing in one word, and 2^16 differing in the other: no two collide.
    i = jnp.arange(2**16, dtype=jnp.uint32)
    z = jnp.zeros_like(i)
    for a, b in ((i, z), (z, i), (i, i)):
        ma, mb = _mix(a, b)
        words = np.asarray(ma).astype(np.uint64) << np.uint64(32) | np.asarray(mb)
        assert len(np.unique(words)) == 2**16


def test_tags_of_one_key_give_distinct_keys_and_the_same_key_twice():
    key = jax.random.key(3)
    tags = [0, 1, 2, 7, 2**31 - 1, _MODEL_STREAM, 2**32 - 1]
    derived = {tuple(_data(derive_key(key, t))) for t in tags}
    assert len(derived) == len(tags)
    assert (_data(derive_key(key, 5)) == _data(derive_key(key, 5))).all()
    assert not (_data(derive_key(key, 5)) == _data(key)).all()
    with pytest.raises(ValueError, match="32-bit"):
        derive_key(key, -1)


def test_row_keys_are_distinct_and_never_an_address_or_model_key_of_the_parent():
    key = jax.random.key(11)
    rows = {tuple(r) for r in _data(row_keys(key, 5000))}
    assert len(rows) == 5000
    others = {tuple(_data(address_key(key, (f"x{i}",)))) for i in range(200)}
    others.add(tuple(_data(model_key(key))))
    assert not rows & others


def test_raw_keys_derive_the_same_data_as_typed_keys():
    typed, raw = jax.random.key(5), jax.random.PRNGKey(5)
    d_raw = derive_key(raw, 123)
    assert d_raw.dtype == jnp.uint32 and d_raw.shape == (2,)
    assert (np.asarray(d_raw) == _data(derive_key(typed, 123))).all()
    r_raw = row_keys(raw, 4)
    assert r_raw.shape == (4, 2) and (np.asarray(r_raw) == _data(row_keys(typed, 4))).all()


def test_derivation_is_the_same_under_vmap_and_jit_as_in_a_loop():
    keys = jax.random.split(jax.random.key(0), 6)
    batched = jax.jit(jax.vmap(lambda k: jax.random.key_data(derive_key(k, 99))))(keys)
    looped = np.stack([_data(derive_key(k, 99)) for k in keys])
    assert (np.asarray(batched) == looped).all()
    rows_b = jax.vmap(lambda k: jax.random.key_data(row_keys(k, 3)))(keys)
    rows_l = np.stack([_data(row_keys(k, 3)) for k in keys])
    assert (np.asarray(rows_b) == rows_l).all()


@pytest.mark.parametrize("impl", ["rbg", "unsafe_rbg"])
def test_other_implementations_use_jax_fold_in_and_split(impl):
    key = jax.random.key(4, impl=impl)
    assert (_data(derive_key(key, 17)) == _data(jax.random.fold_in(key, 17))).all()
    assert (_data(row_keys(key, 3)) == _data(jax.random.split(key, 3))).all()
    # and a generative function runs with such a key
    tr = gv.normal.simulate(key, 0.0, 1.0)
    assert np.isfinite(tr.retval)


def test_sibling_streams_of_sequential_seeds_are_uncorrelated():
    """The structured case: seeds 0..n-1 (keys that differ in a few low bits), each
    deriving the keys of two tags and of two rows. Under independence each sample
    correlation is about N(0, 1/n); |r| < 4.5/sqrt(n) holds for every pair at
    a family-wise error below 1e-4."""
    n = 4000
    seeds = jax.vmap(jax.random.key)(jnp.arange(n))

    def draws(k):
        a = jax.random.normal(derive_key(k, 1))
        b = jax.random.normal(derive_key(k, 2))
        r = jax.vmap(jax.random.normal)(row_keys(k, 2))
        return jnp.stack([a, b, r[0], r[1], jax.random.normal(k)])

    x = np.asarray(jax.vmap(draws)(seeds))  # (n, 5)
    corr = np.corrcoef(x, rowvar=False)
    off = corr[~np.eye(5, dtype=bool)]
    assert np.abs(off).max() < 4.5 / np.sqrt(n), corr
    # each stream is standard normal: mean within 4.5 standard errors, variance near 1
    assert np.abs(x.mean(0)).max() < 4.5 / np.sqrt(n)
    assert np.abs(x.var(0) - 1).max() < 4.5 * np.sqrt(2 / n)


def test_derived_key_bits_are_balanced():
    """Each of the 64 bits of the derived keys of sequential seeds is set about half
    the time (binomial, 4.5 standard errors)."""
    n = 20000
    seeds = jax.vmap(jax.random.key)(jnp.arange(n))
    data = np.asarray(jax.vmap(lambda k: jax.random.key_data(derive_key(k, 42)))(seeds))
    bits = (data[:, :, None] >> np.arange(32, dtype=np.uint32)) & 1
    freq = bits.reshape(n, 64).mean(0)
    assert np.abs(freq - 0.5).max() < 4.5 * 0.5 / np.sqrt(n)


def test_iwae_compiles_one_prng_loop_like_a_one_key_program():
    """What the derivation is for: the keys of 64 particles and of their choices add no
    PRNG call, so the compiled IWAE gradient has one threefry loop (the draw), as the
    hand-written program drawing all noise from one key has."""

    @gv.gen
    def model():
        z = gv.normal(jnp.zeros(3), 1.0) @ "z"
        gv.normal(z, 1.0) @ "x"

    @gv.gen
    def guide(mu):
        gv.normal(mu, 1.0) @ "z"

    objective = gv.objectives.iwae(model, guide, particles=64)

    def grad(key, mu):
        return objective.grad_estimate(key, (), (mu,), {"x": jnp.ones(3)})

    hlo = jax.jit(grad).lower(jax.random.key(0), jnp.zeros(3)).compile().as_text() or ""
    assert hlo.count(" while(") <= 1  # 0 where threefry is unrolled (GPU)
