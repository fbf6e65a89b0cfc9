"""FastV: after layer K, drop the visual tokens the last prompt token attends to least.

Chen et al., "An Image is Worth 1/2 Tokens After Layer 2: Plug-and-Play Inference Acceleration for
Large Vision-Language Models", ECCV 2024, arXiv 2403.06764.
Where: inside the language model: layers 0 .. K-1 see every token; before layer K (`layer`,
default 2) the visual tokens are ranked and the rest of the model, including its KV cache, sees
only the kept ones.
Signal: the attention the last prompt token pays each visual token in layer K-1, averaged over heads
(computed from that layer's own projections beside SDPA). Needs the question: the last prompt token
is the end of the text after the image ("... ASSISTANT:" in the LLaVA chat prompt).
Budget: T visual tokens per image remain from layer K on (the published R = 50 % on 576 tokens is
T = 288); a prompt's images compete for T x (number of images) slots. Kept tokens keep their
original rotary positions, as in FastV's code, and decoding continues from the unpruned length.
"""

from __future__ import annotations

import torch

from .base import LanguageModelPruner, check_count
from .sequence import AttentionRows, Sequence, keep_tokens, last_real_index, top_visual


def keep_mask(last_row: torch.Tensor, sequence: Sequence, per_image: int) -> torch.Tensor:
    """[B, L] tokens to keep: all non-visual ones and the `per_image` x images best visual ones by the
    head-mean attention `last_row` [B, H, L]."""
    counts = (sequence.images_per_row() * per_image).clamp(max=sequence.visual_per_row())
    return top_visual(last_row.mean(dim=1), sequence.visual, counts) | ~sequence.visual


class FastV(LanguageModelPruner):
    """`fastv`: keep T visual tokens per image from layer `layer` (K) on, by last-token attention in layer K-1."""

    name = "fastv"

    def __init__(self, visual_token_num: int, layer: int = 2):
        super().__init__(visual_token_num)
        self.layer = check_count(layer, "layer", minimum=1)

    @property
    def options(self) -> dict:
        return {"layer": self.layer}

    def stages(self) -> tuple[int, ...]:
        return (self.layer,)

    def _layer_option(self) -> str:
        return "layer"

    def kept_visual(self, stage: int, visual: int, images: int) -> int:
        return min(images * self.visual_token_num, visual)

    def reduce(self, stage: int, sequence: Sequence, attention: AttentionRows, state) -> Sequence:
        last = last_real_index(sequence.mask)[:, None]
        return keep_tokens(sequence, keep_mask(attention(last)[:, :, 0], sequence, self.visual_token_num))
