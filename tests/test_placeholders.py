import pytest
import torch

import llava
from llava.models.runs import rewrite_placeholders

IMG = 9  # the image token id in these hand-made batches


def shrink(ids, images, written, fed, **given):
    """The rewrite of `images` runs of `written` placeholders each to `fed` tokens."""
    return rewrite_placeholders({"input_ids": ids, **given}, IMG, [written] * images, [fed] * images, pad_token_id=0)


def test_each_run_keeps_its_head_and_text_stays_in_place():
    ids = torch.tensor([[1, IMG, IMG, IMG, IMG, 2, IMG, IMG, IMG, IMG, 3]])
    assert shrink(ids, 2, 4, 2)["input_ids"].tolist() == [[1, IMG, IMG, 2, IMG, IMG, 3]]


def test_adjacent_images_are_split_by_count():
    ids = torch.tensor([[1, IMG, IMG, IMG, IMG, IMG, IMG, 3]])
    assert shrink(ids, 2, 3, 1)["input_ids"].tolist() == [[1, IMG, IMG, 3]]


def test_runs_grow_when_an_item_feeds_more_tokens_than_were_written():
    ids = torch.tensor([[1, IMG, IMG, 2]])
    assert rewrite_placeholders({"input_ids": ids}, IMG, [2], [4], 0)["input_ids"].tolist() == [[1] + [IMG] * 4 + [2]]


def test_rows_with_different_image_counts_are_left_repadded():
    ids = torch.tensor([[5, IMG, IMG, IMG, 6, IMG, IMG, IMG], [0, 0, 0, 7, 8, IMG, IMG, IMG]])
    mask = torch.tensor([[1] * 8, [0, 0, 0, 1, 1, 1, 1, 1]])
    labels = torch.tensor([[1] * 8, [2] * 8])
    out = shrink(ids, 3, 3, 1, attention_mask=mask, labels=labels)
    assert out["input_ids"].tolist() == [[5, IMG, 6, IMG], [0, 7, 8, IMG]]
    assert out["attention_mask"].tolist() == [[1, 1, 1, 1], [0, 1, 1, 1]]
    assert out["labels"].tolist() == [[1, 1, 1, 1], [-100, 2, 2, 2]]


def test_right_padded_batches_stay_right_padded():
    ids = torch.tensor([[5, IMG, IMG, 6, IMG, IMG], [7, IMG, IMG, 0, 0, 0]])
    mask = torch.tensor([[1] * 6, [1, 1, 1, 0, 0, 0]])
    out = shrink(ids, 3, 2, 1, attention_mask=mask)
    assert out["input_ids"].tolist() == [[5, IMG, 6, IMG], [7, IMG, 0, 0]]
    assert out["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]


def test_already_shrunk_or_unpruned_batches_are_left_alone():
    ids = torch.tensor([[1, IMG, IMG, 2]])
    assert shrink(ids, 1, 4, 2) is None  # already holds the kept count
    assert shrink(ids, 1, 2, 2) is None  # nothing pruned


def test_a_prompt_holding_neither_count_is_refused_with_both_counts():
    ids = torch.tensor([[1, IMG, IMG, IMG, 2]])
    with pytest.raises(ValueError, match=r"holds 3 placeholders of token 9; the 1 item\(s\) passed need 4"):
        shrink(ids, 1, 4, 2)


def test_two_images_in_one_prompt_and_one_in_another_generate(tiny, images):
    model, processor = tiny
    prompts = ["USER: <image>\n<image>\nSame? ASSISTANT:", "USER: <image>\nWhat? ASSISTANT:"]
    inputs = processor(text=prompts, images=images, return_tensors="pt", padding=True)
    llava.apply_pruning(model, visual_token_num=8)
    try:
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=3, do_sample=False, min_new_tokens=3)
            alone = model.generate(
                **processor(text=prompts[1], images=images[2], return_tensors="pt"),
                max_new_tokens=3,
                do_sample=False,
                min_new_tokens=3,
            )
    finally:
        llava.remove_pruning(model)
    assert torch.equal(out[:, : inputs.input_ids.shape[1]], inputs.input_ids)
    assert torch.equal(out[1, -3:], alone[0, -3:])
