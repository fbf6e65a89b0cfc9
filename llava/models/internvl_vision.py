"""InternViT towers (transformers' `InternVLVisionModel`): pixel-shuffled features and the [CLS]
attention they receive at the feature layer, for pruning the shuffled tokens.

InternViT has a [CLS] token, but its layers are not CLIP's (`encoder.layer[i].attention`, optional
q/k RMS norms over the full width, layer scales), so `clip.encode` is not reused. The tower runs only
up to the feature layer; the [CLS] query row's attention is computed beside SDPA from that layer's
own `q_proj` / `k_proj` outputs (its `q_norm` / `k_norm` applied, its `scale`). The stock path then
drops [CLS] and joins each 2x2 group of patches into one token (pixel shuffle, `downsample_ratio`
0.5: 1024 patches -> 256 tokens for a 448-px tile); the attention is joined the same way (the model's
own `pixel_shuffle`, summed over each group) and the features are the shuffle's output (the four
patch vectors concatenated), so a method prunes the shuffled tokens, the ones the language model sees.
"""

from __future__ import annotations

import torch

from ..attention import capture_projections, row_softmax
from ..pruning.base import VisionFeatures
from .clip import CLS_ROW, feature_depth_of

SIGNALS = frozenset({"cls_attention"})
NOTE = (
    " (InternVL prunes pixel-shuffled tokens: each joins 2x2 patches, so only the [CLS] attention they "
    "receive, summed over each group, is provided)"
)


def encode(inner, pixel_values: torch.Tensor, vision_feature_layer: int, signals=frozenset()) -> VisionFeatures:
    """Shuffled features [B, N/4, 4 C] of `vision_feature_layer` ([CLS] dropped) on the shuffled grid,
    with "cls_attention" [B, H, N/4] when asked for. `inner` is the `InternVLModel` (its tower, its
    `pixel_shuffle` and `config.downsample_ratio`)."""
    unknown = set(signals) - SIGNALS
    if unknown:
        raise ValueError(
            f"an InternViT tower provides {', '.join(sorted(SIGNALS))}; asked for {', '.join(sorted(unknown))}"
        )
    tower = inner.vision_tower
    layers = tower.encoder.layer
    depth = feature_depth_of(len(layers), vision_feature_layer)
    hidden = tower.embeddings(pixel_values.to(dtype=inner.dtype))
    for layer in layers[: depth - 1]:
        hidden = layer(hidden)
    last = layers[depth - 1]
    attention = last.attention
    if "cls_attention" in signals:
        with capture_projections(attention, CLS_ROW) as projected:
            hidden = last(hidden)
    else:
        hidden = last(hidden)
    if vision_feature_layer == -1:  # the stock path reads last_hidden_state there, after the tower's norm
        hidden = tower.layernorm(hidden)

    ratio = inner.config.downsample_ratio
    patches = hidden[:, 1:]
    batch, count, _ = patches.shape
    side = int(count**0.5)
    shuffled = inner.pixel_shuffle(patches.reshape(batch, side, side, -1), scale_factor=ratio)
    grid = (shuffled.shape[1], shuffled.shape[2])
    vision = VisionFeatures(features=shuffled.reshape(batch, -1, shuffled.shape[-1]), grid=grid)
    if "cls_attention" in signals:
        query, key = attention.q_norm(projected["query"]), attention.k_norm(projected["key"])
        weights = row_softmax(query, key, attention.num_heads, attention.scale)[:, :, 0, 1:]  # [B, H, N]
        heads = weights.shape[1]
        joined = inner.pixel_shuffle(weights.reshape(batch * heads, side, side, 1), scale_factor=ratio)
        vision.cls_attention = joined.sum(-1).reshape(batch, heads, -1)  # not renormalised
    return vision


def shuffled_grid(height: int, width: int, config) -> tuple[int, int]:
    """(rows, cols) of the shuffled tokens of one tile of `height` x `width` pixels."""
    patch = config.vision_config.patch_size
    patch = patch[0] if isinstance(patch, (list, tuple)) else patch
    ratio = config.downsample_ratio
    return int(height // patch * ratio), int(width // patch * ratio)
