"""Random pruning: keep T patches drawn uniformly at random, a baseline the benchmarks found strong.

UniPruneBench (Peng et al., arXiv 2511.02650) reports random selection as a surprisingly strong
baseline. Where: before the language model, on the pre-projector patch features. Signal: none.
Budget: T tokens per image reach the language model, in raster order.

Reproducibility: the positions come from a torch generator seeded with `seed` when the method is
applied; every call draws fresh positions for every image, so the same inputs in the same order
give the same selections (re-applying the method restarts the stream).
"""

from __future__ import annotations

import numbers

import torch

from .base import VisionFeatures, VisionTokenPruner, check_token_num


def select(batch: int, num_tokens: int, visual_token_num: int, generator: torch.Generator) -> torch.Tensor:
    """Indices [B, min(T, N)] (ascending) of a uniformly random subset per row, drawn from `generator`
    (on its device)."""
    visual_token_num = min(check_token_num(visual_token_num), num_tokens)
    noise = torch.rand(batch, num_tokens, generator=generator, device=generator.device)
    return noise.topk(visual_token_num, dim=-1).indices.sort(dim=-1).values


class RandomPruner(VisionTokenPruner):
    """`random`: T uniformly random tokens per image, from a generator seeded with `seed`."""

    name = "random"

    def __init__(self, visual_token_num: int, seed: int = 0):
        super().__init__(visual_token_num)
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.seed = int(seed)
        self._generators: dict[torch.device, torch.Generator] = {}

    @property
    def options(self) -> dict:
        return {"seed": self.seed}

    def with_budget(self, visual_token_num: int) -> RandomPruner:
        """Another budget drawing from this pruner's own stream: every crop and frame of a call takes the
        next positions, and the same inputs in the same order give the same selections."""
        other = super().with_budget(visual_token_num)
        other._generators = self._generators
        return other

    def generator(self, device: torch.device) -> torch.Generator:
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[device]

    def select(self, vision: VisionFeatures) -> torch.Tensor:
        batch, num_tokens, _ = vision.features.shape
        return select(batch, num_tokens, self.visual_token_num, self.generator(vision.features.device))
