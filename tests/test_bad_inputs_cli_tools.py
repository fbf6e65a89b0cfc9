"""Bad inputs to the efficiency, analysis and scenette commands (issue 20). How a case is run and
checked: bad_inputs_cli.py."""

from __future__ import annotations

import pytest

from bad_inputs_cli import ARGS, ONLY_ON_LINUX, cases, in_process

pytestmark = ONLY_ON_LINUX


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
