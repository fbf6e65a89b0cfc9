"""eval/README.md's direct lmms-eval command runs as written on a CPU, and our launcher turns a failure
that lmms-eval exits 0 after into a failed run (both start the real lmms-eval: about 10 s each)."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lmms_eval")

REPO = Path(__file__).resolve().parent.parent
CHECKPOINT = REPO / "checkpoints" / "scenette-llava"
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
NO_GPU = {"CUDA_VISIBLE_DEVICES": ""}  # as on a CPU-only machine, wherever the test runs
TIMEOUT_S = 120


def documented_command() -> list[str]:
    """The `python -m lmms_eval ...` block of eval/README.md, with this interpreter as `python`."""
    blocks = re.findall(r"```\n(.*?)```", (REPO / "eval" / "README.md").read_text(), flags=re.S)
    [block] = [block for block in blocks if block.startswith("python -m lmms_eval")]
    command = shlex.split(block.replace("\\\n", " "))
    return [sys.executable, *command[1:]]


@pytest.mark.slow
def test_the_documented_command_runs_on_a_cpu_as_written():
    command = documented_command()
    assert "--device" not in command, "the point: lmms-eval's default device (cuda) works without CUDA"
    done = subprocess.run(command, cwd=REPO, env={**os.environ, **OFFLINE, **NO_GPU}, capture_output=True,
                          text=True, timeout=TIMEOUT_S)  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "Traceback" not in output and "Tasks not found" not in output, output[-3000:]
    [row] = [line for line in done.stdout.splitlines() if line.startswith("|scenette_reading")]
    assert "exact_match" in row
    assert "device cuda requested but CUDA is not available; running on cpu" in output


@pytest.mark.slow
def test_the_launcher_fails_when_lmms_eval_exits_0_after_an_error(tmp_path):
    command = [sys.executable, "-m", "eval.launch", "v1_5", "probe", "8", "0.5", "--model", str(CHECKPOINT),
               "--tasks", "no_such_task", "--metric", "no_such_task:exact_match", "--device", "cpu",
               "--results", str(tmp_path / "results")]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, env={**os.environ, **OFFLINE, **NO_GPU}, capture_output=True, text=True,
                          timeout=TIMEOUT_S)  # fmt: skip
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Tasks not found: no_such_task" in done.stdout + done.stderr
    assert "FAILED: lmms_eval wrote no *_results.json" in done.stderr
