"""DeepStack (Qwen3-VL) inside the pruning layer loop.

The stock multimodal model hands its language model `visual_pos_masks` [B, L] and
`deepstack_visual_embeds` (one [V, C] tensor per level: features of intermediate vision layers, one row
per visual token in mask order) and adds level i to the hidden states of the visual tokens after layer
i. The loop does the same on whatever sequence that layer ran on: each token finds its row through its
`origin` (its prefill column), so after a stage the additions follow the kept tokens; tokens made by
merging (SparseVLM's recycled clusters) stand for no single visual token and get none.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

DEEPSTACK_MASK_KWARG = "visual_pos_masks"  # Qwen3-VL's language-model keywords for DeepStack
DEEPSTACK_KWARG = "deepstack_visual_embeds"


@dataclass
class DeepStack:
    """A call's DeepStack inputs: level i [V, C] is added after layer i to the visual tokens, `rank` [B, L]
    being each prefill column's row in the levels (-1 for the other tokens)."""

    levels: list[torch.Tensor]
    rank: torch.Tensor

    @classmethod
    def of(cls, kwargs: dict) -> DeepStack | None:
        """Taken out of a language-model call's keyword arguments (None when the call has none)."""
        mask, levels = kwargs.pop(DEEPSTACK_MASK_KWARG, None), kwargs.pop(DEEPSTACK_KWARG, None)
        if mask is None or levels is None:
            return None
        flat = mask.reshape(-1)
        rank = torch.where(flat, flat.long().cumsum(0) - 1, -1).reshape(mask.shape)
        return cls(list(levels), rank)

    def added(self, layer: int, hidden: torch.Tensor, origin: torch.Tensor) -> torch.Tensor:
        """`hidden` [B, L', C] after `layer` with that layer's level added at the visual tokens it holds
        (`origin` [B, L']: their prefill columns); unchanged past the last level."""
        if layer >= len(self.levels) or self.levels[layer].shape[0] == 0:
            return hidden
        rank = self.rank.to(origin.device).gather(1, origin.clamp(min=0))
        visual = (origin >= 0) & (rank >= 0)
        level = self.levels[layer].to(hidden.device, hidden.dtype)
        return hidden + torch.where(visual[..., None], level[rank.clamp(min=0)], 0)
