"""Run a whole paper table: every benchmark x (the unpruned model + every method x budget).

    bash scripts/eval_table.sh v1_5 --methods vispruner --budgets 128 64 32 --ratio 0.5 --gpus 8

Finished cells are skipped (their results stay), interrupted ones resume; lmms-eval's output goes
to each cell's lmms_eval.log and a progress bar shows the cell being run. The table is printed at
the end (python -m eval.tables). Options after `--` are passed to every benchmark run. --dry-run,
before or after `--`, only prints every command: it creates no folder and writes no file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from efficiency.command import ResultFileError, number_in, positive_int

from . import launch, tables
from .benchmarks import FAMILIES


def add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keep-going", action="store_true", help="go on after a failed cell")
    parser.add_argument("--dry-run", action="store_true", help="print every command and stop")


def parse_before_separator(parser: argparse.ArgumentParser, argv) -> argparse.Namespace:
    """Parse the options before `--`; the ones after it (for every run: --gpus, --model, ...) go to `rest`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:cut])
    args.rest = argv[cut + 1 :]
    return args


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="scripts/eval_table.sh", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("family", choices=sorted(FAMILIES))
    parser.add_argument("--methods", nargs="+", default=["vispruner"])
    parser.add_argument("--budgets", nargs="+", type=positive_int, default=[128, 64, 32])
    parser.add_argument("--ratio", help=f"important ratio in [0, 1] of the methods that take one (default "
                        f"{DEFAULT_RATIO}; the others run without); '-' for none")  # fmt: skip
    parser.add_argument("--benchmarks", nargs="+", help="default: the family's table columns")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unpruned model")
    add_run_options(parser)
    args = parse_before_separator(parser, argv)
    known = FAMILIES[args.family]["benchmarks"]
    args.benchmarks = args.benchmarks or list(FAMILIES[args.family]["table"])
    unknown = [b for b in args.benchmarks if b not in known]
    if unknown:
        parser.error(f"not {args.family} benchmarks: {', '.join(unknown)}; allowed: {', '.join(known)}")
    if args.ratio not in (None, "-") and not number_in(_float(args.ratio), 0, 1):
        parser.error(f"--ratio: must be a number in [0, 1] or '-', got {args.ratio!r}")
    from llava.pruning import list_methods, method_options  # after parsing: `--help` answers without torch

    methods = list_methods()
    unknown = [m for m in args.methods if m not in methods]
    if unknown:
        parser.error(f"--methods: unknown {', '.join(unknown)}; allowed: {', '.join(methods)}")
    args.takes_ratio = {m: "important_ratio" in method_options(m) for m in args.methods}
    if args.ratio not in (None, "-") and not any(args.takes_ratio.values()):
        parser.error(f"--ratio {args.ratio}: none of {', '.join(args.methods)} takes an important ratio")
    return args


DEFAULT_RATIO = "0.5"


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def cells(args, ratios: dict[str, str] | None = None) -> list[list[str]]:
    """Every run's launcher arguments; `ratios` gives some methods their own ratio (else --ratio, or its
    default, for the methods with an important ratio and '-' for the others)."""
    ratios = ratios or {}
    takes = getattr(args, "takes_ratio", {})
    common = DEFAULT_RATIO if args.ratio is None else args.ratio

    def ratio(method: str) -> str:
        return ratios.get(method, common if takes.get(method, True) else "-")

    settings = [] if args.no_baseline else [["full", "-"]]
    settings += [[str(budget), ratio(method), method] for budget in args.budgets for method in args.methods]
    return [[args.family, bench, *setting, *args.rest] for bench in args.benchmarks for setting in settings]


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_cells(args.family, cells(args), dry_run=args.dry_run, keep_going=args.keep_going)


def run_cells(name: str, table_cells: list[list[str]], dry_run: bool = False, keep_going: bool = False,
              refused: dict[tuple[str, int], str] | None = None, paper: bool = False, notes=(),
              family: str | None = None) -> int:  # fmt: skip
    """Run (or with `dry_run` print) every cell, then print the table. `refused`: {(method, tokens): reason} of
    settings the model cannot run; their cells print "n/a: <reason>" instead of running. `paper`: the paper's rows
    under ours, from the paper table of `family` (default: the one the model folder's name implies); `notes`: lines
    printed under the table."""
    refused = refused or {}
    runs = [launch.parse_args(cell + (["--dry-run"] if dry_run else []), method_check=False) for cell in table_cells]
    for cell, run in zip(table_cells, runs):  # every cell that will run is checked before the first one starts
        problem = None if (run.method, run.tokens) in refused else launch.check_method(run)
        if problem:
            raise SystemExit(f"error: cell {' '.join(cell)}: {problem}")
    if any(run.dry_run for run in runs):  # --dry-run after `--` (passed to every run) is the table's too
        for run in runs:
            if (run.method, run.tokens) in refused:
                print(not_available(run, refused[run.method, run.tokens]))
            else:
                launch.run(run)
        return 0
    status = {"done": 0, "skipped": 0, "failed": 0}
    failed = []
    skipped = [run for run in runs if (run.method, run.tokens) in refused]
    for run in skipped:
        print(not_available(run, refused[run.method, run.tokens]))
    with tqdm(
        [run for run in runs if (run.method, run.tokens) not in refused], desc=f"{name} table", unit="cell"
    ) as progress:
        for run in progress:
            out = launch.output_folder(run)
            progress.set_postfix_str(f"{run.spec.name} {run.method} {out.parent.name}")
            if launch.already_evaluated(run):  # nothing to run: says so, writes nothing (not even a log)
                result = launch.run(run)
            else:
                out.mkdir(parents=True, exist_ok=True)
                with (out / "lmms_eval.log").open("a") as log:
                    result = launch.run(run, log=log)
            status[result] += 1
            if result == "failed":  # launch.run has said why, naming the log
                failed.append(out)
                if not keep_going:
                    break
    print(f"done {status['done']}, already there {status['skipped']}, failed {status['failed']}"
          + (f", n/a {len(skipped)}" if skipped else ""))  # fmt: skip
    root = runs[0].results / launch.model_folder(runs[0])
    if root.exists():
        try:
            built = tables.build(Path(root).parent, model=root.name, paper=paper, family=family)
        except ResultFileError as error:
            raise SystemExit(f"the table cannot be built: {error}") from None
        for table in built:
            table.notes += list(notes)
        print(tables.render(built, "markdown"))
    return 1 if failed else 0


def not_available(run, reason: str) -> str:
    """The line a cell the model cannot run prints instead of its command."""
    return f"n/a: {reason} [{run.family} {run.spec.name} {run.method} {run.tokens} tokens]"


if __name__ == "__main__":
    raise SystemExit(main())
