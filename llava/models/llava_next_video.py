"""Pruning for `LlavaNextVideoForConditionalGeneration` (LLaVA-NeXT-Video), patched per instance.

Images go the LLaVA-NeXT way (`layout="native"` or `"paper"`, see `llava_next.py`). Video frames
go through the CLIP tower and the spatial pooler (`vision_resampler`, 2x2 average pooling for the
released models) before the projector; pruning acts on the pooled tokens the language model would
see. Each pooled token's importance is its window's [CLS] attention pooled the same way (the pooler
itself for average/max pooling, an average over the same windows for a convolutional pooler).
Budget per frame, or `video_token_num` in total per video (see `frames.py`).
"""

from __future__ import annotations

import dataclasses

import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import BaseModelOutputWithPooling

from ..patching import InstancePatch
from ..pruning.base import TokenPruner, VisionFeatures
from ..trace import Tracer
from . import clip, llava_next
from .common import Host, KeepAll
from .frames import check_video_budget, tokens_per_video, video_rewrite, video_tokens

HOST = "LLaVA-NeXT-Video"
# Frames are pooled before the projector: of the tower's signals only [CLS] attention pools with them.
SIGNALS = frozenset({"cls_attention"})
NOTE = " (video frames are pooled before the projector; only [CLS] attention is pooled with them)"


def attach(
    model,
    pruner: TokenPruner,
    patch: InstancePatch,
    tracer: Tracer | None = None,
    *,
    layout: str = "native",
    video_token_num: int | None = None,
    video_split: str = "joint",
) -> None:
    host = Host(model, pruner, patch, tracer, HOST, SIGNALS & clip.SIGNALS, NOTE)
    video_token_num = check_video_budget(host, video_token_num, video_split)
    if llava_next.attach_inside(host, layout):  # videos stay stock: their placeholder counts are checked
        every_token = dataclasses.replace(host, pruner=KeepAll(), tracer=None)
        host.rewrite_prompts(video_rewrite(every_token, lambda videos: _counts(every_token, videos, None, "joint")))
        return
    host.patch_encoder("get_image_features", lambda stock: llava_next.image_features(host, layout))
    host.patch_encoder("get_video_features", lambda stock: _video_features(host, video_token_num, video_split))
    host.rewrite_prompts(
        llava_next.image_rewrite(host, layout),
        video_rewrite(host, lambda videos: _counts(host, videos, video_token_num, video_split)),
    )


def pool_attention(resampler: nn.Module, attention, side: int):
    """[frames, H, side*side] attention pooled over the resampler's windows -> [frames, H, n]."""
    pool = resampler.pool
    if isinstance(pool, nn.Conv2d):  # learned weights cannot pool attention; average the same windows
        frames, heads, _ = attention.shape
        pooled = F.avg_pool2d(attention.reshape(frames * heads, 1, side, side), pool.kernel_size, pool.stride)
        return pooled.reshape(frames, heads, -1)
    return resampler(attention.transpose(1, 2)).transpose(1, 2)


def _video_features(host: Host, video_token_num, video_split):
    inner = host.inner

    def get_video_features(
        pixel_values_videos, vision_feature_layer=None, vision_feature_select_strategy=None, **kwargs
    ):
        host.check_strategy(vision_feature_select_strategy, " videos")
        num_frames = pixel_values_videos.shape[1]
        frames = pixel_values_videos.flatten(0, 1)
        vision = clip.encode(inner.vision_tower, frames, host.layer(vision_feature_layer), host.asked)
        pooled = inner.vision_resampler(vision.features)
        side = int(round(pooled.shape[1] ** 0.5))
        attention = None
        if vision.cls_attention is not None:
            attention = pool_attention(inner.vision_resampler, vision.cls_attention, vision.grid[0])
        pooled_vision = VisionFeatures(pooled, (side, side), attention)
        project = inner.multi_modal_projector
        host.project(pooled_vision, project)
        tokens = video_tokens(host, pooled_vision, num_frames, video_token_num, video_split, project=project)
        return BaseModelOutputWithPooling(last_hidden_state=vision.features, pooler_output=tokens)

    return get_video_features


def pooled_tokens_per_frame(config) -> int:
    side = config.vision_config.image_size // config.vision_config.patch_size
    return (side // config.spatial_pool_stride) ** 2


def _counts(host: Host, videos, video_token_num, video_split) -> tuple[int, int]:
    num_frames, per_frame = videos.shape[1], pooled_tokens_per_frame(host.config)
    return num_frames * per_frame, tokens_per_video(
        host.pruner, per_frame, num_frames, video_token_num, video_split=video_split
    )
