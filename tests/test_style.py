"""The code is kept lint-clean and formatted by ruff, configured in pyproject.toml."""

import subprocess
import sys

import pytest

from support import REPO


@pytest.mark.slow
@pytest.mark.parametrize("command", [["check", "."], ["format", "--check", "."]], ids=["lint", "format"])
def test_ruff_is_clean(command):
    done = subprocess.run([sys.executable, "-m", "ruff", *command], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, (
        f"ruff {' '.join(command)} (fix with `ruff check --fix .` / `ruff format .`):\n" + done.stdout[-4000:]
    )
