"""Pruning for `Qwen2VLForConditionalGeneration` and `Qwen2_5_VLForConditionalGeneration`, per instance.

Each image's merged tokens (t*h*w/4 of them, dynamic resolution) are pruned to `visual_token_num`
with the mean attention they receive (`qwen_vision.py`, standing in for [CLS] attention).

M-RoPE: the kept tokens keep the 3D (t, h, w) positions they have in the unpruned prompt, and the
text keeps its positions too. The positions are computed by the stock `get_rope_index` on the
unpruned prompt, the pruned placeholders' columns are dropped, and the result is passed as explicit
`position_ids` ([3, B, L] to `forward`; [4, B, L] with the text row to `generate`, as stock
generation builds them); `model.model.rope_deltas` is set for the shorter sequence, so decoding
continues at the unpruned prompt's next position. With nothing pruned, positions, inputs and
generated tokens equal the stock model's.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from ..patching import InstancePatch
from ..pruning.base import VisionFeatures, VisionTokenPruner, check_signals
from ..trace import Tracer
from . import qwen_vision
from .common import CLS_ATTENTION, DROP, has_select, patch_forward, patch_generate, prune
from .runs import retile

HOST = "Qwen2-VL / Qwen2.5-VL"
SIGNAL_NOTE = " (no [CLS]: 'cls_attention' is served as the mean attention each merged token receives)"


@dataclass
class PrunedImageOutput(BaseModelOutputWithPooling):
    """The stock output plus, per image, the kept merged-token indices [k] (ascending)."""

    kept_indices: tuple[torch.Tensor, ...] | None = None


def attach(model, pruner: VisionTokenPruner, patch: InstancePatch, tracer: Tracer | None = None) -> None:
    check_signals(pruner, {CLS_ATTENTION}, HOST, SIGNAL_NOTE)
    if not has_select(pruner):
        raise ValueError(f"method {pruner.name!r} merges tokens; {HOST} needs kept positions for M-RoPE")
    inner = model.model
    patch.set(inner, "get_image_features", _image_features(inner, pruner, tracer))
    patch_forward(model, patch, _rewrite(model, text_row=False))
    patch_generate(model, patch, _rewrite(model, text_row=True))


def _image_features(inner, pruner, tracer):
    stock = inner.get_image_features

    @functools.wraps(stock)
    def get_image_features(pixel_values, image_grid_thw=None, **kwargs):
        merged = qwen_vision.encode(inner.visual, pixel_values, image_grid_thw, CLS_ATTENTION in pruner.requires)
        tokens, kept = [], []
        features = merged.features.split(merged.counts)
        attention = (
            merged.attention.split(merged.counts, dim=-1) if merged.attention is not None else [None] * len(features)
        )
        parts = zip(merged.tokens.split(merged.counts), features, attention, merged.grids)
        for item, (image_tokens, image_features, image_attention, grid) in enumerate(parts):
            vision = VisionFeatures(
                image_features[None], grid, None if image_attention is None else image_attention[None]
            )
            pruned = prune(pruner, vision, pruner.kept_per_image(image_features.shape[0]), split=tracer is not None)
            if tracer is not None:
                tracer.add("image", item, "image", grid, *pruned.row(0))
            indices = pruned.indices
            tokens.append(image_tokens[indices[0]])
            kept.append(indices[0])
        output = PrunedImageOutput(
            last_hidden_state=merged.features, pooler_output=tuple(tokens), kept_indices=tuple(kept)
        )
        return output if kwargs.get("return_dict", True) else output.to_tuple()

    return get_image_features


def _rewrite(model, text_row: bool):
    inner = model.model
    config = model.config
    pad = config.text_config.pad_token_id
    pad = 0 if pad is None else pad
    unit = config.vision_config.spatial_merge_size**2

    def rewrite(given):
        pixel_values, input_ids, grid_thw = (
            given.get("pixel_values"),
            given.get("input_ids"),
            given.get("image_grid_thw"),
        )
        if pixel_values is None or input_ids is None or grid_thw is None:
            return None
        if given.get("pixel_values_videos") is not None:
            raise ValueError(f"pruning {HOST} prunes images; videos (pixel_values_videos) are not supported yet")
        is_image = input_ids == config.image_token_id
        per_image = (grid_thw.prod(-1) // unit).tolist()
        if int(is_image.sum()) != sum(per_image):
            return None  # not the processor's full runs (already rewritten); the stock checks apply
        mm_token_type_ids, mask = given.get("mm_token_type_ids"), given.get("attention_mask")
        if mm_token_type_ids is None:
            raise ValueError(
                "pruning Qwen2-VL needs mm_token_type_ids (the processor returns them) to place M-RoPE positions"
            )
        positions, _ = inner.get_rope_index(
            input_ids, mm_token_type_ids=mm_token_type_ids, image_grid_thw=grid_thw, attention_mask=mask
        )
        images = inner.get_image_features(pixel_values, grid_thw)
        kept = [torch.zeros(count, dtype=torch.bool, device=input_ids.device) for count in per_image]
        for flags, indices in zip(kept, images.kept_indices):
            flags[indices] = True
        keep = torch.ones_like(input_ids, dtype=torch.long)
        keep[is_image] = torch.cat(kept).long()
        (ids, token_types, labels, positions), new_mask = retile(
            keep, [(input_ids, pad), (mm_token_type_ids, 0), (given.get("labels"), -100), (positions, 0)], mask
        )
        lengths = (
            new_mask.sum(-1) if new_mask is not None else torch.full((ids.shape[0],), ids.shape[1], device=ids.device)
        )
        inner.rope_deltas = (positions.amax(dim=(0, 2)) + 1 - lengths)[:, None]  # as get_rope_index reports them
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
            "pixel_values": DROP,
            "mm_encoder_outputs": {"image": images},
        }

    return rewrite
