"""Test oracle: write a small checkpoint the way haotian-liu/LLaVA saves one, and its preprocessing.

Everything here is restated from the original layout independently of `llava.checkpoints`: key
names are spelled out literally, so a wrong mapping in the loader cannot make the test pass.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    CLIPImageProcessorPil,
    GenerationConfig,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    PreTrainedTokenizerFast,
)

from llava.testing import CLIP_MEAN, CLIP_STD

ORIGINAL_NAMES = [  # transformers prefix -> original prefix, as LLaVA's LlavaLlamaForCausalLM names them
    ("model.vision_tower.", "model.vision_tower.vision_tower.vision_model."),
    ("model.multi_modal_projector.linear_1.", "model.mm_projector.0."),
    ("model.multi_modal_projector.linear_2.", "model.mm_projector.2."),
    ("model.language_model.", "model."),
    ("model.image_newline", "model.image_newline"),
    ("lm_head.", "lm_head."),
]


def original_state_dict(model, with_vision: bool = True) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in model.state_dict().items():
        for ours, theirs in ORIGINAL_NAMES:
            if key.startswith(ours):
                name = theirs + key[len(ours) :]
                break
        else:
            raise AssertionError(f"no original name for {key}")
        if with_vision or not name.startswith("model.vision_tower."):
            out[name] = value.detach().clone().contiguous()
    # LLaVA's older transformers saved the rotary buffers too; the loader must drop them, not fail.
    out["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(4)
    return out


def save_clip(model, folder: Path, image_size: int) -> Path:
    """The `mm_vision_tower` folder: CLIP vision config + weights + image statistics."""
    model.model.vision_tower.save_pretrained(folder)
    CLIPImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    ).save_pretrained(folder)
    return folder


def save_original(
    model, tokenizer, folder: Path, clip_folder: Path, aspect: str = "pad", pinpoints=None, with_vision: bool = True
) -> Path:
    text = model.config.text_config
    config = {
        "architectures": ["LlavaLlamaForCausalLM"],
        "model_type": "llava_llama",
        "hidden_size": text.hidden_size,
        "intermediate_size": text.intermediate_size,
        "num_hidden_layers": text.num_hidden_layers,
        "num_attention_heads": text.num_attention_heads,
        "num_key_value_heads": text.num_key_value_heads,
        "max_position_embeddings": text.max_position_embeddings,
        "rms_norm_eps": text.rms_norm_eps,
        "vocab_size": model.get_input_embeddings().weight.shape[0],
        "hidden_act": "silu",
        "bos_token_id": text.bos_token_id,
        "eos_token_id": text.eos_token_id,
        "pad_token_id": text.pad_token_id,
        "tie_word_embeddings": False,
        "mm_vision_tower": str(clip_folder),
        "mm_hidden_size": model.config.vision_config.hidden_size,
        "mm_projector_type": "mlp2x_gelu",
        "mm_vision_select_layer": -2,
        "mm_vision_select_feature": "patch",
        "mm_use_im_start_end": False,
        "mm_use_im_patch_token": False,
        "image_aspect_ratio": aspect,
        "tune_mm_mlp_adapter": False,
        "torch_dtype": "float32",
    }
    if aspect == "anyres":
        config.update(
            image_grid_pinpoints=pinpoints, mm_patch_merge_type="spatial_unpad", unfreeze_mm_vision_tower=True
        )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    save_file(original_state_dict(model, with_vision), str(folder / "model.safetensors"), metadata={"format": "pt"})
    GenerationConfig(
        bos_token_id=text.bos_token_id, eos_token_id=text.eos_token_id, pad_token_id=text.pad_token_id
    ).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tokenizer_without_image_token() -> PreTrainedTokenizerFast:
    """Like LLaVA's Llama tokenizer: no `<image>` token of its own."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, show_progress=False, special_tokens=["<pad>", "<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )  # fmt: skip
    backend.train_from_iterator(["USER: What is shown in the image? ASSISTANT: a red circle."], trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


# --- LLaVA's preprocessing, restated (llava/mm_utils.py) ---------------------------------------


def expand2square(image: Image.Image, background) -> Image.Image:
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    canvas = Image.new(image.mode, (side, side), background)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def anyres_views(image: Image.Image, pinpoints, crop: int, base: int) -> list[Image.Image]:
    """The base view then the grid tiles, as LLaVA-1.6's process_anyres_image cuts them."""
    width, height = image.size
    best, best_effective, best_waste = None, 0, math.inf
    for target_w, target_h in pinpoints:
        scale = min(target_w / width, target_h / height)
        effective = min(int(width * scale) * int(height * scale), width * height)
        waste = target_w * target_h - effective
        if effective > best_effective or (effective == best_effective and waste < best_waste):
            best, best_effective, best_waste = (target_w, target_h), effective, waste
    target_w, target_h = best
    if target_w / width < target_h / height:
        new_w, new_h = target_w, min(math.ceil(height * target_w / width), target_h)
    else:
        new_w, new_h = min(math.ceil(width * target_h / height), target_w), target_h
    padded = Image.new("RGB", (target_w, target_h), (0, 0, 0))
    padded.paste(image.resize((new_w, new_h)), ((target_w - new_w) // 2, (target_h - new_h) // 2))
    tiles = [
        padded.crop((x, y, x + crop, y + crop)) for y in range(0, target_h, crop) for x in range(0, target_w, crop)
    ]
    return [image.resize((base, base))] + tiles


def llava_next_like(model, pinpoints, seed: int = 1) -> LlavaNextForConditionalGeneration:
    """A LLaVA-NeXT model sharing `model`'s tower/LM settings, with its own random weights."""
    config = LlavaNextConfig(
        vision_config=model.config.vision_config,
        text_config=model.config.text_config,
        image_grid_pinpoints=pinpoints,
        image_token_id=model.config.image_token_id,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(seed)
    return LlavaNextForConditionalGeneration(config).eval()
