"""Shared checks for the model-family tests: what the language model receives, stock vs pruned."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import LlavaOnevisionProcessor, ProcessorMixin

import llava


def random_image(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


def language_model_inputs(model, **inputs) -> dict:
    """The keyword arguments the language model gets on one forward of `model`."""
    seen = []
    handle = model.model.language_model.register_forward_pre_hook(
        lambda _m, _a, kwargs: seen.append(kwargs), with_kwargs=True
    )
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        handle.remove()
    return seen[0]


def real_rows(lm_inputs: dict) -> list[torch.Tensor]:
    """Each row's input embeddings without padding."""
    embeds, mask = lm_inputs["inputs_embeds"], lm_inputs.get("attention_mask")
    if mask is None or mask.dim() != 2:
        return list(embeds)
    return [row[m.bool()] for row, m in zip(embeds, mask)]


def subsequence_positions(part: torch.Tensor, whole: torch.Tensor, atol: float = 1e-5) -> list[int]:
    """Positions in `whole` [L, D] of the rows of `part` [K, D], matched in order; fails if `part`
    is not an ordered subsequence of `whole`."""
    positions, start = [], 0
    for token in part:
        close = (whole[start:] - token).abs().amax(dim=-1) <= atol
        hits = close.nonzero()
        assert hits.numel(), f"token {len(positions)} of the pruned input is not a later stock token"
        positions.append(start + int(hits[0]))
        start = positions[-1] + 1
    return positions


def stock_and_pruned(model, inputs: dict, **pruning) -> tuple[dict, dict]:
    """Language-model inputs of the stock model and of the model pruned with `pruning`."""
    stock = language_model_inputs(model, **inputs)
    llava.apply_pruning(model, **pruning)
    try:
        pruned = language_model_inputs(model, **inputs)
    finally:
        llava.remove_pruning(model)
    return stock, pruned


def generate(model, inputs: dict, steps: int = 5) -> torch.Tensor:
    with torch.no_grad():
        return model.generate(**inputs, max_new_tokens=steps, min_new_tokens=steps, do_sample=False)


def assert_unpruned_is_stock(model, inputs: dict, **pruning) -> None:
    """With a budget that keeps everything, tokens, logits and generated text equal the stock model's."""
    with torch.no_grad():
        logits = model(**inputs).logits
    expected = generate(model, inputs)
    llava.apply_pruning(model, **pruning)
    try:
        with torch.no_grad():
            same_logits = model(**inputs).logits
        same = generate(model, inputs)
    finally:
        llava.remove_pruning(model)
    assert torch.equal(same, expected)
    assert torch.allclose(same_logits, logits, atol=1e-5)


def onevision_processor(image_processor, tokenizer, aspect_ratio="anyres_max_9", num_image_tokens=16):
    """The real LLaVA-OneVision processor with its video slot left empty: the stock class insists on a
    video processor, which cannot be built without torchvision (docs/methods.md)."""
    stock = ProcessorMixin.check_argument_for_proper_class

    def lenient(self, name, argument):
        return None if (argument is None and name == "video_processor") else stock(self, name, argument)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ProcessorMixin, "check_argument_for_proper_class", lenient)
        return LlavaOnevisionProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=None,
            num_image_tokens=num_image_tokens,
            vision_feature_select_strategy="full",
            vision_aspect_ratio=aspect_ratio,
        )


@contextmanager
def pruned(model, method: str, budget: int, **options):
    """`model` pruned with `method` inside the block, unpruned again after it (also when it fails)."""
    llava.apply_pruning(model, method, budget, **options)
    try:
        yield model
    finally:
        llava.remove_pruning(model)
