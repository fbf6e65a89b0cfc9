"""Pruning for `InternVLForConditionalGeneration` (InternVL3 and kin, InternViT tower), patched per instance.

Each tile (crop) of an image is encoded on its own and pixel-shuffled to 256 tokens (448-px tiles);
the model is not told which image a tile belongs to, so every tile is pruned to `visual_token_num`
tokens of its own, as LLaVA-NeXT's paper layout prunes each crop. The pruned tokens are the shuffled
ones the language model sees: importance is the [CLS] attention of each token's 2x2 patches, summed,
and features are the four patch features concatenated (`internvl_vision.py`); DivPrune's "projected"
tokens are the projector's output. Vision-side methods patch `model.model.get_image_features`
(projecting only the kept tokens: the projector acts per token) and `forward` / `generate` shrink each
tile's run of `<IMG_CONTEXT>` placeholders from N to T before the stock code runs; `generate` returns
the caller's own prompt ids followed by the new tokens. Traced tiles are part "tile", `item` being the
tile's number over the call's tiles.

In-LLM methods (FastV, PDrop, SparseVLM) leave encoding and placeholders alone and prune inside the
language model (`inside.py`; InternVL3's decoder is Qwen2), each tile one item with its own budget.
"""

from __future__ import annotations

from transformers import InternVLVisionModel
from transformers.modeling_outputs import BaseModelOutputWithPooling

from ..patching import InstancePatch
from ..pruning.base import TokenPruner
from ..trace import Tracer
from . import inside, internvl_vision
from .common import Host
from .runs import rewrite_placeholders

HOST = "InternVL"


def attach(model, pruner: TokenPruner, patch: InstancePatch, tracer: Tracer | None = None) -> None:
    tower = model.model.vision_tower
    if not isinstance(tower, InternVLVisionModel):
        raise ValueError(
            f"pruning on {type(model).__name__} supports InternViT towers (InternVLVisionModel), got {type(tower).__name__}"
        )
    host = Host(model, pruner, patch, tracer, HOST, internvl_vision.SIGNALS, internvl_vision.NOTE)
    host.check_signals()
    if host.inside:
        vision = model.config.vision_config
        size = vision.image_size if isinstance(vision.image_size, (list, tuple)) else (vision.image_size,) * 2
        rows, cols = internvl_vision.shuffled_grid(*size, model.config)
        host.check_item_tokens(rows * cols, "tile")
        image = model.config.image_token_id
        inside.attach(host, inside.Placeholders({image: "image"}, {image: rows * cols}, {image: (rows, cols)}))
        host.rewrite_prompts(lambda given: _rewrite(host, given))  # the placeholders stay; their count is checked
        return
    host.patch_encoder("get_image_features", lambda stock: _image_features(host))
    host.rewrite_prompts(lambda given: _rewrite(host, given))


def _image_features(host: Host):
    inner = host.inner

    def get_image_features(pixel_values, vision_feature_layer=None, vision_feature_select_strategy=None, **kwargs):
        host.check_strategy(vision_feature_select_strategy)
        vision = internvl_vision.encode(inner, pixel_values, host.layer(vision_feature_layer), host.asked)
        kept = host.prune_rows(vision, inner.multi_modal_projector, "tile")
        return BaseModelOutputWithPooling(last_hidden_state=vision.features, pooler_output=kept)

    return get_image_features


def _rewrite(host: Host, given: dict):
    """Each tile's placeholder run cut to the kept count."""
    pixel_values = given.get("pixel_values")
    if pixel_values is None:
        return None
    grid = internvl_vision.shuffled_grid(*pixel_values.shape[-2:], host.config)
    num_tokens = grid[0] * grid[1]
    kept = num_tokens if host.inside else host.pruner.kept_per_image(num_tokens, grid)
    tiles = pixel_values.shape[0]
    return rewrite_placeholders(
        given, host.config.image_token_id, [num_tokens] * tiles, [kept] * tiles, host.pad_id, kind="tile"
    )
