"""ToMe: bipartite soft matching merges similar tokens inside the vision encoder, layer by layer.

Bolya et al., "Token Merging: Your ViT But Faster", ICLR 2023, arXiv 2210.09461.
Where: inside the vision encoder: in every layer up to the feature layer, after attention and
before the MLP, `r` tokens are merged into others (ToMe's placement), and attention is biased by
log(token size) ("proportional attention", passed to SDPA as an additive mask).
Signal: the layer's keys averaged over heads, cosine similarity.
Budget: T tokens per image reach the language model (the [CLS] token is protected and dropped at
the end, as LLaVA drops it). The N - T merges are spread over the D layers up to the feature layer
as evenly as ToMe's limit allows (at most half the tokens per layer): each layer merges
ceil(remaining / layers left), capped at half its patch tokens; a budget that cannot be reached
that way raises ValueError. The tokens reach the language model in ToMe's order (the unmerged
tokens of the even set, then the odd set), not in raster order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .base import VisionFeatures, VisionTokenPruner


def merge_schedule(num_patches: int, visual_token_num: int, num_layers: int) -> list[int]:
    """Tokens to merge in each of `num_layers` layers to go from `num_patches` to `visual_token_num`."""
    remaining, current, schedule = max(num_patches - visual_token_num, 0), num_patches, []
    for layer in range(num_layers):
        count = min(math.ceil(remaining / (num_layers - layer)), current // 2)
        schedule.append(count)
        remaining -= count
        current -= count
    if remaining > 0:
        raise ValueError(
            f"tome cannot merge {num_patches} tokens down to visual_token_num={visual_token_num} in {num_layers} "
            f"layers (each layer merges at most half of its tokens); choose a larger visual_token_num"
        )
    return schedule


@dataclass
class Match:
    """Which even-position tokens stay (unmerged), which merge (src) and into which odd-position token (dst)."""

    unmerged: torch.Tensor  # [B, |A| - r, 1]
    src: torch.Tensor  # [B, r, 1]
    dst: torch.Tensor  # [B, r, 1]


def bipartite_match(metric: torch.Tensor, count: int) -> Match:
    """ToMe's bipartite soft matching on metric [B, t, d] with token 0 ([CLS]) protected.

    Even positions form set A, odd ones set B; each A token's edge goes to its most similar B token
    (cosine); the `count` strongest edges merge. Ties go to the earlier token.
    """
    metric = metric / metric.norm(dim=-1, keepdim=True)
    scores = metric[:, ::2] @ metric[:, 1::2].transpose(-1, -2)
    scores[:, 0, :] = float("-inf")
    best, best_index = scores.max(dim=-1)
    edges = torch.argsort(best, dim=-1, descending=True, stable=True)[..., None]
    src = edges[:, :count]
    return Match(unmerged=edges[:, count:].sort(dim=1).values, src=src, dst=best_index[..., None].gather(1, src))


def merge(x: torch.Tensor, match: Match, mode: str = "sum") -> torch.Tensor:
    """Apply `match` to x [B, t, c]: [unmerged A tokens, B tokens with the merged ones reduced in]."""
    a, b = x[:, ::2], x[:, 1::2]
    channels = x.shape[-1]
    unmerged = a.gather(1, match.unmerged.expand(-1, -1, channels))
    src = a.gather(1, match.src.expand(-1, -1, channels))
    b = b.scatter_reduce(1, match.dst.expand(-1, -1, channels), src, reduce=mode)
    return torch.cat([unmerged, b], dim=1)


def merge_weighted(x: torch.Tensor, size: torch.Tensor | None, match: Match) -> tuple[torch.Tensor, torch.Tensor]:
    """Size-weighted average merge; returns the merged tokens and their new sizes [B, t', 1]."""
    if size is None:
        size = torch.ones_like(x[..., :1])
    x = merge(x * size, match)
    size = merge(size, match)
    return x / size, size


class ToMe(VisionTokenPruner):
    """`tome`: merge tokens in every encoder layer up to the feature layer until T remain."""

    name = "tome"
    requires = frozenset({"token_merging"})

    def schedule(self, num_patches: int, num_layers: int) -> list[int]:
        return merge_schedule(num_patches, self.visual_token_num, num_layers)

    def matching_flops(self, num_tokens: int, width: int, num_heads: int) -> int:
        """FLOPs of one layer's bipartite matching of `num_tokens` tokens (head-mean keys of `width` channels)."""
        return 2 * ((num_tokens + 1) // 2) * (num_tokens // 2) * (width // num_heads)

    def merge(self, hidden, size, keys, num_heads: int, count: int):
        batch, length, width = keys.shape
        metric = keys.view(batch, length, num_heads, width // num_heads).mean(dim=2)
        return merge_weighted(hidden, size, bipartite_match(metric, count))

    def reduce(self, vision: VisionFeatures) -> torch.Tensor:
        return vision.features  # merged inside the encoder already
