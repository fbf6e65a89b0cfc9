"""Benchmark scripts: --dry-run prints a well-formed command (and does nothing else, wherever it is
placed), every task they name exists, and a run fails when lmms-eval writes no results."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from eval import launch, run_table
from eval.benchmarks import BENCHMARKS, FAMILIES
from eval_fixtures import write_fake_lmms_eval

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(REPO.glob("scripts/*/eval/*.sh"))


def installed_task_names() -> set[str]:
    """Task, group and tag names defined by lmms-eval's own task files (what its index is keyed by)."""
    lmms_eval = pytest.importorskip("lmms_eval")
    names = set()
    for path in (Path(lmms_eval.__file__).parent / "tasks").rglob("*.yaml"):
        text = path.read_text(errors="ignore")
        names.update(re.findall(r"^(?:task|group|tag):\s*[\"']?([\w.\-]+)", text, flags=re.M))
    return names


def our_task_names() -> set[str]:
    from lmms_eval.tasks import TaskManager

    return set(TaskManager("ERROR", include_path=str(REPO / "eval" / "tasks"), include_defaults=False).all_tasks)


def test_every_benchmark_has_one_script_per_family():
    expected = {f"{family}/eval/{bench}.sh" for family, spec in FAMILIES.items() for bench in spec["benchmarks"]}
    assert {str(p.relative_to(REPO / "scripts")) for p in SCRIPTS} == expected


def test_every_task_a_script_runs_exists():
    ours, installed = our_task_names(), installed_task_names()
    assert {"textvqa_val_ocr", "pope_paper", "mmvet_paper", "videollava_msvd_qa"} <= ours
    assert not ours & installed, "our task names must not shadow lmms-eval's"
    for spec in BENCHMARKS.values():
        for task in spec.tasks + tuple(task for task, _ in spec.metrics):
            assert task in ours | installed, (
                f"{spec.name}: task {task} exists neither in lmms-eval 0.7.3 nor in eval/tasks"
            )


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(REPO / "scripts")))
def test_dry_run_prints_the_exact_command(script):
    family, bench = script.parent.parent.name, script.stem
    done = subprocess.run(["bash", str(script), "64", "0.5", "--dry-run"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    commands = [shlex.split(line) for line in done.stdout.strip().splitlines()]
    evaluate = commands[0]
    assert evaluate[1:3] == ["-m", "lmms_eval"] and Path(evaluate[0]).name.startswith("python")
    flags = dict(zip(evaluate[3::2], evaluate[4::2]))
    assert flags["--model"] == "vispruner" and flags["--tasks"] == ",".join(BENCHMARKS[bench].tasks)
    model_args = dict(item.split("=", 1) for item in flags["--model_args"].split(","))
    assert model_args["pretrained"] == FAMILIES[family]["model"]
    assert (model_args["method"], model_args["visual_token_num"], model_args["important_ratio"]) == (
        "vispruner",
        "64",
        "0.5",
    )
    assert model_args.get("conv_template") == FAMILIES[family]["conv_template"]  # chat families: none
    assert (model_args.get("paper_mode") == "true") == (family == "v1_6")
    out = Path(flags["--output_path"])
    assert out.parts[-3:] == ("vispruner", "n64_r0.5", bench) and out.parts[-5] == "results"
    assert model_args["response_log"] == str(out / "responses")
    assert Path(flags["--include_path"]) == REPO / "eval" / "tasks"
    assert len(commands) == (2 if BENCHMARKS[bench].judged else 1)
    if BENCHMARKS[bench].judged:
        assert commands[1][1:4] == ["-m", "eval.judge", str(out)]


def dry(argv, capsys):
    launch.run(launch.parse_args(argv + ["--dry-run"]))
    return shlex.split(capsys.readouterr().out.strip().splitlines()[0])


def test_gpus_model_limit_and_unpruned_runs(capsys, monkeypatch):
    command = dry(
        ["v1_5", "gqa", "32", "0.75", "--gpus", "4", "--limit", "10", "--model", "/ckpt/llava-v1.5-13b/"], capsys
    )
    assert command[:5] == ["accelerate", "launch", "--num_processes=4", "-m", "lmms_eval"]
    assert command[command.index("--limit") + 1] == "10"
    assert command[command.index("--output_path") + 1].endswith("llava-v1.5-13b/vispruner/n32_r0.75_limit10/gqa")
    monkeypatch.setenv("MODEL_PATH", "/models/mine")
    command = dry(["v1_5", "mme", "full", "-"], capsys)
    assert "pretrained=/models/mine,method=none,conv_template=vicuna_v1," in command[command.index("--model_args") + 1]
    assert command[command.index("--output_path") + 1].endswith("mine/none/full/mme")
    command = dry(["v1_5", "mme", "64", "-", "fastv", "--model-arg", "dtype=bfloat16"], capsys)
    model_args = command[command.index("--model_args") + 1]
    assert "method=fastv,visual_token_num=64,conv_template" in model_args and model_args.endswith(",dtype=bfloat16")


def test_extra_model_arguments_are_part_of_the_results_folder(capsys):
    video = ["video", "msvd", "455", "0.5", "--model-arg", "frame_cls=false", "--model-arg=video_token_num=455",
             "--model-arg", "video_split=first", "--model-arg", "video_split=even"]  # fmt: skip
    command = dry(video, capsys)
    out = command[command.index("--output_path") + 1]
    assert out.endswith("/vispruner/n455_r0.5+frame_cls=false+video_split=even+video_token_num=455/msvd")
    model_args = dict(item.split("=", 1) for item in command[command.index("--model_args") + 1].split(","))
    assert model_args["video_split"] == "even" and model_args["response_log"] == f"{out}/responses"  # the last wins
    plain = launch.output_folder(launch.parse_args(["video", "msvd", "455", "0.5"]))
    assert plain.parent.name == "n455_r0.5" and str(plain) != out


def test_a_known_benchmark_answered_by_other_tasks_keeps_its_column():
    args = launch.parse_args(["v1_5", "pope", "64", "0.5", "--tasks", "scenette_reading",
                              "--metric", "scenette_reading:exact_match"])  # fmt: skip
    assert (args.spec.name, args.spec.label, args.spec.tasks) == ("pope", "POPE", ("scenette_reading",))
    assert args.spec.metrics == (("scenette_reading", "exact_match"),) and not args.spec.judged
    other = launch.parse_args(["v1_5", "probe", "8", "0.5", "--tasks", "t", "--metric", "t:acc"])
    assert (other.spec.name, other.spec.label) == ("probe", "probe")


@pytest.mark.parametrize(
    "argv, message",
    [(["v1_5", "mme", "64", "1.5"], "RATIO must be in"), (["v1_5", "mme", "sixty", "0.5"], "TOKENS must be"),
     (["v1_5", "nope", "64", "0.5"], "unknown benchmark"), (["v1_5", "mme", "64", "0.5", "none"], "use TOKENS=full")],
)  # fmt: skip
def test_bad_arguments_are_named(argv, message, capsys):
    with pytest.raises(SystemExit):
        launch.parse_args(argv)
    assert message in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("placement", ["before --", "after --"])
def test_table_runner_covers_every_cell_and_a_dry_run_writes_nothing(placement, tmp_path):
    results = tmp_path / "results"
    table_options = ["v1_5", "--methods", "vispruner", "fastv", "--budgets", "128", "64"]
    run_options = ["--gpus", "2", "--results", str(results)]
    if placement == "before --":
        argv = table_options + ["--dry-run", "--"] + run_options
    else:  # as the README places --gpus
        argv = table_options + ["--"] + run_options + ["--dry-run"]
    done = subprocess.run(["bash", str(REPO / "scripts" / "eval_table.sh"), *argv], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    table = FAMILIES["v1_5"]["table"]
    assert len(lines) == len(table) * (1 + 2 * 2)
    assert sum("method=none" in line for line in lines) == len(table)
    assert all(line.startswith("accelerate launch --num_processes=2") for line in lines)
    assert list(tmp_path.iterdir()) == [], "a dry run creates no folder and no file"


@pytest.mark.slow
@pytest.mark.parametrize("script", ["scripts/v1_5/eval/mme.sh", "scripts/video/eval/msvd.sh"])
def test_a_dry_run_after_the_separator_prints_the_same_and_writes_nothing(script, tmp_path):
    def dry(*argv):
        done = subprocess.run(["bash", str(REPO / script), "64", "0.5", *argv], capture_output=True, text=True,
                              cwd=tmp_path, timeout=60)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    results = ["--results", str(tmp_path / "results")]
    before = dry("--dry-run", *results)
    assert "-m lmms_eval" in before
    assert dry("--", "--dry-run", *results) == before == dry(*results, "--", "--dry-run")
    assert list(tmp_path.iterdir()) == []


def test_finished_runs_are_kept_reruns_keep_them_and_video_runs_resume_at_the_judge(tmp_path, monkeypatch):
    calls = []

    def fake_run(command, stdout, stderr, env):  # no cwd: the subprocess runs where the user is
        calls.append(command)
        if "--output_path" in command:  # lmms-eval: write a result file as it would
            out = Path(command[command.index("--output_path") + 1]) / "model_id"
            out.mkdir(parents=True, exist_ok=True)
            (out / f"2026010{len(calls)}_000000_results.json").write_text("{}")
        return SimpleNamespace(returncode=0)

    monkeypatch.setattr(launch.subprocess, "run", fake_run)
    monkeypatch.setattr(launch, "_validate_method", lambda args: None)
    argv = ["v1_5", "gqa", "64", "0.5", "--results", str(tmp_path)]
    assert launch.run(launch.parse_args(argv)) == "done"
    out = tmp_path / "llava-v1.5-7b" / "vispruner" / "n64_r0.5" / "gqa"
    (out / "responses").mkdir()
    assert launch.run(launch.parse_args(argv)) == "skipped" and len(calls) == 1
    assert launch.run(launch.parse_args(argv + ["--rerun"])) == "done" and len(calls) == 2
    assert len(list(out.rglob("*_results.json"))) == 2 and len(list(out.glob("responses.before-*"))) == 1
    assert (out / "command.txt").read_text().count("-m lmms_eval") == 2

    video = ["video", "msvd", "57", "0.5", "--results", str(tmp_path)]
    monkeypatch.setattr(
        launch.subprocess, "run", lambda command, **kw: calls.append(command) or SimpleNamespace(returncode=1)
    )
    assert launch.run(launch.parse_args(video)) == "failed"  # lmms-eval failed: the judge is not run
    assert calls[-1][1:3] == ["-m", "lmms_eval"]
    results = tmp_path / "Video-LLaVA-7B-hf" / "vispruner" / "n57_r0.5" / "msvd" / "model_id"
    results.mkdir(parents=True)
    (results / "20260101_000000_results.json").write_text("{}")
    monkeypatch.setattr(
        launch.subprocess, "run", lambda command, **kw: calls.append(command) or SimpleNamespace(returncode=0)
    )
    assert launch.run(launch.parse_args(video)) == "done"
    assert calls[-1][1:3] == ["-m", "eval.judge"] and calls[-2][1:3] == ["-m", "lmms_eval"]  # only the judge ran


@pytest.fixture
def fake_lmms_eval(tmp_path, monkeypatch):
    """`python -m lmms_eval` runs a stand-in (see eval_fixtures.FAKE_LMMS_EVAL); returns run options."""
    path = [str(write_fake_lmms_eval(tmp_path)), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(path))
    monkeypatch.setattr(launch, "_validate_method", lambda args: None)
    checkpoint = tmp_path / "ckpt" / "tiny"  # a real run checks that the checkpoint is there (never loaded here)
    checkpoint.mkdir(parents=True)
    (checkpoint / "config.json").write_text("{}")
    return ["--model", str(checkpoint), "--results", str(tmp_path / "results")]


def fake_run(task, options):
    return ["v1_5", "probe", "8", "0.5", "--tasks", task, "--metric", f"{task}:acc", *options]


@pytest.mark.parametrize("task, reason", [("fake_silent", "lmms_eval wrote no *_results.json"),
                                          ("fake_exit", "lmms_eval exited with status 3")])  # fmt: skip
def test_a_failed_lmms_eval_fails_the_run_even_when_it_exits_0(task, reason, fake_lmms_eval, tmp_path, capfd):
    assert launch.main(fake_run(task, fake_lmms_eval)) == 1
    captured = capfd.readouterr()
    assert "Tasks not found" in captured.out or task == "fake_exit"  # on the terminal, where the user looks
    assert reason in captured.err and "see its output above" in captured.err

    out = launch.output_folder(launch.parse_args(fake_run(task, fake_lmms_eval)))
    log = tmp_path / "lmms_eval.log"
    with log.open("a") as handle:
        assert launch.run(launch.parse_args(fake_run(task, fake_lmms_eval)), log=handle) == "failed"
    assert reason in capfd.readouterr().err and not list(out.rglob("*_results.json"))


def test_a_failed_table_cell_names_its_log(fake_lmms_eval, capfd):
    # one cell (gqa at 64 tokens) whose lmms-eval "fails" quietly: --tasks after `--` replaces gqa's tasks
    argv = ["v1_5", "--benchmarks", "gqa", "--budgets", "64", "--no-baseline", "--",
            *fake_lmms_eval, "--tasks", "fake_silent", "--metric", "fake_silent:acc"]  # fmt: skip
    assert run_table.main(argv) == 1
    err = capfd.readouterr().err
    [cell] = [launch.parse_args(cell) for cell in run_table.cells(run_table.parse_args(argv))]
    log = launch.output_folder(cell) / "lmms_eval.log"
    assert f"see {log}" in err and "Tasks not found" in log.read_text()
    assert "wrote no *_results.json under" in err and ": ValueError: Tasks not found: fake_silent; see" in err  # why


@pytest.mark.slow
def test_a_logged_run_keeps_progress_bars_from_flooding_the_log(fake_lmms_eval, tmp_path):
    args = launch.parse_args(fake_run("fake_ok", fake_lmms_eval))
    log = tmp_path / "lmms_eval.log"
    with log.open("a") as handle:
        assert launch.run(args, log=handle) == "done"
    text = log.read_bytes()  # bytes: reading text would turn each '\r' into a newline
    assert b"fake progress" in text and text.count(b"\r") <= 2, "one bar: drawn when it starts and when it ends"

    # the control: the same bar at tqdm's defaults redraws ten times a second, each a '\r' in the file
    plain = {key: value for key, value in os.environ.items() if key not in launch.LOG_ENVIRONMENT}
    with (tmp_path / "plain.log").open("w") as handle:
        subprocess.run([sys.executable, "-m", "lmms_eval", "--tasks", "fake_ok", "--output_path", str(tmp_path / "x")],
                       stdout=handle, stderr=subprocess.STDOUT, env=plain, check=True)  # fmt: skip
    assert (tmp_path / "plain.log").read_bytes().count(b"\r") > 2


@pytest.mark.slow
def test_the_plugin_prints_its_tasks_folder():
    done = subprocess.run([sys.executable, "-m", "eval.plugin", "tasks-path"], capture_output=True, text=True,
                          cwd=REPO, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (Path(done.stdout.strip()) / "scenette" / "scenette_reading.yaml").is_file()
