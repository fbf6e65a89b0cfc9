"""lmms-eval plugin: registers the model `vispruner` through the `lmms_eval.models` entry point.

`pip install -e .` is all it takes for the model: `python -m lmms_eval --model vispruner ...` finds
it. Our tasks (eval/tasks/) need `--include_path`: lmms-eval 0.7.3 has no entry point for tasks, and
its LMMS_EVAL_PLUGINS variable adds task folders only after the task index is built (see
eval/README.md). `python -m eval.plugin tasks-path` prints the folder to pass.
"""

from __future__ import annotations

from pathlib import Path

MODEL_ID = "vispruner"
TASKS = Path(__file__).resolve().parent.parent / "tasks"  # package data, installed with `eval`


def manifests():
    """Entry-point payload read by lmms-eval's model registry."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return [ModelManifest(model_id=MODEL_ID, simple_class_path="eval.plugin.model.PrunedLlava")]
