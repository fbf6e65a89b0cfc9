"""The Scenette sweep's plot: relative accuracy against the visual-token budget, one colour and one
marker per method (no two methods share either), 95 % binomial error bars (normal approximation,
eval/binomial.py), the methods side by side at each budget so that no point hides another."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .binomial import relative_half_width
from .scenette_report import HIGHLIGHT, UNPRUNED, Sweep, relative


@dataclass(frozen=True)
class Style:
    colour: str
    marker: str


# Fixed per method, so a method looks the same in every plot; VisPruner red, the unpruned model a black star.
STYLES = {
    UNPRUNED: Style("black", "*"),
    HIGHLIGHT: Style("tab:red", "o"),
    "divprune": Style("tab:blue", "s"),
    "fastervlm": Style("tab:orange", "^"),
    "fastv": Style("tab:green", "v"),
    "pdrop": Style("tab:purple", "D"),
    "pool": Style("tab:brown", "P"),
    "prumerge_plus": Style("tab:pink", "X"),
    "random": Style("tab:gray", "<"),
    "sparsevlm": Style("tab:olive", ">"),
    "tome": Style("tab:cyan", "p"),
    "visionzip": Style("gold", "h"),
}
# For methods registered later: colours and markers no method above uses.
SPARE_COLOURS = ("navy", "darkgreen", "maroon", "darkviolet", "teal", "sienna", "crimson", "slategrey")
SPARE_MARKERS = ("d", "H", "8", "1", "2", "3", "4", "+")
DODGE = 0.05  # log2 units between neighbouring methods at one budget (a budget step is 1)
MARKER_SIZE = {"line": 5.5, "single": 8.5}  # a method with one point draws it larger, so it stands out
ERROR_BAR = {"elinewidth": 0.8, "capsize": 2}


def styles(methods) -> dict[str, Style]:
    """A Style per method: the fixed one if it has one, else the next spare colour and marker."""
    out = {method: STYLES[method] for method in methods if method in STYLES}
    spare = iter(zip(SPARE_COLOURS, SPARE_MARKERS))
    for method in sorted(set(methods) - set(STYLES)):
        try:
            out[method] = Style(*next(spare))
        except StopIteration:
            message = f"more methods than plot styles; add styles to eval/scenette_plot.py for {method}"
            raise ValueError(message) from None
    return out


def curves(sweep: Sweep) -> dict[str, list[tuple[int, float, float]]]:
    """Per pruning method: (budget, Rel. %, its 95 % half-width) for the cells with a result."""
    unpruned = sweep.unpruned
    found: dict[str, list[tuple[int, float, float]]] = {}
    for entry in sweep.entries:
        rel = relative(entry.record, unpruned) if entry.record and entry.method != UNPRUNED else None
        if rel is not None:
            found.setdefault(entry.method, []).append((entry.budget, rel, relative_half_width(entry.record, unpruned)))
    return {method: sorted(points) for method, points in found.items()}


def figure(sweep: Sweep):
    """The matplotlib Figure (drawn without a display)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullLocator

    unpruned = sweep.unpruned
    full = unpruned["visual_tokens"]
    lines = curves(sweep)
    # Baselines alphabetically, VisPruner last; single points after every line, so they are drawn on top.
    order = sorted(lines, key=lambda m: (len(lines[m]) == 1, m == HIGHLIGHT, m))
    style = styles([UNPRUNED, *order])
    figure = Figure(figsize=(9, 5), layout="constrained")
    axes = figure.add_subplot()
    for rank, method in enumerate(order):
        budgets, rel, half = zip(*lines[method])
        offset = 2 ** ((rank - (len(order) - 1) / 2) * DODGE)  # side by side at a budget, on the log2 axis
        single, highlight = len(budgets) == 1, method == HIGHLIGHT
        axes.errorbar(
            [b * offset for b in budgets], rel, yerr=half, color=style[method].colour, marker=style[method].marker,
            markersize=MARKER_SIZE["single" if single else "line"], markeredgecolor="white", markeredgewidth=0.6,
            linewidth=2.4 if highlight else 1.2, label="VisPruner" if highlight else method, zorder=4 + rank,
            **ERROR_BAR,
        )  # fmt: skip
    axes.axhline(100, color="grey", linestyle=":", linewidth=1)
    axes.plot([full], [100], marker=style[UNPRUNED].marker, markersize=13, color=style[UNPRUNED].colour,
              linestyle="none", label=f"unpruned ({full})", zorder=4 + len(order))  # fmt: skip
    ticks = sorted({budget for points in lines.values() for budget, *_ in points} | {full})
    axes.set_xscale("log", base=2)
    axes.set_xticks(ticks, labels=[str(t) for t in ticks])
    axes.xaxis.set_minor_locator(NullLocator())
    axes.set_xlim(ticks[0] / 1.3, full * 1.3)
    axes.set_xlabel("visual tokens kept per image (methods side by side at each budget)")
    axes.set_ylabel("relative accuracy (% of unpruned)")
    questions = sum(unpruned["questions"].values())
    axes.set_title(f"Scenette-LLaVA: accuracy kept under pruning ({unpruned['per_type']} questions per type, "
                   f"{questions} per point)\nerror bars: 95 % binomial interval, normal approximation "
                   "(unpruned accuracy held fixed)", fontsize=10)  # fmt: skip
    axes.grid(alpha=0.3)
    axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    return figure


def plot(sweep: Sweep, path: Path) -> None:
    figure(sweep).savefig(path, dpi=150)
