"""A small random-weight Gemma 3 (`Gemma3ForConditionalGeneration`) and its real processor, offline.

Shaped as google/gemma-3-4b-it (the 12b and 27b checkpoints share every structural setting below and
differ only in widths and depth): a SigLIP tower without [CLS] or pooling head at 896 px / 14-px
patches (64 x 64 patches), read at its last layer after `post_layernorm`; the projector's 4x4 average
pool to `mm_tokens_per_image` = 256 tokens, RMSNorm and linear map; a Gemma 3 decoder whose layers
follow the checkpoints' pattern of five sliding-window layers then one full-attention layer, with
their rotary settings (local base 10 000; global base 1 000 000 with linear scaling 8); the
processor's `<start_of_image>` + 256 soft tokens + `<end_of_image>` runs with `token_type_ids`, and
its pan-and-scan settings (off unless a call asks for it, as in the checkpoints' processor config).
Tiny: widths, depths, and the sliding window (64 tokens instead of 1024, so that tiny prompts cross it).
"""

from __future__ import annotations

import torch
from transformers import (
    Gemma3Config,
    Gemma3ForConditionalGeneration,
    Gemma3ImageProcessorPil,
    Gemma3Processor,
    Gemma3TextConfig,
    PreTrainedTokenizerFast,
    SiglipVisionConfig,
)

from .families import build_family_tokenizer, text_sizes

BOI, EOI, SOFT = "<start_of_image>", "<end_of_image>", "<image_soft_token>"
IMAGE_SIZE = 896  # google/gemma-3-*-it: vision_config.image_size
PATCH_SIZE = 14  # vision_config.patch_size
TOKENS_PER_IMAGE = 256  # mm_tokens_per_image
SLIDING_PATTERN = 6  # every 6th decoder layer attends globally, the others in the sliding window
TINY_SLIDING_WINDOW = 64  # the checkpoints' 1024, shrunk so that prompts of a few images cross it
GLOBAL_ROPE = {"rope_type": "linear", "factor": 8.0, "rope_theta": 1_000_000.0}
LOCAL_ROPE = {"rope_type": "default", "rope_theta": 10_000.0}
SIGLIP_NORM = [0.5, 0.5, 0.5]  # the checkpoints' image_mean and image_std
PAN_AND_SCAN = {"pan_and_scan_min_crop_size": 256, "pan_and_scan_max_num_crops": 4}
PAN_AND_SCAN_MIN_RATIO = 1.2
PROJECTION_STD = 0.02  # the stock init zeroes the projection, which would make every image token the same


def _gemma3_tokenizer() -> PreTrainedTokenizerFast:
    """The tiny tokenizer with Gemma 3's image tokens, named the way `Gemma3Processor` looks them up."""
    base = build_family_tokenizer()
    base.add_tokens([BOI, EOI, SOFT], special_tokens=True)
    return PreTrainedTokenizerFast(
        tokenizer_object=base.backend_tokenizer,
        bos_token=base.bos_token,
        eos_token=base.eos_token,
        unk_token=base.unk_token,
        pad_token=base.pad_token,
        extra_special_tokens={"image_token": SOFT, "boi_token": BOI, "eoi_token": EOI},
        padding_side="left",
    )


def build_tiny_gemma3(
    image_size: int = IMAGE_SIZE,
    patch_size: int = PATCH_SIZE,
    tokens_per_image: int = TOKENS_PER_IMAGE,
    seed: int = 0,
    text_layers: int = SLIDING_PATTERN,
    sliding_window: int = TINY_SLIDING_WINDOW,
) -> tuple[Gemma3ForConditionalGeneration, Gemma3Processor]:
    """Gemma 3 shaped as google/gemma-3-4b-it at tiny widths, and its real processor. Prompts hold
    `<start_of_image>` where an image goes; the processor expands it and writes `token_type_ids`
    (pass `do_pan_and_scan=True` to the processor for crops)."""
    tokenizer = _gemma3_tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    text = Gemma3TextConfig(
        **text_sizes(tokenizer, text_layers),
        head_dim=16,
        query_pre_attn_scalar=16,
        sliding_window=sliding_window,
        sliding_window_pattern=SLIDING_PATTERN,
        rope_parameters={"full_attention": dict(GLOBAL_ROPE), "sliding_attention": dict(LOCAL_ROPE)},
    )
    vision = SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=patch_size,
        layer_norm_eps=1e-6,
        vision_use_head=False,
    )
    config = Gemma3Config(
        text_config=text,
        vision_config=vision,
        mm_tokens_per_image=tokens_per_image,
        boi_token_index=ids(BOI),
        eoi_token_index=ids(EOI),
        image_token_index=ids(SOFT),
    )
    torch.manual_seed(seed)
    model = Gemma3ForConditionalGeneration(config).eval()
    with torch.no_grad():
        model.model.multi_modal_projector.mm_input_projection_weight.normal_(std=PROJECTION_STD)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    image_processor = Gemma3ImageProcessorPil(
        size={"height": image_size, "width": image_size},
        image_mean=SIGLIP_NORM,
        image_std=SIGLIP_NORM,
        do_pan_and_scan=False,
        pan_and_scan_min_ratio_to_activate=PAN_AND_SCAN_MIN_RATIO,
        **PAN_AND_SCAN,
    )
    processor = Gemma3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_length=tokens_per_image)
    return model, processor
