"""The tiny LLaVA-NeXT case: the LLaVA-1.5 case's tower and language model in LLaVA-NeXT's anyres layout."""

from __future__ import annotations

import torch
from llava_case import IMAGE_SIZE, TEXT_HIDDEN, shapes
from PIL import Image
from transformers import (
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    LlavaNextImageProcessorPil,
    LlavaNextProcessor,
)

from llava.testing import build_tiny_llava
from llava.testing.tiny import CLIP_MEAN, CLIP_STD

ARCHITECTURE = "VisPrunerLlavaNextForConditionalGeneration"
# Grids of up to 2x2 tiles: square pictures get 2x2 (the paper's grid), wide ones 1x2 (the native layout differs).
PINPOINTS = [[IMAGE_SIZE, 2 * IMAGE_SIZE], [2 * IMAGE_SIZE, IMAGE_SIZE], [2 * IMAGE_SIZE, 2 * IMAGE_SIZE]]
PAPER_CROPS = 5  # base + 2x2 tiles
MAX_MODEL_LEN = 1024
NOISE = 0.3  # weight of the noise blended in  # two images of the native layout unpruned would not fit; pruned ones do


def build_tiny_llava_next(seed: int = 0):
    """(model, processor): a random LLaVA-NeXT with the tiny LLaVA-1.5's CLIP tower and Llama shapes."""
    base, llava_processor = build_tiny_llava(image_size=IMAGE_SIZE, vision_layers=4, text_hidden=TEXT_HIDDEN)
    config = LlavaNextConfig(
        vision_config=base.config.vision_config,
        text_config=base.config.text_config,
        image_token_id=base.config.image_token_id,
        image_grid_pinpoints=PINPOINTS,
        vision_feature_layer=base.config.vision_feature_layer,
        vision_feature_select_strategy=base.config.vision_feature_select_strategy,
    )
    torch.manual_seed(seed)
    model = LlavaNextForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = llava_processor.tokenizer.pad_token_id
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        image_grid_pinpoints=PINPOINTS,
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=llava_processor.tokenizer,
        patch_size=config.vision_config.patch_size,
        vision_feature_select_strategy=config.vision_feature_select_strategy,
        num_additional_image_tokens=1,
    )
    return model, processor


def textured(seed: int) -> Image.Image:
    """`shapes(seed)` with pixel noise blended in. Tiles cut from a flat background hold identical patches,
    whose attention ties; vLLM's tower and transformers' differ by float rounding (about 1e-6) and may
    break such ties differently, so the pictures here have none."""
    picture = shapes(seed)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randint(0, 256, (picture.height, picture.width, 3), dtype=torch.uint8, generator=generator)
    return Image.blend(picture, Image.fromarray(noise.numpy()), NOISE)


def square(seed: int) -> Image.Image:
    """`textured(seed)` made square: no padding in any tile (padded patches are alike, their attention near-ties)."""
    return textured(seed).resize((IMAGE_SIZE, IMAGE_SIZE))
