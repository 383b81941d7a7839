"""ChoiceMap: construction from nested dicts, hierarchical indexing, merge, pytree."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import genvi as gv


def test_choice_map_from_nested_dict_and_tuple_keys():
    cm = gv.choice_map({"z": 0.5, "inner": {"x": 1.0, "deep": {"y": 2.0}}, ("t", "u"): 3.0})
    assert cm["z"] == 0.5
    assert cm["inner", "x"] == 1.0
    assert cm["inner", "deep", "y"] == 2.0
    assert cm["inner"]["deep"]["y"] == 2.0
    assert cm["t", "u"] == 3.0
    assert cm.addresses() == [("inner", "deep", "y"), ("inner", "x"), ("t", "u"), ("z",)]
    assert ("inner", "x") in cm and "z" in cm
    assert ("inner", "nope") not in cm and 3 not in cm
    assert isinstance(cm["inner"], gv.ChoiceMap)
    assert cm.get_submap("z").is_leaf and cm.get_submap("z").value == 0.5
    assert cm.to_dict() == {"inner": {"deep": {"y": 2.0}, "x": 1.0}, "t": {"u": 3.0}, "z": 0.5}


def test_choice_map_is_idempotent_and_empty():
    cm = gv.choice_map({"a": 1.0})
    assert gv.choice_map(cm) is cm
    assert gv.choice_map().is_empty() and gv.choice_map({}).is_empty()
    assert not cm.is_empty()


def test_choice_map_rejects_non_mappings_and_repeated_addresses():
    with pytest.raises(TypeError, match="list"):
        gv.choice_map([1.0, 2.0])
    with pytest.raises(gv.AddressError, match=r"\('a', 'b'\) is given twice"):
        gv.choice_map({("a", "b"): 1.0, "a": {"b": 2.0}})


def test_merge_disjoint_nested_maps_and_dicts():
    a = gv.choice_map({"z": 1.0, "inner": {"x": 2.0}})
    m = a.merge({"inner": {"y": 3.0}, "w": 4.0})
    assert m.addresses() == [("inner", "x"), ("inner", "y"), ("w",), ("z",)]
    assert m["inner", "y"] == 3.0 and m["z"] == 1.0
    # the originals are unchanged (immutability)
    assert a.addresses() == [("inner", "x"), ("z",)]


def test_merge_overlap_is_an_error_naming_the_address():
    a = gv.choice_map({"z": 1.0, "inner": {"x": 2.0}})
    with pytest.raises(gv.AddressError, match="'z'"):
        a.merge({"z": 5.0})
    with pytest.raises(gv.AddressError, match=r"\('inner', 'x'\)"):
        a.merge({"inner": {"x": 5.0}})
    with pytest.raises(gv.AddressError, match="'inner'"):
        a.merge({"inner": 5.0})


def test_missing_address_names_it_and_lists_present_ones():
    cm = gv.choice_map({"z": 1.0, "inner": {"x": 2.0}})
    with pytest.raises(gv.AddressError, match=r"\('inner', 'y'\).*\('inner', 'x'\)"):
        cm["inner", "y"]
    with pytest.raises(KeyError):  # AddressError is a KeyError too
        cm["nope"]


def test_set_makes_a_copy():
    cm = gv.choice_map({"a": 1.0})
    cm2 = cm.set(("b", "c"), 2.0)
    assert cm2["b", "c"] == 2.0 and "b" not in cm


def test_choice_map_is_a_pytree_with_static_addresses():
    cm = gv.choice_map({"z": jnp.ones(3), "inner": {"x": 2.0}})
    leaves, tree = jax.tree_util.tree_flatten(cm)
    assert len(leaves) == 2
    back = jax.tree_util.tree_unflatten(tree, leaves)
    assert back == cm
    doubled = jax.jit(lambda c: jax.tree_util.tree_map(lambda v: 2 * v, c))(cm)
    np.testing.assert_allclose(doubled["z"], 2 * np.ones(3))
    assert doubled["inner", "x"] == 4.0
    # vmap over a batched choice map
    batched = gv.choice_map({"z": jnp.arange(4.0)})
    out = jax.vmap(lambda c: c["z"] ** 2)(batched)
    np.testing.assert_allclose(out, np.arange(4.0) ** 2)


def test_equality_compares_values_and_structure():
    a = gv.choice_map({"z": jnp.ones(2)})
    assert a == gv.choice_map({"z": jnp.ones(2)})
    assert a != gv.choice_map({"z": jnp.zeros(2)})
    assert a != gv.choice_map({"y": jnp.ones(2)})
