"""Accuracy when the language model keeps only chosen visual tokens from a chosen layer on.

Fig. 2(c) keeps one index quartile from layer l onward; Fig. 3's bars keep each sample's T tokens
with the highest [CLS] / last-token / equal-position attention, or T random ones. Both go through
one in-LLM pruner, `KeepVisualTokens`: layers before `layer` see every token, later layers (and
their KV cache) only the kept visual tokens and all text, which keep their original positions
(as FastV's tokens do), so the only change is which tokens later layers can see.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import llava
from efficiency.command import ResultFileError, read_jsonl
from llava.pruning.base import LanguageModelPruner, check_count
from llava.pruning.sequence import Sequence, keep_tokens

from .data import Dataset
from .subjects import Subject


class KeepVisualTokens(LanguageModelPruner):
    """Keep the visual tokens whose index within the image (raster order) is listed in `keep`
    [B, T] (or [1, T] for every prompt) from language-model layer `layer` on; 0 prunes before the
    first layer. One image per prompt."""

    name = "keep_visual_tokens"

    def __init__(self, keep: torch.Tensor, layer: int = 0):
        keep = torch.as_tensor(keep, dtype=torch.long)
        if keep.ndim != 2 or keep.shape[1] == 0:
            raise ValueError(f"keep must be [batch or 1, T>0] token indices, got shape {tuple(keep.shape)}")
        super().__init__(keep.shape[1])
        self.keep = keep
        self.layer = check_count(layer, "layer", minimum=0)

    @property
    def options(self) -> dict:
        return {"layer": self.layer}

    def stages(self) -> tuple[int, ...]:
        return (self.layer,)

    def attention_layer(self, stage_layer: int) -> int:
        return stage_layer  # no attention is read; this keeps the host from capturing any

    def check_depth(self, num_layers: int) -> None:
        if not 0 <= self.layer < num_layers:
            raise ValueError(
                f"layer {self.layer} is not a layer of a {num_layers}-layer language model (allowed: 0..{num_layers - 1})"
            )

    def reduce(self, stage: int, sequence: Sequence, attention, state) -> Sequence:
        visual = sequence.visual
        if bool((sequence.images_per_row() > 1).any()):
            raise ValueError("KeepVisualTokens handles one image per prompt")
        keep = self.keep.to(visual.device)
        if keep.shape[0] not in (1, visual.shape[0]):
            raise ValueError(f"keep has {keep.shape[0]} rows for a batch of {visual.shape[0]}")
        ordinal = visual.long().cumsum(dim=1) - 1
        chosen = (ordinal[:, :, None] == keep[:, None, :]).any(dim=-1) & visual
        return keep_tokens(sequence, chosen | ~visual)


@torch.no_grad()
def answer(
    subject: Subject,
    dataset: Dataset,
    keep=None,
    layer: int = 0,
    batch_size: int = 16,
    desc: str = "answers",
    progress: bool = True,
) -> list[str]:
    """The model's greedy answers to every question, with only the visual tokens `keep` ([S, T] per
    sample, [T] for all, or None for every token) visible from `layer` on."""
    model = subject.model
    llava.remove_pruning(model)
    answers: list[str] = []
    for start in tqdm(
        range(0, len(dataset), batch_size), desc=desc, disable=not progress, dynamic_ncols=True, leave=False
    ):
        chunk = dataset.samples[start : start + batch_size]
        if keep is not None:
            rows = torch.as_tensor(np.asarray(keep))
            rows = rows[None] if rows.ndim == 1 else rows[start : start + len(chunk)]
            llava.models.attach_pruner(model, KeepVisualTokens(rows, layer))
        inputs = subject.encode(chunk)
        output = model.generate(**inputs, max_new_tokens=subject.max_new_tokens, do_sample=False)
        new = output[:, inputs["input_ids"].shape[1] :]
        answers += [text.strip() for text in subject.processor.batch_decode(new, skip_special_tokens=True)]
    llava.remove_pruning(model)
    return answers


def accuracy(dataset: Dataset, answers: list[str]) -> float:
    """Percentage of answers scoring 1 under the dataset's scorer."""
    scores = [dataset.score(a, s.answer) for a, s in zip(answers, dataset.samples)]
    return 100.0 * sum(scores) / len(scores)


def random_tokens(num_samples: int, num_tokens: int, count: int, seed: int = 0) -> np.ndarray:
    """[S, count] ascending indices of a uniformly random subset per sample (`llava.pruning.random_pruning`)."""
    from llava.pruning.random_pruning import select

    generator = torch.Generator().manual_seed(seed)
    return select(num_samples, num_tokens, count, generator).numpy()


@dataclass
class AccuracyLog:
    """Answers and accuracy per named setting, appended to a JSONL file as each finishes, so an
    interrupted run resumes where it stopped."""

    path: Path

    def done(self) -> dict[str, dict]:
        if not self.path.exists():
            return {}
        entries = read_jsonl(self.path, "the accuracy log ({setting, accuracy, answers, ...} per line)")
        for entry in entries:
            if "setting" not in entry or "accuracy" not in entry:
                raise ResultFileError(f"{self.path}: a line without setting or accuracy; not an accuracy log; "
                                      "it is left as it is")  # fmt: skip
        return {entry["setting"]: entry for entry in entries}

    def run(
        self,
        setting: str,
        subject: Subject,
        dataset: Dataset,
        keep=None,
        layer: int = 0,
        batch_size: int = 16,
        progress: bool = True,
    ) -> float:
        finished = self.done()
        if setting in finished:
            return finished[setting]["accuracy"]
        answers = answer(subject, dataset, keep, layer, batch_size, desc=setting, progress=progress)
        entry = {
            "setting": setting,
            "layer": layer,
            "accuracy": accuracy(dataset, answers),
            "questions": len(answers),
            "answers": answers,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        cut = self.path.exists() and self.path.stat().st_size and not self.path.read_bytes().endswith(b"\n")
        with self.path.open("a", encoding="utf-8") as log:
            log.write(("\n" if cut else "") + json.dumps(entry) + "\n")  # a line cut short by a crash stays apart
        return entry["accuracy"]
