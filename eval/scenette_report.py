"""Outputs of the Scenette sweep (eval/scenette.py): the paper-style table as Markdown and CSV
(rendered by eval/tables.py) and the plot of relative accuracy against the visual-token budget.

Rows: the unpruned model, then each budget (largest first) with its methods, VisPruner last, as
the paper's tables. Columns: accuracy (%) per question type, Acc. = their mean, Rel. = the mean
over types of accuracy / unpruned accuracy, in % (the paper's definition, as eval/tables.py). A method that cannot run at a budget on this model shows n/a, with the reason
under the Markdown table.
"""
from __future__ import annotations

from pathlib import Path

from scenette.questions import QUESTION_TYPES

from .tables import Line, Table, render

SUMMARY = ["Acc.", "Rel."]
NOT_APPLICABLE = "n/a"
HIGHLIGHT = "vispruner"


def columns() -> list[str]:
    return [qtype.capitalize() for qtype in QUESTION_TYPES]


def _order(pair) -> tuple:
    cell = pair[0]
    return (cell.method != "none", -(cell.budget or 0), cell.method == HIGHLIGHT, cell.method)


def _pairs(cells, records) -> list[tuple]:
    """(cell, record or None) in table order; records belong to the cells that could run, in order."""
    found = iter(records)
    return sorted(((cell, None if cell.reason else next(found)) for cell in cells), key=_order)


def relative(record: dict, unpruned: dict) -> float | None:
    """Mean over question types of accuracy / unpruned accuracy, in %, over the types the unpruned
    model gets any right (a ratio to 0 is undefined); None if there is none."""
    base = unpruned["accuracy"]
    types = [t for t in record["accuracy"] if base.get(t)]
    return 100 * sum(record["accuracy"][t] / base[t] for t in types) / len(types) if types else None


def build_table(cells, records) -> Table:
    pairs = _pairs(cells, records)
    unpruned = pairs[0][1]
    lines = []
    for cell, record in pairs:
        ratio = cell.options.get("important_ratio")
        ratio = "" if ratio is None else f"{ratio:g}"
        if record is None:
            marks = {label: NOT_APPLICABLE for label in columns() + SUMMARY}
            lines.append(Line(cell.method, str(cell.budget), ratio, dict.fromkeys(columns()), marks, dict.fromkeys(SUMMARY)))
            continue
        values = {label: record["accuracy"][qtype] for label, qtype in zip(columns(), QUESTION_TYPES)}
        summary = {"Acc.": record["mean"], "Rel.": relative(record, unpruned)}
        if cell.method == "none":
            lines.append(Line("unpruned", str(record["visual_tokens"]), ratio, values, summary=summary))
        else:
            lines.append(Line(cell.method, str(cell.budget), ratio, values, summary=summary))
    title = f"Scenette-LLaVA ({Path(unpruned['model']).name}), first {unpruned['per_type']} questions of each type"
    return Table(title, columns(), SUMMARY, lines)


def notes(cells, records) -> list[str]:
    """How the table was made: definitions, options moved to fit the model, n/a reasons, hardware."""
    seconds = sum(r["seconds"] for r in records)
    hardware = records[0]["hardware"]
    dates = sorted(r["hardware"]["date"] for r in records)
    out = [
        "Acc.: mean accuracy (%) over the six question types; Rel.: mean over the types of accuracy / unpruned accuracy (%), as the paper. "
        f"{sum(records[0]['questions'].values())} questions per cell, through lmms-eval {records[0]['lmms_eval']} "
        "and the `vispruner` plugin.",
        f"Measured on {hardware['cpu']} ({hardware['device']}, torch threads: {hardware['cpu_threads']}), "
        f"torch {hardware['torch']}, transformers {hardware['transformers']}, {dates[0]} to {dates[-1]}; "
        f"{seconds:.0f} s of evaluation in all.",
    ]
    adapted = {(c.method, repr(sorted(c.adapted.items()))): c for c in cells if c.adapted}
    for cell in adapted.values():
        moved = ", ".join(f"{key}={tuple(value)}" for key, value in cell.adapted.items())
        out.append(f"{cell.method}: {moved}, its defaults (LLaVA-1.5-7B's 32 layers) at the same relative depth "
                   "of this language model.")  # fmt: skip
    out += [f"{cell.method} at {cell.budget}: n/a ({cell.reason})." for cell in cells if cell.reason]
    return out


def plot(cells, records, path: Path) -> None:
    """Relative accuracy against the budget (log2 axis), one line per method, VisPruner highlighted."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullLocator

    pairs = _pairs(cells, records)
    unpruned = pairs[0][1]
    full = unpruned["visual_tokens"]
    curves: dict[str, list[tuple[int, float]]] = {}
    for cell, record in pairs[1:]:
        rel = relative(record, unpruned) if record else None
        if rel is not None:
            curves.setdefault(cell.method, []).append((cell.budget, rel))
    figure = Figure(figsize=(7.5, 4.5), layout="constrained")
    axes = figure.add_subplot()
    palette = [c for i, c in enumerate(colormaps["tab10"].colors) if i != 3]  # red is VisPruner's
    baselines = sorted(m for m in curves if m != HIGHLIGHT)
    for index, method in enumerate(baselines):
        x, y = zip(*sorted(curves[method]))
        axes.plot(x, y, marker=".", linewidth=1.2, alpha=0.8, color=palette[index % len(palette)],
                  linestyle="-" if index < len(palette) else "--", label=method)  # fmt: skip
    if HIGHLIGHT in curves:
        x, y = zip(*sorted(curves[HIGHLIGHT]))
        axes.plot(x, y, marker="o", linewidth=2.8, color="tab:red", label="VisPruner", zorder=5)
    axes.axhline(100, color="grey", linestyle=":", linewidth=1)
    axes.plot([full], [100], marker="*", markersize=13, color="black", linestyle="none", label=f"unpruned ({full})", zorder=6)
    ticks = sorted({cell.budget for cell, _ in pairs[1:]} | {full})
    axes.set_xscale("log", base=2)
    axes.set_xticks(ticks, labels=[str(t) for t in ticks])
    axes.xaxis.set_minor_locator(NullLocator())
    axes.set_xlim(ticks[0] / 1.2, full * 1.2)
    axes.set_xlabel("visual tokens kept per image")
    axes.set_ylabel("relative accuracy (% of unpruned)")
    axes.set_title(f"Scenette-LLaVA: accuracy kept under pruning ({unpruned['per_type']} questions per type)")
    axes.grid(alpha=0.3)
    axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    figure.savefig(path, dpi=150)


def write_report(cells, records, output: Path) -> str:
    """Write table.md, table.csv and relative_accuracy.png under `output`; returns the Markdown."""
    table = build_table(cells, records)
    markdown = render([table], "markdown") + "\n" + "\n".join(f"- {note}" for note in notes(cells, records)) + "\n"
    (output / "table.md").write_text(markdown)
    (output / "table.csv").write_text(render([table], "csv"))
    plot(cells, records, output / "relative_accuracy.png")
    return markdown
