"""Encoders without [CLS]: SigLIP (LLaVA-OneVision) and Qwen2-VL / Qwen2.5-VL (PatchMerger)."""

import copy

import pytest
import torch
from transformers import AttentionInterface

import llava
from family_helpers import (
    assert_unpruned_is_stock,
    generate,
    onevision_processor,
    random_image,
    real_rows,
    stock_and_pruned,
    subsequence_positions,
)
from llava.attention import mean_received_attention
from llava.models import siglip
from llava.testing import build_tiny_llava_onevision, build_tiny_qwen2_vl


def test_received_attention_is_the_same_in_any_chunk_size():
    torch.manual_seed(0)
    query, key = torch.randn(2, 3, 50, 8), torch.randn(2, 3, 50, 8)
    whole = mean_received_attention(query, key, 0.3)
    chunked = mean_received_attention(query, key, 0.3, max_elements=7 * 3 * 2 * 50)
    expected = torch.softmax(query @ key.transpose(-1, -2) * 0.3, dim=-1).mean(dim=2)
    assert torch.allclose(whole, expected, atol=1e-6) and torch.allclose(chunked, expected, atol=1e-6)


# --- LLaVA-OneVision (SigLIP) ---------------------------------------------------------------


@pytest.fixture(scope="module")
def onevision():
    return build_tiny_llava_onevision()


@pytest.mark.parametrize("layer", [-1, -2])
def test_siglip_received_attention_matches_eager_attention_while_sdpa_stays_on(onevision, layer):
    model, image_processor, _ = onevision
    tower = model.model.vision_tower
    pixels = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        ours = siglip.encode(tower, pixels, layer, {"received_attention"})
        stock = tower(pixels, output_hidden_states=True).hidden_states[layer]
        eager_tower = copy.deepcopy(tower)
        eager_tower.set_attn_implementation("eager")
        eager = eager_tower(pixels, output_attentions=True).attentions
    assert tower.config._attn_implementation == "sdpa"
    producing = len(eager) + 1 + layer - 1 if layer < 0 else layer - 1
    assert (ours.received_attention - eager[producing].mean(dim=2)).abs().max() < 1e-6
    assert torch.allclose(ours.features, stock, atol=1e-5)


@pytest.fixture(scope="module", params=["anyres_max_9", "anyres_max_1"])  # _1 shrinks the tile map
def onevision_images(request, onevision):
    model, image_processor, tokenizer = onevision
    model.config.vision_aspect_ratio = request.param
    tokenizer.padding_side = "left"
    processor = onevision_processor(image_processor, tokenizer, request.param)
    images = [random_image(100, 40, 1), random_image(60, 90, 2)]
    inputs = processor(
        text=["USER: <image>\nWhat? ASSISTANT:", "USER: <image>\nWhat is it? ASSISTANT:"],
        images=images,
        return_tensors="pt",
        padding=True,
    )
    yield model, dict(inputs)
    model.config.vision_aspect_ratio = "anyres_max_9"


def test_onevision_images_unpruned_are_stock(onevision_images):
    model, inputs = onevision_images
    assert_unpruned_is_stock(model, inputs, method="vispruner", visual_token_num=10_000)


def test_onevision_images_keep_stock_tokens_and_every_newline(onevision_images):
    model, inputs = onevision_images
    budget = 9
    stock, pruned = stock_and_pruned(model, inputs, method="vispruner", visual_token_num=budget)
    newline = model.model.image_newline
    for stock_row, pruned_row, written in zip(
        real_rows(stock), real_rows(pruned), (inputs["input_ids"] == model.config.image_token_id).sum(-1)
    ):
        newlines = int(((stock_row - newline).abs().amax(-1) < 1e-6).sum())
        assert pruned_row.shape[0] == stock_row.shape[0] - int(written) + budget + newlines
        subsequence_positions(pruned_row, stock_row)
        assert int(((pruned_row - newline).abs().amax(-1) < 1e-6).sum()) == newlines


def test_onevision_multi_image_prompt_and_video(onevision):
    model, image_processor, tokenizer = onevision
    processor = onevision_processor(image_processor, tokenizer, "anyres_max_9")
    two = processor(
        text=["USER: <image><image>\nSame? ASSISTANT:"],
        images=[[random_image(50, 40, 3), random_image(40, 60, 4)]],
        return_tensors="pt",
    )
    stock, pruned = stock_and_pruned(model, dict(two), method="vispruner", visual_token_num=5)
    assert pruned["inputs_embeds"].shape[1] == stock["inputs_embeds"].shape[1] - 2 * (16 - 5)
    subsequence_positions(pruned["inputs_embeds"][0], stock["inputs_embeds"][0])

    frames = 4
    video = {
        **tokenizer(["USER: " + "<video>" * (frames * 4 + 1) + "\nWhat? ASSISTANT:"], return_tensors="pt"),
        "pixel_values_videos": torch.randn(1, frames, 3, 32, 32),
    }
    assert_unpruned_is_stock(model, video, method="vispruner", visual_token_num=4)
    for options, kept in (({}, frames * 2), ({"video_token_num": 3}, 3)):
        stock, pruned = stock_and_pruned(model, video, method="vispruner", visual_token_num=2, **options)
        assert pruned["inputs_embeds"].shape[1] == stock["inputs_embeds"].shape[1] - (frames * 4 - kept)
        positions = subsequence_positions(pruned["inputs_embeds"][0], stock["inputs_embeds"][0])
        run_end = int((video["input_ids"][0] == model.config.video_token_id).nonzero()[-1])
        assert run_end in positions  # the video's closing newline stays


# --- Qwen2-VL / Qwen2.5-VL (PatchMerger) ----------------------------------------------------


def qwen_inputs(model, image_processor, tokenizer, sizes):
    """A left-padded batch: one image in the first prompt, two in the second."""
    images = [random_image(w, h, 20 + i) for i, (w, h) in enumerate(sizes)]
    vision = image_processor(images, return_tensors="pt")
    counts = (vision.image_grid_thw.prod(-1) // 4).tolist()

    def image(n):
        return "<|vision_start|>" + "<|image_pad|>" * n + "<|vision_end|>"

    tokenizer.padding_side = "left"
    texts = [
        f"USER: {image(counts[0])}What? ASSISTANT:",
        f"USER: {image(counts[1])} and {image(counts[2])}What is it? ASSISTANT:",
    ]
    inputs = dict(tokenizer(texts, return_tensors="pt", padding=True))
    inputs["mm_token_type_ids"] = (inputs["input_ids"] == model.config.image_token_id).int()
    inputs.update(pixel_values=vision.pixel_values, image_grid_thw=vision.image_grid_thw)
    return inputs


SIZES = [(120, 90), (60, 100), (150, 60)]


@pytest.fixture(scope="module", params=["2", "2.5"])
def qwen(request):
    model, image_processor, tokenizer = build_tiny_qwen2_vl(request.param)
    return model, qwen_inputs(model, image_processor, tokenizer, SIZES)


def recorded_received_attention(visual, pixel_values, grid_thw):
    """Eager attention of the last block (recorded), the mean over queries, merged 2x2, image order."""
    last, weights = visual.blocks[-1].attn, []

    def recording(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
        probs = torch.softmax(query @ key.transpose(-1, -2) * scaling, dim=-1)
        if module is last:
            weights.append(probs[0].mean(dim=1))  # [H, n] per attention segment
        return (probs @ value).transpose(1, 2).contiguous(), probs

    AttentionInterface.register("test_recording", recording)
    eager = copy.deepcopy(visual)
    eager.set_attn_implementation("test_recording")
    last = eager.blocks[-1].attn
    with torch.no_grad():
        out = eager(pixel_values, grid_thw=grid_thw)
        merged = torch.cat(weights, dim=-1).unflatten(1, (-1, 4)).sum(-1)  # [H, G] in the tower's order
        window_tokens = eager.merger(out.last_hidden_state)
    # The tower may reorder merged groups (Qwen2.5-VL windows); match its outputs to find image order.
    order = [int(((window_tokens - token).abs().amax(-1)).argmin()) for token in out.pooler_output]
    return merged[:, order].mean(dim=0), out.pooler_output


def test_qwen_unpruned_is_stock(qwen):
    model, inputs = qwen
    assert_unpruned_is_stock(model, inputs, method="vispruner", visual_token_num=1000)


def test_qwen_keeps_top_merged_tokens_with_their_stock_m_rope_positions(qwen):
    model, inputs = qwen
    budget = 3
    stock, pruned = stock_and_pruned(model, inputs, method="vispruner", visual_token_num=budget, important_ratio=1.0)
    attention, merged_tokens = recorded_received_attention(
        model.model.visual, inputs["pixel_values"], inputs["image_grid_thw"]
    )
    counts = (inputs["image_grid_thw"].prod(-1) // 4).tolist()
    expected_tokens = torch.cat(
        [
            tokens[scores.topk(budget).indices.sort().values]
            for tokens, scores in zip(merged_tokens.split(counts), attention.split(counts))
        ]
    )
    mask = inputs["attention_mask"].bool()
    kept_images = []
    for row in range(2):
        stock_row, pruned_row = stock["inputs_embeds"][row][mask[row]], pruned["inputs_embeds"][row]
        pruned_row = (
            pruned_row[pruned["attention_mask"][row].bool()] if pruned.get("attention_mask") is not None else pruned_row
        )
        columns = subsequence_positions(pruned_row, stock_row)
        written, images_in_row = [(counts[0], 1), (counts[1] + counts[2], 2)][row]
        assert len(columns) == stock_row.shape[0] - written + budget * images_in_row
        stock_positions = stock["position_ids"][:, row][:, mask[row]]
        pruned_positions = pruned["position_ids"][:, row][:, -len(columns) :]
        assert torch.equal(pruned_positions, stock_positions[:, columns])
        ids = inputs["input_ids"][row][mask[row]]
        kept_images.append(pruned_row[ids[columns] == model.config.image_token_id])
    assert torch.allclose(torch.cat(kept_images), expected_tokens, atol=1e-5)


def test_qwen_generate_feeds_kept_placeholders_and_decodes_after_the_unpruned_prompt(qwen):
    model, inputs = qwen
    llava.apply_pruning(model, "vispruner", 2)
    seen = []
    handle = model.model.language_model.register_forward_pre_hook(lambda _m, _a, k: seen.append(k), with_kwargs=True)
    try:
        out = generate(model, inputs, steps=3)
    finally:
        handle.remove()
        llava.remove_pruning(model)
    counts = (inputs["image_grid_thw"].prod(-1) // 4).tolist()
    rows = [counts[0] - 2, counts[1] + counts[2] - 4]
    lengths = inputs["attention_mask"].sum(-1) - torch.tensor(rows)
    prefill = seen[0]
    assert prefill["inputs_embeds"].shape[1] == int(lengths.max())
    stock_positions, _ = model.model.get_rope_index(
        inputs["input_ids"],
        inputs["mm_token_type_ids"],
        inputs["image_grid_thw"],
        attention_mask=inputs["attention_mask"],
    )
    next_position = stock_positions.amax(dim=(0, 2)) + 1
    assert torch.equal(seen[1]["position_ids"][1:, :, 0], next_position.expand(3, -1))  # M-RoPE rows
    assert torch.equal(out[:, : inputs["input_ids"].shape[1]], inputs["input_ids"])
