"""Figures 2 and 3 as numbers: one model on one question set, cached and resumable.

    results/analysis/<model>/<dataset>/
        manifest.json     which model (weights fingerprint), prompt and questions (fingerprint) the files belong to
        signals.npz       attention signals of every question (`analysis.attention.Signals`)
        accuracy.jsonl    answers and accuracy per pruning setting, appended as each finishes
        shift.json        Fig. 2 numbers;  dispersion.json  Fig. 3 numbers (with hardware and date)

A folder made for another model or question set is never reused or overwritten silently: the run
stops and names the mismatch (pass `overwrite=True` / `--overwrite` to start that folder afresh). A file
that cannot be read back (cut short, not JSON, a foreign manifest) stops the run, named, and is left as it
is, `--overwrite` or not. Every file is written whole or not at all (beside its place, then renamed).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from efficiency.command import ResultFileError, atomic_write, atomic_write_text, read_json
from efficiency.hardware import describe

from . import measures
from .accuracy import AccuracyLog, random_tokens
from .attention import Signals, attention_signals
from .data import Dataset
from .defaults import (
    DEFAULT_BUDGET,
    DEFAULT_DATASET,
    DEFAULT_MODEL,
    DEFAULT_QUESTIONS_PER_TYPE,
    RESULTS,
    SMOKE_QUESTIONS,
)
from .subjects import Subject, load_dataset, load_model


@dataclass
class Settings:
    """layer: the language-model layer whose attention Fig. 2(a) and Fig. 3 read (1 = the second layer,
    where FastV reads it for K = 2). budget: tokens selected in Fig. 2(a) and kept in Fig. 3's pruning.
    quartile_layers: Fig. 2(c)'s layers (None: every layer). prune_layer: the layer from which Fig. 3's
    signal-guided pruning applies (0: before the language model). seed: random selection's seed."""

    layer: int = 1
    budget: int = DEFAULT_BUDGET
    quartile_layers: tuple[int, ...] | None = None
    prune_layer: int = 0
    seed: int = 0
    batch_size: int = 8

    def check(self, num_layers: int) -> None:
        for name, value in (
            ("layer", self.layer),
            ("prune_layer", self.prune_layer),
            *(("quartile_layers", v) for v in self.quartile_layers or ()),
        ):
            if not 0 <= value < num_layers:
                raise ValueError(
                    f"{name}={value} is not a layer of this {num_layers}-layer language model (0..{num_layers - 1})"
                )
        if self.budget < 1:
            raise ValueError(f"budget must be >= 1, got {self.budget}")


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "unnamed"


def model_fingerprint(model) -> str:
    digest = hashlib.sha256(model.config.to_json_string().encode())
    for tensor in model.state_dict().values():
        digest.update(f"{float(tensor.float().sum()):.6e}".encode())
    return digest.hexdigest()[:16]


def dataset_fingerprint(dataset: Dataset) -> str:
    rows = [(s.id, s.question, s.answer) for s in dataset.samples]
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


class Study:
    """The analyses of one `Subject` on one `Dataset`, with their cached intermediate results."""

    def __init__(
        self,
        subject: Subject,
        dataset: Dataset,
        settings: Settings | None = None,
        results: Path | str = RESULTS,
        overwrite: bool = False,
        progress: bool = True,
    ):
        self.subject, self.dataset = subject, dataset
        self.settings = settings or Settings()
        self.settings.check(subject.model.config.text_config.num_hidden_layers)
        self.progress = progress
        self.folder = Path(results) / slug(subject.name) / slug(dataset.name)
        self._claim(overwrite)
        self.log = AccuracyLog(self.folder / "accuracy.jsonl")
        self._signals: Signals | None = None

    def _claim(self, overwrite: bool) -> None:
        manifest = {
            "model": self.subject.name,
            "model_fingerprint": model_fingerprint(self.subject.model),
            "dataset": self.dataset.name,
            "dataset_fingerprint": dataset_fingerprint(self.dataset),
            "questions": len(self.dataset),
            "prompt": self.subject.prompt("{question}"),
            "max_new_tokens": self.subject.max_new_tokens,
        }
        path = self.folder / "manifest.json"
        if path.exists():
            found = read_json(path, ("model", "dataset"), "an analysis manifest (analysis/study.py)")
            if found != manifest:
                if not overwrite:
                    changed = ", ".join(k for k in manifest if found.get(k) != manifest[k])
                    raise ValueError(
                        f"{self.folder} holds results of another run (differs in: {changed}); "
                        "pass overwrite=True (--overwrite) to replace them, or choose another results folder"
                    )
                shutil.rmtree(self.folder)
        atomic_write_text(path, json.dumps(manifest, indent=1) + "\n")

    # -- attention signals -------------------------------------------------------------------
    def signals(self) -> Signals:
        if self._signals is None:
            path = self.folder / "signals.npz"
            if path.exists():
                try:
                    self._signals = Signals.load(path)
                except (OSError, ValueError, KeyError, EOFError) as error:
                    raise ResultFileError(f"{path}: not the attention signals of this study ({error}); it is left "
                                          "as it is: move it away (the signals are computed again)") from None  # fmt: skip
            else:
                self._signals = attention_signals(
                    self.subject, self.dataset.samples, self.settings.batch_size, self.progress
                )
                atomic_write(path, self._signals.save)
        return self._signals

    def _accuracy(self, setting: str, keep=None, layer: int = 0) -> float:
        return self.log.run(setting, self.subject, self.dataset, keep, layer, self.settings.batch_size, self.progress)

    # -- Figure 2 ----------------------------------------------------------------------------
    def shift(self, with_accuracy: bool = True) -> dict:
        """Fig. 2 numbers: (a) selection frequency and mean last-token attention per token index at
        `layer`; (b) per layer, the % of each sample's top-25% most attended visual tokens in each
        index quartile (last token; also averaged question rows and equal positions); (c) accuracy
        keeping one quartile from each of `quartile_layers` on."""
        s, settings = self.signals(), self.settings
        last = s.last[:, settings.layer]
        result = {
            "layer": settings.layer,
            "budget": settings.budget,
            "selection_frequency": measures.selection_frequency(last, settings.budget),
            "mean_attention": measures.mean_attention(last),
            "quartile_shares": measures.quartile_shares(s.last),
            "quartile_shares_question": measures.quartile_shares(s.question),
            "quartile_shares_equal_positions": measures.quartile_shares(s.equal),
            "quartiles": measures.quartile_bounds(s.num_tokens),
        }
        if with_accuracy:
            self.dataset.require_answers("Fig. 2(c)")
            layers = settings.quartile_layers or tuple(range(s.num_layers))
            result["full_accuracy"] = self._accuracy("full")
            result["quartile_layers"] = list(layers)
            result["quartile_accuracy"] = [
                [self._accuracy(f"quartile{q + 1}_from_layer{layer}", np.arange(a, b), layer) for layer in layers]
                for q, (a, b) in enumerate(result["quartiles"])
            ]
        return self._save("shift", result)

    # -- Figure 3 ----------------------------------------------------------------------------
    def dispersion(self, with_accuracy: bool = True) -> dict:
        """Fig. 3 numbers for [CLS], last-token and equal-position last-token attention (at `layer`):
        mean cumulative distribution of the sorted attention, value densities (normalised by the
        global maximum), entropy, and accuracy keeping each sample's `budget` best tokens by each
        signal (or random ones) from `prune_layer` on."""
        s, settings = self.signals(), self.settings
        signals = {"cls": s.cls, "last": s.last[:, settings.layer], "equal": s.equal[:, settings.layer]}
        result = {
            "layer": settings.layer,
            "budget": settings.budget,
            "prune_layer": settings.prune_layer,
            "signals": {},
        }
        for name, values in signals.items():
            curve = measures.cumulative_distribution(values)
            probabilities, edges = measures.density(values)
            result["signals"][name] = {
                "cumulative": curve,
                "top1_share": float(curve[0]),
                "top20pct_share": measures.share_of_top(curve, 0.2),
                "density": probabilities,
                "bin_edges": edges,
                "max_value": float(values.max()),
                "normalized_entropy": measures.normalized_entropy(values),
            }
        if with_accuracy:
            self.dataset.require_answers("Fig. 3's pruning bars")
            budget = min(settings.budget, s.num_tokens)
            keeps = {name: np.sort(measures.top_tokens(values, budget), axis=-1) for name, values in signals.items()}
            keeps["random"] = random_tokens(len(s.ids), s.num_tokens, budget, settings.seed)
            tags = {
                "cls": "cls",
                "last": f"last_layer{settings.layer}",
                "equal": f"equal_layer{settings.layer}",
                "random": f"random_seed{settings.seed}",
            }
            result["full_accuracy"] = self._accuracy("full")
            result["accuracy"] = {
                name: self._accuracy(
                    f"{tags[name]}_top{budget}_from_layer{settings.prune_layer}", keep, settings.prune_layer
                )
                for name, keep in keeps.items()
            }
        return self._save("dispersion", result)

    def _save(self, name: str, result: dict) -> dict:
        result = {
            **result,
            "model": self.subject.name,
            "model_description": self.subject.description,
            "dataset": self.dataset.name,
            "questions": len(self.dataset),
            "visual_tokens": self.signals().num_tokens,
            "grid": list(self.signals().grid),
            "language_model_layers": self.signals().num_layers,
            "settings": asdict(self.settings),
            "hardware": describe(self.subject.device),
            "command": " ".join(sys.argv),
        }
        atomic_write_text(self.folder / f"{name}.json", json.dumps(_plain(result), indent=1) + "\n")
        return result


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return np.round(value, 7).tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return value


def open_study(
    model: str = DEFAULT_MODEL,
    data: str = DEFAULT_DATASET,
    *,
    smoke: bool = False,
    limit: int | None = None,
    per_type: int | None = DEFAULT_QUESTIONS_PER_TYPE,
    image_folder: str | None = None,
    template: str = "vicuna_v1",
    dtype=None,
    device: str | None = None,
    max_new_tokens: int | None = None,
    settings: Settings | None = None,
    results: Path | str = RESULTS,
    overwrite: bool = False,
    progress: bool = True,
    threads: int | None = None,
) -> Study:
    """A `Study` of a named model (`analysis.subjects.load_model`) on a named question set
    (`load_dataset`). `smoke=True` swaps in a random-weight model and a few drawn questions, with the
    budget capped at 16 tokens, to check the pipeline in seconds. `threads` sets torch's CPU thread
    count for the whole process (small models run faster on one thread of a busy machine)."""
    if threads:
        torch.set_num_threads(threads)
    settings = settings or Settings()
    if smoke:
        model, data, limit = "smoke", "drawn", limit or SMOKE_QUESTIONS
        settings = replace(settings, budget=min(settings.budget, 16))
    subject = load_model(model, template=template, dtype=dtype, device=device, max_new_tokens=max_new_tokens)
    dataset = load_dataset(
        data,
        limit=limit,
        per_type=per_type,
        image_folder=image_folder,
        image_size=subject.model.config.vision_config.image_size,
    )
    return Study(subject, dataset, settings, results, overwrite=overwrite, progress=progress)
