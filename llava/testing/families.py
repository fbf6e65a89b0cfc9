"""Small random-weight models of the other supported families, built from configs, offline.

Each builder returns `(model, image_processor, tokenizer)` for tests, demos and benchmarks: the real
model class with a tiny CLIP / SigLIP / Qwen / InternViT vision tower and a 2-layer language model. Processors
that hold a video-processor slot cannot be built without torchvision (see docs/methods.md), so prompts
with placeholders are written by the helpers below, the way the stock processors write them.
"""

from __future__ import annotations

import torch
from transformers import (
    CLIPVisionConfig,
    GotOcr2ImageProcessorPil,
    InternVLConfig,
    InternVLForConditionalGeneration,
    InternVLVisionConfig,
    LlamaConfig,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    LlavaNextImageProcessorPil,
    LlavaNextProcessor,
    LlavaNextVideoConfig,
    LlavaNextVideoForConditionalGeneration,
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionImageProcessorPil,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2Config,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessorPil,
    SiglipVisionConfig,
    VideoLlavaConfig,
    VideoLlavaForConditionalGeneration,
)

from .tiny import CLIP_MEAN, CLIP_STD, build_tokenizer, clip_image_processor

EXTRA_TOKENS = ["<video>", "<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>"]


def build_family_tokenizer():
    """The tiny tokenizer with video and Qwen vision tokens added."""
    tokenizer = build_tokenizer()
    tokenizer.add_tokens(EXTRA_TOKENS, special_tokens=True)
    return tokenizer


def _ids(tokenizer, token: str) -> int:
    return tokenizer.convert_tokens_to_ids(token)


def _clip(image_size: int, patch_size: int, hidden: int = 32, layers: int = 3) -> CLIPVisionConfig:
    return CLIPVisionConfig(
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=patch_size,
        projection_dim=hidden,
    )


def text_sizes(tokenizer, layers: int, hidden: int = 64) -> dict:
    """The tiny language model every family's builder uses (grouped-query attention, 4 heads, 2 KV heads)."""
    return dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def _llama(tokenizer, layers: int, hidden: int = 64) -> LlamaConfig:
    return LlamaConfig(**text_sizes(tokenizer, layers, hidden))


def _qwen2(tokenizer, layers: int) -> Qwen2Config:
    """The tiny Qwen2 language model of the families that use one (OneVision, InternVL)."""
    return Qwen2Config(**text_sizes(tokenizer, layers))


def _finish(model, tokenizer, seed: int):
    model.eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def build_tiny_llava_next(image_size: int = 32, patch_size: int = 8, seed: int = 0, text_layers: int = 2):
    """LLaVA-NeXT (anyres: base + up to 2x2 tiles of `image_size`) and its real processor."""
    tokenizer = build_family_tokenizer()
    pinpoints = [[image_size, 2 * image_size], [2 * image_size, image_size], [2 * image_size, 2 * image_size]]
    config = LlavaNextConfig(
        vision_config=_clip(image_size, patch_size),
        text_config=_llama(tokenizer, text_layers),
        image_token_id=_ids(tokenizer, "<image>"),
        image_grid_pinpoints=pinpoints,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(seed)
    model = _finish(LlavaNextForConditionalGeneration(config), tokenizer, seed)
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_grid_pinpoints=pinpoints,
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )
    return model, processor


def build_tiny_video_llava(image_size: int = 32, patch_size: int = 8, seed: int = 0, text_layers: int = 2):
    """Video-LLaVA (separate image and video CLIP towers) and a CLIP image processor for its frames."""
    tokenizer = build_family_tokenizer()
    config = VideoLlavaConfig(
        vision_config=_clip(image_size, patch_size),
        text_config=_llama(tokenizer, text_layers),
        image_token_id=_ids(tokenizer, "<image>"),
        video_token_id=_ids(tokenizer, "<video>"),
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(seed)
    model = _finish(VideoLlavaForConditionalGeneration(config), tokenizer, seed)
    image_processor = clip_image_processor(image_size)
    return model, image_processor, tokenizer


def build_tiny_llava_next_video(image_size: int = 32, patch_size: int = 8, seed: int = 0, text_layers: int = 2):
    """LLaVA-NeXT-Video (anyres images, 2x2 average-pooled video frames) and a CLIP frame processor."""
    tokenizer = build_family_tokenizer()
    pinpoints = [[image_size, 2 * image_size], [2 * image_size, image_size], [2 * image_size, 2 * image_size]]
    config = LlavaNextVideoConfig(
        vision_config=_clip(image_size, patch_size),
        text_config=_llama(tokenizer, text_layers),
        image_token_id=_ids(tokenizer, "<image>"),
        video_token_id=_ids(tokenizer, "<video>"),
        image_grid_pinpoints=pinpoints,
        spatial_pool_stride=2,
        spatial_pool_mode="average",
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(seed)
    model = _finish(LlavaNextVideoForConditionalGeneration(config), tokenizer, seed)
    image_processor = clip_image_processor(image_size)
    return model, image_processor, tokenizer


def build_tiny_llava_onevision(image_size: int = 32, patch_size: int = 8, seed: int = 0, text_layers: int = 2):
    """LLaVA-OneVision (SigLIP tower without [CLS], anyres_max_9, Qwen2 LM) and its image processor."""
    tokenizer = build_family_tokenizer()
    pinpoints = [[image_size * r, image_size * c] for r in range(1, 4) for c in range(1, 4)]
    config = LlavaOnevisionConfig(
        vision_config=SiglipVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=4,
            image_size=image_size,
            patch_size=patch_size,
            vision_use_head=False,
        ),
        text_config=_qwen2(tokenizer, text_layers),
        image_token_id=_ids(tokenizer, "<image>"),
        video_token_id=_ids(tokenizer, "<video>"),
        image_grid_pinpoints=pinpoints,
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        vision_aspect_ratio="anyres_max_9",
    )
    torch.manual_seed(seed)
    model = _finish(LlavaOnevisionForConditionalGeneration(config), tokenizer, seed)
    image_processor = LlavaOnevisionImageProcessorPil(
        size={"height": image_size, "width": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_grid_pinpoints=pinpoints,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    return model, image_processor, tokenizer


def build_tiny_qwen2_vl(version: str = "2", seed: int = 0, text_layers: int = 2):
    """Qwen2-VL (`version="2"`) or Qwen2.5-VL (`"2.5"`, windowed attention) and its image processor."""
    tokenizer = build_family_tokenizer()
    text = dict(
        **text_sizes(tokenizer, text_layers),
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
    )
    ids = dict(
        image_token_id=_ids(tokenizer, "<|image_pad|>"),
        video_token_id=_ids(tokenizer, "<|video_pad|>"),
        vision_start_token_id=_ids(tokenizer, "<|vision_start|>"),
        vision_end_token_id=_ids(tokenizer, "<|vision_end|>"),
    )
    torch.manual_seed(seed)
    if version == "2":
        vision = dict(depth=2, embed_dim=32, hidden_size=64, num_heads=4, mlp_ratio=2, patch_size=14)
        model = Qwen2VLForConditionalGeneration(Qwen2VLConfig(text_config=text, vision_config=vision, **ids))
    elif version == "2.5":
        vision = dict(
            depth=3,
            hidden_size=32,
            out_hidden_size=64,
            intermediate_size=64,
            num_heads=4,
            window_size=56,
            fullatt_block_indexes=[1],
            patch_size=14,
        )
        model = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(text_config=text, vision_config=vision, **ids))
    else:
        raise ValueError(f"version must be '2' or '2.5', got {version!r}")
    model = _finish(model, tokenizer, seed)
    image_processor = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=224 * 224)
    return model, image_processor, tokenizer


INTERNVL_TOKENS = ["<img>", "</img>", "<IMG_CONTEXT>"]


def build_tiny_internvl(
    image_size: int = 448, patch_size: int = 14, seed: int = 0, text_layers: int = 2, use_qk_norm: bool = False
):
    """InternVL shaped as OpenGVLab/InternVL3-1B-hf at tiny widths (InternViT with [CLS], feature layer -1,
    pixel shuffle 0.5: 256 tokens per 448-px tile, Qwen2 LM) and its tile-cropping image processor
    (up to 12 tiles and a thumbnail). Prompts hold `internvl_image_text(tiles)` per image."""
    tokenizer = build_family_tokenizer()
    tokenizer.add_tokens(INTERNVL_TOKENS, special_tokens=True)
    config = InternVLConfig(
        vision_config=InternVLVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=4,
            attention_bias=True,
            use_qk_norm=use_qk_norm,
            norm_type="layer_norm",
            image_size=[image_size, image_size],
            patch_size=[patch_size, patch_size],
            layer_scale_init_value=0.1,
            use_mean_pooling=True,
        ),
        text_config=_qwen2(tokenizer, text_layers),
        image_token_id=_ids(tokenizer, "<IMG_CONTEXT>"),
        image_seq_length=(image_size // patch_size // 2) ** 2,
        downsample_ratio=0.5,
        projector_hidden_act="gelu",
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(seed)
    model = _finish(InternVLForConditionalGeneration(config), tokenizer, seed)
    image_processor = GotOcr2ImageProcessorPil(
        size={"height": image_size, "width": image_size},
        crop_to_patches=True,
        min_patches=1,
        max_patches=12,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )
    return model, image_processor, tokenizer


def internvl_image_text(model, tiles: int) -> str:
    """One image's placeholders as InternVL's processor writes them: <img>, 256 per tile, </img>."""
    return "<img>" + "<IMG_CONTEXT>" * (model.config.image_seq_length * tiles) + "</img>"
