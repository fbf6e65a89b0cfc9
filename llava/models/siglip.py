"""SigLIP vision towers (transformers' `SiglipVisionModel`, no [CLS]): features and the attention
each token receives at the feature layer.

Without a [CLS] token, the importance signal is the one the VisPruner author prescribes for such
encoders (VisPruner issue #1): the mean attention each patch token receives from all tokens of the
layer, heads kept apart ("received_attention"). It is computed from that layer's own query/key
projections in query chunks, beside SDPA, and serves methods that ask for "importance" where CLIP
towers serve their [CLS] attention.
"""

from __future__ import annotations

import torch
from torch import nn

from ..attention import capture_projections, mean_received_attention, split_heads
from ..pruning.base import VisionFeatures
from .clip import feature_depth, patch_grid

ALL_ROWS = slice(None)
SIGNALS = frozenset({"received_attention"})
NOTE = " (SigLIP has no [CLS] token)"


def encode(
    vision_tower: nn.Module,
    pixel_values: torch.Tensor,
    vision_feature_layer: int,
    signals: frozenset[str] | set[str] = frozenset(),
) -> VisionFeatures:
    """All tokens of `vision_feature_layer` and the `signals` (of `SIGNALS`) asked for: "received_attention"
    is the mean attention each token receives there."""
    unknown = set(signals) - SIGNALS
    if unknown:
        raise ValueError(
            f"a SigLIP tower provides {', '.join(sorted(SIGNALS))}; asked for {', '.join(sorted(unknown))}"
        )
    with_attention = "received_attention" in signals
    depth = feature_depth(vision_tower, vision_feature_layer)
    hidden = vision_tower.embeddings(pixel_values)
    layers = vision_tower.encoder.layers
    for layer in layers[: depth - 1]:
        hidden = layer(hidden, None)

    last = layers[depth - 1]
    received = None
    if with_attention:
        attention = last.self_attn
        with capture_projections(attention, ALL_ROWS) as projected:
            hidden = last(hidden, None)
        heads = attention.num_heads
        received = mean_received_attention(
            split_heads(projected["query"], heads), split_heads(projected["key"], heads), attention.scale
        )
    else:
        hidden = last(hidden, None)
    return VisionFeatures(features=hidden, grid=patch_grid(pixel_values, vision_tower), received_attention=received)
