"""VisPruner reference implementation on Hugging Face transformers.

>>> import llava
>>> llava.apply_pruning(model, method="vispruner", visual_token_num=64, important_ratio=0.5)
>>> model.generate(**processor(text=prompt, images=image, return_tensors="pt"))
>>> llava.remove_pruning(model)
"""

import importlib

# Public names and the submodule holding each, imported on first use: `import llava` stays cheap
# (no torch, no model classes) for command-line tools that only parse their arguments.
_EXPORTS = {
    "apply_pruning": "models",
    "attach_pruner": "models",
    "remove_pruning": "models",
    "METHODS": "pruning",
    "PruningConfig": "pruning",
    "create_pruner": "pruning",
    "list_methods": "pruning",
    "load_pretrained_model": "checkpoints",
    "support_matrix": "support",
}
__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
