"""PruMerge+: [CLS]-attention outliers plus spatially uniform samples, each merged with its key neighbours.

Shang et al., "LLaVA-PruMerge: Adaptive Token Reduction for Efficient Large Multimodal Models",
ICCV 2025, arXiv 2403.15388 (the "+" variant adds spatially uniform samples).
Where: at the vision encoder's output, before the projector (features of the feature layer).
Signals, as the published code reads them: the query of the [CLS] token and the keys of all tokens
in the encoder layer after the feature layer (layer 24 of CLIP-L when LLaVA reads layer 23), used as
one attention head over the full width (scale 1/sqrt(width)).

Budget: T tokens per image reach the language model, in the published order: the outliers (by
descending attention), the spatial samples (raster order), then one extra token. The published
method picks its count adaptively (about 25 % of the tokens); here the count is T:
* outliers: patches whose attention exceeds Q3 + 1.5 * IQR of the image's attention (per image;
  the published code pools the quartiles over the batch), at most T - 1, highest first;
* spatial samples: the other T - 1 - outliers slots, spread evenly in raster order over the
  patches that are not outliers (the published code samples a fixed stride over the whole grid);
* each kept token is updated as x_i + sum_j a_j x_j over its `num_neighbors` (32) nearest patches
  by key cosine similarity (a_j: their [CLS] attention, not renormalised);
* the extra token is the attention-weighted sum of all patches not kept.
T = 1 keeps the extra token alone (the attention-weighted sum of every patch); T >= N keeps the N
patches unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import LayerProjections, VisionFeatures, VisionTokenPruner, check_count, gather_tokens


def cls_attention(projections: LayerProjections, width: int) -> torch.Tensor:
    """[B, N] softmax of the [CLS] query against all keys as one head of `width` channels, patches only."""
    scores = (projections.keys.float() @ projections.cls_query.float()[..., None])[..., 0] * width**-0.5
    return torch.softmax(scores, dim=-1)[:, 1:]


def outlier_count(attention: torch.Tensor) -> torch.Tensor:
    """[B] how many patches lie above Q3 + 1.5 * IQR of each row's attention (linear quantiles)."""
    q1, q3 = torch.quantile(attention.float(), torch.tensor([0.25, 0.75], device=attention.device), dim=-1)
    return (attention > (q3 + 1.5 * (q3 - q1))[:, None]).sum(dim=-1)


def select(attention: torch.Tensor, num_kept: int) -> torch.Tensor:
    """[B, num_kept] kept patch indices: outliers by descending attention, then spatial samples."""
    batch, num_tokens = attention.shape
    device = attention.device
    num_outliers = outlier_count(attention).clamp(max=num_kept)
    by_attention = torch.argsort(attention, dim=-1, descending=True, stable=True)
    slot = torch.arange(num_kept, device=device).expand(batch, -1)
    rank = torch.empty_like(by_attention).scatter_(
        1, by_attention, torch.arange(num_tokens, device=device).expand(batch, -1)
    )
    is_outlier = rank < num_outliers[:, None]
    # Non-outliers in raster order, then `num_samples` of them at evenly spread ranks.
    others = torch.argsort(is_outlier.long() * num_tokens + torch.arange(num_tokens, device=device), dim=-1)
    num_others = (num_tokens - num_outliers)[:, None]
    num_samples = (num_kept - num_outliers)[:, None].clamp(min=1)
    sample_rank = ((slot - num_outliers[:, None]).clamp(min=0) * 2 + 1) * num_others // (2 * num_samples)
    sampled = others.gather(1, sample_rank.clamp(max=num_tokens - 1))
    return torch.where(slot < num_outliers[:, None], by_attention[:, :num_kept], sampled)


def merge(
    features: torch.Tensor, keys: torch.Tensor, attention: torch.Tensor, kept: torch.Tensor, num_neighbors: int
) -> torch.Tensor:
    """[B, K + 1, C]: each kept token plus its neighbours' attention-weighted features, then the extra token."""
    batch, num_tokens, _ = features.shape
    not_kept = torch.ones(batch, num_tokens, dtype=torch.bool, device=features.device).scatter_(1, kept, False)
    extra = ((attention * not_kept).to(features.dtype)[..., None] * features).sum(dim=1, keepdim=True)
    if kept.shape[1] == 0:  # T = 1: the extra token alone
        return extra
    unit = F.normalize(keys.float(), dim=-1)
    similarity = gather_tokens(unit, kept) @ unit.transpose(1, 2)  # [B, K, N]
    similarity.scatter_(2, kept[..., None], float("-inf"))  # a token is not its own neighbour
    neighbors = similarity.topk(min(num_neighbors, num_tokens - 1), dim=-1).indices  # [B, K, k]
    weights = attention.gather(1, neighbors.flatten(1)).view_as(neighbors)[..., None].to(features.dtype)
    gathered = gather_tokens(features, neighbors.flatten(1)).view(*neighbors.shape, -1)
    updated = gather_tokens(features, kept) + (gathered * weights).sum(dim=2)
    return torch.cat([updated, extra], dim=1)


class PruMergePlus(VisionTokenPruner):
    """`prumerge_plus`: T - 1 outlier + spatial tokens merged with key neighbours, plus one extra token."""

    name = "prumerge_plus"
    requires = frozenset({"next_projections"})

    def __init__(self, visual_token_num: int, num_neighbors: int = 32):
        super().__init__(visual_token_num)
        self.num_neighbors = check_count(num_neighbors, "num_neighbors", minimum=1)

    @property
    def options(self) -> dict:
        return {"num_neighbors": self.num_neighbors}

    def selection_flops(self, num_tokens: int, width: int, num_heads: int) -> int:
        if self.visual_token_num >= num_tokens:
            return 0
        # the one-head [CLS] attention over all tokens, then each kept token's key similarity to all patches
        return 2 * (num_tokens + 1) * width + 2 * (self.visual_token_num - 1) * num_tokens * width

    def reduce(self, vision: VisionFeatures) -> torch.Tensor:
        features = vision.features
        if self.visual_token_num >= features.shape[1]:
            return features
        attention = cls_attention(vision.next_projections, features.shape[-1])
        kept = select(attention, self.visual_token_num - 1)
        return merge(features, vision.next_projections.keys[:, 1:], attention, kept, self.num_neighbors)
