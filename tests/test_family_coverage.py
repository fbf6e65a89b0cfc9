"""Issue 18's coverage beyond the support matrix: in-LLM methods on the other families (item numbering,
budgets per item, unpruned equality), LLaVA-NeXT's paper layout under an in-LLM method, Video-LLaVA's
[CLS] accounting (`frame_cls`) and the even split of a video's total (`video_split="even"`)."""

import copy

import pytest
import torch

import llava
from family_helpers import pruned, random_image, real_rows, stock_and_pruned
from llava.models.frames import frame_budgets
from llava.models.inside import Placeholders, item_index
from llava.models.llava_next import pin_paper_resolution
from llava.testing import build_tiny_llava_next, build_tiny_video_llava
from test_video_models import FRAMES, PATCHES, video_batch

IMG, VID = 9, 8


def test_items_are_runs_of_one_kind_split_by_known_lengths():
    ids = torch.tensor([[1, IMG, IMG, IMG, IMG, 2, VID, VID, VID, IMG, IMG, 3]])
    index = item_index(ids, Placeholders({IMG: "image", VID: "video"}, {IMG: 2}))
    assert index.tolist() == [[-1, 0, 0, 1, 1, -1, 2, 2, 2, 3, 3, -1]]
    assert item_index(ids, Placeholders({IMG: "image"})).tolist() == [[-1, 0, 0, 0, 0, -1, -1, -1, -1, 1, 1, -1]]


def test_an_even_split_gives_the_first_frames_the_remainder():
    assert frame_budgets(455, 8, 256) == [57] * 7 + [56]
    assert frame_budgets(227, 8, 256) == [29] * 3 + [28] * 5
    assert sum(frame_budgets(114, 8, 256)) == 114 and frame_budgets(10_000, 8, 256) == [256] * 8


@pytest.fixture(scope="module")
def video_llava():
    return build_tiny_video_llava(text_layers=4)


def video_tokens_fed(model, inputs, row, **pruning):
    """Video tokens the language model receives for `row` (pruned before it)."""
    _, pruned = stock_and_pruned(model, inputs, **pruning)
    return real_rows(pruned)[row].shape[0]


def test_frame_cls_false_feeds_the_papers_count_and_an_even_total(video_llava):
    model, image_processor, tokenizer = video_llava
    inputs = video_batch(image_processor, tokenizer, PATCHES + 1, FRAMES)
    stock, _ = stock_and_pruned(model, inputs, method="vispruner", visual_token_num=PATCHES)
    text = real_rows(stock)[0].shape[0] - FRAMES * (PATCHES + 1)
    total = 2 * FRAMES + 3  # 3 frames get one more
    fed = video_tokens_fed(model, inputs, 0, method="vispruner", visual_token_num=4, video_token_num=total,
                           video_split="even", frame_cls=False)  # fmt: skip
    assert fed == text + total
    with pruned(model, "vispruner", 4, video_token_num=total, video_split="even", frame_cls=False, trace=True):
        with torch.no_grad():
            model(**inputs)
        frames = model.pruning_trace[-1].matching(source="video", item=0)
    assert [len(frame.kept) for frame in sorted(frames, key=lambda f: f.index)] == frame_budgets(total, FRAMES, PATCHES)
    kept_with_cls = video_tokens_fed(model, inputs, 0, method="vispruner", visual_token_num=4, frame_cls=True)
    assert kept_with_cls == text + FRAMES * (4 + 1)


def test_fastv_on_video_llava_ranks_each_video_as_one_item(video_llava):
    model, image_processor, tokenizer = video_llava
    inputs = video_batch(image_processor, tokenizer, PATCHES + 1, FRAMES, with_image=True)
    for frame_cls, per_frame in ((True, PATCHES + 1), (False, PATCHES)):
        with pruned(model, "fastv", 10, layer=1, frame_cls=frame_cls, trace=True):
            with torch.no_grad():
                logits = model(**inputs).logits
            parts = model.pruning_trace[-1].parts
        videos = [p for p in parts if p.source == "video"]
        assert [p.grid for p in videos] == [(1, FRAMES * per_frame)] * 2 and all(len(p.kept) <= 20 for p in videos)
        assert [p.grid for p in parts if p.source == "image"] == [(4, 4)]  # the second prompt's image
        assert torch.isfinite(logits).all()


def test_in_llm_methods_with_room_for_every_token_equal_the_unpruned_model(video_llava):
    model, image_processor, tokenizer = video_llava
    inputs = video_batch(image_processor, tokenizer, PATCHES + 1, FRAMES, with_image=True)
    with torch.no_grad():
        stock = model(**inputs).logits
    with pruned(model, "fastv", 10_000, layer=1):
        with torch.no_grad():
            same = model(**inputs).logits
    assert torch.allclose(same, stock, atol=1e-5)


def test_fastv_on_llava_next_paper_layout_sees_the_five_crops_without_newlines():
    model, stock_processor = build_tiny_llava_next(text_layers=4)
    processor = pin_paper_resolution(copy.deepcopy(stock_processor))
    prompt = dict(text=["USER: <image>\nWhat? ASSISTANT:"], images=[random_image(50, 30, 1)], return_tensors="pt")
    inputs = dict(processor(**prompt))
    per_crop = PATCHES
    with pruned(model, "fastv", 7, layer=1, layout="paper", trace=True):
        with torch.no_grad():
            model(**inputs)
        (image,) = model.pruning_trace[-1].parts
    assert image.grid == (1, 5 * per_crop) and len(image.kept) == 7 and image.layer == 1
    inputs = dict(stock_processor(**prompt))
    llava.apply_pruning(model, "fastv", 7, layer=1, trace=True)  # native: the stock anyres layout with newlines
    try:
        with torch.no_grad():
            model(**inputs)
        (image,) = model.pruning_trace[-1].parts
    finally:
        llava.remove_pruning(model)
    assert image.grid[1] == int((inputs["input_ids"] == model.config.image_token_id).sum())


def test_a_method_asking_for_the_other_sides_signal_is_refused_on_every_family():
    model = build_tiny_video_llava()[0]
    with pytest.raises(ValueError, match="inside its language model"):
        from llava.pruning import METHODS
        from llava.pruning.base import LanguageModelPruner

        class NeedsCls(LanguageModelPruner):
            name = "test_needs_cls"
            requires = frozenset({"question", "cls_attention"})

        METHODS[NeedsCls.name] = NeedsCls
        try:
            llava.apply_pruning(model, NeedsCls.name, 4)
        finally:
            del METHODS[NeedsCls.name]


def test_a_merging_method_splits_a_video_total_evenly_and_tome_refuses_one(video_llava):
    model, image_processor, tokenizer = video_llava
    inputs = video_batch(image_processor, tokenizer, PATCHES + 1, FRAMES)
    stock, _ = stock_and_pruned(model, inputs, method="vispruner", visual_token_num=PATCHES)
    text = real_rows(stock)[0].shape[0] - FRAMES * (PATCHES + 1)
    # pool keeps whole pooled grids: a frame budget of 5 pools 4 x 4 to 2 x 2 = 4 tokens, of 4 also 4
    fed = video_tokens_fed(model, inputs, 0, method="pool", visual_token_num=4, video_token_num=4 * FRAMES + 3,
                           video_split="even", frame_cls=False)  # fmt: skip
    assert fed == text + 4 * FRAMES
    with pytest.raises(ValueError, match="merges inside the encoder"):
        llava.apply_pruning(model, "tome", 4, video_token_num=20, video_split="even")
    with pytest.raises(ValueError, match="video_split must be one of 'joint', 'even'"):
        llava.apply_pruning(model, "vispruner", 4, video_token_num=20, video_split="per_frame")
    assert "forward" not in model.__dict__
