"""A Scenette sweep folder (eval/scenette.py) as the paper-style table, read from its files alone, so
the sweep's own report and `python -m eval.tables` are one path; eval/tables.py renders the table.

Rows: the unpruned model, then each budget (largest first) with its methods, VisPruner last, as
the paper's tables. Columns: accuracy (%) per question type, Acc. = their mean, Rel. = the mean
over types of accuracy / unpruned accuracy, in % (the paper's definition, as eval/tables.py). A
method that cannot run at a budget on this model shows n/a, the reason under the table (from
unavailable.json); a method x budget of the folder's grid without a result file shows "–".
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from efficiency.command import LEFT_AS_IT_IS, ResultFileError, atomic_write, atomic_write_text, read_json

from .results import number_text, parse_setting, setting_name
from .tables import Line, Table, render

BENCHMARK = "scenette"  # the "benchmark" field of every cell file (eval/scenette_cells.GROUP)
UNAVAILABLE = "unavailable.json"  # <folder>/unavailable.json: the cells that cannot run, with the reasons
SUMMARY = ["Acc.", "Rel."]
NOT_APPLICABLE = "n/a"
HIGHLIGHT = "vispruner"
UNPRUNED = "none"
# What every cell file holds (eval/scenette.py writes them): its settings, then what the table, the plot and
# the comparison read. A file without them is named in an error, never read as a finished cell.
RECORD_KEYS = ("benchmark", "method", "visual_token_num", "options", "adapted", "per_type", "limit", "checkpoint",
               "conv_template", "model", "visual_tokens", "accuracy", "mean", "questions", "answers", "seconds",
               "hardware", "lmms_eval")  # fmt: skip
UNAVAILABLE_KEYS = ("method", "visual_token_num", "per_type", "checkpoint", "reason")


@dataclass
class Entry:
    """One method x budget of a sweep: its result file's record, or why there is none."""

    method: str
    budget: int | None
    record: dict | None = None
    reason: str | None = None  # why the method cannot run here; None without a record: no result file

    @property
    def ratio(self) -> float | None:
        return (self.record or {}).get("options", {}).get("important_ratio")


@dataclass
class Sweep:
    """The cells of one folder made with one checkpoint and one number of questions per type."""

    folder: Path
    entries: list[Entry]  # in table order: the unpruned model first

    @property
    def records(self) -> list[dict]:
        return [entry.record for entry in self.entries if entry.record]

    @property
    def unpruned(self) -> dict | None:
        return next((e.record for e in self.entries if e.method == UNPRUNED and e.record), None)


def cell_key(record: dict) -> str:
    """<method>/<setting>, the file a record lives in, relative to its folder."""
    ratio = record.get("options", {}).get("important_ratio")
    return f"{record['method']}/{setting_name(record['method'], record['visual_token_num'], ratio, record['limit'])}"


def read_cell(path: Path) -> dict:
    """The record of the cell file at `path`: a ResultFileError names a file that is not JSON, not a Scenette
    cell (another "benchmark") or one without what a finished cell holds (RECORD_KEYS)."""
    record = read_json(path, what="a Scenette cell (eval/scenette.py)")
    if record.get("benchmark") != BENCHMARK:
        raise ResultFileError(f"{path}: holds no Scenette cell (benchmark {record.get('benchmark')!r}, not "
                              f"{BENCHMARK!r}); {LEFT_AS_IT_IS}")  # fmt: skip
    return check_cell(record, path)


def check_cell(record: dict, path: Path) -> dict:
    missing = [key for key in RECORD_KEYS if key not in record]
    if missing:
        raise ResultFileError(f"{path}: not a finished Scenette cell: no {', '.join(missing)}; {LEFT_AS_IT_IS}")
    numbers = record["accuracy"], record["questions"]
    if not all(isinstance(value, dict) and value for value in numbers) or not _numbers(
        [*record["accuracy"].values(), *record["questions"].values(), record["mean"], record["seconds"]]
    ):
        raise ResultFileError(f"{path}: not a finished Scenette cell: accuracy, questions, mean or seconds is not "
                              f"numbers; {LEFT_AS_IT_IS}")  # fmt: skip
    return record


def _numbers(values) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)


def read_cells(folder: Path) -> dict[str, dict]:
    """Every Scenette cell file of `folder` by cell_key; files set aside by --rerun (<setting>.before-<time>.json)
    and JSON of other benchmarks are not cells. A cell file that cannot be read as one is a ResultFileError."""
    cells = {}
    for path in sorted(folder.glob("*/*.json")):
        if parse_setting(path.stem) is None:
            continue
        record = read_json(path, what="a Scenette cell (eval/scenette.py)")
        if record.get("benchmark") == BENCHMARK:
            cells[f"{path.parent.name}/{path.stem}"] = check_cell(record, path)
    return cells


def read_unavailable(folder: Path) -> dict[str, dict]:
    path = folder / UNAVAILABLE
    if not path.is_file():
        return {}
    known = read_json(path, what="the cells that cannot run ({cell: {method, visual_token_num, ...}})")
    for key, note in known.items():
        missing = [k for k in UNAVAILABLE_KEYS if not isinstance(note, dict) or k not in note]
        if missing:
            raise ResultFileError(f"{path}: entry {key!r} has no {', '.join(missing)}; {LEFT_AS_IT_IS}")
    return known


def _order(entry: Entry) -> tuple:
    return (entry.method != UNPRUNED, -(entry.budget or 0), entry.method == HIGHLIGHT, entry.method, entry.ratio or 0)


def load(folder: Path) -> list[Sweep]:
    """The folder's sweeps, one per (checkpoint, questions per type); each fills the grid of the
    methods and budgets it has, so a cell without a file shows."""
    groups: dict[tuple, list[Entry]] = defaultdict(list)
    for record in read_cells(folder).values():
        entry = Entry(record["method"], record["visual_token_num"], record)
        groups[record["checkpoint"], record["per_type"]].append(entry)
    for note in read_unavailable(folder).values():
        entry = Entry(note["method"], note["visual_token_num"], reason=note["reason"])
        groups[note["checkpoint"], note["per_type"]].append(entry)
    sweeps = []
    for key in sorted(groups, key=lambda key: (key[1], key[0])):
        entries = groups[key]
        pruned = [entry for entry in entries if entry.method != UNPRUNED]
        present = {(entry.method, entry.budget) for entry in entries}
        methods, budgets = {e.method for e in pruned}, {e.budget for e in pruned}
        holes = [Entry(m, b) for m in methods for b in budgets if (m, b) not in present]
        sweeps.append(Sweep(folder, sorted(entries + holes, key=_order)))
    return sweeps


def relative(record: dict, unpruned: dict | None) -> float | None:
    """Mean over question types of accuracy / unpruned accuracy, in %, over the types the unpruned
    model gets any right (a ratio to 0 is undefined); None if there is none."""
    if unpruned is None:
        return None
    base = unpruned["accuracy"]
    types = [t for t in record["accuracy"] if base.get(t)]
    return 100 * sum(record["accuracy"][t] / base[t] for t in types) / len(types) if types else None


def question_types(sweep: Sweep) -> list[str]:
    return list(sweep.records[0]["accuracy"])  # in the order the sweep wrote them (scenette.questions)


def build_table(sweep: Sweep, label: str = "") -> Table:
    """The sweep as a table of eval/tables.py; `label` (where the folder is, for eval.tables) ends the title."""
    types, unpruned = question_types(sweep), sweep.unpruned
    columns = [qtype.capitalize() for qtype in types]
    lines = []
    for entry in sweep.entries:
        ratio = "" if entry.ratio is None else number_text(entry.ratio)
        if entry.record is None:
            marks = dict.fromkeys(columns + SUMMARY, NOT_APPLICABLE) if entry.reason else {}
            empty = dict.fromkeys(columns)
            lines.append(Line(entry.method, str(entry.budget), ratio, empty, marks, dict.fromkeys(SUMMARY)))
            continue
        record = entry.record
        values = {label: record["accuracy"][qtype] for label, qtype in zip(columns, types)}
        summary = {"Acc.": record["mean"], "Rel.": relative(record, unpruned)}
        unpruned_row = entry.method == UNPRUNED
        method, tokens = ("unpruned", record["visual_tokens"]) if unpruned_row else (entry.method, entry.budget)
        lines.append(Line(method, str(tokens), ratio, values, summary=summary))
    first = unpruned or sweep.records[0]
    model = Path(first["model"]).name
    title = f"Scenette-LLaVA ({model}), first {first['per_type']} questions of each type"
    title += f", in {label}/" if label else ""
    name = "_".join(["scenette", sweep.folder.name, f"{first['per_type']}-per-type", first["checkpoint"]])  # --out
    return Table(model, columns, list(SUMMARY), lines, title=title, notes=notes(sweep), name=name)


def notes(sweep: Sweep) -> list[str]:
    """How the table was made: definitions, options moved to fit the model, n/a reasons, hardware."""
    records = sweep.records
    seconds = sum(r["seconds"] for r in records)
    hardware = records[0]["hardware"]
    dates = sorted(r["hardware"]["date"] for r in records)
    out = [
        "Acc.: mean accuracy (%) over the six question types; Rel.: mean over the types of accuracy / unpruned "
        "accuracy (%), as the paper. "
        f"{sum(records[0]['questions'].values())} questions per cell, through lmms-eval {records[0]['lmms_eval']} "
        "and the `vispruner` plugin.",
        f"Measured on {hardware['cpu']} ({hardware['device']}, torch threads: {hardware['cpu_threads']}), "
        f"torch {hardware['torch']}, transformers {hardware['transformers']}, {dates[0]} to {dates[-1]}; "
        f"{seconds:.0f} s of evaluation in all.",
    ]
    adapted = {(r["method"], json.dumps(r["adapted"], sort_keys=True)): r for r in records if r["adapted"]}
    for record in adapted.values():
        moved = ", ".join(f"{key}={tuple(value)}" for key, value in record["adapted"].items())
        out.append(f"{record['method']}: {moved}, its defaults (LLaVA-1.5-7B's 32 layers) at the same relative depth "
                   "of this language model.")  # fmt: skip
    for entry in sweep.entries:
        if entry.record is None:
            why = f"n/a ({entry.reason})" if entry.reason else "no result in this folder"
            out.append(f"{entry.method} at {entry.budget}: {why}.")
    return out


def tables_under(root: Path) -> list[Table]:
    """A table per Scenette sweep in `root` or any folder below it (a sweep's folder holds none/<setting>.json)."""
    folders = sorted({path.parent.parent for path in Path(root).rglob(f"{UNPRUNED}/*.json")})
    return [build_table(sweep, folder.as_posix()) for folder in folders for sweep in load(folder) if sweep.records]


def write_report(folder: Path) -> str:
    """table.md, table.csv and the plot (relative_accuracy.png; one per sweep when the folder has several)
    from the folder's files; returns the Markdown."""
    from .scenette_plot import plot

    sweeps = [sweep for sweep in load(folder) if sweep.records]
    tables = [build_table(sweep) for sweep in sweeps]
    markdown = render(tables, "markdown")
    atomic_write_text(folder / "table.md", markdown)  # each file whole or not at all: written beside, renamed
    atomic_write_text(folder / "table.csv", render(tables, "csv"))
    for sweep, table in zip(sweeps, tables):
        if sweep.unpruned is None:  # Rel. needs the unpruned cell
            continue
        path = folder / ("relative_accuracy.png" if len(sweeps) == 1 else f"relative_accuracy_{table.stem}.png")
        atomic_write(path, lambda temporary, sweep=sweep: plot(sweep, temporary))
    return markdown
