"""Which tokens VisPruner, FastV and random selection keep on one image, and what the model answers
(in the spirit of the paper's Figures 1 and 4).

The kept sets are the ones the methods use when the answers are generated: VisPruner's from
`llava.pruning.vispruner.select` on the tower's features and [CLS] attention (important tokens in
orange, diverse in blue), FastV's as the top-T visual tokens by the last prompt token's head-mean
attention in layer K-1 (read beside SDPA, ties to the earlier token, as `llava.pruning.fastv`), and
random selection's from a generator seeded as `apply_pruning(..., method="random", seed=...)` seeds
its first draw.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

import llava
from llava.models import clip
from llava.pruning import random_pruning, vispruner
from llava.visualize import DIVERSE_COLOUR, IMPORTANT_COLOUR, draw_kept_patches, pixels_to_image

from .attention import batch_signals, check_model
from .data import Dataset, Sample
from .measures import top_tokens
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


@torch.no_grad()
def selection_example(subject: Subject, sample: Sample, score, budget: int = 64, important_ratio: float = 0.5,
                      fastv_layer: int = 2, seed: int = 0) -> Example:
    """The image, the three kept-token pictures and the four answers (unpruned and each method) for one sample."""
    model = subject.model
    check_model(model)
    llava.remove_pruning(model)
    inputs = subject.encode([sample])
    vision = clip.encode(model.model.vision_tower, inputs["pixel_values"], model.config.vision_feature_layer,
                         signals={"cls_attention"})
    total = vision.features.shape[1]
    budget = min(budget, total)
    kept = vispruner.select(vision.features, vision.cls_attention, budget, important_ratio)[0].tolist()
    num_important, _ = vispruner.split_budget(len(kept), important_ratio)
    important = vispruner.attention_order(vision.cls_attention)[0, :num_important].tolist()
    diverse = sorted(set(kept) - set(important))
    last = batch_signals(model, inputs, [sample.id]).last[0, fastv_layer - 1]
    fastv = sorted(top_tokens(last, budget).tolist())
    generator = torch.Generator(device=inputs["pixel_values"].device).manual_seed(seed)
    chance = random_pruning.select(1, total, budget, generator)[0].tolist()

    processor = subject.processor.image_processor
    seen = _enlarge(pixels_to_image(inputs["pixel_values"][0], processor.image_mean, processor.image_std))
    grid = vision.grid
    runs = [
        ("all tokens", None, {}, seen),
        (f"VisPruner ({len(important)} important + {len(diverse)} diverse)", "vispruner",
         {"important_ratio": important_ratio}, draw_kept_patches(seen, grid, important, diverse)),
        (f"FastV (K={fastv_layer})", "fastv", {"layer": fastv_layer},
         draw_kept_patches(seen, grid, fastv, [], colours=(FASTV_COLOUR, FASTV_COLOUR))),
        ("random", "random", {"seed": seed}, draw_kept_patches(seen, grid, chance, [], colours=(RANDOM_COLOUR, RANDOM_COLOUR))),
    ]
    panels = []
    for title, method, options, picture in runs:
        if method is None:
            llava.remove_pruning(model)
        else:
            llava.apply_pruning(model, method=method, visual_token_num=budget, **options)
            title = f"{title}: {budget}/{total}"
        output = model.generate(**inputs, max_new_tokens=subject.max_new_tokens, do_sample=False)
        text = subject.processor.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)[0].strip()
        correct = None if sample.answer is None else bool(score(text, sample.answer))
        panels.append(Panel(title, picture, text, correct))
    llava.remove_pruning(model)
    return Example(sample, panels)


def _enlarge(image: Image.Image) -> Image.Image:
    factor = max(1, -(-MIN_SIDE // min(image.size)))
    return image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST) if factor > 1 else image


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
        legend = [("VisPruner important", IMPORTANT_COLOUR), ("VisPruner diverse", DIVERSE_COLOUR),
                  ("FastV", FASTV_COLOUR), ("random", RANDOM_COLOUR)]
        handles = [Rectangle((0, 0), 1, 1, facecolor="none", edgecolor=np.array(c) / 255, linewidth=2) for _, c in legend]
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
