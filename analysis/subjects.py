"""Which model and which question set the analyses run on (their defaults live in `defaults.py`).

A model is named by a key of `MODELS` ("scenette", "tiny", "smoke") or by a checkpoint (local folder
or Hub id, loaded with `llava.load_pretrained_model`, prompted with a LLaVA conversation template).
A question set is named by a key of `DATASETS` ("scenette", "drawn") or by a JSONL file
(`analysis.data.load_jsonl`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import BatchFeature

from llava.conversation import get_template
from llava.prompting import IMAGE, encode_batch

from .data import Dataset, Sample, drawn_samples, load_jsonl

# Re-exported: their home is defaults.py, which imports nothing heavy.
from .defaults import DEFAULT_DATASET, DEFAULT_MODEL, DEFAULT_QUESTIONS_PER_TYPE  # noqa: F401


@dataclass
class Subject:
    """A model under analysis: the model, its processor, how a question becomes its prompt, and how
    many tokens an answer may take."""

    name: str
    model: torch.nn.Module
    processor: object
    prompt: Callable[[str], str]
    max_new_tokens: int = 8
    description: str = ""

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode(self, samples: list[Sample]) -> BatchFeature:
        """Left-padded model inputs for the samples, tokenized as LLaVA does (`llava.prompting`)."""
        prompts = [self.prompt(sample.question) for sample in samples]
        inputs = encode_batch(self.processor, prompts, [[sample.image()] for sample in samples])
        dtype = self.model.dtype
        return BatchFeature(
            {k: v.to(self.device, dtype) if v.is_floating_point() else v.to(self.device) for k, v in inputs.items()}
        )


def llava_prompt(template: str = "vicuna_v1") -> Callable[[str], str]:
    """The prompt LLaVA's own evaluation builds: the image first, then the question, in `template`."""
    conversation = get_template(template)
    return lambda question: conversation.single_turn(f"{IMAGE}\n{question}")


def plain_prompt(question: str) -> str:
    """LLaVA-1.5's turn format without a system prompt (the small models' format)."""
    return f"USER: {IMAGE}\n{question} ASSISTANT:"


def _scenette():
    try:
        from scenette import model as scenette_model
        from scenette import prompt as scenette_prompt
    except ImportError:
        raise ValueError(
            "the Scenette model and benchmark (scenette) are not installed in this checkout; "
            "name another model/dataset (--model tiny --data drawn, or a checkpoint and a JSONL file)"
        ) from None
    return scenette_model, scenette_prompt


def _scenette_model(**_) -> Subject:
    scenette_model, scenette_prompt = _scenette()
    model, processor = scenette_model.load_default()
    return Subject(
        "scenette-llava",
        model,
        processor,
        scenette_prompt.conversation,
        6,
        "Scenette-LLaVA (the project's small trained LLaVA-1.5-architecture model)",
    )


def _tiny_model(**_) -> Subject:
    from llava.testing import build_tiny_llava

    model, processor = build_tiny_llava(text_layers=4)
    return Subject(
        "tiny-random",
        model,
        processor,
        plain_prompt,
        4,
        "a RANDOM-WEIGHT LLaVA-1.5-shaped model (336 px, 24x24 patches, 4 LM layers; untrained: shows the pipeline only)",
    )


def _smoke_model(**_) -> Subject:
    from llava.testing import build_tiny_llava

    model, processor = build_tiny_llava(image_size=112, vision_layers=4, text_layers=4, seed=1)
    return Subject(
        "smoke-random",
        model,
        processor,
        plain_prompt,
        3,
        "a RANDOM-WEIGHT LLaVA-shaped model (112 px, 8x8 patches, 4 LM layers; untrained) for smoke runs",
    )


MODELS: dict[str, Callable[..., Subject]] = {"scenette": _scenette_model, "tiny": _tiny_model, "smoke": _smoke_model}


def load_model(
    name: str = DEFAULT_MODEL,
    *,
    template: str = "vicuna_v1",
    dtype: torch.dtype | str | None = None,
    device: str | None = None,
    max_new_tokens: int | None = None,
) -> Subject:
    """A `Subject` for a key of `MODELS` or a checkpoint (local folder or Hub id)."""
    if name in MODELS:
        subject = MODELS[name]()
        if device:
            subject.model.to(device)
    else:
        import llava

        if isinstance(dtype, str) and dtype != "auto":
            if not isinstance(getattr(torch, dtype, None), torch.dtype):
                raise ValueError(f"dtype {dtype!r} is not a torch dtype (e.g. float16, bfloat16, float32)")
            dtype = getattr(torch, dtype)
        model, processor = llava.load_pretrained_model(name, dtype=dtype, device_map=device)
        subject = Subject(Path(name).name or name, model, processor, llava_prompt(template), 16, name)
    subject.model.eval()
    if max_new_tokens:
        subject.max_new_tokens = max_new_tokens
    return subject


def _scenette_dataset(per_type: int | None = DEFAULT_QUESTIONS_PER_TYPE, **_) -> Dataset:
    _, scenette_prompt = _scenette()
    from scenette import data

    rows = data.eval_rows()
    if per_type:
        rows = data.subset(rows, per_type)
    samples = [
        Sample(
            row["question_id"],
            row["prompt"],
            row["answer"],
            _scene_drawer(data, row),
            {"type": row["type"], "category": row["category"]},
        )
        for row in rows
    ]
    name = f"scenette-{per_type}pertype" if per_type else "scenette"
    return Dataset(name, samples, scenette_prompt.score_answer)


def _scene_drawer(data, row: dict) -> Callable:
    return lambda: data.doc_image(row)


def _drawn_dataset(limit: int | None = None, image_size: int = 336, **_) -> Dataset:
    return drawn_samples(limit or 48, size=image_size)


DATASETS: dict[str, Callable[..., Dataset]] = {"scenette": _scenette_dataset, "drawn": _drawn_dataset}


def load_dataset(
    name: str = DEFAULT_DATASET,
    *,
    limit: int | None = None,
    per_type: int | None = DEFAULT_QUESTIONS_PER_TYPE,
    image_folder: str | None = None,
    image_size: int = 336,
) -> Dataset:
    """A `Dataset` for a key of `DATASETS` or a JSONL file; `limit` keeps the first questions."""
    if name in DATASETS:
        dataset = DATASETS[name](limit=limit, per_type=per_type, image_size=image_size)
    else:
        dataset = load_jsonl(name, image_folder)
    return dataset.head(limit)
