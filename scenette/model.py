"""Scenette-LLaVA: a small LLaVA-1.5-architecture model in transformers classes, and its processor.

`LlavaForConditionalGeneration` with a CLIP-style ViT ([CLS] + 24x24 patches of 14 px at 336 px), a
2-layer MLP projector (GELU), and a Llama language model (RoPE); features from the penultimate
vision layer with [CLS] dropped ("default"), exactly as LLaVA-1.5 reads them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import torch
import transformers  # its classes load on first use, so `--help` stays fast

from .prompt import TEMPLATE
from .scene import IMAGE_SIZE
from .tokenizer import build_tokenizer

MODEL_NAME = "scenette-llava"
# The shipped checkpoint is package data, so it comes with every install, not only with a checkout.
CHECKPOINT = Path(resources.files("scenette") / MODEL_NAME)
PATCH_SIZE = 14
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
# LLaVA-1.5's template (system line included), for chat-style wrappers (e.g. lmms-eval's llava_hf).
CHAT_TEMPLATE = (
    TEMPLATE.system
    + TEMPLATE.sep
    + (
        "{% for message in messages %}{% if message['role'] == 'user' %}USER: "
        "{% for item in message['content'] %}{% if item['type'] == 'image' %}<image>\n{% endif %}{% endfor %}"
        "{% for item in message['content'] %}{% if item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %} "
        "{% else %}ASSISTANT: {% for item in message['content'] %}{% if item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}</s>"
        "{% endif %}{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
    )
)


@dataclass(frozen=True)
class Sizes:
    vision_hidden: int = 96
    vision_layers: int = 6
    vision_heads: int = 4
    text_hidden: int = 128
    text_layers: int = 4
    text_heads: int = 4
    max_positions: int = 1024


def build_processor(tokenizer=None) -> transformers.LlavaProcessor:
    tokenizer = build_tokenizer() if tokenizer is None else tokenizer
    image_processor = transformers.CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    )
    return transformers.LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
    )


def vision_config(sizes: Sizes) -> transformers.CLIPVisionConfig:
    return transformers.CLIPVisionConfig(
        hidden_size=sizes.vision_hidden,
        intermediate_size=4 * sizes.vision_hidden,
        num_hidden_layers=sizes.vision_layers,
        num_attention_heads=sizes.vision_heads,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        projection_dim=sizes.vision_hidden,
    )


def model_config(tokenizer, sizes: Sizes = Sizes()) -> transformers.LlavaConfig:
    text = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=sizes.text_hidden,
        intermediate_size=3 * sizes.text_hidden,
        num_hidden_layers=sizes.text_layers,
        num_attention_heads=sizes.text_heads,
        num_key_value_heads=sizes.text_heads,
        max_position_embeddings=sizes.max_positions,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
        initializer_range=sizes.text_hidden**-0.5,  # Llama's 0.02 suits width 4096; at 128 it stalls learning
    )
    return transformers.LlavaConfig(
        vision_config=vision_config(sizes),
        text_config=text,
        image_token_id=tokenizer.image_token_id,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
    )


def new_model(tokenizer, sizes: Sizes = Sizes(), seed: int = 0) -> transformers.LlavaForConditionalGeneration:
    torch.manual_seed(seed)
    model = transformers.LlavaForConditionalGeneration(model_config(tokenizer, sizes))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.max_new_tokens = 8
    model.generation_config.do_sample = False
    return model


def sizes_dict(sizes: Sizes) -> dict:
    return asdict(sizes)


def load_default(
    path: str | Path | None = None,
) -> tuple[transformers.LlavaForConditionalGeneration, transformers.LlavaProcessor]:
    """The shipped Scenette-LLaVA checkpoint (or the one at `path`) and its processor, in eval mode."""
    path = Path(path) if path is not None else CHECKPOINT
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"no Scenette-LLaVA checkpoint at {path} (config.json missing); "
            "train one with `bash scripts/train_scenette.sh` or pass the folder of one"
        )
    model = transformers.LlavaForConditionalGeneration.from_pretrained(path).eval()
    return model, transformers.AutoProcessor.from_pretrained(path)
