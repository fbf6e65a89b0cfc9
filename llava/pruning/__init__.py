"""Pruning methods as pure tensor functions, and the registry that names them.

>>> from llava.pruning import list_methods, create_pruner
>>> list_methods()
['divprune', 'fastervlm', 'fastv', 'pdrop', 'pool', 'prumerge_plus', 'random', 'sparsevlm', 'tome', 'visionzip', 'vispruner']
>>> create_pruner("vispruner", visual_token_num=64, important_ratio=0.5)
VisPruner(visual_token_num=64, important_ratio=0.5)
"""

from __future__ import annotations

import inspect

from .base import LanguageModelPruner, PruningConfig, TokenPruner, VisionFeatures, VisionTokenPruner
from .divprune import DivPrune
from .fastervlm import FasterVLM
from .fastv import FastV
from .pdrop import PDrop
from .pool import Pool
from .prumerge import PruMergePlus
from .random_pruning import RandomPruner
from .sparsevlm import SparseVLM
from .tome import ToMe
from .visionzip import VisionZip
from .vispruner import VisPruner

METHODS: dict[str, type[TokenPruner]] = {}


def register_method(cls: type[TokenPruner]) -> type[TokenPruner]:
    """Add a pruner class to `METHODS` under its `name` (usable as a class decorator)."""
    if cls.name in METHODS and METHODS[cls.name] is not cls:
        raise ValueError(f"a pruning method named {cls.name!r} is already registered ({METHODS[cls.name].__name__})")
    METHODS[cls.name] = cls
    return cls


def list_methods() -> list[str]:
    """Names accepted by `create_pruner` and `llava.apply_pruning`, sorted."""
    return sorted(METHODS)


def create_pruner(method: str, visual_token_num: int, **options) -> TokenPruner:
    """Build the pruner registered as `method`; unknown methods or options raise ValueError."""
    if method not in METHODS:
        raise ValueError(f"unknown pruning method {method!r}; available: {', '.join(list_methods())}")
    cls = METHODS[method]
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "visual_token_num")]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)} for method {method!r}; "
            f"allowed: {', '.join(allowed) if allowed else 'none'}"
        )
    return cls(visual_token_num, **options)


for _method in (
    VisPruner,
    FasterVLM,
    RandomPruner,
    Pool,
    DivPrune,
    VisionZip,
    PruMergePlus,
    ToMe,
    FastV,
    PDrop,
    SparseVLM,
):
    register_method(_method)

__all__ = [
    "METHODS",
    "LanguageModelPruner",
    "PruningConfig",
    "TokenPruner",
    "VisionFeatures",
    "VisionTokenPruner",
    "create_pruner",
    "list_methods",
    "register_method",
]
