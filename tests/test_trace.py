"""The pruning trace (`apply_pruning(..., trace=True)`): it lists exactly the tokens the model used.

The reference for "used" is independent of the trace: the language model's input embeddings (or the
hidden states entering a layer) of the pruned model are matched against the stock model's, which
tells which stock tokens survived; the trace must name the same ones.
"""

import copy

import pytest
import torch

import llava
from family_helpers import (
    generate,
    language_model_inputs,
    onevision_processor,
    random_image,
    real_rows,
    subsequence_positions,
)
from llava.models import clip
from llava.models.anyres import split_total
from llava.models.llava_next import image_grid, pin_paper_resolution
from llava.models.llava_onevision import image_grids
from llava.pruning import vispruner
from llava.pruning.vispruner import VisPruner
from llava.testing import (
    build_tiny_llava,
    build_tiny_llava_next,
    build_tiny_llava_next_video,
    build_tiny_llava_onevision,
    build_tiny_qwen2_vl,
    build_tiny_video_llava,
)
from llava.trace import Tracer
from llava.video import frames_to_pixel_values
from support import LONG_PROMPT, PROMPT

GRID = (8, 8)  # 112-px images, 14-px patches
T = 12
IN_LLM = {
    "fastv": {"layer": 2},
    "pdrop": {"layers": (1, 3), "ratio": 0.5},
    "sparsevlm": {"layers": (0, 2), "schedule": (12, 5)},
}
PER_CROP = 16  # the other families' tiny towers: 32-px crops, 8-px patches
FRAMES = 8


# --- helpers -------------------------------------------------------------------------------


def traced(model, inputs, run=language_model_inputs, **pruning):
    """`run(model, **inputs)` under traced pruning, and the trace it left."""
    llava.apply_pruning(model, trace=True, **pruning)
    try:
        return run(model, **inputs), model.pruning_trace
    finally:
        llava.remove_pruning(model)


def runs_of(flags: torch.Tensor) -> list[tuple[int, int]]:
    """(start, length) of each run of True in a 1-D mask."""
    edges = torch.diff(torch.cat([flags.new_zeros(1), flags, flags.new_zeros(1)]).int())
    starts, ends = (edges == 1).nonzero()[:, 0], (edges == -1).nonzero()[:, 0]
    return [(int(s), int(e - s)) for s, e in zip(starts, ends)]


def kept_in_runs(inputs: dict, token_id: int, stock: dict, pruned: dict) -> list[list[int]]:
    """For every placeholder run of `token_id` (row by row): the run positions whose stock language-model
    input the pruned model's input still holds."""
    kept = []
    for row, (stock_row, pruned_row) in enumerate(zip(real_rows(stock), real_rows(pruned))):
        ids = inputs["input_ids"][row][inputs["attention_mask"][row].bool()]
        positions = torch.tensor(subsequence_positions(pruned_row, stock_row))
        for start, length in runs_of(ids == token_id):
            kept.append([int(p) - start for p in positions if start <= p < start + length])
    return kept


def native_parts(positions: list[int], map_width: int) -> tuple[list[int], list[int]]:
    """Run positions of a native anyres image -> (base crop indices, tile-map indices), newlines dropped."""
    base = [p for p in positions if p < PER_CROP]
    rows_and_cols = [divmod(p - PER_CROP, map_width + 1) for p in positions if p >= PER_CROP]
    return base, [r * map_width + c for r, c in rows_and_cols if c < map_width]


def frame_parts(positions: list[int], per_frame: int, lead: int) -> list[list[int]]:
    """Run positions of a video -> per frame, the kept patch indices (leading tokens dropped)."""
    frames = [[] for _ in range(FRAMES)]
    for p in positions:
        frame, offset = divmod(p, per_frame + lead)
        if offset >= lead:
            frames[frame].append(offset - lead)
    return frames


def as_lists(part):
    return part.kept.tolist(), None if part.important is None else part.important.tolist()


# --- LLaVA-1.5 -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_llava(image_size=112, vision_layers=4, text_layers=4, seed=1)


@pytest.fixture(scope="module")
def batch(tiny, images):
    _, processor = tiny
    return dict(processor(text=[PROMPT, LONG_PROMPT, PROMPT], images=images, return_tensors="pt", padding=True))


@pytest.mark.parametrize("method", ["vispruner", "random", "divprune"])
def test_llava_trace_lists_the_tokens_the_language_model_received(tiny, batch, method):
    model, _ = tiny
    stock = language_model_inputs(model, **batch)
    pruned, trace = traced(model, batch, method=method, visual_token_num=T)
    (call,) = trace
    assert call.method == method
    assert [(p.source, p.item, p.part, p.index, p.grid, p.layer) for p in call.parts] == [
        ("image", item, "image", 0, GRID, None) for item in range(3)
    ]
    received = kept_in_runs(batch, model.config.image_token_id, stock, pruned)
    assert [p.kept.tolist() for p in call.parts] == received
    assert all(len(kept) == T for kept in received)
    if method != "vispruner":
        assert all(p.important is None and p.diverse is None for p in call.parts)


def test_vispruner_trace_splits_select_into_the_most_attended_and_the_diverse(tiny, batch):
    model, _ = tiny
    ratio = 0.25
    _, trace = traced(model, batch, method="vispruner", visual_token_num=T, important_ratio=ratio)
    with torch.no_grad():
        vision = clip.encode(model.model.vision_tower, batch["pixel_values"], -2, signals={"cls_attention"})
    kept = vispruner.select(vision.features, vision.cls_attention, T, ratio)
    most_attended = vispruner.attention_order(vision.cls_attention)[:, : int(T * ratio)]
    for part, row_kept, row_top in zip(trace[0].parts, kept, most_attended):
        assert part.kept.tolist() == row_kept.tolist()
        assert part.important.tolist() == sorted(row_top.tolist())
        assert len(part.diverse) == T - int(T * ratio)
        assert sorted(part.important.tolist() + part.diverse.tolist()) == part.kept.tolist()


@pytest.mark.parametrize("method", ["vispruner", "random", "divprune", "tome", *IN_LLM])
def test_tracing_changes_no_output(tiny, batch, method):
    model, _ = tiny
    budget = 16 if method == "tome" else T  # ToMe's merge schedule cannot reach 12 in the tiny tower

    def outputs(trace):
        llava.apply_pruning(model, method, budget, trace=trace, **IN_LLM.get(method, {}))
        try:
            with torch.no_grad():
                return model(**batch).logits, generate(model, batch, steps=3)
        finally:
            llava.remove_pruning(model)

    (logits, tokens), (traced_logits, traced_tokens) = outputs(False), outputs(True)
    assert torch.equal(traced_logits, logits) and torch.equal(traced_tokens, tokens)


def test_trace_off_builds_no_tracer_and_asks_for_no_split(tiny, batch, monkeypatch):
    model, _ = tiny

    def refuse(*args, **kwargs):
        raise AssertionError("tracing work without trace=True")

    monkeypatch.setattr(Tracer, "__init__", refuse)
    monkeypatch.setattr(VisPruner, "select_split", refuse)
    for method in ("vispruner", "fastv"):
        llava.apply_pruning(model, method, T, **IN_LLM.get(method, {}))
        try:
            generate(model, batch, steps=2)
            assert not hasattr(model, "pruning_trace")
        finally:
            llava.remove_pruning(model)


def test_one_record_per_pruning_call_fresh_on_apply_gone_on_remove(tiny, batch):
    model, processor = tiny
    llava.apply_pruning(model, "vispruner", T, trace=True)
    trace = model.pruning_trace
    assert trace == []
    generate(model, batch, steps=3)
    assert len(trace) == 1  # the prefill pruned; decoding steps prune nothing
    with torch.no_grad():
        model(**batch)
        model(**dict(processor.tokenizer(["no image here"], return_tensors="pt")))  # text only: no record
        model.model.get_image_features(batch["pixel_values"][:2])  # called directly: a record of its own
    assert [len(call.parts) for call in trace] == [3, 3, 2]
    assert [p.kept.tolist() for p in trace[0].parts] == [p.kept.tolist() for p in trace[1].parts]
    llava.apply_pruning(model, "random", T, trace=True)
    assert model.pruning_trace == [] and len(trace) == 3  # a fresh list; the old records stay with their holder
    llava.remove_pruning(model)
    assert not hasattr(model, "pruning_trace")
    assert not {"forward", "generate"} & set(model.__dict__)
    assert not {"forward", "get_image_features"} & set(model.model.__dict__)


def layer_inputs(model, inputs, layers):
    """Prefill hidden states entering each of `layers` and leaving the layer before each."""
    seen, handles = {}, []
    blocks = model.model.language_model.layers

    def leaving(layer):
        return lambda _m, _a, out: seen.setdefault(("out", layer), out[0] if isinstance(out, tuple) else out)

    def entering(layer):
        return lambda _m, args: seen.setdefault(("in", layer), args[0])  # setdefault: the prefill, not decoding

    for layer in layers:
        handles.append(blocks[layer - 1].register_forward_hook(leaving(layer - 1)))
        handles.append(blocks[layer].register_forward_pre_hook(entering(layer)))
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        for handle in handles:
            handle.remove()
    return seen


@pytest.mark.parametrize("method", ["fastv", "pdrop"])
def test_in_llm_trace_lists_the_visual_tokens_the_later_layers_see(tiny, images, method):
    model, processor = tiny
    inputs = dict(processor(text=[PROMPT, PROMPT], images=images[:2], return_tensors="pt"))  # equal lengths: no padding
    layers = llava.create_pruner(method, T, **IN_LLM[method]).stages()
    seen, trace = traced(
        model,
        inputs,
        run=lambda m, **i: layer_inputs(m, i, layers),
        method=method,
        visual_token_num=T,
        **IN_LLM[method],
    )
    (call,) = trace
    assert [(p.item, p.layer) for p in call.parts] == [(item, layer) for layer in layers for item in range(2)]
    run_start = int((inputs["input_ids"][0] == model.config.image_token_id).nonzero()[0])
    origin = torch.arange(inputs["input_ids"].shape[1]).expand(2, -1)  # prefill position of each current token
    for layer in layers:
        now = []
        for row in range(2):
            positions = subsequence_positions(seen[("in", layer)][row], seen[("out", layer - 1)][row])
            now.append(origin[row, positions])
        origin = torch.stack(now)
        for row, part in enumerate(call.matching(layer=layer)):
            visual = origin[row][(origin[row] >= run_start) & (origin[row] < run_start + GRID[0] * GRID[1])]
            assert part.kept.tolist() == (visual - run_start).tolist()
            assert part.important is None


def test_sparsevlm_trace_lists_the_kept_tokens_of_each_pruning_layer(tiny, batch):
    model, _ = tiny
    _, trace = traced(model, batch, method="sparsevlm", visual_token_num=T, **IN_LLM["sparsevlm"])
    (call,) = trace
    first, second = IN_LLM["sparsevlm"]["schedule"]
    assert [(p.item, p.layer) for p in call.parts] == [(item, layer) for layer in (1, 3) for item in range(3)]
    for after_first, after_second in zip(call.matching(layer=1), call.matching(layer=3)):
        assert len(after_first.kept) == first
        # the second stage also ranks the tokens merged from the first one's drops, which are not patches
        assert 0 < len(after_second.kept) <= second
        assert set(after_second.kept.tolist()) <= set(after_first.kept.tolist())


# --- LLaVA-NeXT ----------------------------------------------------------------------------

NEXT_PROMPTS = ["USER: <image>\nWhat? ASSISTANT:", "USER: <image>\nWhat is shown here? ASSISTANT:"]
NEXT_SIZES = [(70, 40), (30, 60)]


@pytest.fixture(scope="module")
def next_model():
    return build_tiny_llava_next()


@pytest.mark.parametrize("method", ["vispruner", "random"])
def test_llava_next_native_trace_lists_base_and_tile_map_tokens_received(next_model, method):
    model, processor = next_model
    images = [random_image(w, h, seed) for seed, (w, h) in enumerate(NEXT_SIZES)]
    inputs = dict(processor(text=NEXT_PROMPTS, images=images, return_tensors="pt", padding=True))
    budget = 10
    stock = language_model_inputs(model, **inputs)
    pruned, trace = traced(model, inputs, method=method, visual_token_num=budget)
    (call,) = trace
    received = kept_in_runs(inputs, model.config.image_token_id, stock, pruned)
    for item, (size, positions) in enumerate(zip(inputs["image_sizes"], received)):
        grid = image_grid(model.config, size, "native")
        base, tiles = call.matching(item=item)
        assert (base.part, base.grid, tiles.part, tiles.grid) == ("base", (4, 4), "tiles", grid.shape)
        assert (base.kept.tolist(), tiles.kept.tolist()) == native_parts(positions, grid.shape[1])
        assert [len(base.kept), len(tiles.kept)] == split_total(budget, [PER_CROP, grid.num_tokens])
        if method == "vispruner":
            assert [len(base.important), len(tiles.important)] == [len(base.kept) // 2, len(tiles.kept) // 2]


def test_llava_next_paper_trace_lists_every_crops_own_selection(next_model):
    model, processor = next_model
    pinned = pin_paper_resolution(copy.deepcopy(processor))
    inputs = dict(
        pinned(
            text=NEXT_PROMPTS,
            images=[random_image(50, 50, 3), random_image(40, 60, 4)],
            return_tensors="pt",
            padding=True,
        )
    )
    budget = 6
    generated, trace = traced(
        model,
        inputs,
        run=lambda m, **i: generate(m, i, steps=2),
        method="vispruner",
        visual_token_num=budget,
        layout="paper",
    )
    llava.apply_pruning(model, "vispruner", budget, layout="paper")
    try:
        assert torch.equal(generated, generate(model, inputs, steps=2))  # tracing changed nothing
    finally:
        llava.remove_pruning(model)
    (call,) = trace
    crops = inputs["pixel_values"].flatten(0, 1)
    with torch.no_grad():
        vision = clip.encode(model.model.vision_tower, crops, -2, signals={"cls_attention"})
    kept = vispruner.select(vision.features, vision.cls_attention, budget, 0.5)
    important = vispruner.attention_order(vision.cls_attention)[:, : budget // 2].sort(dim=-1).values
    assert [(p.item, p.part, p.index) for p in call.parts] == [
        (item, part, index) for item in range(2) for part, index in [("base", 0)] + [("tile", t) for t in range(4)]
    ]
    for part, row_kept, row_important in zip(call.parts, kept, important):
        assert as_lists(part) == (row_kept.tolist(), row_important.tolist())


# --- video families ------------------------------------------------------------------------


def video_inputs(image_processor, tokenizer, placeholders: int) -> dict:
    """Two equal prompts (no padding), one video of FRAMES frames each."""
    frames = [[random_image(40, 36, 10 * video + frame) for frame in range(FRAMES)] for video in range(2)]
    videos = torch.cat([frames_to_pixel_values(video, image_processor) for video in frames])
    text = f"USER: {'<video>' * placeholders}\nWhat? ASSISTANT:"
    return {**tokenizer([text, text], return_tensors="pt"), "pixel_values_videos": videos}


@pytest.mark.parametrize("family, per_frame, lead", [("video_llava", 16, 1), ("llava_next_video", 4, 0)])
@pytest.mark.parametrize("video_token_num", [None, 10])
def test_video_trace_lists_each_frames_tokens_received(family, per_frame, lead, video_token_num):
    builder = build_tiny_video_llava if family == "video_llava" else build_tiny_llava_next_video
    model, image_processor, tokenizer = builder()
    inputs = video_inputs(image_processor, tokenizer, FRAMES * (per_frame + lead))
    stock = language_model_inputs(model, **inputs)
    budget = 3
    pruned, trace = traced(model, inputs, method="vispruner", visual_token_num=budget, video_token_num=video_token_num)
    (call,) = trace
    side = int(per_frame**0.5)
    for item, positions in enumerate(kept_in_runs(inputs, model.config.video_token_id, stock, pruned)):
        frames = call.matching(source="video", item=item)
        assert [(f.part, f.index, f.grid) for f in frames] == [("frame", i, (side, side)) for i in range(FRAMES)]
        assert [f.kept.tolist() for f in frames] == frame_parts(positions, per_frame, lead)
        kept = sum(len(f.kept) for f in frames)
        assert kept == (FRAMES * budget if video_token_num is None else video_token_num)
        important = FRAMES * int(budget * 0.5) if video_token_num is None else video_token_num // 2
        assert sum(len(f.important) for f in frames) == important


# --- families without [CLS]: LLaVA-OneVision, Qwen2-VL -------------------------------------


def test_onevision_trace_lists_base_and_tile_map_tokens_received():
    model, image_processor, tokenizer = build_tiny_llava_onevision()
    tokenizer.padding_side = "left"
    processor = onevision_processor(image_processor, tokenizer, num_image_tokens=PER_CROP)
    inputs = dict(
        processor(
            text=NEXT_PROMPTS,
            images=[random_image(100, 40, 1), random_image(60, 90, 2)],
            return_tensors="pt",
            padding=True,
        )
    )
    budget = 9
    stock = language_model_inputs(model, **inputs)
    pruned, trace = traced(model, inputs, method="vispruner", visual_token_num=budget)
    (call,) = trace
    grids = image_grids(model.config, inputs["image_sizes"])
    received = kept_in_runs(inputs, model.config.image_token_id, stock, pruned)
    for item, (grid, positions) in enumerate(zip(grids, received)):
        base, tiles = call.matching(item=item)
        assert (base.part, tiles.part, tiles.grid) == ("base", "tiles", grid.shape)
        assert (base.kept.tolist(), tiles.kept.tolist()) == native_parts(positions, grid.shape[1])


def qwen_inputs(model, image_processor, tokenizer) -> dict:
    """A left-padded batch of two prompts with one image each."""
    vision = image_processor([random_image(120, 90, 20), random_image(60, 100, 21)], return_tensors="pt")
    counts = (vision.image_grid_thw.prod(-1) // 4).tolist()
    tokenizer.padding_side = "left"
    texts = [f"USER: <|vision_start|>{'<|image_pad|>' * n}<|vision_end|>What? ASSISTANT:" for n in counts]
    inputs = dict(tokenizer(texts, return_tensors="pt", padding=True))
    inputs["mm_token_type_ids"] = (inputs["input_ids"] == model.config.image_token_id).int()
    return {**inputs, "pixel_values": vision.pixel_values, "image_grid_thw": vision.image_grid_thw}


def test_qwen2_vl_trace_lists_the_merged_tokens_received():
    model, image_processor, tokenizer = build_tiny_qwen2_vl("2")
    inputs = qwen_inputs(model, image_processor, tokenizer)
    budget = 5
    stock = language_model_inputs(model, **inputs)
    pruned, trace = traced(model, inputs, method="vispruner", visual_token_num=budget)
    (call,) = trace
    received = kept_in_runs(inputs, model.config.image_token_id, stock, pruned)
    grids = [(int(t * h // 2), int(w // 2)) for t, h, w in inputs["image_grid_thw"].tolist()]
    assert [(p.part, p.item, p.grid) for p in call.parts] == [("image", item, grid) for item, grid in enumerate(grids)]
    assert [p.kept.tolist() for p in call.parts] == received
    assert all(len(kept) == budget for kept in received)
