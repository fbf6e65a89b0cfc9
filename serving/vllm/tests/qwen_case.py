"""The tiny Qwen2.5-VL case: windowed tower (its last block windowed), M-RoPE language model."""

from __future__ import annotations

import torch
from transformers import (
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2VLImageProcessorPil,
    Qwen2VLVideoProcessor,
)

from llava.testing.families import build_family_tokenizer

ARCHITECTURE = "VisPrunerQwen2_5_VLForConditionalGeneration"
TEXT_HIDDEN = 128  # 4 heads of 32: vLLM's CPU attention has no kernel for head_dim 16
MROPE_SECTION = [4, 6, 6]  # (t, h, w) halves of the 32-wide heads' rotary: 16 in all
MIN_PIXELS, MAX_PIXELS = 56 * 56, 224 * 224
PROMPT_TEXT = "<|im_start|>user\n{images}What is shown?<|im_end|>\n<|im_start|>assistant\n"
IMAGE_TEXT = "<|vision_start|><|image_pad|><|vision_end|>"


def build_tiny_qwen2_5_vl(seed: int = 0):
    """(model, processor): a random Qwen2.5-VL (3 vision blocks, the middle one full attention)."""
    tokenizer = build_family_tokenizer()
    # The tiny tokenizer names LLaVA's "<image>" as its image token, which Qwen's processor would adopt.
    tokenizer.image_token, tokenizer.video_token = "<|image_pad|>", "<|video_pad|>"
    ids = {
        name: tokenizer.convert_tokens_to_ids(token)
        for name, token in {
            "image_token_id": "<|image_pad|>",
            "video_token_id": "<|video_pad|>",
            "vision_start_token_id": "<|vision_start|>",
            "vision_end_token_id": "<|vision_end|>",
        }.items()
    }
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=TEXT_HIDDEN,
        intermediate_size=2 * TEXT_HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": MROPE_SECTION},
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    vision = dict(
        depth=3,
        hidden_size=32,
        out_hidden_size=TEXT_HIDDEN,
        intermediate_size=64,
        num_heads=4,
        window_size=56,
        fullatt_block_indexes=[1],
        patch_size=14,
    )
    torch.manual_seed(seed)
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, **ids)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    image_processor = Qwen2VLImageProcessorPil(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    # The video processor fills the processor's slot (it needs torchvision, which this environment imports).
    processor = Qwen2_5_VLProcessor(
        image_processor=image_processor, tokenizer=tokenizer, video_processor=Qwen2VLVideoProcessor()
    )
    return model, processor


def prompt(num_images: int) -> str:
    return PROMPT_TEXT.format(images=IMAGE_TEXT * num_images)
