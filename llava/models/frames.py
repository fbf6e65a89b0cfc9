"""Pruning the frames of a video: one budget per frame, or one total budget across a video's frames.

* Per frame (default): every frame is pruned on its own to `visual_token_num` tokens with its own
  attention signal, as FasterVLM's Video-LLaVA branch (VisPruner's predecessor) does.
* Joint (`video_token_num=K`, `video_split="joint"`, the default): the frames of one video are pruned
  together, as one tall map of F x rows x cols tokens whose attention each comes from its own frame,
  so the method chooses how many tokens each frame keeps (K in total). Tokens stay in frame order,
  raster order inside a frame.
* Even (`video_token_num=K, video_split="even"`): each frame pruned on its own to K // F tokens, the
  first K % F frames one more (the paper's Video-LLaVA totals, e.g. 455 = 7 x 57 + 56, with the
  per-frame selection of FasterVLM's Video-LLaVA code).

Hosts pass frame features before the projector, and the tokens a frame feeds the language model:
either the projector applied to the kept features, or (where the stock model pools after the
projector, as LLaVA-OneVision does) picked from the stock frame tokens. Leading per-frame tokens
(Video-LLaVA's [CLS]) are always kept and come first in their frame.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..pruning.base import VisionFeatures, check_token_num
from .common import Host, has_select, prune
from .runs import rewrite_placeholders

SPLITS = ("joint", "even")


def video_rewrite(host: Host, counts: Callable[[torch.Tensor], tuple[int, int]]):
    """The forward/generate rewrite that shrinks each video's placeholder run: `counts(pixel_values_videos)`
    gives (placeholders the processor writes per video, tokens kept per video)."""

    def rewrite(given):
        videos = given.get("pixel_values_videos")
        if videos is None:
            return None
        written, kept = counts(videos)
        number = videos.shape[0]
        return rewrite_placeholders(given, host.config.video_token_id, [written] * number, [kept] * number, host.pad_id)

    return rewrite


def check_video_budget(host: Host, video_token_num, video_split: str):
    """`video_token_num` checked (None: a budget per frame), with the way it is split over frames."""
    if video_split not in SPLITS:
        raise ValueError(
            f"video_split must be one of {', '.join(map(repr, SPLITS))} for {host.name}, got {video_split!r}"
        )
    if video_token_num is None:
        return None
    if host.inside:
        raise ValueError(
            f"video_token_num is for methods pruning before the language model; {host.pruner.name} keeps "
            "visual_token_num tokens per video"
        )
    video_token_num = check_token_num(video_token_num, "video_token_num")
    if host.merger is not None:
        raise ValueError(
            f"{host.pruner.name!r} merges inside the encoder down to visual_token_num per frame; video_token_num "
            "cannot change that: leave it unset"
        )
    if video_split == "joint" and not has_select(host.pruner):
        raise ValueError(
            f"video_token_num with video_split='joint' (frames compete for one total) needs a method that "
            f"selects tokens; {host.pruner.name!r} merges them. Use video_split='even' or leave video_token_num "
            f"unset to prune each frame for {host.name}"
        )
    return video_token_num


def frame_budgets(video_token_num: int, num_frames: int, frame_tokens: int) -> list[int]:
    """`video_split='even'`: the total spread over the frames, the first `total % frames` one more."""
    total = min(video_token_num, num_frames * frame_tokens)
    share, extra = divmod(total, num_frames)
    return [share + (frame < extra) for frame in range(num_frames)]


def tokens_per_video(
    pruner, frame_tokens: int, num_frames: int, video_token_num: int | None, lead: int = 0, video_split: str = "joint"
) -> int:
    """Tokens one pruned video feeds the language model (leading tokens included)."""
    if video_token_num is None:
        return num_frames * (pruner.kept_per_image(frame_tokens) + lead)
    if video_split == "even":  # a merging method may keep fewer than a frame's budget (pool: a whole grid)
        budgets = frame_budgets(video_token_num, num_frames, frame_tokens)
        return (
            sum(pruner.with_budget(b).kept_per_image(frame_tokens) if b > 0 else 0 for b in budgets) + num_frames * lead
        )
    return min(video_token_num, num_frames * frame_tokens) + num_frames * lead


def video_tokens(
    host: Host,
    vision: VisionFeatures,
    num_frames: int,
    video_token_num: int | None,
    video_split: str = "joint",
    project: Callable[[torch.Tensor], torch.Tensor] | None = None,
    frame_tokens: torch.Tensor | None = None,
    lead: torch.Tensor | None = None,
) -> torch.Tensor:
    """[videos, K, D] language-model tokens of the videos whose frames are `vision` ([videos*F, n, C]).

    project: the projector, applied to kept features; frame_tokens: [videos*F, n, D] stock tokens
    to pick kept ones from instead; lead: [videos*F, l, D] tokens kept in front of every frame."""
    frames, per_frame, _ = vision.features.shape
    if video_token_num is None:
        budgets = [host.pruner.kept_per_image(per_frame)] * num_frames
    elif video_split == "even":
        budgets = frame_budgets(video_token_num, num_frames, per_frame)
    else:
        return torch.stack(
            [
                _joint_video(host, vision, video, num_frames, video_token_num, project, frame_tokens, lead)
                for video in range(frames // num_frames)
            ]
        )
    groups = {b: [f for f in range(frames) if budgets[f % num_frames] == b] for b in sorted(set(budgets))}
    kept: list = [None] * frames
    for budget, numbers in groups.items():  # frame numbers known on the host: no device round trip
        whole = len(numbers) == frames
        rows = torch.tensor(numbers, device=vision.features.device)
        pruned = prune(host.pruner, vision if whole else vision.take(rows), budget, host.split)
        if host.tracer is not None:
            labels = [("frame", frame // num_frames, frame % num_frames) for frame in numbers]
            host.tracer.add_rows("video", vision.grid, labels, pruned.indices, pruned.important)
        stock, leads = (frame_tokens, lead) if whole else (_rows(frame_tokens, rows), _rows(lead, rows))
        tokens = _tokens_of(host, pruned, stock, project)
        if leads is not None:
            tokens = torch.cat([leads, tokens], dim=1)
        if whole:  # one budget for every frame: already in frame order
            return tokens.reshape(frames // num_frames, -1, tokens.shape[-1])
        for row, frame in enumerate(numbers):
            kept[frame] = tokens[row]
    return torch.stack([torch.cat(kept[start : start + num_frames]) for start in range(0, frames, num_frames)])


def _rows(tensor: torch.Tensor | None, rows: torch.Tensor) -> torch.Tensor | None:
    return None if tensor is None else tensor[rows]


def _tokens_of(host: Host, pruned, stock: torch.Tensor | None, project):
    if stock is None:
        return host.tokens(pruned, project)
    return stock.gather(1, pruned.indices[..., None].expand(-1, -1, stock.shape[-1]))


def _joint_video(host, vision, video, num_frames, video_token_num, project, frame_tokens, lead):
    """One video pruned as one tall map of its frames (each token with its own frame's signal)."""
    span = slice(video * num_frames, (video + 1) * num_frames)
    frames = vision.take(span)
    per_frame = frames.features.shape[1]
    rows, cols = vision.grid

    def stacked(tensor):
        return None if tensor is None else tensor.reshape(1, num_frames * per_frame, -1)

    attention, signal = frames.importance, frames.importance_signal
    joint = VisionFeatures(
        stacked(frames.features),
        (num_frames * rows, cols),
        projected=stacked(frames.projected),
        **({} if signal is None else {signal: attention.transpose(0, 1).reshape(1, attention.shape[1], -1)}),
    )
    pruned = prune(host.pruner, joint, video_token_num, host.split)
    if host.tracer is not None:
        host.tracer.add_video(video, vision.grid, num_frames, *pruned.row(0))
    stock = None if frame_tokens is None else stacked(frame_tokens[span])
    tokens = _tokens_of(host, pruned, stock, project)[0]
    if lead is not None:
        tokens = _with_leads(tokens, pruned.indices[0], lead[span], per_frame)
    return tokens


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
