"""PyramidDrop (PDrop): drop visual tokens in stages by the last instruction token's attention.

Xing et al., "PyramidDrop: Accelerating Your Large Vision-Language Models via Pyramid Visual
Redundancy Reduction", CVPR 2025, arXiv 2410.17247.
Where: inside the language model, before each layer in `layers` (default 8, 16, 24 of LLaVA-1.5's
32): the model is split into stages and every stage boundary keeps a fraction of the visual tokens.
Signal: at a boundary before layer l, the attention the last instruction token (the last prompt
token) pays each visual token under layer l's own query/key projections of its normalised input,
averaged over heads; computed beside SDPA (layer l's keys are projected once more for it).
Needs the question: the last prompt token ends the text after the image.
Budget: T visual tokens per image remain after the first boundary, int(T * ratio) after the second,
int(T * ratio**2) after the third, ... (the paper's default ratio 0.5 with T = 288 gives
576 -> 288 -> 144 -> 72). A prompt's images compete for T x (number of images) slots. As in PDrop's
code, the kept tokens are renumbered (rotary positions 0, 1, 2, ... without gaps) and decoding
continues from the shortened length.
"""

from __future__ import annotations

from .base import LanguageModelPruner, check_layers, check_ratio
from .fastv import keep_mask
from .sequence import AttentionRows, Sequence, compact_positions, keep_tokens, last_real_index


class PDrop(LanguageModelPruner):
    """`pdrop`: staged dropping before each of `layers`, keeping int(T * ratio**stage) visual tokens per image."""

    name = "pdrop"

    def __init__(self, visual_token_num: int, layers=(8, 16, 24), ratio: float = 0.5):
        super().__init__(visual_token_num)
        self.layers = check_layers(layers, "layers")
        self.ratio = check_ratio(ratio, "ratio")

    @property
    def options(self) -> dict:
        return {"layers": self.layers, "ratio": self.ratio}

    def stages(self) -> tuple[int, ...]:
        return self.layers

    def attention_layer(self, stage_layer: int) -> int:
        return stage_layer

    def kept_at(self, stage: int) -> int:
        return int(self.visual_token_num * self.ratio**stage)

    def kept_visual(self, stage: int, visual: int, images: int) -> int:
        return min(images * self.kept_at(stage), visual)

    def reduce(self, stage: int, sequence: Sequence, attention: AttentionRows, state) -> Sequence:
        last = last_real_index(sequence.mask)[:, None]
        keep = keep_mask(attention(last)[:, :, 0], sequence, self.kept_at(stage))
        return compact_positions(keep_tokens(sequence, keep))
