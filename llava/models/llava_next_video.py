"""Pruning for `LlavaNextVideoForConditionalGeneration` (LLaVA-NeXT-Video), patched per instance.

Images go the LLaVA-NeXT way (`layout="native"` or `"paper"`, see `llava_next.py`). Video frames
go through the CLIP tower and the spatial pooler (`vision_resampler`, 2x2 average pooling for the
released models) before the projector; pruning acts on the pooled tokens the language model would
see. Each pooled token's importance is its window's [CLS] attention pooled the same way (the pooler
itself for average/max pooling, an average over the same windows for a convolutional pooler).
Budget per frame, or `video_token_num` in total per video (see `frames.py`).
"""

from __future__ import annotations

import functools

import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import BaseModelOutputWithPooling

from ..patching import InstancePatch
from ..pruning.base import VisionFeatures, VisionTokenPruner
from ..trace import Tracer
from . import clip, llava_next
from .common import CLS_ATTENTION, chain, patch_forward, patch_generate
from .frames import check_video_budget, tokens_per_video, video_rewrite, video_tokens

HOST = "LLaVA-NeXT-Video"


def attach(
    model,
    pruner: VisionTokenPruner,
    patch: InstancePatch,
    tracer: Tracer | None = None,
    *,
    layout: str = "native",
    video_token_num: int | None = None,
) -> None:
    llava_next.check_image_options(pruner, layout, HOST)
    video_token_num = check_video_budget(video_token_num, pruner, HOST)
    inner = model.model
    patch.set(inner, "get_image_features", llava_next.pruned_image_features(inner, pruner, layout, tracer))
    patch.set(inner, "get_video_features", _video_features(inner, pruner, video_token_num, tracer))
    rewrite = chain(llava_next.image_rewrite(model, pruner, layout), _video_rewrite(model, pruner, video_token_num))
    patch_forward(model, patch, rewrite)
    patch_generate(model, patch, rewrite)


def pool_attention(resampler: nn.Module, attention, side: int):
    """[frames, H, side*side] attention pooled over the resampler's windows -> [frames, H, n]."""
    pool = resampler.pool
    if isinstance(pool, nn.Conv2d):  # learned weights cannot pool attention; average the same windows
        frames, heads, _ = attention.shape
        pooled = F.avg_pool2d(attention.reshape(frames * heads, 1, side, side), pool.kernel_size, pool.stride)
        return pooled.reshape(frames, heads, -1)
    return resampler(attention.transpose(1, 2)).transpose(1, 2)


def _video_features(inner, pruner, video_token_num, tracer):
    stock = inner.get_video_features
    config = inner.config

    @functools.wraps(stock)
    def get_video_features(
        pixel_values_videos, vision_feature_layer=None, vision_feature_select_strategy=None, **kwargs
    ):
        layer = config.vision_feature_layer if vision_feature_layer is None else vision_feature_layer
        strategy = vision_feature_select_strategy or config.vision_feature_select_strategy
        if strategy != "default":
            raise ValueError(
                f"pruning {HOST} videos supports vision_feature_select_strategy='default', got {strategy!r}"
            )
        videos, num_frames = pixel_values_videos.shape[:2]
        frames = pixel_values_videos.flatten(0, 1)
        vision = clip.encode(inner.vision_tower, frames, layer, CLS_ATTENTION in pruner.requires)
        pooled = inner.vision_resampler(vision.features)
        side = int(round(pooled.shape[1] ** 0.5))
        attention = None
        if vision.cls_attention is not None:
            attention = pool_attention(inner.vision_resampler, vision.cls_attention, vision.grid[0])
        pooled_vision = VisionFeatures(pooled, (side, side), attention)
        tokens = video_tokens(
            pruner, pooled_vision, num_frames, video_token_num, project=inner.multi_modal_projector, tracer=tracer
        )
        output = BaseModelOutputWithPooling(last_hidden_state=vision.features, pooler_output=tokens)
        return output if kwargs.get("return_dict", True) else output.to_tuple()

    return get_video_features


def pooled_tokens_per_frame(config) -> int:
    side = config.vision_config.image_size // config.vision_config.patch_size
    return (side // config.spatial_pool_stride) ** 2


def _video_rewrite(model, pruner, video_token_num):
    def counts(videos):
        num_frames, per_frame = videos.shape[1], pooled_tokens_per_frame(model.config)
        return num_frames * per_frame, tokens_per_video(pruner, per_frame, num_frames, video_token_num)

    return video_rewrite(model, counts)
