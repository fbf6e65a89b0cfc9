"""DivPrune: keep the T most mutually different projected tokens (greedy max-min diversity).

Alvar et al., "DivPrune: Diversity-based Visual Token Pruning for Large Multimodal Models",
CVPR 2025, arXiv 2503.02175. Where: at the language model's input, on the projected visual tokens
(the embeddings the language model would read; the paper's LAYER_INDEX=0 setting). Signal: pairwise
cosine distance between those tokens only (no attention, no text).
Budget: T tokens per image reach the language model, in raster order (the public code sorts the
selection; the paper's runs kept selection order, see its issue #8).

Selection (the greedy solution of the Max-Min Diversity Problem, as published): the first token is
the one farthest from its nearest neighbour; every next token is the one whose smallest distance to
the tokens already chosen is largest. Deviation: a chosen token is never chosen again (the published
loop could re-pick one only when every remaining token duplicates a chosen one exactly).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import VisionFeatures, VisionTokenPruner, check_token_num


def select(projected: torch.Tensor, visual_token_num: int) -> torch.Tensor:
    """Indices [B, min(T, N)] (ascending) chosen by greedy max-min cosine distance; projected [B, N, D]."""
    visual_token_num = check_token_num(visual_token_num)
    batch, num_tokens, _ = projected.shape
    if visual_token_num >= num_tokens:
        return torch.arange(num_tokens, device=projected.device).expand(batch, num_tokens)
    unit = F.normalize(projected.float(), dim=-1)
    distance = 1.0 - unit @ unit.transpose(1, 2)  # [B, N, N]
    rows = torch.arange(batch, device=projected.device)
    chosen = torch.empty(batch, visual_token_num, dtype=torch.long, device=projected.device)
    # Column j's nearest other token: the second-smallest entry of the column (the smallest is j itself).
    closest = distance.topk(2, dim=1, largest=False).values[:, 1]
    taken = torch.zeros(batch, num_tokens, dtype=torch.bool, device=projected.device)
    for step in range(visual_token_num):
        pick = closest.masked_fill(taken, float("-inf")).argmax(dim=-1)
        chosen[:, step] = pick
        taken[rows, pick] = True
        closest = distance[rows, pick] if step == 0 else torch.minimum(closest, distance[rows, pick])
    return chosen.sort(dim=-1).values


class DivPrune(VisionTokenPruner):
    """`divprune`: T tokens by greedy max-min diversity of the projected tokens."""

    name = "divprune"
    requires = frozenset({"projected"})

    def select(self, vision: VisionFeatures) -> torch.Tensor:
        return select(vision.projected, self.visual_token_num)

    def selection_flops(self, num_tokens: int, width: int, num_heads: int) -> int:
        return 0 if self.visual_token_num >= num_tokens else 2 * num_tokens * num_tokens * width  # all distances
