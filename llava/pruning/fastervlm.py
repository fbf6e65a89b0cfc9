"""FasterVLM: keep the T patches the [CLS] token attends to most.

Zhang et al., "[CLS] Attention is All You Need for Training-Free Visual Token Pruning: Make VLM
Inference Faster", arXiv 2412.01818 (v1; v2 of the same id is VisPruner).
Where: before the language model, on the feature layer's pre-projector patch features.
Signal: the feature layer's [CLS] -> patch attention, averaged over heads ("importance": on encoders
without [CLS], the mean attention each token receives).
Budget: T tokens per image reach the language model, in raster order. This is VisPruner with
important_ratio = 1.0 (no diverse tokens).
"""

from __future__ import annotations

import torch

from .base import IMPORTANCE, VisionFeatures, VisionTokenPruner, check_token_num
from .vispruner import attention_order


def select(importance: torch.Tensor, visual_token_num: int) -> torch.Tensor:
    """Indices [B, T] (ascending) of the T patches with the highest head-mean [CLS] attention; ties go
    to the lower index. importance: [B, N] or [B, H, N] ([CLS] attention, or the mean attention received
    on encoders without [CLS])."""
    visual_token_num = check_token_num(visual_token_num)
    order = attention_order(importance)
    return order[:, :visual_token_num].sort(dim=-1).values


class FasterVLM(VisionTokenPruner):
    """`fastervlm`: the T tokens with the highest [CLS] attention."""

    name = "fastervlm"
    requires = frozenset({IMPORTANCE})

    def select(self, vision: VisionFeatures) -> torch.Tensor:
        return select(vision.importance, self.visual_token_num)
