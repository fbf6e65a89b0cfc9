"""The GPU measurement suite (efficiency.gpu_suite, scripts/efficiency/gpu.sh): rehearsed end to end at the
tiny shape on the CPU, its budget and retry rules, and every option its GPU steps pass."""

import json
import re
import subprocess
import sys

import pytest

from efficiency import gpu_suite
from support import REPO

FLAG = re.compile(r"--[a-z][a-z-]*")


@pytest.mark.slow
def test_the_rehearsal_runs_every_step_and_records_it(tmp_path, capsys):
    out = tmp_path / "suite"
    gpu_suite.main([str(out), "--device", "cpu", "--rehearse"])
    suite = json.loads((out / "suite.json").read_text())
    assert [record["step"] for record in suite["steps"]] == ["oracle_ttft tiny", "selection_scaling", "latency tiny"]
    assert all(record["status"] == 0 and len(record["tries"]) == 1 for record in suite["steps"])
    oracle = json.loads((out / "oracle-ttft-tiny-cpu.json").read_text())
    assert [(row["batch"], row["tokens"]) for row in oracle["results"]] == [(1, 16), (2, 16)]
    assert all(row["vispruner_compile"]["verdict"] for row in oracle["results"])
    scaling = json.loads((out / "selection-scaling-cpu.json").read_text())["results"]
    assert [row["compiled_same_tokens"] for row in scaling] == [True, None]  # compiled up to N = 80 only
    assert (out / "tiny-cpu.json").exists() and "T=16, TTFT" in (out / "oracle-ttft-tiny-cpu.log").read_text()
    assert "not complete" not in capsys.readouterr().out


def test_a_failed_step_is_tried_again_without_compiling_and_recorded(tmp_path):
    step = gpu_suite.Step("broken", "efficiency.no_such_module", [], tmp_path / "broken.json", ["--no-compile"])
    record = gpu_suite.run_step(step, seconds_left=60)
    assert [try_["command"][-3] for try_ in record["tries"]] == ["efficiency.no_such_module", "--no-compile"]
    assert record["status"] == 1 and "No module named" in record["tries"][-1]["output_tail"]


def test_steps_that_do_not_fit_the_budget_are_skipped(tmp_path):
    out = tmp_path / "suite"
    gpu_suite.main([str(out), "--device", "cpu", "--rehearse", "--budget", str(gpu_suite.MIN_STEP_S - 1)])
    suite = json.loads((out / "suite.json").read_text())
    assert {record["status"] for record in suite["steps"]} == {"skipped: out of time"}


def test_a_used_folder_is_refused_before_anything_runs(tmp_path, capsys):
    (tmp_path / "old.json").write_text("{}")
    with pytest.raises(SystemExit):
        gpu_suite.main([str(tmp_path), "--device", "cpu", "--rehearse"])
    assert "is not empty" in capsys.readouterr().err and not (tmp_path / "suite.json").exists()


@pytest.mark.slow
def test_every_option_of_the_gpu_steps_exists(tmp_path):
    """The GPU steps cannot run here: each option they pass must at least be one their command knows."""
    for step in gpu_suite.plan(tmp_path, "cuda", list(gpu_suite.SHAPES), "gpu", rehearse=False):
        usage = subprocess.run([sys.executable, "-m", step.module, "--help"], cwd=REPO, capture_output=True,
                               text=True, check=True).stdout  # fmt: skip
        flags = set(FLAG.findall(" ".join(step.options + step.retry_options)))
        assert flags and not {flag for flag in flags if flag not in usage}, step.name
