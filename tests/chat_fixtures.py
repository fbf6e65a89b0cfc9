"""Tiny checkpoints of the chat-template families saved to folders, as `llava.load_pretrained_model` reads them.

Each folder holds the tiny model of `llava.testing`, its image processor and a tokenizer with the family's
special tokens and a chat template: a short restatement of the real template's shape (turns, where image and
video placeholders go, the default system turn where the real one has it), not the checkpoint's own text.
The processor is saved through `image_only_class` (no torchvision here), as the loader then reads it.
SmolVLM's processor needs the `num2words` package (it words a video's frame count); without it that family
is left out of `available_families()`.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import transformers
from tokenizers import processors
from transformers import AutoTokenizer

import llava.testing as testing
from llava.checkpoints.image_only import VIDEO_SLOT, image_only_class

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


# Gemma 3: the BOS, a system turn folded into the first user turn, "model" for the assistant's turns
_GEMMA3 = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set turns = messages[1:] %}"
    "{% set system = messages[0]['content'] if messages[0]['content'] is string "
    "else messages[0]['content'][0]['text'] %}{% set prefix = system + '\\n\\n' %}"
    "{% else %}{% set turns = messages %}{% set prefix = '' %}{% endif %}"
    "{% for message in turns %}<start_of_turn>{{ 'model' if message['role'] == 'assistant' else message['role'] }}\n"
    "{% if loop.first %}{{ prefix }}{% endif %}"
    + _PARTS.replace("IMAGE", "<start_of_image>").replace("VIDEO", "")
    + "<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
# SmolVLM / Idefics3: the BOS, "Role:" turns (no space before an image) ended by <end_of_utterance>
_IDEFICS3 = (
    "{{ bos_token }}{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'] is not string and message['content'][0]['type'] == 'image' %}:{% else %}: {% endif %}"
    + _PARTS.replace("IMAGE", "<image>").replace("VIDEO", "")
    + "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)
GEMMA3_TOKENS = {"image_token": "<image_soft_token>", "boi_token": "<start_of_image>", "eoi_token": "<end_of_image>"}
SMOLVLM_TOKENS = {"image_token": "<image>", "fake_image_token": "<fake_token_around_image>",
                  "global_image_token": "<global-img>", "end_of_utterance_token": "<end_of_utterance>"}  # fmt: skip
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
    # the image_seq_len of each: (tile size / patch size)^2 / scale_factor^2 of `llava.testing.smolvlm`'s shapes
    "gemma3": ("build_tiny_gemma3", {}, "Gemma3Processor", {"image_seq_length": 256}, _GEMMA3, GEMMA3_TOKENS),
    "smolvlm": ("build_tiny_smolvlm", {}, "SmolVLMProcessor", {"image_seq_len": 81}, _IDEFICS3, SMOLVLM_TOKENS),
    "idefics3": ("build_tiny_idefics3", {}, "Idefics3Processor", {"image_seq_len": 169}, _IDEFICS3, SMOLVLM_TOKENS),
}  # fmt: skip
ADDS_BOS = {"gemma3", "idefics3"}  # their tokenizers (Gemma's, Llama 3's) add the BOS their templates also write
NEEDS = {"smolvlm": "num2words"}  # packages a family's processor refuses to be built without


def available_families() -> list[str]:
    """The families whose processors can be built here, sorted."""
    from importlib.util import find_spec

    return sorted(family for family in FAMILIES if family not in NEEDS or find_spec(NEEDS[family]) is not None)


def write_chat_checkpoint(family: str, folder: Path) -> Path:
    """The family's tiny model, image processor and tokenizer (special tokens, chat template) in `folder`."""
    builder, arguments, processor_name, options, template, special = FAMILIES[family]
    built = getattr(testing, builder)(**arguments)
    if len(built) == 2:  # (model, processor): Gemma 3's builder hands its real processor
        model, processor = built
        image_processor, tokenizer = processor.image_processor, processor.tokenizer
    else:
        model, image_processor, tokenizer = built
    if family in ADDS_BOS:
        tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{tokenizer.bos_token} $A", special_tokens=[(tokenizer.bos_token, tokenizer.bos_token_id)]
        )
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if (
        special
    ):  # named special tokens (InternVL's, Gemma 3's, SmolVLM's) live in tokenizer_config.json, as in real checkpoints
        config_file = folder / "tokenizer_config.json"
        config = json.loads(config_file.read_text())
        config["extra_special_tokens"] = special
        config_file.write_text(json.dumps(config))
        tokenizer = AutoTokenizer.from_pretrained(folder)
    processor_class = image_only_class(getattr(transformers, processor_name))
    if VIDEO_SLOT in inspect.signature(processor_class.__init__).parameters:  # SmolVLM's slot has no default
        options = {**options, VIDEO_SLOT: None}
    processor = processor_class(image_processor=image_processor, tokenizer=tokenizer, chat_template=template, **options)
    processor.save_pretrained(folder)
    return folder
