"""InternVL (InternViT with [CLS], pixel shuffle 0.5, Qwen2 LM): each tile's shuffled tokens pruned to
`visual_token_num`, unpruned = stock, batches = single prompts, [CLS] row = eager attention, exact removal."""

import pytest
import torch

import llava
from family_helpers import generate, random_image
from llava.models import internvl_vision
from llava.testing import build_tiny_internvl, internvl_image_text

TOKENS = 256  # shuffled tokens per 448-px tile


@pytest.fixture(scope="module")
def built():
    return build_tiny_internvl()


def internvl_batch(model, image_processor, tokenizer, images=None, texts=("What is it?", "Describe the scene.")):
    """A left-padded batch of prompts, one image each (the first cut into 2 tiles and a thumbnail)."""
    images = images or [random_image(896, 448, 1), random_image(448, 448, 2)]
    vision = image_processor(images, return_tensors="pt")
    tokenizer.padding_side = "left"
    prompts = [
        f"USER: {internvl_image_text(model, int(tiles))}\n{text} ASSISTANT:"
        for tiles, text in zip(vision.num_patches, texts)
    ]
    inputs = dict(tokenizer(prompts, return_tensors="pt", padding=True))
    return {**inputs, "pixel_values": vision.pixel_values}


def single(inputs: dict, row: int, tiles: list[int]) -> dict:
    mask = inputs["attention_mask"][row].bool()
    start = sum(tiles[:row])
    return {
        "input_ids": inputs["input_ids"][row][mask][None],
        "attention_mask": inputs["attention_mask"][row][mask][None],
        "pixel_values": inputs["pixel_values"][start : start + tiles[row]],
    }


def tiles_of(inputs: dict, model) -> list[int]:
    counts = (inputs["input_ids"] == model.config.image_token_id).sum(-1)
    return (counts // TOKENS).tolist()


@pytest.mark.parametrize("method", ["vispruner", "fastervlm", "random", "divprune"])
def test_a_budget_covering_every_token_is_the_stock_model(built, method):
    model = built[0]
    inputs = internvl_batch(*built)
    with torch.no_grad():
        logits = model(**inputs).logits
    tokens = generate(model, inputs, steps=3)
    llava.apply_pruning(model, method, TOKENS)
    try:
        with torch.no_grad():
            pruned = model(**inputs).logits
        pruned_tokens = generate(model, inputs, steps=3)
    finally:
        llava.remove_pruning(model)
    torch.testing.assert_close(pruned, logits, rtol=0, atol=1e-5)
    assert torch.equal(pruned_tokens, tokens)


@pytest.mark.parametrize("method", ["vispruner", "fastervlm", "random", "divprune", "pool"])
def test_each_tile_keeps_the_budget(built, method):
    model = built[0]
    inputs = internvl_batch(*built)
    budget = 20
    llava.apply_pruning(model, method, budget, trace=True)
    try:
        seen = []
        handle = model.model.language_model.register_forward_pre_hook(
            lambda _m, _a, kwargs: seen.append(kwargs["inputs_embeds"].shape), with_kwargs=True
        )
        try:
            with torch.no_grad():
                logits = model(**inputs).logits
        finally:
            handle.remove()
        (call,) = model.pruning_trace
    finally:
        llava.remove_pruning(model)
    tiles = inputs["pixel_values"].shape[0]
    assert tiles == 4 and tiles_of(inputs, model) == [3, 1]
    assert [(p.part, p.item, p.grid) for p in call.parts] == [("tile", t, (16, 16)) for t in range(tiles)]
    if method != "pool":
        assert all(len(p.kept) == budget for p in call.parts)
    text = ((inputs["input_ids"] != model.config.image_token_id) & inputs["attention_mask"].bool()).sum(-1)
    assert seen[0][1] == int((text + budget * torch.tensor([3, 1])).max())  # each tile: T placeholders
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("method", ["vispruner", "fastv"])
def test_a_left_padded_batch_equals_its_prompts_one_by_one(built, method):
    model = built[0]
    inputs = internvl_batch(*built)
    tiles = tiles_of(inputs, model)
    options = {"layer": 1} if method == "fastv" else {}
    llava.apply_pruning(model, method, 24, **options)
    try:
        with torch.no_grad():
            batch = model(**inputs).logits
            batch_tokens = generate(model, inputs, steps=3)
            for row in range(2):
                alone = single(inputs, row, tiles)
                logits = model(**alone).logits
                length = logits.shape[1]
                torch.testing.assert_close(batch[row, -length:], logits[0], rtol=1e-4, atol=1e-4)
                tokens = generate(model, alone, steps=3)
                assert torch.equal(batch_tokens[row, -3:], tokens[0, -3:])
    finally:
        llava.remove_pruning(model)


@pytest.mark.parametrize("use_qk_norm", [False, True])
@pytest.mark.parametrize("layer", [-1, -2])
def test_the_cls_row_is_the_eager_attention_of_the_feature_layer(use_qk_norm, layer):
    model = build_tiny_internvl(use_qk_norm=use_qk_norm)[0].float()
    pixels = torch.randn(2, 3, 448, 448)
    with torch.no_grad():
        vision = internvl_vision.encode(model.model, pixels, layer, {"cls_attention"})
        model.model.vision_tower.config._attn_implementation = "eager"
        model.model.vision_tower.set_attn_implementation("eager")
        out = model.model.vision_tower(pixel_values=pixels, output_attentions=True, return_dict=True)
    eager = out.attentions[layer][:, :, 0, 1:]  # [B, H, N]
    heads = eager.shape[1]
    grouped = eager.reshape(2, heads, 16, 2, 16, 2)  # (row pairs, column pairs) of the 32 x 32 patch grid
    summed = grouped.sum(dim=(3, 5)).reshape(2, heads, -1)  # the shuffle's 2x2 groups, in raster order
    torch.testing.assert_close(vision.cls_attention, summed, rtol=0, atol=1e-5)
    stock = model.model.get_image_features(pixels, vision_feature_layer=layer).pooler_output
    torch.testing.assert_close(model.model.multi_modal_projector(vision.features), stock, rtol=0, atol=1e-5)


@pytest.mark.parametrize("method", ["vispruner", "fastv"])
def test_removal_restores_identical_outputs(built, method):
    model = built[0]
    inputs = internvl_batch(*built)
    with torch.no_grad():
        before = model(**inputs).logits
    llava.apply_pruning(model, method, 16, **({"layer": 1} if method == "fastv" else {}))
    with torch.no_grad():
        model(**inputs)
    llava.remove_pruning(model)
    with torch.no_grad():
        after = model(**inputs).logits
    assert torch.equal(before, after)
    assert not {"forward", "generate", "pruning_config"} & set(model.__dict__)
    assert "get_image_features" not in model.model.__dict__


def test_merging_and_projection_methods_are_refused_with_the_reason(built):
    model = built[0]
    for method in ["tome", "visionzip", "prumerge_plus"]:
        with pytest.raises(ValueError, match="InternVL"):
            llava.apply_pruning(model, method, 16)
        assert "forward" not in model.__dict__
