"""Gemma 3 (SigLIP without [CLS], 4x4 average pool to 256 tokens, sliding-window Gemma 3 decoder): each
encoded image's pooled tokens pruned to `visual_token_num`, unpruned = stock, batches = single prompts,
received-attention score = eager attention, exact removal, generate = a manual decode of the pruned
embeddings, token_type_ids kept consistent."""

import pytest
import torch
from transformers import DynamicCache

import llava
from family_helpers import generate, random_image
from llava.models import gemma3_vision
from llava.testing import build_tiny_gemma3

TOKENS = 256  # pooled tokens per 896-px image (64 x 64 patches, 4x4 pool)
GRID = (16, 16)
TEXTS = ("What is it?", "Describe the scene in a few words.")
FASTV = {"layer": 2}  # after a sliding-window layer of the tiny 6-layer decoder


@pytest.fixture(scope="module")
def built():
    return build_tiny_gemma3()


def gemma3_batch(processor, images_per_row=(2, 1), side="left", pan_and_scan=False, texts=TEXTS):
    """A padded batch: row r holds `images_per_row[r]` images (random sizes, a wide one first)."""
    sizes = [(900, 300), (400, 400), (500, 700)]
    images, prompts, seed = [], [], 0
    for count, text in zip(images_per_row, texts):
        row = []
        for _ in range(count):
            width, height = sizes[seed % len(sizes)]
            row.append(random_image(width, height, seed))
            seed += 1
        images.append(row)
        prompts.append("USER: " + "<start_of_image>" * count + f"\n{text} ASSISTANT:")
    processor.tokenizer.padding_side = side
    inputs = processor(text=prompts, images=images, return_tensors="pt", padding=True, do_pan_and_scan=pan_and_scan)
    return dict(inputs)


def single(inputs: dict, row: int, model) -> dict:
    """Row `row` of a batch on its own, with its own images."""
    mask = inputs["attention_mask"][row].bool()
    per_row = ((inputs["input_ids"] == model.config.image_token_id).sum(-1) // TOKENS).tolist()
    start = sum(per_row[:row])
    return {
        "input_ids": inputs["input_ids"][row][mask][None],
        "attention_mask": inputs["attention_mask"][row][mask][None],
        "token_type_ids": inputs["token_type_ids"][row][mask][None],
        "pixel_values": inputs["pixel_values"][start : start + per_row[row]],
    }


def options(method: str) -> dict:
    return FASTV if method == "fastv" else {}


@pytest.mark.parametrize("method", ["vispruner", "fastervlm", "random", "divprune", "fastv"])
def test_a_budget_covering_every_token_is_the_stock_model(built, method):
    model, processor = built
    inputs = gemma3_batch(processor)
    with torch.no_grad():
        logits = model(**inputs).logits
    tokens = generate(model, inputs, steps=3)
    llava.apply_pruning(model, method, TOKENS, **options(method))
    try:
        with torch.no_grad():
            pruned = model(**inputs).logits
        pruned_tokens = generate(model, inputs, steps=3)
    finally:
        llava.remove_pruning(model)
    torch.testing.assert_close(pruned, logits, rtol=0, atol=1e-5)
    assert torch.equal(pruned_tokens, tokens)


def inner_inputs(model, inputs: dict) -> dict:
    """The keyword arguments `model.model` (Gemma3Model) gets on one forward."""
    seen = []
    handle = model.model.register_forward_pre_hook(lambda _m, _a, kwargs: seen.append(kwargs), with_kwargs=True)
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        handle.remove()
    return seen[0]


@pytest.mark.parametrize("method", ["vispruner", "fastervlm", "random", "divprune", "pool"])
def test_each_image_keeps_the_budget_and_its_token_types(built, method):
    model, processor = built
    inputs = gemma3_batch(processor)
    budget = 20
    llava.apply_pruning(model, method, budget, trace=True)
    try:
        seen = inner_inputs(model, inputs)
        (call,) = model.pruning_trace
    finally:
        llava.remove_pruning(model)
    assert [(p.part, p.item, p.grid) for p in call.parts] == [("image", i, GRID) for i in range(3)]
    if method != "pool":
        assert all(len(p.kept) == budget for p in call.parts)
    ids, types, mask = seen["input_ids"], seen["token_type_ids"], seen["attention_mask"].bool()
    image = ids == model.config.image_token_id
    assert torch.equal(types.bool(), image)  # the soft tokens and only they are image-typed
    assert image.sum(-1).tolist() == [2 * budget, budget]
    text = (~(inputs["input_ids"] == model.config.image_token_id) & inputs["attention_mask"].bool()).sum(-1)
    assert mask.sum(-1).tolist() == (text + torch.tensor([2, 1]) * budget).tolist()


def test_pan_and_scan_crops_each_keep_the_budget(built):
    model, processor = built
    inputs = gemma3_batch(processor, images_per_row=(1, 1), pan_and_scan=True)
    crops = inputs["pixel_values"].shape[0]
    per_row = ((inputs["input_ids"] == model.config.image_token_id).sum(-1) // TOKENS).tolist()
    assert crops == sum(per_row) and per_row[0] > 1  # the wide image: the original and its crops
    llava.apply_pruning(model, "vispruner", 16, trace=True)
    try:
        seen = inner_inputs(model, inputs)
        (call,) = model.pruning_trace
    finally:
        llava.remove_pruning(model)
    assert [len(p.kept) for p in call.parts] == [16] * crops
    assert (seen["input_ids"] == model.config.image_token_id).sum(-1).tolist() == [16 * n for n in per_row]


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("method", ["vispruner", "fastv"])
def test_a_padded_batch_equals_its_prompts_one_by_one(built, method, side):
    model, processor = built
    inputs = gemma3_batch(processor, side=side)
    llava.apply_pruning(model, method, 24, **options(method))
    try:
        with torch.no_grad():
            batch = model(**inputs).logits
            batch_tokens = generate(model, inputs, steps=3)
            for row in range(2):
                alone = single(inputs, row, model)
                logits = model(**alone).logits[0]
                length = logits.shape[0]
                rows = batch[row, -length:] if side == "left" else batch[row, :length]
                torch.testing.assert_close(rows, logits, rtol=1e-4, atol=1e-4)
                if side == "left":  # generate pads on the left
                    tokens = generate(model, alone, steps=3)
                    assert torch.equal(batch_tokens[row, -3:], tokens[0, -3:])
    finally:
        llava.remove_pruning(model)


def test_the_received_attention_is_the_eager_attention_of_the_feature_layer():
    model = build_tiny_gemma3()[0].float()
    pixels = torch.randn(2, 3, 896, 896)
    tower = model.model.vision_tower
    with torch.no_grad():
        vision = gemma3_vision.encode(model.model, pixels, {"received_attention"})
        tower.config._attn_implementation = "eager"
        tower.set_attn_implementation("eager")
        out = tower(pixel_values=pixels, output_attentions=True, return_dict=True)
        stock = model.model.get_image_features(pixels).pooler_output
    eager = out.attentions[-1].mean(dim=2)  # [B, H, N]: received, averaged over queries
    heads = eager.shape[1]
    grouped = eager.reshape(2, heads, 16, 4, 16, 4)  # (row groups, column groups) of the 64 x 64 patch grid
    summed = grouped.sum(dim=(3, 5)).reshape(2, heads, -1)  # the pool's 4x4 groups, in raster order
    torch.testing.assert_close(vision.received_attention, summed, rtol=0, atol=1e-5)
    assert vision.grid == GRID
    torch.testing.assert_close(gemma3_vision.project(model.model, vision.features), stock, rtol=0, atol=1e-5)


@pytest.mark.parametrize("method", ["vispruner", "fastv"])
def test_removal_restores_identical_outputs(built, method):
    model, processor = built
    inputs = gemma3_batch(processor)
    with torch.no_grad():
        before = model(**inputs).logits
    llava.apply_pruning(model, method, 16, **options(method))
    with torch.no_grad():
        model(**inputs)
    llava.remove_pruning(model)
    with torch.no_grad():
        after = model(**inputs).logits
    assert torch.equal(before, after)
    assert not {"forward", "generate", "pruning_config"} & set(model.__dict__)
    assert not {"get_image_features", "forward"} & set(model.model.__dict__)
    assert "forward" not in model.model.language_model.__dict__


def greedy_over_embeddings(model, embeds, token_type_ids, steps):
    """Greedy decoding with the stock model over given embeddings and an explicit KV cache."""
    cache, tokens = DynamicCache(config=model.config.text_config), []
    with torch.no_grad():
        out = model(inputs_embeds=embeds, token_type_ids=token_type_ids, past_key_values=cache, use_cache=True)
        for _ in range(steps):
            token = out.logits[:, -1].argmax(-1)
            tokens.append(token)
            embedded = model.model.get_input_embeddings()(token)[:, None]
            out = model(inputs_embeds=embedded, past_key_values=cache, use_cache=True)
    return torch.stack(tokens, dim=1)


def test_pruned_generate_equals_a_manual_decode_of_the_pruned_embeddings(built):
    model, processor = built
    inputs = gemma3_batch(processor, images_per_row=(2,), texts=TEXTS[:1])
    budget, steps, image_id = 24, 6, model.config.image_token_id
    with torch.no_grad():
        stock_tokens = model.model.get_image_features(inputs["pixel_values"]).pooler_output  # [2, 256, D]
    llava.apply_pruning(model, "vispruner", budget, trace=True)
    try:
        generated = generate(model, inputs, steps=steps)
        kept = [part.kept for part in model.pruning_trace[-1].parts]
    finally:
        llava.remove_pruning(model)
    ids, types = inputs["input_ids"][0], inputs["token_type_ids"][0]
    is_image = ids == image_id
    rank = torch.cumsum(is_image, 0) - 1  # placeholder number over the prompt
    keep = ~is_image | (rank % TOKENS < budget)  # each image's run cut from its tail
    with torch.no_grad():
        embeds = model.model.get_input_embeddings()(ids[keep].masked_fill(is_image[keep], 0))[None]
    visual = torch.cat([stock_tokens[i, k] for i, k in enumerate(kept)])
    embeds[0, is_image[keep]] = visual
    expected = greedy_over_embeddings(model, embeds, types[keep][None], steps)
    assert torch.equal(generated[:, -steps:], expected)


def test_methods_without_their_signals_are_refused_with_the_reason(built):
    model = built[0]
    for method in ["tome", "visionzip", "prumerge_plus"]:
        with pytest.raises(ValueError, match="Gemma 3"):
            llava.apply_pruning(model, method, 16)
        assert "forward" not in model.__dict__


def manual_mask(positions, blocks, sliding: bool, window: int) -> torch.Tensor:
    """[1, 1, L, L] additive mask: causal by position, each image's tokens both ways, and for a sliding
    layer only keys within `window` positions of the query."""
    query, key = positions[:, None], positions[None, :]
    allowed = (key <= query) | ((blocks[:, None] == blocks[None, :]) & (blocks[:, None] >= 0))
    if sliding:
        allowed &= key > query - window
    return torch.zeros(allowed.shape).masked_fill(~allowed, float("-inf"))[None, None]


def test_fastv_keeps_sliding_windows_over_the_kept_tokens_positions(built):
    """The pruned model's logits equal a manual run of the stock layers: the full prompt up to the
    pruning layer, then the kept tokens with their own positions, each image's kept tokens attending to
    each other both ways, and sliding layers seeing the kept tokens within the window of positions."""
    model, processor = built
    long_text = "Describe the scene in a few words. " * 3
    inputs = gemma3_batch(processor, images_per_row=(2,), texts=(long_text,))
    layer, budget = FASTV["layer"], 24
    lm, config = model.model.language_model, model.config.text_config
    with torch.no_grad():
        embeds = language_model_embeddings(model, inputs)
    llava.apply_pruning(model, "fastv", budget, trace=True, **FASTV)
    try:
        with torch.no_grad():
            pruned = model(**inputs).logits[0]
        parts = model.pruning_trace[-1].parts
    finally:
        llava.remove_pruning(model)
    is_image = inputs["token_type_ids"][0].bool()
    blocks = torch.where(is_image, (torch.cumsum(is_image, 0) - 1) // TOKENS, -1)
    rank = torch.where(is_image, (torch.cumsum(is_image, 0) - 1) % TOKENS, -1)
    keep = ~is_image
    for part in parts:
        keep |= (blocks == part.item) & torch.isin(rank, part.kept)
    positions, hidden = torch.arange(embeds.shape[1]), embeds
    assert positions[keep][-1] - positions[keep][0] > config.sliding_window  # the window matters
    with torch.no_grad():
        for index, decoder_layer in enumerate(lm.layers):
            if index == layer:
                hidden, positions, blocks = hidden[:, keep], positions[keep], blocks[keep]
            kind = config.layer_types[index]
            mask = manual_mask(positions, blocks, kind == "sliding_attention", config.sliding_window)
            rope = lm.rotary_emb(hidden, positions[None], kind)
            hidden = decoder_layer(hidden, attention_mask=mask, position_embeddings=rope, position_ids=positions[None])
        expected = model.lm_head(lm.norm(hidden))[0]
    assert sum(len(p.kept) for p in parts) == 2 * budget  # the prompt's images share their slots
    assert pruned.shape == expected.shape
    torch.testing.assert_close(pruned, expected, rtol=1e-4, atol=1e-4)


def language_model_embeddings(model, inputs: dict) -> torch.Tensor:
    """The stock model's input embeddings of the language model (text and image tokens)."""
    seen = []
    handle = model.model.language_model.register_forward_pre_hook(
        lambda _m, _a, kwargs: seen.append(kwargs["inputs_embeds"]), with_kwargs=True
    )
    try:
        model(**inputs)
    finally:
        handle.remove()
    return seen[0]
