"""What every pruning method shares: the inputs it sees, the argument checks, and its settings."""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch


def check_token_num(visual_token_num: Any, name: str = "visual_token_num") -> int:
    """Return `visual_token_num` as an int, or raise ValueError saying what is allowed."""
    if isinstance(visual_token_num, bool) or not isinstance(visual_token_num, numbers.Integral):
        raise ValueError(f"{name} must be a positive integer (>= 1), got {visual_token_num!r}")
    if visual_token_num <= 0:
        raise ValueError(f"{name} must be a positive integer (>= 1), got {visual_token_num}")
    return int(visual_token_num)


def check_ratio(value: Any, name: str) -> float:
    """Return `value` as a float in [0, 1], or raise ValueError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return float(value)


def gather_tokens(tokens: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Pick `indices` [B, T] out of `tokens` [B, N, C] -> [B, T, C]."""
    return tokens.gather(1, indices.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))


@dataclass
class VisionFeatures:
    """What a host model hands a vision-side pruner, for one batch of images.

    features:      [B, N, C] patch features of the feature layer, before the projector ([CLS] excluded).
    grid:          (rows, cols) of the patch grid, rows * cols == N, in raster order.
    cls_attention: [B, H, N] [CLS] -> patch attention of the feature layer, when the method asks for it.
                   Encoders without [CLS] (SigLIP, Qwen2-VL) fill it with the mean attention each
                   token receives from all tokens of that layer.
    """

    features: torch.Tensor
    grid: tuple[int, int]
    cls_attention: torch.Tensor | None = None


@dataclass(frozen=True)
class PruningConfig:
    """The settings a pruned model runs with; `model.pruning_config` after `apply_pruning`."""

    method: str
    visual_token_num: int
    options: dict[str, Any] = field(default_factory=dict)
    host_options: dict[str, Any] = field(default_factory=dict)  # the model family's own, e.g. layout


class VisionTokenPruner:
    """A method that reduces the visual tokens before the language model sees them.

    Subclasses set `name`, list the vision signals they need in `requires` (e.g. "cls_attention"),
    check their options in `__init__`, and implement `select` (kept indices, raster order) or, for
    methods that merge tokens, `reduce` (the reduced features).
    """

    name: ClassVar[str]
    requires: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, visual_token_num: int):
        self.visual_token_num = check_token_num(visual_token_num)

    @property
    def options(self) -> dict[str, Any]:
        """The method's own settings besides the budget."""
        return {}

    @property
    def config(self) -> PruningConfig:
        return PruningConfig(self.name, self.visual_token_num, self.options)

    def kept_per_image(self, num_tokens: int) -> int:
        """How many tokens reach the language model for an image of `num_tokens` tokens."""
        return min(self.visual_token_num, num_tokens)

    def select(self, vision: VisionFeatures) -> torch.Tensor:
        """Kept token indices [B, T], ascending."""
        raise NotImplementedError

    def reduce(self, vision: VisionFeatures) -> torch.Tensor:
        """Reduced pre-projector features [B, T, C] in the order the language model will see them."""
        return gather_tokens(vision.features, self.select(vision))

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in {"visual_token_num": self.visual_token_num, **self.options}.items())
        return f"{type(self).__name__}({settings})"
