"""The real lmms-eval CLI, in a subprocess, evaluates a tiny LLaVA through our plugin; then the table."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from eval import tables
from eval_fixtures import LLAVA_MAX_NEW_TOKENS, LLAVA_POST, TASK, write_checkpoint, write_task

pytestmark = pytest.mark.slow  # every test here reads one lmms-eval run in a subprocess


def launch(results: Path, checkpoint: Path, tasks: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(results.parent / "hf")}
    command = [sys.executable, "-m", "eval.launch", "v1_5", "smoke", "8", "0.5", "--model", str(checkpoint),
               "--tasks", TASK, "--metric", f"{TASK}:answer_length", "--scale", "1", "--include-path", str(tasks),
               "--device", "cpu", "--batch-size", "2", "--results", str(results), *extra]  # fmt: skip
    # Run outside the checkout: eval.launch and the lmms-eval subprocess it starts find our packages
    # installed, not in the current folder.
    return subprocess.run(command, cwd=results.parent, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    checkpoint, tasks, results = write_checkpoint(root), write_task(root), root / "results"
    first = launch(results, checkpoint, tasks)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    return results, checkpoint, tasks, first


def test_lmms_eval_cli_runs_our_model_and_writes_results(offline_run):
    results, *_ = offline_run
    folder = results / "llava-tiny" / "vispruner" / "n8_r0.5" / "smoke"
    [result_file] = list(folder.rglob("*_results.json"))
    metrics = json.loads(result_file.read_text())["results"][TASK]
    assert 0 <= metrics["exact_match,none"] <= 1
    [samples] = list(folder.rglob(f"*_samples_{TASK}.jsonl"))
    assert len(samples.read_text().splitlines()) == 5
    assert json.loads((folder / "benchmark.json").read_text())["tasks"] == [TASK]
    assert "--model vispruner" in (folder / "command.txt").read_text()


def test_prompts_and_generation_follow_the_llava_keyed_task_options(offline_run):
    results, *_ = offline_run
    log = results / "llava-tiny" / "vispruner" / "n8_r0.5" / "smoke" / "responses" / "responses.rank0.jsonl"
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted(e["doc_id"] for e in entries) == [0, 1, 2, 3, 4]
    first = next(e for e in entries if e["doc_id"] == 0)
    assert first["prompt"] == (
        "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
        "detailed, and polite answers to the user's questions. USER: <image>\nWhat is shown 0?"
        f"{LLAVA_POST} ASSISTANT:"
    )
    assert all(e["generation"]["max_new_tokens"] == LLAVA_MAX_NEW_TOKENS for e in entries)


def test_a_finished_benchmark_is_not_run_again(offline_run):
    results, checkpoint, tasks, _ = offline_run
    again = launch(results, checkpoint, tasks)
    assert again.returncode == 0 and "already evaluated" in again.stdout
    assert len(list(results.rglob("*_results.json"))) == 1


def test_the_table_renders_the_offline_run(offline_run):
    results, *_ = offline_run
    folder = results / "llava-tiny" / "vispruner" / "n8_r0.5" / "smoke"
    [samples] = list(folder.rglob(f"*_samples_{TASK}.jsonl"))
    lengths = [json.loads(line)["answer_length"] for line in samples.read_text().splitlines()]
    [table] = tables.build(results)
    assert table.columns == ["smoke"] and table.summary_columns == ["Acc.", "Rel."]
    [line] = table.lines
    assert (line.method, line.tokens, line.ratio) == ("vispruner", "8", "0.5")
    assert line.values["smoke"] == pytest.approx(sum(lengths) / len(lengths))
    markdown = tables.render([table], "markdown")
    rows = [[cell.strip() for cell in row.strip().strip("|").split("|")] for row in markdown.splitlines() if "|" in row]
    assert ["vispruner", "8", "0.5", f"{sum(lengths) / len(lengths):.1f}"] in [row[:4] for row in rows]  # any padding
    assert "\\begin{tabular}" in tables.render([table], "latex")
    assert tables.render([table], "csv").splitlines()[0] == "model,method,tokens,ratio,smoke,Acc.,Rel."
