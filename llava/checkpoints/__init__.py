"""Load LLaVA checkpoints, original or transformers-format, as transformers models with their processor.

>>> import llava
>>> model, processor = llava.load_pretrained_model("liuhaotian/llava-v1.5-7b", dtype=torch.float16, device_map="cuda:0")
>>> model, processor = llava.load_pretrained_model("llava-hf/llava-1.5-7b-hf")
"""

from __future__ import annotations

import json
import os

import torch
import transformers
from transformers import AutoProcessor
from transformers.utils import cached_file

from . import image_only, original


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
    Transformers-format checkpoints (`llava-hf/...`) load as they are, as the class their `config.json`
    names, which must be one of the supported families (`supported_classes()`: the classes pruning
    supports); any other class is refused before any weight is read. The processor is the checkpoint's
    (`AutoProcessor`); on a machine without torchvision a processor with a video slot loads without its
    video processor (`image_only.py`: images and text as usual, videos refused).

    `hub_kwargs` (revision, token, cache_dir, local_files_only, ...) go to every Hub lookup.
    """
    if not isinstance(path_or_id, (str, os.PathLike)) or not str(path_or_id).strip():
        raise ValueError(f"path_or_id must be a local folder or a Hub model id, got {path_or_id!r}")
    path_or_id = str(path_or_id)
    config_file = cached_file(path_or_id, "config.json", **hub_kwargs)
    config = _read_config(config_file, path_or_id)
    model_kwargs = {"dtype": dtype, "device_map": device_map, "attn_implementation": attn_implementation}
    if original.is_original_layout(config):
        return original.load(
            path_or_id, config, vision_tower=vision_tower, hub_kwargs=hub_kwargs, model_kwargs=model_kwargs
        )
    if vision_tower is not None:
        raise ValueError("vision_tower only applies to original LLaVA checkpoints; this one is in transformers format")
    model_class = model_class_of(config, path_or_id)  # before anything else of the checkpoint is read
    return _load_transformers_format(path_or_id, model_class, config.get("model_type"), hub_kwargs, model_kwargs)


def supported_classes() -> dict[str, str]:
    """{model_type: class name} of the transformers classes this loader builds: the families pruning
    supports (`llava.models.HOSTS`; the original-LLaVA conversion builds two of them)."""
    from ..models import HOSTS

    return {path.split(".")[2]: path.rsplit(".", 1)[1] for path in HOSTS}


def model_class_of(config: dict, path_or_id: str = "the checkpoint"):
    """The transformers class named by a transformers-format `config.json` (its `architectures`, else its
    `model_type`), if it is one of `supported_classes()`; ValueError naming the allowed ones otherwise.
    Only those names are looked up in `transformers`, so a checkpoint cannot pick any other class."""
    allowed = supported_classes()
    names = ", ".join(sorted(allowed.values()))
    architectures = config.get("architectures")
    if architectures:
        if not isinstance(architectures, list) or not all(isinstance(name, str) for name in architectures):
            raise ValueError(
                f"{path_or_id}: config.json 'architectures' must be a list of class names, got {architectures!r}"
            )
        name = architectures[0]
        if name not in allowed.values():
            raise ValueError(
                f"{path_or_id}: config.json names architecture {name!r}, which this loader does not load; "
                f"supported: {names} (and original LLaVA checkpoints, model_type llava_llama)"
            )
    else:
        model_type = config.get("model_type")
        if not isinstance(model_type, str) or model_type not in allowed:
            raise ValueError(
                f"{path_or_id}: config.json has no 'architectures' and model_type {model_type!r} is not a supported "
                f"one; supported model types: {', '.join(sorted(allowed))} (and llava_llama, original LLaVA)"
            )
        name = allowed[model_type]
    return getattr(transformers, name)


def _read_config(config_file: str, path_or_id: str) -> dict:
    try:
        with open(config_file, encoding="utf-8") as handle:
            config = json.load(handle)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path_or_id}: {config_file} is not a valid JSON file ({error})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path_or_id}: {config_file} must hold a JSON object, got {type(config).__name__}")
    return config


def _load_transformers_format(path_or_id: str, model_class, model_type, hub_kwargs: dict, model_kwargs: dict):
    model = model_class.from_pretrained(path_or_id, **hub_kwargs, **model_kwargs).eval()
    processor_class = image_only.processor_class_of(model_type)
    if processor_class is not None and image_only.needs_image_only(processor_class):
        # no torchvision here: the processor without its video part (images and text work as usual)
        processor = image_only.image_only_class(processor_class).from_pretrained(path_or_id, **hub_kwargs)
    else:
        processor = AutoProcessor.from_pretrained(path_or_id, **hub_kwargs)
    processor.tokenizer.padding_side = "left"
    return model, processor


__all__ = ["load_pretrained_model"]
