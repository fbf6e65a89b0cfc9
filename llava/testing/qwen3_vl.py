"""A tiny random-weight Qwen3-VL shaped as Qwen/Qwen3-VL-2B-Instruct (and -8B-Instruct), built offline.

Mirrored from the real configs (at tiny widths): the vision tower's patch 16, 2x2 spatial merge,
temporal patch 2, 2304 learned position embeddings (a 48 x 48 grid, resampled to each image), the
gelu_pytorch_tanh activation, and three DeepStack levels at the same relative depths as the 2B tower's
[5, 11, 17] of 24 blocks (each quarter's last block; the last block feeds the main merger only); the
language model's interleaved M-RoPE with the real sections' proportions (24:20:20 of a 128 head dim,
here 6:5:5 of 32), an explicit head_dim with per-head q/k RMS norms, grouped key/value heads, the 2B's
tied embeddings; the image processor's patch 16, merge 2, temporal patch 2 and mean/std 0.5. What is
not mirrored: widths, depths (4 x 2 vision blocks, `text_layers` decoder layers) and the pixel range.
"""

from __future__ import annotations

import torch
from transformers import (
    Qwen2VLImageProcessorPil,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLMoeConfig,
    Qwen3VLMoeForConditionalGeneration,
)

from .families import _finish, _ids, build_family_tokenizer, text_sizes

PATCH = 16
MERGE = 2
TEMPORAL_PATCH = 2
DEEPSTACK_LEVELS = 3  # Qwen3-VL's checkpoints add three intermediate vision levels to the first LM layers
VISION_LAYERS = 8
MROPE_SECTION = [6, 5, 5]  # the real [24, 20, 20] (half of a 128 head dim) scaled to a 32 head dim
HEAD_DIM = 32


def deepstack_indexes(depth: int) -> list[int]:
    """The last block of each of the tower's first three quarters (2B: 24 blocks -> [5, 11, 17])."""
    return [depth * level // (DEEPSTACK_LEVELS + 1) - 1 for level in range(1, DEEPSTACK_LEVELS + 1)]


def build_tiny_qwen3_vl(seed: int = 0, text_layers: int = 2, vision_layers: int = VISION_LAYERS, moe: bool = False):
    """Qwen3-VL (`moe=True`: Qwen3-VL-MoE, 4 experts of which 2 per token) with its image processor and
    tokenizer; returns `(model, image_processor, tokenizer)`. Prompts hold, per image,
    `<|vision_start|>` + t*h*w/4 `<|image_pad|>` + `<|vision_end|>`, and per video frame a timestamp
    text followed by such a run of `<|video_pad|>` (see `qwen3_vl_video_text`)."""
    tokenizer = build_family_tokenizer()
    text = dict(
        **text_sizes(tokenizer, text_layers),
        head_dim=HEAD_DIM,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 5000000.0,
            "mrope_section": MROPE_SECTION,
            "mrope_interleaved": True,
        },
    )
    vision = dict(
        depth=vision_layers,
        hidden_size=32,
        intermediate_size=64,
        num_heads=4,
        out_hidden_size=64,
        patch_size=PATCH,
        spatial_merge_size=MERGE,
        temporal_patch_size=TEMPORAL_PATCH,
        num_position_embeddings=2304,
        deepstack_visual_indexes=deepstack_indexes(vision_layers),
        hidden_act="gelu_pytorch_tanh",
    )
    ids = dict(
        image_token_id=_ids(tokenizer, "<|image_pad|>"),
        video_token_id=_ids(tokenizer, "<|video_pad|>"),
        vision_start_token_id=_ids(tokenizer, "<|vision_start|>"),
        vision_end_token_id=_ids(tokenizer, "<|vision_end|>"),
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    if moe:
        text.update(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, decoder_sparse_step=1)
        model = Qwen3VLMoeForConditionalGeneration(Qwen3VLMoeConfig(text_config=text, vision_config=vision, **ids))
    else:
        model = Qwen3VLForConditionalGeneration(Qwen3VLConfig(text_config=text, vision_config=vision, **ids))
    model = _finish(model, tokenizer, seed)
    side = PATCH * MERGE  # images are resized to multiples of one merged token's pixels
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=PATCH,
        merge_size=MERGE,
        temporal_patch_size=TEMPORAL_PATCH,
        min_pixels=2 * side * 2 * side,
        max_pixels=8 * side * 8 * side,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    return model, image_processor, tokenizer


def qwen3_vl_video_text(grid_thw, seconds_per_frame: float = 1.0) -> str:
    """One video's placeholders as Qwen3-VL's processor writes them: per frame (temporal patch), its
    timestamp, then `<|vision_start|>`, h*w/4 `<|video_pad|>` and `<|vision_end|>`."""
    frames, rows, cols = (int(v) for v in grid_thw)
    run = "<|video_pad|>" * (rows * cols // (MERGE * MERGE))
    return "".join(
        f"<{frame * seconds_per_frame:.1f} seconds><|vision_start|>{run}<|vision_end|>" for frame in range(frames)
    )
