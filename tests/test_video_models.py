import copy

import pytest
import torch
import torch.nn.functional as F

import llava
from family_helpers import assert_unpruned_is_stock, random_image, real_rows, stock_and_pruned, subsequence_positions
from llava.testing import build_tiny_llava_next_video, build_tiny_video_llava
from llava.video import frames_to_pixel_values

FRAMES = 8
PATCHES = 16  # 32-px frames, 8-px patches


def video_batch(image_processor, tokenizer, per_frame_tokens, num_frames, with_image=False):
    """Two left-padded prompts with one video each (the second also with an image when asked)."""
    videos = torch.cat(
        [
            frames_to_pixel_values([random_image(40, 36, 100 * v + f) for f in range(num_frames)], image_processor)
            for v in range(2)
        ]
    )
    run = "<video>" * (num_frames * per_frame_tokens)
    second = ("<image>" * PATCHES + " and " if with_image else "") + run
    tokenizer.padding_side = "left"
    inputs = dict(
        tokenizer(
            [f"USER: {run}\nWhat? ASSISTANT:", f"USER: {second}\nWhat is it? ASSISTANT:"],
            return_tensors="pt",
            padding=True,
        )
    )
    inputs["pixel_values_videos"] = videos
    if with_image:
        inputs["pixel_values"] = image_processor([random_image(40, 40, 7)], return_tensors="pt").pixel_values
    return inputs


def video_positions(inputs, tokenizer, row, stock_row, pruned_row):
    """Positions (relative to the video run) of the stock video tokens the pruned model kept."""
    ids = inputs["input_ids"][row][inputs["attention_mask"][row].bool()]
    run = (ids == tokenizer.convert_tokens_to_ids("<video>")).nonzero()[:, 0]
    positions = torch.tensor(subsequence_positions(pruned_row, stock_row))
    inside = positions[(positions >= run[0]) & (positions <= run[-1])]
    return inside - run[0]


def eager_cls_attention(tower, frames):
    tower = copy.deepcopy(tower)
    tower.set_attn_implementation("eager")
    with torch.no_grad():
        return tower(frames, output_attentions=True).attentions[-2][:, :, 0, 1:].mean(1)  # [F, N]


@pytest.fixture(scope="module")
def video_llava():
    return build_tiny_video_llava()


def test_video_llava_unpruned_is_stock(video_llava):
    model, image_processor, tokenizer = video_llava
    inputs = video_batch(image_processor, tokenizer, PATCHES + 1, FRAMES, with_image=True)
    assert_unpruned_is_stock(model, inputs, method="vispruner", visual_token_num=PATCHES)


def test_video_llava_keeps_every_frames_cls_and_its_top_tokens(video_llava):
    model, image_processor, tokenizer = video_llava
    inputs = video_batch(image_processor, tokenizer, PATCHES + 1, FRAMES, with_image=True)
    budget = 3
    stock, pruned = stock_and_pruned(model, inputs, method="vispruner", visual_token_num=budget, important_ratio=1.0)
    for row, (stock_row, pruned_row) in enumerate(zip(real_rows(stock), real_rows(pruned))):
        dropped = FRAMES * (PATCHES - budget) + (PATCHES - budget if row == 1 else 0)
        assert pruned_row.shape[0] == stock_row.shape[0] - dropped
        kept = video_positions(inputs, tokenizer, row, stock_row, pruned_row)
        frame, offset = kept // (PATCHES + 1), kept % (PATCHES + 1)
        attention = eager_cls_attention(model.model.video_tower, inputs["pixel_values_videos"][row])
        for f in range(FRAMES):
            assert offset[frame == f].tolist() == [0] + sorted((attention[f].topk(budget).indices + 1).tolist())


def test_video_llava_total_budget_spans_frames(video_llava):
    model, image_processor, tokenizer = video_llava
    inputs = video_batch(image_processor, tokenizer, PATCHES + 1, FRAMES)
    total = 12
    stock, pruned = stock_and_pruned(model, inputs, method="vispruner", visual_token_num=3, video_token_num=total)
    for row, (stock_row, pruned_row) in enumerate(zip(real_rows(stock), real_rows(pruned))):
        assert pruned_row.shape[0] == stock_row.shape[0] - (FRAMES * PATCHES - total)
        kept = video_positions(inputs, tokenizer, row, stock_row, pruned_row)
        assert (kept % (PATCHES + 1) == 0).sum() == FRAMES  # every [CLS]
        assert len(kept) == total + FRAMES


@pytest.fixture(scope="module")
def next_video():
    return build_tiny_llava_next_video()


POOLED = 4  # 4x4 patches pooled 2x2


def test_llava_next_video_unpruned_is_stock(next_video):
    model, image_processor, tokenizer = next_video
    inputs = video_batch(image_processor, tokenizer, POOLED, 4)
    assert_unpruned_is_stock(model, inputs, method="vispruner", visual_token_num=POOLED)


def test_llava_next_video_prunes_pooled_tokens_by_pooled_attention(next_video):
    model, image_processor, tokenizer = next_video
    inputs = video_batch(image_processor, tokenizer, POOLED, 4)
    budget = 2
    stock, pruned = stock_and_pruned(model, inputs, method="vispruner", visual_token_num=budget, important_ratio=1.0)
    for row, (stock_row, pruned_row) in enumerate(zip(real_rows(stock), real_rows(pruned))):
        assert pruned_row.shape[0] == stock_row.shape[0] - 4 * (POOLED - budget)
        kept = video_positions(inputs, tokenizer, row, stock_row, pruned_row)
        attention = eager_cls_attention(model.model.vision_tower, inputs["pixel_values_videos"][row])
        pooled = F.avg_pool2d(attention.view(4, 1, 4, 4), 2).flatten(1)  # [frames, 4]
        for f in range(4):
            assert (kept[kept // POOLED == f] % POOLED).tolist() == sorted(pooled[f].topk(budget).indices.tolist())


def test_llava_next_video_total_budget_and_options(next_video):
    model, image_processor, tokenizer = next_video
    inputs = video_batch(image_processor, tokenizer, POOLED, 4)
    stock, pruned = stock_and_pruned(model, inputs, method="vispruner", visual_token_num=2, video_token_num=5)
    assert [p.shape[0] for p in real_rows(pruned)] == [s.shape[0] - (4 * POOLED - 5) for s in real_rows(stock)]
    with pytest.raises(ValueError, match="video_token_num must be a positive integer"):
        llava.apply_pruning(model, "vispruner", 2, video_token_num=0)
    llava.apply_pruning(model, "vispruner", 2, video_token_num=5, layout="paper")
    assert model.pruning_config.host_options == {"video_token_num": 5, "layout": "paper"}
    llava.remove_pruning(model)


def test_llava_next_video_images_and_videos_in_one_batch(next_video):
    model, frame_processor, tokenizer = next_video
    from transformers import LlavaNextImageProcessorPil, LlavaNextProcessor

    from llava.testing import CLIP_MEAN, CLIP_STD

    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": 32},
        crop_size={"height": 32, "width": 32},
        image_grid_pinpoints=model.config.image_grid_pinpoints,
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )
    run = "<video>" * (4 * POOLED)
    inputs = dict(
        processor(
            text=[f"USER: <image> then {run}\nWhat? ASSISTANT:", f"USER: {run}\nWhat is it? ASSISTANT:"],
            images=[random_image(70, 40, 5)],
            return_tensors="pt",
            padding=True,
        )
    )
    inputs["pixel_values_videos"] = video_batch(frame_processor, tokenizer, POOLED, 4)["pixel_values_videos"]
    assert_unpruned_is_stock(model, inputs, method="vispruner", visual_token_num=10_000)
    stock, pruned = stock_and_pruned(model, inputs, method="vispruner", visual_token_num=2)
    image_tokens = int((inputs["input_ids"][0] == model.config.image_token_id).sum())
    newlines = image_tokens - 16 - 8 * 4  # base crop, then the 4-row x 8-column unpadded map of the 70 x 40 image
    expected = [image_tokens - (2 + newlines) + 4 * (POOLED - 2), 4 * (POOLED - 2)]
    assert [s.shape[0] - p.shape[0] for s, p in zip(real_rows(stock), real_rows(pruned))] == expected
    for s, p in zip(real_rows(stock), real_rows(pruned)):
        subsequence_positions(p, s)
