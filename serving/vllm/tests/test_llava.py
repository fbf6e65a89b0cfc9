"""VisPrunerLlavaForConditionalGeneration against the library's transformers path, on a tiny random LLaVA-1.5."""

from __future__ import annotations

import copy

import pytest
import torch
from PIL import Image, ImageDraw
from tiny_checkpoints import save_hub_layout
from vllm import LLM, SamplingParams

import llava
from llava.models import clip
from llava.pruning import create_pruner
from llava.testing import build_tiny_llava

ARCHITECTURE = "VisPrunerLlavaForConditionalGeneration"
IMAGE_SIZE = 112  # 8 x 8 patches of 14 px
BUDGET = 10
RATIO = 0.5
NEW_TOKENS = 8
TEXT_HIDDEN = 128  # 4 heads of 32: vLLM's CPU attention has no kernel for head_dim 16
PROMPT_TEXT = "USER: {images}What is shown in the image? ASSISTANT:"


def shapes(seed: int) -> Image.Image:
    """A small picture with a few coloured shapes, different for each seed."""
    generator = torch.Generator().manual_seed(seed)
    image = Image.new("RGB", (IMAGE_SIZE + 24 * seed, IMAGE_SIZE), (240, 240, 240))
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        x, y = torch.randint(0, IMAGE_SIZE - 30, (2,), generator=generator).tolist()
        colour = tuple(torch.randint(0, 256, (3,), generator=generator).tolist())
        draw.ellipse((x, y, x + 28, y + 28), fill=colour)
    return image


def prompt(num_images: int) -> str:
    return PROMPT_TEXT.format(images="<image>\n" * num_images)


def overrides(**settings) -> dict:
    return {"architectures": [ARCHITECTURE], "vispruner": settings}


def engine(folder, settings: dict) -> LLM:
    return LLM(
        model=str(folder),
        hf_overrides=overrides(**settings),
        dtype="float32",
        max_model_len=512,
        max_num_seqs=4,
        limit_mm_per_prompt={"image": 2},
        seed=0,
    )


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    model, processor = build_tiny_llava(image_size=IMAGE_SIZE, vision_layers=4, text_hidden=TEXT_HIDDEN)
    folder = save_hub_layout(model, processor, tmp_path_factory.mktemp("tiny-llava"))
    return model, processor, folder


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


def request(images: list[Image.Image]) -> dict:
    return {"prompt": prompt(len(images)), "multi_modal_data": {"image": images}} if images else {"prompt": prompt(0)}


GREEDY = SamplingParams(temperature=0.0, max_tokens=NEW_TOKENS)


def test_kept_indices_equal_transformers_path(checkpoint, served):
    model, processor, _ = checkpoint
    pixels = processor.image_processor([shapes(0), shapes(1)], return_tensors="pt")["pixel_values"]
    pruner = create_pruner("vispruner", BUDGET, important_ratio=RATIO)
    with torch.no_grad():
        vision = clip.encode(model.model.vision_tower, pixels, model.config.vision_feature_layer, pruner.requires)
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
