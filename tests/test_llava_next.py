import copy

import pytest
import torch

import llava
from family_helpers import (
    assert_unpruned_is_stock,
    generate,
    random_image,
    real_rows,
    stock_and_pruned,
    subsequence_positions,
)
from llava.models.anyres import split_total
from llava.models.llava_next import image_grid, pin_paper_resolution
from llava.pruning import METHODS, VisionTokenPruner
from llava.pruning.vispruner import select
from llava.testing import build_tiny_llava_next

PROMPTS = [
    "USER: <image>\nWhat? ASSISTANT:",
    "USER: <image>\nWhat is shown here? ASSISTANT:",
    "USER: <image>\nWhat? ASSISTANT:",
]
SIZES = [(70, 40), (30, 60), (50, 50)]  # (width, height): wide, tall, square
PER_CROP = 16  # 32-px crops of 8-px patches


@pytest.fixture(scope="module")
def next_model():
    return build_tiny_llava_next()


@pytest.fixture(scope="module")
def batch(next_model):
    _, processor = next_model
    images = [random_image(w, h, seed) for seed, (w, h) in enumerate(SIZES)]
    return processor(text=PROMPTS, images=images, return_tensors="pt", padding=True)


def test_native_with_a_budget_above_the_image_is_the_stock_model(next_model, batch):
    model, _ = next_model
    assert_unpruned_is_stock(model, dict(batch), method="vispruner", visual_token_num=10_000)


def test_native_feeds_kept_stock_tokens_split_between_base_and_map_with_every_newline(next_model, batch):
    model, _ = next_model
    budget = 10
    stock, pruned = stock_and_pruned(model, dict(batch), method="vispruner", visual_token_num=budget)
    newline = model.model.image_newline
    image_id = model.config.image_token_id
    for row, (stock_row, pruned_row) in enumerate(zip(real_rows(stock), real_rows(pruned))):
        grid = image_grid(model.config, batch.image_sizes[row], "native")
        height = grid.shape[0]
        ids = batch.input_ids[row][batch.attention_mask[row].bool()]
        first_image = int((ids == image_id).nonzero()[0])
        assert pruned_row.shape[0] == stock_row.shape[0] - (PER_CROP + grid.num_tokens - budget)
        positions = torch.tensor(subsequence_positions(pruned_row, stock_row))
        in_image = positions[
            (positions >= first_image) & (positions < first_image + PER_CROP + grid.num_tokens + height)
        ]
        base_kept = int((in_image < first_image + PER_CROP).sum())
        assert [base_kept, len(in_image) - base_kept - height] == split_total(budget, [PER_CROP, grid.num_tokens])
        is_newline = lambda x: (x - newline).abs().amax(-1) < 1e-6  # noqa: E731
        assert int(is_newline(pruned_row).sum()) == int(is_newline(stock_row).sum()) == height


def paper_oracle(model, pixel_values, image_size, budget):
    """Independent restatement of the paper layout from the stock tower with eager attention."""
    tower = copy.deepcopy(model.model.vision_tower)
    tower.set_attn_implementation("eager")
    with torch.no_grad():
        out = tower(pixel_values[:5], output_hidden_states=True, output_attentions=True)
        features = out.hidden_states[-2][:, 1:]
        kept = select(features, out.attentions[-2][:, :, 0, 1:], budget, 0.5)
        tokens = model.model.multi_modal_projector(torch.stack([f[k] for f, k in zip(features, kept)]))
    side = 4
    keys = [
        ((t // 2) * side + k // side) * (2 * side) + (t % 2) * side + k % side
        for t in range(4)
        for k in kept[1 + t].tolist()
    ]
    order = sorted(range(len(keys)), key=keys.__getitem__)
    return torch.cat([tokens[0], tokens[1:].flatten(0, 1)[order]])


def test_paper_layout_prunes_five_crops_to_t_each_base_first_then_the_tile_map(next_model):
    model, processor = next_model
    pinned = pin_paper_resolution(copy.deepcopy(processor))
    images = [random_image(w, h, 10 + seed) for seed, (w, h) in enumerate([(120, 20), (50, 50)])]
    inputs = pinned(text=PROMPTS[:2], images=images, return_tensors="pt", padding=True)
    budget = 4
    stock, pruned = stock_and_pruned(model, dict(inputs), method="vispruner", visual_token_num=budget, layout="paper")
    written = (inputs.input_ids == model.config.image_token_id).sum(-1)
    assert [r.shape[0] for r in real_rows(pruned)] == [
        s.shape[0] - int(w) + 5 * budget for s, w in zip(real_rows(stock), written)
    ]
    llava.apply_pruning(model, "vispruner", budget, layout="paper")
    try:
        with torch.no_grad():
            features = model.model.get_image_features(inputs.pixel_values, inputs.image_sizes).pooler_output
    finally:
        llava.remove_pruning(model)
    for index in range(2):
        expected = paper_oracle(model, inputs.pixel_values[index], inputs.image_sizes[index], budget)
        assert torch.allclose(features[index], expected, atol=1e-5)
    assert model.config.image_grid_pinpoints != pinned.image_processor.image_grid_pinpoints  # the model is untouched


def test_paper_layout_rejects_an_unpinned_processor(next_model):
    model, processor = next_model
    wide, square = random_image(120, 20, 1), random_image(50, 50, 2)
    llava.apply_pruning(model, "vispruner", 4, layout="paper")
    try:
        for images in ([wide], [square, wide]):  # too few crops; all-zero padding crops
            inputs = processor(text=PROMPTS[: len(images)], images=images, return_tensors="pt", padding=True)
            with pytest.raises(ValueError, match="pin_paper_resolution"):
                generate(model, dict(inputs), steps=1)
    finally:
        llava.remove_pruning(model)


def test_image_alone_and_in_a_padded_batch_agree(next_model, batch):
    model, processor = next_model
    single = processor(text=PROMPTS[:1], images=[random_image(*SIZES[0], 0)], return_tensors="pt")
    llava.apply_pruning(model, "vispruner", 6)
    try:
        alone = generate(model, dict(single))
        together = generate(model, dict(batch))
        with torch.no_grad():
            out = model(**batch, labels=batch.input_ids)
            beams = model.generate(**batch, max_new_tokens=2, num_beams=2, num_return_sequences=2, do_sample=False)
    finally:
        llava.remove_pruning(model)
    assert torch.equal(alone[0, -5:], together[0, -5:])
    assert torch.isfinite(out.loss)
    assert torch.equal(beams[:, : batch.input_ids.shape[1]], batch.input_ids.repeat_interleave(2, dim=0))


class MeanMerge(VisionTokenPruner):
    """A merging method (reduce only), for the layout checks."""

    name = "test_mean_merge"
    requires = frozenset()

    def reduce(self, vision):
        return vision.features.unflatten(1, (self.visual_token_num, -1)).mean(2)


def test_layouts_need_what_they_place(next_model, monkeypatch):
    model, _ = next_model
    monkeypatch.setitem(METHODS, MeanMerge.name, MeanMerge)
    with pytest.raises(ValueError, match="layout='native' places newline"):
        llava.apply_pruning(model, MeanMerge.name, 4)
    with pytest.raises(ValueError, match="layout must be one of 'native', 'paper'"):
        llava.apply_pruning(model, "vispruner", 4, layout="spatial")
    with pytest.raises(ValueError, match="LlavaNextForConditionalGeneration accepts layout"):
        llava.apply_pruning(model, "vispruner", 4, layuot="paper")
    assert "forward" not in model.__dict__ and "get_image_features" not in model.model.__dict__
    llava.apply_pruning(model, MeanMerge.name, 4, layout="paper")  # paper needs no positions
    assert model.pruning_config.host_options == {"layout": "paper"}
    llava.remove_pruning(model)
