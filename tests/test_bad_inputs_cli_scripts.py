"""Bad inputs to the shell logic of scripts/ (issue 20), and what goes beyond a table row: exact settings,
dry runs, atomic writes, resumable states, caches. How a case is run and checked: bad_inputs_cli.py."""

from __future__ import annotations

import importlib
import os
import stat
from pathlib import Path

import pytest

from bad_inputs_cli import (
    ARGS,
    LAUNCH_CELL,
    ONLY_ON_LINUX,
    SETUPS,
    _has_cuda,
    cases,
    check,
    prepare,
    run_main,
    run_script,
    snapshot,
)

pytestmark = ONLY_ON_LINUX


# --- scripts/ (their own shell logic, in a subprocess; the rest is the module above each one) ------------

SCRIPTS = cases(
    ("launch.sh:tokens-zero", ["scripts/v1_5/eval/gqa.sh", "0", "0.5"], 2, ["TOKENS", "'0'"], []),
    ("eval_table.sh:budget-zero", ["scripts/eval_table.sh", "v1_5", "--budgets", "0"], 2, ["--budgets", "'0'"], []),
    ("paper_table.sh:unknown-recipe", ["scripts/paper_table.sh", "table9"], 2, ["table9", "table1"], []),
    ("scenette.sh:budget-zero", ["scripts/scenette.sh", "--budgets", "0"], 2, ["--budgets", "'0'"], []),
    ("train_scenette.sh:seed-without-value", ["scripts/train_scenette.sh", "--seed"], 2, ["--seed", "needs a value"],
     []),
    ("train_scenette.sh:threads-negative", ["scripts/train_scenette.sh", "--threads", "-1"], 2,
     ["--threads", "'-1'", ">= 0"], []),
    ("train_scenette.sh:unknown-argument", ["scripts/train_scenette.sh", "--steps", "5"], 2,
     ["--steps", "allowed: --seed"], []),
    ("train_scenette.sh:output-is-a-file", ["scripts/train_scenette.sh", "--output", "{root}/afile"], 2,
     ["--output", "afile", "is a file"], ["file"]),
    ("train_scenette.sh:run-dir-read-only", ["scripts/train_scenette.sh", "--run-dir", "{root}/ro/run"], 2,
     ["--run-dir", "ro", "read-only"], ["ro"]),
    ("cpu.sh:max-load-without-value", ["scripts/efficiency/cpu.sh", "--max-load"], 2, ["--max-load", "number"], []),
    ("cpu.sh:max-load-word", ["scripts/efficiency/cpu.sh", "--max-load", "high"], 2, ["--max-load", "'high'"], []),
    ("flops.sh:two-folders", ["scripts/efficiency/flops.sh", "{root}/a", "{root}/b"], 2, ["one argument", "OUT_DIR"],
     []),
    ("flops.sh:folder-is-a-file", ["scripts/efficiency/flops.sh", "{root}/afile"], 2, ["afile", "is a file"],
     ["file"]),
    ("flops.sh:json-exists", ["scripts/efficiency/flops.sh", "{root}/flops"], 1,
     ["flops-llava-1.5-7b.json", "exists"], ["flops_json"]),
    ("setup_cpu.sh:any-argument", ["scripts/setup_cpu.sh", "--upgrade"], 2, ["no arguments", "--upgrade"], []),
    ("lock.sh:unknown-argument", ["scripts/lock.sh", "--bogus"], 2, ["usage", "--upgrade"], []),
    ("gpu.sh:no-gpu", ["scripts/efficiency/gpu.sh", "{root}/gpu"], 2, ["no CUDA device", "--device cpu"], [],
     pytest.mark.skipif(_has_cuda(), reason="this machine has a GPU")),
)  # fmt: skip


@pytest.mark.parametrize(ARGS, SCRIPTS)
def test_scripts(argv, code, says, setups, sandbox):
    before = prepare(sandbox, setups)
    script, *rest = argv
    outcome = run_script(script, [item.format(root=sandbox) for item in rest], sandbox)
    check(outcome, code, says, before, sandbox)


# --- beyond the table: exact settings, dry runs, atomic writes, resumable states, caches ------------------


def test_a_ratio_is_its_own_setting_to_the_last_digit(sandbox, capsys):
    """`64 0.4999999` was `n64_r0.5` (six significant digits): it runs 31 important tokens, not 0.5's 32, in its
    own folder, and a finished n64_r0.5 does not make it "already evaluated"."""
    from eval import launch, tables
    from eval.results import number_text, parse_setting, setting_name

    SETUPS["launch_results"](sandbox)
    argv = ["v1_5", "gqa", "64", "0.4999999", "--dry-run"]
    args = launch.parse_args(argv)
    assert launch.output_folder(args) == Path("results/llava-v1.5-7b/vispruner/n64_r0.4999999/gqa")
    assert launch.run(args) == "skipped" and "already evaluated" not in capsys.readouterr().out
    model_args = dict(item.split("=", 1) for item in launch.model_args(args, Path("out")).split(","))
    assert model_args["important_ratio"] == "0.4999999"
    assert launch.parse_args(["v1_5", "gqa", "64", "0.50", "--dry-run", "--limit", "1234567"]).limit == 1234567
    names = {0.5: "0.5", 1.0: "1", 0.75: "0.75", 0.4999999: "0.4999999", 1e-05: "0.00001", 1 / 3: "0.3333333333333333"}
    for value, text in names.items():
        assert number_text(value) == text and float(text) == value
    for name in ("n64_r0.5", "n64_r1", "n64_r0.75_limit10", "full_limit0.5", "n455_r0.5+frame_cls=false"):
        assert parse_setting(name) is not None  # folders written before parse as before
    assert parse_setting(setting_name("vispruner", 64, 0.4999999, 1234567)) == (64, 0.4999999, 1234567.0)
    shutil_copy = sandbox / "results/llava-v1.5-7b/vispruner/n64_r0.4999999"
    shutil_copy.mkdir()
    (shutil_copy / "gqa").symlink_to(sandbox / LAUNCH_CELL, target_is_directory=True)
    [table] = tables.build(sandbox / "results")
    assert [line.ratio for line in table.lines] == ["0.4999999", "0.5"]


@pytest.mark.parametrize("module, argv", [
    ("eval.run_table", ["v1_5", "--budgets", "64", "--", "--dry-run", "--results", "results"]),
    ("eval.run_table", ["v1_5", "--dry-run", "--budgets", "64", "--", "--results", "results"]),
    ("eval.paper_tables", ["table1", "--labels", "64", "--", "--dry-run", "--results", "results"]),
    ("eval.launch", ["v1_5", "gqa", "64", "0.5", "--", "--dry-run", "--rerun", "--results", "results"]),
])  # fmt: skip
def test_a_dry_run_writes_nothing_anywhere(module, argv, sandbox):
    """With finished results there, as without: no folder, no log, no "already there"; every command printed."""
    before = prepare(sandbox, ["launch_results"])
    outcome = run_main(importlib.import_module(module).main, argv)
    assert (outcome.kind, outcome.code) == ("exit", 0), outcome.message
    assert snapshot(sandbox) == before
    assert "already there" not in outcome.message and "already evaluated" not in outcome.message
    assert "-m lmms_eval" in outcome.message


def test_a_failed_write_leaves_the_earlier_file_as_it_was(tmp_path):
    from efficiency.command import atomic_write, atomic_write_json

    path = tmp_path / "result.json"
    atomic_write_json(path, {"accuracy": 1})
    earlier = path.read_bytes()

    def half_then_fail(temporary):
        temporary.write_text('{"accur')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, half_then_fail)
    assert path.read_bytes() == earlier and sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask  # as open() would have made it


def test_training_resumes_from_a_state_read_without_pickled_code(tmp_path):
    """run_loop saves a state torch.load(weights_only=True) reads back: a run continues where it stopped."""
    import torch

    from scenette.training import Log, load_state, run_loop

    layer = torch.nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(layer.parameters(), lr=0.1, betas=(0.9, 0.98))

    def step(index):
        loss = layer(torch.ones(3, 4)).pow(2).mean()
        loss.backward()
        return {"loss": float(loss.detach())}

    log = Log(tmp_path / "train.log")
    run_loop("probe", tmp_path, {"layer": layer}, optimizer, step, 2, 0.1, 1, 1, log)
    assert load_state(tmp_path / "probe-state.pt")["step"] == 2
    assert run_loop("probe", tmp_path, {"layer": layer}, optimizer, step, 3, 0.1, 1, 1, log)["resumed_from"] == 2


def test_a_cached_analysis_file_that_cannot_be_read_is_named_and_kept(tmp_path):
    """A cut-short manifest stops the study (even with overwrite=True, which replaces only a readable manifest
    of another run), naming the file; the cache is left exactly as it was."""
    from analysis.study import open_study
    from efficiency.command import ResultFileError

    study = open_study(smoke=True, results=tmp_path, progress=False)
    manifest = study.folder / "manifest.json"
    manifest.write_text('{"model": "smoke-ran')
    before = snapshot(tmp_path)
    for overwrite in (False, True):
        with pytest.raises(ResultFileError, match="manifest.json: not valid JSON"):
            open_study(smoke=True, results=tmp_path, progress=False, overwrite=overwrite)
    assert snapshot(tmp_path) == before


def test_a_table_of_finished_cells_writes_nothing(sandbox):
    """Every cell already evaluated: nothing runs and nothing is written, not even an empty log."""
    before = prepare(sandbox, ["launch_results"])
    argv = ["v1_5", "--budgets", "64", "--benchmarks", "gqa", "--no-baseline", "--", "--results", "results"]
    outcome = run_main(importlib.import_module("eval.run_table").main, argv)
    assert (outcome.kind, outcome.code) == ("exit", 0), outcome.message
    assert "done 0, already there 1, failed 0" in outcome.message and "61.0" in outcome.message
    assert snapshot(sandbox) == before
