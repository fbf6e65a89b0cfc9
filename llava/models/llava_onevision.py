"""Pruning for `LlavaOnevisionForConditionalGeneration` (LLaVA-OneVision), patched per instance.

The SigLIP tower has no [CLS] token, so importance is the mean attention each token receives from
all tokens of the feature layer (`siglip.py`), handed to methods in place of [CLS] attention.

* Images keep the stock anyres layout (as LLaVA-NeXT's `layout="native"`: base crop, unpadded tile
  map, a newline after every row; `visual_token_num` per image split between base crop and map in
  proportion to their sizes). When `anyres_max_N` shrinks a large map, the stock model resizes the
  *projected* tokens; the map is then pruned on the equally resized features and attention and the
  kept tokens are picked from the stock resized tokens, so kept tokens are exactly stock tokens.
  Images of multi-image prompts (one crop each) keep `visual_token_num` tokens and their newline.
* Video frames are pooled 2x2 (bilinear) after the projector by the stock model; frames are pruned
  on the pooled features and pooled attention, per frame or with `video_token_num` per video, and
  the video's closing newline token stays.
"""

from __future__ import annotations

import dataclasses
import functools

import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from ..patching import InstancePatch
from ..pruning.base import TokenPruner, VisionFeatures
from ..trace import Tracer
from . import inside, llava_next, siglip
from .anyres import tile_grid
from .common import PROJECTED, Host, KeepAll, has_select
from .frames import check_video_budget, tokens_per_video, video_rewrite, video_tokens

HOST = "LLaVA-OneVision"


def attach(
    model,
    pruner: TokenPruner,
    patch: InstancePatch,
    tracer: Tracer | None = None,
    *,
    video_token_num: int | None = None,
    video_split: str = "joint",
) -> None:
    host = Host(model, pruner, patch, tracer, HOST, siglip.SIGNALS, siglip.NOTE, strategy="full")
    if not host.inside and not has_select(pruner):  # the layout refuses it, whatever signals it needs
        raise ValueError(f"method {pruner.name!r} merges tokens; {HOST} images place newline tokens by kept positions")
    host.check_signals()
    video_token_num = check_video_budget(host, video_token_num, video_split)
    config = model.config
    max_tiles(config.vision_aspect_ratio, "config.vision_aspect_ratio")  # read by every image call
    if host.inside:
        placeholders = {config.image_token_id: "image", config.video_token_id: "video"}
        inside.attach(host, inside.Placeholders(placeholders))
        every_token = dataclasses.replace(host, pruner=KeepAll(), tracer=None)  # the stock counts, checked
        host.rewrite_prompts(
            llava_next.image_rewrite(every_token, "native", grids_for=functools.partial(_grids_from_call, config)),
            video_rewrite(every_token, lambda videos: _counts(every_token, videos, None, "joint")),
        )
        return
    host.patch_encoder("get_image_features", lambda stock: _image_features(host))
    host.patch_encoder("get_video_features", lambda stock: _video_features(host, video_token_num, video_split))
    grids_for = functools.partial(_grids_from_call, config)
    host.rewrite_prompts(
        llava_next.image_rewrite(host, "native", grids_for=grids_for),
        video_rewrite(host, lambda videos: _counts(host, videos, video_token_num, video_split)),
    )


ASPECT_PREFIX = "anyres_max_"


def max_tiles(vision_aspect_ratio, name: str = "vision_aspect_ratio") -> int:
    """N of "anyres_max_N" (the most tiles' worth of tokens a tile map keeps), or ValueError naming `name`."""
    if isinstance(vision_aspect_ratio, str) and vision_aspect_ratio.startswith(ASPECT_PREFIX):
        digits = vision_aspect_ratio.removeprefix(ASPECT_PREFIX)
        if digits.isascii() and digits.isdigit() and int(digits) >= 1:
            return int(digits)
    raise ValueError(
        f"{name} must be '{ASPECT_PREFIX}N' with N a positive integer (e.g. '{ASPECT_PREFIX}9'), "
        f"got {vision_aspect_ratio!r}"
    )


def image_grids(config, image_sizes, batch_num_images=None, vision_aspect_ratio=None):
    """Per image: its TileGrid, or None for an image of a multi-image prompt (one crop, stock rule)."""
    vision = config.vision_config
    tile, side = vision.image_size, vision.image_size // vision.patch_size
    if vision_aspect_ratio is None:
        max_area = max_tiles(config.vision_aspect_ratio, "config.vision_aspect_ratio")
    else:
        max_area = max_tiles(vision_aspect_ratio)
    patched = (
        [True] * len(image_sizes)
        if batch_num_images is None
        else [int(n) == 1 for n in batch_num_images for _ in range(int(n))]
    )
    return [
        tile_grid(size, config.image_grid_pinpoints, tile, side, max_area=max_area) if use_tiles else None
        for size, use_tiles in zip(image_sizes, patched)
    ]


def _grids_from_call(config, given):
    return image_grids(config, given["image_sizes"], given.get("batch_num_images"), given.get("vision_aspect_ratio"))


def _image_features(host: Host):
    inner, config = host.inner, host.config

    def get_image_features(
        pixel_values,
        image_sizes,
        vision_feature_layer=None,
        vision_feature_select_strategy=None,
        vision_aspect_ratio=None,
        batch_num_images=None,
        **kwargs,
    ):
        host.check_strategy(vision_feature_select_strategy)
        grids = image_grids(config, image_sizes, batch_num_images, vision_aspect_ratio)
        crops = llava_next.gather_crops(pixel_values, [1 + g.rows * g.cols if g is not None else 1 for g in grids])
        vision = siglip.encode(inner.vision_tower, crops, host.layer(vision_feature_layer), host.asked)
        projector = inner.multi_modal_projector
        host.project(vision, projector)
        tokens = llava_next.native_tokens(host, vision, grids, projector, inner.image_newline)
        return BaseModelOutputWithPooling(last_hidden_state=vision.features, pooler_output=tokens)

    return get_image_features


def _video_features(host: Host, video_token_num, video_split):
    inner = host.inner

    def get_video_features(
        pixel_values_videos, vision_feature_layer=None, vision_feature_select_strategy=None, **kwargs
    ):
        host.check_strategy(vision_feature_select_strategy)
        videos, num_frames = pixel_values_videos.shape[:2]
        layer = host.layer(vision_feature_layer)
        vision = siglip.encode(inner.vision_tower, pixel_values_videos.flatten(0, 1), layer, host.asked)
        pooled = inner.apply_pooling(vision.features)  # the stock pooling, here on pre-projector features
        side = int(round(pooled.shape[1] ** 0.5))
        attention = None
        if vision.received_attention is not None:
            attention = inner.apply_pooling(vision.received_attention.transpose(1, 2)).transpose(1, 2)
        stock_tokens = inner.apply_pooling(inner.multi_modal_projector(vision.features))
        pooled_vision = VisionFeatures(pooled, (side, side), received_attention=attention)
        if PROJECTED in host.pruner.requires:  # the stock frame tokens are projected, then pooled
            pooled_vision.projected = stock_tokens
        tokens = video_tokens(host, pooled_vision, num_frames, video_token_num, video_split, frame_tokens=stock_tokens)
        newline = inner.image_newline.to(tokens.dtype)[None, None].expand(videos, 1, -1)
        return BaseModelOutputWithPooling(
            last_hidden_state=vision.features, pooler_output=torch.cat([tokens, newline], dim=1)
        )

    return get_video_features


def pooled_tokens_per_frame(config) -> int:
    side = config.vision_config.image_size // config.vision_config.patch_size
    return (-(-side // 2)) ** 2


def _counts(host: Host, videos, video_token_num, video_split) -> tuple[int, int]:
    """Each video's tokens end with one newline token, kept."""
    num_frames, per_frame = videos.shape[1], pooled_tokens_per_frame(host.config)
    return num_frames * per_frame + 1, tokens_per_video(
        host.pruner, per_frame, num_frames, video_token_num, video_split=video_split
    ) + 1
