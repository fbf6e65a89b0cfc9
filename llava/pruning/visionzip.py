"""VisionZip: dominant tokens by [CLS] attention plus a few contextual tokens merged by key similarity.

Yang et al., "VisionZip: Longer is Better but Not Necessary in Vision Language Models", CVPR 2025,
arXiv 2412.04467. Where: at the vision encoder's output (the feature layer), before the projector.
Signals: the feature layer's [CLS] -> patch attention (summed over heads), its keys (averaged over
heads) and the [CLS] token itself.
Budget: T tokens per image reach the language model: the [CLS] token, T - 1 - C dominant patches
(highest attention, raster order) and C contextual tokens, where C = `contextual_num` defaults to
round(T * 10 / 64) as in the paper's settings (64 = 54 + 10, 128 = 108 + 20, 192 = 162 + 30; the
official code counts the [CLS] token among the 54 dominant ones). The contextual tokens: the
remaining patches are split into C targets, evenly spaced in raster order, and the others; each
other patch joins the target whose head-mean key is most similar (cosine), and each contextual
token is its target's feature plus the mean of the features that joined it. T >= N keeps all
patches unchanged.
Where parts of an image or video share one budget (e.g. Video-LLaVA's `video_split="even"`, a part of
budget b), C follows the part: round(b * 10 / 64) by default, else an explicit C scaled to
round(C * b / T), at most b - 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import VisionFeatures, VisionTokenPruner, check_count, gather_tokens


def default_contextual(visual_token_num: int) -> int:
    return int(visual_token_num * 10 / 64 + 0.5)


def compress(
    features: torch.Tensor,
    cls_token: torch.Tensor,
    cls_attention: torch.Tensor,
    keys: torch.Tensor,
    visual_token_num: int,
    contextual_num: int,
) -> torch.Tensor:
    """[B, T, C]: [CLS], the dominant patches, then the contextual tokens.

    features: [B, N, C] patch features; cls_token: [B, C]; cls_attention: [B, H, N];
    keys: [B, N, D] patch keys averaged over heads.
    """
    batch, num_tokens, channels = features.shape
    if visual_token_num >= num_tokens:
        return features
    dominant_num = visual_token_num - contextual_num - 1
    scores = cls_attention.sum(dim=1)
    order = torch.argsort(scores, dim=-1, descending=True, stable=True)
    dominant = order[:, :dominant_num].sort(dim=-1).values
    rest = order[:, dominant_num:].sort(dim=-1).values  # [B, M] in raster order
    parts = [cls_token[:, None], gather_tokens(features, dominant)]
    if contextual_num > 0:
        parts.append(_contextual(gather_tokens(features, rest), gather_tokens(keys, rest), contextual_num))
    return torch.cat(parts, dim=1)


def _contextual(features: torch.Tensor, keys: torch.Tensor, contextual_num: int) -> torch.Tensor:
    batch, remaining, channels = features.shape
    step = max(1, remaining // contextual_num)
    is_target = torch.zeros(remaining, dtype=torch.bool, device=features.device)
    is_target[torch.arange(0, remaining, step, device=features.device)[:contextual_num]] = True
    unit = F.normalize(keys, dim=-1)
    similarity = unit[:, ~is_target] @ unit[:, is_target].transpose(1, 2)  # [B, others, C]
    assignment = F.one_hot(similarity.argmax(dim=-1), contextual_num).to(features.dtype)
    counts = assignment.sum(dim=1).clamp(min=1)[..., None]
    merged = assignment.transpose(1, 2) @ features[:, ~is_target] / counts
    return features[:, is_target] + merged


class VisionZip(VisionTokenPruner):
    """`visionzip`: [CLS] + dominant patches + `contextual_num` merged contextual tokens = T."""

    name = "visionzip"
    requires = frozenset({"cls_attention", "cls_token", "projections"})

    def __init__(self, visual_token_num: int, contextual_num: int | None = None):
        super().__init__(visual_token_num)
        self._default_contextual = contextual_num is None
        if contextual_num is None:
            contextual_num = default_contextual(self.visual_token_num)
        self.contextual_num = check_count(contextual_num, "contextual_num")
        if self.contextual_num > self.visual_token_num - 1:
            raise ValueError(
                f"contextual_num must leave room for the [CLS] token: at most visual_token_num - 1 = "
                f"{self.visual_token_num - 1}, got {contextual_num}"
            )

    @property
    def options(self) -> dict:
        return {"contextual_num": self.contextual_num}

    def with_budget(self, visual_token_num: int) -> VisionZip:
        """The same method for a part of budget b: C by the default rule, or an explicit C scaled to b."""
        if visual_token_num == self.visual_token_num:
            return self
        if self._default_contextual:
            return type(self)(visual_token_num)
        scaled = int(self.contextual_num * visual_token_num / self.visual_token_num + 0.5)
        return type(self)(visual_token_num, min(scaled, visual_token_num - 1))

    def selection_flops(self, num_tokens: int, width: int, num_heads: int) -> int:
        if self.visual_token_num >= num_tokens or self.contextual_num == 0:
            return 0
        remaining = num_tokens - (self.visual_token_num - self.contextual_num - 1)
        others = remaining - self.contextual_num
        # key similarities of the others to the targets, then the merge as one matrix product
        return 2 * others * self.contextual_num * (width // num_heads) + 2 * others * self.contextual_num * width

    def reduce(self, vision: VisionFeatures) -> torch.Tensor:
        projections = vision.projections
        batch, length, width = projections.keys.shape
        keys = projections.keys[:, 1:].reshape(batch, length - 1, projections.num_heads, -1).mean(dim=2)
        return compress(
            vision.features, vision.cls_token, vision.cls_attention, keys, self.visual_token_num, self.contextual_num
        )
