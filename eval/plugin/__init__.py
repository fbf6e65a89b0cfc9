"""lmms-eval plugin: registers the model `vispruner` through the `lmms_eval.models` entry point.

`pip install -e .` is all it takes; `python -m lmms_eval --model vispruner ...` then finds it.
"""
from __future__ import annotations

MODEL_ID = "vispruner"


def manifests():
    """Entry-point payload read by lmms-eval's model registry."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return [ModelManifest(model_id=MODEL_ID, simple_class_path="eval.plugin.model.PrunedLlava")]
