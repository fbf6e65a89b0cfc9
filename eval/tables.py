"""Render evaluation results in the paper's layout: rows method x budget, columns benchmarks.

    python -m eval.tables results/                     # Markdown, one table per model
    python -m eval.tables results/ --format latex --paper
    python -m eval.tables results/ --out tables/       # table_<model>.md / .tex / .csv

Image tables end with Acc. (plain mean, MME divided by 20) and Rel. (mean of score / unpruned
score, in %), as the paper computes them; both need every column (else "–"). Video tables end
with the average accuracy and score. MME is the perception score (cognition beside it). Cells
waiting for an evaluation server show "sub." (for the GPT judge: "judge"). A setting run with extra
model arguments (`+key=value` in its folder name, eval/results.py) shows them in an Options column.
--paper adds the paper's own numbers (eval/paper_numbers.py) under each row that matches a paper row:
same method and TOKENS as the paper recipe's cell (eval/paper_tables.py) and the recipe's options, e.g.
Video-LLaVA's `vispruner 455 +frame_cls=false+video_split=even+video_token_num=455`. The paper table
is the model folder's (a 7B LLaVA-1.5 / LLaVA-NeXT / Video-LLaVA name), or --family's.

Every format is written by pandas: Markdown by DataFrame.to_markdown (efficiency.tables), LaTeX as a
booktabs tabular by DataFrame.to_latex (title and notes as comments), CSV by DataFrame.to_csv.

Scenette sweeps (python -m eval.scenette: <folder>/<method>/<setting>.json, anywhere under the
given folder) get one table per folder, the same one the sweep prints at its end, notes under it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from efficiency.command import ResultFileError, atomic_write_text, output_problem
from efficiency.tables import markdown_text

from .benchmarks import BENCHMARKS, FAMILIES, table_order
from .paper_numbers import PAPER_LABELS, family_of, paper_row
from .results import Row, number_text, scan

MME = BENCHMARKS["mme"].label
MISSING = "–"
FORMATS = {"markdown": "md", "latex": "tex", "csv": "csv"}  # --format -> file suffix for --out


@dataclass
class Line:
    method: str
    tokens: str
    ratio: str
    values: dict[str, float | None]
    pending: dict[str, str] = field(default_factory=dict)  # column -> marker for cells awaiting a server / judge
    summary: dict[str, float | None] = field(default_factory=dict)
    paper: bool = False
    options: str = ""  # the extra model arguments of the setting, "key=value, ..."


@dataclass
class Table:
    model: str  # the model folder (CSV's model column)
    columns: list[str]
    summary_columns: list[str]
    lines: list[Line]
    title: str = ""  # the heading; the model when empty
    notes: list[str] = field(default_factory=list)  # how the table was made: under it (LaTeX: comments)
    name: str = ""  # file name stem for --out; the model when empty

    @property
    def heading(self) -> str:
        return self.title or self.model

    @property
    def stem(self) -> str:
        return (self.name or self.model).replace("/", "_")


def build(root: Path, model: str | None = None, paper: bool = False, family: str | None = None) -> list[Table]:
    """One table per model folder under `root`; `paper`: the paper's rows under matching ones, from the paper table
    of `family` (eval.benchmarks.FAMILIES key) or else the one the model folder's name implies."""
    rows = scan(Path(root))
    models = sorted({row.model for row in rows if model is None or row.model == model})
    return [_table(name, [row for row in rows if row.model == name], paper, family) for name in models]


def _table(model: str, rows: list[Row], paper: bool, family: str | None = None) -> Table:
    family = family or family_of(model)
    order = {name: i for i, name in enumerate(table_order())}
    benchmarks = sorted({b for row in rows for b in row.runs}, key=lambda b: (order.get(b, len(order)), b))
    columns = []
    for bench in benchmarks:
        for row in rows:
            for label in row.runs.get(bench).values if bench in row.runs else ():
                if label not in columns:
                    columns.append(label)
    video = all(BENCHMARKS.get(b) is not None and BENCHMARKS[b].judged for b in benchmarks)
    main = [_main_labels(b, rows) for b in benchmarks if family is None or b in FAMILIES[family]["table"]]
    averaged = [label for labels in main for label in labels]
    summary_columns = ["Avg Acc", "Avg Score"] if video else ["Acc.", "Rel."]

    rows = sorted(rows, key=lambda row: _row_order(row, family))
    lines = [_line(row) for row in rows]
    baseline = next((line for line, row in zip(lines, rows) if row.method == "none"), None)
    for line in lines:
        line.summary = _video_summary(line, averaged) if video else _image_summary(line, averaged, baseline)
    if paper and family:
        lines = _with_paper_rows(lines, rows, family, columns, summary_columns)
    return Table(model, columns, summary_columns, lines)


def _main_labels(bench: str, rows: list[Row]) -> list[str]:
    spec = BENCHMARKS.get(bench)
    if spec is not None and spec.judged:
        return [f"{spec.label} Acc", f"{spec.label} Score"]
    run = next(row.runs[bench] for row in rows if bench in row.runs)
    return [run.label]


def _row_order(row: Row, family: str | None = None):
    """Unpruned first, then by budget (the paper's token label where a recipe runs the cell: LLaVA-NeXT's FastV
    at 640 sits with VisPruner at 128 per crop), VisPruner last in each group."""
    tokens = row.tokens or 0
    if family and row.method != "none":
        from .paper_tables import paper_cell  # here: eval.paper_tables imports this module (through run_table)

        tokens = (paper_cell(family, row.method, tokens) or (tokens,))[0]
    return (row.method != "none", -tokens, row.method == "vispruner", row.method, row.tokens or 0, row.ratio or 0,
            sorted(row.options.items()))  # fmt: skip


def _line(row: Row) -> Line:
    values, pending = {}, {}
    markers = {"awaiting server": "sub.", "awaiting judge": "judge"}
    for run in row.runs.values():
        values.update(run.values)
        if run.source in markers:
            pending.update({label: markers[run.source] for label, value in run.values.items() if value is None})
    tokens = "all" if row.method == "none" else str(row.tokens)
    ratio = "" if row.ratio is None else number_text(row.ratio)
    options = ", ".join(f"{key}={value}" for key, value in sorted(row.options.items()))
    return Line(row.method, tokens, ratio, values, pending, options=options)


def _image_summary(line: Line, averaged: list[str], baseline: Line | None) -> dict:
    values = [line.values.get(label) for label in averaged]
    if not averaged or any(v is None for v in values):
        return {"Acc.": None, "Rel.": None}
    acc = sum(v / 20 if label == MME else v for label, v in zip(averaged, values)) / len(values)
    base = [baseline.values.get(label) for label in averaged] if baseline else [None]
    rel = None if any(b in (None, 0) for b in base) else 100 * sum(v / b for v, b in zip(values, base)) / len(values)
    return {"Acc.": acc, "Rel.": rel}


def _video_summary(line: Line, averaged: list[str]) -> dict:
    acc = [line.values.get(label) for label in averaged if label.endswith(" Acc")]
    score = [line.values.get(label) for label in averaged if label.endswith(" Score")]
    mean = lambda xs: None if not xs or any(x is None for x in xs) else sum(xs) / len(xs)  # noqa: E731
    return {"Avg Acc": mean(acc), "Avg Score": mean(score)}


def _with_paper_rows(lines, rows, family, columns, summary_columns) -> list[Line]:
    out = []
    for line, row in zip(lines, rows):
        out.append(line)
        reported = paper_row(family, row.method, row.tokens, row.options)
        if reported is None:
            continue
        by_label = {BENCHMARKS[k].label if k in BENCHMARKS else k: v for k, v in reported.items()}
        values = {label: by_label.get(label) for label in columns}
        summary = {label: by_label.get(label) for label in summary_columns}
        label = f"{line.method} ({PAPER_LABELS[family]})"
        out.append(Line(label, line.tokens, line.ratio, values, summary=summary, paper=True))
    return out


# --- rendering ---------------------------------------------------------------------------------


def _cell(line: Line, label: str) -> str:
    # Written as text here: a column mixes numbers with markers ("sub.", "–"), each label has its own format
    # (Score .2f, Rel. with %), and tabulate formats a column holding any text with str().
    value = line.summary.get(label) if label in line.summary else line.values.get(label)
    if value is None:
        return line.pending.get(label, MISSING)
    if label == "Rel.":
        return f"{value:.1f}%"
    return f"{value:.2f}" if label.endswith("Score") else f"{value:.1f}"


def _has_options(table: Table) -> bool:
    return any(line.options for line in table.lines)


def _grid(table: Table) -> tuple[list[str], list[list[str]]]:
    """Header and cells; the Options column only when a row has extra model arguments."""
    keys = ["Method", "Tokens", "r"] + (["Options"] if _has_options(table) else [])
    header = [*keys, *table.columns, *table.summary_columns]
    body = [
        [line.method, line.tokens, line.ratio]
        + ([line.options] if _has_options(table) else [])
        + [_cell(line, c) for c in table.columns + table.summary_columns]
        for line in table.lines
    ]
    return header, body


def _first_number(table: Table) -> int:
    return 4 if _has_options(table) else 3


def render(tables: list[Table], fmt: str = "markdown") -> str:
    return "\n".join({"markdown": _markdown, "latex": _latex, "csv": _csv}[fmt](table) for table in tables)


def markdown_table(header: list[str], body: list[list[str]], title: str = "", right_aligned=()) -> str:
    """A Markdown table by pandas (efficiency.tables.markdown_text), cells exactly as given (so 55.0 stays 55.0),
    under a "# title" heading; the columns at the indices `right_aligned` (numbers) are right-aligned, the others
    left."""
    heading = f"# {title}\n\n" if title else ""  # written here: to_markdown has no title or caption
    return heading + markdown_text(header, body, right_aligned) + "\n"


def _markdown(table: Table) -> str:
    header, body = _grid(table)
    notes = "".join(f"\n- {note}" for note in table.notes)  # written here: to_markdown writes no text beside the table
    table_text = markdown_table(header, body, table.heading, right_aligned=range(_first_number(table), len(header)))
    return table_text + (notes + "\n" if notes else "")


def _latex(table: Table) -> str:
    """A booktabs tabular by pandas (DataFrame.to_latex escapes the cells); the heading and notes as comments."""
    import pandas

    header, body = _grid(table)
    frame = pandas.DataFrame(body, columns=header, dtype=object)
    first = _first_number(table)
    tabular = frame.to_latex(index=False, escape=True, column_format="l" * first + "r" * (len(header) - first))
    # Written here: pandas writes no comment lines, and its caption would wrap the tabular in a table float.
    lines = [f"% {table.heading}", tabular.rstrip("\n"), *(f"% {note}" for note in table.notes)]
    return "\n".join(lines) + "\n"


def _csv(table: Table) -> str:
    import pandas

    numbers = table.columns + table.summary_columns
    keys = ["model", "method", "tokens", "ratio"] + (["options"] if _has_options(table) else [])
    frame = pandas.DataFrame(
        [[table.model, line.method, line.tokens, line.ratio, *([line.options] if _has_options(table) else []),
          *(line.summary.get(c, line.values.get(c)) for c in numbers)] for line in table.lines],
        columns=[*keys, *numbers],
    )  # fmt: skip
    frame = frame.astype(dict.fromkeys(numbers, "float64"))  # None -> NaN, written as an empty field
    return frame.to_csv(index=False, float_format="%.6g", lineterminator="\n")


def collect(root: Path, model: str | None = None, paper: bool = False, family: str | None = None) -> list[Table]:
    """Every table under `root`: the launcher's results tree, then each Scenette sweep folder."""
    from .scenette_report import tables_under

    scenette = [table for table in tables_under(root) if model is None or table.model == model]
    return build(root, model, paper, family) + scenette


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.tables", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("results", type=Path, help="results root (results/), or one Scenette sweep folder")
    parser.add_argument("--model", help="only this model folder (Scenette: the checkpoint's folder name)")
    parser.add_argument("--format", choices=tuple(FORMATS), default="markdown")
    parser.add_argument("--paper", action="store_true", help="add the paper's numbers under matching rows")
    parser.add_argument("--family", choices=sorted(FAMILIES),
                        help="--paper: compare with this paper table (default: the one the model folder's name implies)")  # fmt: skip
    parser.add_argument("--out", type=Path, help="write table_<model>.md/.tex/.csv here instead of printing")
    args = parser.parse_args(argv)
    if not args.results.is_dir():
        parser.error(f"results: {args.results}: no such folder")
    if args.family and not args.paper:
        parser.error(f"--family {args.family} chooses the paper table of --paper: give --paper too")
    problem = output_problem(args.out, folder=True, exist_ok=True)
    if problem:
        parser.error(f"--out: {problem}")
    try:
        tables = collect(args.results, args.model, args.paper, args.family)
    except ResultFileError as error:
        raise SystemExit(f"error: {error}") from None
    if not tables and args.model:
        found = sorted({table.model for table in collect(args.results)})
        parser.error(f"--model {args.model}: no results of that model folder in {args.results}; "
                     f"found: {', '.join(found) or 'none'}")  # fmt: skip
    if not tables:
        parser.error(f"{args.results}: no results (<model>/<method>/<setting>/<benchmark>/benchmark.json, "
                     "or a Scenette sweep's <folder>/<method>/<setting>.json)")  # fmt: skip
    if args.out is None:
        print(render(tables, args.format), end="")
        return 0
    for table in tables:  # each file whole or not at all: written beside, then renamed
        for fmt, suffix in FORMATS.items():
            path = atomic_write_text(args.out / f"table_{table.stem}.{suffix}", render([table], fmt))
            print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
