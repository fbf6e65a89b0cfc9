"""Helpers the tests share (conftest.py holds only fixtures)."""

import importlib.util
from pathlib import Path
from types import ModuleType

import torch
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
PACKAGES = ("llava", "scenette", "efficiency", "eval", "analysis")  # the top-level packages pyproject.toml installs
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


def load_example(name: str) -> ModuleType:
    """A script of examples/ as a module (examples/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
