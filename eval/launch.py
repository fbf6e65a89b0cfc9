"""Run one benchmark through lmms-eval with our `vispruner` model; behind scripts/*/eval/*.sh.

    bash scripts/v1_5/eval/mme.sh 64 0.5                 # VisPruner, 64 tokens, important ratio 0.5
    bash scripts/v1_5/eval/mme.sh 64 - fastv             # a method without a ratio
    bash scripts/v1_5/eval/mme.sh full -                 # the unpruned model
    bash scripts/v1_5/eval/mme.sh 64 0.5 --gpus 4 --model /ckpt/llava-v1.5-13b --dry-run

The model is --model, else the MODEL_PATH variable, else the family's default. Results go to
results/<model>/<method>/<setting>/<benchmark>/ (see eval/results.py; every --model-arg is part of
<setting>, e.g. n455_r0.5+frame_cls=false+video_split=even+video_token_num=455). A finished benchmark is not
run again unless --rerun (the earlier result stays beside the new one); an interrupted one resumes
from its per-sample answers. A run fails (exit status 1) unless lmms-eval writes its results file:
lmms-eval itself exits 0 after most errors.

Options may also follow a `--` (as scripts/eval_table.sh passes them): `mme.sh 64 0.5 -- --dry-run`.
--dry-run only prints the command(s): it creates no folder and writes no file.

Every argument is checked before anything runs: TOKENS, RATIO (kept exactly: 0.4999999 is not 0.5),
METHOD and its options (RATIO and the --model-arg keys the method takes, as the plugin will build it), the
benchmark (one of the family's, or --tasks), the numbers (--limit, --scale, --gpus, ...) and the judge's
options. A real run also checks, before lmms-eval starts, that --model is a checkpoint folder or a Hub id,
that --device exists here, that --include-path is a folder and that the results folder can be written; a
dry run prints commands that may be meant for another machine, so it does not look at those paths.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from efficiency.command import (
    atomic_write_json,
    device_problem,
    finite_float,
    model_problem,
    output_problem,
    positive_int,
)
from llava.conversation import TEMPLATES

from .benchmarks import BENCHMARKS, FAMILIES, Benchmark
from .judge import add_judge_arguments, config_from
from .plugin import MODEL_ID, TASKS
from .results import completed_results, number_text, setting_name

# tqdm reads its defaults from TQDM_<OPTION>: in a log file every redraw of a bar is a '\r' line the
# file keeps (ten a second by default), so a bar writing to a log redraws at most this often.
LOG_PROGRESS_INTERVAL_S = 60
LOG_ENVIRONMENT = {
    "TQDM_MININTERVAL": str(LOG_PROGRESS_INTERVAL_S),
    "TQDM_MAXINTERVAL": str(LOG_PROGRESS_INTERVAL_S),  # else tqdm's monitor thread redraws every 10 s
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",  # datasets' and the Hub's bars (dataset preparation, downloads)
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}
SEPARATOR = "--"  # scripts/eval_table.sh puts per-run options after it; a single run accepts it too


def parse_args(argv=None, *, method_check: bool = True) -> argparse.Namespace:
    """The parsed and checked arguments (parser.error on a bad one). `method_check=False` leaves the method and
    its options to the caller (the table runner checks only the cells it runs: `check_method`)."""
    parser = argparse.ArgumentParser(prog="python -m eval.launch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("family", choices=sorted(FAMILIES))
    parser.add_argument("benchmark", help=f"one of {', '.join(BENCHMARKS)}, or any name with --tasks")
    parser.add_argument("tokens", help="visual tokens kept per image (per crop / frame), or 'full' for no pruning")
    parser.add_argument("ratio", help="important ratio in [0, 1], or '-' for methods without one")
    parser.add_argument("method", nargs="?", default="vispruner", help="pruning method (default vispruner)")
    parser.add_argument(
        "--model", default=os.environ.get("MODEL_PATH"), help="checkpoint (default: $MODEL_PATH, else the family's)"
    )
    parser.add_argument(
        "--gpus", type=positive_int, default=1, help="data-parallel processes through accelerate launch"
    )
    parser.add_argument("--batch-size", type=positive_int, default=1)
    parser.add_argument("--limit", type=finite_float(0, None, low_open=True),
                        help="evaluate only this many samples (a fraction if < 1); kept apart")  # fmt: skip
    parser.add_argument("--device", help="lmms-eval --device, e.g. cpu (default: cuda, else the CPU)")
    parser.add_argument(
        "--results",
        type=Path,
        default=Path("results"),
        help="results root (default results/, in the current directory)",
    )
    parser.add_argument("--conv-template", help="conversation template (default: the family's)")
    parser.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="more model_args (method options, dtype, ...)",
    )
    parser.add_argument("--tasks", help="lmms-eval tasks for a benchmark not in the list")
    parser.add_argument(
        "--metric", action="append", default=[], metavar="TASK:METRIC", help="table value of --tasks (averaged)"
    )
    parser.add_argument("--scale", type=finite_float(0, None, low_open=True),
                        help="table value = mean metric x this (--tasks; default 100)")  # fmt: skip
    parser.add_argument(
        "--include-path", type=Path, help="task folder for lmms-eval (default: the tasks shipped in eval/tasks)"
    )
    parser.add_argument("--rerun", action="store_true", help="evaluate again although a result exists (kept)")
    parser.add_argument("--dry-run", action="store_true", help="print the exact command(s) and stop")
    add_judge_arguments(parser)
    argv = list(sys.argv[1:] if argv is None else argv)
    if SEPARATOR in argv:  # options after `--` are this run's options like any other
        argv.remove(SEPARATOR)
    args = parser.parse_args(argv)
    try:
        _check(args)
        if method_check:
            _validate_method(args)
        if not args.dry_run:  # a dry run prints commands, maybe for another machine: its paths are not checked
            _check_environment(args)
    except ValueError as error:
        parser.error(str(error))
    return args


def _check(args: argparse.Namespace) -> None:
    """The arguments' values (no file is looked at): ValueError naming the argument, the value and what is allowed."""
    family = FAMILIES[args.family]
    args.model = (args.model or family["model"]).rstrip("/") or "/"
    if family["conv_template"] is None and args.conv_template:
        raise ValueError(f"--conv-template: {args.family} is prompted through its processor's chat template; drop it")
    args.conv_template = args.conv_template or family["conv_template"]
    if args.conv_template is not None and args.conv_template not in TEMPLATES:
        raise ValueError(f"--conv-template: unknown {args.conv_template!r}; allowed: {', '.join(sorted(TEMPLATES))}")
    if args.tasks:
        metrics = tuple(tuple(m.split(":", 1)) for m in args.metric)
        if any(len(m) != 2 or not all(m) for m in metrics):
            bad = next(m for m in args.metric if len(m.split(":", 1)) != 2 or not all(m.split(":", 1)))
            raise ValueError(f"--metric takes TASK:METRIC, got {bad!r}")
        tasks = tuple(args.tasks.split(","))
        if not all(tasks):
            raise ValueError(f"--tasks takes task names separated by commas, got {args.tasks!r}")
        # a known benchmark's name keeps its column label (its paper numbers line up); the tasks are replaced
        label = BENCHMARKS[args.benchmark].label if args.benchmark in BENCHMARKS else args.benchmark
        scale = 100.0 if args.scale is None else args.scale
        args.spec = Benchmark(args.benchmark, label, tasks, metrics, scale=scale)
    elif args.metric or args.scale is not None:
        raise ValueError("--metric and --scale say how to score --tasks: give them with --tasks")
    elif args.benchmark in family["benchmarks"]:
        args.spec = BENCHMARKS[args.benchmark]
    elif args.benchmark in BENCHMARKS:
        raise ValueError(f"{args.benchmark} is not a {args.family} benchmark; allowed: "
                         f"{', '.join(family['benchmarks'])} (or give --tasks)")  # fmt: skip
    else:
        raise ValueError(f"unknown benchmark {args.benchmark!r}; known: {', '.join(BENCHMARKS)} (or give --tasks)")
    if args.tokens == "full":
        if args.method not in ("vispruner", "none"):
            raise ValueError("TOKENS=full runs the unpruned model; give no METHOD (or 'none')")
        if args.ratio != "-":
            raise ValueError(f"TOKENS=full runs the unpruned model: RATIO must be '-', got {args.ratio!r}")
        args.method, args.tokens, args.ratio = "none", None, None
    else:
        if args.method == "none":
            raise ValueError("METHOD=none keeps every token: use TOKENS=full")
        if not args.tokens.isdigit() or int(args.tokens) < 1:
            raise ValueError(f"TOKENS must be a positive integer or 'full', got {args.tokens!r}")
        args.tokens = int(args.tokens)
        args.ratio = None if args.ratio == "-" else _ratio(args.ratio)
    if args.limit is not None and args.limit >= 1 and args.limit != int(args.limit):
        raise ValueError(f"--limit: a number of samples (a whole number) or a fraction < 1, got {args.limit:g}")
    for item in args.model_arg:
        if "=" not in item or not item.split("=", 1)[0]:
            raise ValueError(f"--model-arg takes KEY=VALUE, got {item!r}")
    config_from(args)  # the judge's options (checked for every benchmark: the table runner passes them on)
    if args.device is not None and not DEVICE_NAME.match(args.device):
        raise ValueError(f"--device: {args.device!r} is not a device name; allowed: cpu, cuda, cuda:N")
    texts = [f"{key}={value}" for key, value in _model_arg_pairs(args, output_folder(args)).items()]
    if any("," in text for text in texts):
        raise ValueError(f"model_args values cannot contain commas: {', '.join(t for t in texts if ',' in t)}")


DEVICE_NAME = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")


def _check_environment(args: argparse.Namespace) -> None:
    """What a real run needs here, before lmms-eval starts: the checkpoint, the device, the task folder, a
    results folder that can be written, the judge's key file. ValueError naming what is missing."""
    problem = model_problem(args.model)
    if problem:
        raise ValueError(f"--model {args.model}: {problem}")
    if args.device is not None:
        problem = device_problem(args.device)
        if problem:
            raise ValueError(f"--device {args.device}: {problem}")
    if args.include_path is not None and not args.include_path.is_dir():
        raise ValueError(f"--include-path: {args.include_path} is not a folder (lmms-eval task files)")
    problem = output_problem(output_folder(args), folder=True, exist_ok=True)
    if problem:
        raise ValueError(f"--results {args.results}: {problem}")
    if args.spec.judged and args.judge_key_file and not Path(args.judge_key_file).is_file():
        raise ValueError(f"--judge-key-file: {args.judge_key_file} does not exist")


def _ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"RATIO must be a number in [0, 1] or '-', got {text!r}") from None
    if not 0 <= value <= 1:  # NaN fails too
        raise ValueError(f"RATIO must be in [0, 1], got {text}")
    return value + 0.0  # -0.0 is 0


def model_folder(args: argparse.Namespace) -> str:
    name = Path(args.model).name
    return name + ("-paper-mode" if FAMILIES[args.family]["model_args"].get("paper_mode") == "true" else "")


def extra_model_args(args: argparse.Namespace) -> dict[str, str]:
    """--model-arg KEY=VALUE as {key: value} (a key given twice: the last value, as lmms-eval gets it)."""
    return dict(item.split("=", 1) for item in args.model_arg)


def output_folder(args: argparse.Namespace) -> Path:
    setting = setting_name(args.method, args.tokens, args.ratio, args.limit, extra_model_args(args))
    return args.results / model_folder(args) / args.method / setting / args.spec.name


def _model_arg_pairs(args: argparse.Namespace, out: Path) -> dict:
    pairs = {"pretrained": args.model, "method": args.method}
    if args.method != "none":
        pairs["visual_token_num"] = args.tokens
        if args.ratio is not None:
            pairs["important_ratio"] = number_text(args.ratio)  # exactly the ratio of the folder's name
    if args.conv_template is not None:  # LLaVA-style families; chat families use their chat template
        pairs["conv_template"] = args.conv_template
    pairs.update(FAMILIES[args.family]["model_args"])
    pairs["response_log"] = out / "responses"
    pairs.update(extra_model_args(args))
    return pairs


def model_args(args: argparse.Namespace, out: Path) -> str:
    text = [f"{key}={value}" for key, value in _model_arg_pairs(args, out).items()]
    if any("," in item for item in text):
        raise SystemExit(f"model_args values cannot contain commas: {', '.join(t for t in text if ',' in t)}")
    return ",".join(text)


def commands(args: argparse.Namespace) -> list[list[str]]:
    out = output_folder(args)
    if args.gpus > 1:
        prefix = ["accelerate", "launch", f"--num_processes={args.gpus}", "-m", "lmms_eval"]
    else:
        prefix = [sys.executable, "-m", "lmms_eval"]
    evaluate = prefix + [
        "--model", MODEL_ID, "--model_args", model_args(args, out), "--tasks", ",".join(args.spec.tasks),
        "--include_path", str(args.include_path or TASKS), "--batch_size", str(args.batch_size),
        "--output_path", str(out), "--log_samples",
    ]  # fmt: skip
    if args.limit is not None:
        evaluate += ["--limit", number_text(args.limit)]
    if args.device:
        evaluate += ["--device", args.device]
    result = [evaluate]
    if args.spec.judged:
        result.append([sys.executable, "-m", "eval.judge", str(out), "--judge-model", args.judge_model,
                       "--judge-endpoint", args.judge_endpoint, "--judge-key-env", args.judge_key_env,
                       "--judge-workers", str(args.judge_workers)]
                      + (["--judge-key-file", args.judge_key_file] if args.judge_key_file else []))  # fmt: skip
    return result


def run(args: argparse.Namespace, log=None) -> str:
    """Evaluate; returns "done", "skipped" or "failed". `log`: a file for lmms-eval's output (else the terminal).
    --dry-run only prints the commands: nothing is created or written."""
    out = output_folder(args)
    steps = commands(args)
    if args.dry_run:
        for step in steps:
            print(shlex.join(step))
        return "skipped"
    finished = completed_results(out)
    if finished and not args.rerun:
        steps = steps[1:] if args.spec.judged and not (out / "judged.json").is_file() else []
        if not steps:
            print(f"{out}: already evaluated ({finished[-1].name}); --rerun evaluates again and keeps it")
            return "skipped"
    out.mkdir(parents=True, exist_ok=True)
    if args.rerun and (out / "responses").exists():
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        (out / "responses").rename(out / f"responses.before-{stamp}")
    atomic_write_json(out / "benchmark.json", args.spec.describe())
    with (out / "command.txt").open("a") as handle:
        for step in steps:
            handle.write(f"# {datetime.now(UTC).isoformat(timespec='seconds')}\n{shlex.join(step)}\n")
    for step in steps:
        problem = _run_step(step, out, log)
        if problem:
            _report(f"FAILED: {problem}; {_where_output_is(log)}")
            return "failed"
    if args.spec.server:
        print(f"{out}: submission files in {out / 'submissions'} -> {args.spec.server}; "
              "put the score in server_score.json as {\"value\": ..., \"source\": ...}")  # fmt: skip
    return "done"


def already_evaluated(args: argparse.Namespace) -> bool:
    """Whether `run` would only say "already evaluated" (a result is there, judged if it needs the judge)."""
    out = output_folder(args)
    judged = not args.spec.judged or (out / "judged.json").is_file()
    return bool(completed_results(out)) and judged and not args.rerun and not args.dry_run


def _run_step(step: list[str], out: Path, log) -> str | None:
    """Run one command; returns why it failed, or None. lmms-eval exits 0 even when it fails (a task not
    found, a model that does not load: it prints the traceback and carries on), so its proof of
    success is the results file it writes last, new in `out`."""
    before = set(completed_results(out))
    env = {**LOG_ENVIRONMENT, **os.environ} if log else None  # the user's own settings win
    start = _log_size(log)
    code = subprocess.run(step, stdout=log, stderr=subprocess.STDOUT if log else None, env=env).returncode
    name = step[step.index("-m") + 1] if "-m" in step else Path(step[0]).name
    error = _error_in_log(log, start)
    if code:
        return f"{name} exited with status {code}" + (f": {error}" if error else "")
    if name == "lmms_eval" and not set(completed_results(out)) - before:
        if error:  # the reason, on the terminal: a table's cells write to logs
            return f"lmms_eval wrote no *_results.json under {out}: {error}"
        return f"lmms_eval wrote no *_results.json under {out} (it exits 0 after an error: its traceback says why)"
    return None


def _log_size(log) -> int | None:
    name = getattr(log, "name", None)
    if not isinstance(name, str):
        return None
    log.flush()
    return Path(name).stat().st_size if Path(name).is_file() else 0


ANSI = re.compile(r"\x1b\[[0-9;]*m")  # loguru's colours
LMMS_EVAL_ERROR = re.compile(r"Error during evaluation: (?P<error>.*?)(?:\. Please set `--verbosity.*)?$")
EXCEPTION = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception): .+")


def _error_in_log(log, start: int | None) -> str | None:
    """The error a failed step wrote to its log (from `start` on): lmms-eval's "Error during evaluation: ..."
    line, else the last exception line of a traceback; None without a log file or error."""
    if start is None:
        return None
    with open(log.name, "rb") as handle:
        handle.seek(start)
        lines = ANSI.sub("", handle.read().decode(errors="replace")).splitlines()
    for line in reversed(lines):
        if match := LMMS_EVAL_ERROR.search(line):
            return match["error"]
    return next((line.strip() for line in reversed(lines) if EXCEPTION.match(line.strip())), None)


def _where_output_is(log) -> str:
    name = getattr(log, "name", None)
    return f"see {name}" if isinstance(name, str) else "see its output above"


def _report(message: str) -> None:
    from tqdm import tqdm  # keeps a table's progress bar intact

    tqdm.write(message, file=sys.stderr)


def check_method(args: argparse.Namespace) -> str | None:
    """Why the method cannot run with these options (None: it can); see _validate_method."""
    try:
        _validate_method(args)
    except ValueError as error:
        return str(error)
    return None


def _validate_method(args: argparse.Namespace) -> None:
    """The method and its options (RATIO and the --model-arg keys that are options of the method), as the
    plugin will build it: ValueError naming what it does not take. Imports llava.pruning (torch)."""
    if args.method == "none":
        return
    from llava.pruning import create_pruner, list_methods, method_options

    if args.method not in list_methods():
        raise ValueError(f"METHOD: unknown pruning method {args.method!r}; allowed: {', '.join(list_methods())}")
    accepted = method_options(args.method)
    if args.ratio is not None and "important_ratio" not in accepted:
        raise ValueError(f"RATIO {args.ratio:g}: {args.method} has no important ratio; give RATIO '-'")
    options = {key: _model_arg_value(value) for key, value in extra_model_args(args).items() if key in accepted}
    if args.ratio is not None:
        options["important_ratio"] = args.ratio
    try:
        create_pruner(args.method, args.tokens, **options)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{args.method}: {error}") from None


def _model_arg_value(text: str):
    """A model_args value as lmms-eval hands it to the model (lmms_eval.utils.handle_arg_string)."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if text.isnumeric():
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


def main(argv=None) -> int:
    args = parse_args(argv)
    return 1 if run(args) == "failed" else 0


if __name__ == "__main__":
    raise SystemExit(main())
