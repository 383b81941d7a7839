"""The modeling language's edges: keys, threads, raw JAX loops, forgotten addresses."""

from __future__ import annotations

import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import genvi as gv

# Two addresses whose 31-bit CRC32 hashes collide: before, they drew identical values.
A, B = "dbxshjefgj", "btrocxzzgb"


def test_colliding_addresses_get_distinct_randomness(key):
    @gv.gen
    def model():
        gv.normal(0.0, 1.0) @ A
        gv.normal(0.0, 1.0) @ B

    for k in jax.random.split(key, 5):
        tr = model.simulate(k)
        assert tr.choices[A] != tr.choices[B]
    # Still deterministic given the key, and the same under jit.
    one = model.simulate(key)
    two = jax.jit(model.simulate)(key)
    assert one.choices[A] == two.choices[A] and one.choices[B] == two.choices[B]
    # importance with nothing constrained draws what simulate draws.
    tr, _ = model.importance(key, {})
    assert tr.choices[B] == one.choices[B]


def test_colliding_addresses_under_vmap_and_nested_calls(key):
    @gv.gen
    def inner():
        gv.normal(0.0, 1.0) @ A
        gv.normal(0.0, 1.0) @ B

    @gv.gen
    def outer():
        inner() @ A
        inner() @ B

    tr = outer.simulate(key)
    values = [float(tr.choices[a, b]) for a in (A, B) for b in (A, B)]
    assert len(set(values)) == 4


def test_handlers_are_per_thread(key):
    @gv.gen
    def model(mu):
        z = gv.normal(mu, 1.0) @ "z"
        gv.normal(z, 0.5) @ "x"
        return z

    errors, results = [], {}
    barrier = threading.Barrier(4)

    def work(i):
        try:
            barrier.wait()
            for j in range(20):
                tr = model.simulate(jax.random.fold_in(key, j), float(i))
                logp, _ = model.assess(tr.choices, float(i))
                assert np.isclose(logp, tr.score, atol=1e-5)
                assert sorted(tr.choices.keys()) == ["x", "z"]
            results[i] = True
        except Exception as e:  # noqa: BLE001 - collected and reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(results) == 4


@pytest.mark.parametrize(
    "loop",
    ["scan", "fori_loop", "while_loop", "vmap", "cond", "jit"],
)
def test_choices_inside_raw_jax_transformations_are_refused(key, loop):
    def body_scan(c, _):
        return c + gv.normal(0.0, 1.0) @ "z", None

    @gv.gen
    def model():
        if loop == "scan":
            return jax.lax.scan(body_scan, 0.0, None, length=3)[0]
        if loop == "fori_loop":
            return jax.lax.fori_loop(0, 3, lambda i, c: c + gv.normal(0.0, 1.0) @ "z", 0.0)
        if loop == "while_loop":
            return jax.lax.while_loop(
                lambda c: c < 3.0, lambda c: c + gv.exponential(1.0) @ "z", 0.0
            )
        if loop == "vmap":
            return jax.vmap(lambda m: gv.normal(m, 1.0) @ "z")(jnp.zeros(3))
        if loop == "cond":
            return jax.lax.cond(
                True, lambda: gv.normal(0.0, 1.0) @ "z", lambda: gv.normal(1.0, 1.0) @ "z"
            )
        return jax.jit(lambda: gv.normal(0.0, 1.0) @ "z")()

    hint = {"vmap": "gv.vmap", "cond": "gv.cond"}.get(loop, "gv.scan")
    with pytest.raises(gv.ModelingError, match=hint):
        model.simulate(key)
    with pytest.raises(gv.ModelingError, match="inside a JAX transformation"):
        jax.jit(model.simulate)(key)
    with pytest.raises(gv.ModelingError, match="'z'"):
        model.assess({"z": 0.0})


def test_deterministic_jax_inside_a_model_is_fine(key):
    @gv.gen
    def model(xs):
        total = jax.lax.fori_loop(0, xs.shape[0], lambda i, acc: acc + xs[i], 0.0)
        scaled = jax.vmap(lambda x: 2.0 * x)(xs)
        return gv.normal(total, 1.0) @ "z" + jnp.sum(scaled)

    tr = model.simulate(key, jnp.ones(3))
    assert tr.choices.has("z")


def test_a_call_without_an_address_is_an_error(key):
    @gv.gen
    def model():
        gv.normal(0.0, 1.0)  # forgot @ "z"
        return gv.normal(0.0, 1.0) @ "x"

    with pytest.raises(
        gv.ModelingError, match=r"normal\(\.\.\.\) was called but never given an address"
    ):
        model.simulate(key)

    @gv.gen
    def later():
        call = gv.normal(0.0, 1.0)
        return call @ "z"  # given its address later: fine

    assert later.simulate(key).choices.has("z")


def test_empty_address_is_an_error(key):
    @gv.gen
    def model():
        return gv.normal(0.0, 1.0) @ ()

    with pytest.raises(gv.AddressError, match="empty address"):
        model.simulate(key)


@pytest.mark.parametrize("bad", [None, 0, "a", jnp.zeros(3)])
def test_a_bad_key_is_named(bad):
    @gv.gen
    def model():
        return gv.normal(0.0, 1.0) @ "z"

    with pytest.raises(gv.ChoiceTypeError, match="expected a PRNG key"):
        model.simulate(bad)
    with pytest.raises(gv.ChoiceTypeError, match="expected a PRNG key"):
        model.importance(bad, {})
    with pytest.raises(gv.ChoiceTypeError, match="expected a PRNG key"):
        gv.vmap(model, in_axes=())
        gv.scan(gv.gen(lambda c, x: (c, None)), length=2).simulate(bad, 0.0, None)

    @gv.expectation
    def objective(key, mu):
        return mu * model.simulate(key).retval

    with pytest.raises(gv.ChoiceTypeError, match="expected a PRNG key"):
        objective.estimate(bad, 1.0)
