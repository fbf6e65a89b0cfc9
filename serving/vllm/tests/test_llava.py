"""VisPrunerLlavaForConditionalGeneration against the library's transformers path, on a tiny random LLaVA-1.5."""

from __future__ import annotations

import copy

import pytest
import torch
from llava_case import BUDGET, GREEDY, NEW_TOKENS, RATIO, engine, prompt, request, shapes
from PIL import Image

import llava
from llava.models import clip
from llava.pruning import create_pruner
from llava.pruning.base import resolve_signals


@pytest.fixture(scope="module")
def served(checkpoint):
    _, _, folder = checkpoint
    return engine(folder, {"visual_token_num": BUDGET, "important_ratio": RATIO})


@pytest.fixture(scope="module")
def pruned_reference(checkpoint):
    """The library's transformers path at the same settings (a copy: the fixture's model stays stock)."""
    model, processor, _ = checkpoint
    pruned = copy.deepcopy(model)
    llava.apply_pruning(pruned, method="vispruner", visual_token_num=BUDGET, important_ratio=RATIO)
    return pruned, processor


def reference_ids(reference, images: list[Image.Image]) -> list[int]:
    model, processor = reference
    inputs = processor(text=prompt(len(images)), images=images or None, return_tensors="pt")
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False)
    return output[0, inputs["input_ids"].shape[1] :].tolist()


def test_kept_indices_equal_transformers_path(checkpoint, served):
    model, processor, _ = checkpoint
    pixels = processor.image_processor([shapes(0), shapes(1)], return_tensors="pt")["pixel_values"]
    pruner = create_pruner("vispruner", BUDGET, important_ratio=RATIO)
    asked = resolve_signals(pruner.requires, clip.SIGNALS) & clip.SIGNALS  # "importance": the [CLS] attention
    with torch.no_grad():
        vision = clip.encode(model.model.vision_tower, pixels, model.config.vision_feature_layer, asked)
    expected = pruner.select(vision)
    (served_indices,) = served.apply_model(lambda vllm_model: vllm_model.kept_indices(pixels))
    assert served_indices.shape == (2, BUDGET)
    assert torch.equal(served_indices, expected)


def test_prompt_holds_pruned_placeholders(checkpoint, served):
    _, processor, _ = checkpoint
    (output,) = served.generate([request([shapes(0)])], GREEDY)
    image_token = processor.tokenizer.convert_tokens_to_ids("<image>")
    assert output.prompt_token_ids.count(image_token) == BUDGET


def test_mixed_batch_greedy_equals_transformers(served, pruned_reference):
    image_sets = [[], [shapes(0)], [shapes(1), shapes(2)]]
    outputs = served.generate([request(images) for images in image_sets], GREEDY)
    for images, output in zip(image_sets, outputs):
        assert list(output.outputs[0].token_ids) == reference_ids(pruned_reference, images), f"{len(images)} image(s)"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"visual_token_num": 0}, "visual_token_num must be a positive integer"),
        ({"visual_token_num": 2.5}, "visual_token_num must be a positive integer"),
        ({"visual_token_num": 8, "important_ratio": 1.5}, "important_ratio must be in [0, 1]"),
        ({"important_ratio": 0.5}, "needs 'visual_token_num'"),
        ({"method": "fastv", "visual_token_num": 8}, "prunes inside the language model"),
        ({"method": "nope", "visual_token_num": 8}, "unknown pruning method 'nope'"),
        ({"visual_token_num": 8, "ratio": 0.5}, "unknown option(s) ratio"),
    ],
)
def test_bad_settings_refused_at_start(checkpoint, settings, message):
    _, _, folder = checkpoint
    with pytest.raises(Exception) as refused:
        engine(folder, settings)
    chain, error = [], refused.value
    while error is not None:  # vLLM may wrap the plugin's ValueError
        chain.append(str(error))
        error = error.__cause__ or error.__context__
    assert any(message in text for text in chain), chain


def test_pruning_changes_the_answer_source(checkpoint, served, pruned_reference):
    """The comparison above can fail: the stock model (all 64 tokens) answers differently from the pruned one
    on at least one of these images, and the pruned engine's answers are not empty."""
    model, processor, _ = checkpoint
    stock = (model, processor)
    image_sets = [[shapes(seed)] for seed in range(3)]
    outputs = served.generate([request(images) for images in image_sets], GREEDY)
    served_ids = [list(output.outputs[0].token_ids) for output in outputs]
    assert all(served_ids)
    assert any(ids != reference_ids(stock, images) for ids, images in zip(served_ids, image_sets))
