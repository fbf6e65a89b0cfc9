import pytest
import torch

from bad_inputs_cli import sandbox  # noqa: F401  the fixture of the test_bad_inputs_cli_*.py files
from llava.testing import build_tiny_llava
from support import shapes_image  # pytest puts tests/ on sys.path: the helpers and oracles live there

# Tiny models gain nothing from intra-op threads, and when other processes share the cores, spinning
# OpenMP workers slow every small matmul down by up to 100x; one thread keeps the suite fast.
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny():
    """A fresh random LLaVA-1.5-shaped model (112 px, 8x8 patches) and processor per test module."""
    model, processor = build_tiny_llava(image_size=112, vision_layers=4)
    return model, processor


@pytest.fixture(scope="module")
def images():
    return [shapes_image(112, seed) for seed in range(3)]
