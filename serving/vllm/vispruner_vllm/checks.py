"""What scripts/setup_vllm_cpu.sh checks once the environment is installed."""

from __future__ import annotations


def check_environment() -> None:
    """Raise unless vLLM imports, the plugin is found through its entry point, and torch is a CPU build."""
    import importlib.metadata

    import torch

    if not torch.__version__.endswith("+cpu"):
        raise RuntimeError(f"expected the CPU build of torch, got {torch.__version__}")
    plugins = {entry.name: entry.value for entry in importlib.metadata.entry_points(group="vllm.general_plugins")}
    if plugins.get("vispruner") != "vispruner_vllm:register":
        raise RuntimeError(f"the vispruner plugin is not installed as a vllm.general_plugins entry point: {plugins}")
    from vllm import LLM, ModelRegistry  # noqa: F401  (fails while CUDA builds of torchaudio/torchcodec are installed)
    from vllm.plugins import load_general_plugins

    from . import ARCHITECTURES

    load_general_plugins()
    missing = set(ARCHITECTURES) - set(ModelRegistry.get_supported_archs())
    if missing:
        raise RuntimeError(f"the plugin did not register {', '.join(sorted(missing))}")
