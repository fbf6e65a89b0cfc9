"""VisPruner (and the library's other vision-side methods) inside vLLM: an out-of-tree model plugin.

vLLM calls `register` in every process it starts (entry point `vllm.general_plugins`); the model
classes are registered by name and imported only when a config asks for them. docs/serving.md says
how to serve a checkpoint with pruning. This module imports nothing at load time: the environment's
`.pth` hook (`torchvision_ops`) imports the package at every interpreter start.
"""

from __future__ import annotations

# Architecture name (what hf_overrides["architectures"] names) -> "module:class".
ARCHITECTURES = {
    "VisPrunerLlavaForConditionalGeneration": "vispruner_vllm.llava:VisPrunerLlavaForConditionalGeneration",
    "VisPrunerLlavaNextForConditionalGeneration": "vispruner_vllm.llava_next:VisPrunerLlavaNextForConditionalGeneration",
    "VisPrunerQwen2_5_VLForConditionalGeneration": "vispruner_vllm.qwen2_5_vl:VisPrunerQwen2_5_VLForConditionalGeneration",
}


def register() -> None:
    """Register the pruned architectures with vLLM (safe to call more than once)."""
    from vllm import ModelRegistry

    for name, location in ARCHITECTURES.items():
        if name not in ModelRegistry.get_supported_archs():
            ModelRegistry.register_model(name, location)
