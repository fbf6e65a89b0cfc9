"""Tiny SmolVLM and Idefics3 models (SigLIP-style tower without [CLS], pixel-shuffle connector, image
splitting into row x col tiles plus a global image), built from configs offline.

The configs mirror the real checkpoints' structure at tiny widths: the tile size, patch size and
`scale_factor` (so each tile's placeholder count), the last layer as feature layer (the family has no
`vision_feature_layer`: the connector reads the tower's output after its post-layernorm), a Llama
language model, and the processors' splitting (`size["longest_edge"]` = tiles per side x tile size).

* `build_tiny_smolvlm()`: HuggingFaceTB/SmolVLM-Instruct and SmolVLM2-2.2B-Instruct (SigLIP-SO400M
  shape: 384-px tiles, patch 14, scale_factor 3 -> 81 tokens per tile, up to 4 tiles per side);
  `build_tiny_smolvlm(**SMOLVLM_256M)`: HuggingFaceTB/SmolVLM-256M-Instruct (SigLIP-B/16 shape: 512-px
  tiles, patch 16, scale_factor 4 -> 64 tokens per tile).
* `build_tiny_idefics3()`: HuggingFaceM4/Idefics3-8B-Llama3 (364-px tiles, patch 14, scale_factor 2 ->
  169 tokens per tile, up to 4 tiles per side).

Prompts are written by `smolvlm_image_text` / `smolvlm_video_text` the way the stock processors write
them (the SmolVLM processor holds a video processor, which cannot be built without torchvision).
"""

from __future__ import annotations

import torch
from transformers import (
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    Idefics3ImageProcessorPil,
    Idefics3VisionConfig,
    SmolVLMConfig,
    SmolVLMForConditionalGeneration,
    SmolVLMImageProcessorPil,
    SmolVLMVisionConfig,
)
from transformers.models.smolvlm.processing_smolvlm import get_image_prompt_string

from .families import _finish, _ids, _llama, build_family_tokenizer

FAKE_TOKEN = "<fake_token_around_image>"
GLOBAL_TOKEN = "<global-img>"
IMAGE_TOKEN = "<image>"
MAX_GRID_SIDE = 6  # the processors name tiles <row_1_col_1> ... <row_6_col_6>
MARKER_TOKENS = [FAKE_TOKEN, GLOBAL_TOKEN, "<end_of_utterance>"] + [
    f"<row_{row}_col_{col}>" for row in range(1, MAX_GRID_SIDE + 1) for col in range(1, MAX_GRID_SIDE + 1)
]
SIGLIP_MEAN = SIGLIP_STD = [0.5, 0.5, 0.5]  # the SigLIP normalisation both families' processors use
SMOLVLM_256M = {"image_size": 512, "patch_size": 16, "scale_factor": 4}


def build_smolvlm_tokenizer():
    """The tiny family tokenizer with the Idefics3 / SmolVLM image markers added."""
    tokenizer = build_family_tokenizer()
    tokenizer.add_tokens(MARKER_TOKENS, special_tokens=True)
    return tokenizer


def _vision(config_class, image_size: int, patch_size: int):
    return config_class(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=patch_size,
    )


def _image_processor(processor_class, image_size: int, tiles_per_side: int):
    return processor_class(
        size={"longest_edge": tiles_per_side * image_size},
        max_image_size={"longest_edge": image_size},
        do_image_splitting=True,
        image_mean=SIGLIP_MEAN,
        image_std=SIGLIP_STD,
    )


def build_tiny_smolvlm(
    image_size: int = 384,
    patch_size: int = 14,
    scale_factor: int = 3,
    tiles_per_side: int = 4,
    seed: int = 0,
    text_layers: int = 2,
):
    """SmolVLM shaped as HuggingFaceTB/SmolVLM-Instruct at tiny widths (81 tokens per 384-px tile) and its
    image processor (images resized to `tiles_per_side` tiles on the long side, split, plus a global image);
    `**SMOLVLM_256M` for the SmolVLM-256M shape. Prompts hold `smolvlm_image_text(...)` per image."""
    tokenizer = build_smolvlm_tokenizer()
    config = SmolVLMConfig(
        vision_config=_vision(SmolVLMVisionConfig, image_size, patch_size),
        text_config=_llama(tokenizer, text_layers),
        image_token_id=_ids(tokenizer, IMAGE_TOKEN),
        scale_factor=scale_factor,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = _finish(SmolVLMForConditionalGeneration(config), tokenizer, seed)
    return model, _image_processor(SmolVLMImageProcessorPil, image_size, tiles_per_side), tokenizer


def build_tiny_idefics3(
    image_size: int = 364,
    patch_size: int = 14,
    scale_factor: int = 2,
    tiles_per_side: int = 4,
    seed: int = 0,
    text_layers: int = 2,
):
    """Idefics3 shaped as HuggingFaceM4/Idefics3-8B-Llama3 at tiny widths (169 tokens per 364-px tile) and
    its image processor (as `build_tiny_smolvlm`'s)."""
    tokenizer = build_smolvlm_tokenizer()
    config = Idefics3Config(
        vision_config=_vision(Idefics3VisionConfig, image_size, patch_size),
        text_config=_llama(tokenizer, text_layers),
        image_token_id=_ids(tokenizer, IMAGE_TOKEN),
        scale_factor=scale_factor,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = _finish(Idefics3ForConditionalGeneration(config), tokenizer, seed)
    return model, _image_processor(Idefics3ImageProcessorPil, image_size, tiles_per_side), tokenizer


def tile_tokens(model) -> int:
    """Placeholders per tile: (tile size / patch size)^2 / scale_factor^2."""
    vision = model.config.vision_config
    return (vision.image_size // vision.patch_size) ** 2 // model.config.scale_factor**2


def smolvlm_image_text(model, rows: int, cols: int) -> str:
    """One image's placeholders as the processors write them: `rows` x `cols` tiles, each behind
    <fake_token_around_image><row_r_col_c>, then the global image (rows = cols = 0: the global image alone)."""
    return get_image_prompt_string(rows, cols, tile_tokens(model), FAKE_TOKEN, IMAGE_TOKEN, GLOBAL_TOKEN)


def smolvlm_video_text(model, frames: int) -> str:
    """A video's placeholders as the SmolVLM processor writes them: each frame one global image after
    its timestamp (the intro and outro text shortened)."""
    frame = get_image_prompt_string(0, 0, tile_tokens(model), FAKE_TOKEN, IMAGE_TOKEN, GLOBAL_TOKEN)
    return "".join(f"\nFrame from 00:{second:02d}:{frame}" for second in range(frames)) + "\n\n"
