"""VisPruner reference implementation on Hugging Face transformers.

>>> import llava
>>> llava.apply_pruning(model, method="vispruner", visual_token_num=64, important_ratio=0.5)
>>> model.generate(**processor(text=prompt, images=image, return_tensors="pt"))
>>> llava.remove_pruning(model)
"""
from .checkpoints import load_pretrained_model
from .models import apply_pruning, remove_pruning
from .pruning import METHODS, PruningConfig, create_pruner, list_methods

__all__ = [
    "METHODS",
    "PruningConfig",
    "apply_pruning",
    "create_pruner",
    "list_methods",
    "load_pretrained_model",
    "remove_pruning",
]
__version__ = "0.1.0"
