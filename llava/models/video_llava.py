"""Pruning for `VideoLlavaForConditionalGeneration` (Video-LLaVA), patched per instance.

Video-LLaVA has two CLIP towers. Images (`image_tower`) go the LLaVA-1.5 way: N patch tokens, [CLS]
dropped, pruned to `visual_token_num`. Videos (`video_tower`, 8 frames) feed every frame's [CLS]
token followed by its N patch tokens (8 x (256 + 1) for the 7B model). Each frame keeps its [CLS]
token and `visual_token_num` patch tokens chosen with its own [CLS] attention; with
`video_token_num=K` the video keeps K patch tokens in total, chosen across its frames (see
`frames.py`), plus the 8 [CLS] tokens.
"""

from __future__ import annotations

import functools

from transformers.modeling_outputs import BaseModelOutputWithPooling

from ..patching import InstancePatch
from ..pruning.base import VisionFeatures, VisionTokenPruner, check_signals
from ..trace import Tracer
from . import clip
from .common import CLS_ATTENTION, chain, patch_forward, patch_generate, prune
from .frames import check_video_budget, tokens_per_video, video_rewrite, video_tokens
from .placeholders import shrink_image_runs

HOST = "Video-LLaVA"


def attach(
    model,
    pruner: VisionTokenPruner,
    patch: InstancePatch,
    tracer: Tracer | None = None,
    *,
    video_token_num: int | None = None,
) -> None:
    check_signals(pruner, {CLS_ATTENTION}, HOST)
    video_token_num = check_video_budget(video_token_num, pruner, HOST)
    inner = model.model
    patch.set(inner, "get_image_features", _image_features(inner, pruner, tracer))
    patch.set(inner, "get_video_features", _video_features(inner, pruner, video_token_num, tracer))
    rewrite = chain(_image_rewrite(model, pruner), _video_rewrite(model, pruner, video_token_num))
    patch_forward(model, patch, rewrite)
    patch_generate(model, patch, rewrite)


def _layer(inner, vision_feature_layer):
    return inner.config.vision_feature_layer if vision_feature_layer is None else vision_feature_layer


def _image_features(inner, pruner, tracer):
    stock = inner.get_image_features

    @functools.wraps(stock)
    def get_image_features(
        pixel_values=None,
        pixel_values_images=None,
        vision_feature_layer=None,
        vision_feature_select_strategy=None,
        **kwargs,
    ):
        pixel_values = pixel_values if pixel_values is not None else pixel_values_images
        strategy = vision_feature_select_strategy or inner.config.vision_feature_select_strategy
        if strategy != "default":
            raise ValueError(
                f"pruning {HOST} images supports vision_feature_select_strategy='default', got {strategy!r}"
            )
        vision = clip.encode(
            inner.image_tower, pixel_values, _layer(inner, vision_feature_layer), CLS_ATTENTION in pruner.requires
        )
        pruned = prune(pruner, vision, pruner.kept_per_image(vision.features.shape[1]), split=tracer is not None)
        if tracer is not None:
            labels = [("image", item, 0) for item in range(vision.features.shape[0])]
            tracer.add_rows("image", vision.grid, labels, pruned.indices, pruned.important)
        tokens = inner.multi_modal_projector(pruned.features)
        output = BaseModelOutputWithPooling(last_hidden_state=vision.features, pooler_output=tokens)
        return output if kwargs.get("return_dict", True) else output.to_tuple()

    return get_image_features


def _video_features(inner, pruner, video_token_num, tracer):
    stock = inner.get_video_features

    @functools.wraps(stock)
    def get_video_features(pixel_values_videos, vision_feature_layer=None, **kwargs):
        videos, num_frames = pixel_values_videos.shape[:2]
        frames = pixel_values_videos.flatten(0, 1)
        tower = inner.video_tower
        hidden, attention = clip.encode_with_cls(
            tower, frames, _layer(inner, vision_feature_layer), CLS_ATTENTION in pruner.requires
        )
        vision = VisionFeatures(hidden[:, 1:], clip.patch_grid(frames, tower), attention)
        project = inner.multi_modal_projector
        tokens = video_tokens(
            pruner, vision, num_frames, video_token_num, project=project, lead=project(hidden[:, :1]), tracer=tracer
        )
        output = BaseModelOutputWithPooling(last_hidden_state=hidden, pooler_output=tokens)
        return output if kwargs.get("return_dict", True) else output.to_tuple()

    return get_video_features


def _pad(model) -> int:
    pad = model.config.text_config.pad_token_id
    return 0 if pad is None else pad


def _image_rewrite(model, pruner):
    def rewrite(given):
        pixel_values = given.get("pixel_values")
        pixel_values = pixel_values if pixel_values is not None else given.get("pixel_values_images")
        if pixel_values is None or given.get("input_ids") is None:
            return None
        num_tokens = clip.tokens_per_image(pixel_values, model.model.image_tower)
        shrunk = shrink_image_runs(
            given["input_ids"],
            model.config.image_token_id,
            pixel_values.shape[0],
            num_tokens,
            pruner.kept_per_image(num_tokens),
            given.get("attention_mask"),
            given.get("labels"),
            _pad(model),
        )
        return None if shrunk is None else vars(shrunk)

    return rewrite


def _video_rewrite(model, pruner, video_token_num):
    def counts(videos):  # each frame leads with its [CLS] token, kept
        num_frames, num_tokens = videos.shape[1], clip.tokens_per_image(videos, model.model.video_tower)
        return num_frames * (num_tokens + 1), tokens_per_video(pruner, num_tokens, num_frames, video_token_num, lead=1)

    return video_rewrite(model, counts)
