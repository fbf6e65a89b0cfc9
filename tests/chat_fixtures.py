"""Tiny checkpoints of the chat-template families saved to folders, as `llava.load_pretrained_model` reads them.

Each folder holds the tiny model of `llava.testing`, its image processor and a tokenizer with the family's
special tokens and a chat template: a short restatement of the real template's shape (turns, where image and
video placeholders go, the default system turn where the real one has it), not the checkpoint's own text.
The processor is saved through `image_only_class` (no torchvision here), as the loader then reads it.
"""

from __future__ import annotations

import json
from pathlib import Path

import transformers
from transformers import AutoTokenizer

import llava.testing as testing
from llava.checkpoints.image_only import image_only_class

_PARTS = (
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}IMAGE{% elif part['type'] == 'video' %}VIDEO"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
)
_CHATML = (
    "{% for message in messages %}DEFAULT<|im_start|>{{ message['role'] }}\n" + _PARTS + "<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QWEN_DEFAULT_SYSTEM = (
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
)


def _chatml(image: str, video: str, default_system: bool) -> str:
    template = _CHATML.replace("IMAGE", image).replace("VIDEO", video)
    return template.replace("DEFAULT", QWEN_DEFAULT_SYSTEM if default_system else "")


QWEN_VISION = ("<|vision_start|><|image_pad|><|vision_end|>", "<|vision_start|><|video_pad|><|vision_end|>")
QWEN_TOKENS = {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"}
FAMILIES = {
    # family: (builder, its arguments, processor class, processor options, chat template, special tokens)
    "qwen2_vl": ("build_tiny_qwen2_vl", {"version": "2"}, "Qwen2VLProcessor", {}, _chatml(*QWEN_VISION, True), QWEN_TOKENS),
    "qwen2_5_vl": (
        "build_tiny_qwen2_vl", {"version": "2.5"}, "Qwen2_5_VLProcessor", {}, _chatml(*QWEN_VISION, True), QWEN_TOKENS,
    ),
    "qwen3_vl": ("build_tiny_qwen3_vl", {}, "Qwen3VLProcessor", {}, _chatml(*QWEN_VISION, False), QWEN_TOKENS),
    "onevision": (
        "build_tiny_llava_onevision", {}, "LlavaOnevisionProcessor",
        {"num_image_tokens": 16, "vision_feature_select_strategy": "full", "vision_aspect_ratio": "anyres_max_9"},
        _chatml("<image>\n", "<video>\n", False), {},
    ),
    "internvl": (
        "build_tiny_internvl", {}, "InternVLProcessor", {"image_seq_length": 256},
        _chatml("<IMG_CONTEXT>\n", "<video>\n", False),
        {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>",
         "video_token": "<video>"},
    ),
}  # fmt: skip


def write_chat_checkpoint(family: str, folder: Path) -> Path:
    """The family's tiny model, image processor and tokenizer (special tokens, chat template) in `folder`."""
    builder, arguments, processor_name, options, template, special = FAMILIES[family]
    model, image_processor, tokenizer = getattr(testing, builder)(**arguments)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if special:  # named special tokens (InternVL's) live in tokenizer_config.json, as in real checkpoints
        config_file = folder / "tokenizer_config.json"
        config = json.loads(config_file.read_text())
        config["extra_special_tokens"] = special
        config_file.write_text(json.dumps(config))
        tokenizer = AutoTokenizer.from_pretrained(folder)
    processor_class = image_only_class(getattr(transformers, processor_name))
    processor = processor_class(image_processor=image_processor, tokenizer=tokenizer, chat_template=template, **options)
    processor.save_pretrained(folder)
    return folder
