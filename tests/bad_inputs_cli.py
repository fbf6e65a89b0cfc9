"""Bad inputs to every entry point (issue 20): what the test_bad_inputs_cli_*.py files share.

Each case is a row (name, argv, exit code, what the error says, the files it starts from). A case passes when
the command stops with that exit code, its message holds every fragment (the argument or file, the value, what
is allowed), no traceback is printed, no model loaded and no work began (a sentinel stands in for each loader,
trainer, subprocess and request: reaching one fails the case), and the sandbox (the current folder, holding the
earlier results the case starts from) is exactly as it was: no folder made, no file written, renamed or removed.

Commands run in this process through their `main(argv)`; only the shell logic of scripts/ runs in a subprocess.
`classify` sorts an outcome into clear error / unclear crash / silent result (the issue's counts).
The cases are split by area: eval (test_bad_inputs_cli_eval.py), the efficiency, analysis and scenette
modules (_tools.py), and the shell scripts with the checks beyond the tables (_scripts.py).
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


ONLY_ON_LINUX = pytest.mark.skipif(sys.platform != "linux", reason="the read-only and shell cases assume Linux")
