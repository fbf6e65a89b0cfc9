"""VisPrunerQwen2_5_VLForConditionalGeneration against the library's transformers path, on a tiny random
Qwen2.5-VL: kept merged tokens, their M-RoPE positions (through the greedy outputs), refusals."""

from __future__ import annotations

import copy

import pytest
import torch
from llava_case import GREEDY, NEW_TOKENS, engine
from next_case import textured
from qwen_case import ARCHITECTURE, build_tiny_qwen2_5_vl, prompt
from vllm import SamplingParams

import llava

BUDGET = 6  # of 16 merged tokens (112 x 112 px) or 20 (140 x 112 px)
RATIO = 0.5
IMAGE_SETS = [[], [textured(0)], [textured(1), textured(2)]]
LONGER = SamplingParams(temperature=0.0, max_tokens=2 * NEW_TOKENS)  # decoding far past the prompt


@pytest.fixture(scope="module")
def qwen_checkpoint(tmp_path_factory):
    model, processor = build_tiny_qwen2_5_vl()
    folder = tmp_path_factory.mktemp("tiny-qwen2.5-vl")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return model, processor, folder


@pytest.fixture(scope="module")
def served(qwen_checkpoint):
    return engine(qwen_checkpoint[2], {"visual_token_num": BUDGET, "important_ratio": RATIO}, ARCHITECTURE)


@pytest.fixture(scope="module")
def pruned_reference(qwen_checkpoint):
    model, processor, _ = qwen_checkpoint
    pruned = copy.deepcopy(model)
    llava.apply_pruning(pruned, method="vispruner", visual_token_num=BUDGET, important_ratio=RATIO)
    return pruned, processor


def request(images) -> dict:
    return {"prompt": prompt(len(images)), "multi_modal_data": {"image": images}} if images else {"prompt": prompt(0)}


def reference_ids(reference, images, new_tokens: int = NEW_TOKENS) -> list[int]:
    model, processor = reference
    inputs = processor(text=prompt(len(images)), images=images or None, return_tensors="pt")
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=new_tokens, do_sample=False)
    return output[0, inputs["input_ids"].shape[1] :].tolist()


def test_kept_indices_equal_transformers_path(qwen_checkpoint, served, pruned_reference):
    _, processor, _ = qwen_checkpoint
    images = [textured(0), textured(1)]
    inputs = processor.image_processor(images, return_tensors="pt")
    pixels, grid = inputs["pixel_values"], inputs["image_grid_thw"]
    # vLLM rescales and normalises Qwen2.5-VL's pixels in the model (mm_device_do_normalize): it gets them raw.
    raw = processor.image_processor(images, do_rescale=False, do_normalize=False, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        expected = pruned_reference[0].model.get_image_features(pixels, grid).kept_indices
    (served_indices,) = served.apply_model(lambda vllm_model: vllm_model.kept_indices(raw, grid.tolist()))
    assert [len(indices) for indices in served_indices] == [BUDGET, BUDGET]
    for got, want in zip(served_indices, expected):
        assert torch.equal(got, want)


def test_prompt_holds_pruned_placeholders(qwen_checkpoint, served):
    _, processor, _ = qwen_checkpoint
    (output,) = served.generate([request([textured(1)])], GREEDY)
    image_token = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert output.prompt_token_ids.count(image_token) == BUDGET


def test_mixed_batch_greedy_equals_transformers(served, pruned_reference):
    outputs = served.generate([request(images) for images in IMAGE_SETS], LONGER)
    for images, output in zip(IMAGE_SETS, outputs):
        expected = reference_ids(pruned_reference, images, LONGER.max_tokens)
        assert list(output.outputs[0].token_ids) == expected, f"{len(images)} image(s)"


def test_pruning_changes_the_answer_source(qwen_checkpoint, served):
    """The comparison above can fail: the stock model answers differently on at least one picture."""
    model, processor, _ = qwen_checkpoint
    image_sets = [images for images in IMAGE_SETS if images]
    outputs = served.generate([request(images) for images in image_sets], GREEDY)
    served_ids = [list(output.outputs[0].token_ids) for output in outputs]
    assert all(served_ids)
    assert any(ids != reference_ids((model, processor), images) for ids, images in zip(served_ids, image_sets))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"visual_token_num": 0}, "visual_token_num must be a positive integer"),
        ({"method": "pool", "visual_token_num": 4}, "needs kept positions for M-RoPE"),
        ({"visual_token_num": 4, "important_ratio": 1.5}, "important_ratio must be in [0, 1]"),
    ],
)
def test_bad_settings_refused_at_start(qwen_checkpoint, settings, message):
    with pytest.raises(Exception) as refused:
        engine(qwen_checkpoint[2], settings, ARCHITECTURE)
    chain, error = [], refused.value
    while error is not None:  # vLLM may wrap the plugin's ValueError
        chain.append(str(error))
        error = error.__cause__ or error.__context__
    assert any(message in text for text in chain), chain
