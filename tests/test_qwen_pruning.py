"""Qwen2-VL / Qwen2.5-VL: vision-side methods on images and videos, in-LLM methods with M-RoPE positions.

The batch: a left-padded pair of prompts, the first with an image, the second with a video and an
image, so every check sees both kinds in one prompt and rows of different lengths.
"""

import inspect
import math

import pytest
import torch

import llava
from family_helpers import (
    assert_unpruned_is_stock,
    generate,
    language_model_inputs,
    pruned,
    random_image,
    subsequence_positions,
)
from llava.models import qwen_vision
from llava.pruning.sequence import Sequence, compact_positions
from llava.pruning.sparsevlm import recycled_clusters
from llava.testing import build_tiny_qwen2_vl

VIDEO_GRID = (2, 4, 6)  # temporal patches x patch rows x patch cols: 2 frames of 2 x 3 merged tokens
PATCH_VALUES = 3 * 2 * 14 * 14  # one flattened patch: channels x temporal patch x patch x patch
ROWS = ([("image", 0)], [("video", 0), ("image", 1)])  # what each prompt holds, in order
QUESTIONS = ("What? ASSISTANT:", "What happens there? ASSISTANT:")
SECONDS_PER_FRAME = 0.5  # Qwen2.5-VL: temporal positions step by tokens_per_second x this
T = 3  # kept tokens per image (video)
IN_LLM = {  # the tiny language model has 2 layers
    "fastv": {"layer": 1},
    "pdrop": {"layers": (1,), "ratio": 0.5},
    "sparsevlm": {"layers": (0,), "schedule": (2,)},
}


def merged_count(grid_thw: torch.Tensor) -> int:
    return int(grid_thw.prod() // 4)


@pytest.fixture(scope="module", params=["2", "2.5"])
def qwen(request):
    model, image_processor, tokenizer = build_tiny_qwen2_vl(request.param)
    tokenizer.padding_side = "left"
    images = [
        image_processor([random_image(w, h, 30 + i)], return_tensors="pt")
        for i, (w, h) in enumerate([(120, 90), (60, 100)])
    ]
    video = torch.randn(math.prod(VIDEO_GRID), PATCH_VALUES, generator=torch.Generator().manual_seed(3))
    return model, tokenizer, images, video


def prompts(qwen, rows=(0, 1)) -> dict:
    """Processor-style inputs for the prompts `rows` of ROWS (left-padded when several)."""
    model, tokenizer, images, video = qwen
    texts, assets = [], {"image": [], "video": []}
    for row in rows:
        parts = []
        for kind, index in ROWS[row]:
            if kind == "image":
                assets["image"].append(images[index])
                count = merged_count(images[index].image_grid_thw)
            else:
                assets["video"].append(video)
                count = merged_count(torch.tensor(VIDEO_GRID))
            parts.append(f"<|vision_start|>{f'<|{kind}_pad|>' * count}<|vision_end|>")
        texts.append("USER: " + " and ".join(parts) + QUESTIONS[row])
    inputs = dict(tokenizer(texts, return_tensors="pt", padding=True))
    ids, config = inputs["input_ids"], model.config
    inputs["mm_token_type_ids"] = (ids == config.image_token_id).int() + 2 * (ids == config.video_token_id).int()
    if assets["image"]:
        inputs["pixel_values"] = torch.cat([i.pixel_values for i in assets["image"]])
        inputs["image_grid_thw"] = torch.cat([i.image_grid_thw for i in assets["image"]])
    if assets["video"]:
        inputs["pixel_values_videos"] = torch.cat(assets["video"])
        inputs["video_grid_thw"] = torch.tensor([VIDEO_GRID] * len(assets["video"]))
        if "second_per_grid_ts" in inspect.signature(model.forward).parameters:  # Qwen2.5-VL spaces frames in time
            inputs["second_per_grid_ts"] = torch.full((len(assets["video"]),), SECONDS_PER_FRAME)
    return inputs


def generated(model, inputs, steps=2):
    with torch.no_grad():
        out = model.generate(
            **inputs,
            max_new_tokens=steps,
            min_new_tokens=steps,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
        )
    return out.sequences[:, -steps:], torch.stack(out.logits, dim=1)


def assert_batch_equals_single_prompts(model, qwen):
    tokens, logits = generated(model, prompts(qwen))
    for row in range(len(ROWS)):
        alone_tokens, alone_logits = generated(model, prompts(qwen, (row,)))
        assert torch.equal(alone_tokens[0], tokens[row])
        assert torch.allclose(alone_logits[0], logits[row], atol=1e-4)


# --- before the language model: images and videos ----------------------------------------------------


@pytest.mark.parametrize("method", ["vispruner", "fastervlm", "random", "divprune"])
def test_vision_side_methods_keep_t_tokens_per_image_and_video_at_their_stock_positions(qwen, method):
    model = qwen[0]
    inputs = prompts(qwen)
    stock = language_model_inputs(model, **inputs)
    with pruned(model, method, T, trace=True):
        pruned_inputs = language_model_inputs(model, **inputs)
        out = generate(model, inputs, steps=2)
        if method != "random":  # random draws from one stream: a batch and single prompts see different draws
            assert_batch_equals_single_prompts(model, qwen)
        calls = model.pruning_trace[:2]
    length = inputs["input_ids"].shape[1]
    assert out.shape == (2, length + 2) and torch.equal(out[:, :length], inputs["input_ids"])
    frame_grid = (VIDEO_GRID[1] // 2, VIDEO_GRID[2] // 2)
    for call in calls:  # the forward, then the generate's prefill
        assert [len(p.kept) for p in call.matching(source="image")] == [T, T]
        frames = call.matching(source="video")
        assert [(f.item, f.part, f.index, f.grid) for f in frames] == [(0, "frame", i, frame_grid) for i in range(2)]
        assert sum(len(f.kept) for f in frames) == T
    mask = inputs["attention_mask"].bool()
    for row in range(2):
        pruned_row = pruned_inputs["inputs_embeds"][row][pruned_inputs["attention_mask"][row].bool()]
        columns = subsequence_positions(pruned_row, stock["inputs_embeds"][row][mask[row]])
        visual = int((inputs["mm_token_type_ids"][row] > 0).sum())
        assert len(columns) == int(mask[row].sum()) - visual + T * len(ROWS[row])
        stock_positions = stock["position_ids"][:, row][:, mask[row]][:, columns]
        assert torch.equal(pruned_inputs["position_ids"][:, row][:, -len(columns) :], stock_positions)


def test_unpruned_images_and_videos_are_stock(qwen):
    assert_unpruned_is_stock(qwen[0], prompts(qwen), method="vispruner", visual_token_num=1000)


def test_encoders_called_directly_prune_each_item_by_name_or_by_position(qwen):
    model = qwen[0]
    inputs = prompts(qwen)
    with pruned(model, "vispruner", T):
        video = model.model.get_video_features(
            pixel_values_videos=inputs["pixel_values_videos"], video_grid_thw=inputs["video_grid_thw"]
        )
        images = model.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"], return_dict=False)
    assert [len(tokens) for tokens in video.pooler_output] == [T] and [len(t) for t in images[1]] == [T, T]


def test_merging_methods_and_missing_signals_are_refused(qwen):
    model = qwen[0]
    with pytest.raises(ValueError, match="merges tokens; Qwen2-VL / Qwen2.5-VL needs kept positions for M-RoPE"):
        llava.apply_pruning(model, "pool", T)
    with pytest.raises(ValueError, match="'visionzip' merges tokens"):  # the layout decides before the signals
        llava.apply_pruning(model, "visionzip", T)
    inputs = prompts(qwen)
    with pytest.raises(ValueError, match="asked for cls_token"):
        qwen_vision.encode(
            model.model.visual, inputs["pixel_values"], inputs["image_grid_thw"], frozenset({"cls_token"})
        )
    assert "forward" not in model.__dict__


# --- inside the language model: M-RoPE positions ----------------------------------------------------


@pytest.mark.parametrize("method", sorted(IN_LLM))
def test_in_llm_methods_prune_images_and_videos_and_decode_like_single_prompts(qwen, method):
    model = qwen[0]
    inputs = prompts(qwen)
    with pruned(model, method, T, trace=True, **IN_LLM[method]):
        with torch.no_grad():
            logits = model(**inputs).logits
        out = generate(model, inputs, steps=2)
        assert_batch_equals_single_prompts(model, qwen)
        calls = model.pruning_trace[:2]
    length = inputs["input_ids"].shape[1]
    assert out.shape == (2, length + 2) and torch.equal(out[:, :length], inputs["input_ids"])
    per_item = IN_LLM[method].get("schedule", (T,))[0]
    visual = (inputs["mm_token_type_ids"] > 0).sum(-1).tolist()
    kept = [min(len(items) * per_item, count - (method == "sparsevlm")) for items, count in zip(ROWS, visual)]
    for call in calls:  # each item of a row is traced on its own; a row's items share its budget
        rows = [[part for kind, index in row for part in call.matching(source=kind, item=index)] for row in ROWS]
        assert [sum(len(part.kept) for part in parts) for parts in rows] == kept
    merged = [recycled_clusters(count - k) if method == "sparsevlm" else 0 for count, k in zip(visual, kept)]
    dropped = torch.tensor(visual) - torch.tensor(kept) - torch.tensor(merged)
    assert logits.shape[1] == length - int(dropped.min())  # padding stays; the rows are re-aligned


@pytest.mark.parametrize("method", ["fastv", "pdrop"])
def test_in_llm_methods_keeping_every_visual_token_are_stock(qwen, method):
    assert_unpruned_is_stock(qwen[0], prompts(qwen), method=method, visual_token_num=1000, **IN_LLM[method])


def test_decoding_continues_each_layer_group_from_its_last_prompt_position(qwen):
    """PDrop renumbers the kept prompt: the first decode step's M-RoPE positions are the last prompt
    token's, plus one, in each group (the full prompt before the stage, the pruned one after)."""
    model = qwen[0]
    rotary = model.model.language_model.rotary_emb
    seen = []
    handle = rotary.register_forward_pre_hook(
        lambda _m, args, kwargs: seen.append(kwargs["position_ids"]), with_kwargs=True
    )
    llava.apply_pruning(model, "pdrop", 1, **IN_LLM["pdrop"])  # one token per item: the kept ones leave gaps
    try:
        generate(model, prompts(qwen), steps=2)
    finally:
        handle.remove()
        llava.remove_pruning(model)
    full, pruned, full_step, pruned_step = seen[:4]
    assert pruned.shape[-1] < full.shape[-1] and bool((pruned[..., -1] < full[..., -1]).any())  # renumbered
    assert torch.equal(full_step[..., 0], full[..., -1] + 1) and torch.equal(pruned_step[..., 0], pruned[..., -1] + 1)


# --- the M-RoPE renumbering rule ---------------------------------------------------------------------


def renumbered_by_walking(positions, mask, origin):
    """`compact_positions`' documented rule, token by token."""
    out = torch.zeros_like(positions)
    for row in range(positions.shape[0]):
        kept = [i for i in range(positions.shape[1]) if mask[row, i] and origin[row, i] >= 0]
        highest_old = highest_new = int(positions[row, kept[0]].min()) - 1
        shift = 0
        for i in range(positions.shape[1]):
            if not mask[row, i]:
                continue
            if origin[row, i] < 0:  # made by merging
                highest_new += 1
                out[row, i] = highest_new
                shift -= 1
                continue
            shift += max(0, int(positions[row, i].min()) - highest_old - 1)
            out[row, i] = positions[row, i] - shift
            highest_old = max(highest_old, int(positions[row, i].max()))
            highest_new = max(highest_new, int(out[row, i].max()))
    return out


def random_sequence(generator, sections, batch=3, length=24):
    positions = torch.randint(0, 30, (batch, length, sections), generator=generator).sort(dim=1).values
    positions = positions + torch.arange(length)[:, None]  # increasing along the row (1-D: strictly)
    mask = torch.arange(length) >= torch.randint(0, 4, (batch, 1), generator=generator)  # left padding
    origin = torch.arange(length).expand(batch, length).clone()
    origin[:, 6:][torch.rand(batch, length - 6, generator=generator) < 0.2] = -1  # merged tokens after the start
    return Sequence(torch.zeros(batch, length, 1), positions.squeeze(-1), mask, torch.full((batch, length), -1), origin)


def test_m_rope_renumbering_follows_its_rule_and_is_compaction_in_one_dimension():
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        sequence = random_sequence(generator, 3)
        expected = renumbered_by_walking(sequence.positions, sequence.mask, sequence.origin)
        assert torch.equal(compact_positions(sequence).positions, expected)
        flat = random_sequence(generator, 1)
        as_sections = Sequence(
            flat.hidden, flat.positions[..., None].expand(-1, -1, 3), flat.mask, flat.image, flat.origin
        )
        compacted = compact_positions(flat).positions
        assert torch.equal(compact_positions(as_sections).positions, compacted[..., None].expand(-1, -1, 3))


def test_m_rope_renumbering_closes_gaps_and_keeps_an_image_layout():
    # text 0..4, a 2 x 2 image at (5, 5..6, 5..6) whose last token was dropped, then text from 7 and 9
    positions = torch.tensor(
        [[[p] * 3 for p in range(5)] + [[5, 5, 5], [5, 5, 6], [5, 6, 5], [0, 0, 0], [7] * 3, [9] * 3]]
    )
    origin = torch.tensor([[0, 1, 2, 3, 4, 5, 6, 7, -1, 9, 11]])  # one merged token after the image
    sequence = Sequence(
        torch.zeros(1, 11, 1), positions, torch.ones(1, 11, dtype=torch.bool), torch.full((1, 11), -1), origin
    )
    renumbered = compact_positions(sequence).positions[0]
    assert torch.equal(renumbered[:8], positions[0, :8])  # nothing before the merged token moved
    assert renumbered[8:].tolist() == [[7] * 3, [8] * 3, [9] * 3]  # merged next, then the text without gaps
