"""Bad input gets a clear error, raised when the program is traced, naming the culprit."""

import jax
import jax.numpy as jnp
import pytest

import genvi as gv


@gv.gen
def model(theta):
    z = gv.normal(theta, 1.0) @ "z"
    gv.normal(z, 0.5) @ "x"
    return z


@gv.gen
def top():
    a = model(0.0) @ "m1"
    return model(a) @ "m2"


def test_errors_are_genvi_errors_and_builtin_kinds():
    assert issubclass(gv.AddressError, gv.GenviError) and issubclass(gv.AddressError, KeyError)
    assert issubclass(gv.ChoiceTypeError, TypeError)
    assert issubclass(gv.StrategyError, ValueError)
    assert issubclass(gv.SupportError, ValueError)
    assert issubclass(gv.ModelingError, RuntimeError)


# ----- the same address twice -----


def test_same_address_twice(key):
    @gv.gen
    def dup():
        gv.normal(0.0, 1.0) @ "a"
        gv.normal(0.0, 1.0) @ "a"

    with pytest.raises(gv.AddressError, match="'a' is used twice in dup"):
        dup.simulate(key)
    with pytest.raises(gv.AddressError, match="'a' is used twice"):
        dup.assess({"a": 0.0})
    with pytest.raises(gv.AddressError, match="'a' is used twice"):
        jax.jit(dup.importance)(key, {})


def test_same_address_twice_in_a_python_loop(key):
    @gv.gen
    def loop():
        for _ in range(3):
            gv.normal(0.0, 1.0) @ "x"

    with pytest.raises(gv.AddressError, match="'x' is used twice.*f\"x{i}\""):
        loop.simulate(key)


def test_same_address_twice_across_nesting(key):
    @gv.gen
    def calls_twice():
        model(0.0) @ "m"
        model(0.0) @ "m"

    @gv.gen
    def clash():
        model(0.0) @ "m"
        gv.normal(0.0, 1.0) @ ("m", "z")

    @gv.gen
    def deep():
        return calls_twice() @ "outer"

    with pytest.raises(gv.AddressError, match="'m' is used twice"):
        calls_twice.simulate(key)
    with pytest.raises(gv.AddressError, match=r"\('m', 'z'\) is used twice"):
        clash.simulate(key)
    # the full hierarchical address is named
    with pytest.raises(gv.AddressError, match=r"\('outer', 'm'\) is used twice"):
        deep.simulate(key)


# ----- assess missing a choice -----


def test_assess_missing_a_choice_names_it():
    with pytest.raises(gv.AddressError, match=r"address 'x' \(normal\).*Given: 'z'"):
        model.assess({"z": 0.0}, 0.0)
    with pytest.raises(gv.AddressError, match=r"\('m2', 'x'\)"):
        top.assess({"m1": {"z": 0.0, "x": 0.0}, "m2": {"z": 0.0}})
    with pytest.raises(gv.AddressError, match=r"\('m2', 'z'\)"):
        jax.jit(top.assess)({"m1": {"z": 0.0, "x": 0.0}})


# ----- constraints at addresses the model never visits -----


def test_assess_or_importance_with_an_unknown_address_names_it(key):
    with pytest.raises(gv.AddressError, match="'y' that the model never visits.*'x', 'z'"):
        model.assess({"z": 0.0, "x": 1.0, "y": 2.0}, 0.0)
    with pytest.raises(gv.AddressError, match="'xx' that the model never visits"):
        model.importance(key, {"xx": 1.0}, 0.0)
    with pytest.raises(gv.AddressError, match=r"\('m1', 'xx'\) that the model never visits"):
        top.importance(key, {"m1": {"xx": 1.0}})
    with pytest.raises(gv.AddressError, match="'m3'"):
        jax.jit(top.importance)(key, {"m3": {"x": 1.0}})
    with pytest.raises(gv.AddressError, match="addresses 'a', 'b'"):
        model.importance(key, {"a": 1.0, "b": 2.0}, 0.0)


def test_constraint_below_a_single_choice(key):
    """A map given where the model makes one choice: the address and the sub-addresses
    are named."""
    with pytest.raises(gv.ChoiceTypeError, match=r"'z'.*\('q',\)"):
        model.importance(key, {"z": {"q": 1.0}}, 0.0)


# ----- malformed addresses -----


@pytest.mark.parametrize("addr", [3, None, ("a", 1), 1.5])
def test_non_string_address(key, addr):
    @gv.gen
    def bad():
        return gv.normal(0.0, 1.0) @ addr

    with pytest.raises(gv.AddressError, match="every part of an address must be a str"):
        bad.simulate(key)


def test_non_string_address_in_a_choice_map():
    with pytest.raises(gv.AddressError, match="got int 3"):
        gv.choice_map({3: 1.0})
    with pytest.raises(gv.AddressError, match="must be a str"):
        gv.choice_map({"a": 1.0})[("a", 0)]


# ----- wrong shape or dtype -----


def test_constraint_of_the_wrong_shape(key):
    with pytest.raises(gv.ChoiceTypeError, match=r"'x' makes choices of shape \(\).*shape \(2,\)"):
        model.importance(key, {"x": jnp.zeros(2)}, 0.0)
    with pytest.raises(gv.ChoiceTypeError, match=r"\('m1', 'z'\).*shape \(3,\)"):
        top.assess({"m1": {"z": jnp.zeros(3), "x": 0.0}, "m2": {"z": 0.0, "x": 0.0}})

    @gv.gen
    def vec():
        return gv.mv_normal_diag(jnp.zeros(3), jnp.ones(3)) @ "v"

    with pytest.raises(gv.ChoiceTypeError, match=r"mv_normal_diag.*'v'.*\(3,\).*\(2,\)"):
        jax.jit(vec.assess)({"v": jnp.zeros(2)})


@pytest.mark.parametrize(
    "value, match",
    [
        (True, "'z' is continuous but the value given is boolean"),
        (jnp.array(1 + 1j), "'z'.*complex64 cannot be scored"),
        ("oops", "'z'.*cannot score a value of type str.*oops"),
        (jax.random.key(1), "'z'.*PRNG key"),
    ],
)
def test_constraint_of_a_wrong_dtype(key, value, match):
    with pytest.raises(gv.ChoiceTypeError, match=match):
        model.importance(key, {"z": value}, 0.0)


def test_discrete_choice_given_a_fraction(key):
    @gv.gen
    def coin():
        return gv.flip(0.3) @ "b"

    with pytest.raises(gv.ChoiceTypeError, match="flip at address 'b' is discrete.*0.5"):
        coin.assess({"b": 0.5})
    # whole numbers are fine in any numeric dtype
    logp, _ = coin.assess({"b": 1.0})
    assert jnp.allclose(logp, jnp.log(0.3))


def test_integer_value_of_a_continuous_choice_is_converted():
    logp, z = model.assess({"z": 1, "x": 2}, 0.0)
    assert z.dtype == jnp.float32
    assert jnp.allclose(logp, model.assess({"z": 1.0, "x": 2.0}, 0.0)[0])


# ----- @ outside a generative function -----


def test_at_outside_a_generative_function():
    with pytest.raises(gv.ModelingError, match=r"`normal\(...\) @ 'z'` was used outside.*@gv.gen"):
        gv.normal(0.0, 1.0) @ "z"

    def plain():
        return model(0.0) @ "m"

    with pytest.raises(gv.ModelingError, match="model"):
        plain()


def test_the_handler_stack_is_clean_after_an_error(key):
    with pytest.raises(gv.AddressError):
        model.assess({"z": 0.0}, 0.0)
    # no handler left active: @ at top level is still an error, and models still run
    with pytest.raises(gv.ModelingError):
        gv.normal(0.0, 1.0) @ "z"
    assert model.simulate(key, 0.0).choices.addresses() == [("x",), ("z",)]
