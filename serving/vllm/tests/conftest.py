"""The plugin's tests: run in .venv-vllm (scripts/setup_vllm_cpu.sh) with `bash serving/vllm/test.sh`,
never by the main suite (pytest's testpaths there is tests/, and .venv has no vLLM)."""

import os

# vLLM's own runtime settings for a small shared CPU machine: one OpenMP thread, no core pinning,
# 1 GiB of KV cache, and the engine in this process (seconds to start instead of a spawned core).
for name, value in {
    "OMP_NUM_THREADS": "1",
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "HF_HUB_OFFLINE": "1",
}.items():
    os.environ.setdefault(name, value)

import pytest  # noqa: E402
import torch  # noqa: E402
from llava_case import IMAGE_SIZE, TEXT_HIDDEN  # noqa: E402
from vispruner_vllm.checkpoints import save_hub_layout  # noqa: E402

from llava.testing import build_tiny_llava  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    model, processor = build_tiny_llava(image_size=IMAGE_SIZE, vision_layers=4, text_hidden=TEXT_HIDDEN)
    folder = save_hub_layout(model, processor, tmp_path_factory.mktemp("tiny-llava"))
    return model, processor, folder
