"""Load LLaVA checkpoints, original or transformers-format, as transformers models with their processor.

>>> import llava
>>> model, processor = llava.load_pretrained_model("liuhaotian/llava-v1.5-7b", dtype=torch.float16, device_map="cuda:0")
>>> model, processor = llava.load_pretrained_model("llava-hf/llava-1.5-7b-hf")
"""

from __future__ import annotations

import json

import torch
import transformers
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor
from transformers.utils import cached_file

from . import original


def load_pretrained_model(
    path_or_id: str,
    *,
    dtype: torch.dtype | str | None = None,
    device_map: str | dict | None = None,
    attn_implementation: str = "sdpa",
    vision_tower: str | None = None,
    **hub_kwargs,
):
    """(model, processor) for a local folder or Hub id, in eval mode.

    Original LLaVA checkpoints (`model_type: llava_llama` with `mm_*` fields, e.g.
    `liuhaotian/llava-v1.5-7b`, `liuhaotian/llava-v1.6-vicuna-7b`) become
    `LlavaForConditionalGeneration` (image_aspect_ratio pad/square) or
    `LlavaNextForConditionalGeneration` (anyres) by a key mapping, with the original preprocessing;
    every weight must be used, and a missing CLIP tower is taken from `mm_vision_tower`.
    `vision_tower` overrides where that CLIP model (its config, image statistics and, if needed,
    weights) is read from, e.g. a local copy of `openai/clip-vit-large-patch14-336` when offline.
    Transformers-format checkpoints (`llava-hf/...`) load as they are.

    `hub_kwargs` (revision, token, cache_dir, local_files_only, ...) go to every Hub lookup.
    """
    config_file = cached_file(path_or_id, "config.json", **hub_kwargs)
    with open(config_file, encoding="utf-8") as handle:
        config = json.load(handle)
    model_kwargs = {"dtype": dtype, "device_map": device_map, "attn_implementation": attn_implementation}
    if original.is_original_layout(config):
        return original.load(
            path_or_id, config, vision_tower=vision_tower, hub_kwargs=hub_kwargs, model_kwargs=model_kwargs
        )
    if vision_tower is not None:
        raise ValueError("vision_tower only applies to original LLaVA checkpoints; this one is in transformers format")
    return _load_transformers_format(path_or_id, hub_kwargs, model_kwargs)


def _load_transformers_format(path_or_id: str, hub_kwargs: dict, model_kwargs: dict):
    config = AutoConfig.from_pretrained(path_or_id, **hub_kwargs)
    architectures = getattr(config, "architectures", None) or []
    model_class = getattr(transformers, architectures[0], None) if architectures else None
    model_class = model_class or AutoModelForImageTextToText
    model = model_class.from_pretrained(path_or_id, **hub_kwargs, **model_kwargs).eval()
    processor = AutoProcessor.from_pretrained(path_or_id, **hub_kwargs)
    processor.tokenizer.padding_side = "left"
    return model, processor


__all__ = ["load_pretrained_model"]
