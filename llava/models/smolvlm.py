"""Pruning for `SmolVLMForConditionalGeneration` (SmolVLM, SmolVLM2) and `Idefics3ForConditionalGeneration`
(Idefics3), patched per instance: the two share their seams (a SigLIP-style tower without [CLS], a
connector that pixel-shuffles by `scale_factor` and projects, prompts of `<image>` runs per tile).

The processors split an image into rows x cols tiles plus a global image, and write `image_seq_len`
placeholders per tile (each behind `<fake_token_around_image><row_r_col_c>`, the global one behind
`<global-img>`); SmolVLM2 writes a video as its frames, each one global image. The model is not told
which image a tile (or frame) belongs to, so every tile keeps `visual_token_num` of its own tokens (the
global image and each video frame are tiles too), as LLaVA-NeXT's paper layout prunes each crop. The
pruned tokens are the pixel-shuffled ones the language model sees: importance is the mean attention
each of a token's patches receives in the tower's last layer, summed over the group
(`smolvlm_vision.py`), and features are the shuffled ones (the group's patch vectors concatenated);
DivPrune's "projected" tokens are the connector's output. Vision-side methods patch
`model.model.get_image_features` (the all-padding images of a batch skipped as the stock model skips
them, each tile's padded patches masked) and `forward` / `generate` cut each tile's run of `<image>`
placeholders from n to T before the stock code runs; `generate` returns the caller's own prompt ids
followed by the new tokens. Only the kept tokens are projected (DivPrune, selecting on projected
tokens, projects them all). Traced tiles are part "tile", `item` being the tile's number over the
call's real tiles.

In-LLM methods (FastV, PDrop, SparseVLM) leave encoding and placeholders alone and prune inside the
language model (`inside.py`; both decoders are Llama), each tile one item with its own budget.
"""

from __future__ import annotations

import torch
from transformers import SmolVLMForConditionalGeneration
from transformers.modeling_outputs import BaseModelOutputWithPooling

from ..patching import InstancePatch
from ..pruning.base import TokenPruner
from ..trace import Tracer
from . import inside, smolvlm_vision
from .common import Host
from .runs import rewrite_placeholders

IMAGE_DIMS = 5  # pixel_values [batch, images, channels, height, width]


def attach(model, pruner: TokenPruner, patch: InstancePatch, tracer: Tracer | None = None) -> None:
    name = type(model).__name__.removesuffix("ForConditionalGeneration")
    host = Host(model, pruner, patch, tracer, name, smolvlm_vision.SIGNALS, smolvlm_vision.NOTE, strategy=None)
    host.check_signals()
    vision = model.config.vision_config
    grid = smolvlm_vision.tile_grid(vision.image_size, vision.image_size, model.config)  # the processors' tiles
    keep_one = isinstance(model, SmolVLMForConditionalGeneration)  # see `smolvlm_vision.real_images`
    if host.inside:
        host.check_item_tokens(grid[0] * grid[1], "tile")
        image = model.config.image_token_id
        # markers part every tile's run from the next, so each run is one item
        inside.attach(host, inside.Placeholders({image: "image"}, grids={image: grid}))
    else:
        host.patch_encoder("get_image_features", lambda stock: _image_features(host, keep_one))
    host.rewrite_prompts(lambda given: _rewrite(host, keep_one, given))  # in-LLM: the count is checked


def _image_features(host: Host, keep_one: bool):
    inner = host.inner
    projector = inner.connector.modality_projection

    def get_image_features(pixel_values, pixel_attention_mask=None, **kwargs):
        _check_pixels(pixel_values)
        kwargs.pop("return_dict", None)  # handed out as asked by `Host.patch_encoder`
        tiles = smolvlm_vision.encode(inner, pixel_values, pixel_attention_mask, host.asked, keep_one, **kwargs)
        kept = host.prune_rows(tiles.vision, projector, "tile")
        per_row = [rows.reshape(-1, kept.shape[-1]) for rows in kept.split(tiles.per_row)]
        output = tiles.output
        return BaseModelOutputWithPooling(
            last_hidden_state=output.last_hidden_state,
            pooler_output=per_row,
            hidden_states=output.hidden_states,
            attentions=output.attentions,
        )

    return get_image_features


def _check_pixels(pixel_values: torch.Tensor) -> None:
    if pixel_values.dim() != IMAGE_DIMS:
        raise ValueError(
            f"pixel_values must be [batch, images, channels, height, width] as the processor returns them, "
            f"got shape {tuple(pixel_values.shape)}"
        )


def _rewrite(host: Host, keep_one: bool, given: dict):
    """Each real tile's placeholder run cut to the kept count."""
    pixel_values = given.get("pixel_values")
    if pixel_values is None:
        return None
    _check_pixels(pixel_values)
    tiles = int(smolvlm_vision.real_images(pixel_values, keep_one).sum())
    grid = smolvlm_vision.tile_grid(*pixel_values.shape[-2:], host.config)
    num_tokens = grid[0] * grid[1]
    kept = num_tokens if host.inside else host.pruner.kept_per_image(num_tokens, grid)
    return rewrite_placeholders(
        given, host.config.image_token_id, [num_tokens] * tiles, [kept] * tiles, host.pad_id, kind="tile"
    )
