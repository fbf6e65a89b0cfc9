"""Bad inputs to the eval commands and scripts (issue 20): eval.launch, run_table, paper_tables, judge,
tables, video_data, scenette, the plugin and the lmms-eval model's arguments. How a case is run and
checked: bad_inputs_cli.py."""

from __future__ import annotations

import pytest

from bad_inputs_cli import ARGS, ONLY_ON_LINUX, cases, check, in_process, prepare, run_main

pytestmark = ONLY_ON_LINUX


# --- eval.launch: scripts/launch.sh and scripts/<family>/eval/<benchmark>.sh -----------------------------

RUN = ["--model", "ckpt", "--results", "results"]  # a real run (not --dry-run): paths are checked too
LAUNCH = cases(
    ("tokens-zero", ["v1_5", "gqa", "0", "0.5"], 2, ["TOKENS", "'0'", "positive integer"], []),
    ("tokens-negative", ["v1_5", "gqa", "-5", "0.5"], 2, ["TOKENS", "'-5'", "positive integer"], []),
    ("tokens-fraction", ["v1_5", "gqa", "1.5", "0.5"], 2, ["TOKENS", "'1.5'"], []),
    ("ratio-nan", ["v1_5", "gqa", "64", "nan"], 2, ["RATIO", "nan", "[0, 1]"], []),
    ("ratio-inf", ["v1_5", "gqa", "64", "inf"], 2, ["RATIO", "inf", "[0, 1]"], []),
    ("ratio-above-one", ["v1_5", "gqa", "64", "1.5"], 2, ["RATIO", "1.5", "[0, 1]"], []),
    ("ratio-word", ["v1_5", "gqa", "64", "half"], 2, ["RATIO", "'half'"], []),
    ("full-with-a-ratio", ["v1_5", "gqa", "full", "0.5", *RUN], 2, ["RATIO", "'0.5'", "'-'"], ["ckpt"]),
    ("ratio-for-fastv", ["v1_5", "gqa", "64", "0.5", "fastv", "--dry-run"], 2, ["RATIO", "fastv", "'-'"], []),
    ("unknown-method", ["v1_5", "gqa", "64", "-", "fastvv", "--dry-run"], 2, ["METHOD", "'fastvv'", "allowed"], []),
    ("bad-method-option", ["v1_5", "gqa", "64", "-", "fastv", "--model-arg", "layer=-3", "--dry-run"], 2,
     ["fastv", "layer", "-3"], []),
    ("unknown-benchmark", ["v1_5", "nope", "64", "0.5"], 2, ["benchmark", "'nope'", "known:"], []),
    ("unknown-template", ["v1_5", "gqa", "64", "0.5", "--conv-template", "chatml", "--dry-run"], 2,
     ["--conv-template", "'chatml'", "vicuna_v1"], []),
    ("other-familys-benchmark", ["v1_5", "msvd", "64", "0.5", "--dry-run"], 2, ["msvd", "v1_5", "allowed"], []),
    ("metric-without-tasks", ["v1_5", "gqa", "64", "0.5", "--metric", "gqa:acc", "--dry-run"], 2,
     ["--metric", "--tasks"], []),
    ("metric-without-colon", ["v1_5", "probe", "8", "0.5", "--tasks", "t", "--metric", "tacc"], 2,
     ["--metric", "'tacc'", "TASK:METRIC"], []),
    ("gpus-zero", ["v1_5", "gqa", "64", "0.5", "--gpus", "0"], 2, ["--gpus", "'0'", "positive integer"], []),
    ("batch-size-negative", ["v1_5", "gqa", "64", "0.5", "--batch-size", "-2"], 2, ["--batch-size", "'-2'"], []),
    ("limit-zero", ["v1_5", "gqa", "64", "0.5", "--limit", "0", "--dry-run"], 2, ["--limit", "'0'", "> 0"], []),
    ("limit-nan", ["v1_5", "gqa", "64", "0.5", "--limit", "nan", "--dry-run"], 2, ["--limit", "'nan'"], []),
    ("limit-not-whole", ["v1_5", "gqa", "64", "0.5", "--limit", "2.5", "--dry-run"], 2,
     ["--limit", "2.5", "whole number"], []),
    ("scale-infinite", ["v1_5", "probe", "8", "0.5", "--tasks", "t", "--metric", "t:acc", "--scale", "inf"], 2,
     ["--scale", "'inf'", "finite"], []),
    ("model-arg-without-value", ["v1_5", "gqa", "64", "0.5", "--model-arg", "dtype"], 2,
     ["--model-arg", "'dtype'", "KEY=VALUE"], []),
    ("model-arg-with-comma", ["v1_5", "gqa", "64", "0.5", "--model-arg", "note=a,b", "--dry-run"], 2,
     ["commas", "note=a,b"], []),
    ("missing-model", ["v1_5", "gqa", "64", "0.5", "--model", "./nope", "--results", "results"], 2,
     ["--model", "./nope", "Hub id"], ["launch_results"]),
    ("model-folder-without-config", ["v1_5", "gqa", "64", "0.5", "--model", "results", "--results", "results"], 2,
     ["--model", "config.json"], ["launch_results"]),
    ("device-unknown", ["v1_5", "gqa", "64", "0.5", "--device", "gpu", *RUN], 2,
     ["--device", "'gpu'", "cpu, cuda"], ["ckpt"]),
    ("device-absent", ["v1_5", "gqa", "64", "0.5", "--device", "cuda:99", *RUN], 2, ["--device cuda:99", "CUDA"],
     ["ckpt"]),
    ("results-is-a-file", ["v1_5", "gqa", "64", "0.5", "--model", "ckpt", "--results", "afile"], 2,
     ["--results", "afile", "is a file"], ["ckpt", "file"]),
    ("results-read-only", ["v1_5", "gqa", "64", "0.5", "--model", "ckpt", "--results", "ro/results"], 2,
     ["--results", "ro", "read-only"], ["ckpt", "ro"]),
    ("include-path-missing", ["v1_5", "gqa", "64", "0.5", "--include-path", "nowhere", *RUN], 2,
     ["--include-path", "nowhere"], ["ckpt"]),
    ("judge-workers-zero", ["video", "msvd", "64", "0.5", "--judge-workers", "0", "--dry-run"], 2,
     ["--judge-workers", "'0'"], []),
    ("judge-over-http", ["video", "msvd", "64", "0.5", "--judge-endpoint", "http://judge.example.com/v1",
                         "--dry-run"], 2, ["--judge-endpoint", "http://judge.example.com/v1", "https://"], []),
    ("judge-key-file-missing", ["video", "msvd", "64", "0.5", "--judge-key-file", "nokey", *RUN], 2,
     ["--judge-key-file", "nokey"], ["ckpt"]),
)  # fmt: skip


@pytest.mark.parametrize(ARGS, LAUNCH)
def test_eval_launch(argv, code, says, setups, sandbox):
    in_process("eval.launch", argv, code, says, setups, sandbox)


# --- eval.run_table: scripts/eval_table.sh ----------------------------------------------------------------

TABLE = cases(
    ("unknown-family", ["v2"], 2, ["family", "'v2'", "v1_5"], []),
    ("budget-zero", ["v1_5", "--budgets", "64", "0", "--dry-run"], 2, ["--budgets", "'0'", "positive integer"], []),
    ("budget-word", ["v1_5", "--budgets", "lots"], 2, ["--budgets", "'lots'"], []),
    ("ratio-above-one", ["v1_5", "--ratio", "2", "--dry-run"], 2, ["--ratio", "'2'", "[0, 1]"], []),
    ("unknown-method", ["v1_5", "--methods", "vispruner", "fastvv", "--", "--dry-run"], 2,
     ["--methods", "fastvv", "allowed"], []),
    ("ratio-nobody-takes", ["v1_5", "--methods", "fastv", "--ratio", "0.3", "--dry-run"], 2,
     ["--ratio 0.3", "fastv"], []),
    ("benchmark-of-another-family", ["v1_5", "--benchmarks", "msvd"], 2, ["msvd", "allowed"], []),
    ("bad-run-option", ["v1_5", "--budgets", "64", "--", "--gpus", "0"], 2, ["--gpus", "'0'"], []),
    ("missing-model", ["v1_5", "--budgets", "64", "--benchmarks", "gqa", "--no-baseline", "--", "--model", "./nope"],
     2, ["--model", "./nope", "Hub id"], ["launch_results"]),
)  # fmt: skip


@pytest.mark.parametrize(ARGS, TABLE)
def test_eval_run_table(argv, code, says, setups, sandbox):
    in_process("eval.run_table", argv, code, says, setups, sandbox)


# --- eval.paper_tables: scripts/paper_table.sh ------------------------------------------------------------

PAPER = cases(
    ("unknown-recipe", ["table9"], 2, ["table9", "table1"], []),
    ("label-not-in-table", ["table1", "--labels", "100"], 2, ["--labels", "100", "allowed: 128 64 32"], []),
    ("part-without-recipe", ["--benchmarks", "gqa"], 2, ["--benchmarks", "name one"], []),
    ("bad-run-option", ["table1", "--benchmarks", "gqa", "--", "--gpus", "0"], 2, ["--gpus", "'0'"], []),
    ("missing-model", ["table1", "--benchmarks", "gqa", "--labels", "64", "--", "--model", "./nope"], 2,
     ["--model", "./nope"], ["launch_results"]),
)  # fmt: skip


@pytest.mark.parametrize(ARGS, PAPER)
def test_eval_paper_tables(argv, code, says, setups, sandbox):
    in_process("eval.paper_tables", argv, code, says, setups, sandbox)


# --- eval.judge -------------------------------------------------------------------------------------------

JUDGE = cases(
    ("workers-zero", ["preds", "--judge-workers", "0"], 2, ["--judge-workers", "'0'"], ["preds"]),
    ("endpoint-over-http", ["preds", "--judge-endpoint", "http://judge.example.com/v1"], 2,
     ["--judge-endpoint", "http://judge.example.com/v1", "https://"], ["preds"]),
    ("endpoint-not-a-url", ["preds", "--judge-endpoint", "judge.example.com/v1"], 2,
     ["--judge-endpoint", "judge.example.com/v1", "https://"], ["preds"]),
    ("key-file-missing", ["preds", "--judge-key-file", "nokey"], 2, ["--judge-key-file", "nokey"], ["preds"]),
    ("folder-missing", ["nowhere"], 2, ["nowhere", "not a folder"], []),
    ("predictions-cut-short", ["preds"], 1, ["videoqa_predictions.json", "not valid JSON", "left as it is"],
     ["preds_cut"]),
    ("predictions-foreign", ["preds"], 1, ["videoqa_predictions.json", "pred"], ["preds_foreign"]),
    ("log-line-corrupt", ["preds"], 1, ["judge_log.jsonl", "line 1"], ["judge_log_corrupt"]),
)  # fmt: skip


@pytest.mark.parametrize(ARGS, JUDGE)
def test_eval_judge(argv, code, says, setups, sandbox):
    in_process("eval.judge", argv, code, says, setups, sandbox)


# --- eval.tables ------------------------------------------------------------------------------------------

TABLES = cases(
    ("folder-missing", ["nowhere"], 2, ["nowhere", "no such folder"], []),
    ("out-is-a-file", ["results", "--out", "afile"], 2, ["--out", "afile", "is a file"], ["launch_results", "file"]),
    ("out-read-only", ["results", "--out", "ro/tables"], 2, ["--out", "ro", "read-only"], ["launch_results", "ro"]),
    ("family-without-paper", ["results", "--family", "v1_5"], 2, ["--family", "--paper"], ["launch_results"]),
    ("model-not-there", ["results", "--model", "nosuch"], 2, ["--model", "nosuch", "found: llava-v1.5-7b"],
     ["launch_results"]),
    ("benchmark-json-cut-short", ["results"], 1, ["benchmark.json", "not valid JSON", "left as it is"],
     ["benchmark_json_cut"]),
    ("results-file-foreign", ["results"], 1, ["20260101_000000_results.json", "results"], ["results_foreign"]),
    ("judged-json-foreign", ["results"], 1, ["judged.json", "accuracy"], ["judged_foreign"]),
    ("server-score-not-a-number", ["results"], 1, ["server_score.json", "'78,5'"], ["server_score_bad"]),
    ("scenette-cell-without-accuracy", ["sweep"], 1, ["full_limit40.json", "accuracy"], ["cell_without_accuracy"]),
)  # fmt: skip


@pytest.mark.parametrize(ARGS, TABLES)
def test_eval_tables(argv, code, says, setups, sandbox):
    in_process("eval.tables", argv, code, says, setups, sandbox)


# --- eval.video_data --------------------------------------------------------------------------------------

QA = ["--answers", "a.json", "--videos", "videos", "--out", "new.jsonl"]
VIDEO_DATA = cases(
    ("unknown-benchmark", ["msvdd", "--questions", "q.json", *QA], 2, ["msvdd", "msvd"], ["qa"]),
    ("questions-missing", ["msvd", "--questions", "noq.json", *QA], 2, ["--questions", "noq.json"], ["qa"]),
    ("questions-cut-short", ["msvd", "--questions", "q_cut.json", *QA], 1, ["q_cut.json", "not valid JSON"],
     ["qa", "q_cut"]),
    ("questions-foreign", ["msvd", "--questions", "q_foreign.json", *QA], 1, ["q_foreign.json", "video_name"],
     ["qa", "q_foreign"]),
    ("videos-not-a-folder", ["msvd", "--questions", "q.json", "--answers", "a.json", "--videos", "afile"], 2,
     ["--videos", "afile", "expected a folder"], ["qa", "file"]),
    ("out-exists", ["msvd", "--questions", "q.json", "--answers", "a.json", "--videos", "videos", "--out",
                    "out.jsonl"], 2, ["--out", "out.jsonl", "exists"], ["qa", "out_jsonl"]),
    ("out-in-a-file", ["msvd", "--questions", "q.json", "--answers", "a.json", "--videos", "videos", "--out",
                       "afile/qa.jsonl"], 2, ["--out", "afile", "is a file"], ["qa", "file"]),
)  # fmt: skip


@pytest.mark.parametrize(ARGS, VIDEO_DATA)
def test_eval_video_data(argv, code, says, setups, sandbox):
    in_process("eval.video_data", argv, code, says, setups, sandbox)


# --- eval.scenette: scripts/scenette.sh (the shipped checkpoint; its model never loads here) ------------

SMALL = ["--methods", "vispruner", "--budgets", "64", "--per-type", "2"]
SCENETTE = cases(
    ("budget-zero", ["--budgets", "0"], 2, ["--budgets", "'0'", "positive integer"], []),
    ("budget-above-the-tokens", ["--budgets", "1000"], 2, ["--budgets 1000", "576", "allowed: 1 to 576"], []),
    ("unknown-method", ["--methods", "nosuch"], 2, ["--methods", "nosuch", "allowed"], []),
    ("model-missing", ["--model", "nowhere"], 2, ["--model", "nowhere", "config.json"], []),
    ("per-type-zero", ["--per-type", "0"], 2, ["--per-type", "'0'"], []),
    ("threads-negative", ["--threads", "-1"], 2, ["--threads", "'-1'"], []),
    ("device-unknown", [*SMALL, "--device", "gpu"], 2, ["--device gpu", "allowed: cpu"], []),
    ("device-absent", [*SMALL, "--device", "cuda:99"], 2, ["--device cuda:99", "CUDA"], []),
    ("output-is-a-file", [*SMALL, "--output", "afile"], 2, ["--output", "afile", "is a file"], ["file"]),
    ("output-read-only", [*SMALL, "--output", "ro/run"], 2, ["--output", "ro", "read-only"], ["ro"]),
    ("reference-is-a-file", [*SMALL, "--reference", "afile"], 2, ["--reference", "afile"], ["file"]),
    ("cell-cut-short-with-rerun", [*SMALL, "--output", "sweep", "--rerun"], 1,
     ["n64_r0.5_limit2.json", "not valid JSON", "left as it is"], ["sweep_cut"]),
    ("cell-without-accuracy", [*SMALL, "--output", "sweep"], 1, ["n64_r0.5_limit2.json", "accuracy"],
     ["sweep_foreign"]),
    ("unavailable-json-cut-short", [*SMALL, "--output", "sweep"], 1, ["unavailable.json", "not valid JSON"],
     ["sweep_unavailable_cut"]),
    ("reference-cell-cut-short", [*SMALL, "--reference", "reference"], 1, ["full_limit40.json", "not valid JSON"],
     ["reference_cut"]),
)  # fmt: skip


@pytest.mark.parametrize(ARGS, SCENETTE)
def test_eval_scenette(argv, code, says, setups, sandbox):
    in_process("eval.scenette", argv, code, says, setups, sandbox)


# --- eval.plugin ------------------------------------------------------------------------------------------

PLUGIN = cases(
    ("no-command", [], 2, ["COMMAND"], []),
    ("unknown-command", ["tasks"], 2, ["'tasks'", "tasks-path"], []),
)


@pytest.mark.parametrize(ARGS, PLUGIN)
def test_eval_plugin(argv, code, says, setups, sandbox):
    in_process("eval.plugin.__main__", argv, code, says, setups, sandbox)


# --- the lmms-eval model `vispruner` (--model_args of python -m lmms_eval): checked before loading ------
# eval.plugin.model.PrunedLlava calls eval.plugin.arguments before the checkpoint loads (model.py imports
# lmms-eval, seconds: the checks are called directly here; tests/test_eval_plugin.py builds the model).

GOOD_MODEL_ARGS = {"pretrained": "ckpt", "method": "vispruner", "visual_token_num": 64, "options": {},
                   "response_log": None}  # fmt: skip
MODEL_ARGS = cases(
    ("pretrained-missing", [{"pretrained": "./nope"}], 1, ["pretrained=./nope", "Hub id"], ["ckpt"]),
    ("method-unknown", [{"method": "fastvv"}], 1, ["method=fastvv", "allowed"], ["ckpt"]),
    ("budget-missing", [{"visual_token_num": None}], 1, ["visual_token_num", "required"], ["ckpt"]),
    ("budget-zero", [{"visual_token_num": 0}], 1, ["visual_token_num", "positive integer", "0"], ["ckpt"]),
    ("budget-fraction", [{"visual_token_num": 6.5}], 1, ["visual_token_num", "6.5"], ["ckpt"]),
    ("response-log-in-a-file", [{"response_log": "afile/responses"}], 1, ["response_log=afile/responses", "a file"],
     ["ckpt", "file"]),
    ("device-unknown", [{"device": "gpu"}], 1, ["device=gpu", "allowed: cpu"], ["ckpt"]),
)  # fmt: skip


def check_model_args(argv):
    from eval.plugin.arguments import check_before_loading, check_device

    (changes,) = argv
    arguments = {**GOOD_MODEL_ARGS, **changes}
    try:
        check_device(arguments.pop("device", "cpu"))
        check_before_loading(**arguments)
    except ValueError as error:  # what lmms-eval reports for a model that cannot be built
        raise SystemExit(str(error)) from None
    return 0


@pytest.mark.parametrize(ARGS, MODEL_ARGS)
def test_lmms_eval_model_arguments(argv, code, says, setups, sandbox):
    before = prepare(sandbox, setups)
    check(run_main(check_model_args, argv), code, says, before, sandbox)
