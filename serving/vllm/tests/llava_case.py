"""The tiny LLaVA-1.5 case the plugin's tests share: its settings, pictures, prompts and engine."""

from __future__ import annotations

import torch
from PIL import Image, ImageDraw
from vllm import LLM, SamplingParams

ARCHITECTURE = "VisPrunerLlavaForConditionalGeneration"
IMAGE_SIZE = 112  # 8 x 8 patches of 14 px
BUDGET = 10
RATIO = 0.5
NEW_TOKENS = 8
TEXT_HIDDEN = 128  # 4 heads of 32: vLLM's CPU attention has no kernel for head_dim 16
PROMPT_TEXT = "USER: {images}What is shown in the image? ASSISTANT:"


def shapes(seed: int) -> Image.Image:
    """A small picture with a few coloured shapes, different for each seed."""
    generator = torch.Generator().manual_seed(seed)
    image = Image.new("RGB", (IMAGE_SIZE + 24 * seed, IMAGE_SIZE), (240, 240, 240))
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        x, y = torch.randint(0, IMAGE_SIZE - 30, (2,), generator=generator).tolist()
        colour = tuple(torch.randint(0, 256, (3,), generator=generator).tolist())
        draw.ellipse((x, y, x + 28, y + 28), fill=colour)
    return image


def prompt(num_images: int) -> str:
    return PROMPT_TEXT.format(images="<image>\n" * num_images)


def overrides(settings: dict, architecture: str = ARCHITECTURE) -> dict:
    return {"architectures": [architecture], "vispruner": settings}


def engine(folder, settings: dict, architecture: str = ARCHITECTURE, max_model_len: int = 512) -> LLM:
    return LLM(
        model=str(folder),
        hf_overrides=overrides(settings, architecture),
        dtype="float32",
        max_model_len=max_model_len,
        max_num_seqs=4,
        limit_mm_per_prompt={"image": 2},
        seed=0,
    )


def request(images: list[Image.Image]) -> dict:
    return {"prompt": prompt(len(images)), "multi_modal_data": {"image": images}} if images else {"prompt": prompt(0)}


GREEDY = SamplingParams(temperature=0.0, max_tokens=NEW_TOKENS)
