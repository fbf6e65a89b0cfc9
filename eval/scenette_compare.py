"""Does a Scenette sweep reproduce a reference sweep (by default the committed results/scenette/)?

Cells are matched by file, <method>/<setting>.json (so the same questions), and judged:
  same accuracy        every question type's accuracy is equal (answers that changed anyway are counted)
  differs              the change of Acc. in points, within or beyond binomial noise: the 95 % interval of
                       the difference of two independent runs of that many questions (normal approximation,
                       eval/binomial.py), the yardstick of "differences of a few points are noise". Both runs
                       ask the same questions, so a difference here comes from numerics (threads, CPU,
                       library versions), not from sampling.
  not comparable       the reference cell was made with other settings (checkpoint, options, ...)
  no reference cell    the reference has no file for it
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .binomial import difference_half_width
from .results import number_text, setting_name
from .scenette_cells import SETTING_KEYS
from .scenette_report import Entry, cell_key, load, read_cells, read_unavailable
from .tables import markdown_table

SAME, WITHIN, BEYOND = "same", "within noise", "beyond noise"
COMPARED = (SAME, WITHIN, BEYOND)
NOT_COMPARABLE, NO_REFERENCE, MISSING = "not comparable", "no reference cell", "no result in this run"
NA_BOTH, NA_NO_REFERENCE, NA_HERE_ONLY = "n/a in both", "n/a without reference cell", "n/a here only"
CONSISTENT = (SAME, NA_BOTH, NA_NO_REFERENCE)  # no result on either side agrees too


@dataclass
class Verdict:
    method: str
    budget: int | None
    ratio: str
    kind: str  # SAME, WITHIN, BEYOND, or another outcome (no reference, n/a, ...)
    text: str
    reference: float | None = None  # Acc. (%)
    ours: float | None = None
    delta: float | None = None
    noise: float | None = None  # 95 % half-width of the difference, points
    changed: int | None = None  # answers that differ


def _changed_answers(ours: dict, theirs: dict) -> int | None:
    pairs = [(ours["answers"][t], theirs["answers"].get(t, [])) for t in ours["answers"]]
    if any(len(a) != len(b) for a, b in pairs):
        return None
    return sum(x != y for a, b in pairs for x, y in zip(a, b))


def _noise_words(verdict: Verdict) -> str:
    return f"{verdict.kind.replace('noise', 'binomial noise')} (±{verdict.noise:.1f})"


def judge(ours: dict, theirs: dict) -> Verdict:
    """Verdict of a cell against its reference cell (both records of the same file name)."""
    ratio = ours.get("options", {}).get("important_ratio")
    verdict = Verdict(ours["method"], ours["visual_token_num"], "" if ratio is None else number_text(ratio), "", "")
    other = [key for key in SETTING_KEYS if ours.get(key) != theirs.get(key)]
    if other:
        verdict.kind, verdict.text = NOT_COMPARABLE, f"not comparable: the reference has other {', '.join(other)}"
        return verdict
    verdict.reference, verdict.ours = theirs["mean"], ours["mean"]
    verdict.delta, verdict.noise = ours["mean"] - theirs["mean"], difference_half_width(ours, theirs)
    verdict.changed = _changed_answers(ours, theirs)
    changes = {t: ours["accuracy"][t] - theirs["accuracy"][t] for t in ours["accuracy"]}
    changes = {t: change for t, change in changes.items() if change}
    if not changes:
        verdict.kind, verdict.text = SAME, "same accuracy"
        return verdict
    verdict.kind = WITHIN if abs(verdict.delta) <= verdict.noise else BEYOND
    largest = max(changes, key=lambda t: abs(changes[t]))
    verdict.text = (f"differs: Acc. {verdict.delta:+.1f} points ({largest} {changes[largest]:+.1f}), "
                    f"{_noise_words(verdict)}")  # fmt: skip
    return verdict


def _without_result(entry: Entry, key: str, reference: dict, unavailable: dict) -> Verdict:
    if entry.reason is None:
        kind, text = MISSING, "no result in this run"
    elif key in reference:
        kind, text = NA_HERE_ONLY, "n/a here, but the reference has a result"
    elif key in unavailable:
        kind, text = NA_BOTH, "n/a here and in the reference"
    else:
        kind, text = NA_NO_REFERENCE, "n/a here; the reference has no cell either"
    return Verdict(entry.method, entry.budget, "", kind, text)


def compare(folder: Path, reference: Path) -> tuple[list[Verdict], int]:
    """A verdict per cell of `folder`, and how many reference cells this run did not make."""
    theirs, unavailable = read_cells(reference), read_unavailable(reference)
    verdicts, seen = [], set()
    for sweep in load(folder):
        limit = sweep.records[0]["limit"] if sweep.records else None
        for entry in sweep.entries:
            if entry.record is None:
                key = f"{entry.method}/{setting_name(entry.method, entry.budget, None, limit)}"
                verdicts.append(_without_result(entry, key, theirs, unavailable))
                continue
            key = cell_key(entry.record)
            seen.add(key)
            if key in theirs:
                verdicts.append(judge(entry.record, theirs[key]))
            else:
                ratio = "" if entry.ratio is None else number_text(entry.ratio)
                verdicts.append(Verdict(entry.method, entry.budget, ratio, NO_REFERENCE, "no reference cell"))
    return verdicts, len(set(theirs) - seen)


def summary(verdicts: list[Verdict], reference: Path, not_made: int) -> str:
    """The verdict in words: 'matches' only when every cell agrees with the reference."""
    kinds = Counter(v.kind for v in verdicts)
    compared, differ = sum(kinds[k] for k in COMPARED), kinds[WITHIN] + kinds[BEYOND]
    counts = (f"{compared} cells compared with {reference}: {kinds[SAME]} same accuracy, {differ} differ "
              f"({kinds[WITHIN]} within binomial noise, {kinds[BEYOND]} beyond)")  # fmt: skip
    others = [f"{count} {kind}" for kind, count in sorted(kinds.items()) if kind not in COMPARED]
    others += [f"{not_made} reference cells this run did not make"] if not_made else []
    counts += f"; {', '.join(others)}." if others else "."
    if compared == 0:
        return f"{counts}\nNothing to compare: the reference has none of this run's cells."
    if differ:
        worst = max((v for v in verdicts if v.kind in (WITHIN, BEYOND)), key=lambda v: abs(v.delta))
        return (f"{counts}\nThe new table differs from the reference in {differ} of {compared} cells; largest: "
                f"{worst.method} {worst.budget}, Acc. {worst.delta:+.1f} points, {_noise_words(worst)}.")  # fmt: skip
    if sum(kinds[k] for k in CONSISTENT) == len(verdicts) and not not_made:
        return f"{counts}\nThe new table matches the reference: every cell has the same accuracy."
    return f"{counts}\nEvery cell found in both has the same accuracy; the others are listed above."


def report(folder: Path, reference: Path) -> str:
    """The comparison as a Markdown table and a summary; a sentence when there is nothing to compare."""
    if not reference.is_dir() or not read_cells(reference):
        return f"No reference results in {reference}: nothing to compare.\n"
    if folder.resolve() == reference.resolve():
        return f"This run wrote into the reference folder {reference}: nothing to compare.\n"
    verdicts, not_made = compare(folder, reference)
    header = ["Method", "Tokens", "r", "Reference Acc.", "This run", "Δ Acc.", "±95 % noise", "Answers changed",
              "Verdict"]  # fmt: skip
    body = [[v.method, "all" if v.budget is None else str(v.budget), v.ratio, _number(v.reference, ".1f"),
             _number(v.ours, ".1f"), _number(v.delta, "+.1f"), _number(v.noise, ".1f"), _number(v.changed, "d"), v.text]
            for v in verdicts]  # fmt: skip
    title = f"This run ({folder}) against the reference ({reference})"
    table = markdown_table(header, body, title, right_aligned=range(3, len(header) - 1))
    return f"{table}\n{summary(verdicts, reference, not_made)}\n"


def _number(value, spec: str) -> str:
    return "" if value is None else format(value, spec)
