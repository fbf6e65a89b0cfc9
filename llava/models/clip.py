"""CLIP vision towers (transformers' `CLIPVisionModel`): features and attention signals of one layer.

The stock forward runs every encoder layer and, under SDPA, cannot return attention weights. Here
the tower runs only up to the feature layer (the layers after it feed nothing LLaVA uses) and the
signals a pruning method asks for are read off that layer's own projections, so SDPA stays on:
the [CLS] query row's attention ("cls_attention"), the [CLS] query and all keys ("projections"),
the [CLS] token ("cls_token"), and the next layer's [CLS] query and keys ("next_projections",
computed from the feature layer's output; the next layer itself does not run).

Methods that merge tokens inside the encoder ("token_merging", e.g. ToMe) get a seam in the layer
loop: each layer runs with a size-proportional attention bias and hands its keys to the merger.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..attention import capture_projections, row_softmax
from ..pruning.base import LayerProjections, VisionFeatures

CLS_ROW = slice(0, 1)
SIGNALS = frozenset({"cls_attention", "cls_token", "projections", "next_projections", "token_merging"})
NOTE = ""  # every signal is what its name says


def feature_depth(vision_tower: nn.Module, vision_feature_layer: int) -> int:
    """How many encoder layers produce `hidden_states[vision_feature_layer]` (0 = the embeddings)."""
    return feature_depth_of(len(vision_tower.encoder.layers), vision_feature_layer)


def feature_depth_of(num_layers: int, vision_feature_layer: int) -> int:
    """`feature_depth` for a tower of `num_layers` encoder layers."""
    if not isinstance(vision_feature_layer, int):
        raise ValueError(
            f"pruning needs a single vision_feature_layer (an int such as -2), got {vision_feature_layer!r}"
        )
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
    signals: frozenset[str] | set[str] = frozenset(),
    merger=None,
) -> VisionFeatures:
    """Patch features of `vision_feature_layer` ([CLS] dropped) and the `signals` (of `SIGNALS`) asked for.

    For "token_merging", `merger` (the method; given, it merges) is an object with `schedule(num_patches, num_layers) ->
    list[int]` (tokens to merge in each layer up to the feature layer) and `merge(hidden, size, keys,
    num_heads, count) -> (hidden, size)`; the returned features are then the merged tokens (and
    "cls_token", if asked, the protected [CLS] token after merging).
    """
    unknown = set(signals) - SIGNALS
    if unknown:
        raise ValueError(f"a CLIP tower provides {', '.join(sorted(SIGNALS))}; asked for {', '.join(sorted(unknown))}")
    depth = feature_depth(vision_tower, vision_feature_layer)
    grid = patch_grid(pixel_values, vision_tower)
    hidden = vision_tower.pre_layrnorm(vision_tower.embeddings(pixel_values))
    layers = vision_tower.encoder.layers
    if merger is not None:
        merged = _merge_through(layers[:depth], hidden, merger)
        cls_token = merged[:, 0] if "cls_token" in signals else None
        return VisionFeatures(features=merged[:, 1:], grid=grid, cls_token=cls_token)

    for layer in layers[: depth - 1]:
        hidden = layer(hidden, None)
    last = layers[depth - 1]
    attention = last.self_attn
    if signals & {"cls_attention", "projections"}:
        with capture_projections(attention, CLS_ROW) as projected:
            hidden = last(hidden, None)
    else:
        hidden = last(hidden, None)

    vision = VisionFeatures(features=hidden[:, 1:], grid=grid)
    if "cls_attention" in signals:
        weights = row_softmax(projected["query"], projected["key"], attention.num_heads, attention.scale)
        vision.cls_attention = weights[:, :, 0, 1:]  # drop the [CLS] -> [CLS] entry; not renormalised
    if "projections" in signals:
        vision.projections = LayerProjections(projected["query"][:, 0], projected["key"], attention.num_heads)
    if "cls_token" in signals:
        vision.cls_token = hidden[:, 0]
    if "next_projections" in signals:
        vision.next_projections = _next_projections(layers, depth, hidden, vision_feature_layer)
    return vision


def _next_projections(layers, depth: int, hidden: torch.Tensor, vision_feature_layer: int) -> LayerProjections:
    if depth >= len(layers):
        raise ValueError(
            f"this method reads the encoder layer after the feature layer, but vision_feature_layer="
            f"{vision_feature_layer} is the tower's last layer"
        )
    attention = layers[depth].self_attn
    normed = layers[depth].layer_norm1(hidden)
    return LayerProjections(attention.q_proj(normed[:, 0]), attention.k_proj(normed), attention.num_heads)


def _merge_through(layers, hidden: torch.Tensor, merger) -> torch.Tensor:
    """Run `layers`, merging tokens between each layer's attention and MLP as `merger` says (ToMe's
    placement), with the attention biased by log(token size) ("proportional attention")."""
    schedule = merger.schedule(hidden.shape[1] - 1, len(layers))
    size = None
    for layer, count in zip(layers, schedule):
        attention = layer.self_attn
        bias = None if size is None else size.log().to(hidden.dtype)[:, None, None, :, 0]
        with capture_projections(attention, slice(0, 0)) as projected:
            update, _ = attention(hidden_states=layer.layer_norm1(hidden), attention_mask=bias)
        hidden = hidden + update
        if count > 0:
            hidden, size = merger.merge(hidden, size, projected["key"], attention.num_heads, count)
        hidden = hidden + layer.mlp(layer.layer_norm2(hidden))
    return hidden


def patch_grid(pixel_values: torch.Tensor, vision_tower: nn.Module) -> tuple[int, int]:
    patch = vision_tower.config.patch_size
    return pixel_values.shape[-2] // patch, pixel_values.shape[-1] // patch


def tokens_per_image(pixel_values: torch.Tensor, vision_tower: nn.Module) -> int:
    """Patch tokens one image of this size yields ([CLS] excluded)."""
    return math.prod(patch_grid(pixel_values, vision_tower))
