"""Tiny random checkpoints saved where vLLM can load them (for the tests and the load benchmark)."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file, save_file

WEIGHTS = "model.safetensors"
# transformers 5 saves a CLIP tower's keys without the `vision_model.` level that Hub checkpoints
# (and vLLM's CLIP loader) have.
CLIP_PREFIX, HUB_CLIP_PREFIX = "vision_tower.", "vision_tower.vision_model."


def save_hub_layout(model, processor, folder: Path) -> Path:
    """Save `model` and `processor` to `folder` with CLIP keys in the Hub layout llava-hf checkpoints use."""
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    weights = load_file(folder / WEIGHTS)
    renamed = {
        HUB_CLIP_PREFIX + key[len(CLIP_PREFIX) :]
        if key.startswith(CLIP_PREFIX) and not key.startswith(HUB_CLIP_PREFIX)
        else key: value
        for key, value in weights.items()
    }
    save_file(renamed, folder / WEIGHTS, metadata={"format": "pt"})
    return folder
