"""Patch features and attention signals of vLLM's CLIP tower (`vllm.model_executor.models.clip`).

vLLM builds LLaVA's tower only up to the feature layer, so the tower's last encoder layer is the one
LLaVA reads. Its fused attention returns no weights; the [CLS] row is computed beside it from the
layer's own `qkv_proj` output (kept by a forward hook, so nothing is projected twice), the same
softmax row the library's transformers path computes (`llava.attention.row_softmax`).
"""

from __future__ import annotations

import torch

from llava.attention import row_softmax
from llava.pruning import VisionFeatures
from llava.pruning.base import LayerProjections

SIGNALS = frozenset({"cls_attention", "cls_token", "projections"})
ATTENTION_SIGNALS = frozenset({"cls_attention", "projections"})  # those read off the layer's projections
FULL = "full"  # vLLM's feature-select strategy that keeps the [CLS] token (LLaVA's "default" drops it)


def check_tower(vision_tower) -> None:
    """ValueError unless every attention head of the feature layer is on this rank: the signals
    average over all heads, and tensor parallelism splits them (untested, so refused)."""
    attention = feature_attention(vision_tower)
    if attention.num_heads_per_partition != attention.num_heads:
        raise ValueError(
            "pruning needs all heads of the vision tower's feature layer on one rank; tensor parallelism "
            f"splits its {attention.num_heads} heads (tensor_parallel_size > 1 is not supported)"
        )


def feature_attention(vision_tower):
    return vision_tower.vision_model.encoder.layers[-1].self_attn


def encode(vision_tower, pixel_values: torch.Tensor, signals: frozenset[str]) -> VisionFeatures:
    """Features [B, N, C] of the feature layer ([CLS] dropped) and the `signals` (of `SIGNALS`) asked for."""
    attention = feature_attention(vision_tower)
    store: dict[str, torch.Tensor] = {}
    handle = None
    if signals & ATTENTION_SIGNALS:
        handle = attention.qkv_proj.register_forward_hook(lambda _m, _i, out: store.__setitem__("qkv", out[0]))
    try:
        hidden = vision_tower(pixel_values, feature_select_strategy=FULL)
    finally:
        if handle is not None:
            handle.remove()
    patch = vision_tower.vision_model.config.patch_size
    grid = (pixel_values.shape[-2] // patch, pixel_values.shape[-1] // patch)
    vision = VisionFeatures(features=hidden[:, 1:], grid=grid)
    if signals & ATTENTION_SIGNALS:
        query, key, _ = store["qkv"].chunk(3, dim=-1)
        if "cls_attention" in signals:
            weights = row_softmax(query[:, :1], key, attention.num_heads, attention.scale)
            vision.cls_attention = weights[:, :, 0, 1:]  # the [CLS] -> [CLS] entry dropped, not renormalised
        if "projections" in signals:
            vision.projections = LayerProjections(query[:, 0], key, attention.num_heads)
    if "cls_token" in signals:
        vision.cls_token = hidden[:, 0]
    return vision
