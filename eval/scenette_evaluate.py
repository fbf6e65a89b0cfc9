"""One cell of the Scenette sweep through lmms-eval and our `vispruner` plugin, its output kept off the terminal."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

from .scenette_cells import CONV_TEMPLATE, GROUP, Cell

TASKS = Path(__file__).resolve().parent / "tasks"  # package data, installed with `eval`


@contextlib.contextmanager
def quiet(log):
    """Everything written to stdout/stderr (lmms-eval's logs and progress bars, warnings) goes to the
    open file `log`, at the file-descriptor level so output of C extensions and subprocesses goes too."""
    sys.stdout.flush(), sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        os.dup2(log.fileno(), 1), os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            log.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])


def task_manager():
    from lmms_eval.tasks import TaskManager

    return TaskManager(verbosity="ERROR", include_path=str(TASKS), include_defaults=False)


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
