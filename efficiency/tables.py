"""Markdown tables of results, written by pandas (`DataFrame.to_markdown`, which uses tabulate).

    markdown(rows, [Column("method", "method"), Column("TTFT ms", lambda r: r["ttft"]["median_ms"], ".1f")])

Numbers stay numbers until tabulate formats them (right-aligned, each column with its format spec);
a missing value (None) prints as "-". Cells already written as text (a column that mixes numbers with
markers such as "sub.") go through `markdown_text`, which prints them as given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

MISSING = "-"
GENERAL_FORMAT = "g"  # tabulate's own default for floats


@dataclass(frozen=True)
class Column:
    """A table column: its header, the row's value (a key of the row, or a function of the row) and,
    for floats, a format spec such as ".1f" or ".1%"."""

    header: str
    value: str | Callable[[dict], object]
    format: str = GENERAL_FORMAT

    def of(self, row: dict) -> object:
        return self.value(row) if callable(self.value) else row[self.value]


def markdown(rows: Sequence[dict], columns: Sequence[Column]) -> str:
    """A GitHub-flavoured Markdown table: one line per row, one cell per column."""
    import pandas  # here, not at the top: the command lines answer --help without loading pandas

    frame = pandas.DataFrame(
        [[column.of(row) for column in columns] for row in rows],
        columns=[column.header for column in columns],
        dtype=object,  # keeps ints as ints and None as None (not NaN), so tabulate formats each as it is
    )
    return frame.to_markdown(index=False, floatfmt=tuple(c.format for c in columns), missingval=MISSING)


def markdown_text(header: Sequence[str], body: Sequence[Sequence[str]], right_aligned: Iterable[int] = ()) -> str:
    """A GitHub-flavoured Markdown table of cells already written as text, printed exactly as given (no number
    parsing, so "55.0" stays 55.0); the columns at the indices `right_aligned` (numbers) are right-aligned, the
    others left."""
    import pandas

    right = set(right_aligned)
    frame = pandas.DataFrame(list(body), columns=list(header), dtype=object)
    align = ["right" if i in right else "left" for i in range(len(header))]
    return frame.to_markdown(index=False, disable_numparse=True, colalign=align)
