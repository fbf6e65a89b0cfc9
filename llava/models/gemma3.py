"""Pruning for `Gemma3ForConditionalGeneration` (Gemma 3 4B / 12B / 27B instruction models), per instance.

Written for the configs of google/gemma-3-4b-it, google/gemma-3-12b-it and google/gemma-3-27b-it: a
SigLIP tower at 896 px / 14-px patches, whose 64 x 64 patches the projector average-pools 4x4 into the
256 tokens (`mm_tokens_per_image`) the language model sees, each image written as `<start_of_image>`,
256 soft tokens and `<end_of_image>`, with `token_type_ids` marking the soft tokens.

Vision-side methods prune the 256 pooled tokens of each encoded image (`gemma3_vision.py`: importance
is the mean attention each patch receives in the last SigLIP layer, summed over its 4x4 group; the
features are the pooled tokens after the projector's RMSNorm) and project only the kept ones (the
projector's linear map acts per token). With pan-and-scan the processor adds crops of an image, each
encoded as an image of its own with its own 256 placeholders and the model not told which image a crop
belongs to: every encoded image, the original and each crop alike, keeps `visual_token_num` tokens, as
LLaVA-NeXT's paper layout prunes each crop. Traced parts are "image", `item` counting the encoded
images (crops included) of the call. `forward` / `generate` cut each run of soft tokens from 256 to the
kept count, `token_type_ids` with them, so the stock model's bidirectional attention among an image's
tokens covers exactly its kept tokens; `generate` returns the caller's own prompt ids followed by the
new tokens.

In-LLM methods (FastV, PDrop, SparseVLM) leave encoding and placeholders alone and prune inside the
language model (`inside.py`, `decoder.py`: sliding-window layers keep their window over the kept tokens'
positions, and an image's kept tokens keep attending to each other both ways), each encoded image one
item with its own budget.
"""

from __future__ import annotations

from transformers import SiglipVisionModel
from transformers.modeling_outputs import BaseModelOutputWithPooling

from ..patching import InstancePatch
from ..pruning.base import TokenPruner
from ..trace import Tracer
from . import gemma3_vision, inside
from .common import Host
from .runs import rewrite_placeholders

HOST = "Gemma 3"
TOKEN_TYPES = ("token_type_ids", 0)  # rewritten with the placeholders; padding is text (type 0)


def attach(model, pruner: TokenPruner, patch: InstancePatch, tracer: Tracer | None = None) -> None:
    tower = model.model.vision_tower
    if not isinstance(tower, SiglipVisionModel):
        raise ValueError(
            f"pruning on {type(model).__name__} supports SigLIP towers (SiglipVisionModel), got {type(tower).__name__}"
        )
    host = Host(model, pruner, patch, tracer, HOST, gemma3_vision.SIGNALS, gemma3_vision.NOTE, strategy=None)
    host.check_signals()
    if host.inside:
        rows, cols = gemma3_vision.pooled_grid(model.config)
        host.check_item_tokens(rows * cols)
        image = model.config.image_token_id
        placeholders = inside.Placeholders(
            {image: "image"},
            {image: rows * cols},
            {image: (rows, cols)},
            bidirectional_with="token_type_ids",
            prebuilt_masks=True,
        )
        inside.attach(host, placeholders)
        host.rewrite_prompts(lambda given: _rewrite(host, given))  # the placeholders stay; their count is checked
        return
    host.patch_encoder("get_image_features", lambda stock: _image_features(host))
    host.rewrite_prompts(lambda given: _rewrite(host, given))


def _image_features(host: Host):
    inner = host.inner

    def get_image_features(pixel_values, **kwargs):
        vision = gemma3_vision.encode(inner, pixel_values, host.asked)

        def projector(features):
            return gemma3_vision.project(inner, features)

        kept = host.prune_rows(vision, projector, "image")
        return BaseModelOutputWithPooling(last_hidden_state=vision.features, pooler_output=kept)

    return get_image_features


def _rewrite(host: Host, given: dict):
    """Each encoded image's run of soft tokens cut to the kept count, token_type_ids alike."""
    pixel_values = given.get("pixel_values")
    if pixel_values is None:
        return None
    grid = gemma3_vision.pooled_grid(host.config)
    num_tokens = grid[0] * grid[1]
    kept = num_tokens if host.inside else host.pruner.kept_per_image(num_tokens, grid)
    images = pixel_values.shape[0]
    return rewrite_placeholders(
        given,
        host.config.image_token_id,
        [num_tokens] * images,
        [kept] * images,
        host.pad_id,
        kind="image",
        per_token=[TOKEN_TYPES],
    )
