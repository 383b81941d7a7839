"""``scripts/main.sh``: installs only when pyproject.toml changed, and passes its arguments
to the ``genvi`` command (options alone go to ``genvi vae``). Run in a scratch copy whose
``.venv/bin/python`` and ``.venv/bin/genvi`` record their calls."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def scratch(tmp_path):
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "main.sh", tmp_path / "scripts" / "main.sh")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    bin_ = tmp_path / ".venv" / "bin"
    bin_.mkdir(parents=True)
    log = tmp_path / "calls.log"
    python = bin_ / "python"
    python.write_text(
        "#!/usr/bin/env bash\n"
        f'if [ "$1" = "-c" ]; then exec {sys.executable} "$@"; fi\n'
        f'echo "python $*" >> {log}\n'
    )
    genvi = bin_ / "genvi"
    genvi.write_text(f'#!/usr/bin/env bash\necho "genvi $*" >> {log}\n')
    for f in (python, genvi):
        f.chmod(0o755)
    return tmp_path, log


def _main_sh(root, *argv):
    env = {k: v for k, v in os.environ.items() if k != "PYTHON"}
    return subprocess.run(
        ["bash", str(root / "scripts" / "main.sh"), *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_main_sh_installs_only_when_pyproject_changes(scratch):
    root, log = scratch
    assert _main_sh(root).returncode == 0
    first = log.read_text().splitlines()
    assert any("pip install -q -e ." in c for c in first) and first[-1] == "genvi vae"
    log.unlink()
    assert _main_sh(root, "--steps", "500").returncode == 0
    assert log.read_text().splitlines() == ["genvi --steps 500"]  # no install this time
    log.unlink()
    (root / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "2"\n')
    assert _main_sh(root, "quickstart").returncode == 0
    calls = log.read_text().splitlines()
    assert any("pip install -q -e ." in c for c in calls) and calls[-1] == "genvi quickstart"
