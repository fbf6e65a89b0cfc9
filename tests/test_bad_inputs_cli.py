"""Bad inputs to every entry point, one section per command line or script (issue 20).

Each case is a row (name, argv, exit code, what the error says, the files it starts from). A case passes when
the command stops with that exit code, its message holds every fragment (the argument or file, the value, what
is allowed), no traceback is printed, no model loaded and no work began (a sentinel stands in for each loader,
trainer, subprocess and request: reaching one fails the case), and the sandbox (the current folder, holding the
earlier results the case starts from) is exactly as it was: no folder made, no file written, renamed or removed.

Commands run in this process through their `main(argv)`; only the shell logic of scripts/ runs in a subprocess.
`classify` sorts an outcome into clear error / unclear crash / silent result (the issue's counts).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import pickle
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
KEY = "sk-test-never-sent"


class WorkStarted(Exception):
    """Raised by the sentinels: the command went on to load a model or to do its work."""


# Where each command starts loading a model or working (module, attribute).
SENTINELS = (
    ("llava", "load_pretrained_model"),  # eval.scenette, analysis checkpoints, the lmms-eval model
    ("llava.testing", "build_tiny_llava"),  # analysis' tiny and smoke models
    ("scenette.model", "load_default"),  # scenette.attention_check, analysis' scenette model
    ("analysis.study", "open_study"),  # python -m analysis
    ("analysis.notebooks", "execute"),  # python -m analysis.notebooks
    ("scenette.vision_training", "train"),  # python -m scenette.train_vision
    ("scenette.llava_training", "train"),  # python -m scenette.train_llava
    ("efficiency.command", "start_torch"),  # efficiency.baselines (and selection) after their checks
    ("efficiency.received_attention", "bench_tower"),
    ("requests", "post"),  # the judge's request, which carries the key
)


@dataclass
class Outcome:
    kind: str  # "exit" (SystemExit or a returned status), "work" (a sentinel was reached), "crash" (an exception)
    code: int | None
    message: str


def run_main(main, argv) -> Outcome:
    """`main(argv)` in this process, its output captured."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(list(argv))
        except WorkStarted as started:
            return Outcome("work", None, str(started))
        except SystemExit as done:
            if isinstance(done.code, str):
                return Outcome("exit", 1, done.code + "\n" + err.getvalue())
            return Outcome("exit", done.code or 0, err.getvalue() + out.getvalue())
        except Exception as error:  # noqa: BLE001 - an unclear crash is an outcome here
            return Outcome("crash", None, f"{type(error).__name__}: {error}")
    return Outcome("exit", status or 0, err.getvalue() + out.getvalue())


def run_script(script: str, argv, cwd: Path) -> Outcome:
    marker = cwd / ".python-started"  # scripts/ under test: the counting run's stand-in python leaves it
    done = subprocess.run(["bash", str(REPO / script), *argv], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "FAKE_PYTHON_MARKER": str(marker)})  # fmt: skip
    if marker.exists():
        marker.unlink()
        return Outcome("work", None, "python started the work")
    kind = "crash" if "Traceback (most recent call last)" in done.stderr else "exit"
    return Outcome(kind, done.returncode, done.stderr + done.stdout)


def snapshot(root: Path) -> dict:
    """Every file and folder under `root`: content, mode and modification time."""
    found = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        found[path.relative_to(root).as_posix()] = (path.read_bytes() if path.is_file() else None, info.st_mode,
                                                    info.st_mtime_ns)  # fmt: skip
    return found


def classify(outcome: Outcome, says: tuple, changed: bool) -> str:
    """clear: stopped before any work, nothing written, with an error naming the argument or file or the value
    (says[0] or says[1]; the tests ask for every fragment); silent: went on (exit 0, or reached a loader / the
    work); unclear: anything else (a traceback, an error naming neither, or one after something was written)."""
    if outcome.kind == "work" or (outcome.kind == "exit" and outcome.code == 0):
        return "silent"
    if outcome.kind == "crash" or changed or "Traceback (most recent call last)" in outcome.message:
        return "unclear"
    return "clear" if any(fragment in outcome.message for fragment in says[:2]) else "unclear"


# --- the sandbox each case starts from ---------------------------------------------------------------


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _json(path: Path, value) -> None:
    _write(path, json.dumps(value))


GQA = {"name": "gqa", "label": "GQA", "tasks": ["gqa"], "metrics": [["gqa", "exact_match"]], "scale": 100.0,
       "server": None, "judged": False, "extra": []}  # fmt: skip
LAUNCH_CELL = "results/llava-v1.5-7b/vispruner/n64_r0.5/gqa"
TYPES = ("existence", "colour", "shape", "count", "position", "reading")


def scenette_record(method: str, budget: int | None, per_type: int, **changes) -> dict:
    record = {
        "benchmark": "scenette", "method": method, "visual_token_num": budget,
        "options": {"important_ratio": 0.5} if method == "vispruner" else {}, "adapted": {}, "per_type": per_type,
        "limit": per_type, "checkpoint": "c0ffee", "conv_template": "vicuna_v1", "model": "/models/scenette",
        "visual_tokens": 576, "accuracy": dict.fromkeys(TYPES, 50.0), "mean": 50.0,
        "questions": dict.fromkeys(TYPES, per_type), "answers": {t: ["yes"] * per_type for t in TYPES},
        "seconds": 1.0, "batch_size": 8, "lmms_eval": "0.7.3",
        "hardware": {"device": "cpu", "cpu": "Test CPU", "cpu_threads": 1, "torch": "2.x", "transformers": "5.x",
                     "date": "2026-01-01T00:00:00+00:00"},
    }  # fmt: skip
    record.update(changes)
    return {key: value for key, value in record.items() if value is not DROP}


DROP = object()


class PickledCode:
    """A 'training state' whose unpickling runs code (it creates the file `pwned`)."""

    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('pwned').touch()",))


def _predictions(root: Path, items) -> None:
    _json(root / "preds" / "submissions" / "videoqa_predictions.json", items)


PREDICTIONS = [{"question_id": "q0", "question": "what?", "answer": "dance", "pred": "dancing"}]

SETUPS = {
    "file": lambda root: _write(root / "afile", "not a folder\n"),
    "ro": lambda root: (root / "ro").mkdir(mode=0o555),
    "ckpt": lambda root: _write(root / "ckpt" / "config.json", "{}"),
    "launch_results": lambda root: (
        _json(root / LAUNCH_CELL / "benchmark.json", GQA),
        _json(
            root / LAUNCH_CELL / "model_id" / "20260101_000000_results.json",
            {"results": {"gqa": {"exact_match,none": 0.61}}},
        ),
    ),  # fmt: skip
    "benchmark_json_cut": lambda root: _write(root / LAUNCH_CELL / "benchmark.json", '{"name": "gqa", "lab'),
    "results_foreign": lambda root: (
        _json(root / LAUNCH_CELL / "benchmark.json", GQA),
        _json(root / LAUNCH_CELL / "model_id" / "20260101_000000_results.json", {"config": {}}),
    ),
    "judged_foreign": lambda root: (
        _json(
            root / "results/Video-LLaVA-7B-hf/vispruner/n57_r0.5/msvd/benchmark.json",
            {"name": "msvd", "label": "MSVD", "tasks": ["videollava_msvd_qa"], "judged": True},
        ),
        _json(root / "results/Video-LLaVA-7B-hf/vispruner/n57_r0.5/msvd/judged.json", {"judge_model": "j"}),
    ),  # fmt: skip
    "server_score_bad": lambda root: (
        _json(
            root / "results/llava-v1.5-7b/vispruner/n64_r0.5/vqav2/benchmark.json",
            {"name": "vqav2", "label": "VQAv2", "tasks": ["vqav2_test"], "server": "EvalAI"},
        ),
        _json(root / "results/llava-v1.5-7b/vispruner/n64_r0.5/vqav2/server_score.json", {"value": "78,5"}),
    ),  # fmt: skip
    "cell_without_accuracy": lambda root: _json(
        root / "sweep/none/full_limit40.json", scenette_record("none", None, 40, accuracy=DROP)
    ),
    "preds": lambda root: _predictions(root, PREDICTIONS),
    "preds_cut": lambda root: _write(root / "preds/submissions/videoqa_predictions.json", '[{"question_id": "q0", "q'),
    "preds_foreign": lambda root: _predictions(root, [{"question_id": "q0", "question": "what?"}]),
    "judge_log_corrupt": lambda root: (
        _predictions(root, PREDICTIONS),
        _write(root / "preds/judge_log.jsonl", '{"question_id": "q0", "ver\n{"question_id": "q1"}\n'),
    ),
    "qa": lambda root: (
        _json(root / "q.json", [{"video_name": "abc", "question": "what?", "question_id": 1}]),
        _json(root / "a.json", [{"answer": "a", "type": 0, "question_id": 1}]),
        _write(root / "videos" / "abc.mp4", ""),
    ),
    "q_cut": lambda root: _write(root / "q_cut.json", '[{"video_name": "abc", "quest'),
    "q_foreign": lambda root: _json(root / "q_foreign.json", [{"question": "what?", "question_id": 1}]),
    "out_jsonl": lambda root: _write(root / "out.jsonl", "earlier\n"),
    # an interrupted sweep: the unpruned cell finished, VisPruner's cut short while it was written
    "sweep_cut": lambda root: (
        _json(root / "sweep/none/full_limit2.json", scenette_record("none", None, 2)),
        _write(root / "sweep/vispruner/n64_r0.5_limit2.json", '{"benchmark": "scenette", "method": "visp'),
    ),
    "sweep_foreign": lambda root: (
        _json(root / "sweep/none/full_limit2.json", scenette_record("none", None, 2)),
        _json(root / "sweep/vispruner/n64_r0.5_limit2.json", scenette_record("vispruner", 64, 2, accuracy=DROP)),
    ),
    "sweep_unavailable_cut": lambda root: (
        _json(root / "sweep/none/full_limit2.json", scenette_record("none", None, 2)),
        _write(root / "sweep/unavailable.json", '{"sparsevlm/n16_limit2": {"meth'),
    ),
    "reference_cut": lambda root: _write(root / "reference/none/full_limit40.json", '{"benchmark": "scen'),
    "config_cut": lambda root: _write(root / "config_cut.json", '{"model_type": "llava", "vision'),
    "config_bert": lambda root: _json(root / "config_bert.json", {"model_type": "bert"}),
    "report": lambda root: _write(root / "report.json", "{}\n"),
    "state_cut": lambda root: _write(root / "run/vision-state.pt", "PK\x03\x04 cut short"),
    "state_pickle": lambda root: (
        (root / "run").mkdir(),
        (root / "run/vision-state.pt").write_bytes(pickle.dumps({"step": 1, "payload": PickledCode()}, protocol=2)),
    ),
    "run_without_tower": lambda root: (root / "run").mkdir(),
    "run_with_tower": lambda root: _write(root / "run/vision_tower/config.json", "{}"),
    "not_a_model": lambda root: _write(root / "notes/todo.txt", "mine\n"),
    "manifest_cut": lambda root: _write(root / "data/manifest.json", '{"count": {"gener'),
    "flops_json": lambda root: _write(root / "flops/flops-llava-1.5-7b.json", "{}\n"),
}


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """The current folder is `tmp_path`; every loader and worker is a sentinel; the judge's key is set."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    for module, name in SENTINELS:
        monkeypatch.setattr(importlib.import_module(module), name, _sentinel(f"{module}.{name}"))
    launch = importlib.import_module("eval.launch")  # lmms-eval and the judge run as subprocesses
    monkeypatch.setattr(launch, "subprocess", _Subprocess())
    yield tmp_path
    for path in tmp_path.rglob("*"):  # let pytest clean up the read-only folders
        if path.is_dir() and not path.is_symlink():
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


def _sentinel(name: str):
    def reached(*args, **kwargs):
        raise WorkStarted(f"{name} was called")

    return reached


class _Subprocess:
    STDOUT = subprocess.STDOUT

    @staticmethod
    def run(command, *args, **kwargs):
        raise WorkStarted(f"subprocess {' '.join(map(str, command[:4]))} ...")


def prepare(root: Path, setups) -> dict:
    for name in setups:
        SETUPS[name](root)
    return snapshot(root)


def check(outcome: Outcome, code: int, says, before: dict, root: Path) -> None:
    after = snapshot(root)
    changed = sorted(set(before) ^ set(after) | {k for k in before if k in after and before[k] != after[k]})
    assert outcome.kind == "exit", f"{outcome.kind}: {outcome.message}"
    assert "Traceback (most recent call last)" not in outcome.message, outcome.message
    assert outcome.code == code, f"exit status {outcome.code}, not {code}: {outcome.message}"
    missing = [fragment for fragment in says if fragment not in outcome.message]
    assert not missing, f"the error does not say {missing}: {outcome.message}"
    assert not changed, f"the sandbox changed: {changed}"
    assert classify(outcome, says, bool(changed)) == "clear"


def cases(*rows):
    """pytest.param per row (name, argv, code, says, setups[, marks]), with the name as its id."""
    return [pytest.param(list(argv), code, tuple(says), tuple(setups), id=name, marks=marks)
            for name, argv, code, says, setups, *marks in rows]  # fmt: skip


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


ARGS = "argv, code, says, setups"


def in_process(module: str, argv, code, says, setups, root: Path) -> None:
    before = prepare(root, setups)
    outcome = run_main(importlib.import_module(module).main, argv)
    check(outcome, code, says, before, root)


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


# --- efficiency.flops -------------------------------------------------------------------------------------

FLOPS = cases(
    ("unknown-command", ["precise"], 2, ["'precise'", "exact"], []),
    ("tokens-zero", ["exact", "--tokens", "64", "0"], 2, ["--tokens", "'0'", "positive integer"], []),
    ("images-zero", ["exact", "--images", "0"], 2, ["--images", "'0'", "positive integer"], []),
    ("images-negative", ["exact", "--images", "-2"], 2, ["--images", "'-2'"], []),
    ("text-negative", ["exact", "--text-before", "-5"], 2, ["--text-before", "'-5'", ">= 0"], []),
    ("unknown-method", ["exact", "--methods", "bogus"], 2, ["bogus", "available"], []),
    ("config-missing", ["exact", "--config", "noconfig.json"], 2, ["--config", "noconfig.json"], []),
    ("config-cut-short", ["exact", "--config", "config_cut.json"], 2, ["--config", "config_cut.json"],
     ["config_cut"]),
    ("config-not-llava", ["exact", "--config", "config_bert.json"], 2, ["--config", "vision_config", "LLaVA"],
     ["config_bert"]),
    ("json-exists", ["exact", "--json", "report.json"], 2, ["--json", "report.json", "exists"], ["report"]),
    ("json-in-a-file", ["exact", "--json", "afile/flops.json"], 2, ["--json", "afile", "is a file"], ["file"]),
    ("json-read-only", ["exact", "--json", "ro/flops.json"], 2, ["--json", "ro", "read-only"], ["ro"]),
)  # fmt: skip


@pytest.mark.parametrize(ARGS, FLOPS)
def test_efficiency_flops(argv, code, says, setups, sandbox):
    in_process("efficiency.flops", argv, code, says, setups, sandbox)


# --- efficiency.baselines ---------------------------------------------------------------------------------

BASELINES = cases(
    ("device-unknown", ["--device", "gpu"], 2, ["--device gpu", "allowed: cpu"], []),
    ("device-absent", ["--device", "cuda:99"], 2, ["--device cuda:99", "CUDA"], []),
    ("tokens-zero", ["--tokens", "0"], 2, ["--tokens", "'0'", "positive integer"], []),
    ("tokens-all", ["--tokens", "64", "576"], 2, ["--tokens 576", "1 to 575"], []),
    ("threads-zero", ["--threads", "0"], 2, ["--threads", "'0'", "positive integer"], []),
    ("repeats-zero", ["--repeats", "0"], 2, ["--repeats", "0"], []),
    ("min-run-time-nan", ["--min-run-time", "nan"], 2, ["--min-run-time", "nan", "finite"], []),
    ("dtype-unknown", ["--dtype", "float8"], 2, ["--dtype", "'float8'", "float16"], []),
    ("output-exists", ["--output", "report.json"], 2, ["--output", "report.json", "exists"], ["report"]),
    ("output-in-a-file", ["--output", "afile/report.json"], 2, ["--output", "afile", "is a file"], ["file"]),
)  # fmt: skip


@pytest.mark.parametrize(ARGS, BASELINES)
def test_efficiency_baselines(argv, code, says, setups, sandbox):
    in_process("efficiency.baselines", argv, code, says, setups, sandbox)


# --- efficiency.received_attention ------------------------------------------------------------------------

RECEIVED = cases(
    ("crops-zero", ["--crops", "0"], 2, ["--crops", "'0'", "positive integer"], []),
    ("min-run-time-infinite", ["--min-run-time", "inf"], 2, ["--min-run-time", "inf", "finite"], []),
    ("warmup-negative", ["--warmup", "-1"], 2, ["--warmup", "-1"], []),
    ("output-exists", ["--output", "report.json"], 2, ["--output", "report.json", "exists"], ["report"]),
    ("output-read-only", ["--output", "ro/report.json"], 2, ["--output", "ro", "read-only"], ["ro"]),
)  # fmt: skip


@pytest.mark.parametrize(ARGS, RECEIVED)
def test_efficiency_received_attention(argv, code, says, setups, sandbox):
    in_process("efficiency.received_attention", argv, code, says, setups, sandbox)


# --- efficiency.hardware ----------------------------------------------------------------------------------

HARDWARE = cases(("unknown-option", ["--gpus"], 2, ["--gpus", "unrecognized"], []))


@pytest.mark.parametrize(ARGS, HARDWARE)
def test_efficiency_hardware(argv, code, says, setups, sandbox):
    in_process("efficiency.hardware", argv, code, says, setups, sandbox)


# --- python -m analysis -----------------------------------------------------------------------------------

ANALYSIS = cases(
    ("unknown-part", ["shiftt"], 2, ["shiftt", "shift, dispersion, pictures"], []),
    ("budget-zero", ["--budget", "0"], 2, ["--budget", "'0'", "positive integer"], []),
    ("per-type-negative", ["--per-type", "-1"], 2, ["--per-type", "'-1'", ">= 0"], []),
    ("limit-zero", ["--limit", "0"], 2, ["--limit", "'0'", "positive integer"], []),
    ("limit-negative", ["--limit", "-3"], 2, ["--limit", "'-3'"], []),
    ("layer-negative", ["--layer", "-1"], 2, ["--layer", "'-1'", ">= 0"], []),
    ("quartile-layer-negative", ["--quartile-layers", "0", "-2"], 2, ["--quartile-layers", "'-2'"], []),
    ("important-ratio-above-one", ["--important-ratio", "2"], 2, ["--important-ratio", "'2'", "[0, 1]"], []),
    ("max-new-tokens-zero", ["--max-new-tokens", "0"], 2, ["--max-new-tokens", "'0'"], []),
    ("threads-zero", ["--threads", "0"], 2, ["--threads", "'0'"], []),
    ("model-missing", ["--model", "./nope"], 2, ["--model", "./nope", "scenette, tiny, smoke"], []),
    ("data-missing", ["--data", "questions.jsonl"], 2, ["--data", "questions.jsonl", "does not exist"], []),
    ("image-folder-missing", ["--image-folder", "images"], 2, ["--image-folder", "images"], []),
    ("device-unknown", ["--device", "gpu"], 2, ["--device gpu", "allowed: cpu"], []),
    ("device-absent", ["--device", "cuda:99"], 2, ["--device cuda:99", "CUDA"], []),
    ("dtype-unknown", ["--dtype", "float17"], 2, ["--dtype", "'float17'", "float16"], []),
    ("template-unknown", ["--template", "chatml"], 2, ["--template", "'chatml'", "vicuna_v1"], []),
    ("dtype-for-a-named-model", ["--dtype", "float16"], 2, ["--dtype float16", "checkpoints"], []),
    ("smoke-with-a-model", ["--smoke", "--model", "tiny"], 2, ["--smoke", "--model"], []),
    ("figures-is-a-file", ["--figures", "afile"], 2, ["--figures", "afile", "is a file"], ["file"]),
    ("results-read-only", ["--results", "ro/analysis"], 2, ["--results", "ro", "read-only"], ["ro"]),
)  # fmt: skip


@pytest.mark.parametrize(ARGS, ANALYSIS)
def test_analysis(argv, code, says, setups, sandbox):
    in_process("analysis.__main__", argv, code, says, setups, sandbox)


# --- python -m analysis.notebooks -------------------------------------------------------------------------

NOTEBOOKS = cases(
    ("unknown-notebook", ["nope", "--output", "nb"], 2, ["nope", "attention_shift"], []),
    ("output-missing", [], 2, ["--output"], []),
    ("output-is-a-file", ["--output", "afile"], 2, ["--output", "afile", "is a file"], ["file"]),
    ("threads-zero", ["--output", "nb", "--threads", "0"], 2, ["--threads", "'0'"], []),
    ("figures-is-a-file", ["--output", "nb", "--figures", "afile"], 2, ["--figures", "afile"], ["file"]),
)  # fmt: skip


@pytest.mark.parametrize(ARGS, NOTEBOOKS)
def test_analysis_notebooks(argv, code, says, setups, sandbox):
    in_process("analysis.notebooks", argv, code, says, setups, sandbox)


# --- python -m scenette.train_vision (stage 1 of scripts/train_scenette.sh) -------------------------------

TRAIN_VISION = cases(
    ("steps-zero", ["--steps", "0"], 2, ["--steps", "'0'", "positive integer"], []),
    ("batch-size-negative", ["--batch-size", "-1"], 2, ["--batch-size", "'-1'"], []),
    ("lr-nan", ["--lr", "nan"], 2, ["--lr", "'nan'", "finite"], []),
    ("lr-negative", ["--lr", "-0.1"], 2, ["--lr", "'-0.1'", "> 0"], []),
    ("save-every-zero", ["--save-every", "0"], 2, ["--save-every", "'0'"], []),
    ("signs-zero", ["--signs", "0"], 2, ["--signs", "'0'"], []),
    ("threads-negative", ["--threads", "-1"], 2, ["--threads", "'-1'", ">= 0"], []),
    ("run-dir-is-a-file", ["--run-dir", "afile"], 2, ["--run-dir", "afile", "is a file"], ["file"]),
    ("run-dir-read-only", ["--run-dir", "ro/run"], 2, ["--run-dir", "ro", "read-only"], ["ro"]),
    ("state-cut-short", ["--run-dir", "run"], 1, ["vision-state.pt", "not a training state", "left as it is"],
     ["state_cut"]),
    ("state-that-runs-code", ["--run-dir", "run"], 1, ["vision-state.pt", "not a training state"], ["state_pickle"]),
)  # fmt: skip


@pytest.mark.parametrize(ARGS, TRAIN_VISION)
def test_scenette_train_vision(argv, code, says, setups, sandbox):
    in_process("scenette.train_vision", argv, code, says, setups, sandbox)
    assert not (sandbox / "pwned").exists(), "unpickling the state ran its code"


# --- python -m scenette.train_llava (stage 2) -------------------------------------------------------------

TRAIN_LLAVA = cases(
    ("system-share-above-one", ["--system-share", "1.5"], 2, ["--system-share", "'1.5'", "[0, 1]"], []),
    ("compact-share-nan", ["--compact-share", "nan"], 2, ["--compact-share", "'nan'"], []),
    ("turns-zero", ["--turns", "0"], 2, ["--turns", "'0'"], []),
    ("pool-zero", ["--pool", "0"], 2, ["--pool", "'0'"], []),
    ("validate-every-not-a-multiple", ["--validate-every", "30"], 2, ["--validate-every 30", "multiple", "50"], []),
    ("no-vision-tower", ["--run-dir", "run"], 2, ["--run-dir", "vision_tower", "train_vision"],
     ["run_without_tower"]),
    ("output-is-a-file", ["--run-dir", "run", "--output", "afile"], 2, ["--output", "afile", "is a file"],
     ["run_with_tower", "file"]),
    ("output-not-a-model-folder", ["--run-dir", "run", "--output", "notes"], 2, ["--output", "notes", "config.json"],
     ["run_with_tower", "not_a_model"]),
)  # fmt: skip


@pytest.mark.parametrize(ARGS, TRAIN_LLAVA)
def test_scenette_train_llava(argv, code, says, setups, sandbox):
    in_process("scenette.train_llava", argv, code, says, setups, sandbox)


# --- python -m scenette.attention_check and python -m scenette.data ---------------------------------------

ATTENTION_CHECK = cases(
    ("images-zero", ["--images", "0"], 2, ["--images", "'0'", "positive integer"], []),
    ("images-negative", ["--images", "-5"], 2, ["--images", "'-5'"], []),
    ("model-missing", ["--model", "nowhere"], 2, ["--model", "nowhere"], []),
)


@pytest.mark.parametrize(ARGS, ATTENTION_CHECK)
def test_scenette_attention_check(argv, code, says, setups, sandbox):
    in_process("scenette.attention_check", argv, code, says, setups, sandbox)


DATA = cases(
    ("output-is-a-file", ["--output", "afile"], 2, ["--output", "afile", "is a file"], ["file"]),
    ("output-read-only", ["--output", "ro/data"], 2, ["--output", "ro", "read-only"], ["ro"]),
    ("manifest-cut-short", ["--output", "data"], 1, ["manifest.json", "not valid JSON"], ["manifest_cut"]),
)


@pytest.mark.parametrize(ARGS, DATA)
def test_scenette_data(argv, code, says, setups, sandbox):
    in_process("scenette.data", argv, code, says, setups, sandbox)


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


if sys.platform != "linux":  # the read-only and shell cases assume Linux
    pytestmark = pytest.mark.skip("Linux only")


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
