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


def method_options(method: str) -> list[str]:
    """The options `method` accepts besides the budget: its constructor's parameters, declared once there."""
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"unknown pruning method {method!r}; available: {', '.join(list_methods())}")
    parameters = inspect.signature(METHODS[method].__init__).parameters
    return [name for name in parameters if name not in ("self", "visual_token_num")]


def check_options(method: str, options, also_accepted: str = "") -> None:
    """Raise ValueError for an unknown method or option, saying what `method` accepts and, in
    `also_accepted`, what else the caller accepts (e.g. a model family's own options)."""
    allowed = method_options(method)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)} for method {method!r}; "
            f"allowed: {', '.join(allowed) or 'none'}{also_accepted}"
        )


def create_pruner(method: str, visual_token_num: int, *, also_accepted: str = "", **options) -> TokenPruner:
    """Build the pruner registered as `method`; unknown methods or options raise ValueError (naming, after
    the method's own options, `also_accepted`: what else the caller takes, e.g. a model family's options)."""
    check_options(method, options, also_accepted)
    return METHODS[method](visual_token_num, **options)


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
    "check_options",
    "create_pruner",
    "list_methods",
    "method_options",
    "register_method",
]
