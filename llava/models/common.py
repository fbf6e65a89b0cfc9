"""What every host family shares: the `Host` skeleton (signals, feature-layer and strategy defaults,
pad id, patched encoders' outputs), wrapping `forward`/`generate` so the prompt is rewritten to the
kept token counts before the stock code runs, and pruning one batch of features (`prune`).

A host supplies a *rewrite*: a function of the call's arguments (by name) that returns the
arguments to replace (e.g. `input_ids`, `attention_mask`, `labels`, and for Qwen `position_ids`),
or None when the call holds no full placeholder runs (text-only steps, already-rewritten prompts).
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from ..patching import InstancePatch
from ..pruning.base import (
    LanguageModelPruner,
    TokenPruner,
    VisionFeatures,
    VisionTokenPruner,
    check_signals,
    gather_tokens,
    resolve_signals,
)
from ..trace import Tracer

Rewrite = Callable[[dict[str, Any]], "dict[str, Any] | None"]
DROP = object()  # a rewrite's value for an argument to take out of the call (e.g. pixels already encoded)
LANGUAGE_SIGNALS = frozenset({"question"})  # the prompt text after the image, read inside the language model
PROJECTED = "projected"  # the projector's output: every host that projects features can hand it over


@dataclass
class Host:
    """One family's pruning being attached: the model, the method, where patches go, and what the
    family's encoder can provide. A family module builds one in its `attach` and keeps only what is
    its own (where it encodes, how its placeholders are laid out).

    name: the family as messages name it (e.g. "LLaVA-NeXT"); signals: what the vision encoder hands
    vision-side methods (its module's `SIGNALS`, e.g. `clip.SIGNALS`), "projected" added; note: said
    after a refusal (e.g. that an encoder has no [CLS] token); strategy: the
    `vision_feature_select_strategy` pruning reads features with."""

    model: Any
    pruner: TokenPruner
    patch: InstancePatch
    tracer: Tracer | None
    name: str
    signals: frozenset[str]
    note: str = ""
    strategy: str | None = "default"

    @property
    def inner(self):
        return self.model.model

    @property
    def config(self):
        return self.model.config

    @property
    def inside(self) -> bool:
        """Whether the method prunes inside the language model (FastV, PDrop, SparseVLM)."""
        return isinstance(self.pruner, LanguageModelPruner)

    @property
    def split(self) -> bool:
        """Whether to report VisPruner's important/diverse split (only when tracing)."""
        return self.tracer is not None

    @property
    def asked(self) -> frozenset[str]:
        """The encoder signals the method needs (what to ask the encoder's `encode` for), "importance"
        resolved to the attention signal this encoder has."""
        return resolve_signals(self.pruner.requires, self.signals) & self.signals

    @property
    def pad_id(self) -> int:
        pad = self.config.text_config.pad_token_id
        return 0 if pad is None else pad

    def check_signals(self) -> None:
        """Vision-side methods get the encoder's signals, in-LLM methods the language model's; a method
        asking for the other side's signal would silently receive nothing, so it is refused here."""
        if self.inside:
            check_signals(self.pruner, LANGUAGE_SIGNALS, f"{self.name}, inside its language model,")
        else:
            provided = self.signals | {PROJECTED}
            check_signals(self.pruner, provided, f"{self.name}, before its language model,", self.note)

    def check_item_tokens(self, num_tokens: int, item: str = "image") -> None:
        """For in-LLM methods on items that always hold `num_tokens` visual tokens: settings that cannot
        prune such an item fail now (e.g. a SparseVLM schedule above the count)."""
        if self.inside:
            self.pruner.check_item_tokens(num_tokens, f"{item}s of {self.name}")

    def check_merge_schedule(self, num_patches: int, depth: int) -> None:
        """For methods merging inside the encoder: a budget the schedule cannot reach fails now, not at
        the first image."""
        if "token_merging" in self.pruner.requires:
            self.pruner.schedule(num_patches, depth)

    @property
    def merger(self):
        """The method, for an encoder that merges tokens as it runs ("token_merging"); None otherwise."""
        return self.pruner if "token_merging" in self.pruner.requires else None

    def layer(self, vision_feature_layer) -> int:
        """The feature layer a call asks for, the config's by default."""
        return self.config.vision_feature_layer if vision_feature_layer is None else vision_feature_layer

    def check_strategy(self, vision_feature_select_strategy, what: str = "") -> None:
        strategy = vision_feature_select_strategy or self.config.vision_feature_select_strategy
        if strategy != self.strategy:
            raise ValueError(
                f"pruning {self.name}{what} supports vision_feature_select_strategy={self.strategy!r}, got {strategy!r}"
            )

    def patch_encoder(self, name: str, build: Callable[[Callable], Callable]) -> None:
        """Replace `model.model.<name>` (e.g. "get_image_features") by the function `build(stock)`
        returns; that function returns a `ModelOutput` (e.g. `BaseModelOutputWithPooling`), and the
        patched method hands it out as a tuple when the caller asks `return_dict=False`."""
        stock = getattr(self.inner, name)
        encode = build(stock)

        @functools.wraps(stock)
        def patched(*args, **kwargs):
            output = encode(*args, **kwargs)
            return output if kwargs.get("return_dict", True) else output.to_tuple()

        self.patch.set(self.inner, name, patched)

    def rewrite_prompts(self, *rewrites: Rewrite) -> None:
        """Patch `forward` and `generate` to rewrite each call's placeholders with `rewrites` in turn."""
        rewrite = chain(*rewrites)
        patch_forward(self.model, self.patch, rewrite)
        patch_generate(self.model, self.patch, rewrite)

    def project(self, vision: VisionFeatures, projector: Callable) -> None:
        """Fill `vision.projected` when the method selects on projected tokens."""
        if PROJECTED in self.pruner.requires:
            vision.projected = projector(vision.features)

    def tokens(self, pruned: Pruned, projector: Callable) -> torch.Tensor:
        """The language model's tokens for what was kept: projected now, or already projected."""
        return pruned.features if PROJECTED in self.pruner.requires else projector(pruned.features)

    def prune_rows(self, vision: VisionFeatures, projector: Callable, part: str) -> torch.Tensor:
        """Each row of `vision` (an image, or a tile the model is not told the image of) pruned on its own
        and projected: the language model's tokens [B, T, D]; traced as `part` number row."""
        self.project(vision, projector)
        pruned = apply_method(self.pruner, vision, split=self.split)
        kept = self.tokens(pruned, projector)
        if self.tracer is not None:
            labels = [(part, item, 0) for item in range(kept.shape[0])]
            self.tracer.add_rows("image", vision.grid, labels, pruned.indices, pruned.important)
        return kept


class KeepAll(VisionTokenPruner):
    """Keeps every token: a family's image layout without vision-side pruning (e.g. LLaVA-NeXT's paper
    layout under an in-LLM method). Not a registered method."""

    name = "keep_all"

    def __init__(self):
        super().__init__(sys.maxsize)


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
    """Keep `budget` of the N tokens (indices ascending, None for a method that merges tokens): the
    pre-projector features, or for methods that select on projected tokens (`vision.projected` filled,
    see `Host.project`) the projected ones. budget >= N keeps all, 0 keeps none, without running the
    method. `split`: also report which kept tokens the method chose for importance (for tracing)."""
    source = vision.projected if PROJECTED in pruner.requires else vision.features
    batch, num_tokens, _ = vision.features.shape
    if budget >= num_tokens or budget <= 0:
        count = num_tokens if budget >= num_tokens else 0
        indices = torch.arange(count, device=vision.features.device).expand(batch, count)
        return Pruned(source[:, :count], indices)
    method = pruner.with_budget(budget)
    if has_select(method):
        indices, important = _selected(method, vision, split)
        return Pruned(gather_tokens(source, indices), indices, important)
    return Pruned(method.reduce(vision), None)


def apply_method(pruner: VisionTokenPruner, vision: VisionFeatures, split: bool = False) -> Pruned:
    """The method itself at its own budget (no shortcut): what `pruner.reduce` keeps, or, for methods
    needing "projected", the selected projected tokens; with the kept indices of methods whose reduce
    gathers their selection (and with `split`, the important ones)."""
    projected = PROJECTED in pruner.requires
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
