"""Issue 20: prompting, conversation templates, pictures and the support matrix refuse bad inputs with
the argument, its value and what is allowed."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

import llava
from bad_inputs import SIZE, family
from llava.conversation import get_template
from llava.prompting import encode_batch, tokenize_like_llava
from llava.visualize import draw_kept_patches, pixels_to_image, side_by_side
from support import shapes_image

# ======================================================================================================
# prompting, conversation templates, pictures, the support matrix
# ======================================================================================================


def tiny_processor():
    return family("llava")[1]


IMAGE = shapes_image(SIZE, 0)
OTHER_CASES = [
    (
        "encode_batch: prompts a string",
        lambda: encode_batch(tiny_processor(), "USER: <image>\nWhat?", [[IMAGE]]),
        "prompts must be a non-empty list of strings, got 'USER: <image>\\nWhat?'",
    ),
    (
        "encode_batch: no prompts",
        lambda: encode_batch(tiny_processor(), []),
        "prompts must be a non-empty list of strings, got []",
    ),
    (
        "encode_batch: a prompt None",
        lambda: encode_batch(tiny_processor(), ["<image>", None], [[IMAGE], []]),
        "prompts must be a non-empty list of strings",
    ),
    (
        "encode_batch: fewer image lists than prompts",
        lambda: encode_batch(tiny_processor(), ["<image>", "<image>"], [[IMAGE]]),
        "images must hold one list per prompt (2 prompt(s)), images[i] being the images of prompts[i]",
    ),
    (
        "encode_batch: images not in lists",
        lambda: encode_batch(tiny_processor(), ["<image>"], [IMAGE]),
        "images must hold one list per prompt (1 prompt(s))",
    ),
    (
        "encode_batch: more images than placeholders",
        lambda: encode_batch(tiny_processor(), ["<image>"], [[IMAGE, IMAGE]]),
        "prompt 0 has 1 <image> and 0 <video> placeholders but 2 images and 0 videos were given",
    ),
    (
        "tokenize_like_llava: placeholders vs media",
        lambda: tokenize_like_llava(tiny_processor().tokenizer, "<image> <image>", [[4]]),
        "the prompt has 2 media placeholders but 1 images/videos were given",
    ),
    (
        "get_template: None",
        lambda: get_template(None),
        "unknown conversation template None; available: llava_v1, plain, v1, vicuna_v1",
    ),
    ("get_template: a list", lambda: get_template(["v1"]), "unknown conversation template ['v1']"),
    ("get_template: unknown", lambda: get_template("vicuna"), "unknown conversation template 'vicuna'"),
    (
        "single_turn: None",
        lambda: get_template("v1").single_turn(None),
        "question must be a non-empty string, got None",
    ),
    ("single_turn: empty", lambda: get_template("v1").single_turn(""), "question must be a non-empty string, got ''"),
    (
        "single_turn: a number",
        lambda: get_template("v1").single_turn(42),
        "question must be a non-empty string, got 42",
    ),
    (
        "prompt: a string",
        lambda: get_template("v1").prompt("USER: hi"),
        "messages must be a list of (role, message or None) pairs",
    ),
    (
        "prompt: a message not text",
        lambda: get_template("v1").prompt([("USER", 5)]),
        "messages must be a list of (role, message or None) pairs",
    ),
    (
        "pixels_to_image: a batch",
        lambda: pixels_to_image(torch.zeros(1, 3, 4, 4), [0.5] * 3, [0.5] * 3),
        "pixel_values must be one image as a [3, H, W] tensor (e.g. inputs.pixel_values[0]), got (1, 3, 4, 4)",
    ),
    (
        "pixels_to_image: a list",
        lambda: pixels_to_image([[0.0]], [0.5] * 3, [0.5] * 3),
        "pixel_values must be one image as a [3, H, W] tensor",
    ),
    (
        "pixels_to_image: two means",
        lambda: pixels_to_image(torch.zeros(3, 4, 4), [0.5, 0.5], [0.5] * 3),
        "mean must be 3 finite numbers (one per colour channel), got [0.5, 0.5]",
    ),
    (
        "pixels_to_image: a zero std",
        lambda: pixels_to_image(torch.zeros(3, 4, 4), [0.5] * 3, [0.5, 0.0, 0.5]),
        "std must be non-zero for every channel",
    ),
    (
        "draw_kept_patches: a grid of 0 rows",
        lambda: draw_kept_patches(IMAGE, (0, 4), [], []),
        "grid must be (rows, cols), two integers >= 1, got (0, 4)",
    ),
    (
        "draw_kept_patches: a grid of floats",
        lambda: draw_kept_patches(IMAGE, (4.0, 4), [], []),
        "grid must be (rows, cols), two integers >= 1, got (4.0, 4)",
    ),
    (
        "draw_kept_patches: an index past the grid",
        lambda: draw_kept_patches(IMAGE, (4, 4), [16], []),
        "important must hold patch indices in 0..15 (raster order over the grid), got [16]",
    ),
    (
        "draw_kept_patches: a negative index",
        lambda: draw_kept_patches(IMAGE, (4, 4), [], [-1]),
        "diverse must hold patch indices in 0..15 (raster order over the grid), got [-1]",
    ),
    (
        "draw_kept_patches: not a picture",
        lambda: draw_kept_patches(torch.zeros(3, 4, 4), (4, 4), [], []),
        "image must be a PIL image, got Tensor",
    ),
    (
        "side_by_side: no panels",
        lambda: side_by_side([]),
        "panels must be a non-empty list of (caption, PIL image) pairs",
    ),
    (
        "side_by_side: a tensor panel",
        lambda: side_by_side([("a", torch.zeros(3, 4, 4))]),
        "panels must be a non-empty list of (caption, PIL image) pairs",
    ),
]


@pytest.mark.parametrize("case, call, fragment", OTHER_CASES, ids=[c[0] for c in OTHER_CASES])
def test_prompting_conversation_and_pictures_refuse(case, call, fragment):
    with pytest.raises(ValueError, match=re.escape(fragment)):
        call()


def test_support_matrix_takes_no_arguments():
    with pytest.raises(TypeError, match="positional argument"):
        llava.support_matrix("vispruner")


def test_prumerge_plus_at_one_token_keeps_every_patch_weighted_by_attention():
    """T = 1 is the extra token alone: the [CLS]-attention-weighted sum of all patches."""
    from llava.pruning.base import LayerProjections, VisionFeatures
    from llava.pruning.prumerge import PruMergePlus, cls_attention

    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2, 9, 6, generator=generator)
    projections = LayerProjections(
        torch.randn(2, 6, generator=generator), torch.randn(2, 10, 6, generator=generator), 2
    )
    vision = VisionFeatures(features, (3, 3), next_projections=projections)
    attention = cls_attention(projections, 6)
    merged = PruMergePlus(1).reduce(vision)
    assert merged.shape == (2, 1, 6)
    assert torch.allclose(merged[:, 0], (attention[..., None] * features).sum(dim=1), atol=1e-6)


def test_pictures_take_indices_as_the_trace_holds_them():
    """Pictures of kept patches accept numpy indices and tensors as the trace holds them."""
    picture = draw_kept_patches(IMAGE, (8, 8), torch.tensor([0, 63]), np.array([5]))
    assert picture.size == IMAGE.size
    assert isinstance(pixels_to_image(torch.zeros(3, 4, 4), [0.5] * 3, [0.5] * 3), Image.Image)
