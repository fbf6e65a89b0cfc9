"""The launcher and scripts of the chat-template families: dry runs print the right command, and bad
family / benchmark / option combinations are refused before anything runs."""

import shlex
import subprocess

import pytest

from eval.benchmarks import BENCHMARKS, CHAT_FAMILIES, FAMILIES
from eval.launch import parse_args
from support import REPO


def dry_run(family: str, bench: str, *extra: str) -> list[list[str]]:
    script = REPO / "scripts" / family / "eval" / f"{bench}.sh"
    done = subprocess.run(["bash", str(script), "64", "0.5", *extra, "--dry-run"], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [shlex.split(line) for line in done.stdout.strip().splitlines()]


@pytest.mark.parametrize("family", sorted(CHAT_FAMILIES))
def test_a_dry_run_of_each_chat_family_prints_its_command(family):
    bench = FAMILIES[family]["benchmarks"][0]
    (evaluate,) = dry_run(family, bench)
    flags = dict(zip(evaluate[3::2], evaluate[4::2]))
    model_args = dict(item.split("=", 1) for item in flags["--model_args"].split(","))
    assert flags["--tasks"] == ",".join(BENCHMARKS[bench].tasks)
    assert model_args["pretrained"] == CHAT_FAMILIES[family][0] == FAMILIES[family]["model"]
    assert "conv_template" not in model_args  # the chat template of the checkpoint's processor
    assert (model_args["method"], model_args["visual_token_num"], model_args["important_ratio"]) == (
        "vispruner",
        "64",
        "0.5",
    )


def test_every_chat_family_script_names_the_budget_and_its_default_model():
    for family, (model, benchmarks) in CHAT_FAMILIES.items():
        for bench in benchmarks:
            header = (REPO / "scripts" / family / "eval" / f"{bench}.sh").read_text()
            assert "TOKENS per" in header and f"default {model}" in header, (family, bench)
            assert f'launch.sh" {family} {bench} "$@"' in header


def test_chat_benchmark_metrics_exist_in_the_installed_task_files():
    """Each new benchmark's (task, metric) is declared by lmms-eval 0.7.3's own task YAML."""
    from lmms_eval.tasks import TaskManager

    manager = TaskManager("ERROR")
    for name in ("textvqa_val", "docvqa", "infovqa", "chartqa", "ai2d", "mmmu", "ocrbench", "mmstar", "realworldqa"):
        for task, metric in BENCHMARKS[name].metrics:
            config = manager._get_config(task) if hasattr(manager, "_get_config") else None
            text = str(config) if config else ""
            if not text:
                pytest.skip("this lmms-eval has no task-config reader")
            assert f"'metric': '{metric}'" in text, (name, task, metric)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["gemma3", "ocrbench", "64", "0.5"], "ocrbench is not a gemma3 benchmark"),
        (["qwen2_5_vl", "vqav2", "64", "0.5"], "vqav2 is not a qwen2_5_vl benchmark"),
        (["v1_5", "docvqa", "64", "0.5"], "docvqa is not a v1_5 benchmark"),
        (
            ["internvl", "mme", "64", "0.5", "--conv-template", "vicuna_v1"],
            "internvl is prompted through its processor",
        ),
        (["qwen3_vl", "nosuch", "64", "0.5"], "unknown benchmark 'nosuch'"),
    ],
)
def test_bad_combinations_are_refused_before_anything_runs(argv, message, capsys):
    with pytest.raises(SystemExit):
        parse_args([*argv, "--dry-run"])
    assert message in capsys.readouterr().err
