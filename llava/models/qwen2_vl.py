"""Pruning for `Qwen2VLForConditionalGeneration` and `Qwen2_5_VLForConditionalGeneration`, per instance.

Vision-side methods: each image's and each video's merged tokens (t*h*w/4 of them, dynamic
resolution; a video's frames stacked as rows of one grid) are pruned to `visual_token_num` per
image or video, with the mean attention they receive standing in for [CLS] attention
(`qwen_vision.py`); DivPrune's "projected" tokens are the merger's output, the tokens the language
model sees. Methods that merge tokens are refused: M-RoPE needs each kept token's own position.

M-RoPE: the kept tokens keep the 3D (t, h, w) positions they have in the unpruned prompt, and the
text keeps its positions too. The positions are computed by the stock `get_rope_index` on the
unpruned prompt (images and videos together), the pruned placeholders' columns are dropped, and the
result is passed as explicit `position_ids` ([3, B, L] to `forward`; [4, B, L] with the text row to
`generate`, as stock generation builds them); `model.model.rope_deltas` is set for the shorter
sequence, so decoding continues at the unpruned prompt's next position. With nothing pruned,
positions, inputs and generated tokens equal the stock model's.

In-LLM methods (FastV, PDrop, SparseVLM) leave encoding and placeholders alone and prune inside the
language model (`inside.py`, `decoder.py`, which handles M-RoPE positions); each image and each
video is one item with its own budget.

Qwen3-VL (`qwen3_vl.py`) is served by the same code (`attach_family`, its `Family` writing each video
frame as a run of its own; its DeepStack levels kept at the same indices as the merged tokens).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from ..patching import InstancePatch
from ..pruning.base import TokenPruner, VisionFeatures
from ..trace import Tracer
from . import decoder, inside, qwen_vision
from .common import DROP, Host, has_select, patch_forward, patch_generate, prune
from .runs import placeholder_runs, retile, splits_into

HOST = "Qwen2-VL / Qwen2.5-VL"
# Per kind of visual input: (its encoder on model.model, its pixels argument, its grid argument).
ENCODERS = {
    "image": ("get_image_features", "pixel_values", "image_grid_thw"),
    "video": ("get_video_features", "pixel_values_videos", "video_grid_thw"),
}


@dataclass
class PrunedVisualOutput(BaseModelOutputWithPooling):
    """The stock output plus, per image (video), the kept merged-token indices [k] (ascending); for a
    tower with DeepStack levels (Qwen3-VL), each level's features at those same indices, per level a
    tuple over the items (the stock `deepstack_features` layout)."""

    kept_indices: tuple[torch.Tensor, ...] | None = None
    deepstack_features: list[tuple[torch.Tensor, ...]] | None = None


@dataclass(frozen=True)
class Family:
    """What differs between the Qwen-VL generations this module serves: the name messages use, and
    whether each video frame is a placeholder run of its own (Qwen3-VL writes a timestamp before each
    frame) rather than a video being one run."""

    name: str
    frame_runs: bool = False

    def runs(self, source: str, grid_thw: torch.Tensor, unit: int) -> list[int]:
        """The placeholder runs the items of `grid_thw` [N, 3] need, in prompt order."""
        if source == "video" and self.frame_runs:
            return (grid_thw[:, 1:].prod(-1) // unit).repeat_interleave(grid_thw[:, 0]).tolist()
        return (grid_thw.prod(-1) // unit).tolist()


QWEN2 = Family(HOST)


def attach(model, pruner: TokenPruner, patch: InstancePatch, tracer: Tracer | None = None) -> None:
    attach_family(QWEN2, model, pruner, patch, tracer)


def attach_family(family: Family, model, pruner: TokenPruner, patch: InstancePatch, tracer: Tracer | None) -> None:
    """Attach pruning to a model of a Qwen-VL generation `family` (its encoder is `qwen_vision.py`'s)."""
    name = family.name
    host = Host(model, pruner, patch, tracer, name, qwen_vision.SIGNALS, qwen_vision.NOTE, strategy=None)
    if not host.inside and not has_select(pruner):  # M-RoPE refuses it, whatever signals it needs
        raise ValueError(f"method {pruner.name!r} merges tokens; {name} needs kept positions for M-RoPE")
    host.check_signals()
    config = model.config
    if host.inside:
        video = config.video_token_id
        unit = config.vision_config.spatial_merge_size**2
        spans = (lambda given: _video_counts(given, video, unit)) if family.frame_runs else None
        inside.attach(host, inside.Placeholders({config.image_token_id: "image", video: "video"}, spans=spans))
        for encoder, _, _ in ENCODERS.values():  # the stock forward hands its keywords to the encoders too
            host.patch_encoder(encoder, _without_marks)
        patch_forward(model, patch, lambda given: _check_prompt(host, family, given))
        patch_generate(model, patch, lambda given: _check_prompt(host, family, given))
        return
    for source, (encoder, _, _) in ENCODERS.items():
        host.patch_encoder(encoder, lambda stock, source=source: _pruned_features(host, source, stock))
    patch_forward(model, patch, lambda given: _rewrite(host, family, given, text_row=False))
    patch_generate(model, patch, lambda given: _rewrite(host, family, given, text_row=True))


def _video_counts(given: dict, video_token_id: int, unit: int) -> dict[int, torch.Tensor]:
    """Each video's placeholder count (`inside.Placeholders.spans`), from its grid or, in a generate's
    prefill (which passes the encoded videos and no grids), from its encoded tokens."""
    grid = given.get("video_grid_thw")
    if grid is not None:
        return {video_token_id: grid.prod(-1) // unit}
    encoded = (given.get("mm_encoder_outputs") or {}).get("video")
    if encoded is None:
        return {}
    return {video_token_id: torch.tensor([len(tokens) for tokens in encoded.pooler_output])}


def _without_marks(stock):
    """The stock encoder without the in-LLM marks (`decoder.IMAGE_INDEX_KWARG`), which are meant for
    the language model only."""

    def encode(*args, **kwargs):
        kwargs.pop(decoder.IMAGE_INDEX_KWARG, None)
        return stock(*args, **{**kwargs, "return_dict": True})

    return encode


def _pruned_features(host: Host, source: str, stock):
    """`get_image_features` / `get_video_features` (called as the stock one, by position or by name):
    the tower once, then each image (video) pruned on its own."""
    inner, signals = host.inner, host.asked
    signature = inspect.signature(stock)
    _, pixels_name, grid_name = ENCODERS[source]

    def encode(*args, **kwargs):
        given = signature.bind_partial(*args, **kwargs).arguments
        pixel_values, grid_thw = given.get(pixels_name), given.get(grid_name)
        if pixel_values is None or grid_thw is None:
            raise ValueError(f"pruning {host.name} encodes with {pixels_name} and {grid_name}; pass both")
        merged = qwen_vision.encode(inner.visual, pixel_values, grid_thw, signals)
        tokens = merged.tokens.split(merged.counts)
        features = merged.features.split(merged.counts)
        attention = (
            merged.attention.split(merged.counts, dim=-1) if merged.attention is not None else [None] * len(tokens)
        )
        kept_tokens, kept = [], []
        for item, parts in enumerate(zip(tokens, features, attention, merged.grids, grid_thw.tolist())):
            item_tokens, indices = _prune_item(host, source, item, *parts)
            kept_tokens.append(item_tokens)
            kept.append(indices)
        deepstack = [  # the language model adds these at the kept tokens: the same indices
            tuple(part[indices] for part, indices in zip(level.split(merged.counts), kept))
            for level in merged.deepstack
        ]
        return PrunedVisualOutput(
            last_hidden_state=merged.features,
            pooler_output=tuple(kept_tokens),
            kept_indices=tuple(kept),
            deepstack_features=deepstack or None,
        )

    return encode


def _prune_item(host: Host, source: str, item: int, tokens, features, attention, grid, thw):
    """(kept merged tokens [k, D], their indices [k]) of one image or video, recorded when tracing."""
    vision = VisionFeatures(features[None], grid, received_attention=None if attention is None else attention[None])
    host.project(vision, lambda _features: tokens[None])  # the merger's output is the projected token
    pruned = prune(host.pruner, vision, host.pruner.kept_per_image(tokens.shape[0]), split=host.split)
    indices, important = pruned.row(0)
    if host.tracer is not None:
        if source == "image":
            host.tracer.add("image", item, "image", grid, indices, important)
        else:
            frames, width = thw[0], grid[1]
            host.tracer.add_video(item, (grid[0] // frames, width), frames, indices, important)
    return host.tokens(pruned, lambda _features: tokens[None, indices])[0], indices


def _rewrite(host: Host, family: Family, given: dict, text_row: bool):
    """Every image's and video's placeholders cut to the kept ones, with their stock M-RoPE positions."""
    input_ids = given.get("input_ids")
    config = host.config
    unit = config.vision_config.spatial_merge_size**2
    token_ids = {"image": config.image_token_id, "video": config.video_token_id}
    present = {
        source: (name, given[pixels], given.get(grid))
        for source, (name, pixels, grid) in ENCODERS.items()
        if given.get(pixels) is not None
    }
    if input_ids is None or not present or any(grid is None for _, _, grid in present.values()):
        return None
    for source, (_, _, grid) in present.items():
        _check_runs(given, family, source, token_ids[source], family.runs(source, grid, unit))
    mm_token_type_ids, mask = given.get("mm_token_type_ids"), given.get("attention_mask")
    if mm_token_type_ids is None:
        raise ValueError(
            f"pruning {family.name} needs mm_token_type_ids (the processor returns them) to place M-RoPE positions"
        )
    grids = {grid: given.get(grid) for _, _, grid in ENCODERS.values()}
    timing = {} if given.get("second_per_grid_ts") is None else {"second_per_grid_ts": given["second_per_grid_ts"]}
    positions, _ = host.inner.get_rope_index(
        input_ids, mm_token_type_ids=mm_token_type_ids, attention_mask=mask, **grids, **timing
    )
    keep = torch.ones_like(input_ids, dtype=torch.long)
    encoded = {}
    for source, (name, pixels, grid) in present.items():
        encoded[source] = getattr(host.inner, name)(pixels, grid)
        flags = [torch.zeros(count, dtype=torch.long, device=input_ids.device) for count in (grid.prod(-1) // unit)]
        for item_flags, indices in zip(flags, encoded[source].kept_indices):
            item_flags[indices.to(input_ids.device)] = 1
        keep[input_ids == token_ids[source]] = torch.cat(flags)
    return _retiled(host, given, keep, positions, text_row) | {
        "pixel_values": DROP,
        "pixel_values_videos": DROP,
        "mm_encoder_outputs": encoded,
    }


def _check_prompt(host: Host, family: Family, given: dict) -> None:
    """In-LLM methods keep the placeholders: the prompt's runs are checked against the grids (no rewrite)."""
    input_ids, config = given.get("input_ids"), host.config
    if input_ids is None:
        return None
    unit = config.vision_config.spatial_merge_size**2
    token_ids = {"image": config.image_token_id, "video": config.video_token_id}
    for source, (_, pixels, grid) in ENCODERS.items():
        if given.get(pixels) is not None and given.get(grid) is not None:
            _check_runs(given, family, source, token_ids[source], family.runs(source, given[grid], unit))
    return None


def _check_runs(given: dict, family: Family, source: str, token_id: int, need: list[int]) -> None:
    """The prompt must hold each image's (video's, or video frame's) full run of placeholders, as the
    processor writes them: pruning picks the kept ones out of those runs (a generate's own steps never
    get here with pixels)."""
    input_ids = given["input_ids"]
    run = "frame" if source == "video" and family.frame_runs else source
    grid_name = ENCODERS[source][2]
    items = len(given[grid_name])
    found = int((input_ids == token_id).sum())
    if found != sum(need):
        raise ValueError(
            f"pruning {family.name}: the prompt holds {found} {source} placeholders (token {token_id}); the {items} "
            f"{source}(s) passed ({grid_name}) need {sum(need)} ({', '.join(map(str, need))}), one run per {run} "
            "as the processor writes them"
        )
    runs = placeholder_runs(input_ids, token_id, given.get("attention_mask"))
    if (runs != need) if run == "frame" else not splits_into(runs, need):  # frames never share a run
        raise ValueError(
            f"pruning {family.name}: the prompt's runs of {source} placeholders (token {token_id}) are "
            f"{', '.join(map(str, runs))} long; the {items} {source}(s) passed ({grid_name}) need one run "
            f"{'per frame' if run == 'frame' else 'each'} of {', '.join(map(str, need))}, in order"
        )


def _retiled(host: Host, given: dict, keep: torch.Tensor, positions: torch.Tensor, text_row: bool) -> dict:
    """The prompt arguments with the tokens `keep` [B, L] (0 or 1) says, and `rope_deltas` to match."""
    mask = given.get("attention_mask")
    tensors = [
        (given["input_ids"], host.pad_id),
        (given["mm_token_type_ids"], 0),
        (given.get("labels"), -100),
        (positions, 0),
    ]
    (ids, token_types, labels, positions), new_mask = retile(keep, tensors, mask)
    lengths = new_mask.sum(-1) if new_mask is not None else torch.full((ids.shape[0],), ids.shape[1], device=ids.device)
    host.inner.rope_deltas = (positions.amax(dim=(0, 2)) + 1 - lengths)[:, None]  # as get_rope_index reports them
    if text_row:
        text = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)
        if new_mask is not None:
            text = (new_mask.long().cumsum(-1) - 1).masked_fill(new_mask == 0, 0)
        positions = torch.cat([text[None], positions])
    return {
        "input_ids": ids,
        "attention_mask": new_mask,
        "labels": labels,
        "mm_token_type_ids": token_types,
        "position_ids": positions,
    }
