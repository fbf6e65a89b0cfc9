"""CLIP vision towers (transformers' `CLIPVisionModel`): features and [CLS] attention of one layer.

The stock forward runs every encoder layer and, under SDPA, cannot return attention weights. Here
the tower runs only up to the feature layer (the layers after it feed nothing LLaVA uses) and the
[CLS] query row of that layer is computed from the layer's own projections, so SDPA stays on.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..attention import capture_projections, row_softmax
from ..pruning.base import VisionFeatures

CLS_ROW = slice(0, 1)


def feature_depth(vision_tower: nn.Module, vision_feature_layer: int) -> int:
    """How many encoder layers produce `hidden_states[vision_feature_layer]` (0 = the embeddings)."""
    if not isinstance(vision_feature_layer, int):
        raise ValueError(
            f"pruning needs a single vision_feature_layer (an int such as -2), got {vision_feature_layer!r}"
        )
    num_layers = len(vision_tower.encoder.layers)
    depth = vision_feature_layer if vision_feature_layer >= 0 else num_layers + 1 + vision_feature_layer
    if not 1 <= depth <= num_layers:
        raise ValueError(
            f"vision_feature_layer={vision_feature_layer} names no encoder layer of a {num_layers}-layer tower; "
            f"allowed: 1..{num_layers} or -{num_layers}..-1"
        )
    return depth


def encode(
    vision_tower: nn.Module,
    pixel_values: torch.Tensor,
    vision_feature_layer: int,
    with_cls_attention: bool,
) -> VisionFeatures:
    """Patch features of `vision_feature_layer` ([CLS] dropped) and, if asked, its [CLS] -> patch attention."""
    hidden, cls_attention = encode_with_cls(vision_tower, pixel_values, vision_feature_layer, with_cls_attention)
    return VisionFeatures(features=hidden[:, 1:], grid=patch_grid(pixel_values, vision_tower), cls_attention=cls_attention)


def encode_with_cls(
    vision_tower: nn.Module,
    pixel_values: torch.Tensor,
    vision_feature_layer: int,
    with_cls_attention: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """All tokens of `vision_feature_layer`, [CLS] first ([B, 1 + N, C]), and, if asked, the [CLS] ->
    patch attention of that layer ([B, H, N])."""
    depth = feature_depth(vision_tower, vision_feature_layer)
    hidden = vision_tower.pre_layrnorm(vision_tower.embeddings(pixel_values))
    layers = vision_tower.encoder.layers
    for layer in layers[: depth - 1]:
        hidden = layer(hidden, None)

    last = layers[depth - 1]
    cls_attention = None
    if with_cls_attention:
        attention = last.self_attn
        with capture_projections(attention, CLS_ROW) as projected:
            hidden = last(hidden, None)
        weights = row_softmax(projected["query"], projected["key"], attention.num_heads, attention.scale)
        cls_attention = weights[:, :, 0, 1:]  # drop the [CLS] -> [CLS] entry; not renormalised
    else:
        hidden = last(hidden, None)
    return hidden, cls_attention


def patch_grid(pixel_values: torch.Tensor, vision_tower: nn.Module) -> tuple[int, int]:
    patch = vision_tower.config.patch_size
    return pixel_values.shape[-2] // patch, pixel_values.shape[-1] // patch


def tokens_per_image(pixel_values: torch.Tensor, vision_tower: nn.Module) -> int:
    """Patch tokens one image of this size yields ([CLS] excluded)."""
    return math.prod(patch_grid(pixel_values, vision_tower))
