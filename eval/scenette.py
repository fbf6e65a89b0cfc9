"""Scenette sweep: Scenette-LLaVA unpruned and with every pruning method at budgets 128/64/32/16,
evaluated by lmms-eval through our `vispruner` plugin on Scenette's fixed sets; the paper-style
table (per question type, Acc., Rel.), a plot of relative accuracy against the token budget, and
a cell-by-cell comparison with the reference results.

    python -m eval.scenette                      # the default sweep, about 8 minutes on 2 CPU cores
    python -m eval.scenette --dry-run            # what would run and where; writes nothing
    python -m eval.scenette --methods vispruner fastv --budgets 64 16 --per-type 240
    python -m eval.scenette --output results/scenette/runs/20261202T143012Z   # resume that run

Each run writes a new folder, results/scenette/runs/<UTC time>/ (in the current directory), and
leaves every other folder alone; --output DIR writes into DIR instead and resumes it if it exists
(finished cells are skipped; a cell made from another checkpoint or with other settings stops the
run unless --rerun, which keeps the old file beside the new one, renamed when the new one is ready).
Every argument, the model folder, the device, the output folder and the files already in it and in the
reference are checked before the model loads: a cell file that is not a finished Scenette cell (cut short,
not JSON, another benchmark's, without its accuracy) stops the run, named, and is left as it is.
Every file is written whole or not at all (beside its place, then renamed). At the end the run prints its
table and its comparison with --reference (default results/scenette/, the committed results):
per cell the same accuracy, or the change and whether it is within binomial noise (written to
comparison.md too). It exits 0 whether or not the tables agree, non-zero only when the run fails.

In the output folder: one JSON per cell (method x budget), <method>/<setting>.json, <setting> named
as in eval/results.py (full | n<T>[_r<r>], plus _limit<N> when fewer than all questions per type
are used); unavailable.json (the cells a method cannot run on this model, and why); table.md,
table.csv, relative_accuracy.png, comparison.md; lmms_eval.log (lmms-eval runs in this process, so
its imports and task index are paid once, and its output goes there).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from efficiency.command import ResultFileError, atomic_write_json, atomic_write_text, output_problem, resolve_device

from .scenette_cells import Cell, checkpoint_id, plan, record_unavailable, set_aside, settings, stored
from .scenette_report import read_cells, read_unavailable

RESULTS = Path("results/scenette")  # the committed results: the reference a run is compared with
RUNS = RESULTS / "runs"  # the default: a new RUNS/<UTC time>/ per run
RUN_NAME = "%Y%m%dT%H%M%SZ"  # ISO 8601 basic format in UTC: the folders sort by time
DEFAULT_BUDGETS = (128, 64, 32, 16)
# 40 cells run by default, ~0.047 s per question + ~0.8 s per cell on one thread of the 2-core reference
# CPU: 40 x (6 x 40 x 0.047 + 0.8) s is about 8 minutes (measured: 476 s; README "Scenette sweep")
DEFAULT_PER_TYPE = 40


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return int(text)


def parse_args(argv=None) -> argparse.Namespace:
    # Only light imports before parsing: `--help` must not wait for torch (llava's method registry, the checkpoint).
    from scenette.data import QUESTIONS_PER_TYPE

    parser = argparse.ArgumentParser(prog="python -m eval.scenette", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--methods", nargs="+", metavar="METHOD", help="default: every registered method")
    parser.add_argument("--budgets", nargs="+", type=_positive_int, default=list(DEFAULT_BUDGETS), metavar="T",
                        help="visual tokens kept per image (default: 128 64 32 16)")  # fmt: skip
    parser.add_argument("--model", type=Path, help="Scenette-LLaVA folder (default: the shipped checkpoint)")
    parser.add_argument("--per-type", type=_positive_int, default=DEFAULT_PER_TYPE,
                        help=f"questions per type, the first N of each fixed set (default {DEFAULT_PER_TYPE}; "
                             f"{QUESTIONS_PER_TYPE}: all)")  # fmt: skip
    parser.add_argument("--output", type=Path, help=f"write into this folder, resuming it if it exists "
                        f"(default: a new {RUNS}/<UTC time>/)")  # fmt: skip
    parser.add_argument("--reference", type=Path, default=RESULTS, help="compare the table with this sweep "
                        f"folder's (default: {RESULTS}/, the committed results)")  # fmt: skip
    parser.add_argument("--dry-run", action="store_true", help="print what would run and where; write nothing")
    parser.add_argument("--threads", type=_positive_int, help="torch threads (default: torch's choice; 1 is much "
                        "faster when other jobs share the cores)")  # fmt: skip
    parser.add_argument("--batch-size", type=_positive_int, default=8)
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--rerun", action="store_true", help="evaluate finished cells again (the old files are kept)")
    args = parser.parse_args(argv)

    import llava
    from scenette.model import CHECKPOINT

    methods = llava.list_methods()
    unknown = [m for m in args.methods or () if m not in methods]
    if unknown:
        parser.error(f"--methods: unknown method(s) {', '.join(unknown)}; allowed: {', '.join(methods)}")
    args.methods = list(dict.fromkeys(args.methods or methods))
    args.budgets = sorted(set(args.budgets), reverse=True)
    args.model = args.model or CHECKPOINT
    if not (args.model / "config.json").is_file():
        parser.error(f"--model: no Scenette-LLaVA checkpoint at {args.model} (config.json missing); "
                     "train one with `bash scripts/train_scenette.sh`, or pass --model FOLDER")  # fmt: skip
    args.tokens = _visual_tokens(parser, args.model)
    if args.budgets[0] > args.tokens:
        parser.error(f"--budgets {args.budgets[0]}: {args.model} has {args.tokens} visual tokens per image; "
                     f"allowed: 1 to {args.tokens}")  # fmt: skip
    args.device = resolve_device(args.device, parser)
    args.per_type = min(args.per_type, QUESTIONS_PER_TYPE)
    args.limit = None if args.per_type == QUESTIONS_PER_TYPE else args.per_type
    args.fresh = args.output is None
    args.output = RUNS / datetime.now(UTC).strftime(RUN_NAME) if args.fresh else args.output
    problem = output_problem(args.output, folder=True, exist_ok=not args.fresh)
    if problem:
        parser.error(f"--output: {problem}")
    if args.reference.exists() and not args.reference.is_dir():
        parser.error(f"--reference: {args.reference} is a file, not a sweep folder")
    return args


def _visual_tokens(parser: argparse.ArgumentParser, model: Path) -> int:
    """Visual tokens per image from the checkpoint's config (the weights are not loaded)."""
    from transformers import AutoConfig

    try:
        vision = AutoConfig.from_pretrained(model).vision_config
        return (vision.image_size // vision.patch_size) ** 2
    except (OSError, ValueError, AttributeError, TypeError) as error:
        parser.error(f"--model {model}: not a Scenette-LLaVA checkpoint (its config.json: {error})")


def check_stored(args) -> None:
    """Read every file a run would read, before the model loads: the output folder's cells and
    unavailable.json, the reference's. ResultFileError names one that cannot be used."""
    for folder in (args.output, args.reference):
        if folder.is_dir():
            read_cells(folder)
            read_unavailable(folder)


@dataclass
class Job:
    """A cell that can run on this model, where its result goes and what is stored there already."""

    cell: Cell
    path: Path
    expected: dict  # the settings its result depends on
    record: dict | None  # the stored result, reused unless --rerun
    differs: list[str]  # settings in which the stored result differs from this run's


@dataclass
class Plan:
    cells: list[Cell]
    jobs: list[Job]
    tokens: int  # visual tokens per image, unpruned
    checkpoint: str
    load_log: str  # what loading the model printed (lmms_eval.log starts with it)


def prepare(args) -> Plan:
    """Load the model once to fit each method to it; read (never write) what the output folder holds."""
    import torch

    import llava

    from .scenette_evaluate import quiet

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryFile("w+") as log:  # the output folder may not exist yet (and never does in a dry run)
        try:
            with quiet(log):
                model, _ = llava.load_pretrained_model(str(args.model))
        finally:
            log.seek(0)
            load_log = log.read()
    vision = model.config.vision_config
    tokens = (vision.image_size // vision.patch_size) ** 2
    cells, checkpoint = plan(args, model), checkpoint_id(args.model)
    jobs = []
    for cell in (cell for cell in cells if cell.reason is None):
        path, expected = cell.path(args.output, args.limit), settings(cell, args, checkpoint)
        jobs.append(Job(cell, path, expected, *stored(path, expected)))
    return Plan(cells, jobs, tokens, checkpoint, load_log)


def conflicts(plan: Plan, args) -> str | None:
    """Why the run must stop before evaluating anything: stored cells made with other settings, without --rerun."""
    if args.rerun:
        return None
    for job in plan.jobs:
        if job.differs:
            return (f"{job.path} holds a result with other {', '.join(job.differs)} than this run; pass --rerun to "
                    "evaluate again (the old file is kept) or choose another --output")  # fmt: skip
    return None


def describe(plan: Plan, args) -> str:
    """The dry run's report: where the run would write, and each cell's fate."""
    if args.fresh or not args.output.exists():
        where = f"a new folder {args.output}/ (not created by this dry run)"
    else:
        where = f"{args.output}/, which exists and would be resumed"
    lines = ["Dry run: nothing is evaluated or written.", f"Output: {where}",
             f"Model: {args.model} (checkpoint {plan.checkpoint}, {plan.tokens} visual tokens per image); "
             f"the first {args.per_type} questions of each type"]  # fmt: skip
    actions = {"run": 0, "reuse": 0, "run again (the old file is kept)": 0}
    for job in plan.jobs:
        action = "run" if job.record is None else "run again (the old file is kept)" if args.rerun else "reuse"
        actions[action] += 1
        options = ", ".join(f"{key}={value}" for key, value in job.cell.options.items())
        lines.append(f"  {action:<5} {job.cell.method} {job.cell.budget or 'unpruned'}"
                     f"{f' ({options})' if options else ''} -> {job.path.relative_to(args.output)}")  # fmt: skip
    lines += [f"  n/a   {cell.method} {cell.budget}: {cell.reason}" for cell in plan.cells if cell.reason]
    counts = ", ".join(f"{count} to {action}" for action, count in actions.items() if count)
    lines.append(f"{counts}; {sum(1 for c in plan.cells if c.reason)} cannot run on this model.")
    stop = conflicts(plan, args)
    then = f"Then: the table, the plot, and a comparison with {args.reference}/."
    lines.append(f"The run would stop: {stop}" if stop else then)
    return "\n".join(lines)


def make_output(plan: Plan, args) -> Path:
    """Create the output folder (a fresh one must be new) and start its log; returns the log's path."""
    try:
        args.output.mkdir(parents=True, exist_ok=not args.fresh)
    except FileExistsError:
        message = f"{args.output} exists already (two runs in one second?); pass --output to resume it"
        raise SystemExit(message) from None
    log_path = args.output / "lmms_eval.log"
    with log_path.open("a") as log:
        log.write(plan.load_log)
    return log_path


def sweep(plan: Plan, args, log_path: Path) -> None:
    """Evaluate every job without a reusable result (with --rerun, every job), writing each cell's JSON as
    soon as it is done; an old result is set aside only then, so an interrupted rerun keeps it in place."""
    from tqdm import tqdm

    from .scenette_evaluate import evaluate, quiet, task_manager

    todo, manager = [job for job in plan.jobs if job.record is None or args.rerun], None
    terminal = os.fdopen(os.dup(2), "w")  # the progress bar stays on the terminal while a cell is quiet
    done_before = len(plan.jobs) - len(todo)
    description = f"scenette sweep into {args.output} ({done_before} of {len(plan.jobs)} cells done before)"
    with terminal, tqdm(todo, desc=description, unit="cell", file=terminal, dynamic_ncols=True) as progress:
        for job in progress:
            cell = job.cell
            progress.set_postfix_str(f"{cell.method} {cell.budget or 'all'}")
            try:
                with log_path.open("a") as log, quiet(log):
                    started = f"{datetime.now():%Y-%m-%d %H:%M:%S}"
                    print(f"=== {job.path.relative_to(args.output)} ({started}) ===", flush=True)
                    manager = manager or task_manager()
                    result = evaluate(cell, args, manager)
            except BaseException:
                progress.write(f"{cell.method} {cell.budget or 'unpruned'} failed; lmms-eval's output is in {log_path}")
                raise
            record = {**job.expected, "model": str(args.model), "visual_tokens": plan.tokens, **result}
            if job.record is not None and job.path.exists():  # --rerun: the old result stays beside the new
                set_aside(job.path)
            job.record = record
            atomic_write_json(job.path, record)


def main(argv=None) -> int:
    from .scenette_compare import report as comparison
    from .scenette_report import write_report

    args = parse_args(argv)
    try:
        check_stored(args)  # before the model loads
        plan = prepare(args)
    except ResultFileError as error:
        raise SystemExit(f"error: {error}") from None
    if args.dry_run:
        print(describe(plan, args))
        return 0
    stop = conflicts(plan, args)
    if stop:
        raise SystemExit(stop)
    log_path = make_output(plan, args)
    record_unavailable(args.output, plan.cells, args, plan.checkpoint)
    sweep(plan, args, log_path)
    print(write_report(args.output))
    compared = comparison(args.output, args.reference)
    atomic_write_text(args.output / "comparison.md", compared)
    print(compared, end="")
    print(f"This run's folder: {args.output}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
