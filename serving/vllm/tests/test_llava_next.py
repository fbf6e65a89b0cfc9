"""VisPrunerLlavaNextForConditionalGeneration against the library's transformers path (both layouts), on a
tiny random LLaVA-NeXT."""

from __future__ import annotations

import copy

import pytest
import torch
from llava_case import BUDGET, GREEDY, NEW_TOKENS, RATIO, engine, prompt, request
from next_case import ARCHITECTURE, MAX_MODEL_LEN, PAPER_CROPS, build_tiny_llava_next, square, textured
from vispruner_vllm.checkpoints import save_hub_layout

import llava
from llava.models import clip
from llava.models.llava_next import image_grid, pin_paper_resolution, placeholder_counts
from llava.pruning import create_pruner
from llava.pruning.base import resolve_signals

NATIVE_BUDGET = 24  # per image, newlines not counted
SETTINGS = {
    "paper": {"visual_token_num": BUDGET, "important_ratio": RATIO},
    "native": {"visual_token_num": NATIVE_BUDGET, "important_ratio": RATIO, "layout": "native"},
}
# Requests with 0, 1 and 2 images. The paper layout pads every picture into a square grid, and padded patches
# are alike: their attention near-ties, and vLLM's tower and transformers' (1e-6 apart) may break such ties
# differently, so its pictures are square. The native layout cuts the padding off: wide pictures (1x2 tiles).
IMAGE_SETS = {
    "paper": [[], [square(0)], [square(1), square(2)]],
    "native": [[], [textured(0)], [textured(1), textured(2)]],
}


@pytest.fixture(scope="module")
def next_checkpoint(tmp_path_factory):
    model, processor = build_tiny_llava_next()
    folder = save_hub_layout(model, processor, tmp_path_factory.mktemp("tiny-llava-next"))
    return model, processor, folder


def next_engine(folder, settings: dict):
    return engine(folder, settings, ARCHITECTURE, max_model_len=MAX_MODEL_LEN)


@pytest.fixture(scope="module", params=sorted(SETTINGS))
def layout(request):
    return request.param


@pytest.fixture(scope="module")
def served(next_checkpoint, layout):
    return next_engine(next_checkpoint[2], SETTINGS[layout])


def reference(next_checkpoint, layout: str):
    """The library's transformers path at the same settings (a copy: the fixture's model stays stock)."""
    model, processor, _ = next_checkpoint
    model, processor = copy.deepcopy(model), copy.deepcopy(processor)
    settings = dict(SETTINGS[layout])
    llava.apply_pruning(model, method="vispruner", layout=settings.pop("layout", "paper"), **settings)
    return model, pin_paper_resolution(processor) if layout == "paper" else processor


def reference_ids(model_and_processor, images) -> list[int]:
    model, processor = model_and_processor
    inputs = processor(text=prompt(len(images)), images=images or None, return_tensors="pt")
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False)
    return output[0, inputs["input_ids"].shape[1] :].tolist()


def test_kept_indices_equal_transformers_path(next_checkpoint, served, layout):
    if layout != "paper":
        pytest.skip("per-crop selection is the paper layout's; the native one is checked by the outputs")
    model, processor, _ = next_checkpoint
    pinned = pin_paper_resolution(copy.deepcopy(processor))
    pixels = pinned.image_processor([square(0), square(1)], return_tensors="pt")["pixel_values"]
    crops = pixels.flatten(0, 1)
    assert crops.shape[0] == 2 * PAPER_CROPS
    pruner = create_pruner("vispruner", BUDGET, important_ratio=RATIO)
    asked = resolve_signals(pruner.requires, clip.SIGNALS) & clip.SIGNALS  # "importance": the [CLS] attention
    with torch.no_grad():
        vision = clip.encode(model.model.vision_tower, crops, model.config.vision_feature_layer, asked)
    expected = pruner.select(vision)
    (served_indices,) = served.apply_model(lambda vllm_model: vllm_model.kept_indices(crops))
    assert served_indices.shape == (2 * PAPER_CROPS, BUDGET)
    assert torch.equal(served_indices, expected)


def test_prompt_holds_pruned_placeholders(next_checkpoint, served, layout):
    model, processor, _ = next_checkpoint
    image = textured(1)
    (output,) = served.generate([request([image])], GREEDY)
    settings = SETTINGS[layout]
    pruner = create_pruner("vispruner", settings["visual_token_num"], important_ratio=RATIO)
    grid = image_grid(model.config, (image.height, image.width), layout)
    written, fed = placeholder_counts(model.config, pruner, grid, layout)
    image_token = processor.tokenizer.convert_tokens_to_ids("<image>")
    assert output.prompt_token_ids.count(image_token) == fed < written
    if layout == "paper":
        assert fed == PAPER_CROPS * BUDGET


def test_mixed_batch_greedy_equals_transformers(next_checkpoint, served, layout):
    pruned = reference(next_checkpoint, layout)
    image_sets = IMAGE_SETS[layout]
    outputs = served.generate([request(images) for images in image_sets], GREEDY)
    for images, output in zip(image_sets, outputs):
        assert list(output.outputs[0].token_ids) == reference_ids(pruned, images), f"{len(images)} image(s)"


def test_pruning_changes_the_answer_source(next_checkpoint, served, layout):
    """The comparison above can fail: the stock model answers differently on at least one picture."""
    model, processor, _ = next_checkpoint
    image_sets = [images for images in IMAGE_SETS[layout] if images]
    outputs = served.generate([request(images) for images in image_sets], GREEDY)
    served_ids = [list(output.outputs[0].token_ids) for output in outputs]
    assert all(served_ids)
    assert any(ids != reference_ids((model, processor), images) for ids, images in zip(served_ids, image_sets))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"visual_token_num": 0}, "visual_token_num must be a positive integer"),
        ({"visual_token_num": 8, "layout": "tiles"}, "['layout'] must be one of 'paper', 'native'"),
        ({"method": "pool", "visual_token_num": 16, "layout": "native"}, "layout='native' places newline tokens"),
    ],
)
def test_bad_settings_refused_at_start(next_checkpoint, settings, message):
    with pytest.raises(Exception) as refused:
        next_engine(next_checkpoint[2], settings)
    chain, error = [], refused.value
    while error is not None:  # vLLM may wrap the plugin's ValueError
        chain.append(str(error))
        error = error.__cause__ or error.__context__
    assert any(message in text for text in chain), chain
