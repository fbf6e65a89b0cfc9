"""Wiring of pruning methods into each supported model family, and the public switch.

One small module per host family (`llava.py`, ...) knows where that family encodes images and how
its prompts hold image placeholders; `apply_pruning` picks it by the model's class.
"""
from __future__ import annotations

from typing import Callable

from transformers import LlavaForConditionalGeneration

from ..patching import InstancePatch
from ..pruning import create_pruner
from ..pruning.base import TokenPruner
from . import llava

HOSTS: dict[type, Callable] = {LlavaForConditionalGeneration: llava.attach}

_PATCH_ATTR = "_pruning_patch"


def apply_pruning(model, method: str = "vispruner", visual_token_num: int = 64, **options):
    """Prune `model`'s visual tokens with `method` from now on; returns the same model.

    Per instance and reversible (`remove_pruning`); applying again replaces the earlier settings.
    The settings are readable as `model.pruning_config`. Options are the method's own, e.g.
    `important_ratio` for "vispruner" or `layer` for "fastv"; `llava.list_methods()` names the
    methods and each method's module documents its options and what `visual_token_num` means.
    Methods needing a signal the model cannot provide raise ValueError.
    """
    return apply_pruner(model, create_pruner(method, visual_token_num, **options))


def apply_pruner(model, pruner: TokenPruner):
    """`apply_pruning` with a pruner object built by the caller (registered or not, e.g. an analysis's
    own token selection); returns the same model."""
    attach = _host(model)
    remove_pruning(model)
    patch = InstancePatch()
    attach(model, pruner, patch)
    patch.set(model, "pruning_config", pruner.config)
    patch.set(model, _PATCH_ATTR, patch)
    return model


def remove_pruning(model):
    """Undo `apply_pruning` (a no-op on an unpruned model); returns the same model."""
    patch: InstancePatch | None = model.__dict__.get(_PATCH_ATTR)
    if patch is not None:
        patch.undo()
    return model


def _host(model) -> Callable:
    for cls in type(model).__mro__:
        if cls in HOSTS:
            return HOSTS[cls]
    supported = ", ".join(sorted(cls.__name__ for cls in HOSTS))
    raise ValueError(f"pruning does not support {type(model).__name__}; supported model classes: {supported}")
