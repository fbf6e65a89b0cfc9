"""Which tokens VisPruner, FastV and random selection keep on one image, and what the model answers
(in the spirit of the paper's Figures 1 and 4).

Every picture is drawn from the pruning trace (`llava.apply_pruning(..., trace=True)`) of the one
`generate` call whose answer it is titled with: the outlined patches are the tokens that call really
kept, recorded where the model kept them, never recomputed. VisPruner's panel shows the tokens that
reached the language model, its important tokens ([CLS] attention) in orange and its diverse ones in
blue; FastV's the visual tokens its layers from K on kept (chosen by the last prompt token's
attention in layer K-1); random selection's the draw that call made from its seeded generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

import llava
from llava.trace import KeptTokens
from llava.visualize import DIVERSE_COLOUR, IMPORTANT_COLOUR, draw_kept_patches, pixels_to_image

from .attention import check_model
from .data import Dataset, Sample
from .plots import style
from .subjects import Subject

FASTV_COLOUR = (220, 30, 120)  # magenta
RANDOM_COLOUR = (120, 120, 120)
MIN_SIDE = 448  # pictures are enlarged (by a whole factor) to at least this many pixels a side


@dataclass
class Panel:
    title: str
    picture: Image.Image
    answer: str
    correct: bool | None


@dataclass
class Example:
    sample: Sample
    panels: list[Panel]


def pick_examples(dataset: Dataset, count: int) -> list[Sample]:
    """`count` samples, the first of each question type in turn (any samples if there are no types)."""
    seen, picked = set(), []
    for sample in dataset.samples:
        kind = sample.meta.get("type")
        if kind not in seen or kind is None:
            seen.add(kind)
            picked.append(sample)
        if len(picked) == count:
            break
    return picked


@dataclass
class Run:
    """One generation of a picture: `method` None is the unpruned model."""

    title: str
    method: str | None
    options: dict
    colours: tuple[tuple[int, int, int], tuple[int, int, int]] = (IMPORTANT_COLOUR, DIVERSE_COLOUR)


@torch.no_grad()
def selection_example(
    subject: Subject,
    sample: Sample,
    score,
    budget: int = 64,
    important_ratio: float = 0.5,
    fastv_layer: int = 2,
    seed: int = 0,
) -> Example:
    """The image, the three kept-token pictures and the four answers (unpruned and each method) for one
    sample; each picture comes from the trace of the generation that gave its answer."""
    model = subject.model
    check_model(model)
    llava.remove_pruning(model)
    inputs = subject.encode([sample])
    processor = subject.processor.image_processor
    seen = _enlarge(pixels_to_image(inputs["pixel_values"][0], processor.image_mean, processor.image_std))
    runs = [
        Run("all tokens", None, {}),
        Run("VisPruner", "vispruner", {"important_ratio": important_ratio}),
        Run(f"FastV (K={fastv_layer})", "fastv", {"layer": fastv_layer}, (FASTV_COLOUR, FASTV_COLOUR)),
        Run("random", "random", {"seed": seed}, (RANDOM_COLOUR, RANDOM_COLOUR)),
    ]
    panels = []
    for run in runs:
        if run.method is None:
            answer, title, picture = _answer(subject, inputs), run.title, seen
        else:
            llava.apply_pruning(model, method=run.method, visual_token_num=budget, trace=True, **run.options)
            try:
                answer = _answer(subject, inputs)
                (call,) = model.pruning_trace  # the generate call above (its prefill pruned once)
            finally:
                llava.remove_pruning(model)
            (kept,) = call.parts  # one image, pruned before the language model or at FastV's layer K
            title, picture = _titled(run.title, kept), _drawn(seen, kept, run.colours)
        correct = None if sample.answer is None else bool(score(answer, sample.answer))
        panels.append(Panel(title, picture, answer, correct))
    return Example(sample, panels)


def _answer(subject: Subject, inputs) -> str:
    output = subject.model.generate(**inputs, max_new_tokens=subject.max_new_tokens, do_sample=False)
    new_tokens = output[:, inputs["input_ids"].shape[1] :]
    return subject.processor.batch_decode(new_tokens, skip_special_tokens=True)[0].strip()


def _titled(title: str, kept: KeptTokens) -> str:
    if kept.important is not None:
        title = f"{title} ({len(kept.important)} important + {len(kept.diverse)} diverse)"
    return f"{title}: {len(kept.kept)}/{kept.num_tokens}"


def _drawn(seen: Image.Image, kept: KeptTokens, colours) -> Image.Image:
    """The kept patches of one trace record: important and diverse apart where the method splits them."""
    if kept.important is None:
        return draw_kept_patches(seen, kept.grid, kept.kept.tolist(), [], colours=colours)
    return draw_kept_patches(seen, kept.grid, kept.important.tolist(), kept.diverse.tolist(), colours=colours)


def _enlarge(image: Image.Image) -> Image.Image:
    factor = max(1, -(-MIN_SIDE // min(image.size)))
    return (
        image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST) if factor > 1 else image
    )


def selection_figure(examples: list[Example], subject_description: str, budget: int):
    """Rows of examples; columns: the image and the tokens each method keeps, titled with the answers."""
    columns = len(examples[0].panels)
    with style():
        figure = Figure(figsize=(2.9 * columns, 3.35 * len(examples) + 0.6), layout="constrained")
        axes = figure.subplots(len(examples), columns, squeeze=False)
        for row, example in zip(axes, examples):
            for ax, panel in zip(row, example.panels):
                ax.imshow(np.asarray(panel.picture))
                ax.set_xticks([])
                ax.set_yticks([])
                ax.grid(False)
                mark = "" if panel.correct is None else (" ✓" if panel.correct else " ✗")
                ax.set_title(f"{panel.title}\nanswer: {panel.answer!r}{mark}", fontsize=8)
            question = example.sample.question.replace("\n", " ")
            reference = f"  (reference: {example.sample.answer})" if example.sample.answer is not None else ""
            row[0].set_ylabel(_wrap(question + reference, 40), fontsize=8)
        legend = [
            ("VisPruner important", IMPORTANT_COLOUR),
            ("VisPruner diverse", DIVERSE_COLOUR),
            ("FastV", FASTV_COLOUR),
            ("random", RANDOM_COLOUR),
        ]
        handles = [
            Rectangle((0, 0), 1, 1, facecolor="none", edgecolor=np.array(c) / 255, linewidth=2) for _, c in legend
        ]
        figure.legend(handles, [name for name, _ in legend], loc="outside lower center", ncol=4)
        figure.suptitle(f"Kept visual tokens at {budget} per image: {subject_description}", fontsize=10)
    return figure


def _wrap(text: str, width: int) -> str:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join(lines + [line])
