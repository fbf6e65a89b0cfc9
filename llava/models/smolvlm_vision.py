"""SmolVLM / Idefics3 towers (SigLIP-style, no [CLS]): each tile's pixel-shuffled features, the attention
they receive in the feature layer, and their projections, for pruning the shuffled tokens.

The family has no `vision_feature_layer`: the connector reads the tower's output (its last layer,
after the post-layernorm), pixel-shuffles each `scale_factor` x `scale_factor` group of patches into one
token and projects it. `encode` runs the tower as the stock `get_image_features` does (the all-padding
images of a batch dropped, each tile's patch mask built from `pixel_attention_mask`) but stops before
the connector, so only the kept tokens are projected; the last layer's own `q_proj` / `k_proj` outputs
are kept by hooks as it runs. Without [CLS],
importance is the mean attention each patch receives from the tile's real patches in that layer
("received_attention", VisPruner issue #1), computed beside SDPA in query chunks (`received_attention`); padded patches
receive nothing, as in the tower. Features and attention are grouped by the model's own
`connector.pixel_shuffle`, the attention summed over each group, so a method prunes the shuffled
tokens, the ones the language model sees.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch

from ..attention import capture_projections, mean_received_attention, split_heads
from ..pruning.base import VisionFeatures

SIGNALS = frozenset({"received_attention"})
NOTE = " (the SmolVLM / Idefics3 tower has no [CLS] token)"
ALL_ROWS = slice(None)


@dataclass
class Tiles:
    """One call's real tiles (all-padding images dropped, as the stock model drops them), in order."""

    vision: VisionFeatures  # features [R, n, s^2 C] on the shuffled grid; received_attention [R, H, n] if asked
    per_row: list[int]  # real tiles of each batch row
    output: object  # the tower's `BaseModelOutputWithPooling` (last_hidden_state: what the connector reads)


def real_images(pixel_values: torch.Tensor, keep_one: bool) -> torch.Tensor:
    """[B, I] which images of `pixel_values` [B, I, 3, H, W] the stock model encodes: those not all zeros
    (the processor pads a batch's rows with all-zero images); with `keep_one` (SmolVLM) the first image
    when there is none, as SmolVLM encodes one empty image rather than none."""
    real = pixel_values.flatten(2).ne(0).any(-1)
    if keep_one:
        real[0, 0] |= ~real.any()
    return real


def encode(
    inner,
    pixel_values: torch.Tensor,
    pixel_attention_mask: torch.Tensor | None = None,
    signals=frozenset(),
    keep_one: bool = False,
    **kwargs,
) -> Tiles:
    """The real tiles of `pixel_values` [B, I, 3, H, W] (`pixel_attention_mask` [B, I, H, W], 0 at padded
    pixels) through the tower of the `SmolVLMModel` / `Idefics3Model` `inner`, as its stock
    `get_image_features` encodes them (`keep_one`: see `real_images`), pixel-shuffled, with the `signals`
    (of `SIGNALS`) asked for; `kwargs` go to the tower."""
    unknown = set(signals) - SIGNALS
    if unknown:
        raise ValueError(
            f"a SmolVLM / Idefics3 tower provides {', '.join(sorted(SIGNALS))}; asked for {', '.join(sorted(unknown))}"
        )
    tower, connector = inner.vision_model, inner.connector
    real = real_images(pixel_values, keep_one)
    pixels = pixel_values[real].to(dtype=inner.dtype)
    if pixel_attention_mask is None:
        pixel_mask = torch.ones(pixels.shape[:1] + pixels.shape[2:], dtype=torch.bool, device=pixels.device)
    else:
        pixel_mask = pixel_attention_mask[real].bool()
    patch = tower.patch_size
    patch_mask = pixel_mask.unfold(1, patch, patch).unfold(2, patch, patch).any(-1).any(-1)  # any real pixel

    attention = tower.encoder.layers[-1].self_attn
    with_attention = "received_attention" in signals
    capture = capture_projections(attention, ALL_ROWS) if with_attention else nullcontext()
    with capture as projected:
        output = tower(pixel_values=pixels, patch_attention_mask=patch_mask, return_dict=True, **kwargs)

    scale = connector.scale_factor
    shuffled = connector.pixel_shuffle(output.last_hidden_state, scale)  # [R, n, s^2 C]
    side = int(shuffled.shape[1] ** 0.5)
    vision = VisionFeatures(features=shuffled, grid=(side, side))
    if with_attention:
        received = received_attention(attention, projected, patch_mask)  # [R, H, N]
        tiles, heads, count = received.shape
        grouped = connector.pixel_shuffle(received.reshape(tiles * heads, count, 1), scale)
        vision.received_attention = grouped.sum(-1).reshape(tiles, heads, -1)  # not renormalised
    return Tiles(vision, real.sum(-1).tolist(), output)


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
