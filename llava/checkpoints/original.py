"""Original LLaVA checkpoints (haotian-liu/LLaVA layout) as transformers Llava / LlavaNext models.

The layout of `liuhaotian/llava-v1.5-7b` and `llava-v1.6-vicuna-7b/13b`: a `config.json` with
`model_type: llava_llama` holding the Llama settings plus `mm_*` fields, and weights named
`model.layers.*` (Llama), `model.mm_projector.{0,2}.*` (2-layer MLP), `model.vision_tower.vision_tower.
vision_model.*` (CLIP), `model.image_newline` (1.6 only) and `lm_head.weight`. The CLIP tower's own
settings and image statistics come from the model named by `mm_vision_tower`.

The tokenizer has no `<image>` token (LLaVA splices images in by index); one is appended, and its
rows in the embedding and the LM head are zero and it is suppressed in generation, so the original
vocabulary's logits are unchanged and it is never produced.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from transformers import (
    AddedToken,
    AutoTokenizer,
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    CLIPVisionModel,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaImageProcessorPil,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    LlavaNextImageProcessorPil,
    LlavaNextProcessor,
    LlavaProcessor,
)

IMAGE_TOKEN = "<image>"

# original name pattern -> transformers name; every checkpoint key must match exactly one.
KEY_MAPPING = {
    r"^model\.vision_tower\.vision_tower\.vision_model\.": "model.vision_tower.",
    r"^model\.mm_projector\.0\.": "model.multi_modal_projector.linear_1.",
    r"^model\.mm_projector\.2\.": "model.multi_modal_projector.linear_2.",
    r"^model\.image_newline$": "model.image_newline",
    r"^model\.(embed_tokens|layers|norm)\b": r"model.language_model.\1",
    r"^lm_head\.": "lm_head.",
}
VISION_PREFIX = "model.vision_tower."

TEXT_MODEL_TYPES = {"llava_llama": "llama"}
PROJECTORS = {"mlp2x_gelu": "gelu"}
FEATURE_STRATEGIES = {"patch": "default", "cls_patch": "full"}
_LLAMA_KEYS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "hidden_act", "max_position_embeddings", "rms_norm_eps", "rope_theta",
    "rope_scaling", "attention_bias", "mlp_bias", "tie_word_embeddings", "initializer_range",
    "bos_token_id", "eos_token_id", "pad_token_id", "pretraining_tp",
)  # fmt: skip


def is_original_layout(config: dict) -> bool:
    return "mm_vision_tower" in config or config.get("model_type") in TEXT_MODEL_TYPES


def map_key(key: str) -> str | None:
    """The transformers name of an original checkpoint key, or None if the layout has no such key."""
    for pattern, replacement in KEY_MAPPING.items():
        if re.search(pattern, key):
            return re.sub(pattern, replacement, key)
    return None


def build_config(original: dict, vision_tower: str, tower_kwargs: dict):
    """A LlavaConfig (`image_aspect_ratio` pad/square) or LlavaNextConfig (anyres) from an original config."""
    model_type = original.get("model_type")
    if model_type not in TEXT_MODEL_TYPES:
        raise ValueError(
            f"unsupported original LLaVA model_type {model_type!r}; supported: {', '.join(TEXT_MODEL_TYPES)}"
        )
    projector = original.get("mm_projector_type", "linear")
    if projector not in PROJECTORS:
        raise ValueError(f"unsupported mm_projector_type {projector!r}; supported: {', '.join(PROJECTORS)}")
    select = original.get("mm_vision_select_feature", "patch")
    if select not in FEATURE_STRATEGIES:
        raise ValueError(f"unsupported mm_vision_select_feature {select!r}; supported: {', '.join(FEATURE_STRATEGIES)}")
    if original.get("mm_use_im_start_end"):
        raise ValueError("checkpoints with mm_use_im_start_end=true (image start/end tokens) are not supported")

    text_config = LlamaConfig(**{k: original[k] for k in _LLAMA_KEYS if k in original})
    common = dict(
        vision_config=CLIPVisionConfig.from_pretrained(vision_tower, **tower_kwargs),
        text_config=text_config,
        projector_hidden_act=PROJECTORS[projector],
        multimodal_projector_bias=True,
        vision_feature_layer=original.get("mm_vision_select_layer", -2),
        vision_feature_select_strategy=FEATURE_STRATEGIES[select],
    )
    aspect = original.get("image_aspect_ratio", "square")
    if aspect == "anyres":
        merge = original.get("mm_patch_merge_type", "flat")
        if merge != "spatial_unpad":
            raise ValueError(
                f"anyres checkpoints need mm_patch_merge_type 'spatial_unpad' (transformers' LLaVA-NeXT), got {merge!r}"
            )
        config = LlavaNextConfig(image_grid_pinpoints=original["image_grid_pinpoints"], **common)
    elif aspect in ("pad", "square"):
        config = LlavaConfig(**common)
    else:
        raise ValueError(f"unsupported image_aspect_ratio {aspect!r}; supported: pad, square, anyres")
    config.image_aspect_ratio = aspect  # kept as in the original config (lmms-eval's llava reads it)
    return config


def build_processor(config, tokenizer, vision_tower: str, tower_kwargs: dict):
    """The original preprocessing: CLIP statistics, pad-to-square in the mean colour, or the anyres grid."""
    clip = CLIPImageProcessorPil.from_pretrained(vision_tower, **tower_kwargs)
    settings = dict(
        size=clip.size,
        crop_size=clip.crop_size,
        image_mean=clip.image_mean,
        image_std=clip.image_std,
        resample=clip.resample,
    )
    common = dict(
        tokenizer=tokenizer,
        patch_size=config.vision_config.patch_size,
        vision_feature_select_strategy=config.vision_feature_select_strategy,
        num_additional_image_tokens=1,  # CLIP's [CLS]
    )
    if isinstance(config, LlavaNextConfig):
        image_processor = LlavaNextImageProcessorPil(image_grid_pinpoints=config.image_grid_pinpoints, **settings)
        return LlavaNextProcessor(image_processor=image_processor, **common)
    image_processor = LlavaImageProcessorPil(do_pad=config.image_aspect_ratio == "pad", **settings)
    return LlavaProcessor(image_processor=image_processor, **common)


def load_tokenizer(path: str, text_config, hub_kwargs: dict):
    # the text config stands in for config.json, whose model_type (llava_llama) transformers does not know
    tokenizer = AutoTokenizer.from_pretrained(path, config=text_config, **hub_kwargs)
    if tokenizer.convert_tokens_to_ids(IMAGE_TOKEN) in (None, tokenizer.unk_token_id):
        tokenizer.add_tokens([AddedToken(IMAGE_TOKEN, special=True, normalized=False)], special_tokens=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token  # as LLaVA's evaluation does
    tokenizer.padding_side = "left"
    return tokenizer


def load(path: str, original: dict, *, vision_tower: str | None, hub_kwargs: dict, model_kwargs: dict):
    """(model, processor) for an original-layout checkpoint folder `path`."""
    vision_tower = vision_tower or original["mm_vision_tower"]
    # the CLIP tower is another repository: the checkpoint's revision / subfolder do not apply to it
    tower_kwargs = {k: v for k, v in hub_kwargs.items() if k not in ("revision", "subfolder")}
    config = build_config(original, vision_tower, tower_kwargs)
    tokenizer = load_tokenizer(path, config.text_config, hub_kwargs)
    config.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    model_class = (
        LlavaNextForConditionalGeneration if isinstance(config, LlavaNextConfig) else LlavaForConditionalGeneration
    )
    model, info = model_class.from_pretrained(
        path, config=config, key_mapping=KEY_MAPPING, output_loading_info=True, **hub_kwargs, **model_kwargs
    )
    _check_loading(model, info, path, vision_tower, tower_kwargs)
    _add_image_token_rows(model, len(tokenizer))
    return model.eval(), build_processor(config, tokenizer, vision_tower, tower_kwargs)


def _check_loading(model, info: dict[str, Any], path: str, vision_tower: str, tower_kwargs: dict) -> None:
    missing = set(info["missing_keys"])
    vision_keys = {VISION_PREFIX + k for k in model.model.vision_tower.state_dict()}
    if vision_keys and vision_keys <= missing:
        # LLaVA-1.5 keeps the frozen CLIP tower out of some exports; it is the mm_vision_tower model.
        tower = CLIPVisionModel.from_pretrained(vision_tower, dtype=model.dtype, **tower_kwargs)
        model.model.vision_tower.load_state_dict(tower.state_dict())
        missing -= vision_keys
    problems = []
    if missing:
        problems.append(f"missing weights: {', '.join(sorted(missing))}")
    if info["unexpected_keys"]:
        problems.append(f"weights the original layout does not have: {', '.join(sorted(info['unexpected_keys']))}")
    if info["mismatched_keys"]:
        problems.append(f"weights of the wrong shape: {', '.join(sorted(str(k) for k in info['mismatched_keys']))}")
    if problems:
        raise ValueError(f"{path} does not load as an original LLaVA checkpoint: " + "; ".join(problems))


@torch.no_grad()
def _add_image_token_rows(model, vocab_size: int) -> None:
    old = model.get_input_embeddings().weight.shape[0]
    if vocab_size <= old:
        return
    model.resize_token_embeddings(vocab_size, mean_resizing=False)
    model.get_input_embeddings().weight[old:] = 0
    model.get_output_embeddings().weight[old:] = 0
    suppressed = list(model.generation_config.suppress_tokens or [])
    model.generation_config.suppress_tokens = sorted(set(suppressed) | set(range(old, vocab_size)))
