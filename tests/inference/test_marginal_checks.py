"""A marginal used as a model never integrates out more than its `over` addresses."""

from __future__ import annotations

import jax
import pytest

import genvi as gv


@gv.gen
def joint(mu):
    u = gv.normal(mu, 1.0) @ "u"
    z = gv.normal(u, 1.0) @ "z"
    gv.normal(z, 0.5) @ "x"


def test_a_missing_observation_is_an_error(key):
    m = gv.marginal(joint, over="u", particles=4)
    with pytest.raises(gv.AddressError, match=r"kept choice 'x'.*integrated out silently"):
        m.estimate_logpdf(key, {"z": 0.3}, 0.0)


def test_an_empty_choice_map_is_an_error(key):
    m = gv.marginal(joint, over="u", particles=4)
    with pytest.raises(gv.AddressError, match="'x', 'z'|'z', 'x'"):
        m.estimate_logpdf(key, {}, 0.0)


def test_a_misspelled_over_address_is_an_error(key):
    m = gv.marginal(joint, over="uu", particles=4)
    # 'u' is then kept and not given: named, and so is the address `over` got wrong.
    with pytest.raises(gv.AddressError, match="'u'"):
        m.estimate_logpdf(key, {"z": 0.3, "x": 1.0}, 0.0)
    with pytest.raises(gv.AddressError, match="'uu'"):
        m.estimate_logpdf(key, {"z": 0.3, "x": 1.0, "u": 0.0}, 0.0)


def test_a_model_marginal_with_every_kept_choice_is_fine(key):
    m = gv.marginal(joint, over="u", particles=4)
    logp, _ = jax.jit(lambda k: m.estimate_logpdf(k, {"z": 0.3, "x": 1.0}, 0.0))(key)
    assert logp.shape == ()
