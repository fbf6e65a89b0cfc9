"""What every host family shares: wrapping `forward`/`generate` so the prompt is rewritten to the
kept token counts before the stock code runs, and checking that a method can be served.

A host supplies a *rewrite*: a function of the call's arguments (by name) that returns the
arguments to replace (e.g. `input_ids`, `attention_mask`, `labels`, and for Qwen `position_ids`),
or None when the call holds no full placeholder runs (text-only steps, already-rewritten prompts).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from ..patching import InstancePatch
from ..pruning.base import VisionFeatures, VisionTokenPruner, gather_tokens

Rewrite = Callable[[dict[str, Any]], "dict[str, Any] | None"]
CLS_ATTENTION = "cls_attention"
DROP = object()  # a rewrite's value for an argument to take out of the call (e.g. pixels already encoded)


class Pruned(NamedTuple):
    """What a method kept of a batch: features [B, k, C] (kept, or merged by methods that merge); their
    indices [B, k] ascending (None for a method that merges); the indices kept for importance [B, k']
    (VisPruner's split, when asked for; None otherwise)."""

    features: torch.Tensor
    indices: torch.Tensor | None
    important: torch.Tensor | None = None

    def row(self, row: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(indices, important) of one row."""
        return tuple(None if t is None else t[row] for t in (self.indices, self.important))


def has_select(pruner: VisionTokenPruner) -> bool:
    """Whether the method reports kept indices (layouts that place tokens by position need them)."""
    return type(pruner).select is not VisionTokenPruner.select


def _selected(method: VisionTokenPruner, vision: VisionFeatures, split: bool):
    """(kept indices, important ones or None): the split only when asked for, the same indices either way."""
    return method.select_split(vision) if split else (method.select(vision), None)


def prune(pruner: VisionTokenPruner, vision: VisionFeatures, budget: int, split: bool = False) -> Pruned:
    """Keep `budget` of the N tokens (pre-projector features; indices ascending, None for a method that
    merges tokens). budget >= N keeps all, 0 keeps none, without running the method. `split`: also
    report which kept tokens the method chose for importance (for tracing)."""
    batch, num_tokens, _ = vision.features.shape
    if budget >= num_tokens or budget <= 0:
        count = num_tokens if budget >= num_tokens else 0
        indices = torch.arange(count, device=vision.features.device).expand(batch, count)
        return Pruned(vision.features[:, :count], indices)
    method = pruner.with_budget(budget)
    if has_select(method):
        indices, important = _selected(method, vision, split)
        return Pruned(gather_tokens(vision.features, indices), indices, important)
    return Pruned(method.reduce(vision), None)


def apply_method(pruner: VisionTokenPruner, vision: VisionFeatures, split: bool = False) -> Pruned:
    """The method itself at its own budget (no shortcut): what `pruner.reduce` keeps, or, for methods
    needing "projected", the selected projected tokens; with the kept indices of methods whose reduce
    gathers their selection (and with `split`, the important ones)."""
    projected = "projected" in pruner.requires
    gathers = has_select(pruner) and type(pruner).reduce is VisionTokenPruner.reduce
    if not (projected or gathers):
        return Pruned(pruner.reduce(vision), None)
    indices, important = _selected(pruner, vision, split)
    return Pruned(gather_tokens(vision.projected if projected else vision.features, indices), indices, important)


def chain(*rewrites: Rewrite) -> Rewrite:
    """One rewrite applying several in turn (e.g. image runs, then video runs)."""

    def rewrite(given: dict[str, Any]) -> dict[str, Any] | None:
        changed: dict[str, Any] = {}
        for step in rewrites:
            replacements = step({**given, **changed})
            if replacements is not None:
                changed.update(replacements)
        return changed or None

    return rewrite


def patch_forward(model, patch: InstancePatch, rewrite: Rewrite) -> None:
    stock = model.forward
    signature = inspect.signature(stock)

    @functools.wraps(stock)
    def forward(*args, **kwargs):
        call = signature.bind_partial(*args, **kwargs)
        given = call.arguments
        flat = {**given, **given.get("kwargs", {})}
        replacements = rewrite(flat)
        if replacements is not None:
            if given.get("position_ids") is not None:
                raise ValueError(
                    "position_ids cannot be given with unpruned image placeholders; let the model compute them"
                )
            extra = given.setdefault("kwargs", {}) if "kwargs" in signature.parameters else given
            for name, value in replacements.items():
                if name in signature.parameters:
                    given[name] = None if value is DROP else value
                elif value is DROP:
                    extra.pop(name, None)
                else:
                    extra[name] = value
        return stock(*call.args, **call.kwargs)

    patch.set(model, "forward", forward)


def patch_generate(model, patch: InstancePatch, rewrite: Rewrite) -> None:
    """`generate` on the rewritten prompt, returning the caller's own prompt ids + the new tokens."""
    stock = model.generate

    @functools.wraps(stock)
    def generate(inputs=None, **kwargs):
        input_ids = kwargs.pop("input_ids", inputs)
        replacements = rewrite({**kwargs, "input_ids": input_ids})
        if replacements is None:
            return stock(input_ids, **kwargs)
        if kwargs.get("position_ids") is not None:
            raise ValueError(
                "position_ids cannot be given with unpruned image placeholders; let the model compute them"
            )
        for name, value in replacements.items():
            if value is DROP:
                kwargs.pop(name, None)
            elif value is not None or name in kwargs:
                kwargs[name] = value
        rewritten = kwargs.pop("input_ids")
        output = stock(rewritten, **kwargs)
        return restore_prompt(output, input_ids, rewritten.shape[1])

    patch.set(model, "generate", generate)


def restore_prompt(output, prompt: torch.Tensor, rewritten_length: int):
    """Put the caller's unshrunk prompt back in front of the generated tokens."""
    sequences = output if isinstance(output, torch.Tensor) else output.sequences
    prompt = prompt.to(sequences.device).repeat_interleave(sequences.shape[0] // prompt.shape[0], dim=0)  # beams
    restored = torch.cat([prompt, sequences[:, rewritten_length:]], dim=1)
    if isinstance(output, torch.Tensor):
        return restored
    output.sequences = restored
    return output
