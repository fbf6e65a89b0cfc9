"""Pruning the frames of a video: one budget per frame, or one total budget across a video's frames.

* Per frame (default): every frame is pruned on its own to `visual_token_num` tokens with its own
  attention signal, as FasterVLM's Video-LLaVA branch (VisPruner's predecessor) does.
* Total (`video_token_num=K`): the frames of one video are pruned together, as one tall map of
  F x rows x cols tokens whose attention each comes from its own frame, so the method chooses how many
  tokens each frame keeps (K in total). Tokens stay in frame order, raster order inside a frame.

Hosts pass frame features before the projector, and the tokens a frame feeds the language model:
either the projector applied to the kept features, or (where the stock model pools after the
projector, as LLaVA-OneVision does) picked from the stock frame tokens. Leading per-frame tokens
(Video-LLaVA's [CLS]) are always kept and come first in their frame.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..pruning.base import VisionFeatures, VisionTokenPruner, check_token_num
from ..trace import Tracer
from .common import has_select, prune
from .placeholders import shrink_image_runs


def video_rewrite(model, counts: Callable[[torch.Tensor], tuple[int, int]]):
    """The forward/generate rewrite that shrinks each video's placeholder run: `counts(pixel_values_videos)`
    gives (placeholders the processor writes per video, tokens kept per video)."""
    pad = model.config.text_config.pad_token_id

    def rewrite(given):
        videos = given.get("pixel_values_videos")
        if videos is None or given.get("input_ids") is None:
            return None
        stock, kept = counts(videos)
        shrunk = shrink_image_runs(
            given["input_ids"],
            model.config.video_token_id,
            videos.shape[0],
            stock,
            kept,
            given.get("attention_mask"),
            given.get("labels"),
            0 if pad is None else pad,
        )
        return None if shrunk is None else vars(shrunk)

    return rewrite


def check_video_budget(video_token_num, pruner: VisionTokenPruner, host: str):
    if video_token_num is None:
        return None
    video_token_num = check_token_num(video_token_num, "video_token_num")
    if not has_select(pruner):
        raise ValueError(
            f"video_token_num (a total budget across frames) needs a method that selects tokens; "
            f"{pruner.name!r} merges them. Leave video_token_num unset to prune each frame for {host}"
        )
    return video_token_num


def tokens_per_video(
    pruner: VisionTokenPruner, frame_tokens: int, num_frames: int, video_token_num: int | None, lead: int = 0
) -> int:
    """Tokens one pruned video feeds the language model (leading tokens included)."""
    if video_token_num is None:
        return num_frames * (pruner.kept_per_image(frame_tokens) + lead)
    return min(video_token_num, num_frames * frame_tokens) + num_frames * lead


def video_tokens(
    pruner: VisionTokenPruner,
    vision: VisionFeatures,
    num_frames: int,
    video_token_num: int | None,
    project: Callable[[torch.Tensor], torch.Tensor] | None = None,
    frame_tokens: torch.Tensor | None = None,
    lead: torch.Tensor | None = None,
    tracer: Tracer | None = None,
) -> torch.Tensor:
    """[videos, K, D] language-model tokens of the videos whose frames are `vision` ([videos*F, n, C]).

    project: the projector, applied to kept features; frame_tokens: [videos*F, n, D] stock tokens
    to pick kept ones from instead; lead: [videos*F, l, D] tokens kept in front of every frame;
    tracer: told what each frame kept (tracing)."""
    frames, per_frame, _ = vision.features.shape
    videos = frames // num_frames
    split = tracer is not None

    def tokens_of(kept, indices, stock):
        if stock is None:
            return project(kept)
        return stock.gather(1, indices[..., None].expand(-1, -1, stock.shape[-1]))

    if video_token_num is None:
        kept, indices, important = prune(pruner, vision, pruner.kept_per_image(per_frame), split)
        if tracer is not None:
            labels = [("frame", frame // num_frames, frame % num_frames) for frame in range(frames)]
            tracer.add_rows("video", vision.grid, labels, indices, important)
        tokens = tokens_of(kept, indices, frame_tokens)
        if lead is not None:
            tokens = torch.cat([lead, tokens], dim=1)
        return tokens.reshape(videos, -1, tokens.shape[-1])

    rows, cols = vision.grid
    attention = vision.cls_attention
    outputs = []
    for video in range(videos):
        span = slice(video * num_frames, (video + 1) * num_frames)
        joint = VisionFeatures(
            vision.features[span].reshape(1, num_frames * per_frame, -1),
            (num_frames * rows, cols),
            None if attention is None else attention[span].transpose(0, 1).reshape(1, attention.shape[1], -1),
        )
        pruned = prune(pruner, joint, video_token_num, split)
        if tracer is not None:
            tracer.add_video(video, vision.grid, num_frames, *pruned.row(0))
        kept, indices, _ = pruned
        stock = None if frame_tokens is None else frame_tokens[span].reshape(1, num_frames * per_frame, -1)
        tokens = tokens_of(kept, indices, stock)[0]
        if lead is not None:
            tokens = _with_leads(tokens, indices[0], lead[span], per_frame)
        outputs.append(tokens)
    return torch.stack(outputs)


def _with_leads(tokens: torch.Tensor, indices: torch.Tensor, lead: torch.Tensor, per_frame: int):
    """Kept tokens [K, D] at `indices` of the joint map, with each frame's leading tokens in front."""
    num_frames, num_lead, _ = lead.shape
    stride = per_frame + num_lead
    frame_of = indices // per_frame
    keys = torch.cat(
        [
            (
                torch.arange(num_frames, device=indices.device)[:, None] * stride
                + torch.arange(num_lead, device=indices.device)
            ).flatten(),
            frame_of * stride + num_lead + indices % per_frame,
        ]
    )
    order = torch.argsort(keys)
    return torch.cat([lead.flatten(0, 1), tokens])[order]
