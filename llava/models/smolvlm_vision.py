"""SmolVLM / Idefics3 towers (SigLIP-style, no [CLS]): each tile's pixel-shuffled features, the attention
they receive in the feature layer, and their projections, for pruning the shuffled tokens.

The family has no `vision_feature_layer`: the connector reads the tower's output (its last layer,
after the post-layernorm), pixel-shuffles each `scale_factor` x `scale_factor` group of patches into one
token and projects it. The stock `get_image_features` is run once (it drops the all-padding images
of a batch and builds each tile's patch mask from `pixel_attention_mask`); the last layer's own
`q_proj` / `k_proj` outputs and the tower's patch mask are kept by hooks as it runs. Without [CLS],
importance is the mean attention each patch receives from the tile's real patches in that layer
(VisPruner issue #1), computed beside SDPA in query chunks (`received_attention`); padded patches
receive nothing, as in the tower. Features and attention are grouped by the model's own
`connector.pixel_shuffle`, the attention summed over each group, so a method prunes the shuffled
tokens, the ones the language model sees.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from ..attention import capture_projections, mean_received_attention, split_heads
from ..pruning.base import VisionFeatures

SIGNALS = frozenset({"cls_attention"})
NOTE = (
    " (no [CLS]: 'cls_attention' is served as the mean attention each pixel-shuffled token's patches "
    "receive, summed over the group)"
)
ALL_ROWS = slice(None)


@dataclass
class Tiles:
    """One call's real tiles (all-padding images dropped, as the stock model drops them), in order."""

    vision: VisionFeatures  # features [R, n, s^2 C] on the shuffled grid; cls_attention [R, H, n] if asked
    projected: torch.Tensor  # [R, n, D] the connector's output for every token (the stock tokens)
    per_row: list[int]  # real tiles of each batch row
    output: object  # the stock `BaseModelOutputWithPooling` (last_hidden_state: the tower's output)


def encode(
    inner,
    pixel_values: torch.Tensor,
    pixel_attention_mask: torch.Tensor | None = None,
    signals=frozenset(),
    stock: Callable | None = None,
    **kwargs,
) -> Tiles:
    """Run `stock` (the unpatched `inner.get_image_features` of the `SmolVLMModel` / `Idefics3Model`
    `inner`; its own by default) on `pixel_values` [B, I, 3, H, W] and return the real tiles' shuffled
    features and projections, with the `signals` (of `SIGNALS`) asked for."""
    unknown = set(signals) - SIGNALS
    if unknown:
        raise ValueError(
            f"a SmolVLM / Idefics3 tower provides {', '.join(sorted(SIGNALS))}; asked for {', '.join(sorted(unknown))}"
        )
    stock = inner.get_image_features if stock is None else stock
    tower, connector = inner.vision_model, inner.connector
    attention = tower.encoder.layers[-1].self_attn
    with_attention = "cls_attention" in signals
    seen: dict = {}
    keep_mask = tower.register_forward_pre_hook(
        lambda _m, _a, given: seen.__setitem__("patch_mask", given["patch_attention_mask"]), with_kwargs=True
    )
    capture = capture_projections(attention, ALL_ROWS) if with_attention else nullcontext()
    try:
        with capture as projected:
            output = stock(pixel_values, pixel_attention_mask, return_dict=True, **kwargs)
    finally:
        keep_mask.remove()

    scale = connector.scale_factor
    patches = output.last_hidden_state  # [R, N, C]
    shuffled = connector.pixel_shuffle(patches, scale)
    side = int(shuffled.shape[1] ** 0.5)
    vision = VisionFeatures(features=shuffled, grid=(side, side))
    if with_attention:
        received = received_attention(attention, projected, seen["patch_mask"])  # [R, H, N]
        tiles, heads, count = received.shape
        grouped = connector.pixel_shuffle(received.reshape(tiles * heads, count, 1), scale)
        vision.cls_attention = grouped.sum(-1).reshape(tiles, heads, -1)  # not renormalised
    per_row = [part.shape[0] // shuffled.shape[1] for part in output.pooler_output]
    projections = torch.cat(list(output.pooler_output)).reshape(*shuffled.shape[:2], -1)
    return Tiles(vision, projections, per_row, output)


def received_attention(attention, projected: dict, patch_mask: torch.Tensor) -> torch.Tensor:
    """[R, H, N] mean attention each patch receives from the tile's real patches, from the `query` and
    `key` projections a forward of the layer's `attention` left in `projected` and the tower's patch
    mask [R, rows, cols] (False: padding)."""
    heads = attention.num_heads
    query, key = split_heads(projected["query"], heads), split_heads(projected["key"], heads)
    mask = patch_mask.reshape(patch_mask.shape[0], -1)
    return mean_received_attention(query, key, attention.scale, mask=mask)


def tile_grid(height: int, width: int, config) -> tuple[int, int]:
    """(rows, cols) of the shuffled tokens of one tile of `height` x `width` pixels."""
    step = config.vision_config.patch_size * config.scale_factor
    return height // step, width // step
