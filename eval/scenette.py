"""Scenette sweep: Scenette-LLaVA unpruned and with every pruning method at budgets 128/64/32/16,
evaluated by lmms-eval through our `vispruner` plugin on Scenette's fixed sets; the paper-style
table (per question type, Acc., Rel.) and a plot of relative accuracy against the token budget.

    python -m eval.scenette                                   # the default sweep, about 8 minutes on 2 CPU cores
    python -m eval.scenette --methods vispruner fastv --budgets 64 16 --per-type 240
    bash scripts/scenette.sh --rerun                          # evaluate again, keeping the old results

lmms-eval runs in this process (imports and the task index are paid once); its output goes to
<output>/lmms_eval.log. One JSON per cell (method x budget): <output>/<method>/<setting>.json,
<setting> named as in eval/results.py (full | n<T>[_r<r>], plus _limit<N> when fewer than all
questions per type are used). A finished cell is skipped, so an interrupted sweep resumes; a cell
made from another checkpoint or with other settings stops the sweep unless --rerun, which keeps the
old file beside the new one. Then <output>/table.md, table.csv and relative_accuracy.png.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path

from .scenette_cells import CONV_TEMPLATE, GROUP, Cell, checkpoint_id, plan, settings, stored

TASKS = Path(__file__).resolve().parent / "tasks"  # package data, installed with `eval`
DEFAULT_BUDGETS = (128, 64, 32, 16)
# 40 cells run by default, ~0.047 s per question + ~0.8 s per cell on one thread of the 2-core reference
# CPU: 40 x (6 x 40 x 0.047 + 0.8) s is about 8 minutes (measured: 476 s; README "Scenette sweep")
DEFAULT_PER_TYPE = 40


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return int(text)


def parse_args(argv=None) -> argparse.Namespace:
    import llava
    from scenette.data import QUESTIONS_PER_TYPE
    from scenette.model import CHECKPOINT

    parser = argparse.ArgumentParser(prog="python -m eval.scenette", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    methods = llava.list_methods()
    parser.add_argument("--methods", nargs="+", default=methods, metavar="METHOD", help=f"default: all ({', '.join(methods)})")
    parser.add_argument("--budgets", nargs="+", type=_positive_int, default=list(DEFAULT_BUDGETS), metavar="T",
                        help="visual tokens kept per image (default: 128 64 32 16)")  # fmt: skip
    parser.add_argument("--model", type=Path, default=CHECKPOINT, help="Scenette-LLaVA folder (default: the shipped checkpoint)")
    parser.add_argument("--per-type", type=_positive_int, default=DEFAULT_PER_TYPE,
                        help=f"questions per type, the first N of each fixed set (default {DEFAULT_PER_TYPE}; "
                             f"{QUESTIONS_PER_TYPE}: all)")  # fmt: skip
    parser.add_argument("--output", type=Path, default=Path("results/scenette"), help="default results/scenette/ (in the current directory)")
    parser.add_argument("--threads", type=_positive_int, help="torch threads (default: torch's choice; 1 is much faster "
                        "when other jobs share the cores)")  # fmt: skip
    parser.add_argument("--batch-size", type=_positive_int, default=8)
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--rerun", action="store_true", help="evaluate finished cells again (the old files are kept)")
    args = parser.parse_args(argv)
    unknown = [m for m in args.methods if m not in methods]
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}; allowed: {', '.join(methods)}")
    args.methods = list(dict.fromkeys(args.methods))
    args.budgets = sorted(set(args.budgets), reverse=True)
    if not (args.model / "config.json").is_file():
        parser.error(f"no Scenette-LLaVA checkpoint at {args.model} (config.json missing); "
                     "train one with `bash scripts/train_scenette.sh`, or pass --model FOLDER")  # fmt: skip
    args.per_type = min(args.per_type, QUESTIONS_PER_TYPE)
    args.limit = None if args.per_type == QUESTIONS_PER_TYPE else args.per_type
    return args


@contextlib.contextmanager
def quiet(log_path: Path):
    """Everything written to stdout/stderr (lmms-eval's logs and progress bars, warnings) goes to log_path."""
    sys.stdout.flush(), sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with log_path.open("a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        os.dup2(log.fileno(), 1), os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            log.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])


def evaluate(cell: Cell, args, manager) -> dict:
    """Accuracy per type (%), mean, answers and seconds of one cell, through lmms-eval and our plugin."""
    from importlib.metadata import version

    import torch
    from lmms_eval import evaluator

    from efficiency.hardware import describe
    from scenette.questions import QUESTION_TYPES

    from .plugin.model import PrunedLlava

    pruning = {} if cell.method == "none" else {"visual_token_num": cell.budget, **cell.options}
    start, cpu_start = time.perf_counter(), time.process_time()
    model = PrunedLlava(pretrained=str(args.model), method=cell.method, conv_template=CONV_TEMPLATE,
                        device=args.device, batch_size=args.batch_size, **pruning)  # fmt: skip
    output = evaluator.simple_evaluate(model=model, tasks=[GROUP], limit=args.limit, task_manager=manager,
                                       bootstrap_iters=0, verbosity="ERROR", process_docs_parallel=1)  # fmt: skip
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    tasks = {qtype: f"{GROUP}_{qtype}" for qtype in QUESTION_TYPES}
    accuracy = {qtype: 100 * output["results"][task]["exact_match,none"] for qtype, task in tasks.items()}
    samples = {qtype: sorted(output["samples"][task], key=lambda s: s["doc_id"]) for qtype, task in tasks.items()}
    questions = sum(len(s) for s in samples.values())
    return {
        "accuracy": accuracy,
        "mean": sum(accuracy.values()) / len(accuracy),
        "questions": {qtype: len(s) for qtype, s in samples.items()},
        "answers": {qtype: [sample["filtered_resps"][0] for sample in s] for qtype, s in samples.items()},
        "seconds": round(seconds, 2),
        "seconds_per_question": round(seconds / questions, 4),
        "cpu_seconds": round(cpu_seconds, 2),  # all threads; with --threads 1, the wall time on an idle core
        "batch_size": args.batch_size,
        "hardware": describe(torch.device(args.device)),
        "lmms_eval": version("lmms_eval"),
    }


def sweep(args) -> tuple[list[Cell], list[dict]]:
    """Run every cell not finished yet; returns the cells and the records of those that can run."""
    import torch
    from tqdm import tqdm

    import llava

    if args.threads:
        torch.set_num_threads(args.threads)
    args.output.mkdir(parents=True, exist_ok=True)
    log_path = args.output / "lmms_eval.log"
    with quiet(log_path):
        model, _ = llava.load_pretrained_model(str(args.model))
    vision = model.config.vision_config
    tokens = (vision.image_size // vision.patch_size) ** 2
    if args.budgets[0] > tokens:
        raise SystemExit(f"--budgets {args.budgets[0]}: {args.model} has {tokens} visual tokens per image")
    cells, checkpoint = plan(args, model), checkpoint_id(args.model)
    del model  # each cell loads its own, through the plugin
    jobs = []  # [cell, path, settings, record]; settings of stored cells are checked before anything runs
    for cell in (cell for cell in cells if cell.reason is None):
        path, expected = cell.path(args.output, args.limit), settings(cell, args, checkpoint)
        jobs.append([cell, path, expected, stored(path, expected, args.rerun)])
    todo, manager = [job for job in jobs if job[3] is None], None
    terminal = os.fdopen(os.dup(2), "w")  # the progress bar stays on the terminal while a cell is quiet
    description = f"scenette sweep ({len(jobs) - len(todo)} of {len(jobs)} cells done before)"
    with terminal, tqdm(todo, desc=description, unit="cell", file=terminal, dynamic_ncols=True) as progress:
        for job in progress:
            cell, path, expected, _ = job
            progress.set_postfix_str(f"{cell.method} {cell.budget or 'all'}")
            try:
                with quiet(log_path):
                    print(f"=== {path.relative_to(args.output)} ({datetime.now():%Y-%m-%d %H:%M:%S}) ===", flush=True)
                    if manager is None:
                        from lmms_eval.tasks import TaskManager

                        manager = TaskManager(verbosity="ERROR", include_path=str(TASKS), include_defaults=False)
                    job[3] = {**expected, "model": str(args.model), "visual_tokens": tokens, **evaluate(cell, args, manager)}
            except BaseException:
                progress.write(f"{cell.method} {cell.budget or 'unpruned'} failed; lmms-eval's output is in {log_path}")
                raise
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(job[3], indent=2) + "\n")
    return cells, [job[3] for job in jobs]


def main(argv=None) -> int:
    from .scenette_report import write_report

    args = parse_args(argv)
    cells, records = sweep(args)
    print(write_report(cells, records, args.output))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
