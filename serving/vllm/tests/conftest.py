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

import torch  # noqa: E402

torch.set_num_threads(1)
