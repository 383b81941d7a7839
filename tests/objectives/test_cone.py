"""The cone example and its ``genvi cone`` command."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genvi.cli import cone
from genvi.cli.main import main


def test_log_evidence_against_a_quadrature_in_the_radius():
    """p(z) = ∫ (r / 100) exp(-r^2 / 200) N(z; r^2, 0.1 + r^2 / 100) dr (polar coordinates),
    by the trapezoid rule on a fine grid: an independent route to the reference value."""
    r = np.linspace(1e-6, 60.0, 2_000_001)
    sd = 0.1 + r**2 / 100.0
    f = (
        r
        / 100.0
        * np.exp(-(r**2) / 200.0)
        * np.exp(-0.5 * ((5.0 - r**2) / sd) ** 2)
        / (sd * math.sqrt(2 * math.pi))
    )
    assert abs(math.log(np.trapezoid(f, r)) - cone.log_evidence(5.0)) < 1e-6


def test_wrapped_normal_proposal_is_a_density_on_the_unit_interval():
    d = cone.UnitWrappedNormal(0.93, 0.2)
    u = jnp.linspace(0.0, 1.0, 20_001)
    assert abs(float(jnp.trapezoid(jnp.exp(d.log_prob(u)), u)) - 1.0) < 1e-5
    x = d.sample(jax.random.key(0), (50_000,))
    assert float(x.min()) >= 0.0 and float(x.max()) < 1.0
    # P(u < 0.5) from samples vs from the density
    p_half = float(jnp.trapezoid(jnp.exp(d.log_prob(u[:10_001])), u[:10_001]))
    se = math.sqrt(p_half * (1 - p_half) / x.size)
    assert abs(float(jnp.mean(x < 0.5)) - p_half) < 5 * se


@pytest.mark.parametrize(
    "argv",
    [["--steps", "0"], ["--steps", "ten"], ["--samples", "-3"], ["--lr", "0"], ["--bogus"]],
)
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(["cone", *argv])
    assert e.value.code == 2
    assert "error" in capsys.readouterr().err


def test_out_must_be_a_directory(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["cone", "--steps", "1", "--out", str(f)]) == 2
    assert "not a directory" in capsys.readouterr().err


@pytest.mark.slow
def test_cone_command_trains_and_reports_lower_bounds(tmp_path, capsys):
    assert main(["cone", "--steps", "40", "--samples", "400", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "cone.json").read_text())
    assert [r["objective"] for r in result["rows"]] == [
        "ELBO",
        "IWAE(5)",
        "HVI",
        "IWHVI(5)",
        "DIWHVI(5, 5)",
    ]
    for r in result["rows"]:  # every objective is a lower bound on log p(z = 5)
        assert math.isfinite(r["value"]) and r["value"] < result["log_p_z"] + 5 * r["se"]
    assert "| DIWHVI(5, 5) | hierarchical |" in (tmp_path / "cone.md").read_text()
    assert "log p(z=5)" in capsys.readouterr().out
