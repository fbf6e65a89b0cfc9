"""SmolVLM / Idefics3 (SigLIP-style tower without [CLS], pixel-shuffle connector, row x col tiles plus a
global image): each tile's shuffled tokens pruned to `visual_token_num`, unpruned = stock, batches (left
or right padded, multi-image, padding images) = single prompts, SmolVLM videos per frame, the importance
= eager attention received, exact removal, generate = greedy decoding of the pruned embeddings."""

import pytest
import torch
from transformers import DynamicCache

import llava
from family_helpers import random_image
from llava.attention import mean_received_attention
from llava.models import smolvlm_vision
from llava.testing import build_tiny_idefics3, build_tiny_smolvlm, smolvlm_image_text, smolvlm_video_text
from llava.testing.smolvlm import SMOLVLM_256M, tile_tokens

FAMILIES = {"smolvlm": build_tiny_smolvlm, "idefics3": build_tiny_idefics3}
SHAPES = {**FAMILIES, "smolvlm_256m": lambda **options: build_tiny_smolvlm(**SMOLVLM_256M, **options)}
TILES_PER_SIDE = 2  # the real processors allow 4 (SmolVLM-Instruct, Idefics3-8B); 2 keeps the prompts short
IMAGES = [[(400, 200), (200, 400)], [(300, 300)]]  # row 0: two images of 1x2 / 2x1 tiles; row 1: one of 2x2
TILES = [6, 5]  # each image's tiles plus its global image: row 1 is padded with an all-zero image
TEXTS = ["What is it?", "Describe both pictures in a few words."]
STEPS = 3


@pytest.fixture(scope="module", params=list(FAMILIES))
def built(request):
    return FAMILIES[request.param](tiles_per_side=TILES_PER_SIDE)


@pytest.fixture(scope="module")
def smolvlm():
    return build_tiny_smolvlm(tiles_per_side=TILES_PER_SIDE)


def prompt(body: str, text: str) -> str:
    return f"<|im_start|>User:{body}{text}<end_of_utterance>\nAssistant:"


def smolvlm_batch(model, image_processor, tokenizer, sizes=IMAGES, texts=TEXTS, side="left"):
    """A padded batch of prompts, each with its images' placeholders as the processors write them."""
    images = [[random_image(w, h, seed) for seed, (w, h) in enumerate(row)] for row in sizes]
    vision = image_processor(images, return_tensors="pt", return_row_col_info=True)
    bodies = [
        "".join(smolvlm_image_text(model, rows, cols) for rows, cols in zip(row_rows, row_cols))
        for row_rows, row_cols in zip(vision["rows"], vision["cols"])
    ]
    tokenizer.padding_side = side
    inputs = dict(tokenizer([prompt(b, t) for b, t in zip(bodies, texts)], return_tensors="pt", padding=True))
    return {**inputs, "pixel_values": vision.pixel_values, "pixel_attention_mask": vision.pixel_attention_mask}


def single(inputs: dict, row: int, tiles: int) -> dict:
    """Row `row` of a batch alone: no padding tokens, only its own `tiles` images."""
    mask = inputs["attention_mask"][row].bool()
    return {
        "input_ids": inputs["input_ids"][row][mask][None],
        "attention_mask": inputs["attention_mask"][row][mask][None],
        "pixel_values": inputs["pixel_values"][row : row + 1, :tiles],
        "pixel_attention_mask": inputs["pixel_attention_mask"][row : row + 1, :tiles],
    }


def generate(model, inputs: dict, steps: int = STEPS) -> torch.Tensor:
    with torch.no_grad():
        return model.generate(**inputs, max_new_tokens=steps, min_new_tokens=steps, do_sample=False)


def lm_lengths(model, inputs: dict) -> list[int]:
    """Each row's real length in the language model's input."""
    seen = []
    handle = model.model.text_model.register_forward_pre_hook(
        lambda _m, _a, kwargs: seen.append(kwargs), with_kwargs=True
    )
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        handle.remove()
    embeds, mask = seen[0]["inputs_embeds"], seen[0].get("attention_mask")
    return [embeds.shape[1]] * embeds.shape[0] if mask is None else mask.sum(-1).tolist()


@pytest.mark.parametrize("method", ["vispruner", "fastervlm", "random", "divprune"])
def test_a_budget_covering_every_tile_is_the_stock_model(built, method):
    model = built[0]
    inputs = smolvlm_batch(*built)
    with torch.no_grad():
        logits = model(**inputs).logits
    tokens = generate(model, inputs)
    llava.apply_pruning(model, method, tile_tokens(model))
    try:
        with torch.no_grad():
            pruned = model(**inputs).logits
        pruned_tokens = generate(model, inputs)
    finally:
        llava.remove_pruning(model)
    torch.testing.assert_close(pruned, logits, rtol=0, atol=1e-5)
    assert torch.equal(pruned_tokens, tokens)


@pytest.mark.parametrize("method", ["vispruner", "fastervlm", "random", "divprune", "pool"])
def test_each_tile_keeps_the_budget_and_padding_images_are_skipped(built, method):
    model = built[0]
    inputs = smolvlm_batch(*built)
    assert inputs["pixel_values"].shape[1] == max(TILES) and not inputs["pixel_values"][1, -1].any()
    budget = 16
    stock = lm_lengths(model, inputs)
    llava.apply_pruning(model, method, budget, trace=True)
    try:
        fed = lm_lengths(model, inputs)
        (call,) = model.pruning_trace
    finally:
        llava.remove_pruning(model)
    side = int(tile_tokens(model) ** 0.5)
    assert [(p.part, p.item, p.grid) for p in call.parts] == [("tile", t, (side, side)) for t in range(sum(TILES))]
    if method != "pool":  # pool keeps a grid of its own: the count the rewrite asked for, checked by the stock model
        assert all(len(p.kept) == budget for p in call.parts)
    assert fed == [s - tiles * (tile_tokens(model) - budget) for s, tiles in zip(stock, TILES)]


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("method", ["vispruner", "fastv"])
def test_a_padded_multi_image_batch_equals_its_prompts_one_by_one(built, method, side):
    model = built[0]
    inputs = smolvlm_batch(*built, side=side)
    llava.apply_pruning(model, method, 12, **({"layer": 1} if method == "fastv" else {}))
    try:
        with torch.no_grad():
            batch = model(**inputs).logits
            for row, tiles in enumerate(TILES):
                alone = single(inputs, row, tiles)
                logits = model(**alone).logits[0]
                length = logits.shape[0]
                rows = batch[row, -length:] if side == "left" else batch[row, :length]
                torch.testing.assert_close(rows, logits, rtol=1e-4, atol=1e-4)
                if side == "left":  # generation continues a left-padded batch
                    tokens = generate(model, alone)
                    assert torch.equal(generate(model, inputs)[row, -STEPS:], tokens[0, -STEPS:])
    finally:
        llava.remove_pruning(model)


@pytest.mark.parametrize("method", ["vispruner", "fastv"])
def test_removal_restores_identical_outputs(built, method):
    model = built[0]
    inputs = smolvlm_batch(*built)
    with torch.no_grad():
        before = model(**inputs).logits
    llava.apply_pruning(model, method, 8, **({"layer": 1} if method == "fastv" else {}))
    with torch.no_grad():
        model(**inputs)
    llava.remove_pruning(model)
    with torch.no_grad():
        after = model(**inputs).logits
    assert torch.equal(before, after)
    assert not {"forward", "generate", "pruning_config"} & set(model.__dict__)
    assert not {"get_image_features", "forward"} & set(model.model.__dict__)
    assert "forward" not in model.model.text_model.__dict__


def padded_tiles(model, tiles: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """One prompt's `tiles` random tiles, the second with its bottom and right edges padded (its pixel
    mask False there, as a smaller image padded in a batch), then one all-zero padding image."""
    size = model.config.vision_config.image_size
    pixels = torch.randn(1, tiles + 1, 3, size, size, generator=torch.Generator().manual_seed(0))
    pixels[:, tiles] = 0
    mask = torch.ones(1, tiles + 1, size, size, dtype=torch.long)
    mask[:, 1, size * 2 // 3 :] = 0
    mask[:, 1, :, size // 2 :] = 0
    pixels[:, 1] *= mask[:, 1, None]
    mask[:, tiles] = 0
    return pixels, mask


@pytest.mark.parametrize("shape", list(SHAPES))
def test_the_importance_is_the_eager_attention_each_group_receives(shape):
    model = SHAPES[shape](tiles_per_side=TILES_PER_SIDE)[0].float()
    inner = model.model
    pixels, pixel_mask = padded_tiles(model)
    with torch.no_grad():
        tiles = smolvlm_vision.encode(inner, pixels, pixel_mask, {"received_attention"})
        stock = inner.get_image_features(pixels, pixel_mask).pooler_output
        patch = model.config.vision_config.patch_size
        real = pixel_mask[0, :-1].bool()  # the stock model drops the all-zero image
        patch_mask = real.unfold(1, patch, patch).unfold(2, patch, patch).any(-1).any(-1)
        inner.vision_model.set_attn_implementation("eager")
        eager = inner.vision_model(pixels[0, :-1], patch_attention_mask=patch_mask, output_attentions=True)
    weights = eager.attentions[-1]  # [R, H, N, N]
    queries = patch_mask.reshape(len(patch_mask), 1, -1, 1).float()
    received = (weights * queries).sum(2) / queries.sum(2)  # mean over each tile's real patches
    tiles_count, heads, count = received.shape
    side, scale = int(count**0.5), model.config.scale_factor
    grouped = received.reshape(tiles_count, heads, side // scale, scale, side // scale, scale).sum(dim=(3, 5))
    assert not patch_mask[1].all() and patch_mask[0].all()
    torch.testing.assert_close(
        tiles.vision.received_attention, grouped.reshape(tiles_count, heads, -1), rtol=0, atol=1e-5
    )
    assert tiles.per_row == [3]
    projected = inner.connector.modality_projection(tiles.vision.features)
    torch.testing.assert_close(projected.reshape(-1, projected.shape[-1]), stock[0], rtol=0, atol=1e-6)


def test_masked_received_attention_is_the_attention_among_the_real_tokens_alone():
    generator = torch.Generator().manual_seed(0)
    query, key = torch.randn(2, 3, 10, 4, generator=generator), torch.randn(2, 3, 10, 4, generator=generator)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 6:] = False
    masked = mean_received_attention(query, key, 0.5, mask=mask, max_elements=7)  # chunks of one query
    torch.testing.assert_close(masked[0], mean_received_attention(query[:1], key[:1], 0.5)[0])
    torch.testing.assert_close(masked[1, :, :6], mean_received_attention(query[1:, :, :6], key[1:, :, :6], 0.5)[0])
    assert not masked[1, :, 6:].any()


def test_smolvlm_video_frames_each_keep_the_budget(smolvlm):
    model, image_processor, tokenizer = smolvlm
    frames = [random_image(320, 240, seed) for seed in range(4)]
    vision = image_processor([frames], do_image_splitting=False, return_tensors="pt")
    texts = [prompt(smolvlm_video_text(model, len(frames)), "What happens?")]
    inputs = {**tokenizer(texts, return_tensors="pt"), **vision}
    stock = lm_lengths(model, inputs)
    for method, budget in [("vispruner", 10), ("fastv", 40)]:
        llava.apply_pruning(model, method, budget, trace=True, **({"layer": 1} if method == "fastv" else {}))
        try:
            fed = lm_lengths(model, inputs)
            tokens = generate(model, inputs)
            (call, _) = model.pruning_trace
        finally:
            llava.remove_pruning(model)
        if method == "vispruner":  # each frame keeps T
            assert [len(p.kept) for p in call.parts] == [budget] * len(frames)
            assert fed == [stock[0] - len(frames) * (tile_tokens(model) - budget)]
        else:  # each frame one item inside the language model
            assert len(call.parts) == len(frames) and fed == stock
        assert tokens.shape[1] == inputs["input_ids"].shape[1] + STEPS


def greedy_over_embeddings(model, embeds: torch.Tensor, steps: int) -> torch.Tensor:
    """Greedy decoding with the bare language model and an explicit KV cache."""
    lm, head = model.model.text_model, model.lm_head
    cache, tokens = DynamicCache(config=model.config.text_config), []
    with torch.no_grad():
        hidden = lm(inputs_embeds=embeds, past_key_values=cache, use_cache=True).last_hidden_state
        for _ in range(steps):
            tokens.append(head(hidden[:, -1]).argmax(-1))
            hidden = lm(inputs_embeds=lm.embed_tokens(tokens[-1])[:, None], past_key_values=cache).last_hidden_state
    return torch.stack(tokens, dim=1)


def test_pruned_generate_equals_greedy_decoding_of_the_pruned_embeddings(built):
    model = built[0]
    inputs = single(smolvlm_batch(*built), 1, TILES[1])
    budget, image_id = 10, model.config.image_token_id
    pruner = llava.create_pruner("vispruner", budget)
    with torch.no_grad():
        tiles = smolvlm_vision.encode(
            model.model, inputs["pixel_values"], inputs["pixel_attention_mask"], smolvlm_vision.SIGNALS
        )
        kept = pruner.select(tiles.vision)  # [tiles, T] ascending, per tile
        chosen = tiles.vision.features.gather(1, kept[..., None].expand(-1, -1, tiles.vision.features.shape[-1]))
        visual = model.model.connector.modality_projection(chosen)
    ids = inputs["input_ids"][0]
    is_image = ids == image_id
    rank = is_image.cumsum(0) - 1  # the placeholder's number over the prompt: tile rank * n + position
    keep = ~is_image | (rank % tile_tokens(model) < budget)
    ids = ids[keep][None]
    with torch.no_grad():
        embeds = model.model.text_model.embed_tokens(ids)
    embeds[ids == image_id] = visual.reshape(-1, visual.shape[-1])
    expected = greedy_over_embeddings(model, embeds, steps=5)
    llava.apply_pruning(model, "vispruner", budget)
    try:
        generated = generate(model, inputs, steps=5)
    finally:
        llava.remove_pruning(model)
    assert torch.equal(generated[:, : inputs["input_ids"].shape[1]], inputs["input_ids"])
    assert torch.equal(generated[:, inputs["input_ids"].shape[1] :], expected)


def test_methods_without_their_signals_and_bad_pixels_are_refused(smolvlm):
    model, image_processor, tokenizer = smolvlm
    for method in ["tome", "visionzip", "prumerge_plus"]:
        with pytest.raises(ValueError, match="SmolVLM"):
            llava.apply_pruning(model, method, 16)
        assert "forward" not in model.__dict__
    inputs = smolvlm_batch(model, image_processor, tokenizer)
    llava.apply_pruning(model, "vispruner", 16)
    try:
        with pytest.raises(ValueError, match=r"pixel_values must be \[batch, images"):
            model(**{**inputs, "pixel_values": inputs["pixel_values"][0]})
        ids = inputs["input_ids"].clone()
        ids[0, (ids[0] == model.config.image_token_id).nonzero()[-1]] = tokenizer.convert_tokens_to_ids("a")
        with pytest.raises(ValueError, match=f"the {sum(TILES)} tile"):
            model(**{**inputs, "input_ids": ids})
    finally:
        llava.remove_pruning(model)


def test_all_padding_images_leave_smolvlm_one_empty_image_and_idefics3_none():
    pixels = torch.zeros(2, 2, 3, 4, 4)
    assert smolvlm_vision.real_images(pixels, keep_one=True).tolist() == [[True, False], [False, False]]
    assert not smolvlm_vision.real_images(pixels, keep_one=False).any()
    pixels[1, 0, 0, 0, 0] = 1.0
    assert smolvlm_vision.real_images(pixels, keep_one=True).tolist() == [[False, False], [True, False]]
