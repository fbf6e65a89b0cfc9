import sys
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).parent))  # the test oracles live beside the tests

from llava.tiny import build_tiny_llava  # noqa: E402

# Tiny models gain nothing from intra-op threads, and when other processes share the cores, spinning
# OpenMP workers slow every small matmul down by up to 100x; one thread keeps the suite fast.
torch.set_num_threads(1)

PROMPT = "USER: <image>\nWhat is shown? ASSISTANT:"
LONG_PROMPT = "USER: <image>\nWhat is shown in the image here, tell me? ASSISTANT:"


def shapes_image(size: int, seed: int) -> Image.Image:
    """A small picture with a few coloured shapes, different per seed."""
    g = torch.Generator().manual_seed(seed)
    image = Image.new("RGB", (size, size), tuple(int(v) for v in torch.randint(0, 255, (3,), generator=g)))
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        x, y = (int(v) for v in torch.randint(0, size - size // 4, (2,), generator=g))
        colour = tuple(int(v) for v in torch.randint(0, 255, (3,), generator=g))
        draw.rectangle([x, y, x + size // 5, y + size // 6], fill=colour)
    return image


@pytest.fixture(scope="module")
def tiny():
    """A fresh random LLaVA-1.5-shaped model (112 px, 8x8 patches) and processor per test module."""
    model, processor = build_tiny_llava(image_size=112, vision_layers=4)
    return model, processor


@pytest.fixture(scope="module")
def images():
    return [shapes_image(112, seed) for seed in range(3)]
