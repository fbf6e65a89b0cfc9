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

import functools
import inspect

import torch
from transformers import CLIPVisionModel
from transformers.modeling_outputs import BaseModelOutputWithPooling

from ..patching import InstancePatch
from ..pruning.base import LanguageModelPruner, TokenPruner, VisionTokenPruner, check_signals
from ..trace import Tracer
from . import clip, decoder
from .common import apply_method, patch_forward, patch_generate
from .placeholders import shrink_image_runs

LANGUAGE_SIGNALS = frozenset({"question"})  # the prompt text after the image, read inside the language model


def attach(model, pruner: TokenPruner, patch: InstancePatch, tracer: Tracer | None = None) -> None:
    tower = model.model.vision_tower
    if not isinstance(tower, CLIPVisionModel):
        raise ValueError(
            f"pruning on {type(model).__name__} supports CLIP vision towers (CLIPVisionModel), got {type(tower).__name__}"
        )
    # Vision-side methods get the encoder's signals, in-LLM methods the language model's: a method asking
    # for the other side's signal would silently receive nothing, so it is refused here.
    inside = isinstance(pruner, LanguageModelPruner)
    where = "inside its language model" if inside else "before its language model"
    provided = LANGUAGE_SIGNALS if inside else clip.SIGNALS | {"projected"}
    check_signals(pruner, provided, f"{type(model).__name__} with a CLIP vision tower, {where},")
    if inside:
        _attach_language_model(model, pruner, patch, tracer)
        return
    if "token_merging" in pruner.requires:  # a budget the merge schedule cannot reach fails now, not at the first image
        vision = model.config.vision_config
        depth = clip.feature_depth(tower, model.config.vision_feature_layer)
        pruner.schedule((vision.image_size // vision.patch_size) ** 2, depth)
    inner = model.model
    patch.set(inner, "get_image_features", _pruned_image_features(inner, pruner, tracer))
    rewrite = _rewrite(model, pruner)
    patch_forward(model, patch, rewrite)
    patch_generate(model, patch, rewrite)


def _pruned_image_features(inner, pruner: VisionTokenPruner, tracer: Tracer | None):
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
        merger = pruner if "token_merging" in pruner.requires else None
        vision = clip.encode(inner.vision_tower, pixel_values, layer, signals=pruner.requires, merger=merger)
        projected = "projected" in pruner.requires
        if projected:
            vision.projected = inner.multi_modal_projector(vision.features)
        pruned = apply_method(pruner, vision, split=tracer is not None)
        kept = pruned.features if projected else inner.multi_modal_projector(pruned.features)
        if tracer is not None:
            labels = [("image", item, 0) for item in range(len(kept))]
            tracer.add_rows("image", vision.grid, labels, pruned.indices, pruned.important)
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
        kept_per_image=pruner.kept_per_image(num_tokens, clip.patch_grid(pixel_values, tower)),
        attention_mask=attention_mask,
        labels=labels,
        pad_token_id=0 if pad is None else pad,
    )


def _rewrite(model, pruner):
    def rewrite(given):
        shrunk = _shrink(
            model,
            pruner,
            given.get("pixel_values"),
            given.get("input_ids"),
            given.get("attention_mask"),
            given.get("labels"),
        )
        if shrunk is None:
            return None
        return {"input_ids": shrunk.input_ids, "attention_mask": shrunk.attention_mask, "labels": shrunk.labels}

    return rewrite


def _attach_language_model(model, pruner: LanguageModelPruner, patch: InstancePatch, tracer: Tracer | None) -> None:
    vision = model.config.vision_config
    side = vision.image_size // vision.patch_size
    on_stage = None if tracer is None else tracer.stage_recorder((side, side))
    decoder.attach(model.model.language_model, pruner, patch, on_stage)
    patch.set(model.model, "forward", _marking_forward(model))
    patch.set(model, "forward", _refusing_labels(model))


def _image_index(model, input_ids: torch.Tensor) -> torch.Tensor:
    """[B, L] image number (within its row) of each `<image>` placeholder, -1 for other tokens."""
    vision = model.config.vision_config
    per_image = (vision.image_size // vision.patch_size) ** 2
    is_image = input_ids == model.config.image_token_id
    return torch.where(is_image, (is_image.cumsum(dim=-1) - 1) // per_image, -1)


def _marking_forward(model):
    inner = model.model
    stock = inner.forward
    signature = inspect.signature(stock)

    @functools.wraps(stock)
    def forward(*args, **kwargs):
        call = signature.bind_partial(*args, **kwargs)
        given = call.arguments
        input_ids = given.get("input_ids")
        marks = {}
        if input_ids is not None:
            if input_ids.shape[1] > 1:
                marks[decoder.IMAGE_INDEX_KWARG] = _image_index(model, input_ids)
        elif given.get("pixel_values") is not None or given.get("mm_encoder_outputs") is not None:
            raise ValueError(
                f"{model.pruning_config.method} prunes inside the language model and finds the image tokens "
                "by their <image> placeholders: pass input_ids, not inputs_embeds"
            )
        return stock(*call.args, **call.kwargs, **marks)

    return forward


def _refusing_labels(model):
    stock = model.forward
    signature = inspect.signature(stock)

    @functools.wraps(stock)
    def forward(*args, **kwargs):
        if signature.bind_partial(*args, **kwargs).arguments.get("labels") is not None:
            raise ValueError(
                f"labels are not supported with {model.pruning_config.method}: it drops tokens inside the language "
                "model, so the logits cover the kept tokens only"
            )
        return stock(*args, **kwargs)

    return forward
