"""Scenette: a procedurally generated VQA benchmark and Scenette-LLaVA, a small LLaVA-1.5-architecture
model trained on it here, so the whole pruning pipeline runs offline on a CPU with meaningful numbers.

>>> import scenette
>>> model, processor = scenette.load_default()              # the shipped checkpoint
>>> rows = scenette.eval_rows("reading")                    # a fixed evaluation set
>>> scenette.evaluate(model, processor, rows)["accuracy"]   # {"reading": ...}
"""

import importlib

# Public names and the submodule holding each; imported on first use, so `python -m
# scenette.<module>` does not import its own module twice.
_EXPORTS = {
    "CHECKPOINT": "model",
    "MODEL_NAME": "model",
    "build_processor": "model",
    "load_default": "model",
    "QUESTION_TYPES": "questions",
    "conversation": "prompt",
    "question_text": "prompt",
    "score_answer": "prompt",
    "doc_image": "data",
    "eval_file": "data",
    "eval_rows": "data",
    "subset": "data",
    "evaluate": "evaluate",
    "predict": "evaluate",
    "render": "scene",
    "render_image": "scene",
    "sample_scene": "scene",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
