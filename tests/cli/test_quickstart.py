"""`genvi quickstart`: importance sampling and VI on a conjugate model, against exact."""

import math

import pytest

from genvi.cli import main as cli
from genvi.cli import quickstart


def test_quickstart_matches_the_exact_posterior():
    out = quickstart.run(seed=0, particles=20_000, steps=300)
    mean, sd, log_ml = out["exact"]
    is_mean, is_sd, is_log_ml, ess = out["importance"]
    # Self-normalized IS with ESS ~ 4000: the posterior mean's standard error is about
    # sd / sqrt(ESS); allow 5 of them.
    se = sd / math.sqrt(ess)
    assert abs(is_mean - mean) < 5 * se
    assert abs(is_sd - sd) < 0.05 * sd
    assert abs(is_log_ml - log_ml) < 0.05
    vi_mean, vi_sd, vi_elbo = out["vi"]
    assert vi_elbo <= log_ml + 0.01  # the ELBO is a lower bound
    # STL converges to the exact posterior (the guide family contains it)
    assert abs(vi_mean - mean) < 0.02 and abs(vi_sd - sd) < 0.02


def test_quickstart_command_prints_a_summary(capsys):
    assert cli.main(["quickstart", "--particles", "500", "--steps", "20"]) == 0
    text = capsys.readouterr().out
    assert "exact" in text and "importance sampling" in text and "log p(x)" in text


def test_unknown_command_exits_2(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["no-such-command"])
    assert e.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
