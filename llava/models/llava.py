"""Pruning for `LlavaForConditionalGeneration` (LLaVA-1.5 and its kin), patched per instance.

Two seams are overridden on the one model object:
* `model.model.get_image_features`, which both `forward` and `generate` call to encode images: it now
  runs the vision tower only to the feature layer, lets the pruner reduce the patch features, and
  projects the T kept tokens (the projector acts per token, so projecting after selection is exact);
* `model.forward` and `model.generate`, which shrink each image's placeholder run from N to T before
  the stock code runs, so `processor(...)` output can be passed unchanged. `generate` returns the
  caller's own prompt ids followed by the new tokens, as an unpruned model would.
"""
from __future__ import annotations

import functools

from transformers.modeling_outputs import BaseModelOutputWithPooling

from ..patching import InstancePatch
from ..pruning.base import VisionTokenPruner
from . import clip
from .common import patch_forward, patch_generate
from .placeholders import shrink_image_runs


def attach(model, pruner: VisionTokenPruner, patch: InstancePatch) -> None:
    inner = model.model
    patch.set(inner, "get_image_features", _pruned_image_features(inner, pruner))
    rewrite = _rewrite(model, pruner)
    patch_forward(model, patch, rewrite)
    patch_generate(model, patch, rewrite)


def _pruned_image_features(inner, pruner: VisionTokenPruner):
    stock = inner.get_image_features

    @functools.wraps(stock)
    def get_image_features(
        pixel_values, vision_feature_layer=None, vision_feature_select_strategy=None, image_sizes=None, **kwargs
    ):
        layer = inner.config.vision_feature_layer if vision_feature_layer is None else vision_feature_layer
        strategy = vision_feature_select_strategy or inner.config.vision_feature_select_strategy
        if strategy != "default":
            raise ValueError(
                f"pruning supports vision_feature_select_strategy='default' (patch tokens, [CLS] dropped), got {strategy!r}"
            )
        if image_sizes is not None:
            raise ValueError("pruning does not support per-image sizes (image_sizes) on LlavaForConditionalGeneration")
        vision = clip.encode(inner.vision_tower, pixel_values, layer, "cls_attention" in pruner.requires)
        kept = inner.multi_modal_projector(pruner.reduce(vision))
        output = BaseModelOutputWithPooling(last_hidden_state=vision.features, pooler_output=list(kept))
        return output if kwargs.get("return_dict", True) else output.to_tuple()

    return get_image_features


def _shrink(model, pruner, pixel_values, input_ids, attention_mask=None, labels=None):
    """The batch with each image's placeholder run cut to the kept count, or None if nothing to cut."""
    if pixel_values is None or input_ids is None:
        return None
    tower = model.model.vision_tower
    num_tokens = clip.tokens_per_image(pixel_values, tower)
    pad = model.config.text_config.pad_token_id
    return shrink_image_runs(
        input_ids,
        image_token_id=model.config.image_token_id,
        num_images=pixel_values.shape[0],
        tokens_per_image=num_tokens,
        kept_per_image=pruner.kept_per_image(num_tokens),
        attention_mask=attention_mask,
        labels=labels,
        pad_token_id=0 if pad is None else pad,
    )


def _rewrite(model, pruner):
    def rewrite(given):
        shrunk = _shrink(
            model, pruner, given.get("pixel_values"), given.get("input_ids"), given.get("attention_mask"), given.get("labels")
        )
        if shrunk is None:
            return None
        return {"input_ids": shrunk.input_ids, "attention_mask": shrunk.attention_mask, "labels": shrunk.labels}

    return rewrite
