"""Matplotlib figures for Figures 2 and 3 from the numbers `analysis.study.Study` computes, in one style."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

QUARTILE_COLOURS = ["#c6dbef", "#6baed6", "#2171b5", "#08306b"]
SIGNAL_COLOURS = {"cls": "#e6550d", "last": "#3182bd", "equal": "#31a354", "random": "#969696"}
SIGNAL_LABELS = {
    "cls": "[CLS] attention",
    "last": "last attention",
    "equal": "equal-position last attention",
    "random": "random",
}
STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 200,
    "savefig.bbox": "tight",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "pdf.fonttype": 42,
}


@contextmanager
def style():
    with matplotlib.rc_context(STYLE):
        yield


# Figures are built as `Figure` objects, not through pyplot: nothing global to close, and a notebook
# shows one when it is a cell's value.


def save(figure: Figure, folder: Path | str, name: str) -> list[Path]:
    """Write `name`.png and `name`.pdf into `folder`; returns both paths."""
    from efficiency.command import atomic_write

    folder = Path(folder)
    paths = [folder / f"{name}.{ext}" for ext in ("png", "pdf")]
    with style():
        for path in paths:  # whole or not at all: drawn beside, then renamed
            atomic_write(path, figure.savefig)
    return paths


def caption(result: dict) -> str:
    return f"{result['model_description'] or result['model']} — {result['dataset']} ({result['questions']} questions)"


def shift_figure(result: dict):
    """Fig. 2: (a) selection frequency + mean attention per index, (b) quartile shares per layer for
    the last token and (b') with equal visual positions, (c) accuracy per kept quartile and layer."""
    with style():
        figure = Figure(figsize=(11, 7.5), layout="constrained")
        axes = figure.subplots(2, 2)
        _selection_panel(axes[0, 0], result)
        _quartile_panel(
            axes[0, 1], np.asarray(result["quartile_shares"]), "(b) text-visual attention by index quartile"
        )
        _quartile_panel(
            axes[1, 0],
            np.asarray(result["quartile_shares_equal_positions"]),
            "(b') the same with every visual token at one position",
        )
        if "quartile_accuracy" in result:
            _quartile_accuracy_panel(axes[1, 1], result)
        else:
            axes[1, 1].set_axis_off()
        figure.suptitle(f"Attention shift\n{caption(result)}", fontsize=10)
    return figure


def _selection_panel(ax, result: dict) -> None:
    frequency = np.asarray(result["selection_frequency"])
    index = np.arange(frequency.size)
    ax.bar(
        index, frequency, width=1.0, color=QUARTILE_COLOURS[1], label=f"selection frequency (top {result['budget']})"
    )
    ax.set_xlabel("visual token index (raster order)")
    ax.set_ylabel("selection frequency (max = 1)")
    ax.set_xlim(-0.5, frequency.size - 0.5)
    twin = ax.twinx()
    twin.plot(index, result["mean_attention"], color="#cb181d", linewidth=0.8, label="mean attention")
    twin.set_ylabel("mean last-token attention")
    twin.grid(False)
    twin.spines["right"].set_visible(True)
    ax.set_title(f"(a) selection frequency & attention score, layer {result['layer']}")
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], loc="upper left")


def _quartile_panel(ax, shares: np.ndarray, title: str) -> None:
    layers = np.arange(shares.shape[0])
    bottom = np.zeros(shares.shape[0])
    for q in range(shares.shape[1]):
        ax.bar(layers, shares[:, q], bottom=bottom, color=QUARTILE_COLOURS[q], width=0.8, label=f"Q{q + 1}")
        bottom += shares[:, q]
    ax.set_xlabel("language-model layer")
    ax.set_ylabel("share of the top-25% attended tokens (%)")
    ax.set_ylim(0, 100)
    ax.set_xticks(layers if layers.size <= 16 else layers[::4])
    ax.set_title(title)
    ax.legend(ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.13))


def _quartile_accuracy_panel(ax, result: dict) -> None:
    layers = result["quartile_layers"]
    for q, accuracy in enumerate(result["quartile_accuracy"]):
        ax.plot(layers, accuracy, marker="o", markersize=3, color=QUARTILE_COLOURS[q], label=f"Q{q + 1} only")
    ax.axhline(result["full_accuracy"], color="black", linestyle="--", linewidth=1, label="all visual tokens")
    ax.set_xlabel("kept from layer")
    ax.set_ylabel("accuracy (%)")
    ax.set_xticks(layers if len(layers) <= 16 else layers[::4])
    ax.set_ylim(0, 105)
    ax.set_title("(c) one quartile of visual tokens kept from layer l on")
    ax.legend(ncol=3)


def dispersion_figure(result: dict):
    """Fig. 3: cumulative distribution of sorted attention, the three value densities (log scale) and
    accuracy when each signal (or chance) picks the kept tokens."""
    signals = result["signals"]
    with style():
        figure = Figure(figsize=(11, 7.5), layout="constrained")
        grid = figure.add_gridspec(2, 3)
        _cumulative_panel(figure.add_subplot(grid[0, 0]), signals)
        for column, name in enumerate(("cls", "last", "equal")):
            ax = figure.add_subplot(grid[0, column + 1]) if column < 2 else figure.add_subplot(grid[1, 0])
            _density_panel(ax, name, signals[name])
        if "accuracy" in result:
            _pruning_panel(figure.add_subplot(grid[1, 1:]), result)
        figure.suptitle(
            f"Attention dispersion (last attention at layer {result['layer']})\n{caption(result)}", fontsize=10
        )
    return figure


def _cumulative_panel(ax, signals: dict) -> None:
    for name, values in signals.items():
        curve = np.asarray(values["cumulative"])
        x = 100.0 * np.arange(1, curve.size + 1) / curve.size
        ax.plot(
            x,
            100.0 * curve,
            color=SIGNAL_COLOURS[name],
            label=f"{SIGNAL_LABELS[name]} (top 20%: {100 * values['top20pct_share']:.0f}%)",
        )
    ax.axvline(20, color="black", linewidth=0.6, linestyle=":")
    ax.set_xlabel("most-attended visual tokens (%)")
    ax.set_ylabel("share of the attention (%)")
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.set_title("cumulative distribution")
    ax.legend(loc="lower right")


def _density_panel(ax, name: str, values: dict) -> None:
    edges = np.asarray(values["bin_edges"])
    ax.bar(edges[:-1], values["density"], width=np.diff(edges), align="edge", color=SIGNAL_COLOURS[name])
    ax.set_yscale("log")
    ax.set_xlim(0, 1)
    ax.set_xlabel("attention score / global maximum")
    ax.set_ylabel("share of values")
    ax.set_title(f"{SIGNAL_LABELS[name]} (entropy / log N: {values['normalized_entropy']:.3f})")


def _pruning_panel(ax, result: dict) -> None:
    names = ["last", "equal", "random", "cls"]  # the paper's bar order
    accuracy = [result["accuracy"][n] for n in names]
    bars = ax.bar(range(len(names)), accuracy, color=[SIGNAL_COLOURS[n] for n in names], width=0.6)
    for bar, value in zip(bars, accuracy):
        ax.annotate(f"{value:.1f}", (bar.get_x() + bar.get_width() / 2, value), ha="center", va="bottom", fontsize=8)
    ax.axhline(
        result["full_accuracy"],
        color="black",
        linestyle="--",
        linewidth=1,
        label=f"all visual tokens ({result['full_accuracy']:.1f})",
    )
    ax.set_xticks(range(len(names)), [SIGNAL_LABELS[n] for n in names])
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title(f"pruning to {result['budget']} tokens from layer {result['prune_layer']}, guided by each signal")
    ax.legend(loc="lower right")
