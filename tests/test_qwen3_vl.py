"""Qwen3-VL: vision-side methods keep T merged tokens per image and per video with their stock M-RoPE
positions and the same DeepStack rows; in-LLM methods add DeepStack at the tokens they keep; the
received attention equals eager attention; batches equal single prompts; removal is exact.

The batch: a left-padded pair of prompts, the first with an image, the second with a video (written
frame by frame, a timestamp before each) and an image, on a 4-layer language model (FastV's default
layer 2 fits, and stages can fall before, among and after the three DeepStack layers 0, 1, 2).
"""

import copy
import math

import pytest
import torch
from transformers import AttentionInterface

import llava
from family_helpers import generate, language_model_inputs, pruned, random_image, subsequence_positions
from llava.models import qwen_vision
from llava.testing import build_tiny_qwen3_vl
from llava.testing.qwen3_vl import qwen3_vl_video_text

VIDEO_GRID = (3, 4, 6)  # temporal patches x patch rows x patch cols: 3 frames of 2 x 3 merged tokens
PATCH_VALUES = 3 * 2 * 16 * 16  # one flattened patch: channels x temporal patch x patch x patch
ROWS = ([("image", 0)], [("video", 0), ("image", 1)])  # what each prompt holds, in order
QUESTIONS = ("What? ASSISTANT:", "What happens there? ASSISTANT:")
T = 3  # kept tokens per image (video)
TEXT_LAYERS = 4
IN_LLM = {
    "fastv": {},  # its default layer 2: after two DeepStack additions, before the third
    "pdrop": {"layers": (1,), "ratio": 0.5},
    "sparsevlm": {"layers": (0,), "schedule": (2,)},
}


def merged_count(grid_thw) -> int:
    return int(torch.as_tensor(grid_thw).prod() // 4)


@pytest.fixture(scope="module")
def qwen3():
    return assets(build_tiny_qwen3_vl(text_layers=TEXT_LAYERS))


def assets(built):
    """(model, tokenizer, images, video) for `prompts`, from a builder's (model, image_processor, tokenizer)."""
    model, image_processor, tokenizer = built
    tokenizer.padding_side = "left"
    images = [
        image_processor([random_image(w, h, 30 + i)], return_tensors="pt")
        for i, (w, h) in enumerate([(120, 90), (60, 100)])
    ]
    video = torch.randn(math.prod(VIDEO_GRID), PATCH_VALUES, generator=torch.Generator().manual_seed(3))
    return model, tokenizer, images, video


def prompts(qwen3, rows=(0, 1)) -> dict:
    """Processor-style inputs for the prompts `rows` of ROWS (left-padded when several)."""
    model, tokenizer, images, video = qwen3
    texts, assets = [], {"image": [], "video": []}
    for row in rows:
        parts = []
        for kind, index in ROWS[row]:
            if kind == "image":
                assets["image"].append(images[index])
                parts.append(f"<|vision_start|>{'<|image_pad|>' * merged_count(images[index].image_grid_thw)}")
                parts[-1] += "<|vision_end|>"
            else:
                assets["video"].append(video)
                parts.append(qwen3_vl_video_text(VIDEO_GRID))
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


def assert_batch_equals_single_prompts(model, qwen3):
    """A left-padded batch generates as its prompts one by one; a right-padded batch's forward gives
    each row's real tokens the logits of its prompt alone."""
    tokens, logits = generated(model, prompts(qwen3))
    qwen3[1].padding_side = "right"
    try:
        right = prompts(qwen3)
    finally:
        qwen3[1].padding_side = "left"
    assert not right["attention_mask"][:, -1].all()
    with torch.no_grad():
        right_logits = model(**right).logits
    for row in range(len(ROWS)):
        alone = prompts(qwen3, (row,))
        alone_tokens, alone_logits = generated(model, alone)
        assert torch.equal(alone_tokens[0], tokens[row])
        torch.testing.assert_close(alone_logits[0], logits[row], rtol=0, atol=1e-4)
        with torch.no_grad():
            forward = model(**alone).logits[0]
        torch.testing.assert_close(right_logits[row, : forward.shape[0]], forward, rtol=0, atol=1e-4)


def stock_merged(model, inputs) -> dict:
    """Each kind's stock merged tokens and DeepStack levels, items concatenated in prompt order."""
    out = {}
    for kind, encoder, pixels, grid in [
        ("image", "get_image_features", "pixel_values", "image_grid_thw"),
        ("video", "get_video_features", "pixel_values_videos", "video_grid_thw"),
    ]:
        with torch.no_grad():
            features = getattr(model.model, encoder)(inputs[pixels], inputs[grid])
        out[kind] = (torch.cat(features.pooler_output), [torch.cat(level) for level in features.deepstack_features])
    return out


# --- before the language model --------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["vispruner", "fastervlm", "random", "divprune"])
def test_vision_side_methods_keep_t_tokens_per_image_and_video_at_their_stock_positions(qwen3, method):
    model = qwen3[0]
    inputs = prompts(qwen3)
    stock = language_model_inputs(model, **inputs)
    with pruned(model, method, T, trace=True):
        pruned_inputs = language_model_inputs(model, **inputs)
        out = generate(model, inputs, steps=2)
        if method != "random":  # random draws from one stream: a batch and single prompts see different draws
            assert_batch_equals_single_prompts(model, qwen3)
        calls = model.pruning_trace[:2]
    length = inputs["input_ids"].shape[1]
    assert out.shape == (2, length + 2) and torch.equal(out[:, :length], inputs["input_ids"])
    frame_grid = (VIDEO_GRID[1] // 2, VIDEO_GRID[2] // 2)
    for call in calls:  # the forward, then the generate's prefill
        assert [len(p.kept) for p in call.matching(source="image")] == [T, T]
        frames = call.matching(source="video")
        assert [(f.item, f.part, f.index, f.grid) for f in frames] == [(0, "frame", i, frame_grid) for i in range(3)]
        assert sum(len(f.kept) for f in frames) == T  # one budget for the video's frames
    mask = inputs["attention_mask"].bool()
    for row in range(2):
        pruned_row = pruned_inputs["inputs_embeds"][row][pruned_inputs["attention_mask"][row].bool()]
        columns = subsequence_positions(pruned_row, stock["inputs_embeds"][row][mask[row]])
        visual = int((inputs["mm_token_type_ids"][row] > 0).sum())
        assert len(columns) == int(mask[row].sum()) - visual + T * len(ROWS[row])
        stock_positions = stock["position_ids"][:, row][:, mask[row]][:, columns]
        assert torch.equal(pruned_inputs["position_ids"][:, row][:, -len(columns) :], stock_positions)


@pytest.mark.parametrize("method", ["vispruner", "divprune"])
def test_deepstack_rows_reaching_the_language_model_are_the_stock_ones_at_the_kept_tokens(qwen3, method):
    model = qwen3[0]
    inputs = prompts(qwen3)
    stock = language_model_inputs(model, **inputs)
    with pruned(model, method, T):
        kept = language_model_inputs(model, **inputs)
    levels = len(model.config.vision_config.deepstack_visual_indexes)
    assert len(stock["deepstack_visual_embeds"]) == len(kept["deepstack_visual_embeds"]) == levels
    stock_mask, kept_mask = stock["visual_pos_masks"], kept["visual_pos_masks"]
    assert int(kept_mask.sum()) == T * sum(len(row) for row in ROWS)
    # the stock visual rank of each kept visual token, found by matching the input embeddings row by row
    stock_rank = torch.where(stock_mask.reshape(-1), stock_mask.reshape(-1).long().cumsum(0) - 1, -1)
    stock_rank = stock_rank.reshape(stock_mask.shape)
    ranks = []
    for row in range(2):
        real, real_kept = inputs["attention_mask"][row].bool(), kept["attention_mask"][row].bool()
        columns = torch.tensor(
            subsequence_positions(kept["inputs_embeds"][row][real_kept], stock["inputs_embeds"][row][real])
        )
        ranks.append(stock_rank[row][real][columns][kept_mask[row][real_kept]])
    ranks = torch.cat(ranks)
    assert bool((ranks >= 0).all())  # kept visual tokens are stock visual tokens
    for stock_level, kept_level in zip(stock["deepstack_visual_embeds"], kept["deepstack_visual_embeds"]):
        assert torch.equal(kept_level, stock_level[ranks])


def test_unpruned_images_and_videos_are_stock(qwen3):
    model = qwen3[0]
    inputs = prompts(qwen3)
    with torch.no_grad():
        logits = model(**inputs).logits
    tokens = generate(model, inputs, steps=3)
    for method, options in [("vispruner", {}), ("fastv", {}), ("pdrop", {"layers": (1,)})]:
        with pruned(model, method, 1000, **options), torch.no_grad():
            assert torch.equal(model(**inputs).logits, logits), method
            assert torch.equal(generate(model, inputs, steps=3), tokens), method


def test_pruned_generate_equals_greedy_decoding_over_the_pruned_embeddings(qwen3):
    """The second prompt alone: its kept tokens (stock merged tokens and DeepStack rows at the traced
    indices), stock M-RoPE positions at the kept columns, decoded by hand with the stock language model."""
    model = qwen3[0]
    inputs = prompts(qwen3, (1,))
    steps = 4
    with pruned(model, "vispruner", T, trace=True):
        with torch.no_grad():
            out = model.generate(
                **inputs,
                max_new_tokens=steps,
                min_new_tokens=steps,
                do_sample=False,
                output_logits=True,
                return_dict_in_generate=True,
            )
        (call,) = model.pruning_trace
    stock = stock_merged(model, inputs)
    ids = inputs["input_ids"][0]
    keep = torch.ones_like(ids, dtype=torch.bool)
    placed = {}  # token id -> (kept merged tokens, kept rows of each DeepStack level)
    for kind, token_id in [("video", model.config.video_token_id), ("image", model.config.image_token_id)]:
        kept = torch.cat([p.kept + p.index * p.grid[0] * p.grid[1] for p in call.matching(source=kind)])
        flags = torch.zeros(int((ids == token_id).sum()), dtype=torch.bool)
        flags[kept] = True
        keep[ids == token_id] = flags
        tokens, levels = stock[kind]
        placed[token_id] = (tokens[kept], [level[kept] for level in levels])
    kept_ids = ids[keep][None]
    positions, _ = model.model.get_rope_index(
        inputs["input_ids"], inputs["mm_token_type_ids"], inputs["image_grid_thw"], inputs["video_grid_thw"]
    )
    positions = positions[:, :, keep]
    language_model = model.model.language_model
    with torch.no_grad():
        embeds = language_model.embed_tokens(kept_ids)
        levels = [torch.zeros_like(embeds[0]) for _ in model.config.vision_config.deepstack_visual_indexes]
        for token_id, (tokens, rows) in placed.items():
            embeds[kept_ids == token_id] = tokens
            for level, level_rows in zip(levels, rows):
                level[kept_ids[0] == token_id] = level_rows
        visual = torch.isin(kept_ids, torch.tensor(list(placed)))
        deepstack = [level[visual[0]] for level in levels]  # rows of the visual tokens, in prompt order
        hidden = language_model(
            inputs_embeds=embeds,
            position_ids=positions,
            visual_pos_masks=visual,
            deepstack_visual_embeds=deepstack,
            use_cache=True,
        )
        cache, next_position = hidden.past_key_values, int(positions.max()) + 1
        tokens, logits = [], []
        for step in range(steps):
            logits.append(model.lm_head(hidden.last_hidden_state[:, -1]))
            token = logits[-1].argmax(-1)
            tokens.append(token)
            step_position = torch.full((3, 1, 1), next_position + step)
            hidden = language_model(
                inputs_embeds=language_model.embed_tokens(token)[:, None],
                position_ids=step_position,
                past_key_values=cache,
                use_cache=True,
            )
    assert torch.equal(out.sequences[0, ids.shape[0] :], torch.stack(tokens, dim=1)[0])
    torch.testing.assert_close(torch.stack(out.logits), torch.stack(logits), rtol=0, atol=1e-5)


def test_merging_methods_are_refused_for_m_rope_and_removal_is_exact(qwen3):
    model = qwen3[0]
    for method in ["pool", "tome", "visionzip"]:
        with pytest.raises(ValueError, match=f"'{method}' merges tokens; Qwen3-VL needs kept positions for M-RoPE"):
            llava.apply_pruning(model, method, T)
        assert "forward" not in model.__dict__


@pytest.mark.parametrize("method", ["vispruner", "fastv"])
def test_removal_restores_identical_outputs(qwen3, method):
    model = qwen3[0]
    inputs = prompts(qwen3)
    with torch.no_grad():
        before = model(**inputs).logits
    with pruned(model, method, T), torch.no_grad():
        assert model(**inputs).logits.shape != before.shape
    with torch.no_grad():
        after = model(**inputs).logits
    assert torch.equal(before, after)
    assert not {"forward", "generate", "pruning_config"} & set(model.__dict__)
    assert not {"get_image_features", "get_video_features", "forward"} & set(model.model.__dict__)
    assert "forward" not in model.model.language_model.__dict__


def test_a_video_written_as_one_run_is_refused_naming_the_frames(qwen3):
    model, tokenizer = qwen3[0], qwen3[1]
    inputs = prompts(qwen3, (1,))
    one_run = f"<|vision_start|>{'<|video_pad|>' * merged_count(VIDEO_GRID)}<|vision_end|>"
    image = f"<|vision_start|>{'<|image_pad|>' * merged_count(inputs['image_grid_thw'][0])}<|vision_end|>"
    text = tokenizer([f"USER: {one_run} and {image}{QUESTIONS[1]}"], return_tensors="pt")
    ids = text["input_ids"]
    types = (ids == model.config.image_token_id).int() + 2 * (ids == model.config.video_token_id).int()
    inputs.update(input_ids=ids, attention_mask=text["attention_mask"], mm_token_type_ids=types)
    for method in ["vispruner", "fastv"]:
        with pruned(model, method, T), pytest.raises(ValueError, match="need one run per frame of 6, 6, 6"):
            model(**inputs)


# --- the received attention: beside SDPA, equal to eager ----------------------------------------------------


def recorded_received_attention(visual, pixel_values, grid_thw):
    """Eager attention of the last block (recorded), the mean over each segment's queries, merged 2x2."""
    last, weights = visual.blocks[-1].attn, []

    def recording(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
        probs = torch.softmax(query @ key.transpose(-1, -2) * scaling, dim=-1)
        if module is last:
            weights.append(probs[0].mean(dim=1))  # [H, n] per attention segment
        return (probs @ value).transpose(1, 2).contiguous(), probs

    AttentionInterface.register("test_qwen3_recording", recording)
    eager = copy.deepcopy(visual)
    eager.set_attn_implementation("test_qwen3_recording")
    last = eager.blocks[-1].attn
    with torch.no_grad():
        out = eager(pixel_values, grid_thw=grid_thw)
    return torch.cat(weights, dim=-1).unflatten(1, (-1, 4)).sum(-1), out


@pytest.mark.parametrize("kind", ["image", "video"])
def test_received_attention_beside_sdpa_equals_eager_attention_summed_over_merge_groups(qwen3, kind):
    model = copy.deepcopy(qwen3[0]).float()
    inputs = prompts(qwen3)
    pixels, grid = (
        (inputs["pixel_values"], inputs["image_grid_thw"])
        if kind == "image"
        else (inputs["pixel_values_videos"], inputs["video_grid_thw"])
    )
    visual = model.model.visual
    assert visual.config._attn_implementation == "sdpa"
    with torch.no_grad():
        merged = qwen_vision.encode(visual, pixels, grid, frozenset({"received_attention"}))
    expected, eager = recorded_received_attention(visual, pixels, grid)
    torch.testing.assert_close(merged.attention, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(merged.tokens, eager.pooler_output, rtol=0, atol=1e-5)
    assert len(merged.deepstack) == 3
    for ours, theirs in zip(merged.deepstack, eager.deepstack_features):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


# --- inside the language model: DeepStack follows the kept tokens ------------------------------------------------


@pytest.mark.parametrize("method", sorted(IN_LLM))
def test_in_llm_methods_prune_images_and_videos_and_decode_like_single_prompts(qwen3, method):
    model = qwen3[0]
    inputs = prompts(qwen3)
    with pruned(model, method, T, trace=True, **IN_LLM[method]):
        with torch.no_grad():
            logits = model(**inputs).logits
        out = generate(model, inputs, steps=2)
        assert_batch_equals_single_prompts(model, qwen3)
        calls = model.pruning_trace[:2]
    length = inputs["input_ids"].shape[1]
    assert out.shape == (2, length + 2) and torch.equal(out[:, :length], inputs["input_ids"])
    assert torch.isfinite(logits).all()
    per_item = IN_LLM[method].get("schedule", (T,))[0]
    for call in calls:  # a video's frames are one item: the second row holds two items, not four
        assert [(p.source, p.item) for p in call.parts] == [("image", 0), ("video", 0), ("image", 1)]
        kept = [len(p.kept) for p in call.parts]
        assert kept[0] == min(per_item, merged_count(inputs["image_grid_thw"][0]) - (method == "sparsevlm"))
        assert sum(kept[1:]) <= 2 * per_item


@pytest.mark.parametrize(("method", "options"), [("fastv", {"layer": 1}), ("pdrop", {"layers": (1,)})])
def test_deepstack_is_added_inside_the_pruned_language_model_at_the_kept_visual_tokens(qwen3, method, options):
    """After the stage before layer 1, layers 1 and 2 are still DeepStack layers: what is added to their
    output is the stock level's rows of the visual tokens still there (traced), in order, and nothing
    at the text tokens."""
    model = qwen3[0]
    inputs = prompts(qwen3)
    stock = language_model_inputs(model, **inputs)
    layers = model.model.language_model.layers
    outputs, next_inputs = {}, {}
    handles = [
        layers[i].register_forward_hook(lambda _m, _a, out, i=i: outputs.__setitem__(i, out)) for i in (1, 2)
    ] + [
        layers[i + 1].register_forward_pre_hook(lambda _m, args, i=i: next_inputs.__setitem__(i, args[0]))
        for i in (1, 2)
    ]
    try:
        with pruned(model, method, T, trace=True, **options), torch.no_grad():
            model(**inputs)
            (call,) = model.pruning_trace
    finally:
        for handle in handles:
            handle.remove()
    # the stock visual rank of each kept token: items in row order, each item's placeholders in turn
    counts = [
        merged_count(inputs["image_grid_thw"][0]),
        merged_count(VIDEO_GRID),
        merged_count(inputs["image_grid_thw"][1]),
    ]
    starts = torch.tensor([0, *counts]).cumsum(0)[:-1]
    ranks = [starts[n] + part.kept for n, part in enumerate(call.parts)]
    expected_rows = [ranks[0], torch.cat(ranks[1:])]
    for layer in (1, 2):
        added = next_inputs[layer] - outputs[layer]
        for row, rank in enumerate(expected_rows):
            touched = added[row].abs().amax(-1) > 0
            assert int(touched.sum()) == len(rank)
            torch.testing.assert_close(
                added[row][touched], stock["deepstack_visual_embeds"][layer][rank], rtol=0, atol=1e-5
            )


@pytest.mark.parametrize(
    ("method", "options", "layer"),
    [("fastv", {"layer": 2}, 1), ("sparsevlm", {"layers": (0,), "schedule": (2,)}, 0)],
    ids=["rows-of-the-layer-that-ran", "rows-of-the-layer-ahead"],
)
def test_language_model_attention_rows_beside_sdpa_match_eager_attention_with_its_q_k_norms(
    qwen3, method, options, layer
):
    """Qwen3's decoder normalises queries and keys per head before the rotary embedding: the rows the
    methods read (FastV: captured from layer 1 as it ran; SparseVLM: computed ahead of layer 0) are the
    eager attention's rows of the unpruned model."""
    model = qwen3[0]
    inputs = prompts(qwen3)
    pruner = llava.create_pruner(method, T, **options)
    reduce, seen = pruner.reduce, {}

    def recorded_reduce(stage, sequence, attention, state):
        def reading(query_index):
            rows = attention(query_index)
            seen.setdefault("read", (query_index, rows))
            return rows

        return reduce(stage, sequence, reading, state)

    pruner.reduce = recorded_reduce
    llava.attach_pruner(model, pruner)
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        llava.remove_pruning(model)
    language_model = model.model.language_model
    language_model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            eager = model(**inputs, output_attentions=True).attentions[layer]  # [B, H, L, L]
    finally:
        language_model.set_attn_implementation("sdpa")
    query, rows = seen["read"]
    expected = eager.gather(2, query[:, None, :, None].expand(-1, eager.shape[1], -1, eager.shape[-1]))
    torch.testing.assert_close(rows, expected, rtol=0, atol=1e-5)


# --- Qwen3-VL-MoE: the same seams ---------------------------------------------------------------------------


def test_the_moe_model_is_stock_when_nothing_is_pruned_and_prunes_inside_and_before_its_language_model():
    qwen3_moe = assets(build_tiny_qwen3_vl(text_layers=TEXT_LAYERS, moe=True))
    model = qwen3_moe[0]
    inputs = prompts(qwen3_moe)
    with torch.no_grad():
        logits = model(**inputs).logits
    for method in ["vispruner", "fastv"]:
        with pruned(model, method, 1000), torch.no_grad():
            assert torch.equal(model(**inputs).logits, logits), method
        with pruned(model, method, T, trace=True), torch.no_grad():
            assert model(**inputs).logits.shape[1] < logits.shape[1], method
            assert_batch_equals_single_prompts(model, qwen3_moe)
            if method == "fastv":  # the load-balancing loss would mix layers of different lengths
                with pytest.raises(ValueError, match="output_router_logits is not supported with fastv"):
                    model(**inputs, output_router_logits=True)
            else:
                assert model(**inputs, output_router_logits=True).router_logits


@pytest.mark.parametrize("method", ["vispruner", "fastv"])
def test_two_images_in_one_prompt_are_two_items_with_their_own_budget(qwen3, method):
    model, tokenizer, images, _ = qwen3
    runs = [f"<|vision_start|>{'<|image_pad|>' * merged_count(i.image_grid_thw)}<|vision_end|>" for i in images]
    inputs = dict(tokenizer([f"USER: {runs[0]} and {runs[1]}Same? ASSISTANT:"], return_tensors="pt"))
    ids = inputs["input_ids"]
    inputs["mm_token_type_ids"] = (ids == model.config.image_token_id).int()
    inputs["pixel_values"] = torch.cat([i.pixel_values for i in images])
    inputs["image_grid_thw"] = torch.cat([i.image_grid_thw for i in images])
    with pruned(model, method, T, trace=True):
        seen = language_model_inputs(model, **inputs)
        (call,) = model.pruning_trace
    assert [(p.source, p.item) for p in call.parts] == [("image", 0), ("image", 1)]
    if method == "vispruner":
        assert [len(p.kept) for p in call.parts] == [T, T]
        assert int(seen["visual_pos_masks"].sum()) == 2 * T
    else:  # the prompt's two images compete for 2 T slots
        assert sum(len(p.kept) for p in call.parts) == 2 * T
