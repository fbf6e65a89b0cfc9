"""Pruning for `LlavaForConditionalGeneration` (LLaVA-1.5 and its kin), patched per instance.

Vision-side methods override two seams on the one model object:
* `model.model.get_image_features`, which both `forward` and `generate` call to encode images: it now
  runs the vision tower only to the feature layer, lets the pruner reduce the patch features, and
  projects the T kept tokens (the projector acts per token, so projecting after selection is exact;
  methods that select on projected tokens get all of them projected and keep the selected ones);
* `model.forward` and `model.generate`, which shrink each image's placeholder run from N to T before
  the stock code runs, so `processor(...)` output can be passed unchanged. `generate` returns the
  caller's own prompt ids followed by the new tokens, as an unpruned model would.

In-LLM methods (FastV, PDrop, SparseVLM) leave the image encoding and placeholders alone. They
replace the language model's layer loop (`decoder.py`) and `model.model.forward`, which tells that
loop which prompt tokens are visual (from the `<image>` placeholder positions in `input_ids`).
Logits then cover the tokens the last layer kept; `labels` are refused.
"""

from __future__ import annotations

from transformers import CLIPVisionModel
from transformers.modeling_outputs import BaseModelOutputWithPooling

from ..patching import InstancePatch
from ..pruning.base import TokenPruner
from ..trace import Tracer
from . import clip, inside
from .common import Host
from .runs import rewrite_placeholders


def attach(model, pruner: TokenPruner, patch: InstancePatch, tracer: Tracer | None = None) -> None:
    tower = model.model.vision_tower
    if not isinstance(tower, CLIPVisionModel):
        raise ValueError(
            f"pruning on {type(model).__name__} supports CLIP vision towers (CLIPVisionModel), got {type(tower).__name__}"
        )
    host = Host(model, pruner, patch, tracer, f"{type(model).__name__} with a CLIP vision tower", clip.SIGNALS)
    host.check_signals()
    vision = model.config.vision_config
    side = vision.image_size // vision.patch_size
    if host.inside:
        host.check_item_tokens(side * side)
        image = model.config.image_token_id
        inside.attach(host, inside.Placeholders({image: "image"}, {image: side * side}, {image: (side, side)}))
        host.rewrite_prompts(lambda given: _rewrite(host, given))  # the placeholders stay; their count is checked
        return
    host.check_merge_schedule(side * side, clip.feature_depth(tower, model.config.vision_feature_layer))
    host.patch_encoder("get_image_features", lambda stock: _image_features(host))
    host.rewrite_prompts(lambda given: _rewrite(host, given))


def _image_features(host: Host):
    inner = host.inner

    def get_image_features(
        pixel_values, vision_feature_layer=None, vision_feature_select_strategy=None, image_sizes=None, **kwargs
    ):
        host.check_strategy(vision_feature_select_strategy)
        if image_sizes is not None:
            raise ValueError(f"pruning does not support per-image sizes (image_sizes) on {type(host.model).__name__}")
        vision = clip.encode(
            inner.vision_tower, pixel_values, host.layer(vision_feature_layer), host.asked, host.merger
        )
        kept = host.prune_rows(vision, inner.multi_modal_projector, "image")
        return BaseModelOutputWithPooling(last_hidden_state=vision.features, pooler_output=list(kept))

    return get_image_features


def _rewrite(host: Host, given: dict):
    """Each image's placeholder run cut to the kept count."""
    pixel_values = given.get("pixel_values")
    if pixel_values is None:
        return None
    tower = host.inner.vision_tower
    num_tokens = clip.tokens_per_image(pixel_values, tower)
    kept = num_tokens if host.inside else host.pruner.kept_per_image(num_tokens, clip.patch_grid(pixel_values, tower))
    images = pixel_values.shape[0]
    return rewrite_placeholders(
        given, host.config.image_token_id, [num_tokens] * images, [kept] * images, host.pad_id, kind="image"
    )
