"""Pruning for `VideoLlavaForConditionalGeneration` (Video-LLaVA), patched per instance.

Video-LLaVA has two CLIP towers. Images (`image_tower`) go the LLaVA-1.5 way: N patch tokens, [CLS]
dropped, pruned to `visual_token_num`. Videos (`video_tower`, 8 frames): stock transformers, like
the original Video-LLaVA code, feeds every frame's [CLS] token followed by its N patch tokens
(8 x (256 + 1) = 2056 for the 7B model). The paper counts 8 x 256 = 2048, as FasterVLM's
Video-LLaVA code does, which drops each frame's [CLS]: `frame_cls=False` does the same (the
processor's placeholders are rewritten to match), `frame_cls=True` (default) keeps each frame's
[CLS] in front of its kept patch tokens, outside the budget.

Budgets: `visual_token_num` per frame, or `video_token_num=K` per video, chosen across the frames
(`video_split="joint"`) or spread evenly (`"even"`: the paper's 455 = 7 x 57 + 56); see `frames.py`.
In-LLM methods keep `visual_token_num` per image and per video (the paper's FastV rows: 455 of a
video's 2048 tokens), with `frame_cls=False` dropping the [CLS] tokens before the language model.
"""

from __future__ import annotations

from transformers.modeling_outputs import BaseModelOutputWithPooling

from ..patching import InstancePatch
from ..pruning.base import TokenPruner
from ..trace import Tracer
from . import clip, inside
from .common import Host, prune
from .frames import check_video_budget, tokens_per_video, video_rewrite, video_tokens
from .runs import rewrite_placeholders

HOST = "Video-LLaVA"


def attach(
    model,
    pruner: TokenPruner,
    patch: InstancePatch,
    tracer: Tracer | None = None,
    *,
    video_token_num: int | None = None,
    video_split: str = "joint",
    frame_cls: bool = True,
) -> None:
    if not isinstance(frame_cls, bool):
        raise ValueError(f"frame_cls must be True or False, got {frame_cls!r}")
    host = Host(model, pruner, patch, tracer, HOST, clip.SIGNALS)
    host.check_signals()
    config = model.config
    side = config.vision_config.image_size // config.vision_config.patch_size
    video_token_num = check_video_budget(host, video_token_num, video_split)
    if host.inside:
        host.check_item_tokens(side * side)
        if not frame_cls:
            host.patch_encoder("get_video_features", lambda stock: _stock_video_features(host, stock))
        host.rewrite_prompts(  # frame_cls=False drops each frame's [CLS] placeholder; else counts are checked
            lambda given: _image_rewrite(host, given),
            video_rewrite(host, lambda videos: _counts(host, videos, None, frame_cls=frame_cls)),
        )
        placeholders = {config.image_token_id: "image", config.video_token_id: "video"}
        grids = {config.image_token_id: (side, side)}
        inside.attach(host, inside.Placeholders(placeholders, {config.image_token_id: side * side}, grids))
        return
    depth = clip.feature_depth_of(config.vision_config.num_hidden_layers, config.vision_feature_layer)
    host.check_merge_schedule(side * side, depth)
    host.patch_encoder("get_image_features", lambda stock: _image_features(host))
    host.patch_encoder(
        "get_video_features", lambda stock: _video_features(host, video_token_num, video_split, frame_cls)
    )
    host.rewrite_prompts(
        lambda given: _image_rewrite(host, given),
        video_rewrite(host, lambda videos: _counts(host, videos, video_token_num, frame_cls, video_split)),
    )


def _image_features(host: Host):
    inner, pruner = host.inner, host.pruner

    def get_image_features(
        pixel_values=None,
        pixel_values_images=None,
        vision_feature_layer=None,
        vision_feature_select_strategy=None,
        **kwargs,
    ):
        pixel_values = pixel_values if pixel_values is not None else pixel_values_images
        host.check_strategy(vision_feature_select_strategy, " images")
        layer = host.layer(vision_feature_layer)
        vision = clip.encode(inner.image_tower, pixel_values, layer, host.asked, host.merger)
        host.project(vision, inner.multi_modal_projector)
        pruned = prune(pruner, vision, pruner.kept_per_image(vision.grid[0] * vision.grid[1]), host.split)
        if host.tracer is not None:
            labels = [("image", item, 0) for item in range(vision.features.shape[0])]
            host.tracer.add_rows("image", vision.grid, labels, pruned.indices, pruned.important)
        tokens = host.tokens(pruned, inner.multi_modal_projector)
        return BaseModelOutputWithPooling(last_hidden_state=vision.features, pooler_output=tokens)

    return get_image_features


def _video_features(host: Host, video_token_num, video_split, frame_cls):
    inner = host.inner

    def get_video_features(pixel_values_videos, vision_feature_layer=None, **kwargs):
        num_frames = pixel_values_videos.shape[1]
        frames = pixel_values_videos.flatten(0, 1)
        signals = host.asked | ({"cls_token"} if frame_cls else set())
        vision = clip.encode(inner.video_tower, frames, host.layer(vision_feature_layer), signals, host.merger)
        project = inner.multi_modal_projector
        host.project(vision, project)
        lead = project(vision.cls_token[:, None]) if frame_cls else None
        tokens = video_tokens(host, vision, num_frames, video_token_num, video_split, project=project, lead=lead)
        return BaseModelOutputWithPooling(last_hidden_state=vision.features, pooler_output=tokens)

    return get_video_features


def _stock_video_features(host: Host, stock):
    """The stock video tokens without each frame's [CLS] (for in-LLM methods with frame_cls=False)."""

    def get_video_features(pixel_values_videos, *args, **kwargs):
        output = stock(pixel_values_videos, *args, **{**kwargs, "return_dict": True})
        output.pooler_output = output.pooler_output[:, 1:]  # [frames, 1 + N, D], [CLS] first
        return output

    return get_video_features


def _counts(host: Host, videos, video_token_num, frame_cls: bool, video_split: str = "joint") -> tuple[int, int]:
    """(placeholders the processor writes per video: each frame's [CLS] and patches, tokens fed per video)."""
    num_frames, num_tokens = videos.shape[1], clip.tokens_per_image(videos, host.inner.video_tower)
    lead = 1 if frame_cls else 0
    written = num_frames * (num_tokens + 1)
    if host.inside:  # every patch token reaches the language model, which prunes
        return written, num_frames * (num_tokens + lead)
    return written, tokens_per_video(host.pruner, num_tokens, num_frames, video_token_num, lead, video_split)


def _image_rewrite(host: Host, given: dict):
    pixel_values = given.get("pixel_values")
    pixel_values = pixel_values if pixel_values is not None else given.get("pixel_values_images")
    if pixel_values is None:
        return None
    num_tokens = clip.tokens_per_image(pixel_values, host.inner.image_tower)
    kept = num_tokens if host.inside else host.pruner.kept_per_image(num_tokens)
    images = pixel_values.shape[0]
    return rewrite_placeholders(
        given, host.config.image_token_id, [num_tokens] * images, [kept] * images, host.pad_id, kind="image"
    )
